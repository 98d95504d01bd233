using System.Text.Json.Nodes;

namespace Conduit.Federation.Outbound;

/// <summary>
/// Sends one transaction to a destination (server-server API <c>PUT /_matrix/federation/v1/send/{txnId}</c>): the
/// implementation signs the request and PUTs <c>{"origin", "origin_server_ts", "pdus", "edus"}</c>. It may be called
/// again with the same <paramref name="txnId"/> and the same (or a subset of the same) items after a
/// <see cref="TransactionResult.RetryLater"/>, so that the receiver's transaction cache drops a repeat.
/// </summary>
public interface ITransactionSender
{
    Task<TransactionResult> SendAsync(string destination, string txnId, IReadOnlyList<JsonObject> pdus, IReadOnlyList<JsonObject> edus, CancellationToken ct);
}

public enum TransactionResult
{
    /// <summary>200: the transaction was received (per-PDU errors in the response are the receiver's business).</summary>
    Delivered,

    /// <summary>Connection error, timeout, 5xx, 401, 429: keep the batch and back off.</summary>
    RetryLater,

    /// <summary>Any other 4xx: the batch is dropped; the destination is up, so its backoff is reset.</summary>
    Rejected,
}

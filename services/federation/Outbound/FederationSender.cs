using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Http;
using Conduit.Common.Storage;
using Conduit.Protos.Rooms;
using Grpc.Core;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using K = Conduit.Common.Storage.Keys;

namespace Conduit.Federation.Outbound;

/// <summary>
/// PUT /_matrix/federation/v1/send/{txnId} (server-server-api, "Transactions"), signed through <see cref="FederationRequests"/>.
/// A 200 is delivered (the per-PDU errors in it are the receiver's business: resending would not change them);
/// no answer, 5xx, 401 and 429 are worth retrying (Synapse's list); any other 4xx refuses the batch for good.
/// </summary>
public sealed class HttpTransactionSender(FederationRequests requests, GlobalConfig config) : ITransactionSender
{
    public async Task<TransactionResult> SendAsync(string destination, string txnId, IReadOnlyList<JsonObject> pdus, IReadOnlyList<JsonObject> edus, CancellationToken ct)
    {
        var body = new JsonObject
        {
            ["origin"] = config.ServerName,
            ["origin_server_ts"] = Ids.NowMs(),
            ["pdus"] = new JsonArray(pdus.Select(p => (JsonNode)p.DeepClone()).ToArray()),
            ["edus"] = new JsonArray(edus.Select(e => (JsonNode)e.DeepClone()).ToArray()),
        };
        var reply = await requests.SendAsync(destination, "PUT", $"/_matrix/federation/v1/send/{Uri.EscapeDataString(txnId)}", body, null, ct);
        return reply.Status switch
        {
            >= 200 and < 300 => TransactionResult.Delivered,
            0 or 401 or 429 or >= 500 => TransactionResult.RetryLater,
            _ => TransactionResult.Rejected,
        };
    }
}

/// <summary>
/// Follows the rooms service's feed of the events this server creates (protos/rooms.proto, FederationFeed) and queues
/// each for the servers in its room. The feed position is stored after the events are queued (both durable), so a
/// restart neither loses nor, beyond the last batch, repeats an event. A first start begins at the current position:
/// history from before federation was on is not sent. Woken by the rooms stream; a poll every few seconds covers a
/// broken stream.
/// </summary>
public sealed partial class FederationFeedWorker(Rooms.RoomsClient rooms, FederationQueue queue, IKeyValueStore store, GlobalConfig config,
    ILogger<FederationFeedWorker> log) : BackgroundService
{
    const int BatchLimit = 200;
    static readonly byte[] PositionKey = K.Utf8("feed_position");
    readonly IKvMap _state = store.Map(FederationFamilies.Feed);
    readonly SemaphoreSlim _advanced = new(0);

    protected override async Task ExecuteAsync(CancellationToken ct)
    {
        if (!config.AllowFederation) return;
        await Task.Yield();
        _ = Task.Run(() => WatchAsync(ct), ct);
        var delay = TimeSpan.FromMilliseconds(100);
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await FollowAsync(ct);
            }
            catch (Exception) when (ct.IsCancellationRequested) { return; }
            catch (Exception e)
            {
                LogFailed(log, e.Message);
                try { await Task.Delay(delay, ct); } catch (OperationCanceledException) { return; }
                delay = TimeSpan.FromMilliseconds(Math.Min(delay.TotalMilliseconds * 2, 5000));
            }
        }
    }

    async Task WatchAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            try
            {
                using var call = rooms.WatchStream(new WatchStreamRequest(), cancellationToken: ct);
                await foreach (var _ in call.ResponseStream.ReadAllAsync(ct))
                    if (_advanced.CurrentCount == 0) _advanced.Release();
            }
            catch (Exception) when (ct.IsCancellationRequested) { return; }
            catch (Exception) { }
            try { await Task.Delay(1000, ct); } catch (OperationCanceledException) { return; }
        }
    }

    async Task FollowAsync(CancellationToken ct)
    {
        long position;
        if (_state.Get(PositionKey) is { } stored) position = (long)K.ReadBigEndian(stored);
        else
        {
            position = (await rooms.FederationFeedAsync(new FederationFeedRequest { After = -1 }, cancellationToken: ct)).Position;
            Save(position);
        }
        while (!ct.IsCancellationRequested)
        {
            var reply = await rooms.FederationFeedAsync(new FederationFeedRequest { After = position, Limit = BatchLimit }, cancellationToken: ct);
            foreach (var e in reply.Events)
                queue.EnqueuePdu(e.Destinations, e.RoomId, RequestJson.ParseObject(e.Pdu, "PDU"));
            if (reply.Position != position)
            {
                position = reply.Position;
                // A stretch with nothing to send (rooms with no other server) need not be written down at once: after
                // a crash it is read again and again yields nothing. So local traffic costs no durable write per event.
                if (reply.Events.Count > 0 || Environment.TickCount64 - _savedAt > IdleSaveMs) Save(position);
            }
            if (reply.Events.Count >= BatchLimit) continue;
            await _advanced.WaitAsync(TimeSpan.FromSeconds(5), ct);
        }
    }

    /// <summary>How often a position that only skipped events with no destination is written.</summary>
    const long IdleSaveMs = 30_000;
    long _savedAt;

    void Save(long position)
    {
        _savedAt = Environment.TickCount64;
        using var b = store.CreateBatch();
        b.Put(FederationFamilies.Feed, PositionKey, K.BigEndian((ulong)position));
        store.Write(b);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Following the rooms feed failed, retrying: {Error}")]
    static partial void LogFailed(ILogger log, string error);
}

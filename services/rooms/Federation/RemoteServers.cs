using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Events;
using Conduit.Common.Http;
using Conduit.Protos.Federation;

namespace Conduit.Rooms;

/// <summary>An answer of another server: status 0 when it could not be reached.</summary>
public sealed record RemoteReply(int Status, JsonObject? Body, string? Error)
{
    public bool Ok => Status is >= 200 and < 300 && Body is not null;
    public string ErrCode => Body?["errcode"] is JsonValue v && v.TryGetValue(out string? c) ? c : "";
    public override string ToString() => Status == 0 ? Error ?? "unreachable" : $"{Status} {ErrCode}".Trim();
}

/// <summary>
/// Other servers as the rooms service reaches them: requests go through the federation service (which signs them and
/// resolves the server), and the verify keys that PDUs' signatures name come from it too (protos/federation.proto).
/// </summary>
public sealed class RemoteServers(Protos.Federation.Federation.FederationClient federation)
{
    /// <summary>How long a request waits for an answer unless told otherwise (the federation service's default).</summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(60);

    public async Task<RemoteReply> SendAsync(string destination, string method, string path, JsonNode? body, CancellationToken ct, TimeSpan? timeout = null)
    {
        var reply = await federation.SendRequestAsync(new OutboundRequest
        {
            Destination = destination, Method = method, Path = path, Body = body?.ToJsonString() ?? "",
            TimeoutMs = timeout is { } t ? (int)t.TotalMilliseconds : 0,
        }, cancellationToken: ct);
        JsonObject? json = null;
        if (reply.Body.Length > 0)
            try { json = RequestJson.ParseObject(reply.Body, "answer"); }
            catch (MatrixException) { }
        return new(reply.Status, json, reply.Error.Length > 0 ? reply.Error : null);
    }

    /// <summary>The keys that the signatures of <paramref name="pdus"/> name, each looked up for the event's origin_server_ts.</summary>
    public async Task<KeyRing> KeysForAsync(IEnumerable<JsonObject> pdus, CancellationToken ct)
    {
        var request = new ResolveKeysRequest();
        foreach (var pdu in pdus)
        {
            if (pdu["signatures"] is not JsonObject sigs) continue;
            var ts = pdu["origin_server_ts"] is JsonValue v && v.TryGetValue(out long t) ? t : 0;
            foreach (var (server, byServer) in sigs)
                if (byServer is JsonObject keys && Ids.IsValidServerName(server))
                    foreach (var (keyId, _) in keys)
                        if (keyId.StartsWith("ed25519:", StringComparison.Ordinal))
                            request.Keys.Add(new KeyRef { ServerName = server, KeyId = keyId, ValidAt = ts });
        }
        if (request.Keys.Count == 0) return new KeyRing([]);
        var reply = await federation.ResolveKeysAsync(request, cancellationToken: ct);
        return new KeyRing(reply.Keys.ToDictionary(k => (k.ServerName, k.KeyId), k => k));
    }
}

/// <summary>Verify keys of other servers, with the room versions' rule on when a key may sign an event.</summary>
public sealed class KeyRing(Dictionary<(string Server, string KeyId), VerifyKey> keys)
{
    /// <summary>
    /// The key lookup for one event: room versions 5 and later accept a key only if it was valid at the event's
    /// origin_server_ts (rooms/v5.md, "Signing key validity period"); earlier ones ignore valid_until_ts. An old key
    /// (expired_ts set) signs only events from before it expired, in every version.
    /// </summary>
    public Func<string, string, byte[]?> For(JsonObject pdu, RoomVersion version)
    {
        var ts = pdu["origin_server_ts"] is JsonValue v && v.TryGetValue(out long t) ? t : 0;
        var enforceValidity = version.Id is not ("1" or "2" or "3" or "4");
        return (server, keyId) =>
        {
            if (!keys.TryGetValue((server, keyId), out var k)) return null;
            if (k.ExpiredTs != 0 && ts >= k.ExpiredTs) return null;
            if (enforceValidity && k.ExpiredTs == 0 && ts > k.ValidUntilTs) return null;
            return k.PublicKey.ToByteArray();
        };
    }
}

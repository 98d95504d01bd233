using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Http;
using Conduit.Protos.Rooms;
using Conduit.Protos.Sync;
using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace Conduit.Sync;

/// <summary>
/// Typing and read receipts across servers (spec: server-server-api, "Typing Notifications", "Receipts"): a local
/// user's change goes to the other servers with a member in the room as an EDU (through the federation service's
/// queue; typing and receipts are not kept across its restarts); the EDUs other servers send are applied here when
/// their user is on the sending server and joined to the room (and, for a receipt, the event is in the room).
/// Private receipts never leave the server.
/// </summary>
public sealed partial class FederatedEphemeral(ReceiptStore receipts, TypingState typing, PresenceState presence, SyncNotifier notifier, Rooms.RoomsClient rooms,
    Protos.Federation.Federation.FederationClient federation, GlobalConfig config, ILogger<FederatedEphemeral> log, Appservices.AppserviceEphemeral appservices)
{
    /// <summary>Tells the servers that share a room with a local user of their presence (m.presence, spec: "Presence");
    /// <paramref name="shared"/> are the users who share a room with them (rooms SharedUsers).</summary>
    public async Task PresenceChangedAsync(string userId, IEnumerable<string> shared, CancellationToken ct)
    {
        if (!config.AllowFederation || !config.AllowPresence || Ids.ServerOf(userId) != config.ServerName || presence.Get(userId) is not { } p) return;
        var servers = OtherServers(shared).ToList();
        if (servers.Count == 0) return;
        var now = presence.Now;
        var entry = new JsonObject
        {
            ["user_id"] = userId, ["presence"] = p.Presence, ["last_active_ago"] = Math.Max(0, now - p.LastActiveTs),
            ["currently_active"] = p.CurrentlyActive(now),
        };
        if (p.StatusMsg is not null) entry["status_msg"] = p.StatusMsg;
        await QueueAsync(servers, new JsonObject
        {
            ["edu_type"] = "m.presence",
            ["content"] = new JsonObject { ["push"] = new JsonArray(entry) },
        }, ct);
    }

    /// <summary>How long a remote user's typing lasts without a renewal (Synapse's federation timeout).</summary>
    const int RemoteTypingMs = 60_000;

    IEnumerable<string> OtherServers(IEnumerable<string> joined)
        => joined.Select(Ids.ServerOf).Where(s => s != config.ServerName).Distinct(StringComparer.Ordinal);

    /// <summary>Tells the other servers in the room that a local user started or stopped typing.</summary>
    public Task TypingChangedAsync(string roomId, string userId, bool isTyping, IEnumerable<string> joined, CancellationToken ct)
        => QueueAsync(OtherServers(joined), new JsonObject
        {
            ["edu_type"] = "m.typing",
            ["content"] = new JsonObject { ["room_id"] = roomId, ["user_id"] = userId, ["typing"] = isTyping },
        }, ct);

    /// <summary>Tells the other servers in the room of a local user's public read receipt.</summary>
    public Task ReceiptAsync(string roomId, string userId, string eventId, string threadId, long ts, IEnumerable<string> joined, CancellationToken ct)
    {
        var data = new JsonObject { ["ts"] = ts };
        if (threadId.Length > 0) data["thread_id"] = threadId;
        return QueueAsync(OtherServers(joined), new JsonObject
        {
            ["edu_type"] = "m.receipt",
            ["content"] = new JsonObject
            {
                [roomId] = new JsonObject { [ReceiptTypes.Read] = new JsonObject { [userId] = new JsonObject { ["event_ids"] = new JsonArray(eventId), ["data"] = data } } },
            },
        }, ct);
    }

    async Task QueueAsync(IEnumerable<string> destinations, JsonObject edu, CancellationToken ct)
    {
        var list = destinations.ToList();
        if (list.Count == 0 || !config.AllowFederation) return;
        try
        {
            await federation.QueueEduAsync(new Protos.Federation.QueueEduRequest { Destinations = { list }, Edu = edu.ToJsonString() }, cancellationToken: ct);
        }
        catch (RpcException e)
        {
            // Ephemeral: losing one is better than failing the client's request.
            LogQueueFailed(log, e.Status.Detail);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Queueing an EDU for other servers failed: {Error}")]
    static partial void LogQueueFailed(ILogger log, string error);

    /// <summary>Applies the EDUs of a transaction; those that do not check out are left out silently (as Synapse does).</summary>
    public async Task<int> ReceiveAsync(string origin, IEnumerable<string> edus, CancellationToken ct)
    {
        var applied = 0;
        foreach (var text in edus)
        {
            JsonObject edu;
            try { edu = RequestJson.ParseObject(text, "EDU"); }
            catch (MatrixException) { continue; }
            var content = edu["content"] as JsonObject;
            if (content is null) continue;
            switch (Str(edu, "edu_type"))
            {
                case "m.typing":
                    if (await TypingAsync(origin, content, ct)) applied++;
                    break;
                case "m.receipt":
                    applied += await ReceiptsAsync(origin, content, ct);
                    break;
                case "m.presence" when config.AllowPresence:
                    applied += Presence(origin, content);
                    break;
            }
        }
        return applied;
    }

    /// <summary>m.presence: each pushed user must be on the origin; their state is taken as announced.</summary>
    int Presence(string origin, JsonObject content)
    {
        var applied = 0;
        foreach (var p in (content["push"] as JsonArray ?? []).OfType<JsonObject>().Take(1000))
        {
            if (Str(p, "user_id") is not { } userId || !Ids.IsUserId(userId) || Ids.ServerOf(userId) != origin) continue;
            if (Str(p, "presence") is not { } state || !PresenceStates.IsValid(state)) continue;
            var ago = p["last_active_ago"] is JsonValue v && v.TryGetValue(out long a) ? a : 0;
            var status = Str(p, "status_msg") is { Length: <= 2048 } msg ? msg : null;
            presence.SetRemote(userId, state, status, ago);
            applied++;
        }
        return applied;
    }

    static string? Str(JsonObject? o, string key) => o?[key] is JsonValue v && v.TryGetValue(out string? s) ? s : null;

    async Task<RoomEphemeralReply?> JoinedCheck(string origin, string? userId, string? roomId, string? eventId, CancellationToken ct)
    {
        if (userId is null || roomId is null || !Ids.IsUserId(userId) || Ids.ServerOf(userId) != origin || !Ids.IsRoomId(roomId)) return null;
        if (eventId is not null && !Ids.IsEventId(eventId)) return null;
        var r = await rooms.RoomEphemeralAsync(new RoomEphemeralRequest { UserId = userId, RoomId = roomId, EventId = eventId ?? "", OriginServer = origin }, cancellationToken: ct);
        // Server ACLs apply to EDUs too (spec: server-server-api, "Server Access Control Lists").
        if (!r.RoomExists || r.ServerDenied || r.Membership != "join" || (eventId is not null && !r.EventFound)) return null;
        return r;
    }

    async Task<bool> TypingAsync(string origin, JsonObject content, CancellationToken ct)
    {
        var roomId = Str(content, "room_id");
        var userId = Str(content, "user_id");
        if (content["typing"] is not JsonValue t || !t.TryGetValue(out bool isTyping)) return false;
        if (await JoinedCheck(origin, userId, roomId, null, ct) is not { } r) return false;
        typing.Set(roomId!, userId!, isTyping, RemoteTypingMs, r.JoinedUserIds);
        return true;
    }

    async Task<int> ReceiptsAsync(string origin, JsonObject content, CancellationToken ct)
    {
        var applied = 0;
        foreach (var (roomId, byType) in content)
        {
            if (byType?[ReceiptTypes.Read] is not JsonObject byUser) continue;
            foreach (var (userId, receipt) in byUser)
            {
                var eventId = receipt?["event_ids"] is JsonArray ids && ids.Count > 0 && ids[0] is JsonValue v && v.TryGetValue(out string? id) ? id : null;
                var data = receipt?["data"] as JsonObject;
                var threadId = Str(data, "thread_id") ?? "";
                if (threadId.Length > 0 && threadId != "main" && !Ids.IsEventId(threadId)) continue;
                if (eventId is null || await JoinedCheck(origin, userId, roomId, eventId, ct) is not { } r) continue;
                var ts = data?["ts"] is JsonValue tv && tv.TryGetValue(out long tsv) ? tsv : Ids.NowMs();
                if (receipts.Put(roomId, userId, ReceiptTypes.Read, threadId, eventId, r.EventPosition, ts) == 0) continue;
                appservices.Receipt(roomId, userId, ReceiptTypes.Read, threadId, eventId, ts, r.JoinedUserIds);
                foreach (var u in r.JoinedUserIds) notifier.Wake(u);
                applied++;
            }
        }
        return applied;
    }
}

/// <summary>The sync service's gRPC surface (protos/sync.proto).</summary>
public sealed class SyncGrpcService(FederatedEphemeral ephemeral) : Protos.Sync.Sync.SyncBase
{
    public override async Task<ReceiveEdusReply> ReceiveEdus(ReceiveEdusRequest request, ServerCallContext context)
        => new() { Applied = await ephemeral.ReceiveAsync(request.Origin, request.Edus, context.CancellationToken) };
}

using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Http;
using Conduit.Common.Routing;
using Conduit.Protos.Rooms;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Conduit.Sync;

/// <summary>
/// Receipts, read markers and typing (spec: client-server-api, "Receipts", "Read and unread markers", "Typing
/// Notifications"). The rooms service says whether the caller is joined and the event is in the room (RoomEphemeral);
/// receipts are kept in <see cref="ReceiptStore"/>, the fully read marker as m.fully_read room account data, typing in
/// <see cref="TypingState"/>; each change wakes the /sync of whoever it is for.
/// </summary>
public sealed class EphemeralEndpoints(AccountDataStore data, ReceiptStore receipts, TypingState typing, SyncNotifier notifier, Rooms.RoomsClient rooms,
    Push.PushStore push, Push.PushEndpoints pushEndpoints, FederatedEphemeral federated, Appservices.AppserviceEphemeral appservices)
{
    /// <summary>Synapse's default when a client starts typing without a timeout.</summary>
    const int DefaultTypingTimeoutMs = 30_000;

    public void Map(IEndpointRouteBuilder app)
    {
        app.Map(RouteTable.Receipt, Receipt);
        app.Map(RouteTable.ReadMarkers, ReadMarkers);
        app.Map(RouteTable.Typing, Typing);
    }

    static string RoomIdOf(HttpContext ctx)
    {
        var roomId = ctx.Route("roomId");
        if (!Ids.IsRoomId(roomId)) throw Err.InvalidParam("Invalid room ID");
        return roomId;
    }

    /// <summary>The caller must be joined to the room; with <paramref name="eventId"/>, the event must be in its timeline.</summary>
    async Task<RoomEphemeralReply> Check(HttpContext ctx, string userId, string roomId, string? eventId)
    {
        if (eventId is not null && !Ids.IsEventId(eventId)) throw Err.InvalidParam("Invalid event ID");
        var r = await rooms.RoomEphemeralAsync(new RoomEphemeralRequest { UserId = userId, RoomId = roomId, EventId = eventId ?? "" },
            cancellationToken: ctx.RequestAborted);
        if (!r.RoomExists || r.Membership != "join") throw Err.Forbidden("You are not joined to this room");
        if (eventId is not null && !r.EventFound) throw Err.NotFound("Unknown event in this room");
        return r;
    }

    // ---- POST /rooms/{roomId}/receipt/{receiptType}/{eventId}

    async Task Receipt(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var roomId = RoomIdOf(ctx);
        var type = ctx.Route("receiptType");
        if (type is not (ReceiptTypes.Read or ReceiptTypes.ReadPrivate or ReceiptTypes.FullyRead))
            throw Err.InvalidParam("Receipt type must be m.read, m.read.private or m.fully_read");
        var body = await ctx.Request.ReadJsonObjectAsync();
        var threadId = ThreadIdOf(body, type);
        var eventId = ctx.Route("eventId");
        var r = await Check(ctx, c.UserId, roomId, eventId);
        if (Apply(c.UserId, roomId, type, threadId, eventId, r) is { } ts)
            await federated.ReceiptAsync(roomId, c.UserId, eventId, threadId, ts, r.JoinedUserIds, ctx.RequestAborted);
        await ctx.Response.WriteJsonAsync(new JsonObject());
    }

    /// <summary>Empty when unthreaded; "main" or a thread root's event ID; anything else M_INVALID_PARAM.</summary>
    static string ThreadIdOf(JsonObject body, string type)
    {
        if (!body.TryGetPropertyValue("thread_id", out var node)) return "";
        if (node is not JsonValue v || !v.TryGetValue<string>(out var threadId) || threadId.Length == 0)
            throw Err.InvalidParam("thread_id field must be a non-empty string");
        if (type == ReceiptTypes.FullyRead) throw Err.InvalidParam("thread_id is not compatible with m.fully_read");
        if (threadId != "main" && !Ids.IsEventId(threadId)) throw Err.InvalidParam("thread_id must be 'main' or an event ID");
        return threadId;
    }

    /// <summary>Stores a receipt or marker; the time of a public receipt that changed something (for other servers), else null.</summary>
    long? Apply(string userId, string roomId, string type, string threadId, string eventId, RoomEphemeralReply r)
    {
        if (type == ReceiptTypes.FullyRead)
        {
            // The fully read marker is room account data the client cannot set directly (spec: "Read markers").
            data.Put(userId, roomId, "m.fully_read", new JsonObject { ["event_id"] = eventId });
            notifier.Wake(userId);
            return null;
        }
        var ts = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        // The badge update is for pushers only: users without any spare the two count reads.
        var unreadBefore = push.HasPushers(userId) ? push.Counts(userId, roomId).Notifications : 0;
        if (receipts.Put(roomId, userId, type, threadId, eventId, r.EventPosition, ts) == 0) return null;
        // Notifications up to the receipt are read (spec: "Marking notifications as read"); an unthreaded receipt reads
        // every thread, so what it covers is dropped for good.
        if (threadId.Length == 0) push.ForgetReadUpTo(userId, roomId, r.EventPosition);
        if (unreadBefore > 0 && push.Counts(userId, roomId).Notifications != unreadBefore) pushEndpoints.BadgeUpdate(userId);
        appservices.Receipt(roomId, userId, type, threadId, eventId, ts, r.JoinedUserIds);
        // A private receipt is news for its owner only.
        if (type == ReceiptTypes.ReadPrivate)
        {
            notifier.Wake(userId);
            return null;
        }
        foreach (var u in r.JoinedUserIds) notifier.Wake(u);
        return ts;
    }

    // ---- POST /rooms/{roomId}/read_markers

    async Task ReadMarkers(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var roomId = RoomIdOf(ctx);
        var body = await ctx.Request.ReadJsonObjectAsync();
        var markers = new List<(string Type, string EventId)>();
        foreach (var type in (string[])[ReceiptTypes.FullyRead, ReceiptTypes.Read, ReceiptTypes.ReadPrivate])
            if (body.OptString(type) is { } eventId) markers.Add((type, eventId));
        // Every marker is checked before any is applied: a refused request changes nothing.
        var checks = new List<RoomEphemeralReply>();
        foreach (var (_, eventId) in markers) checks.Add(await Check(ctx, c.UserId, roomId, eventId));
        if (markers.Count == 0) await Check(ctx, c.UserId, roomId, null);
        for (var i = 0; i < markers.Count; i++)
            if (Apply(c.UserId, roomId, markers[i].Type, "", markers[i].EventId, checks[i]) is { } ts)
                await federated.ReceiptAsync(roomId, c.UserId, markers[i].EventId, "", ts, checks[i].JoinedUserIds, ctx.RequestAborted);
        await ctx.Response.WriteJsonAsync(new JsonObject());
    }

    // ---- PUT /rooms/{roomId}/typing/{userId}

    async Task Typing(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var roomId = RoomIdOf(ctx);
        if (ctx.Route("userId") != c.UserId) throw Err.Forbidden("You may only set your own typing state");
        var body = await ctx.Request.ReadJsonObjectAsync();
        var isTyping = body.OptBool("typing") ?? throw Err.MissingParam("Missing 'typing'");
        var timeout = body.OptLong("timeout") ?? DefaultTypingTimeoutMs;
        if (timeout < 0) throw Err.InvalidParam("timeout must not be negative");
        var r = await Check(ctx, c.UserId, roomId, null);
        typing.Set(roomId, c.UserId, isTyping, (int)Math.Min(timeout, TypingState.MaxTimeoutMs), r.JoinedUserIds);
        await federated.TypingChangedAsync(roomId, c.UserId, isTyping, r.JoinedUserIds, ctx.RequestAborted);
        await ctx.Response.WriteJsonAsync(new JsonObject());
    }
}

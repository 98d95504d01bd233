using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Http;
using Conduit.Common.Routing;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Conduit.Rooms;

/// <summary>
/// Sending: PUT /send (idempotent per device and transaction ID), PUT and GET /state, and PUT /redact.
/// </summary>
public sealed class EventEndpoints(RoomStore rooms, EventSender sender, ClientEvents format, Visibility visibility, RoomParams param, GlobalConfig config, RateLimits limits)
{
    public void Map(IEndpointRouteBuilder app)
    {
        app.Map(RouteTable.Send, Send);
        app.Map(RouteTable.StateEvent, StateEvent);
        app.Map(RouteTable.StateEventNoKey, StateEvent);
        app.Map(RouteTable.Redact, Redact);
    }

    async Task Send(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var roomId = RoomParams.RoomId(ctx);
        var type = ctx.Route("eventType");
        var txnId = ctx.Route("txnId");
        var content = await ctx.Request.ReadJsonObjectAsync();
        param.RequireRoom(roomId);
        var txn = new TxnRef(c.UserId, c.DeviceId, txnId);
        // A redaction sent as an event names its target in content.redacts (rooms/v11.md; MSC2174, MSC4169 for older
        // versions) and is held to the same checks as /redact, which it then takes effect like.
        var e = type == "m.room.redaction"
            ? RedactionOf(c, roomId, EventContent.RedactedEventId(content.OptString("redacts")), content)
            : new NewEvent(type, null, content);
        RequireThreadRoot(content, roomId);
        Limit(ctx, c, txn);
        var sent = await sender.SendAsync(roomId, c.UserId, [e], txn, ctx.RequestAborted);
        await ctx.Response.WriteJsonAsync(new JsonObject { ["event_id"] = sent[0].EventId });
    }

    // Threading, "Validation of m.thread relationships": a thread cannot start from an event that has a relation
    // itself (400 M_UNKNOWN, as the spec says for want of a code).
    void RequireThreadRoot(JsonObject content, string roomId)
    {
        if (Rules.RelatesTo.Of(content) is (Rules.RelatesTo.Thread, var rootId) && rooms.Event(rootId) is { } root && root.RoomId == roomId
            && Rules.RelatesTo.Of(root.Content) is not null)
            throw Err.Unknown("Cannot start a thread from an event with a relation");
    }

    // rc_message. A retried transaction is answered from its first result, so it costs nothing and is never refused.
    void Limit(HttpContext ctx, Caller c, TxnRef? txn)
    {
        if (txn is null || rooms.TxnEvent(txn.UserId, txn.DeviceId, txn.TxnId) is null)
            limits.Take(ctx, c, new Charge(limits.Message, c.UserId));
    }

    async Task StateEvent(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var roomId = RoomParams.RoomId(ctx);
        var type = ctx.Route("eventType");
        var stateKey = ctx.Route("stateKey");
        param.RequireRoom(roomId);
        if (HttpMethods.IsGet(ctx.Request.Method))
        {
            var ev = visibility.VisibleStateEvent(c.UserId, roomId, type, stateKey) ?? throw Err.NotFound("State event not found");
            var formatted = format.Format(ev);
            if (ctx.Request.Query("format") == "event") await ctx.Response.WriteJsonAsync(formatted);
            else await ctx.Response.WriteJsonAsync(formatted["content"]!.DeepClone());
            return;
        }
        var content = await ctx.Request.ReadJsonObjectAsync();
        if (type == "m.room.create") throw Err.Forbidden("The create event cannot be replaced");
        if (type == "m.room.member")
        {
            // Membership changes go through the membership endpoints' checks. Here a user may only change their own
            // member event without changing the membership: a display name or avatar for this room (Element does this).
            var current = rooms.MembershipOf(c.UserId, roomId)?.State;
            var membership = content.OptString("membership") ?? current;
            if (stateKey != c.UserId || current is null || membership != current)
                throw Err.Forbidden("Use the membership endpoints to change membership");
            content["membership"] = membership;
        }
        if (type == "m.room.canonical_alias") ValidateCanonicalAlias(content, roomId);
        Limit(ctx, c, null);
        // State identical to the current state (same sender, same content) is not sent again: the existing event
        // is the answer, as Synapse does.
        if (rooms.StateEvent(roomId, type, stateKey) is { } existing && existing.Sender == c.UserId && existing.Meta["redacted_by"] is null
            && JsonNode.DeepEquals(existing.Content, content))
        {
            await ctx.Response.WriteJsonAsync(new JsonObject { ["event_id"] = existing.EventId });
            return;
        }
        var sent = await sender.SendAsync(roomId, c.UserId, [new NewEvent(type, stateKey, content)], null, ctx.RequestAborted);
        await ctx.Response.WriteJsonAsync(new JsonObject { ["event_id"] = sent[0].EventId });
    }

    // Spec: "m.room.canonical_alias": the server must check that the aliases point to the room (M_BAD_ALIAS). The
    // shape of the content (strings, alias grammar) is EventContent's to check when the event is sent.
    void ValidateCanonicalAlias(JsonObject content, string roomId)
    {
        var aliases = ContentField.Strings(content, "alt_aliases").Prepend(ContentField.String(content, "alias")).OfType<string>();
        foreach (var alias in aliases)
            if (Ids.ServerOf(alias) == config.ServerName && Ids.TrySplit(alias, '#', out _, out _) && rooms.AliasTarget(alias) != roomId)
                throw new MatrixException("M_BAD_ALIAS", 400, $"{alias} does not point to this room");
    }

    async Task Redact(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var roomId = RoomParams.RoomId(ctx);
        var eventId = EventContent.RedactedEventId(ctx.Route("eventId"));
        var body = await ctx.Request.ReadJsonObjectAsync();
        param.RequireRoom(roomId);
        var content = new JsonObject();
        if (body.OptString("reason") is { } reason) content["reason"] = reason;
        var redaction = RedactionOf(c, roomId, eventId, content);
        var txn = new TxnRef(c.UserId, c.DeviceId, "redact:" + ctx.Route("txnId"));
        Limit(ctx, c, txn);
        var sent = await sender.SendAsync(roomId, c.UserId, [redaction], txn, ctx.RequestAborted);
        await ctx.Response.WriteJsonAsync(new JsonObject { ["event_id"] = sent[0].EventId });
    }

    /// <summary>
    /// The redaction of <paramref name="eventId"/>, after /redact's checks, as Synapse makes them: an event this
    /// server does not have may be redacted (the redaction applies if it arrives over federation), one of another
    /// room may not (400), the room's create event never (403), and someone else's only with the redact level.
    /// </summary>
    NewEvent RedactionOf(Caller c, string roomId, string eventId, JsonObject content)
    {
        if (rooms.Event(eventId) is { } target)
        {
            if (target.RoomId != roomId) throw Err.InvalidParam("Cannot redact an event from a different room");
            if (target.Type == "m.room.create") throw Err.Forbidden("The create event cannot be redacted");
            if (!AuthRules.MayRedact(c.UserId, target.Sender, rooms.PowerLevelsOf(roomId))) throw Err.Forbidden("You do not have the power to redact this event");
        }
        return new NewEvent("m.room.redaction", null, content, eventId);
    }
}

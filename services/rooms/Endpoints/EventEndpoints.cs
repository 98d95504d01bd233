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
        Limit(ctx, c, txn);
        var sent = await sender.SendAsync(roomId, c.UserId, [new NewEvent(type, null, content)], txn, ctx.RequestAborted);
        await ctx.Response.WriteJsonAsync(new JsonObject { ["event_id"] = sent[0].EventId });
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

    // Spec: "m.room.canonical_alias": the server must check that the aliases point to the room (M_BAD_ALIAS).
    void ValidateCanonicalAlias(JsonObject content, string roomId)
    {
        var aliases = new List<string>();
        if (content.OptString("alias") is { } a) aliases.Add(a);
        foreach (var n in content.OptArray("alt_aliases") ?? [])
            aliases.Add(n is JsonValue v && v.TryGetValue<string>(out var s) ? s : throw Err.BadJson("alt_aliases must be strings"));
        foreach (var alias in aliases)
        {
            if (!Ids.TrySplit(alias, '#', out _, out _)) throw Err.InvalidParam($"Invalid alias {alias}");
            if (Ids.ServerOf(alias) == config.ServerName && rooms.AliasTarget(alias) != roomId)
                throw new MatrixException("M_BAD_ALIAS", 400, $"{alias} does not point to this room");
        }
    }

    async Task Redact(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var roomId = RoomParams.RoomId(ctx);
        var eventId = ctx.Route("eventId");
        var body = await ctx.Request.ReadJsonObjectAsync();
        param.RequireRoom(roomId);
        // As Synapse: an event this server does not have may be redacted (the redaction applies if it arrives), one
        // of another room may not (400), and the room's create event never (403).
        if (rooms.Event(eventId) is { } target)
        {
            if (target.RoomId != roomId) throw Err.InvalidParam("Cannot redact an event from a different room");
            if (target.Type == "m.room.create") throw Err.Forbidden("The create event cannot be redacted");
            if (!AuthRules.MayRedact(c.UserId, target.Sender, rooms.PowerLevelsOf(roomId))) throw Err.Forbidden("You do not have the power to redact this event");
        }
        var content = new JsonObject();
        if (body.OptString("reason") is { } reason) content["reason"] = reason;
        var txn = new TxnRef(c.UserId, c.DeviceId, "redact:" + ctx.Route("txnId"));
        Limit(ctx, c, txn);
        var sent = await sender.SendAsync(roomId, c.UserId, [new NewEvent("m.room.redaction", null, content, eventId)], txn, ctx.RequestAborted);
        await ctx.Response.WriteJsonAsync(new JsonObject { ["event_id"] = sent[0].EventId });
    }
}

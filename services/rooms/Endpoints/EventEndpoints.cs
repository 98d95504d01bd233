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
public sealed class EventEndpoints(RoomStore rooms, EventSender sender, ClientEvents format, Visibility visibility, RoomParams param, GlobalConfig config)
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
        var sent = await sender.SendAsync(roomId, c.UserId, [e], txn, ctx.RequestAborted);
        await ctx.Response.WriteJsonAsync(new JsonObject { ["event_id"] = sent[0].EventId });
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
            // Membership goes through the membership endpoints' checks; only profile updates of one's own join pass here.
            if (stateKey != c.UserId || content.OptString("membership") is not { } m || m != rooms.MembershipOf(c.UserId, roomId)?.State)
                throw Err.Forbidden("Use the membership endpoints to change membership");
        }
        if (type == "m.room.canonical_alias") ValidateCanonicalAlias(content, roomId);
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
        var sent = await sender.SendAsync(roomId, c.UserId, [RedactionOf(c, roomId, eventId, content)],
            new TxnRef(c.UserId, c.DeviceId, "redact:" + ctx.Route("txnId")), ctx.RequestAborted);
        await ctx.Response.WriteJsonAsync(new JsonObject { ["event_id"] = sent[0].EventId });
    }

    /// <summary>
    /// A redaction of <paramref name="eventId"/> by the caller: the target must be an event of this room the caller
    /// can see (else M_NOT_FOUND), and theirs or within their redact level (v11 leaves this check to the server
    /// applying the redaction, rooms/v11.md "Handling redactions").
    /// </summary>
    NewEvent RedactionOf(Caller c, string roomId, string eventId, JsonObject content)
    {
        var target = rooms.Event(eventId);
        if (target is null || target.RoomId != roomId || !visibility.CanSee(c.UserId, target)) throw Err.NotFound("Event not found");
        if (!AuthRules.MayRedact(c.UserId, target.Sender, rooms.PowerLevelsOf(roomId))) throw Err.Forbidden("You do not have the power to redact this event");
        return new NewEvent("m.room.redaction", null, content, eventId);
    }
}

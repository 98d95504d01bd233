using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Http;
using Conduit.Common.Routing;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Conduit.Rooms;

/// <summary>Room aliases (spec: client-server-api, "Room aliases"): PUT, GET and DELETE /directory/room/{alias}, and /rooms/{id}/aliases.</summary>
public sealed class AliasEndpoints(RoomStore rooms, EventSender sender, Visibility visibility, RoomParams param, AliasLookup aliases, GlobalConfig config)
{
    public void Map(IEndpointRouteBuilder app)
    {
        app.Map(RouteTable.Alias, AliasEndpoint);
        app.Map(RouteTable.RoomAliases, RoomAliases);
    }

    async Task AliasEndpoint(HttpContext ctx)
    {
        var alias = ctx.Route("roomAlias");
        if (!Ids.TrySplit(alias, '#', out _, out _)) throw Err.InvalidParam("Invalid room alias");
        switch (ctx.Request.Method)
        {
            case "GET":
                var roomId = await aliases.TargetAsync(alias, ctx.RequestAborted) ?? throw Err.NotFound("Room alias not found");
                await ctx.Response.WriteJsonAsync(new JsonObject { ["room_id"] = roomId, ["servers"] = new JsonArray(config.ServerName) });
                return;
            case "PUT":
            {
                var c = Caller.Required(ctx);
                var body = await ctx.Request.ReadJsonObjectAsync();
                var target = body.ReqString("room_id");
                if (Ids.ServerOf(alias) != config.ServerName) throw Err.InvalidParam("Aliases of other servers cannot be created here");
                param.RequireRoom(target);
                if (rooms.MembershipOf(c.UserId, target)?.State != "join") throw Err.Forbidden("You are not joined to this room");
                Common.Appservices.AppserviceRegistration.RequireAliasAllowed(config.Appservices(), alias, c.AppserviceId);
                if (!rooms.TryPutAlias(alias, target, c.UserId)) throw new MatrixException("M_ROOM_IN_USE", 409, "Room alias already exists");
                await ctx.Response.WriteJsonAsync(new JsonObject());
                return;
            }
            default:
            {
                var c = Caller.Required(ctx);
                var a = rooms.Alias(alias) ?? throw Err.NotFound("Room alias not found");
                var target = a["room_id"]!.GetValue<string>();
                var pl = rooms.PowerLevelsOf(target);
                var mayDelete = a["creator"]?.GetValue<string>() == c.UserId
                    || (rooms.MembershipOf(c.UserId, target)?.State == "join" && pl.UserLevel(c.UserId) >= pl.EventLevel("m.room.canonical_alias", true));
                if (!mayDelete) throw Err.Forbidden("You may not remove this alias");
                rooms.DeleteAlias(alias, target);
                await RemoveFromCanonicalAlias(c, target, alias, ctx.RequestAborted);
                await ctx.Response.WriteJsonAsync(new JsonObject());
                return;
            }
        }
    }

    /// <summary>
    /// A deleted alias leaves the room's m.room.canonical_alias too (alias and alt_aliases), sent by the deleter, as
    /// Synapse does; if they lack the power to change it the alias is still deleted.
    /// </summary>
    async Task RemoveFromCanonicalAlias(Caller c, string roomId, string alias, CancellationToken ct)
    {
        if (rooms.StateContent(roomId, "m.room.canonical_alias") is not { } current) return;
        var updated = current.DeepClone().AsObject();
        if (updated["alias"] is JsonValue a && a.TryGetValue<string>(out var s) && s == alias) updated.Remove("alias");
        if (updated["alt_aliases"] is JsonArray alt)
        {
            var kept = alt.Where(n => !(n is JsonValue v && v.TryGetValue<string>(out var x) && x == alias)).Select(n => n?.DeepClone()).ToArray();
            if (kept.Length != alt.Count) updated["alt_aliases"] = new JsonArray(kept);
        }
        if (JsonNode.DeepEquals(updated, current)) return;
        try
        {
            await sender.SendAsync(roomId, c.UserId, [new NewEvent("m.room.canonical_alias", "", updated)], null, ct);
        }
        catch (MatrixException)
        {
            // Not allowed to change the canonical alias: the alias is gone all the same.
        }
    }

    async Task RoomAliases(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var roomId = param.KnownRoomId(ctx);
        if (visibility.VisibleState(c.UserId, roomId) is null) throw Err.Forbidden("You are not allowed to see this room");
        await ctx.Response.WriteJsonAsync(new JsonObject { ["aliases"] = new JsonArray(rooms.AliasesOf(roomId).Select(a => (JsonNode)a).ToArray()) });
    }
}

using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Http;
using Conduit.Common.Routing;
using Conduit.Protos.Rooms;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Conduit.Sync;

/// <summary>
/// Room tags (spec: client-server-api, "Room Tagging"): the room's m.tag account data, {"tags": {name: {order?}}},
/// read and changed one tag at a time; a change reaches the user's other devices in /sync's room account_data.
/// </summary>
public sealed class TagEndpoints(AccountDataStore data, SyncNotifier notifier, Rooms.RoomsClient rooms)
{
    const string TagType = "m.tag";
    readonly Lock _write = new();

    public void Map(IEndpointRouteBuilder app)
    {
        app.Map(RouteTable.RoomTags, GetTags);
        app.Map(RouteTable.RoomTag, ChangeTag);
    }

    static (Caller Caller, string RoomId) Target(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        if (ctx.Route("userId") != c.UserId) throw Err.Forbidden("You may only access your own tags");
        var roomId = ctx.Route("roomId");
        if (!Ids.IsRoomId(roomId)) throw Err.InvalidParam("Invalid room ID");
        return (c, roomId);
    }

    JsonObject Tags(string userId, string roomId)
        => data.Get(userId, roomId, TagType)?["tags"] as JsonObject is { } t ? (JsonObject)t.DeepClone() : new JsonObject();

    async Task GetTags(HttpContext ctx)
    {
        var (c, roomId) = Target(ctx);
        await ctx.Response.WriteJsonAsync(new JsonObject { ["tags"] = Tags(c.UserId, roomId) });
    }

    async Task ChangeTag(HttpContext ctx)
    {
        var (c, roomId) = Target(ctx);
        var tag = ctx.Route("tag");
        if (tag.Length == 0 || !Ids.FitsBytes(tag)) throw Err.InvalidParam("A tag is 1 to 255 bytes");
        JsonObject? info = null;
        if (HttpMethods.IsPut(ctx.Request.Method))
        {
            info = await ctx.Request.ReadJsonObjectAsync();
            if (info["order"] is { } order && (order is not JsonValue v || !v.TryGetValue<double>(out var d) || !double.IsFinite(d)))
                throw Err.BadJson("'order' must be a number");
        }
        var m = await rooms.GetMembershipAsync(new GetMembershipRequest { UserId = c.UserId, RoomId = roomId }, cancellationToken: ctx.RequestAborted);
        if (!m.RoomExists || m.Membership.Length == 0) throw Err.Forbidden("You are not a member of this room");
        bool changed;
        lock (_write)
        {
            var tags = Tags(c.UserId, roomId);
            // Deleting a tag that is not there changes nothing.
            changed = info is not null || tags.Remove(tag);
            if (info is not null) tags[tag] = info;
            if (changed) data.Put(c.UserId, roomId, TagType, new JsonObject { ["tags"] = tags });
        }
        if (changed) notifier.Wake(c.UserId);
        await ctx.Response.WriteJsonAsync(new JsonObject());
    }
}

using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Http;
using Conduit.Common.Routing;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Conduit.Rooms;

/// <summary>
/// What a client asks about rooms besides their events: a room's summary (GET /_matrix/client/v1/room_summary), the
/// rooms two users share (GET /_matrix/client/v1/mutual_rooms), and reports of rooms, events and users, kept for the
/// server's admins (POST /rooms/{id}/report[/{eventId}], /users/{id}/report).
/// </summary>
public sealed class RoomInfoEndpoints(RoomStore rooms, Visibility visibility, RoomParams param)
{
    public void Map(IEndpointRouteBuilder app)
    {
        app.Map(RouteTable.RoomSummary, Summary);
        app.Map(RouteTable.MutualRooms, MutualRooms);
        app.Map(RouteTable.MutualRoomsUnstable, MutualRooms);
        app.Map(RouteTable.ReportRoom, ReportRoom);
        app.Map(RouteTable.ReportEvent, ReportEvent);
        app.Map(RouteTable.ReportUser, ReportUser);
    }

    // ---- room summary (spec: client-server-api, "GET /_matrix/client/v1/room_summary/{roomIdOrAlias}")

    /// <summary>
    /// The summary of a room this server knows, if the caller may see it: they are joined, invited or knocking; or the
    /// room is public, knockable or world-readable (these also without a token, as the spec allows); or it is
    /// restricted to a room the caller is joined to (Synapse's rule). Otherwise the room is not found, so its existence
    /// is not revealed. Rooms only on other servers need federation.
    /// </summary>
    async Task Summary(HttpContext ctx)
    {
        var caller = Caller.Optional(ctx);
        string roomId;
        try { roomId = param.RoomIdOrAlias(ctx); }
        catch (MatrixException e) when (e.ErrCode == "M_NOT_FOUND") { throw Err.NotFound("Room not found"); }
        if (rooms.Info(roomId) is null) throw Err.NotFound("Room not found");
        var membership = caller is null ? null : rooms.MembershipOf(caller.UserId, roomId)?.State;
        if (!MaySummarise(roomId, caller?.UserId, membership)) throw Err.NotFound("Room not found");
        var summary = Summarise(roomId);
        if (membership is not null) summary["membership"] = membership;
        await ctx.Response.WriteJsonAsync(summary);
    }

    bool MaySummarise(string roomId, string? userId, string? membership)
    {
        if (membership is "join" or "invite" or "knock") return true;
        var joinRule = JoinRule.Of(rooms.StateContent(roomId, "m.room.join_rules"));
        if (joinRule is "public" or "knock" or "knock_restricted") return true;
        if (HistoryVisibility.Of(rooms.StateContent(roomId, "m.room.history_visibility")) == HistoryVisibility.WorldReadable) return true;
        return userId is not null && joinRule is "restricted"
            && JoinRule.AllowedRoomIds(rooms.StateContent(roomId, "m.room.join_rules")).Any(r => rooms.MembershipOf(userId, r)?.State == "join");
    }

    /// <summary>The spec's room summary fields from the room's current state (the shape of a public rooms chunk).</summary>
    public JsonObject Summarise(string roomId)
    {
        var o = new JsonObject { ["room_id"] = roomId };
        void Put(string key, string? value) { if (!string.IsNullOrEmpty(value)) o[key] = value; }
        Put("name", ContentField.String(rooms.StateContent(roomId, "m.room.name"), "name"));
        Put("topic", ContentField.String(rooms.StateContent(roomId, "m.room.topic"), "topic"));
        Put("avatar_url", ContentField.String(rooms.StateContent(roomId, "m.room.avatar"), "url"));
        Put("canonical_alias", ContentField.String(rooms.StateContent(roomId, "m.room.canonical_alias"), "alias"));
        o["num_joined_members"] = rooms.JoinedMembers(roomId).Count();
        o["world_readable"] = HistoryVisibility.Of(rooms.StateContent(roomId, "m.room.history_visibility")) == HistoryVisibility.WorldReadable;
        o["guest_can_join"] = ContentField.String(rooms.StateContent(roomId, "m.room.guest_access"), "guest_access") == "can_join";
        var joinRules = rooms.StateContent(roomId, "m.room.join_rules");
        o["join_rule"] = JoinRule.Of(joinRules) ?? "invite";
        var allowed = JoinRule.AllowedRoomIds(joinRules).ToArray();
        if (allowed.Length > 0 && o["join_rule"]!.GetValue<string>() is "restricted" or "knock_restricted")
            o["allowed_room_ids"] = new JsonArray(allowed.Select(r => (JsonNode)r).ToArray());
        var create = rooms.StateContent(roomId, "m.room.create");
        Put("room_type", ContentField.String(create, "type"));
        Put("room_version", rooms.VersionOf(roomId)?.Id);
        Put("encryption", ContentField.String(rooms.StateContent(roomId, "m.room.encryption"), "algorithm"));
        return o;
    }

    // ---- mutual rooms (spec: client-server-api, "Mutual Rooms")

    async Task MutualRooms(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var other = ctx.Request.Query["user_id"].ToString();
        if (other.Length == 0) throw Err.MissingParam("Missing 'user_id'");
        if (!Ids.IsUserId(other)) throw Err.InvalidParam("The user ID provided was invalid");
        if (other == c.UserId) throw Err.InvalidParam("That is your own user ID");
        if (ctx.Request.Query["from"].Count > 0) throw Err.InvalidParam("Unknown 'from' token: this server answers in one batch");
        var mine = rooms.RoomsOf(c.UserId).Where(r => r.M.State == "join").Select(r => r.RoomId).ToHashSet();
        var shared = rooms.RoomsOf(other).Where(r => r.M.State == "join" && mine.Contains(r.RoomId)).Select(r => (JsonNode)r.RoomId).ToArray();
        await ctx.Response.WriteJsonAsync(new JsonObject { ["joined"] = new JsonArray(shared), ["count"] = shared.Length });
    }

    // ---- reports (spec: client-server-api, "Reporting content")

    static async Task<string> Reason(HttpContext ctx, bool required)
    {
        var body = await ctx.Request.ReadJsonObjectAsync();
        if (body["reason"] is null) return required ? throw Err.MissingParam("Missing 'reason'") : "";
        var reason = body.OptString("reason") ?? "";
        return reason.Length <= 1000 ? reason : throw Err.InvalidParam("'reason' is longer than 1000 characters");
    }

    void Store(string reporter, string? roomId, string? eventId, string? userId, string reason)
    {
        var o = new JsonObject { ["reporter"] = reporter };
        if (roomId is not null) o["room_id"] = roomId;
        if (eventId is not null) o["event_id"] = eventId;
        if (userId is not null) o["user_id"] = userId;
        o["reason"] = reason;
        using var b = rooms.Store.CreateBatch();
        b.Put(RoomsFamilies.Reports, RoomsFamilies.ReportKey(Ids.NowMs(), Ids.Random(12)), Encoding.UTF8.GetBytes(o.ToJsonString()));
        rooms.Store.Write(b);
    }

    /// <summary>Any room this server knows may be reported, joined or not (spec); an unknown one is not found.</summary>
    async Task ReportRoom(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var roomId = RoomParams.RoomId(ctx);
        var reason = await Reason(ctx, required: true);
        if (rooms.Info(roomId) is null) throw Err.NotFound("Room not found");
        Store(c.UserId, roomId, null, null, reason);
        await ctx.Response.WriteJsonAsync(new JsonObject());
    }

    /// <summary>An event of a room the caller can see it in; anything else is not found (not revealing it exists).</summary>
    async Task ReportEvent(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var roomId = RoomParams.RoomId(ctx);
        var eventId = ctx.Route("eventId");
        var reason = await Reason(ctx, required: false);
        var e = Ids.IsEventId(eventId) ? rooms.Event(eventId) : null;
        if (e is null || e.RoomId != roomId || !e.InTimeline || rooms.MembershipOf(c.UserId, roomId)?.State != "join" || !visibility.CanSee(c.UserId, e))
            throw Err.NotFound("Event not found");
        Store(c.UserId, roomId, eventId, null, reason);
        await ctx.Response.WriteJsonAsync(new JsonObject());
    }

    /// <summary>An active user of this server (remote users need federation); an unknown one is not found.</summary>
    async Task ReportUser(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var userId = ctx.Route("userId");
        if (!Ids.IsUserId(userId)) throw Err.InvalidParam("Invalid user ID");
        var reason = await Reason(ctx, required: true);
        await param.RequireLocalUser(userId, ctx.RequestAborted);
        Store(c.UserId, null, null, userId, reason);
        await ctx.Response.WriteJsonAsync(new JsonObject());
    }
}

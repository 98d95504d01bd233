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
public sealed class RoomInfoEndpoints(RoomStore rooms, RoomSummaries summaries, Visibility visibility, RoomParams param)
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
    /// The summary of a room this server knows, if the caller may see it (<see cref="RoomSummaries.MaySee"/>; without a
    /// token only public, knockable and world-readable rooms, as the spec allows). Otherwise the room is not found, so
    /// its existence is not revealed. Rooms only on other servers need federation.
    /// </summary>
    async Task Summary(HttpContext ctx)
    {
        var caller = Caller.Optional(ctx);
        string roomId;
        try { roomId = await param.RoomIdOrAliasAsync(ctx); }
        catch (MatrixException e) when (e.ErrCode == "M_NOT_FOUND") { throw Err.NotFound("Room not found"); }
        if (rooms.Info(roomId) is null) throw Err.NotFound("Room not found");
        var membership = caller is null ? null : rooms.MembershipOf(caller.UserId, roomId)?.State;
        if (!summaries.MaySee(roomId, caller?.UserId)) throw Err.NotFound("Room not found");
        var summary = summaries.Summarise(roomId);
        if (membership is not null) summary["membership"] = membership;
        await ctx.Response.WriteJsonAsync(summary);
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

    static async Task<string> Reason(HttpContext ctx, bool required) => (await ReasonAndBody(ctx, required)).Reason;

    static async Task<(string Reason, JsonObject Body)> ReasonAndBody(HttpContext ctx, bool required)
    {
        var body = await ctx.Request.ReadJsonObjectAsync();
        if (body["reason"] is null) return required ? throw Err.MissingParam("Missing 'reason'") : ("", body);
        var reason = body.OptString("reason") ?? "";
        return reason.Length <= 1000 ? (reason, body) : throw Err.InvalidParam("'reason' is longer than 1000 characters");
    }

    long _lastReportTs;

    /// <summary>Now, or a millisecond after the last report if that is not later, so reports sort in the order received.</summary>
    long NextReportTs()
    {
        while (true)
        {
            var last = Interlocked.Read(ref _lastReportTs);
            var ts = Math.Max(Ids.NowMs(), last + 1);
            if (Interlocked.CompareExchange(ref _lastReportTs, ts, last) == last) return ts;
        }
    }

    /// <summary>
    /// Kept under received_ts and a random ID; the admin API names a report by both (<see cref="AdminReportEndpoints"/>).
    /// <paramref name="score"/>: an event report's score (-100 most offensive to 0), which the spec no longer asks for but
    /// clients may still send and Synapse's admin API shows.
    /// </summary>
    void Store(string reporter, string? roomId, string? eventId, string? userId, string reason, long? score = null)
    {
        var o = new JsonObject { ["reporter"] = reporter };
        if (roomId is not null) o["room_id"] = roomId;
        if (eventId is not null) o["event_id"] = eventId;
        if (userId is not null) o["user_id"] = userId;
        o["reason"] = reason;
        if (score is not null) o["score"] = score;
        using var b = rooms.Store.CreateBatch();
        b.Put(RoomsFamilies.Reports, RoomsFamilies.ReportKey(NextReportTs(), Ids.Random(12)), Encoding.UTF8.GetBytes(o.ToJsonString()));
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
        var (reason, body) = await ReasonAndBody(ctx, required: false);
        long? score = body["score"] is null ? null
            : body["score"] is JsonValue v && v.TryGetValue(out long n) && n is >= -100 and <= 0 ? n
            : throw Err.InvalidParam("'score' must be an integer from -100 to 0");
        var e = Ids.IsEventId(eventId) ? rooms.Event(eventId) : null;
        if (e is null || e.RoomId != roomId || !e.InTimeline || rooms.MembershipOf(c.UserId, roomId)?.State != "join" || !visibility.CanSee(c.UserId, e))
            throw Err.NotFound("Event not found");
        Store(c.UserId, roomId, eventId, null, reason, score);
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

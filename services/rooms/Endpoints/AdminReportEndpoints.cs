using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Http;
using Conduit.Common.Routing;
using Conduit.Rooms.Rules;
using K = Conduit.Common.Storage.Keys;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Conduit.Rooms;

/// <summary>
/// The reports part of Synapse's admin API (element-hq.github.io/synapse, "Event Reports", and its room and user
/// reports), for server admins only (<see cref="Caller.Admin"/>): the reports clients made (<see cref="RoomInfoEndpoints"/>,
/// kept in <c>rooms_reports</c>), listed, one at a time, and deleted. A report's ID is its received_ts and its random
/// part, "1700000000000-AbC123", where Synapse has an integer: URL-safe, and it names the stored key, so one report is
/// read or deleted without a scan. A listing reads every stored report of the server (newest first by default) and
/// filters it: reports are few, kept until an admin deletes them.
/// </summary>
public sealed class AdminReportEndpoints(RoomStore rooms)
{
    enum Kind { Event, Room, User }

    sealed record Report(string Id, long ReceivedTs, JsonObject Stored)
    {
        public Kind Kind => Stored["event_id"] is not null ? Kind.Event : Stored["room_id"] is not null ? Kind.Room : Kind.User;
        public string? Field(string name) => Stored[name]?.GetValue<string>();
    }

    public void Map(IEndpointRouteBuilder app)
    {
        app.Map(RouteTable.AdminEventReports, ctx => List(ctx, Kind.Event));
        app.Map(RouteTable.AdminEventReport, ctx => One(ctx, Kind.Event));
        app.Map(RouteTable.AdminRoomReports, ctx => List(ctx, Kind.Room));
        app.Map(RouteTable.AdminRoomReport, ctx => One(ctx, Kind.Room));
        app.Map(RouteTable.AdminUserReports, ctx => List(ctx, Kind.User));
        app.Map(RouteTable.AdminUserReport, ctx => One(ctx, Kind.User));
    }

    static string IdOf(long ts, string reportId) => ts.ToString(CultureInfo.InvariantCulture) + "-" + reportId;

    /// <summary>The stored key an ID names, or null for anything that is not an ID of ours.</summary>
    static byte[]? KeyOf(string id)
    {
        var dash = id.IndexOf('-');
        if (dash <= 0 || dash == id.Length - 1 || !long.TryParse(id.AsSpan(0, dash), NumberStyles.None, CultureInfo.InvariantCulture, out var ts)) return null;
        var random = id[(dash + 1)..];
        return random.All(char.IsAsciiLetterOrDigit) ? RoomsFamilies.ReportKey(ts, random) : null;
    }

    static Report Parse(byte[] key, byte[] value)
    {
        var ts = (long)K.ReadBigEndian(key);
        var id = Encoding.UTF8.GetString(key, 9, key.Length - 9);
        return new Report(IdOf(ts, id), ts, JsonNode.Parse(value)!.AsObject());
    }

    /// <summary>Every stored report, oldest first (the keys begin with received_ts).</summary>
    IEnumerable<Report> All() => rooms.Store.Map(RoomsFamilies.Reports).Scan([]).Select(e => Parse(e.Key, e.Value));

    static bool Contains(string? value, string? filter) => filter is null || (value?.Contains(filter, StringComparison.Ordinal) ?? false);

    /// <summary>
    /// GET /_synapse/admin/v1/{event,room,user}_reports: from (an offset), limit (default 100), dir (b, newest first,
    /// by default); user_id (in the reporter's ID) for every kind; room_id (in the room ID) for event and room reports;
    /// event_sender_user_id (also Synapse's first name for it, sender_user_id: the reported event's sender) for event
    /// reports; target_user_id (in the reported user's ID) for user reports. next_token (next_batch for room reports,
    /// as Synapse names it there) is the next page's from.
    /// </summary>
    async Task List(HttpContext ctx, Kind kind)
    {
        Caller.Admin(ctx);
        var q = ctx.Request;
        var from = (int)q.QueryLong("from", 0, 0, int.MaxValue);
        var limit = (int)q.QueryLong("limit", 100, 0, int.MaxValue);
        var forwards = q.QueryForwards(fallback: false);
        var reporter = q.Query("user_id");
        var room = kind == Kind.User ? null : q.Query("room_id");
        var target = kind == Kind.User ? q.Query("target_user_id") : null;
        var sender = kind == Kind.Event ? q.Query("event_sender_user_id") ?? q.Query("sender_user_id") : null;
        var matching = All().Where(r => r.Kind == kind && Contains(r.Field("reporter"), reporter) && Contains(r.Field("room_id"), room)
                && Contains(r.Field("user_id"), target))
            .Select(r => (Report: r, Event: kind == Kind.Event ? rooms.Event(r.Field("event_id")!) : null))
            .Where(r => sender is null || r.Event?.Sender == sender)
            .ToList();
        if (!forwards) matching.Reverse();
        var page = matching.Skip(from).Take(limit).Select(r => (JsonNode)Describe(r.Report, r.Event, details: false)).ToArray();
        var answer = new JsonObject
        {
            [kind switch { Kind.Event => "event_reports", Kind.Room => "room_reports", _ => "user_reports" }] = new JsonArray(page),
            ["total"] = matching.Count,
        };
        if (from + page.Length < matching.Count) answer[kind == Kind.Room ? "next_batch" : "next_token"] = from + page.Length;
        await ctx.Response.WriteJsonAsync(answer);
    }

    /// <summary>GET (an event report adds event_json, the reported event as stored, if it still is) or DELETE ({}).</summary>
    async Task One(HttpContext ctx, Kind kind)
    {
        Caller.Admin(ctx);
        var reports = rooms.Store.Map(RoomsFamilies.Reports);
        var key = KeyOf(ctx.Route("reportId"));
        var value = key is null ? null : reports.Get(key);
        var report = value is null ? null : Parse(key!, value);
        if (report is null || report.Kind != kind) throw Err.NotFound("Report not found");
        if (HttpMethods.IsDelete(ctx.Request.Method))
        {
            reports.Delete(key!);
            await ctx.Response.WriteJsonAsync(new JsonObject());
            return;
        }
        var e = kind == Kind.Event ? rooms.Event(report.Field("event_id")!) : null;
        await ctx.Response.WriteJsonAsync(Describe(report, e, details: true));
    }

    /// <summary>A report with Synapse's fields for its kind (user_id is the reporter, except target_user_id's user).</summary>
    JsonObject Describe(Report r, StoredEvent? e, bool details)
    {
        var o = new JsonObject { ["id"] = r.Id, ["received_ts"] = r.ReceivedTs };
        if (r.Kind == Kind.User)
        {
            o["user_id"] = r.Field("reporter");
            o["target_user_id"] = r.Field("user_id");
            o["reason"] = r.Field("reason");
            return o;
        }
        var roomId = r.Field("room_id")!;
        o["room_id"] = roomId;
        o["name"] = ContentField.String(rooms.StateContent(roomId, "m.room.name"), "name");
        o["canonical_alias"] = ContentField.String(rooms.StateContent(roomId, "m.room.canonical_alias"), "alias");
        o["user_id"] = r.Field("reporter");
        o["reason"] = r.Field("reason");
        if (r.Kind == Kind.Room)
        {
            o["topic"] = ContentField.String(rooms.StateContent(roomId, "m.room.topic"), "topic");
            return o;
        }
        o["event_id"] = r.Field("event_id");
        o["score"] = r.Stored["score"]?.DeepClone();
        o["sender"] = e?.Sender;
        if (details) o["event_json"] = e?.Pdu.DeepClone();
        return o;
    }
}

using System.Text.Json.Nodes;
using Conduit.Common.Events;
using Conduit.Common.Http;
using Conduit.Common.Routing;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Conduit.Rooms;

/// <summary>
/// Server-side search of room events (spec: client-server-api, "Server Side Search"): every search term must
/// occur (case-insensitively) in content.body, content.name or content.topic, and history visibility decides,
/// event by event, what a user may find. Results come newest first, a page at a time; the scan walks the
/// timelines of the user's rooms directly (no index yet), bounded per request.
/// </summary>
public sealed class SearchEndpoint(RoomStore rooms, Visibility visibility, ClientEvents format)
{
    const int PageSize = 10, ScanBudget = 50_000;
    static readonly string[] AllKeys = ["content.body", "content.name", "content.topic"];

    public void Map(IEndpointRouteBuilder app) => app.Map(RouteTable.Search, Handle);

    async Task Handle(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var body = await ctx.Request.ReadJsonObjectAsync();
        var criteria = body.OptObject("search_categories")?.OptObject("room_events")
            ?? throw Err.MissingParam("Only search_categories.room_events is supported, and it is required");
        var term = criteria.ReqString("search_term");
        var terms = term.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).Select(t => t.ToLowerInvariant()).ToArray();
        if (terms.Length == 0) throw Err.InvalidParam("search_term is empty");
        var keys = criteria.OptStringList("keys")?.ToArray() ?? AllKeys;
        if (keys.Any(k => !AllKeys.Contains(k))) throw Err.InvalidParam("keys may be content.body, content.name and content.topic");
        var filter = criteria.OptObject("filter") is { } f ? RoomEventFilter.Parse(f) : null;
        var orderBy = criteria.OptString("order_by") ?? "rank";
        if (orderBy is not ("rank" or "recent")) throw Err.InvalidParam("order_by must be rank or recent");
        var limit = Math.Clamp(filter?.Limit ?? PageSize, 1, 100);
        var context = criteria.OptObject("event_context");
        var includeState = criteria.OptBool("include_state") ?? false;
        var groupBy = (criteria.OptObject("groupings")?.OptArray("group_by") ?? []).Select(g => (g as JsonObject)?.OptString("key")).OfType<string>().ToList();

        // next_batch is the stream position below which the next page continues.
        var before = long.MaxValue;
        if (ctx.Request.Query("next_batch") is { } nb && (!nb.StartsWith('p') || !long.TryParse(nb[1..], out before)))
            throw Err.InvalidParam("Invalid next_batch");

        var candidates = new List<(StoredEvent Event, int Rank)>();
        var budget = ScanBudget;
        var reachedEnd = true;
        foreach (var (roomId, _) in rooms.RoomsOf(c.UserId).ToList())
        {
            if (filter?.Rooms is { } only && !only.Contains(roomId)) continue;
            if (filter?.NotRooms is { } not && not.Contains(roomId)) continue;
            var window = visibility.ReadableWindow(c.UserId, roomId);
            if (window is null) continue;
            var found = 0;
            foreach (var (pos, id) in rooms.Timeline(roomId, window.After, Math.Min(before - 1, window.UpTo), backwards: true))
            {
                if (--budget < 0 || found > limit) { reachedEnd = false; break; }
                if (rooms.Event(id) is not { } e || Rank(e, terms, keys) is not (> 0 and var rank)) continue;
                if (filter is not null && !filter.Matches(e.Type, e.Sender, roomId)) continue;
                if (!visibility.CanSee(c.UserId, e, window)) continue;
                candidates.Add((e, rank));
                found++;
            }
        }
        // Newest first across rooms; one page; then ranked within the page when asked.
        var page = candidates.OrderByDescending(x => x.Event.Pos).Take(limit).ToList();
        var more = candidates.Count > limit || !reachedEnd;
        if (orderBy == "rank") page = page.OrderByDescending(x => x.Rank).ThenByDescending(x => x.Event.Pos).ToList();

        var results = new JsonArray();
        foreach (var (e, rank) in page)
        {
            var r = new JsonObject { ["rank"] = rank, ["result"] = format.Format(e, c.DeviceId, true, c.UserId) };
            if (context is not null) r["context"] = Context(c.UserId, c.DeviceId, e, context);
            results.Add((JsonNode)r);
        }
        var roomEvents = new JsonObject
        {
            ["count"] = candidates.Count,
            ["highlights"] = new JsonArray(terms.Select(t => (JsonNode)t).ToArray()),
            ["results"] = results,
        };
        if (more && page.Count > 0) roomEvents["next_batch"] = $"p{page.Min(x => x.Event.Pos)}";
        if (includeState)
        {
            var state = new JsonObject();
            foreach (var roomId in page.Select(x => x.Event.RoomId).Distinct())
                if (visibility.VisibleState(c.UserId, roomId!) is { } s)
                    state[roomId!] = new JsonArray(s.Select(ev => (JsonNode)format.Format(ev)).ToArray());
            roomEvents["state"] = state;
        }
        if (groupBy.Count > 0)
        {
            var groups = new JsonObject();
            foreach (var key in groupBy.Where(k => k is "room_id" or "sender").Distinct())
            {
                var byKey = new JsonObject();
                var order = 0;
                foreach (var g in page.GroupBy(x => key == "room_id" ? x.Event.RoomId! : x.Event.Sender))
                    byKey[g.Key] = new JsonObject
                    {
                        ["order"] = ++order,
                        ["results"] = new JsonArray(g.Select(x => (JsonNode)x.Event.EventId).ToArray()),
                    };
                groups[key] = byKey;
            }
            roomEvents["groups"] = groups;
        }
        await ctx.Response.WriteJsonAsync(new JsonObject { ["search_categories"] = new JsonObject { ["room_events"] = roomEvents } });
    }

    /// <summary>How often the terms occur in the searched keys, or 0 unless every term occurs.</summary>
    static int Rank(StoredEvent e, string[] terms, string[] keys)
    {
        var texts = new List<string>(3);
        foreach (var key in keys)
        {
            var field = key["content.".Length..];
            var relevantType = field switch { "body" => e.Type is "m.room.message" or "m.room.encrypted" or "m.sticker", "name" => e.Type == "m.room.name", _ => e.Type == "m.room.topic" };
            if (relevantType && ContentField.String(e.Content, field) is { } s) texts.Add(s.ToLowerInvariant());
        }
        if (texts.Count == 0) return 0;
        var rank = 0;
        foreach (var t in terms)
        {
            var n = texts.Sum(text => Occurrences(text, t));
            if (n == 0) return 0;
            rank += n;
        }
        return rank;
    }

    static int Occurrences(string text, string term)
    {
        var n = 0;
        for (var i = text.IndexOf(term, StringComparison.Ordinal); i >= 0; i = text.IndexOf(term, i + term.Length, StringComparison.Ordinal)) n++;
        return n;
    }

    JsonObject Context(string userId, string deviceId, StoredEvent e, JsonObject options)
    {
        var beforeLimit = (int)Math.Clamp(options.OptLong("before_limit") ?? 5, 0, 20);
        var afterLimit = (int)Math.Clamp(options.OptLong("after_limit") ?? 5, 0, 20);
        var window = visibility.ReadableWindow(userId, e.RoomId!);
        var before = visibility.Around(userId, e, window, backwards: true, beforeLimit);
        var after = visibility.Around(userId, e, window, backwards: false, afterLimit);
        var ctx = new JsonObject
        {
            ["events_before"] = new JsonArray(before.Select(x => (JsonNode)format.Format(x, deviceId)).ToArray()),
            ["events_after"] = new JsonArray(after.Select(x => (JsonNode)format.Format(x, deviceId)).ToArray()),
            ["start"] = $"t{(before.Count > 0 ? before[^1].Pos : e.Pos) - 1}",
            ["end"] = $"t{(after.Count > 0 ? after[^1].Pos : e.Pos)}",
        };
        if (options.OptBool("include_profile") == true)
        {
            var profiles = new JsonObject();
            foreach (var sender in before.Concat(after).Append(e).Select(x => x.Sender).Distinct())
            {
                var member = rooms.StateContent(e.RoomId!, "m.room.member", sender);
                var p = new JsonObject();
                if (MemberContent.DisplayName(member) is { } dn) p["displayname"] = dn;
                if (MemberContent.AvatarUrl(member) is { } av) p["avatar_url"] = av;
                profiles[sender] = p;
            }
            ctx["profile_info"] = profiles;
        }
        return ctx;
    }
}

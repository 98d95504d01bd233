using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Http;
using Conduit.Common.Routing;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Conduit.Rooms;

/// <summary>
/// Reading a room: its state, one event, /context, /messages, members, joined members and timestamp_to_event.
/// History visibility (<see cref="Visibility"/>) decides event by event what the caller may see.
/// </summary>
public sealed class ReadEndpoints(RoomStore rooms, StateStore states, RoomStream stream, ClientEvents format, Visibility visibility, RoomParams param,
    RemoteHistory history, RemoteTimestamps timestamps)
{
    public void Map(IEndpointRouteBuilder app)
    {
        app.Map(RouteTable.State, FullState);
        app.Map(RouteTable.Event, GetEvent);
        app.Map(RouteTable.Context, Context);
        app.Map(RouteTable.Messages, Messages);
        app.Map(RouteTable.Members, Members);
        app.Map(RouteTable.JoinedMembers, JoinedMembers);
        app.Map(RouteTable.TimestampToEvent, TimestampToEvent);
    }

    async Task FullState(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var roomId = param.KnownRoomId(ctx);
        var state = visibility.VisibleState(c.UserId, roomId) ?? throw Err.Forbidden("You are not allowed to see this room's state");
        var arr = new JsonArray(state.Select(e => (JsonNode)format.Format(e)).ToArray());
        await ctx.Response.WriteJsonAsync(arr);
    }

    async Task GetEvent(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var roomId = RoomParams.RoomId(ctx);
        var ev = rooms.Event(ctx.Route("eventId"));
        if (ev is null || ev.RoomId != roomId || !(visibility.CanSee(c.UserId, ev) || SeesHistory(c.UserId, roomId, ev))) throw Err.NotFound("Event not found");
        await ctx.Response.WriteJsonAsync(format.Format(ev, c.DeviceId, true, c.UserId));
    }

    /// <summary>
    /// Whether the user may see an event of the history from before this server's join (kept from /backfill, or fetched
    /// alone by timestamp_to_event): where that history is shown at all (shared or world_readable) to a reader of the room.
    /// </summary>
    bool SeesHistory(string userId, string roomId, StoredEvent e)
        => RemoteHistory.IsHistory(roomId, e) && history.Visible(roomId) && visibility.ReadableWindow(userId, roomId) is not null;

    // ---- /context (spec: client-server-api, "GET /rooms/{roomId}/context/{eventId}"): the event, what the
    // user may see around it, and the state at the last event returned, taken from the state groups.
    async Task Context(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var roomId = RoomParams.RoomId(ctx);
        var ev = rooms.Event(ctx.Route("eventId"));
        // Not allowed to read the room at all: 403, as Synapse answers; an event the user may not see: 404.
        var window = visibility.ReadableWindow(c.UserId, roomId) ?? throw Err.Forbidden("You are not allowed to read this room");
        var limit = RoomParams.LimitParam(ctx, 10, 100);
        var filter = RoomParams.FilterParam(ctx);
        // Half the limit before the event (rounded down) and the rest after, as Synapse does.
        Func<StoredEvent, bool>? include = filter is null ? null : e => filter.Matches(e.Type, e.Sender, roomId);
        if (ev is not null && ev.RoomId == roomId && SeesHistory(c.UserId, roomId, ev) && await history.ReachAsync(roomId, ev, ctx.RequestAborted))
        {
            await HistoryContext(ctx, c, roomId, ev, window, limit, filter, include);
            return;
        }
        if (ev is null || ev.RoomId != roomId || !visibility.CanSee(c.UserId, ev, window)) throw Err.NotFound("Event not found");
        var before = visibility.Around(c.UserId, ev, window, backwards: true, limit / 2, include);
        var after = visibility.Around(c.UserId, ev, window, backwards: false, limit - limit / 2, include);
        var lastReturned = after.Count > 0 ? after[^1] : ev;
        var state = states.Full(lastReturned.StateAfter).Values.Select(rooms.Event).OfType<StoredEvent>();
        if (filter?.LazyLoadMembers == true)
        {
            var senders = before.Concat(after).Append(ev).Select(e => e.Sender).ToHashSet();
            state = state.Where(e => e.Type != "m.room.member" || senders.Contains(e.StateKey!));
        }
        await ctx.Response.WriteJsonAsync(new JsonObject
        {
            ["event"] = format.Format(ev, c.DeviceId, true, c.UserId),
            ["events_before"] = new JsonArray(before.Select(e => (JsonNode)format.Format(e, c.DeviceId, true, c.UserId)).ToArray()),
            ["events_after"] = new JsonArray(after.Select(e => (JsonNode)format.Format(e, c.DeviceId, true, c.UserId)).ToArray()),
            ["start"] = $"t{(before.Count > 0 ? before[^1].Pos : ev.Pos) - 1}",
            ["end"] = $"t{lastReturned.Pos}",
            ["state"] = new JsonArray(state.Select(e => (JsonNode)format.Format(e)).ToArray()),
        });
    }

    /// <summary>
    /// /context around an event of the history from before this server's join: the kept history before it (fetched
    /// further when it runs out), the kept history after it and then the room's first timeline events, "h" tokens for
    /// history ends and a "t" token once the timeline is reached; the state is the state at this server's first event
    /// of the room (the earliest it has), or the current state.
    /// </summary>
    async Task HistoryContext(HttpContext ctx, Caller c, string roomId, StoredEvent ev, ReadWindow window, int limit, Common.Events.RoomEventFilter? filter,
        Func<StoredEvent, bool>? include)
    {
        var depth = ev.Pdu["depth"]!.GetValue<long>();
        var before = (await history.PageAsync(roomId, depth, ev.EventId, limit / 2, ctx.RequestAborted)).Events;
        var after = history.Newer(roomId, depth, ev.EventId, limit - limit / 2);
        if (after.Count < limit - limit / 2)
            foreach (var (_, id) in rooms.Timeline(roomId, window.After, window.UpTo, backwards: false))
            {
                if (after.Count >= limit - limit / 2) break;
                if (rooms.Event(id) is { } x && visibility.CanSee(c.UserId, x, window)) after.Add(x);
            }
        var last = after.Count > 0 ? after[^1] : ev;
        var first = rooms.Timeline(roomId, 0, long.MaxValue, backwards: false).FirstOrDefault() is { EventId: { } firstId } ? rooms.Event(firstId) : null;
        var stateIds = first is { HasState: true } ? states.Full(first.StateBefore).Values : rooms.CurrentState(roomId).Values;
        var state = stateIds.Select(rooms.Event).OfType<StoredEvent>();
        var shownBefore = before.Where(e => include is null || include(e)).ToList();
        var shownAfter = after.Where(e => include is null || include(e)).ToList();
        if (filter?.LazyLoadMembers == true)
        {
            var senders = shownBefore.Concat(shownAfter).Append(ev).Select(e => e.Sender).ToHashSet();
            state = state.Where(e => e.Type != "m.room.member" || senders.Contains(e.StateKey!));
        }
        await ctx.Response.WriteJsonAsync(new JsonObject
        {
            ["event"] = format.Format(ev, c.DeviceId, true, c.UserId),
            ["events_before"] = new JsonArray(shownBefore.Select(e => (JsonNode)format.Format(e, c.DeviceId, true, c.UserId)).ToArray()),
            ["events_after"] = new JsonArray(shownAfter.Select(e => (JsonNode)format.Format(e, c.DeviceId, true, c.UserId)).ToArray()),
            ["start"] = RemoteHistory.Token(before.Count > 0 ? before[^1] : ev),
            ["end"] = last.InTimeline ? $"t{last.Pos}" : RemoteHistory.Token(last),
            ["state"] = new JsonArray(state.Select(e => (JsonNode)format.Format(e)).ToArray()),
        });
    }

    // ---- /messages (spec: client-server-api, "GET /rooms/{roomId}/messages"); tokens: RoomParams.ParsePoint.

    async Task Messages(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var roomId = param.KnownRoomId(ctx);
        var dir = ctx.Request.Query("dir") ?? "b";
        if (dir is not ("b" or "f")) throw Err.InvalidParam("dir must be 'b' or 'f'");
        var limit = RoomParams.LimitParam(ctx, 10, 1000);
        var filter = RoomParams.FilterParam(ctx);
        if (filter?.Limit is { } fl)
        {
            limit = Math.Min(limit, fl);
        }
        var window = visibility.ReadableWindow(c.UserId, roomId) ?? throw Err.Forbidden("You are not allowed to read this room");
        var now = stream.Position;
        // "h" tokens page through history fetched from other servers (before this server's first event of the room).
        var historyCursor = RemoteHistory.ParseToken(ctx.Request.Query("from"));
        if (historyCursor is not null && dir == "b")
        {
            var h = new JsonArray();
            var (events, more) = history.Visible(roomId) && window.After == 0
                ? await history.PageAsync(roomId, historyCursor.Value.Depth, historyCursor.Value.EventId, limit, ctx.RequestAborted) : ([], false);
            foreach (var ev in events)
                if (filter is null || filter.Matches(ev.Type, ev.Sender, roomId)) h.Add((JsonNode)format.Format(ev, c.DeviceId, true, c.UserId));
            var hr = new JsonObject { ["chunk"] = h, ["start"] = ctx.Request.Query("from") };
            if (more && events.Count > 0) hr["end"] = RemoteHistory.Token(events[^1]);
            await ctx.Response.WriteJsonAsync(hr);
            return;
        }
        var from = historyCursor is not null ? 0 : RoomParams.ParsePoint(ctx.Request.Query("from")) ?? (dir == "b" ? now : 0);
        var to = RoomParams.ParsePoint(ctx.Request.Query("to"));

        var chunk = new JsonArray();
        long last = from;
        var memberIds = new HashSet<string>();
        // Forward from an "h" token: the rest of the kept history first, then the timeline from its start.
        var newer = historyCursor is { } hc && history.Visible(roomId) ? history.Newer(roomId, hc.Depth, hc.EventId, limit) : [];
        foreach (var ev in newer)
            if (filter is null || filter.Matches(ev.Type, ev.Sender, roomId))
            {
                chunk.Add((JsonNode)format.Format(ev, c.DeviceId, true, c.UserId));
                memberIds.Add(ev.Sender);
            }
        // A page taken up by history (a whole page read, shown or filtered out) leaves the timeline for the next one.
        var historyFull = newer.Count >= limit;
        var timeline = historyFull ? []
            : dir == "b"
            ? rooms.Timeline(roomId, Math.Max(to ?? 0, window.After), Math.Min(from, window.UpTo), backwards: true)
            : rooms.Timeline(roomId, Math.Max(from, window.After), Math.Min(to ?? long.MaxValue, window.UpTo), backwards: false);
        var reachedEnd = true;
        foreach (var (pos, id) in timeline)
        {
            if (chunk.Count >= limit) { reachedEnd = false; break; }
            last = dir == "b" ? pos - 1 : pos;
            var ev = rooms.Event(id);
            if (ev is null || !visibility.CanSee(c.UserId, ev, window)) continue;
            if (filter is not null && !filter.Matches(ev.Type, ev.Sender, roomId)) continue;
            chunk.Add((JsonNode)format.Format(ev, c.DeviceId, true, c.UserId));
            memberIds.Add(ev.Sender);
        }
        var result = new JsonObject { ["chunk"] = chunk, ["start"] = historyCursor is not null ? ctx.Request.Query("from") : $"t{from}" };
        // A page that ended in the kept history goes on from there; one that reached the timeline, from its position.
        if (historyFull) result["end"] = RemoteHistory.Token(newer[^1]);
        else if (!reachedEnd || (chunk.Count > 0 && chunk.Count >= limit)) result["end"] = $"t{last}";
        // Paging back past this server's first event of a room it joined over federation: the history before it.
        else if (dir == "b" && to is null && window.After == 0 && history.Visible(roomId)
            && rooms.Timeline(roomId, 0, long.MaxValue, backwards: false).FirstOrDefault() is { EventId: { } firstId } && rooms.Event(firstId) is { } first
            && first.Type != "m.room.create")
        {
            var (events, more) = await history.PageAsync(roomId, first.Pdu["depth"]!.GetValue<long>(), null, limit - chunk.Count, ctx.RequestAborted);
            foreach (var ev in events)
                if (filter is null || filter.Matches(ev.Type, ev.Sender, roomId))
                {
                    chunk.Add((JsonNode)format.Format(ev, c.DeviceId, true, c.UserId));
                    memberIds.Add(ev.Sender);
                }
            if (more && events.Count > 0) result["end"] = RemoteHistory.Token(events[^1]);
        }
        if (filter?.LazyLoadMembers == true)
        {
            var state = new JsonArray();
            foreach (var m in memberIds)
                if (rooms.StateEvent(roomId, "m.room.member", m) is { } me) state.Add((JsonNode)format.Format(me));
            result["state"] = state;
        }
        await ctx.Response.WriteJsonAsync(result);
    }

    async Task Members(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var roomId = param.KnownRoomId(ctx);
        var state = visibility.VisibleState(c.UserId, roomId) ?? throw Err.Forbidden("You are not allowed to see this room's members");
        var only = ctx.Request.Query("membership");
        var not = ctx.Request.Query("not_membership");
        var chunk = new JsonArray();
        foreach (var e in state.Where(e => e.Type == "m.room.member"))
        {
            var m = MemberContent.MembershipOf(e.Content);
            if (only is not null && m != only) continue;
            if (not is not null && m == not) continue;
            chunk.Add((JsonNode)format.Format(e));
        }
        await ctx.Response.WriteJsonAsync(new JsonObject { ["chunk"] = chunk });
    }

    async Task JoinedMembers(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var roomId = param.KnownRoomId(ctx);
        if (rooms.MembershipOf(c.UserId, roomId)?.State != "join") throw Err.Forbidden("You are not joined to this room");
        var joined = new JsonObject();
        foreach (var u in rooms.JoinedMembers(roomId))
        {
            // Both keys always, null when unset, as Synapse answers (clients read avatar_url without checking for it).
            var content = rooms.StateContent(roomId, "m.room.member", u);
            joined[u] = new JsonObject
            {
                ["avatar_url"] = MemberContent.AvatarUrl(content),
                ["display_name"] = MemberContent.DisplayName(content),
            };
        }
        await ctx.Response.WriteJsonAsync(new JsonObject { ["joined"] = joined });
    }

    // ---- GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event (spec: client-server-api, "Room participation",
    // getEventByTimestamp): the closest event at or after (dir=f) or at or before (dir=b) ts that the caller may see;
    // where this server lacks that part of the history, other servers are asked (RemoteTimestamps).

    async Task TimestampToEvent(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var roomId = param.KnownRoomId(ctx);
        var q = TimestampQuery.Parse(ctx.Request.Query("ts"), ctx.Request.Query("dir"));
        var window = visibility.ReadableWindow(c.UserId, roomId) ?? throw Err.Forbidden("You are not allowed to read this room");
        var found = TimestampLookup.Closest(rooms, roomId, q, window.After, Math.Min(stream.Position, window.UpTo), e => visibility.CanSee(c.UserId, e, window)).Event;
        // An event from another server is kept as history (an outlier, shown where RemoteTimestamps.WorthAsking allowed
        // asking), unless this server had it in its timeline already, where the caller's visibility applies.
        if (timestamps.WorthAsking(roomId, q, found) && await timestamps.CloserAsync(roomId, q, found, ctx.RequestAborted) is { } remote
            && (!remote.InTimeline || visibility.CanSee(c.UserId, remote, window)))
            found = remote;
        await ctx.Response.WriteJsonAsync(TimestampLookup.Answer(found ?? throw q.NotFound()));
    }
}

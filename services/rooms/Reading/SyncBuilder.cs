using System.Text.Json.Nodes;
using Conduit.Common.Events;

namespace Conduit.Rooms;

/// <summary>
/// Builds the "rooms" part of a /sync response between two room-stream positions (spec: client-server-api,
/// "GET /sync"). Everything is read as of one position taken at the start, which becomes the next since.
/// </summary>
public sealed class SyncBuilder(RoomStore rooms, StateStore states, RoomStream stream, ClientEvents format, Visibility visibility)
{
    public const int DefaultTimelineLimit = 10;

    public sealed record Result(JsonObject Rooms, long Position, IReadOnlyList<string> JoinedRoomIds);

    public Result Build(string userId, string? deviceId, long since, bool fullState, Filter? filter)
    {
        var upTo = stream.Position;
        var roomFilter = filter?.Room;
        var limit = roomFilter?.Timeline?.Limit ?? DefaultTimelineLimit;
        var join = new JsonObject();
        var invite = new JsonObject();
        var leave = new JsonObject();
        var knock = new JsonObject();
        var joined = new List<string>();

        foreach (var (roomId, m) in rooms.RoomsOf(userId))
        {
            if (m.State == "join") joined.Add(roomId);
            // A membership newer than the snapshot is reported by the next sync.
            if (m.Pos > upTo) continue;
            if (roomFilter is not null && !roomFilter.IncludesRoom(roomId)) continue;
            var changed = m.Pos > since;
            switch (m.State)
            {
                case "join":
                {
                    // A room joined since the last sync is sent whole, like an initial sync of that room.
                    var roomSince = changed && rooms.PreviousMembership(m) != "join" ? 0 : since;
                    if (RoomSection(roomId, userId, deviceId, roomSince, upTo, fullState || roomSince == 0, limit, filter) is { } section)
                    {
                        section["summary"] = Summary(roomId, userId);
                        section["unread_notifications"] = new JsonObject { ["highlight_count"] = 0, ["notification_count"] = 0 };
                        section["ephemeral"] = new JsonObject { ["events"] = new JsonArray() };
                        join[roomId] = section;
                    }
                    break;
                }
                case "invite" when changed || since == 0:
                    invite[roomId] = new JsonObject { ["invite_state"] = new JsonObject { ["events"] = format.StrippedState(roomId, userId) } };
                    break;
                case "knock" when changed || since == 0:
                    knock[roomId] = new JsonObject { ["knock_state"] = new JsonObject { ["events"] = format.StrippedState(roomId, userId) } };
                    break;
                case "leave" or "ban" when (changed && since > 0) || (since == 0 && roomFilter?.IncludeLeave == true) || fullState && changed:
                {
                    // The timeline ends with the user's own leave; nothing after it is theirs to see.
                    var wasMember = rooms.PreviousMembership(m) == "join";
                    var section = wasMember
                        ? RoomSection(roomId, userId, deviceId, since, m.Pos, fullState || since == 0, limit, filter)
                        : null;
                    if (section is null)
                    {
                        var events = new JsonArray();
                        if (rooms.Event(m.EventId) is { } le) events.Add((JsonNode)format.Format(le, deviceId, false));
                        section = new JsonObject
                        {
                            ["timeline"] = new JsonObject { ["events"] = events, ["limited"] = false },
                            ["state"] = new JsonObject { ["events"] = new JsonArray() },
                        };
                    }
                    leave[roomId] = section;
                    break;
                }
            }
        }
        var result = new JsonObject { ["join"] = join, ["invite"] = invite, ["leave"] = leave };
        if (knock.Count > 0) result["knock"] = knock;
        return new Result(result, upTo, joined);
    }

    /// <summary>The room's state group after the last event at or before <paramref name="pos"/>.</summary>
    ulong GroupAt(string roomId, long pos)
    {
        foreach (var (_, id) in rooms.Timeline(roomId, 0, pos, backwards: true))
            // "sg_room": the room's state after a remote event when it differs from the state after that event
            // alone (forward extremities merged by state resolution).
            return rooms.Event(id) is { } e ? e.Meta["sg_room"]?.GetValue<ulong>() ?? e.StateAfter : 0;
        return 0;
    }

    /// <summary>Timeline (newest <paramref name="limit"/> events in (since, upTo]) and the state not in it.</summary>
    JsonObject? RoomSection(string roomId, string userId, string? deviceId, long since, long upTo, bool wholeState, int limit, Filter? filter)
    {
        var timelineFilter = filter?.Room?.Timeline;
        // History visibility bounds the timeline like /messages: nothing before what the user may see.
        var window = visibility.ReadableWindow(userId, roomId);
        if (window is null) return null;
        var picked = new List<StoredEvent>();
        var limited = false;
        long firstPos = upTo;
        foreach (var (pos, id) in rooms.Timeline(roomId, Math.Max(since, window.After), Math.Min(upTo, window.UpTo), backwards: true))
        {
            if (picked.Count >= limit)
            {
                limited = true;
                break;
            }
            firstPos = pos;
            if (rooms.Event(id) is not { } e || !visibility.CanSee(userId, e, window)) continue;
            if (timelineFilter is not null && !timelineFilter.Matches(e.Type, e.Sender, roomId)) continue;
            picked.Add(e);
        }
        if (picked.Count == 0 && !wholeState && since > 0) return null;
        picked.Reverse();
        var inTimeline = picked.Select(e => e.EventId).ToHashSet();

        // "state" is the state at the start of the timeline (spec: "Syncing"): all of it for an initial or
        // full-state sync; for a limited incremental sync, what changed in the gap the timeline skipped.
        var stateFilter = filter?.Room?.State;
        var state = new JsonArray();
        IEnumerable<string> stateIds = [];
        var startGroup = picked.Count > 0 ? picked[0].StateBefore : GroupAt(roomId, Math.Min(upTo, window.UpTo));
        if (wholeState) stateIds = states.Full(startGroup).Values;
        else if (limited)
        {
            var atSince = states.Full(GroupAt(roomId, since));
            stateIds = states.Full(startGroup).Where(kv => !atSince.TryGetValue(kv.Key, out var old) || old != kv.Value).Select(kv => kv.Value);
        }
        foreach (var id in stateIds)
        {
            if (inTimeline.Contains(id) || rooms.Event(id) is not { } ev) continue;
            if (stateFilter is not null && !stateFilter.Matches(ev.Type, ev.Sender, roomId)) continue;
            state.Add((JsonNode)format.Format(ev, deviceId, false));
        }

        return new JsonObject
        {
            ["timeline"] = new JsonObject
            {
                ["events"] = new JsonArray(picked.Select(e => (JsonNode)format.Format(e, deviceId, false)).ToArray()),
                ["limited"] = limited,
                ["prev_batch"] = $"t{(picked.Count > 0 ? picked[0].Pos - 1 : firstPos)}",
            },
            ["state"] = new JsonObject { ["events"] = state },
            ["account_data"] = new JsonObject { ["events"] = new JsonArray() },
        };
    }

    JsonObject Summary(string roomId, string userId)
    {
        int joinedCount = 0, invitedCount = 0;
        var heroes = new JsonArray();
        foreach (var (u, m) in rooms.Members(roomId))
        {
            if (m == "join") joinedCount++;
            else if (m == "invite") invitedCount++;
            if (u != userId && m is "join" or "invite" && heroes.Count < 5) heroes.Add((JsonNode)u);
        }
        var summary = new JsonObject { ["m.joined_member_count"] = joinedCount, ["m.invited_member_count"] = invitedCount };
        // Heroes only matter to clients when the room has neither a name nor a canonical alias.
        if (rooms.StateContent(roomId, "m.room.name") is null && rooms.StateContent(roomId, "m.room.canonical_alias") is null)
            summary["m.heroes"] = heroes;
        return summary;
    }
}

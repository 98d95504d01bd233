namespace Conduit.Rooms;

/// <summary>The part of a room's stream a user may read at most: positions in (After, UpTo].</summary>
public sealed record ReadWindow(long After, long UpTo);

/// <summary>
/// History visibility (spec: client-server-api, "History visibility"). Each event is judged by the room's
/// m.room.history_visibility and the user's membership in the state before that event (from the state groups),
/// and reading is bounded by the user's current membership: a former member reads nothing after leaving, a
/// banned user nothing after the ban, and a stranger only world_readable rooms.
/// </summary>
public sealed class Visibility(RoomStore rooms, StateStore states)
{
    /// <summary>The bound set by the user's current membership, or null if they may read nothing at all.</summary>
    public ReadWindow? ReadableWindow(string userId, string roomId)
    {
        var setting = HistoryVisibility.Of(rooms.StateContent(roomId, "m.room.history_visibility"));
        var m = rooms.MembershipOf(userId, roomId);
        if (m?.State == "ban") return WasJoined(m) || setting == "world_readable" ? new ReadWindow(0, m.Pos) : null;
        if (setting == "world_readable") return new ReadWindow(0, long.MaxValue);
        return m?.State switch
        {
            "join" => new ReadWindow(0, long.MaxValue),
            // A former member keeps what they could see while in the room; someone only ever invited sees nothing.
            "leave" when WasJoined(m) => new ReadWindow(0, m.Pos),
            _ => null,
        };
    }

    bool WasJoined(Membership m) => rooms.PreviousMembership(m) == "join";

    /// <summary>
    /// Up to <paramref name="count"/> events next to <paramref name="e"/> (before it, newest first, or after it) that
    /// the user may see and that pass <paramref name="include"/>: what /context and search's event_context return.
    /// </summary>
    public List<StoredEvent> Around(string userId, StoredEvent e, ReadWindow? window, bool backwards, int count, Func<StoredEvent, bool>? include = null)
    {
        var list = new List<StoredEvent>();
        if (window is null || count <= 0) return list;
        var range = backwards ? rooms.Timeline(e.RoomId!, window.After, e.Pos - 1, true) : rooms.Timeline(e.RoomId!, e.Pos, window.UpTo, false);
        foreach (var (_, id) in range)
        {
            if (list.Count >= count) break;
            if (rooms.Event(id) is { } x && CanSee(userId, x, window) && (include is null || include(x))) list.Add(x);
        }
        return list;
    }

    /// <summary>Whether the user may see the event, given a window from <see cref="ReadableWindow"/>.</summary>
    public bool CanSee(string userId, StoredEvent e, ReadWindow? window)
    {
        // Rejected and soft-failed remote events have no timeline position and are never shown to clients.
        if (window is null || !e.InTimeline || e.Pos <= window.After || e.Pos > window.UpTo) return false;
        var group = e.StateBefore;
        var setting = HistoryVisibility.Of(EventContent(states.LookupEventId(group, "m.room.history_visibility", "")));
        if (setting is "world_readable" or "shared") return true;
        // The user's own membership event shows its own membership (a joiner sees their join).
        var membership = e.Type == "m.room.member" && e.StateKey == userId
            ? MemberContent.MembershipOf(e.Content)
            : MemberContent.MembershipOf(EventContent(states.LookupEventId(group, "m.room.member", userId)));
        return membership == "join" || (setting == "invited" && membership == "invite");
    }

    public bool CanSee(string userId, StoredEvent e) => CanSee(userId, e, ReadableWindow(userId, e.RoomId));

    System.Text.Json.Nodes.JsonObject? EventContent(string? eventId) => eventId is null ? null : rooms.Event(eventId)?.Content;

    /// <summary>The room's state as the user may see it (as it was when they left, for a former member), or null.</summary>
    public IReadOnlyList<StoredEvent>? VisibleState(string userId, string roomId)
    {
        var w = ReadableWindow(userId, roomId);
        if (w is null) return null;
        IEnumerable<string> ids;
        if (w.UpTo == long.MaxValue) ids = rooms.CurrentState(roomId).Values;
        else
        {
            var m = rooms.MembershipOf(userId, roomId)!;
            ids = states.Full(rooms.Event(m.EventId)!.StateAfter).Values;
        }
        return ids.Select(rooms.Event).OfType<StoredEvent>().ToList();
    }

    public StoredEvent? VisibleStateEvent(string userId, string roomId, string type, string stateKey)
    {
        var state = VisibleState(userId, roomId) ?? throw Conduit.Common.Http.Err.Forbidden("You are not allowed to see this room's state");
        return state.FirstOrDefault(e => e.Type == type && e.StateKey == stateKey);
    }
}

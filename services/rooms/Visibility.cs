namespace Conduit.Rooms;

/// <summary>The part of a room's stream a user may read: positions in (After, UpTo].</summary>
public sealed record ReadWindow(long After, long UpTo);

/// <summary>
/// History visibility (spec: client-server-api, "History visibility"), evaluated against the room's current
/// m.room.history_visibility and the user's latest membership: members read what the setting allows up to
/// now, former members up to their leave or ban, and anyone reads a world_readable room.
/// </summary>
public sealed class Visibility(RoomStore rooms)
{
    public ReadWindow? ReadableWindow(string userId, string roomId)
    {
        var setting = rooms.StateContent(roomId, "m.room.history_visibility")?["history_visibility"]?.GetValue<string>() ?? "shared";
        var m = rooms.MembershipOf(userId, roomId);
        // Anyone may read a world_readable room, former members included; a ban still ends reading.
        if (setting == "world_readable") return new ReadWindow(0, m?.State == "ban" ? m.Pos : long.MaxValue);
        if (m is null) return null;
        switch (m.State)
        {
            case "join":
                return setting is "joined" or "invited"
                    ? new ReadWindow(MemberSince(m, includeInvite: setting == "invited") - 1, long.MaxValue)
                    : new ReadWindow(0, long.MaxValue);
            case "leave" or "ban":
                // A former member keeps what they could see while in the room; someone who was only invited sees nothing.
                var prev = PrevMembership(roomId, m.EventId);
                if (prev != "join") return null;
                return new ReadWindow(0, m.Pos);
            default:
                return null;
        }
    }

    string? PrevMembership(string roomId, string eventId)
    {
        var ev = rooms.Event(eventId);
        var prevId = ev?.Meta["prev_content_event"]?.GetValue<string>();
        return prevId is null ? null : rooms.Event(prevId)?.Content["membership"]?.GetValue<string>();
    }

    // Where the user's current membership began: a displayname change keeps the original join, and with
    // "invited" visibility the invite that led to the join counts too (spec: "from the point they were invited").
    long MemberSince(Membership m, bool includeInvite)
    {
        var ev = rooms.Event(m.EventId);
        var pos = m.Pos;
        while (ev?.Meta["prev_content_event"]?.GetValue<string>() is { } prevId && rooms.Event(prevId) is { } prev
               && prev.Content["membership"]?.GetValue<string>() is { } pm && (pm == "join" || (includeInvite && pm == "invite")))
        {
            pos = prev.Pos;
            ev = prev;
        }
        return pos;
    }

    public bool CanSee(string userId, StoredEvent e)
        => ReadableWindow(userId, e.RoomId) is { } w && e.Pos > w.After && e.Pos <= w.UpTo;

    /// <summary>The room's state as the user may see it, or null if they may not see it at all.</summary>
    public IReadOnlyList<StoredEvent>? VisibleState(string userId, string roomId)
    {
        var w = ReadableWindow(userId, roomId);
        if (w is null) return null;
        var list = new List<StoredEvent>();
        foreach (var (_, id) in rooms.CurrentState(roomId))
            if (rooms.Event(id) is { } e) list.Add(e);
        if (w.UpTo != long.MaxValue)
        {
            // Former members see the state as it was when they left: undo later changes along each chain.
            for (var i = 0; i < list.Count; i++)
            {
                var e = list[i];
                while (e.Pos > w.UpTo && e.Meta["prev_content_event"]?.GetValue<string>() is { } prevId && rooms.Event(prevId) is { } prev)
                    e = prev;
                list[i] = e;
            }
            list.RemoveAll(e => e.Pos > w.UpTo);
        }
        return list;
    }

    public StoredEvent? VisibleStateEvent(string userId, string roomId, string type, string stateKey)
    {
        var state = VisibleState(userId, roomId) ?? throw Conduit.Common.Http.Err.Forbidden("You are not allowed to see this room's state");
        return state.FirstOrDefault(e => e.Type == type && e.StateKey == stateKey);
    }
}

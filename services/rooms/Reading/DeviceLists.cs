namespace Conduit.Rooms;

/// <summary>
/// Who a user shares rooms with, for the device_lists of /sync and /keys/changes (spec: client-server-api,
/// "Tracking the device list for a user"): a user must hear of a device-list change of everyone they share a room
/// with, of everyone they start sharing a room with (whose keys they have not tracked), and which users they no
/// longer share any room with (so they stop tracking them). Shared means both joined, as Synapse counts it.
/// </summary>
public sealed class DeviceLists(RoomStore rooms)
{
    /// <summary>Whether a user joined to a room has a member of <paramref name="serverName"/> joined with them.</summary>
    public bool SharesWithServer(string userId, string serverName)
        => rooms.RoomsOf(userId).Any(r => r.M.State == "join" && rooms.JoinedMembers(r.RoomId).Any(u => Conduit.Common.Ids.ServerOf(u) == serverName));

    /// <summary>The user and every user joined to a room the user is joined to.</summary>
    public HashSet<string> SharedWith(string userId)
    {
        var set = new HashSet<string>(StringComparer.Ordinal) { userId };
        foreach (var (roomId, m) in rooms.RoomsOf(userId))
            if (m.State == "join")
                foreach (var u in rooms.JoinedMembers(roomId)) set.Add(u);
        return set;
    }

    /// <summary>
    /// Between room-stream positions (<paramref name="from"/>, <paramref name="to"/>]: the candidates (users whose
    /// device lists changed) the user shares a room with, plus the users the user started sharing a room with
    /// (changed), and the users whose last shared room went away (left). Read against the current memberships:
    /// a user who joined and left again in the window is left, which is what the client needs to know.
    /// </summary>
    public (List<string> Changed, List<string> Left) Delta(string userId, long from, long to, IEnumerable<string> candidates)
    {
        // Each candidate is checked on its own (a few point reads over its rooms) rather than by listing everyone the
        // user shares a room with, which for a member of large rooms is thousands of reads on every sync.
        var candidateList = candidates.ToList();
        var changed = new HashSet<string>(candidateList.Where(c => SharesRoom(userId, c)), StringComparer.Ordinal);
        var maybeLeft = new HashSet<string>(StringComparer.Ordinal);
        if (to > from)
        {
            var ownChanges = rooms.MembershipChangedSince(userId, from);
            var memberships = rooms.RoomsOf(userId).ToList();
            // The member events of the window: from the room stream when the window is short (a long-polling client
            // is woken by nearly every event), rather than one timeline read per room of the user.
            var byStream = to - from <= Math.Max(MinStreamWindow, memberships.Count) ? MemberEventsInStream(from, to) : null;
            foreach (var (roomId, m) in memberships)
            {
                var ownChanged = ownChanges.Contains(roomId) && m.Pos <= to;
                if (m.State == "join" && ownChanged && rooms.PreviousMembership(m) != "join")
                {
                    // Newly joined: everyone in the room is news.
                    foreach (var u in rooms.JoinedMembers(roomId)) changed.Add(u);
                }
                else if (m.State == "join")
                {
                    var events = byStream is not null ? byStream.GetValueOrDefault(roomId) ?? []
                        : rooms.Timeline(roomId, from, to, backwards: false).Select(t => rooms.Event(t.EventId));
                    foreach (var ev in events)
                    {
                        if (ev is not { Type: "m.room.member", StateKey: { } target }) continue;
                        // Only a member who was joined can stop sharing the room: an invite, a knock or a rejected
                        // invite never shared it.
                        var now = rooms.MembershipOf(target, roomId)?.State;
                        if (now == "join") changed.Add(target);
                        else if (now is "leave" or "ban" && rooms.PreviousMembership(ev) == "join") maybeLeft.Add(target);
                    }
                }
                else if (ownChanged && m.State is "leave" or "ban" && WasJoinedInWindow(userId, roomId, m, from))
                {
                    // The user left (or was kicked or banned): everyone in the room may be gone from their view.
                    foreach (var u in rooms.JoinedMembers(roomId)) maybeLeft.Add(u);
                }
            }
        }
        changed.Remove(userId);
        if (candidateList.Contains(userId)) changed.Add(userId);
        var left = maybeLeft.Where(u => u != userId && !SharesRoom(userId, u)).ToList();
        changed.ExceptWith(left);
        return ([.. changed], left);
    }

    /// <summary>A window of up to this many positions (or as many as the user has rooms) is read from the room stream.</summary>
    const int MinStreamWindow = 256;

    /// <summary>The member events with a room-stream position in (from, to], per room, in stream order.</summary>
    Dictionary<string, List<StoredEvent>> MemberEventsInStream(long from, long to)
    {
        var byRoom = new Dictionary<string, List<StoredEvent>>(StringComparer.Ordinal);
        foreach (var (_, roomId, e) in rooms.StreamAfter(from, to))
            if (e.Type == "m.room.member")
                (byRoom.TryGetValue(roomId, out var list) ? list : byRoom[roomId] = []).Add(e);
        return byRoom;
    }

    // The user's membership before this window was join, or they joined within it (and left again): either way the
    // room's members shared it with them. An invite or knock that ended never did.
    bool WasJoinedInWindow(string userId, string roomId, Membership m, long from)
    {
        var previous = rooms.PreviousMembership(m);
        if (previous == "join") return true;
        foreach (var (_, eventId) in rooms.Timeline(roomId, from, m.Pos, backwards: false))
            if (rooms.Event(eventId) is { Type: "m.room.member" } ev && ev.StateKey == userId && MemberContent.MembershipOf(ev.Content) == "join")
                return true;
        return false;
    }

    /// <summary>Whether two users are joined to a common room (a user shares with themselves).</summary>
    public bool SharesRoom(string userId, string other)
    {
        if (userId == other) return true;
        foreach (var (roomId, m) in rooms.RoomsOf(other))
            if (m.State == "join" && rooms.MembershipOf(userId, roomId)?.State == "join") return true;
        return false;
    }
}

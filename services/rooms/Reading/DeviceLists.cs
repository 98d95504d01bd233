namespace Conduit.Rooms;

/// <summary>
/// Who a user shares rooms with, for the device_lists of /sync and /keys/changes (spec: client-server-api,
/// "Tracking the device list for a user"): a user must hear of a device-list change of everyone they share a room
/// with, of everyone they start sharing a room with (whose keys they have not tracked), and which users they no
/// longer share any room with (so they stop tracking them). Shared means both joined, as Synapse counts it.
/// </summary>
public sealed class DeviceLists(RoomStore rooms)
{
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
            foreach (var (roomId, m) in rooms.RoomsOf(userId))
            {
                var ownChanged = ownChanges.Contains(roomId) && m.Pos <= to;
                if (m.State == "join" && ownChanged && rooms.PreviousMembership(m) != "join")
                {
                    // Newly joined: everyone in the room is news.
                    foreach (var u in rooms.JoinedMembers(roomId)) changed.Add(u);
                }
                else if (m.State == "join")
                {
                    foreach (var (_, eventId) in rooms.Timeline(roomId, from, to, backwards: false))
                    {
                        if (rooms.Event(eventId) is not { Type: "m.room.member", StateKey: { } target }) continue;
                        if (rooms.MembershipOf(target, roomId)?.State == "join") changed.Add(target);
                        else maybeLeft.Add(target);
                    }
                }
                else if (ownChanged)
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

    /// <summary>Whether two users are joined to a common room (a user shares with themselves).</summary>
    public bool SharesRoom(string userId, string other)
    {
        if (userId == other) return true;
        foreach (var (roomId, m) in rooms.RoomsOf(other))
            if (m.State == "join" && rooms.MembershipOf(userId, roomId)?.State == "join") return true;
        return false;
    }
}

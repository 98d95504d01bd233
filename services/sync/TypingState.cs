namespace Conduit.Sync;

/// <summary>
/// Who is typing in which room (spec: client-server-api, "Typing Notifications"), in memory only: typing is
/// short-lived, so a restart simply forgets it. Every change (start, stop, expiry) takes the next position of an
/// in-memory stream, which restarts at 0: a /sync token whose typing slot is above <see cref="Position"/> is from
/// before a restart and gets the full current state. An expiry wakes the room's joined users like any change.
/// </summary>
public sealed class TypingState(SyncNotifier notifier, Appservices.AppserviceEphemeral appservices)
{
    /// <summary>A typing entry lasts at most this long, whatever timeout the client asked for.</summary>
    public const int MaxTimeoutMs = 120_000;

    sealed class RoomTyping
    {
        public readonly Dictionary<string, long> Expiry = new(StringComparer.Ordinal);
        public long Pos;
        public IReadOnlyList<string> Joined = [];
    }

    readonly Lock _lock = new();
    readonly Dictionary<string, RoomTyping> _rooms = new(StringComparer.Ordinal);
    long _position;

    public long Position { get { lock (_lock) return _position; } }

    /// <summary>
    /// Starts (for <paramref name="timeoutMs"/>, capped) or stops a user's typing; <paramref name="joined"/> are the
    /// room's joined users, woken on this change and on the expiry.
    /// </summary>
    public void Set(string roomId, string userId, bool typing, int timeoutMs, IReadOnlyList<string> joined)
    {
        long expiry = 0;
        bool changed;
        string[] now = [];
        lock (_lock)
        {
            if (!_rooms.TryGetValue(roomId, out var room)) _rooms[roomId] = room = new RoomTyping();
            room.Joined = joined;
            if (typing)
            {
                expiry = Environment.TickCount64 + Math.Clamp(timeoutMs, 0, MaxTimeoutMs);
                // Renewing the timeout of someone already typing changes nothing anyone sees.
                changed = !room.Expiry.ContainsKey(userId);
                room.Expiry[userId] = expiry;
            }
            else changed = room.Expiry.Remove(userId);
            if (changed) room.Pos = ++_position;
            if (changed) now = [.. room.Expiry.Keys];
        }
        if (changed)
        {
            WakeAll(joined);
            appservices.Typing(roomId, now, joined);
        }
        if (typing) _ = ExpireLater(roomId, userId, expiry);
    }

    async Task ExpireLater(string roomId, string userId, long expiry)
    {
        await Task.Delay(TimeSpan.FromMilliseconds(Math.Max(0, expiry - Environment.TickCount64)));
        IReadOnlyList<string> joined;
        string[] now;
        lock (_lock)
        {
            // A later Set renewed or ended it: that one owns the entry now.
            if (!_rooms.TryGetValue(roomId, out var room) || !room.Expiry.TryGetValue(userId, out var e) || e != expiry) return;
            room.Expiry.Remove(userId);
            room.Pos = ++_position;
            joined = room.Joined;
            now = [.. room.Expiry.Keys];
        }
        WakeAll(joined);
        appservices.Typing(roomId, now, joined);
    }

    void WakeAll(IReadOnlyList<string> users)
    {
        foreach (var u in users) notifier.Wake(u);
    }

    /// <summary>The users typing in a room now.</summary>
    public string[] UsersIn(string roomId)
    {
        lock (_lock) return _rooms.TryGetValue(roomId, out var r) ? [.. r.Expiry.Keys] : [];
    }

    /// <summary>
    /// A consistent copy for one /sync: the position, and the rooms changed after <paramref name="since"/> with their
    /// typing users (<paramref name="since"/> 0: the rooms where someone is typing; <paramref name="everyRoom"/>: every
    /// room known, for a token from before a restart).
    /// </summary>
    public TypingSnapshot Snapshot(long since, bool everyRoom)
    {
        lock (_lock)
        {
            var rooms = new Dictionary<string, string[]>(StringComparer.Ordinal);
            foreach (var (id, r) in _rooms)
                if (everyRoom || (since == 0 ? r.Expiry.Count > 0 : r.Pos > since)) rooms[id] = [.. r.Expiry.Keys];
            return new TypingSnapshot(_position, rooms);
        }
    }
}

public sealed record TypingSnapshot(long Position, IReadOnlyDictionary<string, string[]> Rooms);

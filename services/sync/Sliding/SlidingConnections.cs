namespace Conduit.Sync.Sliding;

/// <summary>
/// What a sliding sync connection had been sent when a response was written: the positions of each stream it
/// covers up to, the rooms sent with their config keys, and the lists' counts. A `pos` names one.
/// </summary>
public sealed record SlidingSnapshot(long Rooms, long AccountData, long Keys, long Receipts, long Typing,
    IReadOnlyDictionary<string, string> Sent, IReadOnlyDictionary<string, long> Counts)
{
    /// <summary>Per room sent: the members whose state was sent for $LAZY (SlidingRoom.lazy_members).</summary>
    public IReadOnlyDictionary<string, string[]> Lazy { get; init; } = new Dictionary<string, string[]>();

    /// <summary>Rooms sent before but out of every range and subscription since: the room position they were
    /// last covered up to.</summary>
    public IReadOnlyDictionary<string, long> UpTo { get; init; } = new Dictionary<string, long>();

    /// <summary>Per joined room in view: the unread counts (notifications, highlights) last sent.</summary>
    public IReadOnlyDictionary<string, (long Notifications, long Highlights)> Unread { get; init; } = new Dictionary<string, (long, long)>();

    /// <summary>The rooms request this response was made for, without its positions (what the rooms service's
    /// answer depends on besides the room stream), and that answer's lists and rooms in view, which a request of
    /// the same shape reuses while nothing new concerns the user; null when not reusable.</summary>
    public string Shape { get; init; } = "";
    public Protos.Rooms.SlidingRoomsReply? Coverage { get; init; }
}

/// <summary>
/// Sliding sync connections, in memory, per (user, device, conn_id). A connection keeps the snapshot the client
/// last acknowledged (the pos it sent) and the newest one, so a retried request is answered again from the same
/// place. A restart forgets them all: their pos are then unknown (M_UNKNOWN_POS) and clients start over, as they do
/// with Synapse. Bounded per user and in total; the least recently used connection goes first.
/// </summary>
public sealed class SlidingConnections
{
    public const int PerUser = 16;
    public const int Total = 20_000;

    sealed class Connection
    {
        public readonly Dictionary<string, SlidingSnapshot> Snapshots = new(StringComparer.Ordinal);
        public long LastUsed;
    }

    readonly Lock _lock = new();
    readonly Dictionary<(string User, string Device, string Conn), Connection> _connections = [];
    // Positions of different processes never collide: a pos from before a restart is unknown, never someone else's.
    readonly string _epoch = Convert.ToHexString(System.Security.Cryptography.RandomNumberGenerator.GetBytes(4)).ToLowerInvariant();
    long _next;
    long _clock;

    public int Count { get { lock (_lock) return _connections.Count; } }

    /// <summary>The snapshot a pos names on this connection, or null when unknown (expired, or from before a restart).</summary>
    public SlidingSnapshot? Find(string userId, string deviceId, string connId, string pos)
    {
        lock (_lock)
        {
            if (!_connections.TryGetValue((userId, deviceId, connId), out var c) || !c.Snapshots.TryGetValue(pos, out var s)) return null;
            c.LastUsed = ++_clock;
            return s;
        }
    }

    /// <summary>
    /// Records the snapshot of a response given to a request made from <paramref name="fromPos"/> (null: the
    /// connection starts over) and returns its pos. Snapshots other than the one acknowledged are dropped.
    /// </summary>
    public string Save(string userId, string deviceId, string connId, string? fromPos, SlidingSnapshot snapshot)
    {
        lock (_lock)
        {
            var key = (userId, deviceId, connId);
            if (!_connections.TryGetValue(key, out var c))
            {
                Evict(userId);
                _connections[key] = c = new Connection();
            }
            foreach (var p in c.Snapshots.Keys.ToList())
                if (p != fromPos) c.Snapshots.Remove(p);
            var pos = $"{_epoch}_{++_next}";
            c.Snapshots[pos] = snapshot;
            c.LastUsed = ++_clock;
            return pos;
        }
    }

    /// <summary>Forgets the connections of devices that are gone.</summary>
    public void RemoveDevices(IEnumerable<(string UserId, string DeviceId)> devices)
    {
        lock (_lock)
            foreach (var (u, d) in devices)
                foreach (var key in _connections.Keys.Where(k => k.User == u && k.Device == d).ToList())
                    _connections.Remove(key);
    }

    // Makes room for one more connection of the user: their oldest one past the per-user bound, the oldest of all past the total.
    void Evict(string userId)
    {
        var mine = _connections.Where(kv => kv.Key.User == userId).ToList();
        if (mine.Count >= PerUser) _connections.Remove(mine.MinBy(kv => kv.Value.LastUsed).Key);
        if (_connections.Count >= Total) _connections.Remove(_connections.MinBy(kv => kv.Value.LastUsed).Key);
    }
}

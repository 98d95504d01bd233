using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Storage;
using K = Conduit.Common.Storage.Keys;

namespace Conduit.Sync;

/// <summary>One user's presence as /sync and GET /presence show it (last_active_ago and currently_active are
/// computed from <see cref="LastActiveTs"/> when shown).</summary>
public sealed record PresenceInfo(string UserId, string Presence, string? StatusMsg, long LastActiveTs, long Pos)
{
    /// <summary>Synapse's LAST_ACTIVE_GRANULARITY: online and active within this long is "currently active".</summary>
    public const long CurrentlyActiveMs = 60_000;

    public bool CurrentlyActive(long now) => Presence == PresenceStates.Online && now - LastActiveTs < CurrentlyActiveMs;

    /// <summary>The content of an m.presence event (also the GET /presence/{userId}/status body).</summary>
    public JsonObject Content(long now)
    {
        var o = new JsonObject { ["presence"] = Presence };
        if (LastActiveTs > 0) o["last_active_ago"] = Math.Max(0, now - LastActiveTs);
        o["currently_active"] = CurrentlyActive(now);
        if (StatusMsg is not null) o["status_msg"] = StatusMsg;
        return o;
    }
}

public static class PresenceStates
{
    public const string Online = "online", Offline = "offline", Unavailable = "unavailable";
    public static bool IsValid(string? s) => s is Online or Offline or Unavailable;
}

/// <summary>
/// Presence (spec: client-server-api, "Presence"): every user's last set presence, status message and last active
/// time, held in memory (one small entry per user that ever had presence) and kept durably in sync_presence, with a
/// durable stream position (sync_counters "presence") that every visible change takes, so an incremental /sync finds
/// the changed users among those it shares a room with.
///
/// What changes the position (and is written at once): a new presence or status message, the user becoming
/// currently active again, and the timer's transitions (<see cref="Tick"/>): online with no activity for
/// <see cref="IdleMs"/> (5 min, Synapse's IDLE_TIMER) becomes unavailable; a user not offline who has not synced
/// (nor set presence) for <see cref="OfflineMs"/> (30 min; Synapse uses 30 s after the last sync ends, a server
/// without per-connection tracking is more lenient) becomes offline; the end of "currently active" (60 s without
/// activity) is announced once, as the spec asks. A /sync that only renews the last active time of a user already
/// currently active changes nothing visible and writes nothing: the last active time is written at most once a
/// minute per user by the timer, and with any change.
/// </summary>
public sealed class PresenceState
{
    public const long IdleMs = 5 * 60_000;
    public const long OfflineMs = 30 * 60_000;
    /// <summary>The last active time in memory is written to disk when it is this much newer than the stored one.</summary>
    public const long PersistEveryMs = 60_000;

    sealed class Entry
    {
        public string Presence = PresenceStates.Offline;
        public string? StatusMsg;
        public long LastActiveTs, StoredLastActiveTs, LastSyncTs, Pos;
        public bool AnnouncedActive;
    }

    readonly IKeyValueStore _store;
    readonly Func<long> _clock;
    readonly Lock _lock = new();
    readonly Dictionary<string, Entry> _users = new(StringComparer.Ordinal);
    static readonly byte[] CounterKey = K.Utf8("presence");
    long _position;

    /// <summary>Raised (outside the lock) with the user whose presence changed visibly.</summary>
    public event Action<string>? Changed;

    public PresenceState(IKeyValueStore store) : this(store, () => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()) { }

    public PresenceState(IKeyValueStore store, Func<long> clock)
    {
        _store = store;
        _clock = clock;
        var counters = store.Map(SyncFamilies.Counters);
        _position = counters.Get(CounterKey) is { } v ? (long)K.ReadBigEndian(v) : 0;
        var now = clock();
        foreach (var (k, val) in store.Map(SyncFamilies.Presence).Scan([]))
        {
            var o = JsonLimits.ParseInternal(val)!.AsObject();
            var e = new Entry
            {
                Presence = o["presence"]!.GetValue<string>(),
                StatusMsg = o["status_msg"]?.GetValue<string>(),
                LastActiveTs = o["last_active_ts"]!.GetValue<long>(),
                Pos = o["pos"]!.GetValue<long>(),
                // After a restart nobody has synced yet: the offline timer starts now.
                LastSyncTs = now,
            };
            e.StoredLastActiveTs = e.LastActiveTs;
            e.AnnouncedActive = e.Presence == PresenceStates.Online && now - e.LastActiveTs < PresenceInfo.CurrentlyActiveMs;
            _users[Encoding.UTF8.GetString(k)] = e;
        }
    }

    public long Position { get { lock (_lock) return _position; } }

    public long Now => _clock();

    public PresenceInfo? Get(string userId)
    {
        lock (_lock) return _users.TryGetValue(userId, out var e) ? Info(userId, e) : null;
    }

    static PresenceInfo Info(string userId, Entry e) => new(userId, e.Presence, e.StatusMsg, e.LastActiveTs, e.Pos);

    /// <summary>PUT /presence/{userId}/status: sets presence and status message (absent: cleared, as Synapse).
    /// Setting online is activity.</summary>
    public void Set(string userId, string presence, string? statusMsg)
    {
        bool changed;
        lock (_lock)
        {
            var now = _clock();
            var e = EntryOf(userId);
            e.LastSyncTs = now;
            changed = e.Presence != presence || e.StatusMsg != statusMsg || e.Pos == 0;
            e.Presence = presence;
            e.StatusMsg = statusMsg;
            if (presence == PresenceStates.Online) changed |= Activity(e, now);
            if (changed) Commit(userId, e, now);
        }
        if (changed) Changed?.Invoke(userId);
    }

    /// <summary>
    /// A /sync with set_presence (spec: "GET /sync"): "online" (the default) and "unavailable" set the presence and
    /// count as syncing; "online" is also activity. "offline" means the client does not mark the user as online:
    /// nothing changes. The status message is kept.
    /// </summary>
    public void Synced(string userId, string setPresence)
    {
        if (setPresence == PresenceStates.Offline) return;
        bool changed;
        lock (_lock)
        {
            var now = _clock();
            var e = EntryOf(userId);
            e.LastSyncTs = now;
            changed = e.Presence != setPresence || e.Pos == 0;
            e.Presence = setPresence;
            if (setPresence == PresenceStates.Online) changed |= Activity(e, now);
            if (changed) Commit(userId, e, now);
        }
        if (changed) Changed?.Invoke(userId);
    }

    /// <summary>
    /// A user of another server, as their server announced them (m.presence EDU). Their last sync counts as now, so the
    /// idle and offline timers here treat them like a local user who went quiet, should their server stop telling.
    /// </summary>
    public void SetRemote(string userId, string presence, string? statusMsg, long lastActiveAgo)
    {
        lock (_lock)
        {
            var now = _clock();
            var e = EntryOf(userId);
            e.LastSyncTs = now;
            e.Presence = presence;
            e.StatusMsg = statusMsg;
            e.LastActiveTs = now - Math.Clamp(lastActiveAgo, 0, OfflineMs * 48);
            Commit(userId, e, now);
        }
        Changed?.Invoke(userId);
    }

    Entry EntryOf(string userId)
    {
        if (!_users.TryGetValue(userId, out var e)) _users[userId] = e = new Entry();
        return e;
    }

    /// <summary>Marks activity; true when it is visible news (the user was not announced as currently active).</summary>
    static bool Activity(Entry e, long now)
    {
        e.LastActiveTs = now;
        return !e.AnnouncedActive;
    }

    /// <summary>The timer's work (run about every 10 s): idle and offline transitions, the end of currently active,
    /// and the last active times due to be written.</summary>
    public void Tick()
    {
        var changed = new List<string>();
        lock (_lock)
        {
            var now = _clock();
            foreach (var (userId, e) in _users)
            {
                var c = false;
                if (e.Presence != PresenceStates.Offline && now - e.LastSyncTs >= OfflineMs) { e.Presence = PresenceStates.Offline; c = true; }
                else if (e.Presence == PresenceStates.Online && now - e.LastActiveTs >= IdleMs) { e.Presence = PresenceStates.Unavailable; c = true; }
                if (e.AnnouncedActive && !(e.Presence == PresenceStates.Online && now - e.LastActiveTs < PresenceInfo.CurrentlyActiveMs)) c = true;
                if (c)
                {
                    Commit(userId, e, now);
                    changed.Add(userId);
                }
                else if (e.LastActiveTs - e.StoredLastActiveTs >= PersistEveryMs) Write(userId, e, withCounter: false);
            }
        }
        foreach (var u in changed) Changed?.Invoke(u);
    }

    /// <summary>Takes the next position and writes the entry with the counter. Under the lock.</summary>
    void Commit(string userId, Entry e, long now)
    {
        e.Pos = ++_position;
        e.AnnouncedActive = e.Presence == PresenceStates.Online && now - e.LastActiveTs < PresenceInfo.CurrentlyActiveMs;
        Write(userId, e, withCounter: true);
    }

    void Write(string userId, Entry e, bool withCounter)
    {
        var value = new JsonObject { ["pos"] = e.Pos, ["presence"] = e.Presence, ["last_active_ts"] = e.LastActiveTs };
        if (e.StatusMsg is not null) value["status_msg"] = e.StatusMsg;
        using var b = _store.CreateBatch();
        b.Put(SyncFamilies.Presence, K.Utf8(userId), Encoding.UTF8.GetBytes(value.ToJsonString()));
        if (withCounter) b.Put(SyncFamilies.Counters, CounterKey, K.BigEndian((ulong)_position));
        _store.Write(b);
        e.StoredLastActiveTs = e.LastActiveTs;
    }

    /// <summary>The presence of <paramref name="users"/> changed in (since, upTo] (every one with presence when
    /// since is 0).</summary>
    public List<PresenceInfo> ChangedSince(IEnumerable<string> users, long since, long upTo)
    {
        var list = new List<PresenceInfo>();
        lock (_lock)
            foreach (var u in users)
                if (_users.TryGetValue(u, out var e) && e.Pos > since && e.Pos <= upTo) list.Add(Info(u, e));
        return list;
    }
}

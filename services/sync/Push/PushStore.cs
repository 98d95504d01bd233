using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Storage;
using K = Conduit.Common.Storage.Keys;

namespace Conduit.Sync.Push;

/// <summary>A room's unread notification counts for one user: the whole room, the main timeline, and each thread.</summary>
public sealed record UnreadCounts(long Notifications, long Highlights, long MainNotifications, long MainHighlights,
    IReadOnlyDictionary<string, (long Notifications, long Highlights)> Threads)
{
    public static readonly UnreadCounts None = new(0, 0, 0, 0, new Dictionary<string, (long, long)>());
}

/// <summary>A pusher as the client set it (spec: "POST /pushers/set"), with the time its pushkey was first set.</summary>
public sealed record Pusher(string UserId, string AppId, string PushKey, JsonObject Json)
{
    public string? Url => Json["data"]?["url"] is JsonValue v && v.TryGetValue(out string? s) ? s : null;
    public bool EventIdOnly => Json["data"]?["format"] is JsonValue v && v.TryGetValue(out string? s) && s == "event_id_only";
    public long PushKeyTs => Json["pushkey_ts"] is JsonValue v && v.TryGetValue(out long ts) ? ts : 0;
}

/// <summary>
/// Durable push state (spec: client-server-api, "Push Notifications"): the notifying events each user has not read
/// (for the /sync counts), the notifications list (GET /notifications), pushers, and the queue of pushes to deliver.
/// Storage keys are documented in <see cref="SyncFamilies"/> and the service README.
/// </summary>
public sealed class PushStore
{
    /// <summary>How long GET /notifications keeps a notification (Synapse keeps push actions about a month).</summary>
    public static readonly TimeSpan NotificationsKept = TimeSpan.FromDays(30);

    static readonly byte[] PositionKey = K.Utf8("push");
    static readonly byte[] QueueSeqKey = K.Utf8("push_queue");

    readonly IKeyValueStore _store;
    readonly IKvMap _unread, _implicitRead, _notifications, _pushers, _queue, _counters;
    readonly ReceiptStore _receipts;
    readonly Lock _pusherLock = new();
    readonly Dictionary<string, List<Pusher>> _byUser = new(StringComparer.Ordinal);
    long _queueSeq;

    public PushStore(IKeyValueStore store, ReceiptStore receipts)
    {
        _store = store;
        _receipts = receipts;
        _unread = store.Map(SyncFamilies.PushUnread);
        _implicitRead = store.Map(SyncFamilies.PushRead);
        _notifications = store.Map(SyncFamilies.Notifications);
        _pushers = store.Map(SyncFamilies.Pushers);
        _queue = store.Map(SyncFamilies.PushQueue);
        _counters = store.Map(SyncFamilies.Counters);
        _queueSeq = _counters.Get(QueueSeqKey) is { } q ? (long)K.ReadBigEndian(q) : 0;
        // The counter is written with each batch, which may land out of order: the queue's own keys are the truth.
        foreach (var (k, _) in _queue.Scan([]))
            _queueSeq = Math.Max(_queueSeq, (long)K.ReadBigEndian(k.AsSpan(k.Length - 8)));
        foreach (var (k, v) in _pushers.Scan([]))
        {
            var parts = K.Split(k);
            if (parts.Length != 3) continue;
            var p = new Pusher(parts[0], parts[1], parts[2], JsonLimits.ParseInternal(v)!.AsObject());
            if (!_byUser.TryGetValue(p.UserId, out var list)) _byUser[p.UserId] = list = [];
            list.Add(p);
        }
    }

    public IKeyValueStore Store => _store;

    /// <summary>The room-stream position the push worker has evaluated up to; null before its first start.</summary>
    public long? Position => _counters.Get(PositionKey) is { } v ? (long)K.ReadBigEndian(v) : null;

    public static void SetPosition(IWriteBatch b, long pos) => b.Put(SyncFamilies.Counters, PositionKey, K.BigEndian((ulong)pos));

    // ---- unread counts

    /// <summary>Records a notifying event the user has not read (its thread: "main" or the root's event ID).</summary>
    public static void AddUnread(IWriteBatch b, string userId, string roomId, long pos, string threadId, bool highlight)
        => b.Put(SyncFamilies.PushUnread, UnreadKey(userId, roomId, pos), Encoding.UTF8.GetBytes((highlight ? "1" : "0") + threadId));

    static byte[] UnreadKey(string userId, string roomId, long pos) => K.Concat(K.Prefix(userId, roomId), K.BigEndian((ulong)pos));

    /// <summary>The user sent an event in the thread: the spec counts it as reading up to there ("Marking notifications as read").</summary>
    public static void SetImplicitRead(IWriteBatch b, string userId, string roomId, string threadId, long pos)
        => b.Put(SyncFamilies.PushRead, K.Join(userId, roomId, threadId), K.BigEndian((ulong)pos));

    /// <summary>
    /// The positions the user has read up to in the room: the unthreaded one (the later of m.read and m.read.private,
    /// spec "Marking notifications as read") and each thread's ("main" included), from receipts and the user's own events.
    /// </summary>
    public (long Unthreaded, Dictionary<string, long> Threads) ReadPositions(string userId, string roomId)
    {
        var (unthreaded, threads) = _receipts.ReadPositions(roomId, userId);
        foreach (var (k, v) in _implicitRead.Scan(K.Prefix(userId, roomId)))
        {
            var thread = K.Split(k)[2];
            var pos = (long)K.ReadBigEndian(v);
            if (!threads.TryGetValue(thread, out var p) || p < pos) threads[thread] = pos;
        }
        return (unthreaded, threads);
    }

    /// <summary>The user's unread notification counts in the room (spec: "Receiving notifications", threaded counts).</summary>
    public UnreadCounts Counts(string userId, string roomId)
    {
        var prefix = K.Prefix(userId, roomId);
        var (unthreaded, threads) = ReadPositions(userId, roomId);
        long n = 0, h = 0, mn = 0, mh = 0;
        Dictionary<string, (long, long)>? perThread = null;
        foreach (var (k, v) in _unread.ScanFrom(K.Concat(prefix, K.BigEndian((ulong)unthreaded + 1)), prefix, reverse: false))
        {
            var pos = (long)K.ReadBigEndian(k.AsSpan(prefix.Length));
            var highlight = v[0] == (byte)'1';
            var thread = Encoding.UTF8.GetString(v, 1, v.Length - 1);
            if (threads.TryGetValue(thread, out var read) && pos <= read) continue;
            n++;
            if (highlight) h++;
            if (thread == "main")
            {
                mn++;
                if (highlight) mh++;
                continue;
            }
            perThread ??= new Dictionary<string, (long, long)>(StringComparer.Ordinal);
            perThread.TryGetValue(thread, out var c);
            perThread[thread] = (c.Item1 + 1, c.Item2 + (highlight ? 1 : 0));
        }
        return n == 0 ? UnreadCounts.None : new UnreadCounts(n, h, mn, mh, perThread ?? UnreadCounts.None.Threads);
    }

    /// <summary>Whether the user has read the event at <paramref name="pos"/> of the thread.</summary>
    public bool HasRead(string userId, string roomId, string threadId, long pos)
    {
        var (unthreaded, threads) = ReadPositions(userId, roomId);
        return pos <= unthreaded || threads.TryGetValue(threadId, out var t) && pos <= t;
    }

    /// <summary>The badge: how many rooms have unread notifications (Synapse's default group_unread_count_by_room).</summary>
    public int RoomsWithUnread(string userId)
    {
        var rooms = 0;
        var prefix = K.Prefix(userId);
        var start = prefix;
        while (true)
        {
            var next = _unread.ScanFrom(start, prefix, reverse: false).Select(e => e.Key).FirstOrDefault();
            if (next is null) return rooms;
            var roomId = K.Split(next.AsSpan(0, next.Length - 8))[1];
            if (Counts(userId, roomId).Notifications > 0) rooms++;
            start = K.PrefixEnd(K.Prefix(userId, roomId)) ?? [];
            if (start.Length == 0) return rooms;
        }
    }

    /// <summary>An unthreaded receipt at <paramref name="eventPos"/>: what it covers is read for good, so the entries go.</summary>
    public void ForgetReadUpTo(string userId, string roomId, long eventPos)
    {
        var prefix = K.Prefix(userId, roomId);
        var end = K.Concat(prefix, K.BigEndian((ulong)eventPos + 1));
        // Most receipts cover nothing unread (a user who reads as messages come): a seek, not a durable write.
        if (_unread.ScanFrom(prefix, prefix, reverse: false).Select(e => e.Key).FirstOrDefault() is not { } first || K.Compare(first, end) >= 0) return;
        using var b = _store.CreateBatch();
        b.DeleteRange(SyncFamilies.PushUnread, prefix, end);
        _store.Write(b);
    }

    // ---- GET /notifications

    /// <summary>
    /// The GET /notifications record of one event for one user, built from the event's part (shared by every user
    /// it notifies: room_id, event_id, thread, ts, without the closing brace) and the user's actions.
    /// </summary>
    public static void AddNotification(IWriteBatch b, string userId, long pos, string eventPart, string actionsJson, bool highlight)
        => b.Put(SyncFamilies.Notifications, K.Concat(K.Prefix(userId), K.BigEndian((ulong)pos)),
            Encoding.UTF8.GetBytes(string.Concat(eventPart, highlight ? ",\"highlight\":true,\"actions\":" : ",\"highlight\":false,\"actions\":", actionsJson, "}")));

    /// <summary>The shared part of <see cref="AddNotification(IWriteBatch, string, long, string, string, bool)"/>'s record.</summary>
    public static string NotificationEventPart(string roomId, string eventId, string threadId, long ts)
    {
        var o = new JsonObject { ["room_id"] = roomId, ["event_id"] = eventId, ["thread"] = threadId, ["ts"] = ts }.ToJsonString();
        return o[..^1];
    }

    /// <summary>Drops the user's notifications older than <see cref="NotificationsKept"/>.</summary>
    public void PruneNotifications(IWriteBatch b, string userId, long nowMs)
    {
        var prefix = K.Prefix(userId);
        byte[]? firstKept = null;
        var old = 0;
        foreach (var (k, v) in _notifications.Scan(prefix))
        {
            var ts = JsonLimits.ParseInternal(v)?["ts"]?.GetValue<long>() ?? 0;
            if (nowMs - ts < (long)NotificationsKept.TotalMilliseconds) { firstKept = k; break; }
            if (++old > 1000) { firstKept = k; break; }
        }
        if (old > 0) b.DeleteRange(SyncFamilies.Notifications, prefix, firstKept ?? K.PrefixEnd(prefix)!);
    }

    /// <summary>The user's notifications, newest first, before position <paramref name="before"/>.</summary>
    public IEnumerable<(long Pos, JsonObject Record)> Notifications(string userId, long before)
    {
        var prefix = K.Prefix(userId);
        foreach (var (k, v) in _notifications.ScanFrom(K.Concat(prefix, K.BigEndian((ulong)Math.Max(0, before - 1))), prefix, reverse: true))
        {
            var pos = (long)K.ReadBigEndian(k.AsSpan(prefix.Length));
            if (pos >= before) continue;
            yield return (pos, JsonLimits.ParseInternal(v)!.AsObject());
        }
    }

    // ---- pushers

    public IReadOnlyList<Pusher> PushersOf(string userId)
    {
        lock (_pusherLock) return _byUser.TryGetValue(userId, out var l) ? [.. l] : [];
    }

    public bool HasPushers(string userId)
    {
        lock (_pusherLock) return _byUser.ContainsKey(userId);
    }

    public IReadOnlyList<Pusher> AllPushers()
    {
        lock (_pusherLock) return [.. _byUser.Values.SelectMany(l => l)];
    }

    /// <summary>
    /// Creates or replaces the user's pusher of (app_id, pushkey); unless <paramref name="append"/>, the pushers of
    /// other users with the same app_id and pushkey are removed (spec: "append"). One batch: all or nothing.
    /// </summary>
    public void SetPusher(Pusher p, bool append)
    {
        lock (_pusherLock)
        {
            using var b = _store.CreateBatch();
            var removed = new List<Pusher>();
            if (!append)
                foreach (var other in _byUser.Values.SelectMany(l => l))
                    if (other.UserId != p.UserId && other.AppId == p.AppId && other.PushKey == p.PushKey) removed.Add(other);
            foreach (var r in removed) DeleteInBatch(b, r);
            b.Put(SyncFamilies.Pushers, K.Join(p.UserId, p.AppId, p.PushKey), Encoding.UTF8.GetBytes(p.Json.ToJsonString()));
            _store.Write(b);
            foreach (var r in removed) Forget(r);
            Forget(p);
            if (!_byUser.TryGetValue(p.UserId, out var list)) _byUser[p.UserId] = list = [];
            list.Add(p);
        }
    }

    /// <summary>Removes the user's pusher of (app_id, pushkey) and its queue; false when there was none.</summary>
    public bool DeletePusher(string userId, string appId, string pushKey)
    {
        lock (_pusherLock)
        {
            var p = _byUser.TryGetValue(userId, out var list) ? list.FirstOrDefault(x => x.AppId == appId && x.PushKey == pushKey) : null;
            if (p is null) return false;
            using var b = _store.CreateBatch();
            DeleteInBatch(b, p);
            _store.Write(b);
            Forget(p);
            return true;
        }
    }

    void DeleteInBatch(IWriteBatch b, Pusher p)
    {
        b.Delete(SyncFamilies.Pushers, K.Join(p.UserId, p.AppId, p.PushKey));
        var qp = K.Prefix(p.UserId, p.AppId, p.PushKey);
        b.DeleteRange(SyncFamilies.PushQueue, qp, K.PrefixEnd(qp)!);
    }

    void Forget(Pusher p)
    {
        if (!_byUser.TryGetValue(p.UserId, out var list)) return;
        list.RemoveAll(x => x.AppId == p.AppId && x.PushKey == p.PushKey);
        if (list.Count == 0) _byUser.Remove(p.UserId);
    }

    /// <summary>The device that set the pusher (Synapse ties a pusher to its access token); null for none recorded.</summary>
    public static string? DeviceOf(Pusher p) => p.Json["device_id"] is JsonValue v && v.TryGetValue(out string? d) ? d : null;

    /// <summary>Removes the pushers set by a device that no longer exists; returns how many.</summary>
    public int DeleteDevicePushers(string userId, string deviceId)
    {
        var n = 0;
        foreach (var p in PushersOf(userId))
            if (DeviceOf(p) == deviceId && DeletePusher(userId, p.AppId, p.PushKey)) n++;
        return n;
    }

    public Pusher? FindPusher(string userId, string appId, string pushKey)
    {
        lock (_pusherLock)
            return _byUser.TryGetValue(userId, out var l) ? l.FirstOrDefault(x => x.AppId == appId && x.PushKey == pushKey) : null;
    }

    // ---- the delivery queue: per pusher, in order

    /// <summary>Queues a push for a pusher in <paramref name="b"/>; the sequence number orders it after every earlier one.</summary>
    public void Enqueue(IWriteBatch b, Pusher p, JsonObject item)
    {
        var seq = Interlocked.Increment(ref _queueSeq);
        b.Put(SyncFamilies.PushQueue, K.Concat(K.Prefix(p.UserId, p.AppId, p.PushKey), K.BigEndian((ulong)seq)), Encoding.UTF8.GetBytes(item.ToJsonString()));
        b.Put(SyncFamilies.Counters, QueueSeqKey, K.BigEndian((ulong)seq));
    }

    /// <summary>Queues a push and writes it at once (badge updates after a receipt).</summary>
    public void EnqueueNow(Pusher p, JsonObject item)
    {
        using var b = _store.CreateBatch();
        lock (_pusherLock) Enqueue(b, p, item);
        _store.Write(b);
    }

    /// <summary>The pusher's queued pushes, oldest first.</summary>
    public IEnumerable<(byte[] Key, JsonObject Item)> Queue(Pusher p, int max)
        => _queue.Scan(K.Prefix(p.UserId, p.AppId, p.PushKey)).Take(max).Select(e => (e.Key, JsonLimits.ParseInternal(e.Value)!.AsObject()));

    public void Dequeue(byte[] key) => _queue.Delete(key);

    /// <summary>The pushers with queued pushes (at start: what a restart left to deliver).</summary>
    public IEnumerable<Pusher> PushersWithQueue() => AllPushers().Where(p => Queue(p, 1).Any());
}

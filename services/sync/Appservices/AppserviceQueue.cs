using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Storage;
using K = Conduit.Common.Storage.Keys;

namespace Conduit.Sync.Appservices;

/// <summary>One item to queue for an appservice: its kind (event, ephemeral, to_device, device_lists, otk) and its
/// value as JSON text.</summary>
public readonly record struct AppserviceItem(string AppserviceId, string Kind, string Json);

/// <summary>What one transaction carries: the queue items up to <see cref="LastSeq"/>, under <see cref="TxnId"/>.</summary>
public sealed record AppserviceTxn(long TxnId, ulong LastSeq, IReadOnlyList<JsonObject> Items);

/// <summary>
/// The durable queue of what each application service is to receive (spec: application-service-api, "Pushing events":
/// "The homeserver MUST maintain a queue of transactions"). Items (events, ephemeral events, to-device messages, device
/// list changes, key counts) are appended in one order per appservice under one lock, so a later item never lands
/// before an earlier one. A transaction is fixed when first sent (its ID and the last item it carries are written
/// down) and resent unchanged until acknowledged, across restarts: the spec forbids adding to a transaction on retry,
/// and, unlike Synapse, which keeps only event IDs, every item is kept whole, so a retry loses no ephemeral data.
/// Storage keys: <see cref="SyncFamilies.AppserviceQueue"/>, <see cref="SyncFamilies.AppserviceTxns"/>.
/// </summary>
public sealed class AppserviceQueue
{
    /// <summary>Synapse's limits for one transaction: at most this many events, and as many ephemeral events and
    /// to-device messages.</summary>
    public const int MaxPerKind = 100;

    static readonly byte[] FeedKey = K.Utf8("as_feed");
    static readonly byte[] SeqKey = K.Utf8("as_queue");
    static readonly byte[] IdleKey = K.Utf8("as_feed_idle");

    readonly IKeyValueStore _store;
    readonly IKvMap _queue, _txns, _counters;
    readonly Lock _lock = new();
    ulong _seq;

    public AppserviceQueue(IKeyValueStore store)
    {
        _store = store;
        _queue = store.Map(SyncFamilies.AppserviceQueue);
        _txns = store.Map(SyncFamilies.AppserviceTxns);
        _counters = store.Map(SyncFamilies.Counters);
        _seq = _counters.Get(SeqKey) is { } v ? K.ReadBigEndian(v) : 0;
        foreach (var (k, _) in _queue.Scan([])) _seq = Math.Max(_seq, K.ReadBigEndian(k.AsSpan(k.Length - 8)));
    }

    /// <summary>Raised after items are queued (the sender wakes the appservices named).</summary>
    public event Action<IReadOnlyCollection<string>>? Queued;

    /// <summary>The room-stream position the event feed has queued up to; null before its first start, and null too
    /// when the feed last ran with no appservice to send to (it does not write its position then, so a server without
    /// appservices pays nothing per event; one registered later starts from then on, as on a first start).</summary>
    public long? FeedPosition => _counters.Get(IdleKey) is not null ? null : _counters.Get(FeedKey) is { } v ? (long)K.ReadBigEndian(v) : null;

    /// <summary>The feed has no appservice to send to: its position stops being written (see <see cref="FeedPosition"/>).</summary>
    public void MarkFeedIdle() => _counters.Put(IdleKey, K.BigEndian(1));

    /// <summary>
    /// Appends the items, in order, each to its appservice's queue, and (when given) the feed's new position, in one
    /// durable write.
    /// </summary>
    public void Append(IReadOnlyList<AppserviceItem> items, long? feedPosition = null,
        IReadOnlyList<(string UserId, string DeviceId, long Position)>? cursors = null)
    {
        if (items.Count == 0 && feedPosition is null && cursors is not { Count: > 0 }) return;
        var ids = new HashSet<string>(StringComparer.Ordinal);
        lock (_lock)
        {
            using var b = _store.CreateBatch();
            var seq = _seq;
            foreach (var (id, kind, json) in items)
            {
                seq++;
                // {"k": kind, "v": the value's JSON as given} (kinds are this code's own words: nothing to escape).
                b.Put(SyncFamilies.AppserviceQueue, K.Concat(K.Prefix(id), K.BigEndian(seq)), Encoding.UTF8.GetBytes($"{{\"k\":\"{kind}\",\"v\":{json}}}"));
                ids.Add(id);
            }
            if (seq != _seq) b.Put(SyncFamilies.Counters, SeqKey, K.BigEndian(seq));
            if (feedPosition is { } pos)
            {
                b.Put(SyncFamilies.Counters, FeedKey, K.BigEndian((ulong)pos));
                b.Delete(SyncFamilies.Counters, IdleKey);
            }
            foreach (var (user, device, p) in cursors ?? []) b.Put(SyncFamilies.AppserviceDevices, K.Join(user, device), K.BigEndian((ulong)p));
            _store.Write(b);
            _seq = seq;
        }
        if (ids.Count > 0) Queued?.Invoke(ids);
    }

    /// <summary>The to-device cursors of the users' devices (those that have one).</summary>
    public IEnumerable<(string UserId, string DeviceId, long Position)> DeviceCursors(IEnumerable<string> userIds)
    {
        var devices = _store.Map(SyncFamilies.AppserviceDevices);
        foreach (var user in userIds)
            foreach (var (k, v) in devices.Scan(K.Prefix(user)))
                yield return (user, K.Split(k)[1], (long)K.ReadBigEndian(v));
    }

    /// <summary>The appservices with queued items: one seek per appservice, whatever the backlog (the sender asks on
    /// every wake-up).</summary>
    public IEnumerable<string> AppservicesWithQueue()
    {
        byte[] from = [];
        while (_queue.ScanFrom(from, [], reverse: false).FirstOrDefault() is { Key: { } k })
        {
            var id = K.Split(k.AsSpan(0, k.Length - 8))[0];
            yield return id;
            from = K.PrefixEnd(K.Prefix(id))!;
        }
    }

    /// <summary>
    /// The transaction to send now: the one already being sent, unchanged, or else a new one made of the oldest
    /// items (at most <see cref="MaxPerKind"/> of each kind), written down before it is returned. Null when nothing
    /// waits.
    /// </summary>
    public AppserviceTxn? Current(string appserviceId)
    {
        lock (_lock)
        {
            var state = _txns.Get(K.Utf8(appserviceId)) is { } s ? JsonLimits.ParseInternal(s)!.AsObject() : new JsonObject { ["next"] = 1L };
            var prefix = K.Prefix(appserviceId);
            if (state["txn"] is JsonValue t && t.TryGetValue(out long txnId) && state["last"] is JsonValue l && l.TryGetValue(out ulong last))
            {
                var items = new List<JsonObject>();
                foreach (var (k, v) in _queue.Scan(prefix))
                {
                    if (K.ReadBigEndian(k.AsSpan(k.Length - 8)) > last) break;
                    items.Add(JsonLimits.ParseInternal(v)!.AsObject());
                }
                if (items.Count > 0) return new AppserviceTxn(txnId, last, items);
                // Acknowledged but not yet marked so (a crash in between): a new one.
            }
            var next = state["next"] is JsonValue nv && nv.TryGetValue(out long n0) ? n0 : 1;
            var taken = new List<JsonObject>();
            ulong lastSeq = 0;
            var counts = new Dictionary<string, int>(StringComparer.Ordinal);
            foreach (var (k, v) in _queue.Scan(prefix))
            {
                var item = JsonLimits.ParseInternal(v)!.AsObject();
                var kind = KindGroup(item["k"]?.GetValue<string>());
                var n = counts.GetValueOrDefault(kind);
                if (n >= MaxPerKind) break;
                counts[kind] = n + 1;
                taken.Add(item);
                lastSeq = K.ReadBigEndian(k.AsSpan(k.Length - 8));
            }
            if (taken.Count == 0) return null;
            _txns.Put(K.Utf8(appserviceId), Encoding.UTF8.GetBytes(new JsonObject { ["next"] = next, ["txn"] = next, ["last"] = lastSeq }.ToJsonString()));
            return new AppserviceTxn(next, lastSeq, taken);
        }
    }

    // Device list changes and key counts are merged into one object per transaction: they do not count.
    static string KindGroup(string? kind) => kind switch { "event" => "event", "to_device" => "to_device", "ephemeral" => "ephemeral", _ => "other" };

    /// <summary>The appservice acknowledged the transaction: its items go, and the next one gets the next ID.</summary>
    public void Acknowledge(string appserviceId, AppserviceTxn txn)
    {
        lock (_lock)
        {
            using var b = _store.CreateBatch();
            var prefix = K.Prefix(appserviceId);
            b.DeleteRange(SyncFamilies.AppserviceQueue, prefix, K.Concat(prefix, K.BigEndian(txn.LastSeq + 1)));
            b.Put(SyncFamilies.AppserviceTxns, K.Utf8(appserviceId), Encoding.UTF8.GetBytes(new JsonObject { ["next"] = txn.TxnId + 1 }.ToJsonString()));
            _store.Write(b);
        }
    }

    /// <summary>Drops everything queued for an appservice (it was unregistered).</summary>
    public void Drop(string appserviceId)
    {
        lock (_lock)
        {
            using var b = _store.CreateBatch();
            var prefix = K.Prefix(appserviceId);
            b.DeleteRange(SyncFamilies.AppserviceQueue, prefix, K.PrefixEnd(prefix)!);
            b.Delete(SyncFamilies.AppserviceTxns, K.Utf8(appserviceId));
            _store.Write(b);
        }
    }
}

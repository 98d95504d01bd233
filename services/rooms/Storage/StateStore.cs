using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Text;
using Conduit.Common.Storage;
using K = Conduit.Common.Storage.Keys;

namespace Conduit.Rooms;

/// <summary>
/// The state of a room before every event, stored compactly. A (type, state_key) and an event ID each get an
/// 8-byte short ID; a state group is a layer of (short key → short event) entries added and removed on top of a
/// parent group. New groups are saved with the layering rule Conduit uses (famedly/conduit, state_compressor):
/// at most four layers deep, and a diff large enough relative to the layer below is merged into it, so layers
/// grow geometrically and a 10,000-member room never copies its whole state per event.
/// Groups are immutable once written; short IDs and groups created by a batch that fails are never referenced,
/// and their IDs are not reused.
/// Several rooms are written at once (each under its own room lock): IDs are allocated atomically, and a (type,
/// state_key) gets one short ID server-wide even when two rooms first use it at the same moment. Until some batch
/// that writes its mapping is durable, every batch that uses it writes the mapping too. The next free IDs are found
/// at start from the largest key of each family, so no counter has to be written in order by concurrent batches.
/// </summary>
public sealed class StateStore
{
    readonly IKeyValueStore _store;
    readonly IKvMap _keyToShort, _shortToKey, _eventToShort, _shortToEvent, _groups;
    readonly ConcurrentDictionary<ulong, Layer> _layers = new();
    readonly ConcurrentDictionary<(string, string), ulong> _shortKeys = new();
    readonly ConcurrentDictionary<ulong, (string, string)> _keysByShort = new();
    // Short state keys allocated but not yet durable (invisible to readers), and the lock that makes allocation unique.
    readonly ConcurrentDictionary<(string, string), ulong> _pendingKeys = new();
    readonly Lock _allocate = new();
    // Short event ID → event ID, filled from durable mappings only (a pending batch's IDs are found in its Tx): an ID
    // is never reused, so an entry never goes stale. Bounded like the layers: cleared when full (about 10 MB).
    readonly ConcurrentDictionary<ulong, string> _eventIds = new();
    int _eventIdsCached;
    ulong _nextStateKey, _nextEvent, _nextGroup;
    const int MaxCachedLayers = 20_000;
    const int MaxCachedEventIds = 65_536;

    /// <summary>One layer: entries keyed by short state key. A key may be both removed (old event) and added (new).</summary>
    public sealed record Layer(ulong Id, ulong Parent, Dictionary<ulong, ulong> Added, Dictionary<ulong, ulong> Removed)
    {
        public int Size => Added.Count + Removed.Count;
    }

    public StateStore(IKeyValueStore store)
    {
        _store = store;
        _keyToShort = store.Map(RoomsFamilies.StateKeyShort);
        _shortToKey = store.Map(RoomsFamilies.ShortStateKey);
        _eventToShort = store.Map(RoomsFamilies.EventIdShort);
        _shortToEvent = store.Map(RoomsFamilies.ShortEventId);
        _groups = store.Map(RoomsFamilies.StateGroups);
        _nextStateKey = LargestId(_shortToKey);
        _nextEvent = LargestId(_shortToEvent);
        _nextGroup = LargestId(_groups);
    }

    static ulong LargestId(IKvMap family)
    {
        foreach (var (k, _) in family.ScanFrom(RoomsFamilies.ShortIdKey(ulong.MaxValue), [], reverse: true)) return K.ReadBigEndian(k);
        return 0;
    }

    /// <summary>Writes made while one event batch is built; the caller holds the room's write lock.</summary>
    public sealed class Tx(IWriteBatch batch)
    {
        public IWriteBatch Batch { get; } = batch;
        // Short state keys whose mapping this batch writes (allocated by it, or still pending from another batch).
        internal readonly Dictionary<(string, string), ulong> Keys = [];
        internal readonly Dictionary<string, ulong> Events = [];
        internal readonly Dictionary<ulong, Layer> Layers = [];
    }

    public Tx Begin(IWriteBatch batch) => new(batch);

    /// <summary>After the batch is durable: what it created becomes visible to later readers.</summary>
    public void Committed(Tx tx)
    {
        foreach (var (k, v) in tx.Keys)
        {
            _shortKeys[k] = v;
            _keysByShort[v] = k;
            _pendingKeys.TryRemove(k, out _);
        }
        foreach (var (id, layer) in tx.Layers) Cache(layer);
    }

    public ulong ShortStateKey(Tx tx, string type, string stateKey)
    {
        if (tx.Keys.TryGetValue((type, stateKey), out var s) || TryShortStateKey(type, stateKey, out s)) return s;
        // Not durable yet: allocated now, or by another batch still in flight (or one that failed), whose ID is
        // reused so the key keeps one short ID; this batch writes the mapping as well.
        lock (_allocate)
        {
            if (TryShortStateKey(type, stateKey, out s)) return s;
            if (!_pendingKeys.TryGetValue((type, stateKey), out s))
                _pendingKeys[(type, stateKey)] = s = Interlocked.Increment(ref _nextStateKey);
        }
        tx.Keys[(type, stateKey)] = s;
        var key = RoomsFamilies.StateKeyShortKey(type, stateKey);
        tx.Batch.Put(RoomsFamilies.StateKeyShort, key, RoomsFamilies.ShortIdKey(s));
        tx.Batch.Put(RoomsFamilies.ShortStateKey, RoomsFamilies.ShortIdKey(s), key);
        return s;
    }

    public bool TryShortStateKey(string type, string stateKey, out ulong s)
    {
        if (_shortKeys.TryGetValue((type, stateKey), out s)) return true;
        if (_keyToShort.Get(RoomsFamilies.StateKeyShortKey(type, stateKey)) is not { } v) return false;
        s = K.ReadBigEndian(v);
        _shortKeys[(type, stateKey)] = s;
        return true;
    }

    public (string Type, string StateKey) StateKeyOf(ulong s, Tx? tx = null)
    {
        if (tx is not null)
            foreach (var (key, v) in tx.Keys) if (v == s) return key;
        if (_keysByShort.TryGetValue(s, out var k)) return k;
        var parts = K.Split(_shortToKey.Get(RoomsFamilies.ShortIdKey(s)) ?? throw new InvalidOperationException($"unknown short state key {s}"));
        k = (parts[0], parts[1]);
        _keysByShort[s] = k;
        return k;
    }

    public ulong ShortEventId(Tx tx, string eventId)
    {
        if (tx.Events.TryGetValue(eventId, out var s)) return s;
        if (_eventToShort.Get(K.Utf8(eventId)) is { } v) return K.ReadBigEndian(v);
        // An event belongs to one room, whose lock the caller holds: no other batch allocates for it meanwhile.
        s = Interlocked.Increment(ref _nextEvent);
        tx.Events[eventId] = s;
        tx.Batch.Put(RoomsFamilies.EventIdShort, K.Utf8(eventId), RoomsFamilies.ShortIdKey(s));
        tx.Batch.Put(RoomsFamilies.ShortEventId, RoomsFamilies.ShortIdKey(s), K.Utf8(eventId));
        return s;
    }

    public string EventIdOf(ulong s, Tx? tx = null)
    {
        if (tx is not null)
            foreach (var (id, v) in tx.Events) if (v == s) return id;
        if (_eventIds.TryGetValue(s, out var cached)) return cached;
        var eventId = Encoding.UTF8.GetString(_shortToEvent.Get(RoomsFamilies.ShortIdKey(s)) ?? throw new InvalidOperationException($"unknown short event id {s}"));
        // A counter rather than the dictionary's Count, which takes every lock of the dictionary.
        if (Interlocked.Increment(ref _eventIdsCached) > MaxCachedEventIds)
        {
            _eventIds.Clear();
            Interlocked.Exchange(ref _eventIdsCached, 1);
        }
        _eventIds[s] = eventId;
        return eventId;
    }

    // ---- groups

    public Layer LoadLayer(ulong id, Tx? tx = null)
    {
        if (tx is not null && tx.Layers.TryGetValue(id, out var pending)) return pending;
        if (_layers.TryGetValue(id, out var cached)) return cached;
        var v = _groups.Get(RoomsFamilies.ShortIdKey(id)) ?? throw new InvalidOperationException($"unknown state group {id}");
        var parent = BinaryPrimitives.ReadUInt64BigEndian(v);
        var added = BinaryPrimitives.ReadInt32BigEndian(v.AsSpan(8));
        var a = new Dictionary<ulong, ulong>(added);
        var r = new Dictionary<ulong, ulong>();
        var span = v.AsSpan(12);
        for (var i = 0; i < span.Length / 16; i++)
        {
            var k = BinaryPrimitives.ReadUInt64BigEndian(span[(i * 16)..]);
            var e = BinaryPrimitives.ReadUInt64BigEndian(span[(i * 16 + 8)..]);
            if (i < added) a[k] = e; else r[k] = e;
        }
        var layer = new Layer(id, parent, a, r);
        Cache(layer);
        return layer;
    }

    void Cache(Layer layer)
    {
        if (_layers.Count > MaxCachedLayers) _layers.Clear();
        _layers[layer.Id] = layer;
    }

    /// <summary>The IDs of a group's layers, from the group itself to its root (the groups a purged room's storage drops).</summary>
    public IEnumerable<ulong> LayerIds(ulong group)
    {
        for (var g = group; g != 0;)
        {
            Layer layer;
            try { layer = LoadLayer(g); }
            catch (InvalidOperationException) { yield break; } // dropped already (a purge that stopped half-way)
            yield return g;
            g = layer.Parent;
        }
    }

    /// <summary>The layers of a group, root first.</summary>
    List<Layer> Chain(ulong group, Tx? tx)
    {
        var list = new List<Layer>();
        for (var g = group; g != 0;)
        {
            var l = LoadLayer(g, tx);
            list.Add(l);
            g = l.Parent;
        }
        list.Reverse();
        return list;
    }

    /// <summary>A new group: <paramref name="parent"/> with one key set to an event (replacing what it had).</summary>
    public ulong Set(Tx tx, ulong parent, ulong shortKey, ulong shortEvent)
    {
        var added = new Dictionary<ulong, ulong> { [shortKey] = shortEvent };
        var removed = new Dictionary<ulong, ulong>();
        if (parent != 0 && Lookup(parent, shortKey, tx) is { } old) removed[shortKey] = old;
        var id = Interlocked.Increment(ref _nextGroup);
        SaveFromDiff(tx, id, added, removed, 1_000_000, parent == 0 ? [] : Chain(parent, tx));
        return id;
    }

    /// <summary>
    /// A new group: <paramref name="parent"/> with several keys set (event) or removed (null). Used for states
    /// that are not one event on top of another: the result of state resolution.
    /// </summary>
    public ulong Apply(Tx tx, ulong parent, IReadOnlyDictionary<ulong, ulong?> changes)
    {
        var added = new Dictionary<ulong, ulong>();
        var removed = new Dictionary<ulong, ulong>();
        foreach (var (k, e) in changes)
        {
            var old = parent == 0 ? null : Lookup(parent, k, tx);
            if (old == e) continue;
            if (old is { } o) removed[k] = o;
            if (e is { } n) added[k] = n;
        }
        if (added.Count == 0 && removed.Count == 0 && parent != 0) return parent;
        var id = Interlocked.Increment(ref _nextGroup);
        SaveFromDiff(tx, id, added, removed, 1_000_000, parent == 0 ? [] : Chain(parent, tx));
        return id;
    }

    void SaveFromDiff(Tx tx, ulong id, Dictionary<ulong, ulong> added, Dictionary<ulong, ulong> removed, long diffToSibling, List<Layer> parents)
    {
        long diffSum = added.Count + removed.Count;
        if (parents.Count > 3)
        {
            // Too many layers: fold this diff into the top one and try again one level down.
            var top = parents[^1];
            parents.RemoveAt(parents.Count - 1);
            var (a, r) = Merge(top, added, removed);
            SaveFromDiff(tx, id, a, r, diffSum, parents);
            return;
        }
        if (parents.Count == 0)
        {
            Write(tx, new Layer(id, 0, added, removed));
            return;
        }
        var parent = parents[^1];
        if (diffSum * diffSum >= 2 * diffToSibling * parent.Size)
        {
            // The diff is large next to the layer below: replace that layer instead of stacking on it.
            parents.RemoveAt(parents.Count - 1);
            var (a, r) = Merge(parent, added, removed);
            SaveFromDiff(tx, id, a, r, diffSum, parents);
        }
        else
        {
            Write(tx, new Layer(id, parent.Id, added, removed));
        }
    }

    static (Dictionary<ulong, ulong> Added, Dictionary<ulong, ulong> Removed) Merge(Layer below, Dictionary<ulong, ulong> added, Dictionary<ulong, ulong> removed)
    {
        var a = new Dictionary<ulong, ulong>(below.Added);
        var r = new Dictionary<ulong, ulong>(below.Removed);
        foreach (var (k, e) in removed)
        {
            if (a.TryGetValue(k, out var ae) && ae == e) a.Remove(k);
            else r[k] = e;
        }
        foreach (var (k, e) in added)
        {
            if (r.TryGetValue(k, out var re) && re == e) r.Remove(k);
            else a[k] = e;
        }
        return (a, r);
    }

    void Write(Tx tx, Layer layer)
    {
        var buf = new byte[12 + 16 * layer.Size];
        BinaryPrimitives.WriteUInt64BigEndian(buf, layer.Parent);
        BinaryPrimitives.WriteInt32BigEndian(buf.AsSpan(8), layer.Added.Count);
        var i = 12;
        foreach (var (k, e) in layer.Added.Concat(layer.Removed))
        {
            BinaryPrimitives.WriteUInt64BigEndian(buf.AsSpan(i), k);
            BinaryPrimitives.WriteUInt64BigEndian(buf.AsSpan(i + 8), e);
            i += 16;
        }
        tx.Batch.Put(RoomsFamilies.StateGroups, RoomsFamilies.ShortIdKey(layer.Id), buf);
        tx.Layers[layer.Id] = layer;
    }

    // ---- reading

    /// <summary>The event a group maps a key to, walking the layers from the top.</summary>
    public ulong? Lookup(ulong group, ulong shortKey, Tx? tx = null)
    {
        for (var g = group; g != 0;)
        {
            var l = LoadLayer(g, tx);
            if (l.Added.TryGetValue(shortKey, out var e)) return e;
            if (l.Removed.ContainsKey(shortKey)) return null;
            g = l.Parent;
        }
        return null;
    }

    public string? LookupEventId(ulong group, string type, string stateKey)
        => group != 0 && TryShortStateKey(type, stateKey, out var k) && Lookup(group, k) is { } e ? EventIdOf(e) : null;

    /// <summary>
    /// The whole state of a group as short state key → short event ID, read from its layers alone: a caller that
    /// needs only some entries (lazy-loaded members in /sync) chooses them by key before resolving any event ID.
    /// </summary>
    public Dictionary<ulong, ulong> Entries(ulong group, Tx? tx = null)
    {
        var state = new Dictionary<ulong, ulong>();
        foreach (var l in Chain(group, tx))
        {
            foreach (var (k, e) in l.Removed)
                if (state.TryGetValue(k, out var cur) && cur == e) state.Remove(k);
            foreach (var (k, e) in l.Added) state[k] = e;
        }
        return state;
    }

    /// <summary>The whole state of a group as (type, state_key) → event ID.</summary>
    public Dictionary<(string Type, string StateKey), string> Full(ulong group, Tx? tx = null)
        => Entries(group, tx).ToDictionary(kv => StateKeyOf(kv.Key, tx), kv => EventIdOf(kv.Value, tx));

    /// <summary>Bytes stored for a room's groups (for the benchmark): entries are 16 bytes plus 12 per group.</summary>
    public long GroupBytes(IEnumerable<ulong> groups) => groups.Distinct().Sum(g => 12L + 16L * LoadLayer(g).Size);
}

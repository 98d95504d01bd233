namespace Conduit.Common.Storage;

/// <summary>In-memory backend for tests: same ordering and semantics as the persistent ones, nothing persisted.</summary>
internal sealed class MemoryKvStore : IKeyValueStore
{
    internal sealed class Entry(byte[] key, byte[] value)
    {
        public readonly byte[] Key = key;
        public byte[] Value = value;
    }

    private sealed class EntryComparer : IComparer<Entry>
    {
        public static readonly EntryComparer Instance = new();
        public int Compare(Entry? x, Entry? y) => ((ReadOnlySpan<byte>)x!.Key).SequenceCompareTo(y!.Key);
    }

    private readonly Lock _lock = new();
    private readonly Dictionary<string, SortedSet<Entry>> _data = new(StringComparer.Ordinal);
    private readonly Dictionary<string, FamilyMap> _maps = new(StringComparer.Ordinal);
    private readonly HashSet<string> _names;
    private bool _disposed;

    public MemoryKvStore(IReadOnlyList<ColumnFamily> families)
    {
        Families = families;
        _names = families.Select(f => f.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var f in families)
        {
            _data[f.Name] = new SortedSet<Entry>(EntryComparer.Instance);
            _maps[f.Name] = new FamilyMap(this, f.Name, _data[f.Name]);
        }
    }

    public string Backend => "memory";

    public IReadOnlyList<ColumnFamily> Families { get; }

    public IKvMap Map(string family)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return _maps.TryGetValue(family, out var m) ? m : throw Undeclared(family);
    }

    public IWriteBatch CreateBatch() => new KvWriteBatch(this, _names);

    public void Write(IWriteBatch batch)
    {
        var b = KvWriteBatch.From(batch, this);
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            foreach (var op in b.Ops)
            {
                if (op.End is not null) DeleteRangeLocked(_data[op.Family], op.Key, op.End);
                else if (op.Value is null) DeleteLocked(_data[op.Family], op.Key);
                else PutLocked(_data[op.Family], op.Key, op.Value);
            }
        }
    }

    public void Checkpoint(string dir) => throw new NotSupportedException("The in-memory store keeps nothing to back up");

    public IKvSnapshot? Snapshot()
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var copy = new MemoryKvStore(Families);
            foreach (var (name, set) in _data)
            {
                // Values are never mutated in place (Put replaces the array), so sharing them is safe.
                foreach (var e in set) copy._data[name].Add(new Entry(e.Key, e.Value));
            }
            return new SnapshotView(copy);
        }
    }

    public void Dispose()
    {
        lock (_lock) _disposed = true;
    }

    internal static KeyNotFoundException Undeclared(string family) =>
        new($"Column family '{family}' was not declared when the store was opened.");

    private static void PutLocked(SortedSet<Entry> set, byte[] key, byte[] value)
    {
        var copy = (byte[])value.Clone();
        if (set.TryGetValue(new Entry(key, []), out var existing)) existing.Value = copy;
        else set.Add(new Entry((byte[])key.Clone(), copy));
    }

    private static void DeleteLocked(SortedSet<Entry> set, byte[] key) => set.Remove(new Entry(key, []));

    private static void DeleteRangeLocked(SortedSet<Entry> set, byte[] start, byte[] end)
    {
        if (Keys.Compare(start, end) >= 0) return;
        foreach (var e in set.GetViewBetween(new Entry(start, []), new Entry(end, [])).ToList())
            if (Keys.Compare(e.Key, end) < 0) set.Remove(e);
    }

    private sealed class SnapshotView(MemoryKvStore copy) : IKvSnapshot
    {
        public IKvReader Map(string family) => copy.Map(family);
        public void Dispose() => copy.Dispose();
    }

    private sealed class FamilyMap(MemoryKvStore store, string family, SortedSet<Entry> set) : IKvMap
    {
        public string Family => family;

        public byte[]? Get(ReadOnlySpan<byte> key)
        {
            var probe = new Entry(key.ToArray(), []);
            lock (store._lock)
            {
                ObjectDisposedException.ThrowIf(store._disposed, store);
                return set.TryGetValue(probe, out var e) ? (byte[])e.Value.Clone() : null;
            }
        }

        public bool Contains(ReadOnlySpan<byte> key)
        {
            var probe = new Entry(key.ToArray(), []);
            lock (store._lock)
            {
                ObjectDisposedException.ThrowIf(store._disposed, store);
                return set.Contains(probe);
            }
        }

        public void Put(byte[] key, byte[] value)
        {
            ArgumentNullException.ThrowIfNull(key);
            ArgumentNullException.ThrowIfNull(value);
            lock (store._lock)
            {
                ObjectDisposedException.ThrowIf(store._disposed, store);
                PutLocked(set, key, value);
            }
        }

        public void Delete(byte[] key)
        {
            ArgumentNullException.ThrowIfNull(key);
            lock (store._lock)
            {
                ObjectDisposedException.ThrowIf(store._disposed, store);
                DeleteLocked(set, key);
            }
        }

        public IEnumerable<KeyValuePair<byte[], byte[]>> Scan(byte[] prefix) => ScanFrom(prefix, prefix, reverse: false);

        public IEnumerable<KeyValuePair<byte[], byte[]>> ScanFrom(byte[] start, byte[] prefix, bool reverse) =>
            PagedScan.Run(Fetch, start, prefix, reverse);

        private List<KeyValuePair<byte[], byte[]>> Fetch(byte[] prefix, byte[]? prefixEnd, byte[] bound, bool inclusive, bool reverse, int limit)
        {
            var page = new List<KeyValuePair<byte[], byte[]>>();
            lock (store._lock)
            {
                ObjectDisposedException.ThrowIf(store._disposed, store);
                if (set.Count == 0) return page;
                byte[] lo, hi;
                if (reverse)
                {
                    lo = prefix;
                    hi = prefixEnd is not null && Keys.Compare(bound, prefixEnd) > 0 ? prefixEnd : bound;
                }
                else
                {
                    lo = bound;
                    hi = prefixEnd ?? set.Max!.Key;
                }
                if (Keys.Compare(lo, hi) > 0) return page;
                var view = set.GetViewBetween(new Entry(lo, []), new Entry(hi, []));
                foreach (var e in reverse ? view.Reverse() : view)
                {
                    if (!inclusive && Keys.Compare(e.Key, bound) == 0) continue;
                    if (!Keys.StartsWith(e.Key, prefix))
                    {
                        if (reverse) continue;
                        break;
                    }
                    page.Add(new((byte[])e.Key.Clone(), (byte[])e.Value.Clone()));
                    if (page.Count == limit) break;
                }
            }
            return page;
        }
    }
}

using RocksDbSharp;

namespace Conduit.Common.Storage;

/// <summary>
/// RocksDB backend: one database directory, one column family per declared family. Every write goes through the WAL
/// with sync, so an acknowledged write survives a crash of the process or the machine.
/// </summary>
internal sealed class RocksDbKvStore : IKeyValueStore
{
    private readonly RocksDb _db;
    private readonly WriteOptions _syncWrite = new WriteOptions().SetSync(true);
    private readonly Dictionary<string, ColumnFamilyHandle> _handles = new(StringComparer.Ordinal);
    private readonly Dictionary<string, FamilyMap> _maps = new(StringComparer.Ordinal);
    private readonly HashSet<string> _names;
    private static readonly Lazy<Cache> SharedCache = new(() => Cache.CreateLru(16UL << 20));
    private volatile bool _disposed;

    public RocksDbKvStore(string path, IReadOnlyList<ColumnFamily> families)
    {
        Families = families;
        _names = families.Select(f => f.Name).ToHashSet(StringComparer.Ordinal);
        Directory.CreateDirectory(path);
        // Sized for a small VPS: RocksDB's defaults (64 MB memtables per family, each allocated in 8 MB arena
        // blocks) would cost far more than our data with a couple of dozen families. All families share one
        // block cache and one memtable budget.
        var options = new DbOptions()
            .SetCreateIfMissing(true)
            .SetCreateMissingColumnFamilies(true)
            .SetDbWriteBufferSize(32UL << 20)
            .SetMaxOpenFiles(256)
            .SetKeepLogFileNum(3);

        // Every existing family must be opened, declared now or not (RocksDB refuses to open otherwise).
        var names = new List<string>();
        if (File.Exists(Path.Combine(path, "CURRENT")))
        {
            names.AddRange(RocksDb.ListColumnFamilies(options, path));
        }
        foreach (var f in families)
        {
            if (!names.Contains(f.Name)) names.Add(f.Name);
        }
        var table = new BlockBasedTableOptions().SetBlockCache(SharedCache.Value);
        ColumnFamilyOptions FamilyOptions() => new ColumnFamilyOptions()
            .SetWriteBufferSize(4UL << 20)
            .SetArenaBlockSize(256UL << 10)
            .SetBlockBasedTableFactory(table);
        var cfs = new ColumnFamilies(FamilyOptions()); // holds "default"
        foreach (var name in names)
        {
            if (name != "default") cfs.Add(name, FamilyOptions());
        }
        _db = RocksDb.Open(options, path, cfs);
        foreach (var f in families)
        {
            var handle = _db.GetColumnFamily(f.Name);
            _handles[f.Name] = handle;
            _maps[f.Name] = new FamilyMap(this, f.Name, handle, null);
        }
    }

    public string Backend => "rocksdb";

    public IReadOnlyList<ColumnFamily> Families { get; }

    public IKvMap Map(string family)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return _maps.TryGetValue(family, out var m) ? m : throw MemoryKvStore.Undeclared(family);
    }

    public IWriteBatch CreateBatch() => new KvWriteBatch(this, _names);

    public void Write(IWriteBatch batch)
    {
        var b = KvWriteBatch.From(batch, this);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (b.Count == 0) return;
        using var wb = new WriteBatch();
        foreach (var op in b.Ops)
        {
            var cf = _handles[op.Family];
            if (op.Value is null) wb.Delete(op.Key, cf);
            else wb.Put(op.Key, op.Value, cf);
        }
        _db.Write(wb, _syncWrite);
    }

    public IKvSnapshot? Snapshot()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return new SnapshotView(this, _db.CreateSnapshot());
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _db.Dispose();
    }

    private sealed class SnapshotView : IKvSnapshot
    {
        private readonly RocksDbKvStore _store;
        private readonly Snapshot _snapshot;
        private readonly ReadOptions _read;
        private readonly Dictionary<string, FamilyMap> _maps = new(StringComparer.Ordinal);

        public SnapshotView(RocksDbKvStore store, Snapshot snapshot)
        {
            _store = store;
            _snapshot = snapshot;
            _read = new ReadOptions().SetSnapshot(snapshot);
            foreach (var (name, handle) in store._handles) _maps[name] = new FamilyMap(store, name, handle, _read);
        }

        public IKvReader Map(string family) =>
            _maps.TryGetValue(family, out var m) ? m : throw MemoryKvStore.Undeclared(family);

        public void Dispose() => _snapshot.Dispose();
    }

    private sealed class FamilyMap(RocksDbKvStore store, string family, ColumnFamilyHandle cf, ReadOptions? read) : IKvMap
    {
        public string Family => family;

        private RocksDb Db
        {
            get
            {
                ObjectDisposedException.ThrowIf(store._disposed, store);
                return store._db;
            }
        }

        public byte[]? Get(ReadOnlySpan<byte> key) => Db.Get(key.ToArray(), cf, read);

        public bool Contains(ReadOnlySpan<byte> key) => Get(key) is not null;

        public void Put(byte[] key, byte[] value)
        {
            ArgumentNullException.ThrowIfNull(key);
            ArgumentNullException.ThrowIfNull(value);
            if (read is not null) throw new InvalidOperationException("A snapshot is read-only.");
            Db.Put(key, value, cf, store._syncWrite);
        }

        public void Delete(byte[] key)
        {
            ArgumentNullException.ThrowIfNull(key);
            if (read is not null) throw new InvalidOperationException("A snapshot is read-only.");
            Db.Remove(key, cf, store._syncWrite);
        }

        public IEnumerable<KeyValuePair<byte[], byte[]>> Scan(byte[] prefix) => ScanFrom(prefix, prefix, reverse: false);

        public IEnumerable<KeyValuePair<byte[], byte[]>> ScanFrom(byte[] start, byte[] prefix, bool reverse)
        {
            ArgumentNullException.ThrowIfNull(start);
            ArgumentNullException.ThrowIfNull(prefix);
            return Iterate(start, prefix, reverse);
        }

        private IEnumerable<KeyValuePair<byte[], byte[]>> Iterate(byte[] start, byte[] prefix, bool reverse)
        {
            using var it = Db.NewIterator(cf, read);
            if (reverse)
            {
                var end = Keys.PrefixEnd(prefix);
                if (end is not null && Keys.Compare(start, end) >= 0)
                {
                    // Start lies above the prefix's range: begin at its last key.
                    it.SeekForPrev(end);
                    if (it.Valid() && Keys.Compare(it.Key(), end) == 0) it.Prev();
                }
                else
                {
                    it.SeekForPrev(start);
                }
                for (; it.Valid(); it.Prev())
                {
                    var k = it.Key();
                    if (!k.AsSpan().StartsWith(prefix)) yield break;
                    yield return new(k, it.Value());
                }
            }
            else
            {
                it.Seek(Keys.Compare(start, prefix) < 0 ? prefix : start);
                for (; it.Valid(); it.Next())
                {
                    var k = it.Key();
                    if (!k.AsSpan().StartsWith(prefix)) yield break;
                    yield return new(k, it.Value());
                }
            }
        }
    }
}

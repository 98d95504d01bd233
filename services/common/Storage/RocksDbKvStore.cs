using System.Runtime.InteropServices;
using static Conduit.Common.Storage.RocksDbNative;

namespace Conduit.Common.Storage;

/// <summary>
/// RocksDB backend: one database directory. Most families live in RocksDB's default column family, each family's keys
/// prefixed with its 2-byte id (big-endian, from 1); the ids are kept in the same column family under prefix 0x0000:
/// key <c>0x00 0x00 family_name</c> (UTF-8), value the 2-byte id, written (synced) before any key of the family. A
/// family declared <see cref="ColumnFamily.Dedicated"/> has a column family of its own, named as it, its keys as given.
/// Sharing because RocksDB keeps 60-100 KB of native state for each open column family (memtable, statistics, version
/// set), which with eighty families was about 7 MB of a small server's resting memory; a fixed-length prefix keeps
/// each family's keys contiguous and in the same order, and every scan is bounded to its family's range. A database
/// written by earlier versions, with a column family per family, is moved into this layout when it is opened, and a
/// family that turns dedicated (or shared) between versions moves the same way (<see cref="Move"/>).
/// Every write goes through the WAL with sync, so an acknowledged write survives a crash of the process or the
/// machine. Bound through <see cref="RocksDbNative"/> (RocksDB's C API), which also runs under Native AOT.
/// </summary>
internal sealed unsafe class RocksDbKvStore : IKeyValueStore, IReportsMemory
{
    /// <summary>Length of the family id in front of every key.</summary>
    internal const int IdLength = 2;

    /// <summary>The id prefix of the registry (family name to id).</summary>
    private static readonly byte[] RegistryPrefix = [0, 0];

    private readonly nint _db;
    // The default column family: the shared families and the registry.
    private readonly nint _cf;
    private readonly nint _syncWrite;
    private readonly nint _defaultRead;
    private readonly nint _wholeRead;
    private readonly nint _cache;
    private readonly nint _writeBufferManager;
    private readonly List<nint> _ownedOptions = [];
    private readonly Dictionary<string, byte[]> _ids = new(StringComparer.Ordinal);
    // Where each declared family's keys are: a column family, and the prefix in front of them (empty when dedicated).
    private readonly Dictionary<string, (nint Cf, byte[] Prefix)> _places = new(StringComparer.Ordinal);
    private readonly List<nint> _dedicatedHandles = [];
    private readonly Dictionary<string, FamilyMap> _maps = new(StringComparer.Ordinal);
    private readonly HashSet<string> _names;
    // Native calls and iterations in flight; Dispose waits for them so the handles are never freed under a running
    // call. A counter rather than a lock: an iteration may be resumed on another thread.
    private int _active;
    private volatile bool _disposed;

    public RocksDbKvStore(string path, IReadOnlyList<ColumnFamily> families, StoreOptions storeOptions)
    {
        Families = families;
        _names = families.Select(f => f.Name).ToHashSet(StringComparer.Ordinal);
        Directory.CreateDirectory(path);
        // The native memory budget is one number, storeOptions.CacheCapacity: one LRU block cache (data blocks, and
        // index and filter blocks too, so they are not held per open file outside it), and a write buffer manager
        // that charges the memtables to that same cache. Unflushed writes therefore evict cached blocks instead of
        // adding to them, and once the memtables pass half the budget they are flushed. RocksDB's defaults (a 64 MB
        // memtable, 8 MB arena blocks, an uncharged index per open file) would cost far more than a small server's data.
        var capacity = (nuint)storeOptions.CacheCapacity;
        var writeBudget = capacity / 2;
        var writeBuffer = Math.Clamp(writeBudget / 2, 256u << 10, 64u << 20);
        _cache = rocksdb_cache_create_lru(capacity);
        _writeBufferManager = rocksdb_write_buffer_manager_create_with_cache(writeBudget, _cache, allowStall: false);

        var options = rocksdb_options_create();
        _ownedOptions.Add(options);
        rocksdb_options_set_create_if_missing(options, 1);
        rocksdb_options_set_write_buffer_manager(options, _writeBufferManager);
        // Only matters while an old database's extra column families are open (they are moved and dropped at once):
        // past this size RocksDB flushes the families holding the oldest WAL.
        rocksdb_options_set_max_total_wal_size(options, Math.Max(4 * (ulong)writeBudget, 16UL << 20));
        rocksdb_options_set_max_open_files(options, 256);
        rocksdb_options_set_keep_log_file_num(options, 3);

        var handles = new List<(string Name, nint Handle)>();
        try
        {
            // Every existing column family must be opened (RocksDB refuses to open otherwise), and the dedicated
            // families' are created if missing.
            var names = new List<string>();
            if (File.Exists(Path.Combine(path, "CURRENT")))
            {
                var list = rocksdb_list_column_families(options, path, out var count, out var err);
                Check(err);
                for (nuint i = 0; i < count; i++) names.Add(Marshal.PtrToStringUTF8(((nint*)list)[i])!);
                rocksdb_list_column_families_destroy(list, count);
            }
            names.Remove("default");
            names.Insert(0, "default");
            var dedicated = families.Where(f => f.Dedicated).Select(f => f.Name).ToHashSet(StringComparer.Ordinal);
            if (dedicated.Contains("default")) throw new ArgumentException("A dedicated family cannot be named 'default'.", nameof(families));
            foreach (var name in dedicated)
                if (!names.Contains(name)) names.Add(name);
            rocksdb_options_set_create_missing_column_families(options, 1);

            var table = rocksdb_block_based_options_create();
            rocksdb_block_based_options_set_block_cache(table, _cache);
            rocksdb_block_based_options_set_cache_index_and_filter_blocks(table, 1);
            rocksdb_block_based_options_set_pin_l0_filter_and_index_blocks_in_cache(table, 1);
            // Point reads (an event by ID, for every /sync that shows it) skip the table files without the key; in the
            // shared column family, scans skip those without the family (below).
            rocksdb_block_based_options_set_filter_policy(table, rocksdb_filterpolicy_create_bloom_full(10));
            var dedicatedOptions = FamilyOptions(table, writeBuffer);
            // The shared column family's keys start with the family id: the filters also record which ids a table file
            // holds, so a scan of one family (most of them small: a user's to-device messages, receipts, account
            // data, on every /sync) looks only into the files that have some of it.
            var sharedOptions = FamilyOptions(table, writeBuffer);
            rocksdb_options_set_prefix_extractor(sharedOptions, rocksdb_slicetransform_create_fixed_prefix(IdLength));
            rocksdb_block_based_options_destroy(table);

            var n = names.Count;
            var namePtrs = new nint[n];
            var optPtrs = new nint[n];
            var opened = new nint[n];
            try
            {
                for (var i = 0; i < n; i++)
                {
                    namePtrs[i] = Marshal.StringToCoTaskMemUTF8(names[i]);
                    optPtrs[i] = dedicated.Contains(names[i]) ? dedicatedOptions : sharedOptions;
                }
                fixed (nint* np = namePtrs, op = optPtrs, hp = opened)
                {
                    _db = rocksdb_open_column_families(options, path, n, np, op, hp, out var err);
                    Check(err);
                }
            }
            finally
            {
                foreach (var p in namePtrs) Marshal.FreeCoTaskMem(p);
            }
            for (var i = 0; i < n; i++) handles.Add((names[i], opened[i]));
            _cf = opened[0];
            _syncWrite = rocksdb_writeoptions_create();
            rocksdb_writeoptions_set_sync(_syncWrite, 1);
            _defaultRead = rocksdb_readoptions_create();
            // The open's own scans (the registry, moving families) ignore the prefix filters: they may start at an
            // empty key, or walk a column family of an earlier layout.
            _wholeRead = rocksdb_readoptions_create();
            rocksdb_readoptions_set_total_order_seek(_wholeRead, 1);

            LoadRegistry();
            // Every column family other than the default and the dedicated families' holds a family of an earlier
            // layout (declared now or not: nothing is lost): moved into the default column family, then dropped.
            var moveStarted = Environment.TickCount64;
            var moves = handles.Skip(1).Count(h => !dedicated.Contains(h.Name))
                + dedicated.Count(name => _ids.TryGetValue(name, out var id) && HasAny(_cf, id));
            if (moves > 0)
                storeOptions.Progress?.Invoke($"moving {moves} families to their place in this version's layout (once; an interrupted move resumes at the next start)");
            for (var i = 1; i < handles.Count; i++)
            {
                var (name, handle) = handles[i];
                if (dedicated.Contains(name))
                {
                    _dedicatedHandles.Add(handle);
                    _places[name] = (handle, []);
                    // Shared in an earlier version: its keys come out of the default column family.
                    if (_ids.TryGetValue(name, out var id) && HasAny(_cf, id)) Move(_cf, id, handle, []);
                    continue;
                }
                if (!_ids.ContainsKey(name)) Register([name]);
                Move(handle, [], _cf, _ids[name]);
                rocksdb_drop_column_family(_db, handle, out var derr);
                Check(derr);
                rocksdb_column_family_handle_destroy(handle);
                handles[i] = (name, 0);
            }
            if (moves > 0) storeOptions.Progress?.Invoke($"moved in {(Environment.TickCount64 - moveStarted) / 1000.0:0.0} s");
            Register(families.Where(f => !f.Dedicated && !_ids.ContainsKey(f.Name)).Select(f => f.Name).ToList());
            foreach (var f in families)
                if (!f.Dedicated) _places[f.Name] = (_cf, _ids[f.Name]);
        }
        catch
        {
            // The database did not open (locked by another process, corrupt, ...), or moving a family failed (it is
            // retried from the start at the next open: the copies are idempotent, the source is dropped or cleared
            // last): nothing else owns these.
            if (_db != 0)
            {
                foreach (var (_, h) in handles) if (h != 0) rocksdb_column_family_handle_destroy(h);
                rocksdb_close(_db);
            }
            if (_syncWrite != 0) rocksdb_writeoptions_destroy(_syncWrite);
            if (_defaultRead != 0) rocksdb_readoptions_destroy(_defaultRead);
            if (_wholeRead != 0) rocksdb_readoptions_destroy(_wholeRead);
            FreeOptions();
            throw;
        }
        foreach (var f in families)
        {
            var (cf, prefix) = _places[f.Name];
            _maps[f.Name] = new FamilyMap(this, f.Name, cf, prefix, _defaultRead, snapshot: 0);
        }
    }

    private nint FamilyOptions(nint table, nuint writeBuffer)
    {
        var o = rocksdb_options_create();
        _ownedOptions.Add(o);
        rocksdb_options_set_write_buffer_size(o, writeBuffer);
        rocksdb_options_set_max_write_buffer_number(o, 2);
        // The memtable's arena grows in blocks of this size (RocksDB's default is an eighth of the write buffer).
        rocksdb_options_set_arena_block_size(o, Math.Clamp(writeBuffer / 16, 16u << 10, 1u << 20));
        rocksdb_options_set_block_based_table_factory(o, table);
        return o;
    }

    /// <summary>The 2-byte id of every family this database has ever held, by name.</summary>
    internal IReadOnlyDictionary<string, byte[]> FamilyIds => _ids;

    private void LoadRegistry()
    {
        foreach (var (key, value) in ScanRaw(RegistryPrefix))
        {
            if (value.Length != IdLength) throw new IOException($"RocksDB: the family registry entry {Convert.ToHexString(key)} is corrupt.");
            _ids[System.Text.Encoding.UTF8.GetString(key.AsSpan(IdLength))] = value;
        }
    }

    /// <summary>Gives each name the next free id, durably, in one write.</summary>
    private void Register(IReadOnlyList<string> names)
    {
        if (names.Count == 0) return;
        var next = _ids.Count == 0 ? 1 : _ids.Values.Max(v => (v[0] << 8) | v[1]) + 1;
        if (next + names.Count > 0xFFFF) throw new IOException("RocksDB: too many families for 2-byte ids.");
        var wb = rocksdb_writebatch_create();
        try
        {
            var added = new List<(string, byte[])>();
            foreach (var name in names)
            {
                var id = new[] { (byte)(next >> 8), (byte)next };
                next++;
                var key = Keys.Concat(RegistryPrefix, Keys.Utf8(name));
                fixed (byte* k = key, v = id) rocksdb_writebatch_put_cf(wb, _cf, k, (nuint)key.Length, v, IdLength);
                added.Add((name, id));
            }
            rocksdb_write(_db, _syncWrite, wb, out var err);
            Check(err);
            foreach (var (name, id) in added) _ids[name] = id;
        }
        finally
        {
            rocksdb_writebatch_destroy(wb);
        }
    }

    /// <summary>Whether any key of the column family starts with the prefix.</summary>
    private bool HasAny(nint cf, byte[] prefix)
    {
        var it = rocksdb_create_iterator_cf(_db, _wholeRead, cf);
        try
        {
            fixed (byte* p = prefix) rocksdb_iter_seek(it, p, (nuint)prefix.Length);
            return rocksdb_iter_valid(it) != 0 && new ReadOnlySpan<byte>(rocksdb_iter_key(it, out var kl), (int)kl).StartsWith(prefix);
        }
        finally
        {
            rocksdb_iter_destroy(it);
        }
    }

    /// <summary>
    /// Copies every entry of <paramref name="fromCf"/> under <paramref name="fromPrefix"/> to <paramref name="toCf"/>,
    /// the prefix replaced by <paramref name="toPrefix"/>, in synced batches of about 4 MB; then, for a prefixed
    /// source, deletes the source range (a whole column family is dropped by the caller). Safe to interrupt: until
    /// the source goes it is intact, and copying it again writes the same keys and values (nothing else writes before
    /// the store has opened).
    /// </summary>
    private void Move(nint fromCf, byte[] fromPrefix, nint toCf, byte[] toPrefix)
    {
        var it = rocksdb_create_iterator_cf(_db, _wholeRead, fromCf);
        var wb = rocksdb_writebatch_create();
        try
        {
            long pending = 0;
            fixed (byte* p = fromPrefix) rocksdb_iter_seek(it, p, (nuint)fromPrefix.Length);
            for (; rocksdb_iter_valid(it) != 0; rocksdb_iter_next(it))
            {
                var from = new ReadOnlySpan<byte>(rocksdb_iter_key(it, out var kl), (int)kl);
                if (!from.StartsWith(fromPrefix)) break;
                var v = rocksdb_iter_value(it, out var vl);
                var key = Prefixed(toPrefix, from[fromPrefix.Length..]);
                fixed (byte* kp = key) rocksdb_writebatch_put_cf(wb, toCf, kp, (nuint)key.Length, v, vl);
                pending += key.Length + (long)vl;
                if (pending < 4 << 20) continue;
                rocksdb_write(_db, _syncWrite, wb, out var werr);
                Check(werr);
                rocksdb_writebatch_clear(wb);
                pending = 0;
            }
            rocksdb_iter_get_error(it, out var err);
            Check(err);
            if (fromPrefix.Length > 0 && Keys.PrefixEnd(fromPrefix) is { } end)
                fixed (byte* s = fromPrefix, e = end)
                    rocksdb_writebatch_delete_range_cf(wb, fromCf, s, (nuint)fromPrefix.Length, e, (nuint)end.Length);
            rocksdb_write(_db, _syncWrite, wb, out err);
            Check(err);
        }
        finally
        {
            rocksdb_writebatch_destroy(wb);
            rocksdb_iter_destroy(it);
        }
    }

    /// <summary>Raw keys (id included) of the default column family under a raw prefix, for the registry.</summary>
    private List<(byte[] Key, byte[] Value)> ScanRaw(byte[] prefix)
    {
        var result = new List<(byte[], byte[])>();
        var it = rocksdb_create_iterator_cf(_db, _wholeRead, _cf);
        try
        {
            fixed (byte* p = prefix) rocksdb_iter_seek(it, p, (nuint)prefix.Length);
            for (; rocksdb_iter_valid(it) != 0; rocksdb_iter_next(it))
            {
                var key = new ReadOnlySpan<byte>(rocksdb_iter_key(it, out var kl), (int)kl);
                if (!key.StartsWith(prefix)) break;
                result.Add((key.ToArray(), new ReadOnlySpan<byte>(rocksdb_iter_value(it, out var vl), (int)vl).ToArray()));
            }
            rocksdb_iter_get_error(it, out var err);
            Check(err);
        }
        finally
        {
            rocksdb_iter_destroy(it);
        }
        return result;
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
        if (b.Count == 0) return;
        using var _ = Enter();
        var wb = rocksdb_writebatch_create();
        try
        {
            foreach (var op in b.Ops)
            {
                var (cf, prefix) = _places[op.Family];
                var key = KeyFor(prefix, op.Key);
                var end = op.End is null ? null : KeyFor(prefix, op.End);
                fixed (byte* k = key, e = end)
                {
                    if (end is not null) rocksdb_writebatch_delete_range_cf(wb, cf, k, (nuint)key.Length, e, (nuint)end.Length);
                    else if (op.Value is null) rocksdb_writebatch_delete_cf(wb, cf, k, (nuint)key.Length);
                    else
                        fixed (byte* v = op.Value)
                            rocksdb_writebatch_put_cf(wb, cf, k, (nuint)key.Length, v, (nuint)op.Value.Length);
                }
            }
            rocksdb_write(_db, _syncWrite, wb, out var err);
            Check(err);
        }
        finally
        {
            rocksdb_writebatch_destroy(wb);
        }
    }

    public IKvSnapshot? Snapshot()
    {
        using var _ = Enter();
        return new SnapshotView(this, rocksdb_create_snapshot(_db));
    }

    public void Checkpoint(string dir)
    {
        using var _ = Enter();
        var checkpoint = rocksdb_checkpoint_object_create(_db, out var err);
        Check(err);
        try
        {
            // 0: the memtables are flushed first, so the copy needs no write-ahead log replay.
            var full = Path.GetFullPath(dir);
            Directory.CreateDirectory(Path.GetDirectoryName(full)!);
            rocksdb_checkpoint_create(checkpoint, full, 0, out err);
            Check(err);
        }
        finally
        {
            rocksdb_checkpoint_object_destroy(checkpoint);
        }
    }

    /// <summary>The family's prefix (its id, or nothing for a dedicated family) followed by the key.</summary>
    internal static byte[] Prefixed(byte[] prefix, ReadOnlySpan<byte> key)
    {
        var result = new byte[prefix.Length + key.Length];
        prefix.CopyTo(result, 0);
        key.CopyTo(result.AsSpan(prefix.Length));
        return result;
    }

    /// <summary>The key as RocksDB stores it, for a call that uses it at once and keeps nothing: the caller's own array
    /// for a dedicated family (no prefix), where <see cref="Prefixed"/> would copy it.</summary>
    internal static byte[] KeyFor(byte[] prefix, byte[] key) => prefix.Length == 0 ? key : Prefixed(prefix, key);

    /// <summary>Holds the store open for the duration of one native call or iteration.</summary>
    private Lease Enter()
    {
        Interlocked.Increment(ref _active);
        if (_disposed)
        {
            Interlocked.Decrement(ref _active);
            throw new ObjectDisposedException(nameof(RocksDbKvStore));
        }
        return new Lease(this);
    }

    private readonly struct Lease(RocksDbKvStore store) : IDisposable
    {
        public void Dispose() => Interlocked.Decrement(ref store._active);
    }

    public void Dispose()
    {
        lock (_ownedOptions)
        {
            if (_disposed) return;
            _disposed = true;
        }
        // New calls now fail; wait (bounded) for the ones already inside native code.
        var deadline = Environment.TickCount64 + 5000;
        var spin = new SpinWait();
        while (Volatile.Read(ref _active) > 0 && Environment.TickCount64 < deadline) spin.SpinOnce();
        foreach (var h in _dedicatedHandles) rocksdb_column_family_handle_destroy(h);
        rocksdb_column_family_handle_destroy(_cf);
        rocksdb_close(_db);
        rocksdb_readoptions_destroy(_defaultRead);
        rocksdb_readoptions_destroy(_wholeRead);
        rocksdb_writeoptions_destroy(_syncWrite);
        FreeOptions();
    }

    // The options, the write buffer manager and the cache are reference-counted inside RocksDB: destroying our
    // handles after the close frees them.
    private void FreeOptions()
    {
        foreach (var o in _ownedOptions) rocksdb_options_destroy(o);
        rocksdb_write_buffer_manager_destroy(_writeBufferManager);
        rocksdb_cache_destroy(_cache);
    }

    /// <summary>The block cache's capacity and current usage (memtables included, through the write buffer
    /// manager's charges), in bytes.</summary>
    internal (long Capacity, long Usage) CacheStats()
    {
        using var _ = Enter();
        return ((long)rocksdb_cache_get_capacity(_cache), (long)rocksdb_cache_get_usage(_cache));
    }

    /// <summary>Bytes the memtables hold now, as the write buffer manager counts them, and its
    /// limit.</summary>
    internal (long Usage, long Limit) WriteBufferStats()
    {
        using var _ = Enter();
        return ((long)rocksdb_write_buffer_manager_memory_usage(_writeBufferManager), (long)rocksdb_write_buffer_manager_buffer_size(_writeBufferManager));
    }

    /// <summary>For the metrics: the block cache (memtables included, charged through the write buffer manager), the
    /// memtables alone, and the table readers' memory outside the cache.</summary>
    public IEnumerable<(string Kind, long Bytes)> MemoryUsage()
    {
        if (_disposed) return [];
        var (capacity, usage) = CacheStats();
        var (memtables, _) = WriteBufferStats();
        ulong readers = 0;
        using (Enter())
            foreach (var h in _dedicatedHandles.Append(_cf))
                if (rocksdb_property_int_cf(_db, h, "rocksdb.estimate-table-readers-mem", out var v) == 0) readers += v;
        return [("block_cache_usage", usage), ("block_cache_capacity", capacity), ("memtables", memtables), ("table_readers", (long)readers)];
    }

    private sealed class SnapshotView : IKvSnapshot
    {
        private readonly RocksDbKvStore _store;
        private readonly nint _snapshot;
        private readonly nint _read;
        private readonly Dictionary<string, FamilyMap> _maps = new(StringComparer.Ordinal);
        private bool _released;

        public SnapshotView(RocksDbKvStore store, nint snapshot)
        {
            _store = store;
            _snapshot = snapshot;
            _read = rocksdb_readoptions_create();
            rocksdb_readoptions_set_snapshot(_read, snapshot);
            foreach (var f in store.Families)
            {
                var (cf, prefix) = store._places[f.Name];
                _maps[f.Name] = new FamilyMap(store, f.Name, cf, prefix, _read, snapshot, readOnly: true);
            }
        }

        public IKvReader Map(string family) =>
            _maps.TryGetValue(family, out var m) ? m : throw MemoryKvStore.Undeclared(family);

        public void Dispose()
        {
            if (_released) return;
            _released = true;
            if (_store._disposed) return;
            using var _ = _store.Enter();
            rocksdb_release_snapshot(_store._db, _snapshot);
            rocksdb_readoptions_destroy(_read);
        }
    }

    /// <summary>One family: its keys are the family's prefix (its id, or nothing when dedicated) followed by the
    /// caller's key, in its column family.</summary>
    private sealed class FamilyMap(RocksDbKvStore store, string family, nint cf, byte[] familyPrefix, nint read, nint snapshot, bool readOnly = false) : IKvMap
    {
        public string Family => family;

        public byte[]? Get(ReadOnlySpan<byte> key)
        {
            using var _ = store.Enter();
            nint value;
            nuint len;
            var length = familyPrefix.Length + key.Length;
            var full = length <= 512 ? stackalloc byte[length] : new byte[length];
            familyPrefix.CopyTo(full);
            key.CopyTo(full[familyPrefix.Length..]);
            fixed (byte* k = full)
            {
                value = rocksdb_get_cf(store._db, read, cf, k, (nuint)full.Length, out len, out var err);
                Check(err);
            }
            if (value == 0) return null;
            try { return new ReadOnlySpan<byte>((void*)value, checked((int)len)).ToArray(); }
            finally { rocksdb_free(value); }
        }

        public bool Contains(ReadOnlySpan<byte> key) => Get(key) is not null;

        public void Put(byte[] key, byte[] value)
        {
            ArgumentNullException.ThrowIfNull(key);
            ArgumentNullException.ThrowIfNull(value);
            if (readOnly) throw new InvalidOperationException("A snapshot is read-only.");
            using var _ = store.Enter();
            var full = KeyFor(familyPrefix, key);
            fixed (byte* k = full, v = value)
            {
                rocksdb_put_cf(store._db, store._syncWrite, cf, k, (nuint)full.Length, v, (nuint)value.Length, out var err);
                Check(err);
            }
        }

        public void Delete(byte[] key)
        {
            ArgumentNullException.ThrowIfNull(key);
            if (readOnly) throw new InvalidOperationException("A snapshot is read-only.");
            using var _ = store.Enter();
            var full = KeyFor(familyPrefix, key);
            fixed (byte* k = full)
            {
                rocksdb_delete_cf(store._db, store._syncWrite, cf, k, (nuint)full.Length, out var err);
                Check(err);
            }
        }

        public IEnumerable<KeyValuePair<byte[], byte[]>> Scan(byte[] prefix) => ScanFrom(prefix, prefix, reverse: false);

        public IEnumerable<KeyValuePair<byte[], byte[]>> ScanFrom(byte[] start, byte[] prefix, bool reverse)
        {
            ArgumentNullException.ThrowIfNull(start);
            ArgumentNullException.ThrowIfNull(prefix);
            return Iterate(Prefixed(familyPrefix, start), Prefixed(familyPrefix, prefix), reverse);
        }

        static void Seek(nint it, byte[] key, bool forPrev)
        {
            fixed (byte* k = key)
            {
                if (forPrev) rocksdb_iter_seek_for_prev(it, k, (nuint)key.Length);
                else rocksdb_iter_seek(it, k, (nuint)key.Length);
            }
        }

        static ReadOnlySpan<byte> RawKey(nint it) => new(rocksdb_iter_key(it, out var len), checked((int)len));

        static byte[] Value(nint it) => new ReadOnlySpan<byte>(rocksdb_iter_value(it, out var len), checked((int)len)).ToArray();

        // start and prefix include the family's prefix (so for a shared family the prefix is never empty and its
        // range ends before the next family's). The store stays open while an iteration runs (the lease is held by the enumerator until it is
        // disposed).
        private IEnumerable<KeyValuePair<byte[], byte[]>> Iterate(byte[] start, byte[] prefix, bool reverse)
        {
            using var lease = store.Enter();
            // The iterator is bounded to the prefix's range, so RocksDB stops at its end instead of walking on through
            // whatever follows (deleted entries and other families included) to find the first key outside it. The
            // bounds must outlive the iterator: they are copied to native memory, freed after it.
            var (opts, lower, upper) = BoundedReadOptions(prefix);
            var it = rocksdb_create_iterator_cf(store._db, opts, cf);
            try
            {
                if (reverse)
                {
                    var end = Keys.PrefixEnd(prefix);
                    if (end is not null && Keys.Compare(start, end) >= 0)
                    {
                        // Start lies above the prefix's range: begin at its last key.
                        Seek(it, end, forPrev: true);
                        if (rocksdb_iter_valid(it) != 0 && RawKey(it).SequenceEqual(end)) rocksdb_iter_prev(it);
                    }
                    else
                    {
                        Seek(it, start, forPrev: true);
                    }
                }
                else
                {
                    Seek(it, Keys.Compare(start, prefix) < 0 ? prefix : start, forPrev: false);
                }
                while (rocksdb_iter_valid(it) != 0)
                {
                    var raw = RawKey(it);
                    if (!raw.StartsWith(prefix)) yield break;
                    var k = raw[familyPrefix.Length..].ToArray();
                    yield return new(k, Value(it));
                    if (reverse) rocksdb_iter_prev(it); else rocksdb_iter_next(it);
                }
                rocksdb_iter_get_error(it, out var err);
                Check(err);
            }
            finally
            {
                rocksdb_iter_destroy(it);
                FreeReadOptions(opts, lower, upper);
            }
        }

        (nint Options, nint Lower, nint Upper) BoundedReadOptions(byte[] prefix)
        {
            var end = Keys.PrefixEnd(prefix);
            var opts = rocksdb_readoptions_create();
            var lower = NativeCopy(prefix);
            var upper = end is null ? null : NativeCopy(end);
            if (snapshot != 0) rocksdb_readoptions_set_snapshot(opts, snapshot);
            // Shared family: the prefix filters apply where RocksDB can tell they give the same answer (the upper bound
            // is the next id, or the scan's prefix lies within one family); dedicated families have no prefix extractor.
            if (familyPrefix.Length > 0) rocksdb_readoptions_set_auto_prefix_mode(opts, 1);
            rocksdb_readoptions_set_iterate_lower_bound(opts, lower, (nuint)prefix.Length);
            if (upper is not null) rocksdb_readoptions_set_iterate_upper_bound(opts, upper, (nuint)end!.Length);
            return (opts, (nint)lower, (nint)upper);
        }

        static void FreeReadOptions(nint opts, nint lower, nint upper)
        {
            rocksdb_readoptions_destroy(opts);
            NativeMemory.Free((void*)lower);
            if (upper != 0) NativeMemory.Free((void*)upper);
        }

        static byte* NativeCopy(byte[] bytes)
        {
            var p = (byte*)NativeMemory.Alloc((nuint)Math.Max(1, bytes.Length));
            bytes.CopyTo(new Span<byte>(p, bytes.Length));
            return p;
        }
    }
}

using System.Text;
using Conduit.Common.Storage;

namespace Conduit.Common.Tests;

public sealed class StorageTests : IDisposable
{
    private static readonly ColumnFamily[] Families =
    [
        new("events", "event_id", "event JSON"),
        new("room_events", "room_id 0xFF u64 BE", "event_id"),
    ];

    private readonly string _dir = Path.Combine(Path.GetTempPath(), "conduit-storage-tests", Guid.NewGuid().ToString("N"));
    private readonly List<IKeyValueStore> _open = [];

    public static TheoryData<string> AllBackends => new() { "memory", "rocksdb", "sqlite" };

    public static TheoryData<string> PersistentBackends => new() { "rocksdb", "sqlite" };

    private IKeyValueStore Open(string backend, IEnumerable<ColumnFamily>? families = null)
    {
        var path = backend == "sqlite" ? Path.Combine(_dir, "conduit.sqlite") : Path.Combine(_dir, "db");
        var store = KvStore.Open(backend, path, families ?? Families);
        _open.Add(store);
        return store;
    }

    public void Dispose()
    {
        foreach (var s in _open) s.Dispose();
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (DirectoryNotFoundException)
        {
        }
    }

    private static byte[] B(string s) => Encoding.UTF8.GetBytes(s);

    private static string S(byte[] b) => Encoding.UTF8.GetString(b);

    private static string[] KeysOf(IEnumerable<KeyValuePair<byte[], byte[]>> e) => e.Select(kv => S(kv.Key)).ToArray();

    [Theory, MemberData(nameof(AllBackends))]
    public void PutGetDelete(string backend)
    {
        var store = Open(backend);
        var map = store.Map("events");
        Assert.Null(map.Get(B("a")));
        Assert.False(map.Contains(B("a")));
        map.Put(B("a"), B("1"));
        Assert.Equal("1", S(map.Get(B("a"))!));
        Assert.True(map.Contains(B("a")));
        map.Put(B("a"), B("2"));
        Assert.Equal("2", S(map.Get(B("a"))!));
        map.Put(B("empty"), []);
        Assert.Empty(map.Get(B("empty"))!);
        map.Delete(B("a"));
        Assert.Null(map.Get(B("a")));
        map.Delete(B("never-there"));
        // Families are separate.
        Assert.Null(store.Map("room_events").Get(B("empty")));
    }

    [Theory, MemberData(nameof(AllBackends))]
    public void DeleteRangeDeletesHalfOpenRangeInBatchOrder(string backend)
    {
        var store = Open(backend);
        var map = store.Map("events");
        foreach (var k in new[] { "a", "b1", "b2", "b3", "c" }) map.Put(B(k), B(k));
        using (var b = store.CreateBatch())
        {
            b.DeleteRange("events", B("b1"), B("b3"));
            // A put after the range delete in the same batch survives it.
            b.Put("events", B("b2"), B("again"));
            b.DeleteRange("events", B("z"), B("a"));
            store.Write(b);
        }
        Assert.Equal(["a", "b2", "b3", "c"], KeysOf(map.Scan([])));
        Assert.Equal("again", S(map.Get(B("b2"))!));
        using (var b = store.CreateBatch())
        {
            b.DeleteRange("events", B("b"), B("c"));
            store.Write(b);
        }
        Assert.Equal(["a", "c"], KeysOf(map.Scan([])));
        Assert.Equal(["c"], KeysOf(map.ScanFrom(B("b"), [], reverse: false)));
        Assert.Equal(["a"], KeysOf(map.ScanFrom(B("bz"), [], reverse: true)));
    }

    [Theory, MemberData(nameof(AllBackends))]
    public void UndeclaredFamilyThrows(string backend)
    {
        var store = Open(backend);
        Assert.Throws<KeyNotFoundException>(() => store.Map("nope"));
        using var batch = store.CreateBatch();
        Assert.Throws<KeyNotFoundException>(() => batch.Put("nope", B("k"), B("v")));
    }

    [Theory, MemberData(nameof(AllBackends))]
    public void PrefixScanIsAscendingAndBounded(string backend)
    {
        var map = Open(backend).Map("events");
        foreach (var k in new[] { "b2", "a", "b10", "b1", "c", "b", "ba" }) map.Put(B(k), B("v" + k));
        Assert.Equal(["b", "b1", "b10", "b2", "ba"], KeysOf(map.Scan(B("b"))));
        Assert.Equal(["a", "b", "b1", "b10", "b2", "ba", "c"], KeysOf(map.Scan([])));
        Assert.Empty(map.Scan(B("d")));
        Assert.Equal("vb10", S(map.Scan(B("b10")).Single().Value));
    }

    [Theory, MemberData(nameof(AllBackends))]
    public void ScanFromForwardAndReverse(string backend)
    {
        var map = Open(backend).Map("room_events");
        var prefix = Keys.Prefix("!room:x");
        foreach (var n in new ulong[] { 1, 2, 5, 9, 300 }) map.Put(Keys.Concat(prefix, Keys.BigEndian(n)), Keys.BigEndian(n));
        // Neighbours outside the prefix must never show up.
        map.Put(Keys.Concat(Keys.Prefix("!room:w"), Keys.BigEndian(7)), []);
        map.Put(Keys.Concat(Keys.Prefix("!room:y"), Keys.BigEndian(0)), []);
        map.Put(Keys.Prefix("!room:x")[..^1], []); // "!room:x" without separator sorts before the prefix

        ulong[] Nums(IEnumerable<KeyValuePair<byte[], byte[]>> e) => e.Select(kv => Keys.ReadBigEndian(kv.Key.AsSpan(prefix.Length))).ToArray();
        byte[] At(ulong n) => Keys.Concat(prefix, Keys.BigEndian(n));

        Assert.Equal([5UL, 9, 300], Nums(map.ScanFrom(At(5), prefix, reverse: false)));
        Assert.Equal([5UL, 9, 300], Nums(map.ScanFrom(At(3), prefix, reverse: false)));
        Assert.Equal([5UL, 2, 1], Nums(map.ScanFrom(At(5), prefix, reverse: true)));
        Assert.Equal([2UL, 1], Nums(map.ScanFrom(At(4), prefix, reverse: true)));
        Assert.Equal([300UL, 9, 5, 2, 1], Nums(map.ScanFrom(At(ulong.MaxValue), prefix, reverse: true)));
        Assert.Empty(map.ScanFrom(At(0), prefix, reverse: true));
        Assert.Empty(map.ScanFrom(At(301), prefix, reverse: false));
        // Starts outside the prefix's range are clamped to it.
        Assert.Equal([300UL, 9, 5, 2, 1], Nums(map.ScanFrom(Keys.Prefix("!room:z"), prefix, reverse: true)));
        Assert.Equal([1UL, 2, 5, 9, 300], Nums(map.ScanFrom([], prefix, reverse: false)));
        Assert.Empty(map.ScanFrom([], prefix, reverse: true));
    }

    [Theory, MemberData(nameof(AllBackends))]
    public void LongScansCrossPages(string backend)
    {
        var store = Open(backend);
        using (var batch = store.CreateBatch())
        {
            for (ulong i = 0; i < 1000; i++) batch.Put("events", Keys.Concat(B("p"), Keys.BigEndian(i)), []);
            batch.Put("events", B("q"), []);
            store.Write(batch);
        }
        var map = store.Map("events");
        var forward = map.Scan(B("p")).Select(kv => Keys.ReadBigEndian(kv.Key.AsSpan(1))).ToArray();
        Assert.Equal(Enumerable.Range(0, 1000).Select(i => (ulong)i), forward);
        var reverse = map.ScanFrom(Keys.Concat(B("p"), Keys.BigEndian(700)), B("p"), reverse: true).Select(kv => Keys.ReadBigEndian(kv.Key.AsSpan(1))).ToArray();
        Assert.Equal(Enumerable.Range(0, 701).Reverse().Select(i => (ulong)i), reverse);
    }

    [Theory, MemberData(nameof(AllBackends))]
    public void BatchIsAtomicAcrossFamilies(string backend)
    {
        var store = Open(backend);
        store.Map("events").Put(B("old"), B("x"));
        using var batch = store.CreateBatch();
        batch.Put("events", B("$e1"), B("{}"));
        batch.Put("room_events", Keys.Join("!r", "1"), B("$e1"));
        batch.Delete("events", B("old"));
        batch.Put("events", B("twice"), B("1"));
        batch.Put("events", B("twice"), B("2"));
        Assert.Equal(5, batch.Count);
        // Nothing is visible before Write.
        Assert.Null(store.Map("events").Get(B("$e1")));
        store.Write(batch);
        Assert.Equal("{}", S(store.Map("events").Get(B("$e1"))!));
        Assert.Equal("$e1", S(store.Map("room_events").Get(Keys.Join("!r", "1"))!));
        Assert.Null(store.Map("events").Get(B("old")));
        Assert.Equal("2", S(store.Map("events").Get(B("twice"))!));

        // A batch that fails midway (undeclared family) is rejected before anything is written.
        using var bad = store.CreateBatch();
        bad.Put("events", B("partial"), B("x"));
        Assert.Throws<KeyNotFoundException>(() => bad.Put("missing", B("k"), B("v")));
        Assert.Null(store.Map("events").Get(B("partial")));
    }

    [Theory, MemberData(nameof(PersistentBackends))]
    public void A_checkpoint_is_a_database_of_what_was_written_before_it_while_the_store_stays_in_use(string backend)
    {
        var store = Open(backend);
        for (var i = 0; i < 100; i++) store.Map("events").Put(B($"before{i:D3}"), B("v"));
        var copy = Path.Combine(_dir, "backup", "db");
        store.Checkpoint(copy);
        store.Map("events").Put(B("after"), B("v"));
        Assert.Throws<IOException>(() => store.Checkpoint(copy));

        var restored = KvStore.Open(backend, backend == "sqlite" ? Path.Combine(copy, "conduit.sqlite") : copy, Families);
        _open.Add(restored);
        Assert.Equal(100, restored.Map("events").Scan([]).Count());
        Assert.Null(restored.Map("events").Get(B("after")));
        // The copy is a database of its own: writes to it leave the original alone.
        restored.Map("events").Put(B("only-in-copy"), B("v"));
        Assert.Null(store.Map("events").Get(B("only-in-copy")));
        Assert.Throws<NotSupportedException>(() => KvStore.Open("memory", "", Families).Checkpoint(Path.Combine(_dir, "m")));
    }

    [Theory, MemberData(nameof(PersistentBackends))]
    public void ReopenPersistsData(string backend)
    {
        var store = Open(backend);
        store.Map("events").Put(B("k1"), B("v1"));
        using (var batch = store.CreateBatch())
        {
            batch.Put("room_events", B("k2"), B("v2"));
            store.Write(batch);
        }
        store.Dispose();
        _open.Remove(store);

        var again = Open(backend);
        Assert.Equal("v1", S(again.Map("events").Get(B("k1"))!));
        Assert.Equal("v2", S(again.Map("room_events").Get(B("k2"))!));
        again.Dispose();
        _open.Remove(again);

        // Families that exist on disk but are no longer declared do not stop the store from opening.
        var fewer = Open(backend, [Families[0], new ColumnFamily("new_family", "k", "v")]);
        Assert.Equal("v1", S(fewer.Map("events").Get(B("k1"))!));
        Assert.Throws<KeyNotFoundException>(() => fewer.Map("room_events"));
        fewer.Map("new_family").Put(B("n"), B("1"));
        fewer.Dispose();
        _open.Remove(fewer);

        var all = Open(backend, [.. Families, new ColumnFamily("new_family", "k", "v")]);
        Assert.Equal("v2", S(all.Map("room_events").Get(B("k2"))!));
        Assert.Equal("1", S(all.Map("new_family").Get(B("n"))!));
    }

    [Theory, MemberData(nameof(AllBackends))]
    public void KeysWithZeroAndFfBytes(string backend)
    {
        var map = Open(backend).Map("events");
        byte[][] keys = [[0x00], [0x00, 0x00], [0x00, 0xFF], [0x01], [0xFF], [0xFF, 0x00], [0xFF, 0xFF], [0xFF, 0xFF, 0xFF]];
        foreach (var k in keys.Reverse()) map.Put(k, k);
        foreach (var k in keys) Assert.Equal(k, map.Get(k));
        Assert.Equal(keys, map.Scan([]).Select(kv => kv.Key).ToArray());
        Assert.Equal([[0xFF], [0xFF, 0x00], [0xFF, 0xFF], [0xFF, 0xFF, 0xFF]], map.Scan([0xFF]).Select(kv => kv.Key).ToArray());
        Assert.Equal([[0xFF, 0xFF, 0xFF], [0xFF, 0xFF], [0xFF, 0x00], [0xFF]], map.ScanFrom([0xFF, 0xFF, 0xFF, 0xFF], [0xFF], reverse: true).Select(kv => kv.Key).ToArray());
        Assert.Equal([[0x00], [0x00, 0x00], [0x00, 0xFF]], map.Scan([0x00]).Select(kv => kv.Key).ToArray());
        Assert.Equal([[0x00, 0xFF], [0x00, 0x00], [0x00]], map.ScanFrom([0x00, 0xFF, 0x01], [0x00], reverse: true).Select(kv => kv.Key).ToArray());
        map.Delete([0x00]);
        Assert.Null(map.Get([0x00]));
        Assert.NotNull(map.Get([0x00, 0x00]));
    }

    [Theory, MemberData(nameof(AllBackends))]
    public void SnapshotSeesThePast(string backend)
    {
        var store = Open(backend);
        var map = store.Map("events");
        map.Put(B("a"), B("1"));
        using var snap = store.Snapshot();
        Assert.NotNull(snap);
        map.Put(B("a"), B("2"));
        map.Put(B("b"), B("1"));
        Assert.Equal("1", S(snap.Map("events").Get(B("a"))!));
        Assert.Null(snap.Map("events").Get(B("b")));
        Assert.Equal(["a"], KeysOf(snap.Map("events").Scan([])));
        Assert.Equal("2", S(map.Get(B("a"))!));
    }

    [Theory, MemberData(nameof(AllBackends))]
    public async Task ConcurrentReadsAndWrites(string backend)
    {
        var store = Open(backend);
        var map = store.Map("events");
        var writers = Enumerable.Range(0, 4).Select(w => Task.Run(() =>
        {
            for (ulong i = 0; i < 100; i++) map.Put(Keys.Concat([(byte)w], Keys.BigEndian(i)), B("v"));
        }));
        var readers = Enumerable.Range(0, 4).Select(w => Task.Run(() =>
        {
            for (var i = 0; i < 50; i++)
            {
                _ = map.Scan([(byte)w]).Count();
                _ = map.Get(Keys.Concat([(byte)w], Keys.BigEndian((ulong)i)));
            }
        }));
        await Task.WhenAll(writers.Concat(readers));
        Assert.Equal(400, map.Scan([]).Count());
    }

    [Fact]
    public void SqliteDirectoryPathUsesConduitSqlite()
    {
        Directory.CreateDirectory(_dir);
        var store = KvStore.Open("sqlite", _dir, Families);
        _open.Add(store);
        store.Map("events").Put(B("k"), B("v"));
        Assert.True(File.Exists(Path.Combine(_dir, "conduit.sqlite")));
    }

    [Fact]
    public void RocksDbMemoryIsBoundedByTheConfiguredCacheCapacity()
    {
        var store = (RocksDbKvStore)KvStore.Open("rocksdb", Path.Combine(_dir, "db"), Families, new StoreOptions { CacheCapacity = 4L << 20 });
        _open.Add(store);
        var (capacity, _) = store.CacheStats();
        Assert.Equal(4L << 20, capacity);
        // Memtables get half of the budget, charged to the same cache.
        Assert.Equal(2L << 20, store.WriteBufferStats().Limit);

        // Write well past the budget: flushes keep the memtables, and the cache with them, near it.
        var value = new byte[1024];
        Random.Shared.NextBytes(value);
        var map = store.Map("events");
        for (var i = 0; i < 2_000; i++)
        {
            var batch = store.CreateBatch();
            for (var j = 0; j < 8; j++) batch.Put("events", Keys.BigEndian((ulong)(i * 8 + j)), value);
            store.Write(batch);
        }
        Assert.Equal(value, map.Get(Keys.BigEndian(12_345))!);
        Assert.Equal(16_000, map.Scan([]).Count());
        var (_, usage) = store.CacheStats();
        var (memtables, _) = store.WriteBufferStats();
        Assert.InRange(memtables, 1, 3L << 20);
        Assert.InRange(usage, memtables, 6L << 20);

        // Reopened with a larger budget, the same data is there and the cache reports the new capacity.
        store.Dispose();
        _open.Remove(store);
        var again = (RocksDbKvStore)KvStore.Open("rocksdb", Path.Combine(_dir, "db"), Families, new StoreOptions { CacheCapacity = 1L << 30 });
        _open.Add(again);
        Assert.Equal(1L << 30, again.CacheStats().Capacity);
        Assert.Equal(value, again.Map("events").Get(Keys.BigEndian(15_999))!);
    }

    [Fact]
    public void RocksDbFamiliesShareOneColumnFamilyWithoutSeeingEachOther()
    {
        var path = Path.Combine(_dir, "db");
        var store = (RocksDbKvStore)KvStore.Open("rocksdb", path, Families);
        _open.Add(store);
        var events = store.Map("events");
        var roomEvents = store.Map("room_events");
        byte[][] keys = [[0x00], [0x7F], [0xFF], [0xFF, 0xFF], [0xFF, 0xFF, 0xFF]];
        foreach (var k in keys)
        {
            events.Put(k, B("e"));
            roomEvents.Put(k, B("r"));
        }
        // Scans, forward and backward from beyond the end, stay within their family's range.
        Assert.Equal(keys, events.Scan([]).Select(kv => kv.Key).ToArray());
        Assert.Equal(keys.Reverse(), events.ScanFrom([0xFF, 0xFF, 0xFF, 0xFF], [], reverse: true).Select(kv => kv.Key).ToArray());
        Assert.Equal(keys, roomEvents.ScanFrom([], [], reverse: false).Select(kv => kv.Key).ToArray());
        Assert.All(roomEvents.Scan([]), kv => Assert.Equal("r", S(kv.Value)));
        // A range delete over a whole family leaves the other alone.
        using (var batch = store.CreateBatch())
        {
            batch.DeleteRange("events", [], [0xFF, 0xFF, 0xFF, 0xFF]);
            store.Write(batch);
        }
        Assert.Empty(events.Scan([]));
        Assert.Equal(keys.Length, roomEvents.Scan([]).Count());
        // The ids are kept: reopened with the families declared in another order, each still finds its own keys.
        store.Dispose();
        _open.Remove(store);
        var again = (RocksDbKvStore)KvStore.Open("rocksdb", path, [Families[1], new ColumnFamily("later", "k", "v"), Families[0]]);
        _open.Add(again);
        Assert.Equal(keys.Length, again.Map("room_events").Scan([]).Count());
        Assert.Empty(again.Map("events").Scan([]));
        Assert.Empty(again.Map("later").Scan([]));
        Assert.Equal(3, again.FamilyIds.Values.Select(Convert.ToHexString).Distinct().Count());
        again.Dispose();
        _open.Remove(again);
        Assert.Equal(["default"], ColumnFamiliesOnDisk(path));
    }

    [Fact]
    public void RocksDbMovesADatabaseWithAColumnFamilyPerFamilyIntoOne()
    {
        // The layout of earlier versions: each family in its own column family, keys as the caller gave them,
        // plus a family no longer declared, and one that is dedicated now (it keeps its column family).
        var path = Path.Combine(_dir, "db");
        WriteOldLayout(path, new()
        {
            ["events"] = [([0x01], B("one")), ([0xFF, 0xFF], B("last"))],
            ["room_events"] = [(B("room"), B("r"))],
            ["retired"] = [(B("kept"), B("still here"))],
            ["hot"] = [(B("h"), B("hot"))],
        });
        Assert.Equal(["default", "events", "hot", "retired", "room_events"], ColumnFamiliesOnDisk(path).Order());

        ColumnFamily hot = new("hot", "k", "v", Dedicated: true);
        var progress = new List<string>();
        var store = KvStore.Open("rocksdb", path, [.. Families, hot], new StoreOptions { Progress = progress.Add });
        _open.Add(store);
        Assert.Equal(2, progress.Count);
        Assert.Contains("moving 3 families", progress[0]);
        Assert.Equal("hot", S(store.Map("hot").Get(B("h"))!));
        Assert.Equal("one", S(store.Map("events").Get([0x01])!));
        Assert.Equal(["one", "last"], store.Map("events").Scan([]).Select(kv => S(kv.Value)).ToArray());
        Assert.Equal("r", S(store.Map("room_events").Get(B("room"))!));
        store.Map("events").Put([0x02], B("new"));
        store.Dispose();
        _open.Remove(store);
        Assert.Equal(["default", "hot"], ColumnFamiliesOnDisk(path).Order());

        // The undeclared family moved too: declaring it again finds its data.
        var again = KvStore.Open("rocksdb", path, [.. Families, hot, new ColumnFamily("retired", "k", "v")], new StoreOptions { Progress = progress.Add });
        _open.Add(again);
        Assert.Equal(2, progress.Count);
        Assert.Equal("still here", S(again.Map("retired").Get(B("kept"))!));
        Assert.Equal(3, again.Map("events").Scan([]).Count());
        Assert.Equal("hot", S(again.Map("hot").Get(B("h"))!));
    }

    [Fact]
    public void RocksDbDedicatedFamilyHasItsOwnColumnFamilyAndMovesWhenItChangesSides()
    {
        var path = Path.Combine(_dir, "db");
        ColumnFamily hot = new("hot", "k", "v", Dedicated: true), cold = new("hot", "k", "v");
        byte[][] keys = [[0x00], [0x41], [0xFF, 0xFF]];

        var store = KvStore.Open("rocksdb", path, [Families[0], hot]);
        _open.Add(store);
        foreach (var k in keys) store.Map("hot").Put(k, k);
        store.Map("events").Put([0x41], B("shared"));
        Assert.Equal(keys, store.Map("hot").Scan([]).Select(kv => kv.Key).ToArray());
        Assert.Equal(keys.Reverse(), store.Map("hot").ScanFrom([0xFF, 0xFF, 0xFF], [], reverse: true).Select(kv => kv.Key).ToArray());
        store.Dispose();
        _open.Remove(store);
        Assert.Equal(["default", "hot"], ColumnFamiliesOnDisk(path).Order());

        // No longer dedicated: its keys move into the shared column family, its own is dropped.
        var progress = new List<string>();
        var shared = KvStore.Open("rocksdb", path, [Families[0], cold], new StoreOptions { Progress = progress.Add });
        _open.Add(shared);
        Assert.Equal(2, progress.Count);
        Assert.Equal(keys, shared.Map("hot").Scan([]).Select(kv => kv.Key).ToArray());
        Assert.Equal("shared", S(shared.Map("events").Get([0x41])!));
        shared.Map("hot").Put([0x42], [0x42]);
        shared.Dispose();
        _open.Remove(shared);
        Assert.Equal(["default"], ColumnFamiliesOnDisk(path));

        // Dedicated again: its keys come back out of the shared column family, and nothing of it stays there.
        var again = (RocksDbKvStore)KvStore.Open("rocksdb", path, [Families[0], hot], new StoreOptions { Progress = progress.Add });
        _open.Add(again);
        Assert.Equal(4, progress.Count);
        Assert.Equal(4, again.Map("hot").Scan([]).Count());
        Assert.Equal([0x42], again.Map("hot").Get([0x42]));
        Assert.Equal("shared", S(again.Map("events").Get([0x41])!));
        again.Dispose();
        _open.Remove(again);
        Assert.Equal(["default", "hot"], ColumnFamiliesOnDisk(path).Order());
        var last = KvStore.Open("rocksdb", path, [Families[0], hot], new StoreOptions { Progress = progress.Add });
        _open.Add(last);
        Assert.Equal(4, progress.Count);
        Assert.Equal(4, last.Map("hot").Scan([]).Count());
    }

    [Fact]
    public void RocksDbScansMatchAModelAcrossTableFiles()
    {
        // Enough data through a 1 MiB budget that every family spans memtables and many table files (whose filters the
        // scans consult), then every kind of scan checked against a sorted model.
        ColumnFamily[] families = [new("a", "k", "v"), new("b", "k", "v"), new("c", "k", "v", Dedicated: true)];
        var store = KvStore.Open("rocksdb", Path.Combine(_dir, "db"), families, new StoreOptions { CacheCapacity = 1L << 20 });
        _open.Add(store);
        var random = new Random(7);
        var models = families.ToDictionary(f => f.Name, _ => new SortedDictionary<byte[], byte[]>(Comparer<byte[]>.Create((x, y) => Keys.Compare(x, y))));
        byte[] RandomKey()
        {
            var k = new byte[random.Next(1, 5)];
            for (var i = 0; i < k.Length; i++) k[i] = random.Next(4) switch { 0 => 0x00, 1 => 0xFF, _ => (byte)random.Next(256) };
            return k;
        }
        var value = new byte[200];
        for (var round = 1; round <= 60; round++)
        {
            using var batch = store.CreateBatch();
            foreach (var f in families)
                for (var i = 0; i < 100; i++)
                {
                    var k = RandomKey();
                    if (random.Next(5) == 0) { batch.Delete(f.Name, k); models[f.Name].Remove(k); }
                    else { random.NextBytes(value); batch.Put(f.Name, k, value.ToArray()); models[f.Name][k] = value.ToArray(); }
                }
            store.Write(batch);
            // Checked along the way, not only at the end: how many table files there are at a given moment depends on
            // when RocksDB's background compactions merge them, so several moments are looked at.
            if (round % 15 == 0) Check();
        }
        Assert.NotEmpty(Directory.GetFiles(Path.Combine(_dir, "db"), "*.sst"));

        void Check()
        {
            foreach (var f in families)
            {
                var map = store.Map(f.Name);
                var model = models[f.Name];
                Assert.Equal(model.Keys.ToArray(), map.Scan([]).Select(kv => kv.Key).ToArray());
                for (var i = 0; i < 40; i++)
                {
                    var prefix = RandomKey()[..random.Next(0, 2)];
                    var start = Keys.Concat(prefix, RandomKey());
                    var inPrefix = model.Where(kv => kv.Key.AsSpan().StartsWith(prefix)).ToList();
                    Assert.Equal(inPrefix.Select(kv => kv.Key).ToArray(), map.Scan(prefix).Select(kv => kv.Key).ToArray());
                    Assert.Equal(inPrefix.Where(kv => Keys.Compare(kv.Key, start) >= 0).Select(kv => kv.Key).ToArray(),
                        map.ScanFrom(start, prefix, reverse: false).Select(kv => kv.Key).ToArray());
                    Assert.Equal(inPrefix.Where(kv => Keys.Compare(kv.Key, start) <= 0).Select(kv => kv.Key).Reverse().ToArray(),
                        map.ScanFrom(start, prefix, reverse: true).Select(kv => kv.Key).ToArray());
                    Assert.Equal(inPrefix.Select(kv => kv.Key).Reverse().ToArray(),
                        map.ScanFrom([0xFF, 0xFF, 0xFF, 0xFF, 0xFF], prefix, reverse: true).Select(kv => kv.Key).ToArray());
                    var probe = RandomKey();
                    Assert.Equal(model.TryGetValue(probe, out var v) ? v : null, map.Get(probe));
                }
            }
        }
    }

    private static unsafe void WriteOldLayout(string path, Dictionary<string, List<(byte[] Key, byte[] Value)>> families)
    {
        Directory.CreateDirectory(path);
        var options = RocksDbNative.rocksdb_options_create();
        RocksDbNative.rocksdb_options_set_create_if_missing(options, 1);
        RocksDbNative.rocksdb_options_set_create_missing_column_families(options, 1);
        var names = new List<string> { "default" };
        names.AddRange(families.Keys);
        var namePtrs = names.Select(n => System.Runtime.InteropServices.Marshal.StringToCoTaskMemUTF8(n)).ToArray();
        var optPtrs = names.Select(_ => options).ToArray();
        var handles = new nint[names.Count];
        nint db;
        fixed (nint* np = namePtrs, op = optPtrs, hp = handles)
        {
            db = RocksDbNative.rocksdb_open_column_families(options, path, names.Count, np, op, hp, out var err);
            RocksDbNative.Check(err);
        }
        var write = RocksDbNative.rocksdb_writeoptions_create();
        for (var i = 1; i < names.Count; i++)
            foreach (var (k, v) in families[names[i]])
                fixed (byte* kp = k, vp = v)
                {
                    RocksDbNative.rocksdb_put_cf(db, write, handles[i], kp, (nuint)k.Length, vp, (nuint)v.Length, out var err);
                    RocksDbNative.Check(err);
                }
        RocksDbNative.rocksdb_writeoptions_destroy(write);
        foreach (var h in handles) RocksDbNative.rocksdb_column_family_handle_destroy(h);
        RocksDbNative.rocksdb_close(db);
        RocksDbNative.rocksdb_options_destroy(options);
        foreach (var p in namePtrs) System.Runtime.InteropServices.Marshal.FreeCoTaskMem(p);
    }

    private static unsafe string[] ColumnFamiliesOnDisk(string path)
    {
        var options = RocksDbNative.rocksdb_options_create();
        var list = RocksDbNative.rocksdb_list_column_families(options, path, out var count, out var err);
        RocksDbNative.Check(err);
        var names = new string[(int)count];
        for (var i = 0; i < names.Length; i++) names[i] = System.Runtime.InteropServices.Marshal.PtrToStringUTF8(((nint*)list)[i])!;
        RocksDbNative.rocksdb_list_column_families_destroy(list, count);
        RocksDbNative.rocksdb_options_destroy(options);
        return names;
    }

    [Fact]
    public void TooSmallCacheCapacityIsRefused() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => KvStore.Open("rocksdb", Path.Combine(_dir, "db"), Families, new StoreOptions { CacheCapacity = 1000 }));

    [Fact]
    public void UnknownBackendThrows() =>
        Assert.Throws<ArgumentException>(() => KvStore.Open("leveldb", _dir, Families));

    [Fact]
    public void KeyHelpers()
    {
        var key = Keys.Join("!room:example.org", "$event", "ü");
        Assert.Equal(["!room:example.org", "$event", "ü"], Keys.Split(key));
        Assert.Equal(2, key.Count(b => b == Keys.Sep));
        Assert.Equal(Keys.Concat(Keys.Join("a", "b"), [Keys.Sep]), Keys.Prefix("a", "b"));
        Assert.Equal(0x0102030405060708UL, Keys.ReadBigEndian(Keys.BigEndian(0x0102030405060708UL)));
        Assert.True(Keys.Compare(Keys.BigEndian(255), Keys.BigEndian(256)) < 0);
        Assert.Equal([(byte)'b'], Keys.PrefixEnd([(byte)'a', 0xFF, 0xFF])!);
        Assert.Null(Keys.PrefixEnd([0xFF, 0xFF]));
        Assert.Null(Keys.PrefixEnd([]));
        Assert.Equal(["a", ""], Keys.Split([(byte)'a', 0xFF]));
    }
}

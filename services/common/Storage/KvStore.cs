namespace Conduit.Common.Storage;

public static class KvStore
{
    public static readonly string[] Backends = ["rocksdb", "sqlite", "memory"];

    /// <summary>
    /// Opens (creating if missing) a store. <paramref name="backend"/>: "rocksdb" (path is the database directory),
    /// "sqlite" (path is the database file; an existing directory, or a path ending in a separator, means
    /// path/conduit.sqlite) or "memory" (path ignored, nothing persisted).
    /// </summary>
    public static IKeyValueStore Open(string backend, string path, IEnumerable<ColumnFamily> families, StoreOptions? options = null)
    {
        options ??= StoreOptions.Default;
        if (options.CacheCapacity < StoreOptions.MinCacheCapacity)
            throw new ArgumentOutOfRangeException(nameof(options), options.CacheCapacity, $"The cache capacity must be at least {StoreOptions.MinCacheCapacity} bytes.");
        var list = families.ToList();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var f in list)
        {
            if (string.IsNullOrEmpty(f.Name)) throw new ArgumentException("A column family needs a name.", nameof(families));
            if (!seen.Add(f.Name)) throw new ArgumentException($"Column family '{f.Name}' is declared twice.", nameof(families));
        }
        return backend.ToLowerInvariant() switch
        {
            "rocksdb" => new RocksDbKvStore(path, list, options),
            "sqlite" => new SqliteKvStore(path, list),
            "memory" => new MemoryKvStore(list),
            _ => throw new ArgumentException($"Unknown storage backend '{backend}' (expected rocksdb, sqlite or memory).", nameof(backend)),
        };
    }
}

/// <summary>How a store may use memory. Only RocksDB reads it: SQLite keeps its own small page cache.</summary>
public sealed record StoreOptions
{
    /// <summary>8 MiB: enough to keep a small server's hot index blocks and recent writes, small enough for a
    /// Raspberry Pi or a 512 MB VPS. The cache fills lazily, so a larger setting costs nothing until it is used.</summary>
    public const long DefaultCacheCapacity = 8L << 20;

    /// <summary>Below 1 MiB RocksDB would flush a memtable every few writes.</summary>
    public const long MinCacheCapacity = 1L << 20;

    public static readonly StoreOptions Default = new();

    /// <summary>
    /// Bytes of native memory for the database: one block cache for every family, with the memtables
    /// (write buffers) charged to the same cache, so data blocks, index and filter blocks and unflushed writes
    /// together stay within this one number (config key <c>cache_capacity</c>).
    /// </summary>
    public long CacheCapacity { get; init; } = DefaultCacheCapacity;

    /// <summary>Told of long work at open, such as moving a RocksDB database of an earlier layout (a line each).</summary>
    public Action<string>? Progress { get; init; }
}

/// <summary>A batch recorded in memory and applied by the store that created it.</summary>
internal sealed class KvWriteBatch(IKeyValueStore owner, IReadOnlySet<string> families) : IWriteBatch
{
    /// <summary>A put (Value set), a delete (neither set) or a range delete of [Key, End) (End set).</summary>
    internal readonly record struct Op(string Family, byte[] Key, byte[]? Value, byte[]? End = null);

    internal readonly List<Op> Ops = [];

    internal IKeyValueStore Owner { get; } = owner;

    public int Count => Ops.Count;

    public void Put(string family, byte[] key, byte[] value)
    {
        Check(family);
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(value);
        Ops.Add(new Op(family, key, value));
    }

    public void Delete(string family, byte[] key)
    {
        Check(family);
        ArgumentNullException.ThrowIfNull(key);
        Ops.Add(new Op(family, key, null));
    }

    public void DeleteRange(string family, byte[] start, byte[] end)
    {
        Check(family);
        ArgumentNullException.ThrowIfNull(start);
        ArgumentNullException.ThrowIfNull(end);
        // An empty range deletes nothing (RocksDB refuses one whose end comes before its start).
        if (Keys.Compare(start, end) < 0) Ops.Add(new Op(family, start, null, end));
    }

    public void Append(IWriteBatch other)
    {
        if (other is not KvWriteBatch b || !ReferenceEquals(b.Owner, Owner)) throw new ArgumentException("The batch was not created by this store.", nameof(other));
        Ops.AddRange(b.Ops);
    }

    public void Clear() => Ops.Clear();

    public void Dispose() => Ops.Clear();

    private void Check(string family)
    {
        if (!families.Contains(family)) throw new KeyNotFoundException($"Column family '{family}' was not declared when the store was opened.");
    }

    internal static KvWriteBatch From(IWriteBatch batch, IKeyValueStore store)
    {
        if (batch is KvWriteBatch b && ReferenceEquals(b.Owner, store)) return b;
        throw new ArgumentException("The batch was not created by this store.", nameof(batch));
    }
}

/// <summary>Shared range logic for backends that scan in pages (SQLite, memory).</summary>
internal static class PagedScan
{
    internal const int PageSize = 256;

    /// <summary>
    /// Fetches at most <c>limit</c> entries with the prefix, beyond <c>bound</c> (forward: keys &gt;/&gt;= bound,
    /// ascending; reverse: keys &lt;/&lt;= bound, descending).
    /// </summary>
    internal delegate List<KeyValuePair<byte[], byte[]>> Fetch(byte[] prefix, byte[]? prefixEnd, byte[] bound, bool inclusive, bool reverse, int limit);

    internal static IEnumerable<KeyValuePair<byte[], byte[]>> Run(Fetch fetch, byte[] start, byte[] prefix, bool reverse)
    {
        ArgumentNullException.ThrowIfNull(start);
        ArgumentNullException.ThrowIfNull(prefix);
        return Iterate(fetch, start, prefix, reverse);
    }

    private static IEnumerable<KeyValuePair<byte[], byte[]>> Iterate(Fetch fetch, byte[] start, byte[] prefix, bool reverse)
    {
        var prefixEnd = Keys.PrefixEnd(prefix);
        var bound = start;
        if (!reverse && Keys.Compare(bound, prefix) < 0) bound = prefix;
        var inclusive = true;
        while (true)
        {
            var page = fetch(prefix, prefixEnd, bound, inclusive, reverse, PageSize);
            foreach (var kv in page) yield return kv;
            if (page.Count < PageSize) yield break;
            bound = page[^1].Key;
            inclusive = false;
        }
    }
}

namespace Conduit.Common.Storage;

/// <summary>
/// A set of ordered byte-key maps ("families"), stored in one database. Keys are compared as unsigned bytes,
/// lexicographically (memcmp order, shorter first on a common prefix). Thread-safe.
/// </summary>
public interface IKeyValueStore : IDisposable
{
    /// <summary>"rocksdb", "sqlite" or "memory".</summary>
    string Backend { get; }

    /// <summary>The families declared when the store was opened.</summary>
    IReadOnlyList<ColumnFamily> Families { get; }

    /// <summary>The map of a declared family. Throws <see cref="KeyNotFoundException"/> for an undeclared one.</summary>
    IKvMap Map(string family);

    /// <summary>A new, empty batch; apply it with <see cref="Write"/>.</summary>
    IWriteBatch CreateBatch();

    /// <summary>Applies every operation of the batch atomically (across families) and durably (synced before returning).</summary>
    void Write(IWriteBatch batch);

    /// <summary>A consistent read-only view of every family as of now, or null if the backend has none. Dispose it.</summary>
    IKvSnapshot? Snapshot();

    /// <summary>
    /// Writes a consistent copy of the whole database, as of now, into <paramref name="dir"/> (which must not exist),
    /// while the store stays in use: a database folder that opens as this one would (RocksDB: a checkpoint, hard links
    /// to the table files where the folder is on the same file system; SQLite: VACUUM INTO, conduit.sqlite).
    /// Throws <see cref="NotSupportedException"/> for the in-memory store.
    /// </summary>
    void Checkpoint(string dir);
}

/// <summary>A store that can say how much native memory it holds (for the metrics), in bytes by kind.</summary>
public interface IReportsMemory
{
    IEnumerable<(string Kind, long Bytes)> MemoryUsage();
}

/// <summary>Read operations of one family.</summary>
public interface IKvReader
{
    string Family { get; }

    /// <summary>The value stored under the key, or null. The returned array is the caller's.</summary>
    byte[]? Get(ReadOnlySpan<byte> key);

    bool Contains(ReadOnlySpan<byte> key);

    /// <summary>Every entry whose key starts with <paramref name="prefix"/> (empty: all), ascending.</summary>
    IEnumerable<KeyValuePair<byte[], byte[]>> Scan(byte[] prefix);

    /// <summary>
    /// Entries whose key starts with <paramref name="prefix"/>, starting at <paramref name="start"/>: forward from the
    /// smallest key &gt;= start, or (reverse) backward from the greatest key &lt;= start. A start outside the prefix's
    /// range is clamped to it (forward from below the range starts at its first key, reverse from above it at its last).
    /// </summary>
    IEnumerable<KeyValuePair<byte[], byte[]>> ScanFrom(byte[] start, byte[] prefix, bool reverse);
}

/// <summary>
/// One family of a store. <see cref="Put"/> and <see cref="Delete"/> are each one atomic, durable write.
/// Scans are lazy; on RocksDB a scan reads one consistent view, on SQLite and memory it reads in pages, so writes
/// made during a scan may or may not be seen by it (entries are never seen twice or out of order).
/// </summary>
public interface IKvMap : IKvReader
{
    void Put(byte[] key, byte[] value);

    void Delete(byte[] key);
}

/// <summary>Operations applied together by <see cref="IKeyValueStore.Write"/>, in the order they were added.</summary>
public interface IWriteBatch : IDisposable
{
    /// <summary>Throws <see cref="KeyNotFoundException"/> for an undeclared family.</summary>
    void Put(string family, byte[] key, byte[] value);

    void Delete(string family, byte[] key);

    /// <summary>
    /// Deletes every key in [<paramref name="start"/>, <paramref name="end"/>) (nothing if end is not after start). On RocksDB this is one range tombstone,
    /// which later scans skip at once, where deleting the keys one by one would leave a tombstone per key for every
    /// scan to walk until compaction: use it for queues consumed from the front (claimed one-time keys, acknowledged
    /// to-device messages) and for dropping a whole prefix.
    /// </summary>
    void DeleteRange(string family, byte[] start, byte[] end);

    int Count { get; }

    /// <summary>
    /// Adds every operation of <paramref name="other"/> (a batch of the same store) after this batch's own, so that
    /// several requests' batches can be written as one (group commit). <paramref name="other"/> is left as it is.
    /// </summary>
    void Append(IWriteBatch other);

    void Clear();
}

/// <summary>A point-in-time read-only view of a store.</summary>
public interface IKvSnapshot : IDisposable
{
    IKvReader Map(string family);
}

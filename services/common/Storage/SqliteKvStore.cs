using System.Collections.Concurrent;
using Microsoft.Data.Sqlite;

namespace Conduit.Common.Storage;

/// <summary>
/// SQLite backend: one file, one <c>(k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID</c> table per family
/// (named <c>kv_&lt;family&gt;</c>), WAL journal with synchronous=FULL. Writes go through one connection under a
/// lock (a batch is one transaction); reads use a pool of reader connections, so they run concurrently with writes.
/// </summary>
internal sealed class SqliteKvStore : IKeyValueStore
{
    private readonly string _connectionString;
    private readonly Lock _writeLock = new();
    private readonly Connection _writer;
    private readonly ConcurrentBag<Connection> _readers = [];
    private readonly Dictionary<string, FamilyMap> _maps = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _tables = new(StringComparer.Ordinal);
    private readonly HashSet<string> _names;
    private volatile bool _disposed;

    public SqliteKvStore(string path, IReadOnlyList<ColumnFamily> families)
    {
        Families = families;
        _names = families.Select(f => f.Name).ToHashSet(StringComparer.Ordinal);
        var file = Directory.Exists(path) || path.EndsWith(Path.DirectorySeparatorChar) || path.EndsWith(Path.AltDirectorySeparatorChar)
            ? Path.Combine(path, "conduit.sqlite")
            : path;
        FilePath = Path.GetFullPath(file);
        var dir = Path.GetDirectoryName(FilePath);
        if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
        _connectionString = new SqliteConnectionStringBuilder
        {
            DataSource = FilePath,
            Mode = SqliteOpenMode.ReadWriteCreate,
            Cache = SqliteCacheMode.Private,
            Pooling = false,
            DefaultTimeout = 30,
        }.ToString();

        _writer = new Connection(_connectionString);
        _writer.Exec("PRAGMA journal_mode=WAL;");
        _writer.Exec("PRAGMA synchronous=FULL;");
        foreach (var f in families)
        {
            var table = "\"kv_" + f.Name.Replace("\"", "\"\"") + "\"";
            _tables[f.Name] = table;
            _writer.Exec($"CREATE TABLE IF NOT EXISTS {table} (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;");
            _maps[f.Name] = new FamilyMap(this, f.Name, table, null);
        }
    }

    public string FilePath { get; }

    public string Backend => "sqlite";

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
        lock (_writeLock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            using var tx = _writer.Db.BeginTransaction();
            foreach (var op in b.Ops)
            {
                var table = _tables[op.Family];
                if (op.End is not null) _writer.DeleteRange(table, op.Key, op.End, tx);
                else if (op.Value is null) _writer.Delete(table, op.Key, tx);
                else _writer.Put(table, op.Key, op.Value, tx);
            }
            tx.Commit();
        }
    }

    public IKvSnapshot? Snapshot()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return new SnapshotView(this);
    }

    public void Dispose()
    {
        lock (_writeLock)
        {
            if (_disposed) return;
            _disposed = true;
            _writer.Dispose();
            while (_readers.TryTake(out var r)) r.Dispose();
        }
    }

    private Connection RentReader()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return _readers.TryTake(out var c) ? c : new Connection(_connectionString);
    }

    private void Return(Connection c)
    {
        if (_disposed) c.Dispose();
        else _readers.Add(c);
    }

    /// <summary>A connection with its prepared commands.</summary>
    public void Checkpoint(string dir)
    {
        if (Directory.Exists(dir) || File.Exists(dir)) throw new IOException($"{dir} exists already");
        Directory.CreateDirectory(dir);
        // VACUUM INTO reads in one transaction (a consistent copy) on its own connection, so writers go on meanwhile (WAL).
        using var c = new Connection(_connectionString);
        c.Exec($"VACUUM INTO '{Path.Combine(Path.GetFullPath(dir), "conduit.sqlite").Replace("'", "''")}'");
    }

    private sealed class Connection : IDisposable
    {
        public readonly SqliteConnection Db;
        private readonly Dictionary<string, SqliteCommand> _commands = new(StringComparer.Ordinal);

        public Connection(string connectionString)
        {
            Db = new SqliteConnection(connectionString);
            Db.Open();
        }

        public void Exec(string sql)
        {
            using var cmd = Db.CreateCommand();
            cmd.CommandText = sql;
            cmd.ExecuteNonQuery();
        }

        private SqliteCommand Command(string sql, SqliteTransaction? tx)
        {
            if (!_commands.TryGetValue(sql, out var cmd))
            {
                cmd = Db.CreateCommand();
                cmd.CommandText = sql;
                _commands[sql] = cmd;
            }
            cmd.Parameters.Clear();
            cmd.Transaction = tx;
            return cmd;
        }

        public byte[]? Get(string table, byte[] key, SqliteTransaction? tx)
        {
            var cmd = Command($"SELECT v FROM {table} WHERE k = $k", tx);
            cmd.Parameters.AddWithValue("$k", key);
            using var r = cmd.ExecuteReader();
            return r.Read() ? (byte[])r.GetValue(0) : null;
        }

        public bool Contains(string table, byte[] key, SqliteTransaction? tx)
        {
            var cmd = Command($"SELECT 1 FROM {table} WHERE k = $k", tx);
            cmd.Parameters.AddWithValue("$k", key);
            using var r = cmd.ExecuteReader();
            return r.Read();
        }

        public void Put(string table, byte[] key, byte[] value, SqliteTransaction? tx)
        {
            var cmd = Command($"INSERT INTO {table} (k, v) VALUES ($k, $v) ON CONFLICT(k) DO UPDATE SET v = excluded.v", tx);
            cmd.Parameters.AddWithValue("$k", key);
            cmd.Parameters.AddWithValue("$v", value);
            cmd.ExecuteNonQuery();
        }

        public void Delete(string table, byte[] key, SqliteTransaction? tx)
        {
            var cmd = Command($"DELETE FROM {table} WHERE k = $k", tx);
            cmd.Parameters.AddWithValue("$k", key);
            cmd.ExecuteNonQuery();
        }

        public void DeleteRange(string table, byte[] start, byte[] end, SqliteTransaction? tx)
        {
            var cmd = Command($"DELETE FROM {table} WHERE k >= $s AND k < $e", tx);
            cmd.Parameters.AddWithValue("$s", start);
            cmd.Parameters.AddWithValue("$e", end);
            cmd.ExecuteNonQuery();
        }

        public List<KeyValuePair<byte[], byte[]>> Range(string table, byte[] prefix, byte[]? prefixEnd, byte[] bound, bool inclusive, bool reverse, int limit, SqliteTransaction? tx)
        {
            var op = reverse ? (inclusive ? "<=" : "<") : (inclusive ? ">=" : ">");
            var end = prefixEnd is null ? "" : " AND k < $e";
            var order = reverse ? "DESC" : "ASC";
            var cmd = Command($"SELECT k, v FROM {table} WHERE k >= $p AND k {op} $b{end} ORDER BY k {order} LIMIT $n", tx);
            cmd.Parameters.AddWithValue("$p", prefix);
            cmd.Parameters.AddWithValue("$b", bound);
            if (prefixEnd is not null) cmd.Parameters.AddWithValue("$e", prefixEnd);
            cmd.Parameters.AddWithValue("$n", limit);
            var page = new List<KeyValuePair<byte[], byte[]>>();
            using var r = cmd.ExecuteReader();
            while (r.Read()) page.Add(new((byte[])r.GetValue(0), (byte[])r.GetValue(1)));
            return page;
        }

        public void Dispose()
        {
            foreach (var c in _commands.Values) c.Dispose();
            _commands.Clear();
            Db.Dispose();
        }
    }

    /// <summary>A read transaction held open on one reader connection: WAL gives it a stable view.</summary>
    private sealed class SnapshotView : IKvSnapshot
    {
        private readonly SqliteKvStore _store;
        private readonly Connection _conn;
        internal readonly SqliteTransaction Tx;
        internal readonly Lock Gate = new();
        private readonly Dictionary<string, FamilyMap> _maps = new(StringComparer.Ordinal);
        private bool _disposed;

        public SnapshotView(SqliteKvStore store)
        {
            _store = store;
            _conn = store.RentReader();
            Tx = _conn.Db.BeginTransaction(deferred: true);
            // The read transaction (and so the view) starts with the first read.
            using (var cmd = _conn.Db.CreateCommand())
            {
                cmd.Transaction = Tx;
                cmd.CommandText = "SELECT count(*) FROM sqlite_master";
                cmd.ExecuteScalar();
            }
            foreach (var (name, table) in store._tables) _maps[name] = new FamilyMap(store, name, table, this);
        }

        public IKvReader Map(string family) =>
            _maps.TryGetValue(family, out var m) ? m : throw MemoryKvStore.Undeclared(family);

        internal T Use<T>(Func<Connection, SqliteTransaction, T> f)
        {
            lock (Gate)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                return f(_conn, Tx);
            }
        }

        public void Dispose()
        {
            lock (Gate)
            {
                if (_disposed) return;
                _disposed = true;
                Tx.Rollback();
                Tx.Dispose();
                _store.Return(_conn);
            }
        }
    }

    private sealed class FamilyMap(SqliteKvStore store, string family, string table, SnapshotView? snapshot) : IKvMap
    {
        public string Family => family;

        private T Read<T>(Func<Connection, SqliteTransaction?, T> f)
        {
            if (snapshot is not null) return snapshot.Use((c, tx) => f(c, tx));
            var c = store.RentReader();
            try
            {
                return f(c, null);
            }
            finally
            {
                store.Return(c);
            }
        }

        public byte[]? Get(ReadOnlySpan<byte> key)
        {
            var k = key.ToArray();
            return Read((c, tx) => c.Get(table, k, tx));
        }

        public bool Contains(ReadOnlySpan<byte> key)
        {
            var k = key.ToArray();
            return Read((c, tx) => c.Contains(table, k, tx));
        }

        public void Put(byte[] key, byte[] value)
        {
            ArgumentNullException.ThrowIfNull(key);
            ArgumentNullException.ThrowIfNull(value);
            if (snapshot is not null) throw new InvalidOperationException("A snapshot is read-only.");
            lock (store._writeLock)
            {
                ObjectDisposedException.ThrowIf(store._disposed, store);
                store._writer.Put(table, key, value, null);
            }
        }

        public void Delete(byte[] key)
        {
            ArgumentNullException.ThrowIfNull(key);
            if (snapshot is not null) throw new InvalidOperationException("A snapshot is read-only.");
            lock (store._writeLock)
            {
                ObjectDisposedException.ThrowIf(store._disposed, store);
                store._writer.Delete(table, key, null);
            }
        }

        public IEnumerable<KeyValuePair<byte[], byte[]>> Scan(byte[] prefix) => ScanFrom(prefix, prefix, reverse: false);

        public IEnumerable<KeyValuePair<byte[], byte[]>> ScanFrom(byte[] start, byte[] prefix, bool reverse) =>
            PagedScan.Run(
                (p, e, b, inc, rev, n) => Read((c, tx) => c.Range(table, p, e, b, inc, rev, n, tx)),
                start, prefix, reverse);
    }
}

using Conduit.Common;
using Conduit.Common.Storage;
using K = Conduit.Common.Storage.Keys;

namespace Conduit.Keys.E2ee;

/// <summary>An advance of the keys stream, published once its batch is durable.</summary>
public sealed record KeysAdvance(long Position, IReadOnlyCollection<string> Wake, IReadOnlyCollection<string> Changed,
    IReadOnlyCollection<(string UserId, string DeviceId)>? Removed = null, IReadOnlyCollection<string>? Counted = null);

/// <summary>
/// The keys stream: one position counter for to-device messages, device-list changes and one-time key uploads
/// (the third slot of a sync token). Every write that touches E2EE state goes through <see cref="Write{T}"/>: one
/// lock, one batch, positions allocated inside it and the counter written with it, so a position is never reused
/// after a crash; the position is published (readers see it) only after the batch is durable, and watchers (sync's
/// notifier) hear of it after that. A write that throws leaves nothing behind, its positions included.
/// </summary>
public sealed class KeysStream
{
    readonly IKeyValueStore _store;
    readonly Lock _lock = new();
    readonly Broadcast<KeysAdvance> _advances = new();
    long _last;
    long _published;

    public KeysStream(IKeyValueStore store)
    {
        _store = store;
        _last = _published = store.Map(KeysFamilies.Counters).Get(KeysFamilies.StreamCounterKey) is { } v ? (long)K.ReadBigEndian(v) : 0;
    }

    public IKeyValueStore Store => _store;

    /// <summary>The latest durable position: everything at or before it can be read.</summary>
    public long Position => Interlocked.Read(ref _published);

    /// <summary>
    /// Runs <paramref name="build"/> under the stream's lock with a fresh batch, then writes the batch (with the
    /// counter if positions were taken) and publishes. Writes of E2EE state are serialised here, which is what makes
    /// read-check-write sequences (one-time key claims, duplicate key IDs) exact.
    /// </summary>
    public T Write<T>(Func<KeysBatch, T> build)
    {
        KeysAdvance? advance = null;
        T result;
        lock (_lock)
        {
            using var batch = _store.CreateBatch();
            var kb = new KeysBatch(batch, _last);
            result = build(kb);
            if (kb.Last != _last) batch.Put(KeysFamilies.Counters, KeysFamilies.StreamCounterKey, K.BigEndian((ulong)kb.Last));
            if (batch.Count > 0) _store.Write(batch);
            foreach (var a in kb.Committed) a();
            if (kb.Last != _last || kb.Removed.Count > 0 || kb.Counted.Count > 0)
            {
                _last = kb.Last;
                Interlocked.Exchange(ref _published, _last);
                advance = new KeysAdvance(_last, kb.Wake, kb.Changed, kb.Removed, kb.Counted);
            }
        }
        if (advance is not null) Publish(advance);
        return result;
    }

    public void Write(Action<KeysBatch> build) => Write(b => { build(b); return 0; });

    /// <summary>
    /// Runs <paramref name="read"/> under the stream's lock: no write is under way, so what it reads is exactly what is
    /// durable. For filling caches that writes keep up to date (through <see cref="KeysBatch.OnCommitted"/>).
    /// </summary>
    public T Locked<T>(Func<T> read)
    {
        lock (_lock) return read();
    }

    /// <summary>Advances from now on, after one giving the current position (which tells the watcher it is connected).</summary>
    public IAsyncEnumerable<KeysAdvance> Watch(CancellationToken ct) => _advances.Watch(() => new KeysAdvance(Position, [], []), ct);

    void Publish(KeysAdvance a) => _advances.Publish(a);
}

/// <summary>A batch of the keys stream: positions to take, users to wake, users whose device lists changed.</summary>
public sealed class KeysBatch(IWriteBatch batch, long last)
{
    public IWriteBatch Batch { get; } = batch;
    public long Last { get; private set; } = last;
    public HashSet<string> Wake { get; } = new(StringComparer.Ordinal);
    public HashSet<string> Changed { get; } = new(StringComparer.Ordinal);
    /// <summary>Users whose one-time or fallback key counts this batch changes (announced for appservices, MSC3202).</summary>
    public HashSet<string> Counted { get; } = new(StringComparer.Ordinal);

    public KeysBatch CountsChanged(string userId)
    {
        Counted.Add(userId);
        return this;
    }

    /// <summary>Devices this batch deletes (announced so that sync drops their pushers).</summary>
    public List<(string UserId, string DeviceId)> Removed { get; } = [];

    /// <summary>The next stream position, durable with this batch.</summary>
    public long Next() => ++Last;

    internal List<Action> Committed { get; } = [];

    /// <summary>Runs once the batch is durable, still under the stream's lock (to keep in-memory state in step).</summary>
    public void OnCommitted(Action action) => Committed.Add(action);
}

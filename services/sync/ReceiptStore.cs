using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Storage;
using K = Conduit.Common.Storage.Keys;

namespace Conduit.Sync;

/// <summary>One stored receipt: the latest of its (room, user, type, thread); <see cref="ThreadId"/> is empty when unthreaded.</summary>
public sealed record Receipt(string RoomId, string UserId, string Type, string ThreadId, string EventId, long EventPos, long Ts, long Pos);

/// <summary>
/// Read receipts (spec: client-server-api, "Receipts"), durable, with their own stream position for /sync: the
/// latest receipt per (room, user, type, thread), and a log by position of the keys that changed, so an incremental
/// sync finds the rooms with news without scanning every receipt.
/// </summary>
public sealed class ReceiptStore(IKeyValueStore store)
{
    readonly IKvMap _receipts = store.Map(SyncFamilies.Receipts);
    readonly IKvMap _log = store.Map(SyncFamilies.ReceiptsLog);
    readonly IKvMap _counters = store.Map(SyncFamilies.Counters);
    readonly Lock _write = new();
    static readonly byte[] CounterKey = K.Utf8("receipts");

    public long Position => _counters.Get(CounterKey) is { } v ? (long)K.ReadBigEndian(v) : 0;

    /// <summary>
    /// Stores the receipt unless the stored one of the same key is at the same event or a later one (a receipt never
    /// moves back, as Synapse keeps the latest). Returns its stream position, or 0 when nothing changed.
    /// </summary>
    public long Put(string roomId, string userId, string type, string threadId, string eventId, long eventPos, long ts)
    {
        var key = K.Join(roomId, userId, type, threadId);
        lock (_write)
        {
            long? oldPos = null;
            if (_receipts.Get(key) is { } old)
            {
                var o = JsonLimits.ParseInternal(old)!.AsObject();
                if (o["event_id"]!.GetValue<string>() == eventId || o["event_pos"]!.GetValue<long>() >= eventPos) return 0;
                oldPos = o["pos"]!.GetValue<long>();
            }
            var pos = Position + 1;
            using var b = store.CreateBatch();
            b.Put(SyncFamilies.Receipts, key, Encoding.UTF8.GetBytes(new JsonObject
            {
                ["pos"] = pos, ["event_id"] = eventId, ["event_pos"] = eventPos, ["ts"] = ts,
            }.ToJsonString()));
            if (oldPos is long p) b.Delete(SyncFamilies.ReceiptsLog, K.BigEndian((ulong)p));
            b.Put(SyncFamilies.ReceiptsLog, K.BigEndian((ulong)pos), key);
            b.Put(SyncFamilies.Counters, CounterKey, K.BigEndian((ulong)pos));
            store.Write(b);
            return pos;
        }
    }

    /// <summary>The rooms with a receipt changed in (since, upTo].</summary>
    public HashSet<string> RoomsChanged(long since, long upTo)
    {
        var rooms = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (k, v) in _log.ScanFrom(K.BigEndian((ulong)since + 1), [], reverse: false))
        {
            if ((long)K.ReadBigEndian(k) > upTo) break;
            rooms.Add(K.Split(v)[0]);
        }
        return rooms;
    }

    /// <summary>The room's receipts changed in (since, upTo] (all of them when since is 0).</summary>
    public IEnumerable<Receipt> InRoom(string roomId, long since, long upTo)
    {
        foreach (var (k, v) in _receipts.Scan(K.Prefix(roomId)))
        {
            var o = JsonLimits.ParseInternal(v)!.AsObject();
            var pos = o["pos"]!.GetValue<long>();
            if (pos <= since || pos > upTo) continue;
            var parts = K.Split(k);
            yield return new Receipt(parts[0], parts[1], parts[2], parts[3], o["event_id"]!.GetValue<string>(),
                o["event_pos"]!.GetValue<long>(), o["ts"]!.GetValue<long>(), pos);
        }
    }

    /// <summary>
    /// How far the user has read in the room by m.read and m.read.private receipts, the later of the two: the
    /// unthreaded receipt's event position (0: none) and each thread's ("main" or a root event ID).
    /// </summary>
    public (long Unthreaded, Dictionary<string, long> Threads) ReadPositions(string roomId, string userId)
    {
        long unthreaded = 0;
        var threads = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var (k, v) in _receipts.Scan(K.Prefix(roomId, userId)))
        {
            var parts = K.Split(k);
            if (parts.Length != 4 || parts[2] is not (ReceiptTypes.Read or ReceiptTypes.ReadPrivate)) continue;
            var pos = JsonLimits.ParseInternal(v)!["event_pos"]!.GetValue<long>();
            if (parts[3].Length == 0) unthreaded = Math.Max(unthreaded, pos);
            else if (!threads.TryGetValue(parts[3], out var p) || p < pos) threads[parts[3]] = pos;
        }
        return (unthreaded, threads);
    }
}

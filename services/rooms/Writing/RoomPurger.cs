using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Config;
using K = Conduit.Common.Storage.Keys;

namespace Conduit.Rooms;

/// <summary>
/// Purging a room's storage for the admin API (Synapse's "Purge History API" and the <c>purge</c> of "Delete Room
/// API"), under the room's write lock, so no event is added meanwhile. Each batch of at most <see cref="BatchSize"/>
/// events is written atomically with every index entry that names those events (timeline, stream, transaction IDs,
/// relations and threads, kept history), so a crash between batches leaves fewer events, never an entry pointing at
/// nothing.
/// </summary>
public sealed class RoomPurger(RoomStore rooms, StateStore states, RoomWriter writer, GlobalConfig config)
{
    public const int BatchSize = 500;

    /// <summary>What a history purge did: events deleted, and old state events taken out of the timeline (kept).</summary>
    public sealed record HistoryResult(int Deleted, int Unlisted);

    /// <summary>
    /// Purges the room's history before a point: the timeline event <paramref name="beforeEventId"/> (the events
    /// before it in stream order go), or else the first timeline event at or after <paramref name="beforeTs"/>
    /// (ms). Events sent by this server's users stay unless <paramref name="deleteLocal"/>; the room's current state
    /// events, its forward extremities and its latest event always stay; other state events leave the timeline but
    /// stay stored (state groups and auth chains name them). History kept from before this server joined
    /// (<c>rooms_history</c>) goes by the same rules. Null when there is nothing before the point.
    /// </summary>
    public async Task<HistoryResult?> PurgeHistoryAsync(string roomId, string? beforeEventId, long beforeTs, bool deleteLocal, CancellationToken ct)
    {
        using var held = await writer.LockAsync(roomId, ct);
        var last = rooms.Timeline(roomId, 0, long.MaxValue, backwards: true).FirstOrDefault();
        if (last.EventId is null) return null;
        long cutoff;
        if (beforeEventId is not null) cutoff = rooms.Event(beforeEventId)?.Pos ?? 0;
        else
        {
            cutoff = last.Pos;
            foreach (var (pos, id) in rooms.Timeline(roomId, 0, last.Pos, backwards: false))
                if (rooms.Event(id) is { } e && Ts(e) >= beforeTs)
                {
                    cutoff = pos;
                    break;
                }
        }
        cutoff = Math.Min(cutoff, last.Pos);
        var first = rooms.Timeline(roomId, 0, long.MaxValue, backwards: false).FirstOrDefault();
        var hasHistory = rooms.Store.Map(RoomsFamilies.History).Scan(RoomsFamilies.HistoryPrefix(roomId)).Any();
        if (first.Pos >= cutoff && !hasHistory) return null;

        var keep = rooms.CurrentState(roomId).Values.ToHashSet();
        if (rooms.Info(roomId)?["forward_extremities"] is JsonArray extremities)
            keep.UnionWith(extremities.Select(x => x?.GetValue<string>()).OfType<string>());
        int deleted = 0, unlisted = 0;

        // The timeline before the cutoff, one batch at a time.
        for (long after = 0; after < cutoff - 1;)
        {
            var page = rooms.Timeline(roomId, after, cutoff - 1, backwards: false).Take(BatchSize).ToList();
            if (page.Count == 0) break;
            after = page[^1].Pos;
            using var write = writer.Begin(roomId);
            foreach (var (pos, id) in page)
            {
                if (rooms.Event(id) is not { } e)
                {
                    // An entry whose event is gone already: the entry goes too.
                    write.Batch.Delete(RoomsFamilies.Timeline, RoomsFamilies.TimelineKey(roomId, pos));
                    continue;
                }
                switch (Decide(e, keep, deleteLocal))
                {
                    case Fate.Delete: write.RemoveEvent(e); deleted++; break;
                    case Fate.Unlist: write.Unlist(e); unlisted++; break;
                }
            }
            await writer.CommitAsync(write);
        }

        // History fetched from other servers from before this server joined: all of it is older than the timeline.
        var history = rooms.Store.Map(RoomsFamilies.History);
        var prefix = RoomsFamilies.HistoryPrefix(roomId);
        for (var from = prefix; ;)
        {
            var page = history.ScanFrom(from, prefix, reverse: false).Take(BatchSize).Select(kv => kv.Key).ToList();
            if (page.Count == 0) break;
            from = [.. page[^1], 0];
            using var write = writer.Begin(roomId);
            foreach (var k in page)
            {
                var e = rooms.Event(RoomsFamilies.HistoryEventId(k, prefix));
                if (beforeEventId is null && e is not null && Ts(e) >= beforeTs) continue;
                var fate = e is null ? Fate.Unlist : Decide(e, keep, deleteLocal);
                if (fate == Fate.Keep) continue;
                write.Batch.Delete(RoomsFamilies.History, k);
                if (fate == Fate.Delete) { write.RemoveEvent(e!); deleted++; }
                else unlisted++;
            }
            await writer.CommitAsync(write);
        }
        return new HistoryResult(deleted, unlisted);
    }

    enum Fate { Keep, Unlist, Delete }

    static long Ts(StoredEvent e) => e.Pdu["origin_server_ts"] is JsonValue v && v.TryGetValue(out long ts) ? ts : 0;

    Fate Decide(StoredEvent e, HashSet<string> keep, bool deleteLocal)
    {
        if (keep.Contains(e.EventId)) return Fate.Keep;
        if (e.StateKey is not null) return Fate.Unlist;
        if (!deleteLocal && Ids.ServerOf(e.Sender) == config.ServerName) return Fate.Keep;
        return Fate.Delete;
    }

    /// <summary>
    /// Deletes everything stored of a room except its blocked flag: first its info, current state, memberships
    /// and the entries of every family keyed by room (so the room is unknown from the first batch on), then its
    /// events, found by their meta's room_id (a scan of every event's meta: an admin's rare operation), each batch
    /// with their stream entries and transaction IDs, then the state groups they used. Short state keys and short
    /// event IDs stay: they are shared by all rooms and never reused. Returns the number of events deleted.
    /// </summary>
    public async Task<int> PurgeRoomAsync(string roomId, CancellationToken ct)
    {
        using var held = await writer.LockAsync(roomId, ct);
        var store = rooms.Store;
        var groups = new HashSet<ulong>();
        if (rooms.Info(roomId)?["state_group"]?.GetValue<ulong>() is { } current) groups.Add(current);

        // The events of the room, and the state groups they name, before anything is deleted.
        var needle = Encoding.UTF8.GetBytes("\"room_id\":" + JsonValue.Create(roomId).ToJsonString());
        var events = new List<(string EventId, JsonObject Meta)>();
        foreach (var (k, v) in store.Map(RoomsFamilies.EventMeta).Scan([]))
        {
            if (v.AsSpan().IndexOf(needle) < 0 || JsonLimits.ParseInternal(v) is not JsonObject meta || meta["room_id"]?.GetValue<string>() != roomId) continue;
            events.Add((Encoding.UTF8.GetString(k), meta));
            foreach (var name in (string[])["sg", "sg_after", "sg_room"])
                if (meta[name]?.GetValue<ulong>() is { } g and not 0) groups.Add(g);
        }
        var layers = new HashSet<ulong>();
        foreach (var g in groups)
            foreach (var id in states.LayerIds(g))
                if (!layers.Add(id)) break;

        using (var b = store.CreateBatch())
        {
            b.Delete(RoomsFamilies.Info, RoomsFamilies.InfoKey(roomId));
            b.Delete(RoomsFamilies.Directory, RoomsFamilies.DirectoryKey(roomId));
            foreach (var (userId, _) in rooms.Members(roomId)) b.Delete(RoomsFamilies.UserRooms, RoomsFamilies.UserRoomKey(userId, roomId));
            foreach (var family in RoomsFamilies.KeyedByRoom)
                foreach (var (k, _) in store.Map(family).Scan(RoomsFamilies.RoomPrefix(roomId)))
                {
                    if (family == RoomsFamilies.Timeline) b.Delete(RoomsFamilies.Stream, k[RoomsFamilies.RoomPrefix(roomId).Length..]);
                    if (family == RoomsFamilies.RoomAliases) b.Delete(RoomsFamilies.Aliases, RoomsFamilies.AliasKey(K.Split(k)[1]));
                    b.Delete(family, k);
                }
            store.Write(b);
        }
        writer.Purged(roomId);

        foreach (var chunk in events.Chunk(BatchSize))
        {
            using var b = store.CreateBatch();
            foreach (var (id, meta) in chunk)
            {
                b.Delete(RoomsFamilies.Pdus, RoomsFamilies.PduKey(id));
                b.Delete(RoomsFamilies.EventMeta, RoomsFamilies.EventMetaKey(id));
                if (meta["txn_id"]?.GetValue<string>() is { } txn && meta["sender_device"]?.GetValue<string>() is { } device
                    && rooms.Event(id)?.Sender is { } sender)
                    b.Delete(RoomsFamilies.Txns, RoomsFamilies.TxnKey(sender, device, txn));
            }
            store.Write(b);
        }
        foreach (var chunk in layers.Chunk(BatchSize))
        {
            using var b = store.CreateBatch();
            foreach (var g in chunk) b.Delete(RoomsFamilies.StateGroups, RoomsFamilies.ShortIdKey(g));
            store.Write(b);
        }
        return events.Count;
    }
}

using System.Collections.Concurrent;
using System.Text;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Crypto;
using Conduit.Common.Storage;
using Microsoft.Extensions.Logging;
using K = Conduit.Common.Storage.Keys;

namespace Conduit.Rooms;

/// <summary>
/// The one writer of the room graph, shared by local sends (<see cref="EventSender.SendAsync"/>) and remote PDUs
/// (<see cref="EventSender.AcceptRemoteAsync"/>): event JSON and meta, the timeline, the current state and the
/// memberships that follow it, redaction marks, transaction IDs and the room's info.
///
/// Concurrency: writes to one room are serialised by that room's lock (<see cref="LockAsync"/>), held from reading
/// the room's info until the write is durable, so each write builds on the one before. Different rooms proceed in
/// parallel. Their writes meet in one commit queue (group commit): one committer writes every write pending at
/// that moment in one durable batch, so concurrent requests share the disk flush.
///
/// Stream positions are assigned inside the commit, in commit order, to the events that enter a timeline, and the
/// position is published (<see cref="RoomStream"/>) right after the batch is durable: positions are contiguous,
/// readers never see a position whose data is not on disk, and a sender's 200 follows its publication, so the
/// sender's next /sync sees its event.
///
/// Lock order: room lock, then the commit queue (never the other way); nothing else is held across a write.
/// </summary>
public sealed partial class RoomWriter(RoomStore rooms, StateStore states, RoomStream stream, GlobalConfig config, ILogger<RoomWriter> log) : IDisposable
{
    readonly ConcurrentDictionary<string, RoomLock> _locks = new();
    readonly Channel<Pending> _queue = Channel.CreateUnbounded<Pending>(new UnboundedChannelOptions { SingleReader = true });
    int _started;
    long _position = rooms.StreamPosition;

    // Local users joined to each room, maintained under the room's lock, so that publishing an event does not scan a
    // big room's membership each time.
    readonly ConcurrentDictionary<string, HashSet<string>> _localJoined = new();

    public string ServerName => config.ServerName;

    internal RoomStore Rooms => rooms;

    // ---- room locks

    sealed class RoomLock
    {
        public readonly SemaphoreSlim Gate = new(1, 1);
        public int Users; // guarded by the dictionary entry's lock (below)
    }

    /// <summary>Waits for the room's write lock; dispose the result to release it. One lock per room in use.</summary>
    public async Task<IDisposable> LockAsync(string roomId, CancellationToken ct)
    {
        RoomLock l;
        while (true)
        {
            l = _locks.GetOrAdd(roomId, _ => new RoomLock());
            lock (l)
            {
                // An entry removed from the map while we fetched it is dead: fetch again.
                if (l.Users >= 0) { l.Users++; break; }
            }
        }
        try
        {
            await l.Gate.WaitAsync(ct);
        }
        catch
        {
            Leave(roomId, l);
            throw;
        }
        return new Release(this, roomId, l);
    }

    void Leave(string roomId, RoomLock l)
    {
        lock (l)
        {
            if (--l.Users > 0) return;
            l.Users = -1;
            _locks.TryRemove(new KeyValuePair<string, RoomLock>(roomId, l));
        }
    }

    sealed class Release(RoomWriter writer, string roomId, RoomLock l) : IDisposable
    {
        int _done;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _done, 1) != 0) return;
            l.Gate.Release();
            writer.Leave(roomId, l);
        }
    }

    /// <summary>Drops what is cached of a room whose storage was purged (call under the room's lock).</summary>
    public void Purged(string roomId)
    {
        _localJoined.TryRemove(roomId, out _);
        rooms.Purged(roomId);
    }

    /// <summary>The room's local joined members; call under the room's lock.</summary>
    public HashSet<string> LocalJoined(string roomId)
        => _localJoined.GetOrAdd(roomId, id => rooms.JoinedMembers(id).Where(u => AuthRules.IsLocal(u, config.ServerName)).ToHashSet());

    // ---- one write

    /// <summary>Starts a write to one room; the caller holds the room's lock until <see cref="CommitAsync"/> returns.</summary>
    public RoomWrite Begin(string roomId) => new(this, roomId, rooms.Store.CreateBatch(), states);

    /// <summary>
    /// Makes the write durable with whatever else is queued, assigns the stream positions of its timeline events,
    /// publishes them, and updates the in-memory caches. Throws if the batch could not be written (nothing of it is).
    /// </summary>
    public async Task CommitAsync(RoomWrite write)
    {
        var pending = new Pending(write);
        if (Interlocked.CompareExchange(ref _started, 1, 0) == 0) _ = Task.Factory.StartNew(CommitLoop, TaskCreationOptions.LongRunning);
        if (!_queue.Writer.TryWrite(pending)) throw new ObjectDisposedException(nameof(RoomWriter));
        await pending.Done.Task;
        write.AfterCommit();
    }

    sealed class Pending(RoomWrite write)
    {
        public readonly RoomWrite Write = write;
        public readonly TaskCompletionSource Done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    // One committer: it takes every write queued by then and makes them durable together (group commit). The flush
    // is synchronous, on this loop's own thread; requests wait on their Pending, never on each other's threads.
    void CommitLoop()
    {
        var group = new List<Pending>();
        while (_queue.Reader.WaitToReadAsync().AsTask().GetAwaiter().GetResult())
        {
            group.Clear();
            while (_queue.Reader.TryRead(out var p)) group.Add(p);
            if (group.Count == 0) continue;
            try
            {
                CommitGroup(group);
            }
            catch (Exception e)
            {
                // Whatever goes wrong, the committer lives on and no request waits forever.
                LogCommitFailed(log, group.Count, e);
                foreach (var p in group) p.Done.TrySetException(e);
            }
        }
    }

    public void Dispose() => _queue.Writer.TryComplete();

    void CommitGroup(List<Pending> group)
    {
        var position = _position;
        using var batch = rooms.Store.CreateBatch();
        var users = new HashSet<string>();
        foreach (var p in group)
        {
            position = p.Write.AssignPositions(position);
            batch.Append(p.Write.Batch);
            users.UnionWith(p.Write.Concerned);
        }
        batch.Put(RoomsFamilies.Counters, RoomsFamilies.StreamCounterKey, K.BigEndian((ulong)position));
        var started = Environment.TickCount64;
        try
        {
            rooms.Store.Write(batch);
            var ms = Environment.TickCount64 - started;
            if (ms > 500) LogSlowCommit(log, group.Count, ms);
        }
        catch (Exception e)
        {
            LogCommitFailed(log, group.Count, e);
            foreach (var p in group) p.Done.TrySetException(e);
            return;
        }
        _position = position;
        foreach (var p in group) states.Committed(p.Write.StateTx);
        stream.Publish(new StreamAdvance(position, users.Where(u => AuthRules.IsLocal(u, config.ServerName)).ToList()));
        if (group.Count > 1) LogGroup(log, group.Count, position);
        foreach (var p in group) p.Done.TrySetResult();
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "Writing {Count} room write(s) failed; nothing of them was stored")]
    static partial void LogCommitFailed(ILogger log, int count, Exception e);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Writing {Count} room write(s) to disk took {Ms} ms")]
    static partial void LogSlowCommit(ILogger log, int count, long ms);

    [LoggerMessage(Level = LogLevel.Trace, Message = "Group commit of {Count} room writes up to stream position {Position}")]
    static partial void LogGroup(ILogger log, int count, long position);

    /// <summary>
    /// The writes of one request to one room, collected in one batch. Timeline events get their stream positions at
    /// commit; everything else is in the batch already.
    /// </summary>
    public sealed partial class RoomWrite : IDisposable
    {
        readonly RoomWriter _writer;
        readonly List<(string EventId, JsonObject Meta)> _timeline = [];
        readonly List<(string UserId, string Membership, string EventId, int TimelineIndex)> _memberships = [];
        readonly Dictionary<string, string?> _localMemberships = [];

        internal RoomWrite(RoomWriter writer, string roomId, IWriteBatch batch, StateStore states)
        {
            _writer = writer;
            RoomId = roomId;
            Batch = batch;
            StateTx = states.Begin(batch);
            Concerned = [];
        }

        /// <summary>The room; "" until a v12 create event names it (<see cref="SetRoomId"/>).</summary>
        public string RoomId { get; private set; }

        public IWriteBatch Batch { get; }

        public StateStore.Tx StateTx { get; }

        /// <summary>Users whose /sync this write concerns: the room's local members before and after it.</summary>
        public HashSet<string> Concerned { get; }

        /// <summary>Timeline events added so far.</summary>
        public int TimelineCount => _timeline.Count;

        /// <summary>A v12 room's ID, known once its create event is built (rooms/v12.md "Room IDs").</summary>
        public void SetRoomId(string roomId) => RoomId = roomId;

        /// <summary>Adds the room's current local members to those this write concerns.</summary>
        public void ConcernRoomMembers() => Concerned.UnionWith(_writer.LocalJoined(RoomId));

        /// <summary>
        /// Stores an event. In the timeline (<paramref name="inTimeline"/>) it gets the next stream position at
        /// commit, recorded in <paramref name="meta"/> ("pos") before meta is written; otherwise (rejected and
        /// soft-failed remote events) meta is written as it is.
        /// </summary>
        public void AddEvent(string eventId, JsonObject pdu, JsonObject meta, bool inTimeline, byte[]? canonicalPdu = null)
        {
            Batch.Put(RoomsFamilies.Pdus, RoomsFamilies.PduKey(eventId), canonicalPdu ?? CanonicalJson.SerializeToUtf8Bytes(pdu));
            if (inTimeline)
            {
                _timeline.Add((eventId, meta));
                NoteRelation(eventId, pdu, meta);
            }
            else Batch.Put(RoomsFamilies.EventMeta, RoomsFamilies.EventMetaKey(eventId), RoomStore.Json(meta));
        }

        /// <summary>
        /// Changes one entry of the room's current state: to <paramref name="eventId"/>, or removed (null). A member
        /// entry also changes the user's membership (<paramref name="membership"/>: the event's membership, null when
        /// removed), recorded at the stream position of the timeline event this write added last.
        /// </summary>
        public void SetCurrentState(string type, string stateKey, string? eventId, string? membership = null)
        {
            if (eventId is null) Batch.Delete(RoomsFamilies.State, RoomsFamilies.StateKey(RoomId, type, stateKey));
            else Batch.Put(RoomsFamilies.State, RoomsFamilies.StateKey(RoomId, type, stateKey), K.Utf8(eventId));
            if (type != "m.room.member") return;
            Concerned.Add(stateKey);
            if (AuthRules.IsLocal(stateKey, _writer.ServerName)) _localMemberships[stateKey] = eventId is null ? null : membership;
            if (eventId is null || membership is null)
            {
                Batch.Delete(RoomsFamilies.Members, RoomsFamilies.MemberKey(RoomId, stateKey));
                return;
            }
            Batch.Put(RoomsFamilies.Members, RoomsFamilies.MemberKey(RoomId, stateKey), K.Utf8(membership));
            _memberships.Add((stateKey, membership, eventId, _timeline.Count - 1));
        }

        /// <summary>Marks a stored event as redacted by <paramref name="redactionId"/>.</summary>
        public void MarkRedacted(StoredEvent target, string redactionId)
        {
            target.Meta["redacted_by"] = redactionId;
            NoteRedacted(target);
            Batch.Put(RoomsFamilies.EventMeta, RoomsFamilies.EventMetaKey(target.EventId), RoomStore.Json(target.Meta));
        }

        /// <summary>
        /// Purges a stored event of this room (admin API): its PDU and meta, its timeline and stream entries, its
        /// client transaction ID, and its entries in the relation and thread indexes, as a child and as a parent.
        /// </summary>
        public void RemoveEvent(StoredEvent e)
        {
            Batch.Delete(RoomsFamilies.Pdus, RoomsFamilies.PduKey(e.EventId));
            Batch.Delete(RoomsFamilies.EventMeta, RoomsFamilies.EventMetaKey(e.EventId));
            Unlist(e);
            if (e.Meta["txn_id"]?.GetValue<string>() is { } txn && e.Meta["sender_device"]?.GetValue<string>() is { } device)
                Batch.Delete(RoomsFamilies.Txns, RoomsFamilies.TxnKey(e.Sender, device, txn));
            UnindexPurged(e);
        }

        /// <summary>Takes an event out of the room's timeline and stream (a purged old state event: still stored, for the
        /// state groups and auth chains that name it, but no longer in /messages).</summary>
        public void Unlist(StoredEvent e)
        {
            if (!e.InTimeline) return;
            Batch.Delete(RoomsFamilies.Timeline, RoomsFamilies.TimelineKey(RoomId, e.Pos));
            Batch.Delete(RoomsFamilies.Stream, RoomsFamilies.StreamKey(e.Pos));
        }

        /// <summary>Records a client transaction ID, so a retry returns <paramref name="eventId"/>.</summary>
        public void SetTxn(TxnRef txn, string eventId)
            => Batch.Put(RoomsFamilies.Txns, RoomsFamilies.TxnKey(txn.UserId, txn.DeviceId, txn.TxnId), K.Utf8(eventId));

        /// <summary>The room's info (version, creator, forward extremities, depth, current state group).</summary>
        public void SetInfo(JsonObject info) => Batch.Put(RoomsFamilies.Info, RoomsFamilies.InfoKey(RoomId), RoomStore.Json(info));

        // Called by the committing thread: the timeline events take the positions after `position`.
        internal long AssignPositions(long position)
        {
            var first = position + 1;
            foreach (var (eventId, meta) in _timeline)
            {
                meta["pos"] = ++position;
                Batch.Put(RoomsFamilies.Timeline, RoomsFamilies.TimelineKey(RoomId, position), K.Utf8(eventId));
                Batch.Put(RoomsFamilies.Stream, RoomsFamilies.StreamKey(position), K.Join(RoomId, eventId));
                Batch.Put(RoomsFamilies.EventMeta, RoomsFamilies.EventMetaKey(eventId), RoomStore.Json(meta));
            }
            IndexRelations();
            foreach (var (user, membership, eventId, index) in _memberships)
            {
                // A membership from a state change with no timeline event of its own (none yet) takes the first position.
                var pos = first + Math.Max(index, 0);
                Batch.Put(RoomsFamilies.UserRooms, RoomsFamilies.UserRoomKey(user, RoomId), RoomStore.Json(new JsonObject { ["membership"] = membership, ["pos"] = pos, ["event_id"] = eventId }));
                Batch.Put(RoomsFamilies.MembershipLog, RoomsFamilies.MembershipLogKey(user, pos), K.Utf8(RoomId));
            }
            return position;
        }

        // After the write is durable, still under the room's lock: the local members cache follows the memberships.
        internal void AfterCommit()
        {
            if (_localMemberships.Count == 0) return;
            var joined = _writer.LocalJoined(RoomId);
            foreach (var (user, m) in _localMemberships)
                if (m == "join") joined.Add(user); else joined.Remove(user);
        }

        public void Dispose() => Batch.Dispose();
    }
}

using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Rooms.Rules;
using K = Conduit.Common.Storage.Keys;

namespace Conduit.Rooms;

public sealed partial class RoomWriter
{
    /// <summary>
    /// The relation and thread indexes (spec: client-server-api, "Relationships between events", "Threading"),
    /// written in the batch of the events they index. A timeline event whose m.relates_to names an event of the same
    /// room (stored, or added by this write) gets a <see cref="RoomsFamilies.Relations"/> entry at its stream
    /// position; an m.thread child also moves its thread in <see cref="RoomsFamilies.Threads"/>, counts in
    /// <see cref="RoomsFamilies.ThreadInfo"/> and marks its sender (and the root's) in
    /// <see cref="RoomsFamilies.ThreadUsers"/>. Redacting a child removes its entry and takes it out of its thread.
    /// Positions are known only at commit, so the work is recorded here and done by <see cref="IndexRelations"/>.
    /// </summary>
    public sealed partial class RoomWrite
    {
        sealed record RelationOp(string ChildId, string RelType, string ParentId, string Type, string Sender, string? ParentSender, JsonObject? Meta, long Pos);

        readonly List<RelationOp> _relationOps = [];
        readonly Dictionary<string, string> _addedSenders = [];

        void NoteRelation(string eventId, JsonObject pdu, JsonObject meta)
        {
            var sender = pdu["sender"]?.GetValue<string>() ?? "";
            _addedSenders[eventId] = sender;
            if (RelatesTo.Of(pdu["content"] as JsonObject) is not var (relType, parentId)) return;
            // The parent must be an event of this room: one of this write, or a stored one (relations across rooms,
            // or to events this server does not have, are not indexed).
            string? parentSender;
            if (_addedSenders.TryGetValue(parentId, out var s)) parentSender = s;
            else if (_writer.Rooms.Event(parentId) is { } parent && parent.RoomId == RoomId && parent.InTimeline) parentSender = parent.Sender;
            else return;
            _relationOps.Add(new RelationOp(eventId, relType, parentId, pdu["type"]?.GetValue<string>() ?? "", sender, parentSender, meta, 0));
        }

        void NoteRedacted(StoredEvent target)
        {
            if (!target.InTimeline || RelatesTo.Of(target.Content) is not var (relType, parentId)) return;
            _relationOps.Add(new RelationOp(target.EventId, relType, parentId, target.Type, target.Sender, null, null, target.Pos));
        }

        // Events purged by this write: their relations as a parent are deleted whole, not counted out one by one.
        readonly HashSet<string> _purgedParents = [];

        /// <summary>
        /// A purged event leaves the indexes: as a parent, every entry of its children, its thread and the thread's
        /// users; as a child, its entry, counted out of its thread as a redaction is (unless its parent goes too).
        /// </summary>
        void UnindexPurged(StoredEvent e)
        {
            _purgedParents.Add(e.EventId);
            var store = _writer.Rooms.Store;
            foreach (var (k, _) in store.Map(RoomsFamilies.Relations).Scan(RoomsFamilies.RelationsPrefix(RoomId, e.EventId)))
                Batch.Delete(RoomsFamilies.Relations, k);
            var infoKey = RoomsFamilies.ThreadInfoKey(RoomId, e.EventId);
            if (store.Map(RoomsFamilies.ThreadInfo).Get(infoKey) is { } v)
            {
                if ((JsonLimits.ParseInternal(v) as JsonObject)?["pos"]?.GetValue<long>() is { } pos) Batch.Delete(RoomsFamilies.Threads, RoomsFamilies.ThreadKey(RoomId, pos));
                Batch.Delete(RoomsFamilies.ThreadInfo, infoKey);
            }
            foreach (var (k, _) in store.Map(RoomsFamilies.ThreadUsers).Scan(RoomsFamilies.ThreadUsersPrefix(RoomId, e.EventId)))
                Batch.Delete(RoomsFamilies.ThreadUsers, k);
            NoteRedacted(e);
        }

        sealed class ThreadState
        {
            public long StoredPos;
            public long Pos;
            public string Latest = "";
            public long Count;
        }

        readonly Dictionary<string, ThreadState> _threads = [];
        readonly HashSet<string> _unindexed = [];

        ThreadState Thread(string rootId)
        {
            if (_threads.TryGetValue(rootId, out var t)) return t;
            t = new ThreadState();
            if (_writer.Rooms.Store.Map(RoomsFamilies.ThreadInfo).Get(RoomsFamilies.ThreadInfoKey(RoomId, rootId)) is { } v
                && JsonLimits.ParseInternal(v) is JsonObject o)
            {
                t.StoredPos = t.Pos = o["pos"]?.GetValue<long>() ?? 0;
                t.Latest = o["latest"]?.GetValue<string>() ?? "";
                t.Count = o["count"]?.GetValue<long>() ?? 0;
            }
            return _threads[rootId] = t;
        }

        // Called by the committing thread once the timeline events have their positions.
        void IndexRelations()
        {
            foreach (var op in _relationOps)
            {
                if (_purgedParents.Contains(op.ParentId)) continue;
                if (op.Meta is not null) Index(op);
                else Unindex(op);
            }
            foreach (var (rootId, t) in _threads)
            {
                if (t.StoredPos == t.Pos && t.Count > 0) continue;
                if (t.StoredPos > 0) Batch.Delete(RoomsFamilies.Threads, RoomsFamilies.ThreadKey(RoomId, t.StoredPos));
                if (t.Count <= 0)
                {
                    Batch.Delete(RoomsFamilies.ThreadInfo, RoomsFamilies.ThreadInfoKey(RoomId, rootId));
                    continue;
                }
                Batch.Put(RoomsFamilies.Threads, RoomsFamilies.ThreadKey(RoomId, t.Pos), K.Utf8(rootId));
            }
            foreach (var (rootId, t) in _threads)
                if (t.Count > 0)
                    Batch.Put(RoomsFamilies.ThreadInfo, RoomsFamilies.ThreadInfoKey(RoomId, rootId),
                        RoomStore.Json(new JsonObject { ["pos"] = t.Pos, ["latest"] = t.Latest, ["count"] = t.Count }));
        }

        void Index(RelationOp op)
        {
            // Redacted by a later event of this same write: never indexed.
            if (op.Meta!["redacted_by"] is not null || op.Meta["pos"]?.GetValue<long>() is not { } pos) return;
            Batch.Put(RoomsFamilies.Relations, RoomsFamilies.RelationKey(RoomId, op.ParentId, op.RelType, pos), K.Join(op.Type, op.ChildId));
            if (op.RelType != RelatesTo.Thread) return;
            var t = Thread(op.ParentId);
            t.Count++;
            t.Pos = pos;
            t.Latest = op.ChildId;
            Batch.Put(RoomsFamilies.ThreadUsers, RoomsFamilies.ThreadUserKey(RoomId, op.ParentId, op.Sender), []);
            if (op.ParentSender is not null) Batch.Put(RoomsFamilies.ThreadUsers, RoomsFamilies.ThreadUserKey(RoomId, op.ParentId, op.ParentSender), []);
        }

        void Unindex(RelationOp op)
        {
            var key = RoomsFamilies.RelationKey(RoomId, op.ParentId, op.RelType, op.Pos);
            // Only what was indexed (a relation to another room's event never was), and only once.
            if (_unindexed.Contains(op.ChildId) || _writer.Rooms.Store.Map(RoomsFamilies.Relations).Get(key) is not { } v
                || Relations.Child(v).EventId != op.ChildId) return;
            _unindexed.Add(op.ChildId);
            Batch.Delete(RoomsFamilies.Relations, key);
            if (op.RelType != RelatesTo.Thread) return;
            var t = Thread(op.ParentId);
            if (t.Count <= 0) return;
            t.Count--;
            if (t.Count == 0 || t.Latest != op.ChildId) return;
            // The latest reply is gone: the thread's latest is the newest stored reply still indexed.
            var prefix = RoomsFamilies.RelationsPrefix(RoomId, op.ParentId, RelatesTo.Thread);
            var map = _writer.Rooms.Store.Map(RoomsFamilies.Relations);
            foreach (var (k, value) in map.ScanFrom(RoomsFamilies.RelationKey(RoomId, op.ParentId, RelatesTo.Thread, long.MaxValue), prefix, reverse: true))
            {
                var child = Relations.Child(value).EventId;
                if (_unindexed.Contains(child)) continue;
                t.Pos = (long)K.ReadBigEndian(k.AsSpan(prefix.Length));
                t.Latest = child;
                return;
            }
            t.Count = 0;
        }
    }
}

using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Storage;
using Conduit.Rooms.Rules;
using K = Conduit.Common.Storage.Keys;

namespace Conduit.Rooms;

/// <summary>One child of a relation: its stream position, rel_type, event type and event ID.</summary>
public sealed record RelationEntry(long Pos, string RelType, string Type, string EventId);

/// <summary>A thread's aggregation as stored: the position and ID of its latest reply, and the number of replies.</summary>
public sealed record ThreadSummary(long Pos, string Latest, long Count);

/// <summary>
/// Reads of the relation and thread indexes that <see cref="RoomWriter"/> keeps (writing: Writing/RelationIndex.cs):
/// the children of an event, thread summaries and participation, threads by latest activity, and the latest valid
/// edit of an event (spec: client-server-api, "Validity of replacement events").
/// </summary>
public sealed class Relations(RoomStore rooms)
{
    readonly IKvMap _relations = rooms.Store.Map(RoomsFamilies.Relations);
    readonly IKvMap _threads = rooms.Store.Map(RoomsFamilies.Threads);
    readonly IKvMap _threadInfo = rooms.Store.Map(RoomsFamilies.ThreadInfo);
    readonly IKvMap _threadUsers = rooms.Store.Map(RoomsFamilies.ThreadUsers);

    /// <summary>A <see cref="RoomsFamilies.Relations"/> value: the child's event type and ID.</summary>
    public static (string Type, string EventId) Child(byte[] value)
    {
        var i = Array.IndexOf(value, K.Sep);
        return (Encoding.UTF8.GetString(value, 0, i), Encoding.UTF8.GetString(value, i + 1, value.Length - i - 1));
    }

    /// <summary>Whether any event relates to this one: one seek, what formatting every event costs.</summary>
    public bool HasChildren(string roomId, string parentId)
    {
        foreach (var _ in _relations.Scan(RoomsFamilies.RelationsPrefix(roomId, parentId))) return true;
        return false;
    }

    /// <summary>
    /// The children with pos in (after, upTo], of one rel_type (one range scan) or of all (every entry of the
    /// parent, merged by position), newest first when <paramref name="backwards"/>.
    /// </summary>
    public IEnumerable<RelationEntry> Children(string roomId, string parentId, string? relType, long after = 0, long upTo = long.MaxValue, bool backwards = true)
    {
        if (relType is not null) return Scan(roomId, parentId, relType, after, upTo, backwards);
        var prefix = RoomsFamilies.RelationsPrefix(roomId, parentId);
        var all = new List<RelationEntry>();
        foreach (var (k, v) in _relations.Scan(prefix))
        {
            var pos = (long)K.ReadBigEndian(k.AsSpan(k.Length - 8));
            if (pos <= after || pos > upTo) continue;
            var (type, id) = Child(v);
            all.Add(new RelationEntry(pos, Encoding.UTF8.GetString(k, prefix.Length, k.Length - 9 - prefix.Length), type, id));
        }
        all.Sort((a, b) => backwards ? b.Pos.CompareTo(a.Pos) : a.Pos.CompareTo(b.Pos));
        return all;
    }

    IEnumerable<RelationEntry> Scan(string roomId, string parentId, string relType, long after, long upTo, bool backwards)
    {
        var prefix = RoomsFamilies.RelationsPrefix(roomId, parentId, relType);
        var start = RoomsFamilies.RelationKey(roomId, parentId, relType, backwards ? upTo : after + 1);
        foreach (var (k, v) in _relations.ScanFrom(start, prefix, backwards))
        {
            var pos = (long)K.ReadBigEndian(k.AsSpan(prefix.Length));
            if (pos <= after || pos > upTo) yield break;
            var (type, id) = Child(v);
            yield return new RelationEntry(pos, relType, type, id);
        }
    }

    public ThreadSummary? Thread(string roomId, string rootId)
    {
        if (_threadInfo.Get(RoomsFamilies.ThreadInfoKey(roomId, rootId)) is not { } v || JsonLimits.ParseInternal(v) is not JsonObject o) return null;
        return new ThreadSummary(o["pos"]?.GetValue<long>() ?? 0, o["latest"]?.GetValue<string>() ?? "", o["count"]?.GetValue<long>() ?? 0);
    }

    /// <summary>The user sent the thread's root or one of its replies.</summary>
    public bool Participated(string roomId, string rootId, string userId) => _threadUsers.Contains(RoomsFamilies.ThreadUserKey(roomId, rootId, userId));

    /// <summary>Thread roots by the position of their latest reply, at or below <paramref name="upTo"/>, newest first.</summary>
    public IEnumerable<(long Pos, string RootId)> Threads(string roomId, long upTo)
    {
        var prefix = RoomsFamilies.ThreadsPrefix(roomId);
        foreach (var (k, v) in _threads.ScanFrom(RoomsFamilies.ThreadKey(roomId, upTo), prefix, reverse: true))
            yield return ((long)K.ReadBigEndian(k.AsSpan(prefix.Length)), Encoding.UTF8.GetString(v));
    }

    /// <summary>
    /// The most recent valid replacement of <paramref name="original"/> (spec: client-server-api, "Server-side
    /// aggregation of m.replace relationships"): same sender, same type, neither a state event, the original not an
    /// edit itself, the replacement with an m.new_content object; most recent by origin_server_ts, then the
    /// lexicographically largest event ID. Redacted replacements are no longer indexed.
    /// </summary>
    public StoredEvent? LatestEdit(StoredEvent original)
    {
        if (original.StateKey is not null || RelatesTo.Of(original.Content) is (RelatesTo.Replace, _)) return null;
        StoredEvent? best = null;
        long bestTs = 0;
        foreach (var r in Scan(original.RoomId, original.EventId, RelatesTo.Replace, 0, long.MaxValue, backwards: true))
        {
            if (r.Type != original.Type || rooms.Event(r.EventId) is not { } edit) continue;
            if (edit.Sender != original.Sender || edit.StateKey is not null || edit.Meta["redacted_by"] is not null
                || ContentField.Object(edit.Content, "m.new_content") is null) continue;
            var ts = edit.Pdu["origin_server_ts"] is JsonValue v && v.TryGetValue(out long t) ? t : 0;
            if (best is null || ts > bestTs || (ts == bestTs && string.CompareOrdinal(edit.EventId, best.EventId) > 0)) (best, bestTs) = (edit, ts);
        }
        return best;
    }
}

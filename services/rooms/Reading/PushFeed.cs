using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common.Config;
using Conduit.Common.Events;
using Conduit.Protos.Rooms;
using Conduit.Rooms.Rules;

namespace Conduit.Rooms;

/// <summary>
/// What the sync service's push worker reads (protos/rooms.proto, PushFeed): the timeline events after a room-stream
/// position, found through <c>rooms_stream</c>, each with the context push rules need. Room context (joined count, local
/// members, notification levels, name) is the room's current one, read once per room per reply: the worker follows the
/// stream closely, so it is the state at the event but for membership changes within one reply (as Conduit, which
/// evaluates against the state when the event is appended).
/// </summary>
public sealed class PushFeed(RoomStore rooms, RoomStream stream, GlobalConfig config)
{
    /// <summary>The most events one reply carries.</summary>
    public const int MaxLimit = 500;

    /// <summary>Hops followed from an event's m.relates_to to find its thread (spec: "Receiving notifications":
    /// "a maximum of 3 hops").</summary>
    const int ThreadHops = 3;

    public PushFeedReply Read(long after, int limit)
    {
        var (events, position) = Window(after, limit);
        var reply = new PushFeedReply { Position = position };
        var roomsSeen = new Dictionary<string, PushFeedRoom>(StringComparer.Ordinal);
        foreach (var (pos, roomId, e) in events)
        {
            if (!roomsSeen.ContainsKey(roomId)) roomsSeen[roomId] = Room(roomId);
            reply.Events.Add(Event(e, roomId, pos));
        }
        reply.Rooms.AddRange(roomsSeen.Values);
        return reply;
    }

    /// <summary>
    /// The timeline events after <paramref name="after"/> (at most <paramref name="limit"/>, clamped), and the position
    /// a reply carrying them covers up to: the last one's when some were left out, else the published position. None
    /// for a negative <paramref name="after"/> (a first start asks only for the position).
    /// </summary>
    (List<(long Pos, string RoomId, StoredEvent Event)> Events, long Position) Window(long after, int limit)
    {
        var upTo = stream.Position;
        var events = new List<(long, string, StoredEvent)>();
        if (after < 0 || after >= upTo) return (events, upTo);
        limit = Math.Clamp(limit, 1, MaxLimit);
        foreach (var item in rooms.StreamAfter(after, upTo))
        {
            if (events.Count >= limit) return (events, events[^1].Item1);
            events.Add(item);
        }
        return (events, upTo);
    }

    /// <summary>
    /// The appservice sender's feed (protos/rooms.proto, AppserviceFeed): the same events after <paramref name="after"/>,
    /// in the client format, and per room what namespaces match: local joined users and aliases (Synapse matches the
    /// room's local directory aliases; canonical and alt aliases are added, as a bridge may set only those).
    /// </summary>
    public AppserviceFeedReply ReadForAppservices(long after, int limit, ClientEvents format)
    {
        var (events, position) = Window(after, limit);
        var reply = new AppserviceFeedReply { Position = position };
        var roomsSeen = new Dictionary<string, AppserviceFeedRoom>(StringComparer.Ordinal);
        foreach (var (pos, roomId, e) in events)
        {
            if (!roomsSeen.ContainsKey(roomId)) roomsSeen[roomId] = AppserviceRoom(roomId);
            var item = new AppserviceFeedEvent
            {
                Position = pos, RoomId = roomId, Json = format.Format(e).ToJsonString(), Sender = e.Sender, Type = e.Type,
            };
            if (e.StateKey is { } sk) { item.StateKey = sk; item.HasStateKey = true; }
            if (e.Type == "m.room.member" && e.Content?["membership"] is JsonValue m && m.TryGetValue(out string? membership)) item.Membership = membership;
            reply.Events.Add(item);
        }
        reply.Rooms.AddRange(roomsSeen.Values);
        return reply;
    }

    AppserviceFeedRoom AppserviceRoom(string roomId)
    {
        var room = new AppserviceFeedRoom { RoomId = roomId };
        foreach (var (user, membership) in rooms.Members(roomId))
            if (membership == "join" && AuthRules.IsLocal(user, config.ServerName)) room.LocalJoinedUserIds.Add(user);
        var aliases = new SortedSet<string>(rooms.AliasesOf(roomId), StringComparer.Ordinal);
        if (rooms.StateContent(roomId, "m.room.canonical_alias") is { } ca)
        {
            if (ca["alias"] is JsonValue a && a.TryGetValue(out string? alias)) aliases.Add(alias);
            if (ca["alt_aliases"] is JsonArray alts)
                foreach (var alt in alts)
                    if (alt is JsonValue v && v.TryGetValue(out string? s)) aliases.Add(s);
        }
        room.Aliases.AddRange(aliases);
        return room;
    }

    PushFeedEvent Event(StoredEvent e, string roomId, long pos)
    {
        var pdu = e.Pdu;
        var json = new JsonObject
        {
            ["type"] = pdu["type"]?.DeepClone(),
            ["content"] = pdu["content"]?.DeepClone() ?? new JsonObject(),
            ["sender"] = pdu["sender"]?.DeepClone(),
            ["event_id"] = e.EventId,
            ["room_id"] = roomId,
            ["origin_server_ts"] = pdu["origin_server_ts"]?.DeepClone(),
        };
        if (pdu["state_key"] is { } sk) json["state_key"] = sk.DeepClone();
        var sender = e.Sender;
        var item = new PushFeedEvent
        {
            Position = pos, RoomId = roomId, EventId = e.EventId, Json = json.ToJsonString(), ThreadId = ThreadOf(pdu),
            SenderPowerLevel = rooms.PowerLevelsOf(roomId).UserLevel(sender),
            SenderDisplayName = rooms.StateContent(roomId, "m.room.member", sender)?["displayname"] is JsonValue dn && dn.TryGetValue(out string? name) ? name : "",
        };
        if (e.Type == "m.room.member" && e.StateKey is { } target && AuthRules.IsLocal(target, config.ServerName)
            && e.Content?["membership"] is JsonValue m && m.TryGetValue(out string? membership) && membership == "invite")
            item.ExtraUserIds.Add(target);
        return item;
    }

    /// <summary>"main", or the root of the event's thread: an m.thread relation, on the event or on what it relates to.</summary>
    string ThreadOf(JsonObject pdu)
    {
        var current = pdu;
        for (var hop = 0; hop < ThreadHops; hop++)
        {
            if (current["content"] is not JsonObject c || c["m.relates_to"] is not JsonObject rel) break;
            if (rel["event_id"] is not JsonValue idv || !idv.TryGetValue(out string? target)) break;
            if (rel["rel_type"] is JsonValue tv && tv.TryGetValue(out string? relType) && relType == "m.thread") return target;
            if (rooms.Event(target) is not { } parent) break;
            current = parent.Pdu;
        }
        return "main";
    }

    PushFeedRoom Room(string roomId)
    {
        var room = new PushFeedRoom { RoomId = roomId };
        foreach (var (user, membership) in rooms.Members(roomId))
        {
            if (membership != "join") continue;
            room.JoinedMemberCount++;
            if (AuthRules.IsLocal(user, config.ServerName)) room.LocalJoinedUserIds.Add(user);
        }
        var version = rooms.VersionOf(roomId) ?? RoomVersion.V11;
        if (rooms.PowerLevelsOf(roomId).Content?["notifications"] is JsonObject levels)
            foreach (var key in levels.Select(p => p.Key).ToList())
                if (PowerLevels.ReadLevel(levels, key, version) is long level) room.NotificationLevels[key] = level;
        room.NotificationLevels.TryAdd("room", 50);
        if (rooms.StateContent(roomId, "m.room.name")?["name"] is JsonValue n && n.TryGetValue(out string? name)) room.Name = name;
        if (rooms.StateContent(roomId, "m.room.canonical_alias")?["alias"] is JsonValue a && a.TryGetValue(out string? alias)) room.CanonicalAlias = alias;
        return room;
    }

    /// <summary>Display names of users in a room, from their current member events (absent when none is set).</summary>
    public Dictionary<string, string> DisplayNames(string roomId, IEnumerable<string> userIds)
    {
        var names = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var u in userIds)
            if (rooms.StateContent(roomId, "m.room.member", u)?["displayname"] is JsonValue v && v.TryGetValue(out string? name))
                names[u] = name;
        return names;
    }
}

using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Crypto;
using Conduit.Common.Storage;
using Conduit.Protos.Rooms;
using Conduit.Rooms.Rules;
using K = Conduit.Common.Storage.Keys;

namespace Conduit.Rooms;

/// <summary>
/// What the federation service's sender reads (protos/rooms.proto, FederationFeed): the events this server created,
/// in room-stream order, as PDUs, each with the servers it goes to: those with a joined member in the room (read when
/// the reply is built; the sender follows the stream closely), and for a membership event the target's server, so
/// that a remote user who leaves, is kicked or banned hears of it.
/// </summary>
public sealed class FederationFeed(RoomStore rooms, RoomStream stream, GlobalConfig config)
{
    public const int MaxLimit = 500;

    readonly IKvMap _stream = rooms.Store.Map(RoomsFamilies.Stream);

    public FederationFeedReply Read(long after, int limit)
    {
        var upTo = stream.Position;
        var reply = new FederationFeedReply { Position = upTo };
        if (after < 0 || after >= upTo) return reply;
        limit = Math.Clamp(limit, 1, MaxLimit);
        var servers = new Dictionary<string, HashSet<string>>(StringComparer.Ordinal);
        var scanned = 0;
        foreach (var (k, v) in _stream.ScanFrom(RoomsFamilies.StreamKey(after + 1), [], reverse: false))
        {
            var pos = (long)K.ReadBigEndian(k);
            if (pos > upTo) break;
            if (reply.Events.Count >= limit || ++scanned > MaxLimit * 4)
            {
                reply.Position = pos - 1;
                break;
            }
            var parts = K.Split(v);
            if (parts.Length != 2 || rooms.Event(parts[1]) is not { } e || Ids.ServerOf(e.Sender) != config.ServerName) continue;
            var roomId = parts[0];
            if (!servers.TryGetValue(roomId, out var inRoom))
                servers[roomId] = inRoom = rooms.JoinedMembers(roomId).Select(Ids.ServerOf).ToHashSet(StringComparer.Ordinal);
            var destinations = new HashSet<string>(inRoom, StringComparer.Ordinal);
            if (e.Type == "m.room.member" && e.StateKey is { } target && Ids.IsUserId(target)) destinations.Add(Ids.ServerOf(target));
            destinations.Remove(config.ServerName);
            if (destinations.Count == 0) continue;
            var item = new FederationFeedEvent { Position = pos, RoomId = roomId, Pdu = CanonicalJson.Serialize(e.Pdu) };
            item.Destinations.AddRange(destinations.Order(StringComparer.Ordinal));
            reply.Events.Add(item);
        }
        return reply;
    }
}

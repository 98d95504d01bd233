using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Crypto;
using Conduit.Protos.Rooms;

namespace Conduit.Rooms;

/// <summary>
/// What the federation service's sender reads (protos/rooms.proto, FederationFeed): the events this server created,
/// in room-stream order, as PDUs, each with the servers it goes to: those with a joined member in the room (read when
/// the reply is built; the sender follows the stream closely), and for a membership event the target's server, so
/// that a remote user who leaves, is kicked or banned hears of it. Events of a room an admin took off federation
/// (rooms_federation_disabled) are left out.
/// </summary>
public sealed class FederationFeed(RoomStore rooms, RoomStream stream, GlobalConfig config)
{
    public const int MaxLimit = 500;

    public FederationFeedReply Read(long after, int limit)
    {
        var upTo = stream.Position;
        var reply = new FederationFeedReply { Position = upTo };
        if (after < 0 || after >= upTo) return reply;
        limit = Math.Clamp(limit, 1, MaxLimit);
        var servers = new Dictionary<string, HashSet<string>>(StringComparer.Ordinal);
        var federates = new Dictionary<string, bool>(StringComparer.Ordinal);
        var scanned = 0;
        foreach (var (pos, roomId, e) in rooms.StreamAfter(after, upTo))
        {
            if (reply.Events.Count >= limit || ++scanned > MaxLimit * 4)
            {
                reply.Position = pos - 1;
                break;
            }
            if (Ids.ServerOf(e.Sender) != config.ServerName) continue;
            // A room an admin took off federation (Conduit's disable-room): its events are never sent, even once it is back on.
            if (!federates.TryGetValue(roomId, out var on)) federates[roomId] = on = rooms.FederationDisabled(roomId) is null;
            if (!on) continue;
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

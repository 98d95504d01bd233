using Conduit.Common.Events;
using Conduit.Protos.Rooms;

namespace Conduit.Sync;

/// <summary>
/// The room part of a client filter as the SyncRooms call carries it (protos/rooms.proto, SyncRoomFilter): sync
/// parses the filter once and the rooms service gets it typed, never as JSON to parse again.
/// </summary>
public static class SyncRoomsFilter
{
    public static SyncRoomFilter From(Filter filter)
    {
        var room = filter.Room;
        return new SyncRoomFilter
        {
            Rooms = ListOf(room.Rooms),
            NotRooms = ListOf(room.NotRooms),
            IncludeLeave = room.IncludeLeave,
            Timeline = EventFilterOf(room.Timeline),
            State = EventFilterOf(room.State),
        };
    }

    static SyncEventFilter EventFilterOf(RoomEventFilter f)
    {
        var m = new SyncEventFilter
        {
            Types_ = ListOf(f.Types),
            NotTypes = ListOf(f.NotTypes),
            Senders = ListOf(f.Senders),
            NotSenders = ListOf(f.NotSenders),
            Rooms = ListOf(f.Rooms),
            NotRooms = ListOf(f.NotRooms),
            LazyLoadMembers = f.LazyLoadMembers,
            IncludeRedundantMembers = f.IncludeRedundantMembers,
            UnreadThreadNotifications = f.UnreadThreadNotifications,
        };
        if (f.Limit is int limit) m.Limit = limit;
        if (f.ContainsUrl is bool url) m.ContainsUrl = url;
        return m;
    }

    // Unset means "no restriction"; an empty list, present, matches nothing.
    static StringList? ListOf(IReadOnlyList<string>? values) => values is null ? null : new StringList { Values = { values } };
}

using Conduit.Common.Storage;

namespace Conduit.Rooms;

/// <summary>
/// The rooms service's column families. Keys are UTF-8 parts joined by 0xFF (which never occurs in UTF-8);
/// "pos" is the room stream position, an 8-byte big-endian integer so keys sort by it.
/// </summary>
public static class RoomsFamilies
{
    public const string Pdus = "rooms_pdus";
    public const string EventMeta = "rooms_event_meta";
    public const string Timeline = "rooms_timeline";
    public const string State = "rooms_state";
    public const string Info = "rooms_info";
    public const string UserRooms = "rooms_user_rooms";
    public const string MembershipLog = "rooms_membership_log";
    public const string Members = "rooms_members";
    public const string Aliases = "rooms_aliases";
    public const string RoomAliases = "rooms_room_aliases";
    public const string Txns = "rooms_txns";
    public const string Counters = "rooms_counters";
    public const string Directory = "rooms_directory";
    public const string StateKeyShort = "rooms_statekey_short";
    public const string ShortStateKey = "rooms_short_statekey";
    public const string EventIdShort = "rooms_eventid_short";
    public const string ShortEventId = "rooms_short_eventid";
    public const string StateGroups = "rooms_state_groups";

    public static readonly ColumnFamily[] All =
    [
        new(Pdus, "event_id", "the signed PDU as JSON, exactly as federation will serve it"),
        new(EventMeta, "event_id", "JSON {pos, room_id, sg (state group before the event), sg_after? (state events), sender_device?, txn_id?, prev_content_event?, redacted_by?}"),
        new(Timeline, "room_id 0xFF pos", "event_id"),
        new(State, "room_id 0xFF event_type 0xFF state_key", "event_id of the current state event"),
        new(Info, "room_id", "JSON {room_version, creator, created_ts, forward_extremities[], depth, state_group (current state)}"),
        new(UserRooms, "user_id 0xFF room_id", "JSON {membership, pos, event_id}: the user's latest membership"),
        new(MembershipLog, "user_id 0xFF pos", "room_id: membership changes in stream order, for /sync"),
        new(Members, "room_id 0xFF user_id", "membership (join, invite, leave, ban, knock)"),
        new(Aliases, "room_alias", "JSON {room_id, creator}"),
        new(RoomAliases, "room_id 0xFF room_alias", "empty"),
        new(Txns, "user_id 0xFF device_id 0xFF txn_id", "event_id: client transaction idempotency"),
        new(Directory, "room_id", "empty: the room is published in the public room directory"),
        new(StateKeyShort, "event_type 0xFF state_key", "8-byte short state key"),
        new(ShortStateKey, "8-byte short state key", "event_type 0xFF state_key"),
        new(EventIdShort, "event_id", "8-byte short event id (state events only)"),
        new(ShortEventId, "8-byte short event id", "event_id"),
        new(StateGroups, "8-byte state group id", "8-byte parent group (0: none), 4-byte count of added entries, then added and removed entries of 16 bytes (short state key, short event id)"),
        new(Counters, "\"stream\" | \"shortstatekey\" | \"shorteventid\" | \"stategroup\"", "8-byte big-endian counter"),
    ];
}

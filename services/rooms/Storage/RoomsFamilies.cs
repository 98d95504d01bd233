using Conduit.Common.Storage;
using K = Conduit.Common.Storage.Keys;

namespace Conduit.Rooms;

/// <summary>
/// The rooms service's key-value families, each declared with its key and value layout and, beside it, the builder of
/// its keys: nothing else in the service assembles these keys. Keys are UTF-8 parts joined by 0xFF (which never
/// occurs in UTF-8); "pos" is the room stream position, an 8-byte big-endian integer so keys sort by it.
/// services/rooms/README.md shows the same table; a test checks it against <see cref="All"/>.
/// </summary>
public static class RoomsFamilies
{
    public const string Pdus = "rooms_pdus";
    static readonly ColumnFamily PdusFamily = new(Pdus, "event_id", "the signed PDU (canonical JSON), as federation will serve it", Dedicated: true);
    public static byte[] PduKey(string eventId) => K.Utf8(eventId);

    public const string EventMeta = "rooms_event_meta";
    static readonly ColumnFamily EventMetaFamily = new(EventMeta, "event_id",
        "JSON {pos (absent for rejected and soft-failed remote events), room_id, sg (state group before), sg_after? (state events), sg_room? (room state after a remote event when extremities were merged), sender_device?, txn_id?, prev_content_event?, redacted_by?, rejected? (reason), soft_failed?, soft_fail_reason?}", Dedicated: true);
    public static byte[] EventMetaKey(string eventId) => K.Utf8(eventId);

    public const string Timeline = "rooms_timeline";
    static readonly ColumnFamily TimelineFamily = new(Timeline, "room_id 0xFF pos", "event_id", Dedicated: true);
    public static byte[] TimelineKey(string roomId, long pos) => K.Concat(K.Prefix(roomId), K.BigEndian((ulong)pos));
    public static byte[] TimelinePrefix(string roomId) => K.Prefix(roomId);

    public const string State = "rooms_state";
    static readonly ColumnFamily StateFamily = new(State, "room_id 0xFF type 0xFF state_key", "event_id of the current state event", Dedicated: true);
    public static byte[] StateKey(string roomId, string type, string stateKey) => K.Join(roomId, type, stateKey);
    public static byte[] StatePrefix(string roomId) => K.Prefix(roomId);

    public const string Info = "rooms_info";
    static readonly ColumnFamily InfoFamily = new(Info, "room_id", "JSON {room_version, creator, created_ts, forward_extremities, depth, state_group (the current state)}");
    public static byte[] InfoKey(string roomId) => K.Utf8(roomId);

    public const string UserRooms = "rooms_user_rooms";
    static readonly ColumnFamily UserRoomsFamily = new(UserRooms, "user_id 0xFF room_id", "JSON {membership, pos, event_id}: the user's latest membership", Dedicated: true);
    public static byte[] UserRoomKey(string userId, string roomId) => K.Join(userId, roomId);
    public static byte[] UserRoomsPrefix(string userId) => K.Prefix(userId);

    public const string MembershipLog = "rooms_membership_log";
    static readonly ColumnFamily MembershipLogFamily = new(MembershipLog, "user_id 0xFF pos", "room_id: membership changes in stream order, for /sync");
    public static byte[] MembershipLogKey(string userId, long pos) => K.Concat(K.Prefix(userId), K.BigEndian((ulong)pos));
    public static byte[] MembershipLogPrefix(string userId) => K.Prefix(userId);

    public const string Members = "rooms_members";
    static readonly ColumnFamily MembersFamily = new(Members, "room_id 0xFF user_id", "membership (join, invite, leave, ban, knock)");
    public static byte[] MemberKey(string roomId, string userId) => K.Join(roomId, userId);
    public static byte[] MembersPrefix(string roomId) => K.Prefix(roomId);

    public const string Aliases = "rooms_aliases";
    static readonly ColumnFamily AliasesFamily = new(Aliases, "room_alias", "JSON {room_id, creator}");
    public static byte[] AliasKey(string alias) => K.Utf8(alias);

    public const string RoomAliases = "rooms_room_aliases";
    static readonly ColumnFamily RoomAliasesFamily = new(RoomAliases, "room_id 0xFF room_alias", "empty");
    public static byte[] RoomAliasKey(string roomId, string alias) => K.Join(roomId, alias);
    public static byte[] RoomAliasesPrefix(string roomId) => K.Prefix(roomId);

    public const string Txns = "rooms_txns";
    static readonly ColumnFamily TxnsFamily = new(Txns, "user_id 0xFF device_id 0xFF txn_id", "event_id: client transaction idempotency", Dedicated: true);
    public static byte[] TxnKey(string userId, string deviceId, string txnId) => K.Join(userId, deviceId, txnId);

    public const string Directory = "rooms_directory";
    static readonly ColumnFamily DirectoryFamily = new(Directory, "room_id", "empty: the room is published in the public room directory");
    public static byte[] DirectoryKey(string roomId) => K.Utf8(roomId);

    public const string AppserviceDirectory = "rooms_directory_appservice";
    static readonly ColumnFamily AppserviceDirectoryFamily = new(AppserviceDirectory, "room_id 0xFF appservice_id 0xFF network_id",
        "empty: an application service published the room in its network's room list (PUT /directory/list/appservice)");
    public static byte[] AppserviceDirectoryKey(string roomId, string appserviceId, string networkId) => K.Join(roomId, appserviceId, networkId);

    public const string StateKeyShort = "rooms_statekey_short";
    static readonly ColumnFamily StateKeyShortFamily = new(StateKeyShort, "event_type 0xFF state_key", "8-byte short state key");
    public static byte[] StateKeyShortKey(string type, string stateKey) => K.Join(type, stateKey);

    public const string ShortStateKey = "rooms_short_statekey";
    static readonly ColumnFamily ShortStateKeyFamily = new(ShortStateKey, "8-byte short state key", "event_type 0xFF state_key");

    public const string EventIdShort = "rooms_eventid_short";
    static readonly ColumnFamily EventIdShortFamily = new(EventIdShort, "event_id", "8-byte short event id (state events only)");

    public const string ShortEventId = "rooms_short_eventid";
    static readonly ColumnFamily ShortEventIdFamily = new(ShortEventId, "8-byte short event id", "event_id");

    public const string StateGroups = "rooms_state_groups";
    static readonly ColumnFamily StateGroupsFamily = new(StateGroups, "8-byte state group id",
        "8-byte parent group (0: none), 4-byte count of added entries, then added and removed entries of 16 bytes (short state key, short event id)");

    /// <summary>Short IDs and state group IDs are 8-byte big-endian keys, so the last key of a family is its largest ID.</summary>
    public static byte[] ShortIdKey(ulong id) => K.BigEndian(id);

    public const string Relations = "rooms_relations";
    static readonly ColumnFamily RelationsFamily = new(Relations, "room_id 0xFF parent_event_id 0xFF rel_type 0xFF pos",
        "event_type 0xFF child_event_id: events whose m.relates_to names a parent of the same room; removed when the child is redacted", Dedicated: true);
    public static byte[] RelationKey(string roomId, string parentId, string relType, long pos) => K.Concat(K.Prefix(roomId, parentId, relType), K.BigEndian((ulong)pos));
    public static byte[] RelationsPrefix(string roomId, string parentId) => K.Prefix(roomId, parentId);
    public static byte[] RelationsPrefix(string roomId, string parentId, string relType) => K.Prefix(roomId, parentId, relType);

    public const string Threads = "rooms_threads";
    static readonly ColumnFamily ThreadsFamily = new(Threads, "room_id 0xFF pos", "thread root event_id: threads by the position of their latest event (one entry per thread)");
    public static byte[] ThreadKey(string roomId, long pos) => K.Concat(K.Prefix(roomId), K.BigEndian((ulong)pos));
    public static byte[] ThreadsPrefix(string roomId) => K.Prefix(roomId);

    public const string ThreadInfo = "rooms_thread_info";
    static readonly ColumnFamily ThreadInfoFamily = new(ThreadInfo, "room_id 0xFF root_event_id", "JSON {pos, latest (event_id), count}: the thread's m.thread aggregation");
    public static byte[] ThreadInfoKey(string roomId, string rootId) => K.Join(roomId, rootId);

    public const string ThreadUsers = "rooms_thread_users";
    static readonly ColumnFamily ThreadUsersFamily = new(ThreadUsers, "room_id 0xFF root_event_id 0xFF user_id", "empty: the user sent the root or a reply in the thread");
    public static byte[] ThreadUserKey(string roomId, string rootId, string userId) => K.Join(roomId, rootId, userId);
    public static byte[] ThreadUsersPrefix(string roomId, string rootId) => K.Prefix(roomId, rootId);

    public const string Counters = "rooms_counters";
    static readonly ColumnFamily CountersFamily = new(Counters, "\"stream\"", "8-byte big-endian room stream position, written by the group commit");
    public static readonly byte[] StreamCounterKey = K.Utf8("stream");

    public const string Stream = "rooms_stream";
    static readonly ColumnFamily StreamFamily = new(Stream, "pos", "room_id 0xFF event_id: the timeline event at each room stream position, for the push worker (written from this version on)", Dedicated: true);
    public static byte[] StreamKey(long pos) => K.BigEndian((ulong)pos);

    public const string Reports = "rooms_reports";
    static readonly ColumnFamily ReportsFamily = new(Reports, "received_ts (8-byte big-endian) 0xFF report_id",
        "JSON {reporter, room_id?, event_id?, user_id?, reason, score?}: a report of a room, an event or a user, kept for the server's admins");
    public static byte[] ReportKey(long ts, string reportId) => K.Concat(K.BigEndian((ulong)ts), [K.Sep], K.Utf8(reportId));

    public const string Blocked = "rooms_blocked";
    static readonly ColumnFamily BlockedFamily = new(Blocked, "room_id",
        "JSON {user_id, ts}: a room an admin blocked (Synapse admin API block, or a deletion with block): no local user may join, knock or be invited into it");
    public static byte[] BlockedKey(string roomId) => K.Utf8(roomId);

    public const string FederationDisabled = "rooms_federation_disabled";
    static readonly ColumnFamily FederationDisabledFamily = new(FederationDisabled, "room_id",
        "JSON {user_id, ts}: a room an admin took off federation (Conduit admin API): its events are not sent to other servers, their PDUs, EDUs and requests about it are refused");
    public static byte[] FederationDisabledKey(string roomId) => K.Utf8(roomId);

    public const string History = "rooms_history";
    static readonly ColumnFamily HistoryFamily = new(History, "room_id 0xFF (2^63-1 - depth) (8-byte big-endian) 0xFF event_id",
        "empty: an event from before this server joined, fetched with /backfill and kept as an outlier; newest (highest depth) first");
    public static byte[] HistoryPrefix(string roomId) => K.Prefix(roomId);
    public static byte[] HistoryKey(string roomId, long depth, string eventId)
        => K.Concat(K.Prefix(roomId), K.BigEndian((ulong)(long.MaxValue - depth)), [K.Sep], K.Utf8(eventId));
    /// <summary>The event ID of a <see cref="History"/> key (the depth's 8 bytes may hold 0xFF, so it is skipped by length).</summary>
    public static string HistoryEventId(byte[] key, byte[] prefix) => K.Split(key.AsSpan(prefix.Length + 9))[0];

    /// <summary>
    /// The keys of one room in every family whose key starts with room_id (timeline, state, members, room aliases,
    /// relations, threads, thread info and users, history, appservice room lists): what deleting a room with purge scans and removes.
    /// </summary>
    public static byte[] RoomPrefix(string roomId) => K.Prefix(roomId);

    /// <summary>The families keyed by <see cref="RoomPrefix"/>.</summary>
    public static readonly string[] KeyedByRoom = [Timeline, State, Members, RoomAliases, Relations, Threads, ThreadInfo, ThreadUsers, History, AppserviceDirectory];

    public static readonly ColumnFamily[] All =
    [
        ReportsFamily,
        PdusFamily, EventMetaFamily, TimelineFamily, StateFamily, InfoFamily, UserRoomsFamily, MembershipLogFamily, MembersFamily,
        AliasesFamily, RoomAliasesFamily, TxnsFamily, DirectoryFamily, AppserviceDirectoryFamily, StateKeyShortFamily, ShortStateKeyFamily, EventIdShortFamily,
        ShortEventIdFamily, StateGroupsFamily, RelationsFamily, ThreadsFamily, ThreadInfoFamily, ThreadUsersFamily, CountersFamily,
        StreamFamily, HistoryFamily, BlockedFamily, FederationDisabledFamily,
    ];
}

using Conduit.Common.Storage;

namespace Conduit.Sync;

/// <summary>The sync service's key-value families.</summary>
public static class SyncFamilies
{
    public const string AccountData = "sync_account_data";
    public const string Filters = "sync_filters";
    public const string Counters = "sync_counters";
    public const string Receipts = "sync_receipts";
    public const string ReceiptsLog = "sync_receipts_log";
    public const string Presence = "sync_presence";
    public const string PushUnread = "sync_push_unread";
    public const string PushRead = "sync_push_read";
    public const string Notifications = "sync_notifications";
    public const string Pushers = "sync_pushers";
    public const string PushQueue = "sync_push_queue";
    public const string AppserviceQueue = "sync_as_queue";
    public const string AppserviceTxns = "sync_as_txns";
    public const string AppserviceDevices = "sync_as_devices";

    public static readonly ColumnFamily[] All =
    [
        new(AccountData, "user_id 0xFF room_id (empty for global) 0xFF type", "JSON {pos, content}: pos is the account-data stream position of the last change"),
        new(Filters, "user_id 0xFF filter_id", "the filter JSON as the client uploaded it"),
        new(Counters, "\"account_data\" | \"filter\" | \"receipts\" | \"presence\" | \"push\" | \"push_queue\" | \"as_feed\" | \"as_feed_idle\" | \"as_queue\"", "8-byte big-endian counter (\"push\": the room-stream position the push worker has evaluated up to; \"push_queue\": the last queued push's sequence number; \"as_feed\": the room-stream position the appservice feed has queued up to (ignored while \"as_feed_idle\" is present: the feed last ran with no appservice to send to); \"as_queue\": the last queued appservice item's sequence number)"),
        new(Receipts, "room_id 0xFF user_id 0xFF receipt_type 0xFF thread_id (empty: unthreaded)", "JSON {pos, event_id, event_pos, ts}: the latest receipt; pos is the receipts stream position of the last change, event_pos the event's room stream position"),
        new(ReceiptsLog, "8-byte big-endian receipts stream position", "the sync_receipts key it changed (the entry of a receipt's previous position is deleted)"),
        new(Presence, "user_id", "JSON {pos, presence, status_msg?, last_active_ts}: the user's last presence; pos is the presence stream position of the last visible change (last_active_ts is written at most once a minute otherwise)"),
        new(PushUnread, "user_id 0xFF room_id 0xFF pos (8-byte big-endian room stream position)", "\"1\" (highlight) or \"0\", then the thread (\"main\" or the root's event ID): a notifying event; those covered by an unthreaded receipt are deleted", Dedicated: true),
        new(PushRead, "user_id 0xFF room_id 0xFF thread", "8-byte big-endian room stream position of the user's own latest event in that thread (sending reads up to there)", Dedicated: true),
        new(Notifications, "user_id 0xFF pos (8-byte big-endian room stream position)", "JSON {room_id, event_id, thread, actions, highlight, ts}: GET /notifications, kept 30 days", Dedicated: true),
        new(Pushers, "user_id 0xFF app_id 0xFF pushkey", "JSON: the pusher as GET /pushers shows it, plus pushkey_ts"),
        new(PushQueue, "user_id 0xFF app_id 0xFF pushkey 0xFF seq (8-byte big-endian)", "JSON: a push to deliver to that pusher ({kind: event|badge, room_id, event_id, pos, thread, ...}), deleted once delivered or given up"),
        new(AppserviceQueue, "appservice_id 0xFF seq (8-byte big-endian)", "JSON {k: event|ephemeral|to_device|device_lists|otk, v}: one item for the appservice's transactions, in order; deleted once a transaction carrying it is acknowledged"),
        new(AppserviceTxns, "appservice_id", "JSON {next, txn?, last?}: the next transaction ID, and the transaction being sent (its ID and the last queue seq it carries), kept until acknowledged so that a retry sends the same transaction"),
        new(AppserviceDevices, "user_id 0xFF device_id", "8-byte big-endian keys-stream position: the device's to-device messages up to here are queued for its appservice (the next read acknowledges them)"),
    ];
}

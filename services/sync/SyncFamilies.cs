using Conduit.Common.Storage;

namespace Conduit.Sync;

/// <summary>The sync service's column families.</summary>
public static class SyncFamilies
{
    public const string AccountData = "sync_account_data";
    public const string Filters = "sync_filters";
    public const string Counters = "sync_counters";
    public const string Receipts = "sync_receipts";
    public const string ReceiptsLog = "sync_receipts_log";
    public const string Presence = "sync_presence";

    public static readonly ColumnFamily[] All =
    [
        new(AccountData, "user_id 0xFF room_id (empty for global) 0xFF type", "JSON {pos, content}: pos is the account-data stream position of the last change"),
        new(Filters, "user_id 0xFF filter_id", "the filter JSON as the client uploaded it"),
        new(Counters, "\"account_data\" | \"filter\" | \"receipts\" | \"presence\"", "8-byte big-endian counter"),
        new(Receipts, "room_id 0xFF user_id 0xFF receipt_type 0xFF thread_id (empty: unthreaded)", "JSON {pos, event_id, event_pos, ts}: the latest receipt; pos is the receipts stream position of the last change, event_pos the event's room stream position"),
        new(ReceiptsLog, "8-byte big-endian receipts stream position", "the sync_receipts key it changed (the entry of a receipt's previous position is deleted)"),
        new(Presence, "user_id", "JSON {pos, presence, status_msg?, last_active_ts}: the user's last presence; pos is the presence stream position of the last visible change (last_active_ts is written at most once a minute otherwise)"),
    ];
}

using Conduit.Common.Storage;

namespace Conduit.Sync;

/// <summary>The sync service's column families.</summary>
public static class SyncFamilies
{
    public const string AccountData = "sync_account_data";
    public const string Filters = "sync_filters";
    public const string Counters = "sync_counters";

    public static readonly ColumnFamily[] All =
    [
        new(AccountData, "user_id 0xFF room_id (empty for global) 0xFF type", "JSON {pos, content}: pos is the account-data stream position of the last change"),
        new(Filters, "user_id 0xFF filter_id", "the filter JSON as the client uploaded it"),
        new(Counters, "\"account_data\" | \"filter\"", "8-byte big-endian counter"),
    ];
}

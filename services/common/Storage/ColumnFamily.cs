namespace Conduit.Common.Storage;

/// <summary>
/// Declares one key-value family (a RocksDB column family, an SQLite table). <paramref name="KeyLayout"/> and
/// <paramref name="ValueLayout"/> are documentation only, e.g. <c>"room_id 0xFF event_id"</c>.
/// </summary>
public sealed record ColumnFamily(string Name, string KeyLayout, string ValueLayout);

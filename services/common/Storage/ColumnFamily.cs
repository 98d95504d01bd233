namespace Conduit.Common.Storage;

/// <summary>
/// Declares one key-value family (with RocksDB a key range of its default column family behind the family's id, with
/// SQLite a table; the type keeps RocksDB's name for it). <paramref name="KeyLayout"/> and
/// <paramref name="ValueLayout"/> are documentation only, e.g. <c>"room_id 0xFF event_id"</c>.
/// </summary>
public sealed record ColumnFamily(string Name, string KeyLayout, string ValueLayout);

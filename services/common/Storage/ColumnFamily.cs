namespace Conduit.Common.Storage;

/// <summary>
/// Declares one key-value family (with RocksDB a key range of its default column family behind the family's id, or a
/// column family of its own; with SQLite a table; the type keeps RocksDB's name for it). <paramref name="KeyLayout"/>
/// and <paramref name="ValueLayout"/> are documentation only, e.g. <c>"room_id 0xFF event_id"</c>.
/// <paramref name="Dedicated"/>: with RocksDB, a column family of its own, for the few families read or written for
/// every event (the events themselves, the timeline, notification counts): sharing one memtable and one set of table
/// files with every other family would make each of their reads look through the others' data. Each column family
/// costs 60-100 KB of native memory, so the rest share one.
/// </summary>
public sealed record ColumnFamily(string Name, string KeyLayout, string ValueLayout, bool Dedicated = false);

using Conduit.Common.Storage;
using Conduit.Sync;

namespace Conduit.Sync.Tests;

public sealed class ReceiptStoreTests : IDisposable
{
    const string Room = "!r:test.local";
    const string Alice = "@alice:test.local";

    readonly IKeyValueStore _kv = KvStore.Open("memory", "", SyncFamilies.All);
    readonly ReceiptStore _receipts;

    public ReceiptStoreTests() => _receipts = new ReceiptStore(_kv);

    public void Dispose() => _kv.Dispose();

    [Fact]
    public void The_latest_receipt_per_key_is_kept_and_never_moves_back()
    {
        Assert.Equal(1, _receipts.Put(Room, Alice, "m.read", "", "$b", 20, 1));
        Assert.Equal(0, _receipts.Put(Room, Alice, "m.read", "", "$a", 10, 2));
        Assert.Equal(0, _receipts.Put(Room, Alice, "m.read", "", "$b", 20, 3));
        // Another thread is another key.
        Assert.Equal(2, _receipts.Put(Room, Alice, "m.read", "main", "$a", 10, 4));
        var all = _receipts.InRoom(Room, 0, _receipts.Position).ToList();
        Assert.Equal([("", "$b"), ("main", "$a")], all.Select(r => (r.ThreadId, r.EventId)).Order());
        Assert.Equal(3, _receipts.Put(Room, Alice, "m.read", "", "$c", 30, 5));
        Assert.Equal(["$c"], _receipts.InRoom(Room, 2, 3).Select(r => r.EventId));
    }

    [Fact]
    public void Rooms_changed_are_found_by_position()
    {
        _receipts.Put(Room, Alice, "m.read", "", "$a", 1, 1);
        _receipts.Put("!other:test.local", Alice, "m.read", "", "$x", 2, 1);
        Assert.Equal([Room, "!other:test.local"], _receipts.RoomsChanged(0, 2).Order().Reverse());
        Assert.Equal(["!other:test.local"], _receipts.RoomsChanged(1, 2));
        Assert.Empty(_receipts.RoomsChanged(2, 2));
        // A receipt that moves leaves one log entry.
        _receipts.Put(Room, Alice, "m.read", "", "$b", 3, 1);
        Assert.Equal([Room, "!other:test.local"], _receipts.RoomsChanged(0, 3).Order().Reverse());
        Assert.Equal([Room], _receipts.RoomsChanged(2, 3));
    }
}

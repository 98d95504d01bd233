using System.Text.Json.Nodes;
using Conduit.Common.Storage;
using Conduit.Sync;

namespace Conduit.Sync.Tests;

public sealed class AccountDataStoreTests : IDisposable
{
    const string Alice = "@alice:test.local";
    const string Bob = "@bob:test.local";

    readonly IKeyValueStore _kv = KvStore.Open("memory", "", SyncFamilies.All);
    readonly AccountDataStore _data;

    public AccountDataStoreTests() => _data = new AccountDataStore(_kv);

    public void Dispose() => _kv.Dispose();

    [Fact]
    public void PutThenGet_ReturnsTheContent()
    {
        Assert.Equal(0, _data.Position);
        var pos = _data.Put(Alice, "", "m.direct", new JsonObject { ["@bob:test.local"] = new JsonArray("!dm:test.local") });
        Assert.Equal(1, pos);
        Assert.Equal(1, _data.Position);
        var got = _data.Get(Alice, "", "m.direct");
        Assert.NotNull(got);
        Assert.Equal("""{"@bob:test.local":["!dm:test.local"]}""", got!.ToJsonString());
        Assert.Null(_data.Get(Bob, "", "m.direct"));
        Assert.Null(_data.Get(Alice, "!room:test.local", "m.direct"));
    }

    [Fact]
    public void Put_Overwrites_AndAdvancesThePosition()
    {
        _data.Put(Alice, "", "org.example", new JsonObject { ["v"] = 1 });
        var pos = _data.Put(Alice, "", "org.example", new JsonObject { ["v"] = 2 });
        Assert.Equal(2, pos);
        Assert.Equal(2, _data.Get(Alice, "", "org.example")!["v"]!.GetValue<int>());
    }

    [Fact]
    public void Put_KeepsItsOwnCopyOfTheContent()
    {
        var content = new JsonObject { ["v"] = 1 };
        _data.Put(Alice, "", "org.example", content);
        content["v"] = 99;
        Assert.Equal(1, _data.Get(Alice, "", "org.example")!["v"]!.GetValue<int>());
    }

    [Fact]
    public void ChangedSince_ReturnsOnlyNewerEntriesOfThatUser()
    {
        var p1 = _data.Put(Alice, "", "a.first", new JsonObject { ["n"] = 1 });
        var p2 = _data.Put(Alice, "!room:test.local", "a.room", new JsonObject { ["n"] = 2 });
        var p3 = _data.Put(Bob, "", "b.other", new JsonObject { ["n"] = 3 });
        Assert.Equal([1L, 2L, 3L], new[] { p1, p2, p3 });

        var all = _data.ChangedSince(Alice, 0).OrderBy(e => e.Pos).ToList();
        Assert.Equal(["a.first", "a.room"], all.Select(e => e.Type));
        Assert.Equal(["", "!room:test.local"], all.Select(e => e.RoomId));

        var newer = Assert.Single(_data.ChangedSince(Alice, p1));
        Assert.Equal("a.room", newer.Type);
        Assert.Equal("!room:test.local", newer.RoomId);
        Assert.Equal(2, newer.Pos);
        Assert.Equal(2, newer.Content["n"]!.GetValue<int>());

        Assert.Empty(_data.ChangedSince(Alice, p3));
        Assert.Equal("b.other", Assert.Single(_data.ChangedSince(Bob, 0)).Type);
    }

    [Fact]
    public void ChangedSince_AnOverwrittenEntryAppearsOnceWithItsNewPosition()
    {
        _data.Put(Alice, "", "x", new JsonObject { ["v"] = 1 });
        var since = _data.Put(Alice, "", "y", new JsonObject());
        _data.Put(Alice, "", "x", new JsonObject { ["v"] = 2 });
        var e = Assert.Single(_data.ChangedSince(Alice, since));
        Assert.Equal("x", e.Type);
        Assert.Equal(3, e.Pos);
        Assert.Equal(2, e.Content["v"]!.GetValue<int>());
    }

    [Fact]
    public void ChangedSince_DoesNotLeakAUserWhoseIdStartsWithAnother()
    {
        _data.Put("@al:test.local", "", "mine", new JsonObject());
        _data.Put("@al:test.localhost", "", "theirs", new JsonObject());
        Assert.Equal("mine", Assert.Single(_data.ChangedSince("@al:test.local", 0)).Type);
    }

    [Fact]
    public void Filters_GetDistinctIdsPerUpload_AndReadBack()
    {
        var f1 = new JsonObject { ["room"] = new JsonObject { ["timeline"] = new JsonObject { ["limit"] = 1 } } };
        var f2 = new JsonObject { ["presence"] = new JsonObject { ["types"] = new JsonArray() } };
        var id1 = _data.PutFilter(Alice, f1);
        var id2 = _data.PutFilter(Alice, f1);
        var id3 = _data.PutFilter(Bob, f2);
        Assert.Equal(3, new[] { id1, id2, id3 }.Distinct().Count());
        Assert.Equal(f1.ToJsonString(), _data.GetFilter(Alice, id1)!.ToJsonString());
        Assert.Equal(f1.ToJsonString(), _data.GetFilter(Alice, id2)!.ToJsonString());
        Assert.Equal(f2.ToJsonString(), _data.GetFilter(Bob, id3)!.ToJsonString());
        // A filter ID only means something for the user who uploaded it.
        Assert.Null(_data.GetFilter(Bob, id1));
        Assert.Null(_data.GetFilter(Alice, id3));
        Assert.Null(_data.GetFilter(Alice, "999"));
    }

    [Fact]
    public void Filters_DoNotMoveTheAccountDataPosition()
    {
        _data.PutFilter(Alice, new JsonObject());
        Assert.Equal(0, _data.Position);
        Assert.Empty(_data.ChangedSince(Alice, 0));
    }
}

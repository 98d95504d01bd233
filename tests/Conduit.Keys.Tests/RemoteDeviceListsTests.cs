using System.Text.Json.Nodes;
using Conduit.Common.Storage;
using Conduit.Keys;
using Conduit.Keys.E2ee;
using Xunit;

namespace Conduit.Keys.Tests;

/// <summary>
/// The cache of other servers' users' device lists: filled from GET /user/devices, kept current by update EDUs in
/// order, dropped when an update shows that one was missed (the next query fetches the list again).
/// </summary>
public sealed class RemoteDeviceListsTests
{
    const string Bob = "@bob:remote.example";
    readonly KeysStream _stream = new(KvStore.Open("memory", "", KeysFamilies.All));
    readonly RemoteDeviceLists _lists;

    public RemoteDeviceListsTests() => _lists = new RemoteDeviceLists(_stream);

    static JsonObject Keys(string deviceId, string user = Bob) => new()
    {
        ["user_id"] = user, ["device_id"] = deviceId, ["algorithms"] = new JsonArray("m.olm.v1.curve25519-aes-sha2"),
        ["keys"] = new JsonObject { [$"ed25519:{deviceId}"] = "pub" + deviceId },
    };

    void Fetched(long streamId, params string[] devices)
    {
        var answer = new JsonObject
        {
            ["user_id"] = Bob, ["stream_id"] = streamId,
            ["devices"] = new JsonArray(devices.Select(d => (JsonNode)new JsonObject { ["device_id"] = d, ["keys"] = Keys(d) }).ToArray()),
        };
        _lists.Put(Bob, RemoteDeviceLists.FromDevicesAnswer(Bob, answer)!);
    }

    void Update(string deviceId, long streamId, long[] prev, bool deleted = false, JsonObject? keys = null)
    {
        var content = new JsonObject
        {
            ["user_id"] = Bob, ["device_id"] = deviceId, ["stream_id"] = streamId,
            ["prev_id"] = new JsonArray(prev.Select(p => (JsonNode)p).ToArray()), ["deleted"] = deleted,
        };
        if (keys is not null) content["keys"] = keys;
        _stream.Write(kb => _lists.ApplyDeviceUpdate(kb, new Dictionary<string, JsonObject?>(), Bob, content));
    }

    List<string> Served()
    {
        var deviceKeys = new JsonObject();
        RemoteDeviceLists.Serve(Bob, _lists.Get(Bob)!, [], deviceKeys, [], []);
        return ((JsonObject)deviceKeys[Bob]!).Select(kv => kv.Key).Order().ToList();
    }

    [Fact]
    public void Updates_in_order_are_applied_and_a_deletion_removes_the_device()
    {
        Fetched(5, "A");
        Update("B", 6, [5], keys: Keys("B"));
        Update("C", 7, [6], keys: Keys("C"));
        Update("A", 8, [7], deleted: true);
        Assert.Equal(["B", "C"], Served());
        Assert.Equal(8, (long)_lists.Get(Bob)!["stream_id"]!);
    }

    [Fact]
    public void A_gap_drops_the_list_so_it_is_fetched_again()
    {
        Fetched(5, "A");
        Update("B", 8, [7], keys: Keys("B"));
        Assert.Null(_lists.Get(Bob));
    }

    [Fact]
    public void An_update_already_had_is_ignored_and_a_fetch_older_than_the_cache_does_not_replace_it()
    {
        Fetched(5, "A");
        Update("B", 6, [5], keys: Keys("B"));
        Update("A", 6, [5], deleted: true);
        Assert.Equal(["A", "B"], Served());
        Fetched(4, "Z");
        Assert.Equal(["A", "B"], Served());
    }

    [Fact]
    public void Keys_naming_another_user_or_device_are_not_kept()
    {
        Fetched(1, "A");
        Update("B", 2, [1], keys: Keys("B", user: "@mallory:remote.example"));
        Update("C", 3, [2], keys: Keys("D"));
        Assert.Equal(["A"], Served());
        Assert.Null(RemoteDeviceLists.FromDevicesAnswer(Bob, new JsonObject { ["user_id"] = "@carol:remote.example", ["devices"] = new JsonArray() }));
    }

    [Fact]
    public void Updates_in_one_batch_see_each_other_and_nothing_is_kept_for_a_user_never_fetched()
    {
        Fetched(1, "A");
        _stream.Write(kb =>
        {
            var pending = new Dictionary<string, JsonObject?>();
            _lists.ApplyDeviceUpdate(kb, pending, Bob, new JsonObject { ["device_id"] = "B", ["stream_id"] = 2, ["prev_id"] = new JsonArray(1), ["keys"] = Keys("B") });
            _lists.ApplyDeviceUpdate(kb, pending, Bob, new JsonObject { ["device_id"] = "C", ["stream_id"] = 3, ["prev_id"] = new JsonArray(2), ["keys"] = Keys("C") });
        });
        Assert.Equal(["A", "B", "C"], Served());
        const string carol = "@carol:remote.example";
        _stream.Write(kb => _lists.ApplyDeviceUpdate(kb, [], carol, new JsonObject { ["device_id"] = "X", ["stream_id"] = 1, ["prev_id"] = new JsonArray() }));
        Assert.Null(_lists.Get(carol));
    }
}

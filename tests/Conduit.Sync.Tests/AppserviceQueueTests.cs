using System.Text.Json.Nodes;
using Conduit.Common.Storage;
using Conduit.Sync;
using Conduit.Sync.Appservices;

namespace Conduit.Sync.Tests;

/// <summary>The appservice transaction queue: order, limits per transaction, retries unchanged, acknowledgement, and
/// state that survives reopening the store (spec: application-service-api, "Pushing events").</summary>
public sealed class AppserviceQueueTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("conduit-asq-").FullName;

    IKeyValueStore Open() => KvStore.Open("sqlite", _dir, SyncFamilies.All);

    static JsonObject Ev(int i) => new() { ["event_id"] = $"$e{i}", ["type"] = "m.room.message" };

    static AppserviceItem Item(string id, string kind, JsonNode value) => new(id, kind, value.ToJsonString());

    static List<string?> Ids(AppserviceTxn t, string kind = "event")
        => [.. t.Items.Where(i => i["k"]!.GetValue<string>() == kind).Select(i => i["v"]!["event_id"]?.GetValue<string>())];

    [Fact]
    public void A_transaction_is_resent_unchanged_until_acknowledged_then_the_next_gets_the_next_id()
    {
        using var kv = Open();
        var q = new AppserviceQueue(kv);
        q.Append([Item("a", "event", Ev(1)), Item("b", "event", Ev(100)), Item("a", "event", Ev(2))]);
        Assert.Equal(["a", "b"], q.AppservicesWithQueue());
        var t1 = q.Current("a")!;
        Assert.Equal(1, t1.TxnId);
        Assert.Equal(["$e1", "$e2"], Ids(t1));
        // Queued after the transaction was fixed: not added to it (the spec forbids it on retry).
        q.Append([Item("a", "event", Ev(3))]);
        var again = q.Current("a")!;
        Assert.Equal(1, again.TxnId);
        Assert.Equal(["$e1", "$e2"], Ids(again));
        q.Acknowledge("a", again);
        var t2 = q.Current("a")!;
        Assert.Equal(2, t2.TxnId);
        Assert.Equal(["$e3"], Ids(t2));
        q.Acknowledge("a", t2);
        Assert.Null(q.Current("a"));
        // Another appservice's queue is its own, with its own IDs.
        Assert.Equal(["$e100"], Ids(q.Current("b")!));
        Assert.Equal(1, q.Current("b")!.TxnId);
    }

    [Fact]
    public void A_transaction_carries_at_most_100_events_and_the_rest_follow_in_order()
    {
        using var kv = Open();
        var q = new AppserviceQueue(kv);
        q.Append([.. Enumerable.Range(1, 250).Select(i => Item("a", "event", Ev(i)))]);
        var seen = new List<string?>();
        while (q.Current("a") is { } t)
        {
            Assert.True(t.Items.Count <= AppserviceQueue.MaxPerKind);
            seen.AddRange(Ids(t));
            q.Acknowledge("a", t);
        }
        Assert.Equal(Enumerable.Range(1, 250).Select(i => (string?)$"$e{i}"), seen);
    }

    [Fact]
    public void The_queue_the_transaction_in_flight_and_the_feed_position_survive_a_restart()
    {
        long txnId;
        using (var kv = Open())
        {
            var q = new AppserviceQueue(kv);
            q.Append([Item("a", "event", Ev(1)), Item("a", "ephemeral", new JsonObject { ["type"] = "m.typing" })], feedPosition: 42,
                cursors: [("@u:x", "DEV", 7)]);
            txnId = q.Current("a")!.TxnId;
            q.Append([Item("a", "event", Ev(2))]);
        }
        using (var kv = Open())
        {
            var q = new AppserviceQueue(kv);
            Assert.Equal(42, q.FeedPosition);
            Assert.Equal(["a"], q.AppservicesWithQueue());
            Assert.Equal([("@u:x", "DEV", 7L)], q.DeviceCursors(["@u:x"]));
            var t = q.Current("a")!;
            // The same transaction, with the ephemeral event kept whole (Synapse's retries lose those).
            Assert.Equal(txnId, t.TxnId);
            Assert.Equal(2, t.Items.Count);
            Assert.Equal("m.typing", t.Items[1]["v"]!["type"]!.GetValue<string>());
            q.Acknowledge("a", t);
            q.Append([Item("a", "event", Ev(3))]);
            Assert.Equal(["$e2", "$e3"], Ids(q.Current("a")!));
        }
    }

    [Fact]
    public void An_idle_feed_forgets_its_position_so_an_appservice_registered_later_starts_from_then_on()
    {
        using var kv = Open();
        var q = new AppserviceQueue(kv);
        q.Append([], feedPosition: 10);
        Assert.Equal(10, q.FeedPosition);
        q.MarkFeedIdle();
        Assert.Null(q.FeedPosition);
        q.Append([], feedPosition: 20);
        Assert.Equal(20, q.FeedPosition);
    }

    [Fact]
    public void The_body_puts_each_kind_in_its_field_and_keeps_a_devices_latest_counts()
    {
        JsonObject Raw(string k, JsonNode v) => new() { ["k"] = k, ["v"] = v };
        var body = AppserviceSender.Body(
        [
            Raw("event", Ev(1)),
            Raw("ephemeral", new JsonObject { ["type"] = "m.typing" }),
            Raw("to_device", new JsonObject { ["type"] = "m.x", ["to_user_id"] = "@u:x" }),
            Raw("otk", new JsonObject { ["counts"] = new JsonObject { ["@u:x"] = new JsonObject { ["D"] = new JsonObject { ["signed_curve25519"] = 5 } } } }),
            Raw("otk", new JsonObject { ["counts"] = new JsonObject { ["@u:x"] = new JsonObject { ["D"] = new JsonObject { ["signed_curve25519"] = 4 } } } }),
            Raw("device_lists", new JsonObject { ["changed"] = new JsonArray("@a:x", "@b:x") }),
            Raw("device_lists", new JsonObject { ["left"] = new JsonArray("@b:x") }),
        ]);
        Assert.Equal("$e1", body["events"]![0]!["event_id"]!.GetValue<string>());
        Assert.Equal("m.typing", body["ephemeral"]![0]!["type"]!.GetValue<string>());
        Assert.Equal("@u:x", body["de.sorunome.msc2409.to_device"]![0]!["to_user_id"]!.GetValue<string>());
        Assert.Equal(4, body["org.matrix.msc3202.device_one_time_keys_count"]!["@u:x"]!["D"]!["signed_curve25519"]!.GetValue<int>());
        Assert.Equal(["@a:x"], body["org.matrix.msc3202.device_lists"]!["changed"]!.AsArray().Select(x => x!.GetValue<string>()));
        Assert.Equal(["@b:x"], body["org.matrix.msc3202.device_lists"]!["left"]!.AsArray().Select(x => x!.GetValue<string>()));
        // Nothing else: an events-only transaction is just {"events": [...]}.
        Assert.Equal(["events"], AppserviceSender.Body([Raw("event", Ev(2))]).Select(p => p.Key));
    }

    [Fact]
    public void A_receipt_goes_to_every_appservice_listening_in_the_room()
    {
        using var kv = Open();
        var q = new AppserviceQueue(kv);
        var config = new Conduit.Common.Config.GlobalConfig { ServerName = "x" };
        string Reg(string id) => $"id: {id}\nurl: \"http://127.0.0.1:9\"\nas_token: {id}_as\nhs_token: {id}_hs\nsender_localpart: {id}bot\nreceive_ephemeral: true\nnamespaces: {{users: [{{exclusive: true, regex: \"@{id}_.*:x\"}}]}}";
        config.SetAppservices([Conduit.Common.Appservices.AppserviceLoader.Parse(Reg("a"), "a"), Conduit.Common.Appservices.AppserviceLoader.Parse(Reg("b"), "b")]);
        new AppserviceEphemeral(q, config).Receipt("!r:x", "@u:x", "m.read", "", "$e", 5, ["@u:x", "@a_1:x", "@b_1:x"]);
        foreach (var id in new[] { "a", "b" })
        {
            var t = q.Current(id)!;
            Assert.Equal("m.receipt", t.Items.Single()["v"]!["type"]!.GetValue<string>());
            Assert.Equal(5, t.Items.Single()["v"]!["content"]!["$e"]!["m.read"]!["@u:x"]!["ts"]!.GetValue<long>());
        }
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }
}

using System.Text.Json.Nodes;
using Conduit.Common.Crypto;
using Conduit.Common.Http;
using Conduit.Common.Storage;
using Conduit.Keys.E2ee;

namespace Conduit.Keys.Tests;

public sealed class E2eeStoreTests : IDisposable
{
    const string Alice = "@alice:test.local", Bob = "@bob:test.local";
    readonly string _dir = Directory.CreateTempSubdirectory("keys-e2ee-").FullName;
    IKeyValueStore _kv;
    E2eeStore _e2ee;

    public E2eeStoreTests()
    {
        _kv = KvStore.Open("sqlite", _dir, KeysFamilies.All);
        _e2ee = new E2eeStore(new KeysStream(_kv));
    }

    public void Dispose()
    {
        _kv.Dispose();
        Directory.Delete(_dir, true);
    }

    void Reopen()
    {
        _kv.Dispose();
        _kv = KvStore.Open("sqlite", _dir, KeysFamilies.All);
        _e2ee = new E2eeStore(new KeysStream(_kv));
    }

    static List<(string, string, JsonNode)> Otks(params string[] ids)
        => ids.Select(id => ("signed_curve25519", "signed_curve25519:" + id, (JsonNode)JsonValue.Create("key-" + id)!)).ToList();

    void AddDevice(string user, string device) => _kv.Map(KeysFamilies.Devices).Put(Conduit.Common.Storage.Keys.Join(user, device), "{}"u8.ToArray());

    [Fact]
    public void Claims_take_the_oldest_upload_first_then_the_fallback_key()
    {
        _e2ee.Upload(Alice, "D", null, Otks("ZZ", "YY"), []);
        _e2ee.Upload(Alice, "D", null, Otks("AA"), [("signed_curve25519", "signed_curve25519:FB", JsonValue.Create("fb")!)]);
        string Next() => (_e2ee.Claim([new ClaimRequest(Alice, "D", "signed_curve25519")])[Alice]?["D"] as JsonObject)?.Single().Key ?? "none";
        // Within one upload by key ID; across uploads by upload order (not lexicographic over all keys).
        Assert.Equal(["signed_curve25519:YY", "signed_curve25519:ZZ", "signed_curve25519:AA", "signed_curve25519:FB", "signed_curve25519:FB"],
            [Next(), Next(), Next(), Next(), Next()]);
        Assert.Empty(_e2ee.UnusedFallbackKeyTypes(Alice, "D"));
        Assert.Null(_e2ee.Claim([new ClaimRequest(Alice, "D", "other_alg")])[Alice]);
    }

    [Fact]
    public void A_reused_key_id_with_other_content_is_refused_and_the_whole_upload_with_it()
    {
        _e2ee.Upload(Alice, "D", null, Otks("A1"), []);
        var reuse = Otks("A2");
        reuse.Add(("signed_curve25519", "signed_curve25519:A1", JsonValue.Create("other")!));
        Assert.Equal("M_INVALID_PARAM", Assert.Throws<Conduit.Common.MatrixException>(() => _e2ee.Upload(Alice, "D", null, reuse, [])).ErrCode);
        Assert.Equal(1, _e2ee.OneTimeKeyCounts(Alice, "D")["signed_curve25519"]);
        // The same content again is accepted and changes nothing.
        Assert.Equal(1, _e2ee.Upload(Alice, "D", null, Otks("A1"), [])["signed_curve25519"]);
    }

    [Fact]
    public void To_device_messages_are_acknowledged_by_a_later_since_and_survive_a_restart_until_then()
    {
        AddDevice(Bob, "B");
        for (var i = 0; i < 3; i++)
            Assert.True(_e2ee.SendToDevice(Alice, "A", "t" + i, "m.test", [new ToDeviceMessage(Bob, "B", new JsonObject { ["i"] = i })]));
        Assert.False(_e2ee.SendToDevice(Alice, "A", "t0", "m.test", [new ToDeviceMessage(Bob, "B", new JsonObject { ["i"] = 9 })]));
        var first = _e2ee.Sync(Bob, "B", 0, incremental: false);
        Assert.Equal(3, first.ToDevice.Count);
        Reopen();
        // Positions are durable: the stream resumes past them, and the messages are still there.
        Assert.Equal(first.Position, _e2ee.Stream.Position);
        Assert.Equal(3, _e2ee.Sync(Bob, "B", 0, incremental: false).ToDevice.Count);
        Assert.Empty(_e2ee.Sync(Bob, "B", first.Position, incremental: true).ToDevice);
        Assert.Empty(_e2ee.Sync(Bob, "B", 0, incremental: false).ToDevice);
        AddDevice(Bob, "B");
        _e2ee.SendToDevice(Alice, "A", "t9", "m.test", [new ToDeviceMessage(Bob, "B", new JsonObject())]);
        Assert.True(_e2ee.Stream.Position > first.Position);
    }

    [Fact]
    public void Messages_to_unknown_devices_are_dropped_and_star_reaches_every_device()
    {
        AddDevice(Bob, "B1");
        AddDevice(Bob, "B2");
        _e2ee.SendToDevice(Alice, "A", "t", "m.test", [new ToDeviceMessage(Bob, "*", new JsonObject()), new ToDeviceMessage(Bob, "NOPE", new JsonObject())]);
        Assert.Single(_e2ee.Sync(Bob, "B1", 0, false).ToDevice);
        Assert.Single(_e2ee.Sync(Bob, "B2", 0, false).ToDevice);
        Assert.Empty(_e2ee.Sync(Bob, "NOPE", 0, false).ToDevice);
    }

    [Fact]
    public void The_device_list_log_keeps_each_users_latest_change_only()
    {
        var start = _e2ee.Stream.Position;
        _e2ee.Stream.Write(kb => _e2ee.DeviceListChanged(kb, Alice));
        _e2ee.Stream.Write(kb => _e2ee.DeviceListChanged(kb, Bob));
        var mid = _e2ee.Stream.Position;
        _e2ee.Stream.Write(kb => { _e2ee.DeviceListChanged(kb, Alice); _e2ee.DeviceListChanged(kb, Alice); });
        Assert.Equal([Bob, Alice], _e2ee.ChangedUsers(start, _e2ee.Stream.Position));
        Assert.Equal([Alice], _e2ee.ChangedUsers(mid, _e2ee.Stream.Position));
        Assert.Empty(_e2ee.ChangedUsers(_e2ee.Stream.Position, _e2ee.Stream.Position));
        Assert.Equal(2, _kv.Map(KeysFamilies.DeviceListLog).Scan([]).Count());
    }

    [Fact]
    public void A_write_that_throws_leaves_nothing_and_takes_no_position()
    {
        var before = _e2ee.Stream.Position;
        Assert.Throws<InvalidOperationException>(() => _e2ee.Stream.Write(kb =>
        {
            _e2ee.DeviceListChanged(kb, Alice);
            throw new InvalidOperationException("boom");
        }));
        Assert.Equal(before, _e2ee.Stream.Position);
        Assert.Empty(_e2ee.ChangedUsers(0, long.MaxValue));
    }

    [Fact]
    public void Device_keys_must_be_the_callers_and_self_signed()
    {
        using var key = SigningKey.Generate("DEV");
        JsonObject Keys()
        {
            var o = new JsonObject
            {
                ["user_id"] = Alice, ["device_id"] = "DEV", ["algorithms"] = new JsonArray("m.megolm.v1.aes-sha2"),
                ["keys"] = new JsonObject { ["ed25519:DEV"] = key.PublicKeyBase64, ["curve25519:DEV"] = "c" },
            };
            JsonSigning.Sign(o, Alice, key);
            o["unsigned"] = new JsonObject { ["x"] = 1 };
            return o;
        }
        var (stored, ed) = KeyObjects.DeviceKeys(Keys(), Alice, "DEV");
        Assert.Null(stored["unsigned"]);
        Assert.Equal(key.PublicKey, ed);
        Assert.Equal("M_INVALID_PARAM", Assert.Throws<Conduit.Common.MatrixException>(() => KeyObjects.DeviceKeys(Keys(), Bob, "DEV")).ErrCode);
        Assert.Equal("M_INVALID_PARAM", Assert.Throws<Conduit.Common.MatrixException>(() => KeyObjects.DeviceKeys(Keys(), Alice, "OTHER")).ErrCode);
        var tampered = Keys();
        tampered["keys"]!["curve25519:DEV"] = "changed";
        Assert.Equal("M_INVALID_SIGNATURE", Assert.Throws<Conduit.Common.MatrixException>(() => KeyObjects.DeviceKeys(tampered, Alice, "DEV")).ErrCode);
        var wrongName = Keys();
        wrongName["keys"]!.AsObject().Add("curve25519:OTHER", "x");
        Assert.Equal("M_INVALID_PARAM", Assert.Throws<Conduit.Common.MatrixException>(() => KeyObjects.DeviceKeys(wrongName, Alice, "DEV")).ErrCode);
    }
}

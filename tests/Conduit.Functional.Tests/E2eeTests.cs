using System.Net;
using System.Text.Json.Nodes;
using Conduit.Common.Crypto;
using static Conduit.Functional.Tests.MatrixClient;

namespace Conduit.Functional.Tests;

/// <summary>A logged-in device with its own Ed25519 key, making what a client's crypto stack uploads.</summary>
public sealed class TestDevice(MatrixClient client) : IDisposable
{
    public MatrixClient Client { get; } = client;
    public SigningKey Ed { get; } = SigningKey.Generate(client.DeviceId);
    public string UserId => Client.UserId;
    public string DeviceId => Client.DeviceId;
    public string Curve { get; } = UnpaddedBase64.Encode(Guid.NewGuid().ToByteArray().Concat(Guid.NewGuid().ToByteArray()).ToArray());

    public JsonObject DeviceKeys()
    {
        var o = new JsonObject
        {
            ["user_id"] = UserId,
            ["device_id"] = DeviceId,
            ["algorithms"] = new JsonArray("m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"),
            ["keys"] = new JsonObject { [$"curve25519:{DeviceId}"] = Curve, [$"ed25519:{DeviceId}"] = Ed.PublicKeyBase64 },
        };
        JsonSigning.Sign(o, UserId, Ed);
        return o;
    }

    public JsonObject SignedKey(string key, bool fallback = false)
    {
        var o = new JsonObject { ["key"] = key };
        if (fallback) o["fallback"] = true;
        JsonSigning.Sign(o, UserId, Ed);
        return o;
    }

    public JsonObject OneTimeKeys(int count, int from = 0)
    {
        var o = new JsonObject();
        for (var i = from; i < from + count; i++) o[$"signed_curve25519:K{i:D4}"] = SignedKey($"otk-{DeviceId}-{i}");
        return o;
    }

    public async Task<JsonObject> Upload(bool deviceKeys = true, int otks = 0, int otkFrom = 0, string? fallback = null)
    {
        var body = new JsonObject();
        if (deviceKeys) body["device_keys"] = DeviceKeys();
        if (otks > 0) body["one_time_keys"] = OneTimeKeys(otks, otkFrom);
        if (fallback is not null) body["fallback_keys"] = new JsonObject { [$"signed_curve25519:{fallback}"] = SignedKey("fb-" + fallback, fallback: true) };
        return (await Client.Post(C + "/keys/upload", body)).Ok().Obj;
    }

    public void Dispose() => Ed.Dispose();
}

/// <summary>
/// E2EE through the edge: device keys, one-time and fallback keys, to-device messages, device lists, cross-signing
/// and dehydrated devices (spec: client-server-api, "End-to-End Encryption").
/// </summary>
public abstract class E2eeTests(ServerFixture server)
{
    static int _txn;
    static string Txn() => "t" + Interlocked.Increment(ref _txn);

    async Task<TestDevice> NewDevice(MatrixClient? sameUser = null, string password = "correct horse")
    {
        if (sameUser is null) return new TestDevice(await Register(server, password: password));
        var c = new MatrixClient(server);
        var r = (await c.Call("POST", C + "/login", new JsonObject
        {
            ["type"] = "m.login.password",
            ["identifier"] = new JsonObject { ["type"] = "m.id.user", ["user"] = sameUser.UserId },
            ["password"] = password,
        }, auth: false)).Ok().Obj;
        c.Token = r["access_token"]!.GetValue<string>();
        c.UserId = r["user_id"]!.GetValue<string>();
        c.DeviceId = r["device_id"]!.GetValue<string>();
        return new TestDevice(c);
    }

    static JsonObject Query(params string[] users)
    {
        var o = new JsonObject();
        foreach (var u in users) o[u] = new JsonArray();
        return new JsonObject { ["device_keys"] = o };
    }

    static async Task<JsonObject> Claim(MatrixClient c, string user, string device)
        => (await c.Post(C + "/keys/claim", new JsonObject { ["one_time_keys"] = new JsonObject { [user] = new JsonObject { [device] = "signed_curve25519" } } })).Ok().Obj;

    static List<string> Strings(JsonNode? a) => (a as JsonArray ?? []).Select(n => n!.GetValue<string>()).ToList();

    [Fact]
    public async Task Uploaded_keys_are_queried_counted_and_reach_sync()
    {
        using var alice = await NewDevice();
        using var bob = await NewDevice();
        var up = await alice.Upload(otks: 5, fallback: "F1");
        Assert.Equal(5, up["one_time_key_counts"]!["signed_curve25519"]!.GetValue<int>());
        (await alice.Client.Put($"{C}/devices/{alice.DeviceId}", new JsonObject { ["display_name"] = "Alice's laptop" })).Ok();

        var q = (await bob.Client.Post(C + "/keys/query", Query(alice.UserId, "@nobody:elsewhere.example"))).Ok().Obj;
        var keys = q["device_keys"]![alice.UserId]![alice.DeviceId]!.AsObject();
        Assert.Equal(alice.Ed.PublicKeyBase64, keys["keys"]![$"ed25519:{alice.DeviceId}"]!.GetValue<string>());
        Assert.Equal("Alice's laptop", keys["unsigned"]!["device_display_name"]!.GetValue<string>());
        // What is served verifies with the device's key: the server stored exactly what was signed.
        Assert.True(JsonSigning.Verify(keys, alice.UserId, $"ed25519:{alice.DeviceId}", alice.Ed.PublicKey));
        Assert.True(q["failures"]!.AsObject().ContainsKey("elsewhere.example"));

        var sync = await alice.Client.Sync();
        Assert.Equal(5, sync["device_one_time_keys_count"]!["signed_curve25519"]!.GetValue<int>());
        Assert.Equal(["signed_curve25519"], Strings(sync["device_unused_fallback_key_types"]));

        // Re-uploading the same keys changes nothing; counts stay.
        Assert.Equal(5, (await alice.Upload(otks: 5, fallback: "F1"))["one_time_key_counts"]!["signed_curve25519"]!.GetValue<int>());
    }

    [Fact]
    public async Task Bad_keys_are_refused_and_nothing_is_stored()
    {
        using var alice = await NewDevice();
        using var other = await NewDevice();
        await alice.Upload(otks: 2);
        async Task<string?> Upload(JsonObject body) => (await alice.Client.Post(C + "/keys/upload", body)).ErrCode;

        // Keys for another user or device.
        var dk = alice.DeviceKeys();
        dk["user_id"] = other.UserId;
        Assert.Equal("M_INVALID_PARAM", await Upload(new JsonObject { ["device_keys"] = dk }));
        Assert.Equal("M_INVALID_PARAM", await Upload(new JsonObject { ["device_keys"] = other.DeviceKeys() }));
        // A signature that does not verify (the content changed after signing).
        dk = alice.DeviceKeys();
        dk["algorithms"] = new JsonArray("m.megolm.v1.aes-sha2");
        Assert.Equal("M_INVALID_SIGNATURE", await Upload(new JsonObject { ["device_keys"] = dk }));
        // Signed by someone else's key.
        var forged = alice.DeviceKeys();
        forged.Remove("signatures");
        using (var mallory = SigningKey.Generate(alice.DeviceId)) JsonSigning.Sign(forged, alice.UserId, mallory);
        Assert.Equal("M_INVALID_SIGNATURE", await Upload(new JsonObject { ["device_keys"] = forged }));
        // A one-time key whose signature does not verify, with a good new one beside it: neither is stored.
        var otks = alice.OneTimeKeys(1, 10);
        var bad = alice.SignedKey("tampered");
        bad["key"] = "changed";
        otks["signed_curve25519:BAD"] = bad;
        Assert.Equal("M_INVALID_SIGNATURE", await Upload(new JsonObject { ["one_time_keys"] = otks }));
        // A key ID uploaded again with different content, in a request that also carries new keys.
        var reused = alice.OneTimeKeys(1, 20);
        reused["signed_curve25519:K0000"] = alice.SignedKey("different");
        Assert.Equal("M_INVALID_PARAM", await Upload(new JsonObject { ["one_time_keys"] = reused }));
        // Wrong algorithm names and shapes.
        Assert.Equal("M_INVALID_PARAM", await Upload(new JsonObject { ["one_time_keys"] = new JsonObject { ["Signed Curve:AAA"] = "k" } }));
        Assert.Equal("M_INVALID_PARAM", await Upload(new JsonObject { ["one_time_keys"] = new JsonObject { ["nocolon"] = "k" } }));
        Assert.Equal("M_BAD_JSON", await Upload(new JsonObject { ["one_time_keys"] = new JsonObject { ["signed_curve25519:X"] = 5 } }));
        Assert.Equal("M_BAD_JSON", await Upload(new JsonObject { ["one_time_keys"] = new JsonArray() }));
        Assert.Equal("M_NOT_JSON", (await alice.Client.Call("POST", C + "/keys/upload", rawBody: "{not json")).ErrCode);

        var counts = (await alice.Client.Post(C + "/keys/upload", new JsonObject())).Ok().Obj["one_time_key_counts"]!;
        Assert.Equal(2, counts["signed_curve25519"]!.GetValue<int>());
        var claimed = new List<string>();
        for (var i = 0; i < 2; i++)
            claimed.AddRange((await Claim(other.Client, alice.UserId, alice.DeviceId))["one_time_keys"]![alice.UserId]![alice.DeviceId]!.AsObject().Select(p => p.Key));
        Assert.Equal(["signed_curve25519:K0000", "signed_curve25519:K0001"], claimed.Order());

        // Bad queries and claims.
        Assert.Equal("M_INVALID_PARAM", (await alice.Client.Post(C + "/keys/query", Query("not-a-user"))).ErrCode);
        Assert.Equal("M_MISSING_PARAM", (await alice.Client.Post(C + "/keys/query", new JsonObject())).ErrCode);
        Assert.Equal("M_BAD_JSON", (await alice.Client.Post(C + "/keys/claim", new JsonObject { ["one_time_keys"] = new JsonObject { [alice.UserId] = new JsonObject { [alice.DeviceId] = 1 } } })).ErrCode);
    }

    [Fact]
    public async Task One_time_keys_run_out_then_the_fallback_key_is_handed_out_and_kept()
    {
        using var alice = await NewDevice();
        using var bob = await NewDevice();
        await alice.Upload(otks: 2, fallback: "FB");
        var got = new List<string>();
        for (var i = 0; i < 4; i++)
        {
            var r = await Claim(bob.Client, alice.UserId, alice.DeviceId);
            var (id, key) = r["one_time_keys"]![alice.UserId]![alice.DeviceId]!.AsObject().Single();
            got.Add(id);
            Assert.True(JsonSigning.Verify(key!.AsObject(), alice.UserId, $"ed25519:{alice.DeviceId}", alice.Ed.PublicKey));
        }
        // Oldest upload first, then the fallback key, again and again until it is replaced.
        Assert.Equal(["signed_curve25519:K0000", "signed_curve25519:K0001", "signed_curve25519:FB", "signed_curve25519:FB"], got);
        var sync = await alice.Client.Sync();
        Assert.Empty(Strings(sync["device_unused_fallback_key_types"]));
        Assert.Equal(0, sync["device_one_time_keys_count"]!["signed_curve25519"]!.GetValue<int>());
        await alice.Upload(deviceKeys: false, fallback: "FB2");
        Assert.Equal(["signed_curve25519"], Strings((await alice.Client.Sync())["device_unused_fallback_key_types"]));
        // A device without keys is simply absent from the answer.
        var none = await Claim(bob.Client, bob.UserId, bob.DeviceId);
        Assert.Empty(none["one_time_keys"]!.AsObject());
    }

    [Fact]
    public async Task Twenty_concurrent_claims_for_ten_keys_get_ten_distinct_keys_and_ten_fallbacks()
    {
        using var alice = await NewDevice();
        using var bob = await NewDevice();
        await alice.Upload(otks: 10, fallback: "FB");
        var results = await Task.WhenAll(Enumerable.Range(0, 20).Select(_ => Claim(bob.Client, alice.UserId, alice.DeviceId)));
        var ids = results.Select(r => r["one_time_keys"]![alice.UserId]![alice.DeviceId]!.AsObject().Single().Key).ToList();
        Assert.Equal(10, ids.Count(i => i != "signed_curve25519:FB"));
        Assert.Equal(10, ids.Where(i => i != "signed_curve25519:FB").Distinct().Count());
        Assert.Equal(10, ids.Count(i => i == "signed_curve25519:FB"));
    }

    [Fact]
    public async Task To_device_messages_are_delivered_until_acknowledged_then_deleted()
    {
        using var alice = await NewDevice();
        using var bob = await NewDevice();
        using var bob2 = await NewDevice(bob.Client);
        var bobSince = (await bob.Client.Sync())["next_batch"]!.GetValue<string>();
        var bob2Since = (await bob2.Client.Sync())["next_batch"]!.GetValue<string>();

        var txn = Txn();
        var body = new JsonObject { ["messages"] = new JsonObject { [bob.UserId] = new JsonObject { [bob.DeviceId] = new JsonObject { ["n"] = 1 } } } };
        (await alice.Client.Put($"{C}/sendToDevice/m.test/{txn}", body)).Ok();
        // The same transaction again is not a second message.
        (await alice.Client.Put($"{C}/sendToDevice/m.test/{txn}", body)).Ok();
        (await alice.Client.Put($"{C}/sendToDevice/m.test/{Txn()}", new JsonObject
        {
            ["messages"] = new JsonObject { [bob.UserId] = new JsonObject { ["*"] = new JsonObject { ["n"] = 2 } } },
        })).Ok();

        static List<int> Ns(JsonObject sync) => sync["to_device"]!["events"]!.AsArray().Select(e => e!["content"]!["n"]!.GetValue<int>()).ToList();
        var first = await bob.Client.Sync(bobSince);
        Assert.Equal([1, 2], Ns(first));
        var ev = first["to_device"]!["events"]![0]!;
        Assert.Equal(alice.UserId, ev["sender"]!.GetValue<string>());
        Assert.Equal("m.test", ev["type"]!.GetValue<string>());
        // A retry from the same token gets them again: they are not acknowledged yet.
        Assert.Equal([1, 2], Ns(await bob.Client.Sync(bobSince)));
        // From the next token they are acknowledged, deleted and never seen again.
        var next = first["next_batch"]!.GetValue<string>();
        Assert.Empty(Ns(await bob.Client.Sync(next)));
        Assert.Empty(Ns(await bob.Client.Sync(bobSince)));
        // "*" reached bob's other device too, and only the broadcast.
        Assert.Equal([2], Ns(await bob2.Client.Sync(bob2Since)));
    }

    [Fact]
    public async Task A_backlog_of_to_device_messages_comes_in_bounded_batches_in_order()
    {
        using var alice = await NewDevice();
        using var bob = await NewDevice();
        var since = (await bob.Client.Sync())["next_batch"]!.GetValue<string>();
        for (var i = 0; i < 150; i++)
            (await alice.Client.Put($"{C}/sendToDevice/m.test/{Txn()}", new JsonObject
            {
                ["messages"] = new JsonObject { [bob.UserId] = new JsonObject { [bob.DeviceId] = new JsonObject { ["i"] = i } } },
            })).Ok();
        var seen = new List<int>();
        var sizes = new List<int>();
        while (true)
        {
            var s = await bob.Client.Sync(since);
            var events = s["to_device"]!["events"]!.AsArray();
            if (events.Count == 0) break;
            sizes.Add(events.Count);
            seen.AddRange(events.Select(e => e!["content"]!["i"]!.GetValue<int>()));
            since = s["next_batch"]!.GetValue<string>();
        }
        Assert.Equal(Enumerable.Range(0, 150), seen);
        Assert.Equal([100, 50], sizes);
    }

    [Fact]
    public async Task A_waiting_sync_wakes_for_a_to_device_message()
    {
        using var alice = await NewDevice();
        using var bob = await NewDevice();
        var since = (await bob.Client.Sync())["next_batch"]!.GetValue<string>();
        var waiting = bob.Client.Sync(since, timeoutMs: 30_000);
        (await alice.Client.Put($"{C}/sendToDevice/m.test/{Txn()}", new JsonObject
        {
            ["messages"] = new JsonObject { [bob.UserId] = new JsonObject { [bob.DeviceId] = new JsonObject { ["wake"] = true } } },
        })).Ok();
        var s = await waiting;
        Assert.True(s["to_device"]!["events"]![0]!["content"]!["wake"]!.GetValue<bool>());
    }

    [Fact]
    public async Task Device_list_news_over_a_long_window_is_read_room_by_room()
    {
        // A window of more than 256 stream positions (more than the user's rooms) is read per room, not from the
        // room stream: a join and a leave in it are still news.
        using var alice = await NewDevice();
        using var bob = await NewDevice();
        using var dave = await NewDevice();
        var room = await alice.Client.CreateRoom(new JsonObject { ["preset"] = "public_chat" });
        (await dave.Client.Post($"{C}/join/{E(room)}", new JsonObject())).Ok();
        var since = (await alice.Client.Sync())["next_batch"]!.GetValue<string>();
        var elsewhere = await bob.Client.CreateRoom(new JsonObject { ["preset"] = "private_chat" });
        for (var i = 0; i < 300; i++)
            (await bob.Client.Put($"{C}/rooms/{E(elsewhere)}/send/m.room.message/{Txn()}", new JsonObject { ["msgtype"] = "m.text", ["body"] = $"{i}" })).Ok();
        (await bob.Client.Post($"{C}/join/{E(room)}", new JsonObject())).Ok();
        (await dave.Client.Post($"{C}/rooms/{E(room)}/leave", new JsonObject())).Ok();
        var s = await alice.Client.Sync(since);
        Assert.Contains(bob.UserId, Strings(s["device_lists"]!["changed"]));
        Assert.Contains(dave.UserId, Strings(s["device_lists"]!["left"]));
    }

    [Fact]
    public async Task Device_list_changes_reach_those_who_share_a_room_and_leaving_is_reported()
    {
        using var alice = await NewDevice();
        using var bob = await NewDevice();
        using var stranger = await NewDevice();
        var room = await alice.Client.CreateRoom(new JsonObject { ["preset"] = "public_chat" });
        var since0 = (await alice.Client.Sync())["next_batch"]!.GetValue<string>();
        (await bob.Client.Post($"{C}/join/{E(room)}", new JsonObject())).Ok();
        // Bob joining is news: alice starts tracking him.
        var s1 = await alice.Client.Sync(since0);
        Assert.Contains(bob.UserId, Strings(s1["device_lists"]!["changed"]));
        var since1 = s1["next_batch"]!.GetValue<string>();

        // An invite is nobody's news: the invitee never shared the room (nor left it).
        var strangerSince = (await stranger.Client.Sync())["next_batch"]!.GetValue<string>();
        (await alice.Client.Post($"{C}/rooms/{E(room)}/invite", new JsonObject { ["user_id"] = stranger.UserId })).Ok();
        var afterInvite = await alice.Client.Sync(since1);
        Assert.Empty(Strings(afterInvite["device_lists"]!["left"]));
        Assert.Empty(Strings((await stranger.Client.Sync(strangerSince))["device_lists"]!["left"]));
        since1 = afterInvite["next_batch"]!.GetValue<string>();
        strangerSince = (await stranger.Client.Sync())["next_batch"]!.GetValue<string>();

        // Bob's new device uploads keys: alice hears, the stranger (invited, not joined) does not; a waiting sync wakes.
        var waiting = alice.Client.Sync(since1, timeoutMs: 30_000);
        using var bob2 = await NewDevice(bob.Client);
        await bob2.Upload();
        var s2 = await waiting;
        Assert.Contains(bob.UserId, Strings(s2["device_lists"]!["changed"]));
        Assert.DoesNotContain(bob.UserId, Strings((await stranger.Client.Sync(strangerSince))["device_lists"]!["changed"]));
        var changes = (await alice.Client.Get($"{C}/keys/changes?from={E(since1)}&to={E(s2["next_batch"]!.GetValue<string>())}")).Ok().Obj;
        Assert.Contains(bob.UserId, Strings(changes["changed"]));

        // Bob deletes that device: its keys are gone and alice hears of it.
        var since2 = s2["next_batch"]!.GetValue<string>();
        var del = await bob.Client.Call("DELETE", $"{C}/devices/{bob2.DeviceId}", new JsonObject());
        var session = del.Obj["session"]!.GetValue<string>();
        (await bob.Client.Call("DELETE", $"{C}/devices/{bob2.DeviceId}", new JsonObject
        {
            ["auth"] = new JsonObject
            {
                ["type"] = "m.login.password", ["session"] = session, ["password"] = "correct horse",
                ["identifier"] = new JsonObject { ["type"] = "m.id.user", ["user"] = bob.UserId },
            },
        })).Ok();
        var s3 = await alice.Client.Sync(since2);
        Assert.Contains(bob.UserId, Strings(s3["device_lists"]!["changed"]));
        var q = (await alice.Client.Post(C + "/keys/query", Query(bob.UserId))).Ok().Obj;
        Assert.False(q["device_keys"]![bob.UserId]!.AsObject().ContainsKey(bob2.DeviceId));

        // Bob leaves the only room they share: left.
        var since3 = s3["next_batch"]!.GetValue<string>();
        (await bob.Client.Post($"{C}/rooms/{E(room)}/leave", new JsonObject())).Ok();
        var s4 = await alice.Client.Sync(since3);
        Assert.Contains(bob.UserId, Strings(s4["device_lists"]!["left"]));
        changes = (await alice.Client.Get($"{C}/keys/changes?from={E(since3)}&to={E(s4["next_batch"]!.GetValue<string>())}")).Ok().Obj;
        Assert.Contains(bob.UserId, Strings(changes["left"]));
        Assert.Equal("M_MISSING_PARAM", (await alice.Client.Get($"{C}/keys/changes?from={E(since3)}")).ErrCode);
        Assert.Equal("M_INVALID_PARAM", (await alice.Client.Get($"{C}/keys/changes?from=x&to=y")).ErrCode);
    }

    [Fact]
    public async Task Cross_signing_keys_and_signatures_are_checked_stored_and_served()
    {
        using var alice = await NewDevice();
        using var bob = await NewDevice();
        await alice.Upload();
        await bob.Upload();
        using var aliceX = CrossSigningKeys.Create(alice);
        using var bobX = CrossSigningKeys.Create(bob);

        // A self-signing key the master did not sign is refused; the first upload needs no auth.
        var badUpload = aliceX.Upload();
        badUpload["self_signing_key"]!["signatures"] = new JsonObject();
        Assert.Equal("M_INVALID_SIGNATURE", (await alice.Client.Post(C + "/keys/device_signing/upload", badUpload)).ErrCode);
        (await alice.Client.Post(C + "/keys/device_signing/upload", aliceX.Upload())).Ok();
        (await bob.Client.Post(C + "/keys/device_signing/upload", bobX.Upload())).Ok();
        // The same keys again need no auth either; new keys do.
        (await alice.Client.Post(C + "/keys/device_signing/upload", aliceX.Upload())).Ok();
        using (var replacement = CrossSigningKeys.Create(alice))
        {
            var r = await alice.Client.Post(C + "/keys/device_signing/upload", replacement.Upload());
            Assert.Equal(HttpStatusCode.Unauthorized, r.Status);
            Assert.Contains("m.login.password", r.Obj["flows"]!.ToJsonString());
        }

        // Alice's self-signing key signs her device; bob's signature on alice's device is refused per key.
        var signedDevice = alice.DeviceKeys();
        CrossSigningKeys.Sign(signedDevice, alice.UserId, aliceX.SelfSigning);
        var r1 = (await alice.Client.Post(C + "/keys/signatures/upload", new JsonObject { [alice.UserId] = new JsonObject { [alice.DeviceId] = signedDevice } })).Ok().Obj;
        Assert.Empty(r1["failures"]!.AsObject());
        var forged = alice.DeviceKeys();
        CrossSigningKeys.Sign(forged, alice.UserId, bobX.SelfSigning);
        var r2 = (await alice.Client.Post(C + "/keys/signatures/upload", new JsonObject { [alice.UserId] = new JsonObject { [alice.DeviceId] = forged } })).Ok().Obj;
        Assert.Equal("M_INVALID_SIGNATURE", r2["failures"]![alice.UserId]![alice.DeviceId]!["errcode"]!.GetValue<string>());

        // Alice's user-signing key signs bob's master key (she verified bob).
        var bobMaster = (JsonObject)bobX.MasterJson.DeepClone();
        CrossSigningKeys.Sign(bobMaster, alice.UserId, aliceX.UserSigning);
        var r3 = (await alice.Client.Post(C + "/keys/signatures/upload", new JsonObject { [bob.UserId] = new JsonObject { [bobX.Master.PublicKeyBase64] = bobMaster } })).Ok().Obj;
        Assert.Empty(r3["failures"]!.AsObject());
        // An unknown key is reported, not stored.
        var r4 = (await alice.Client.Post(C + "/keys/signatures/upload", new JsonObject { [bob.UserId] = new JsonObject { ["NOPE"] = bobMaster.DeepClone() } })).Ok().Obj;
        Assert.Equal("M_NOT_FOUND", r4["failures"]![bob.UserId]!["NOPE"]!["errcode"]!.GetValue<string>());

        var seenByBob = (await bob.Client.Post(C + "/keys/query", Query(alice.UserId, bob.UserId))).Ok().Obj;
        Assert.True(seenByBob["master_keys"]!.AsObject().ContainsKey(alice.UserId));
        Assert.True(seenByBob["self_signing_keys"]!.AsObject().ContainsKey(alice.UserId));
        // The user-signing key only to its owner.
        Assert.False(seenByBob["user_signing_keys"]!.AsObject().ContainsKey(alice.UserId));
        Assert.True(seenByBob["user_signing_keys"]!.AsObject().ContainsKey(bob.UserId));
        var device = seenByBob["device_keys"]![alice.UserId]![alice.DeviceId]!.AsObject();
        Assert.True(JsonSigning.Verify(device, alice.UserId, CrossSigningKeys.IdOf(aliceX.SelfSigning), aliceX.SelfSigning.PublicKey));
        var bobMasterServed = seenByBob["master_keys"]![bob.UserId]!.AsObject();
        Assert.True(JsonSigning.Verify(bobMasterServed, alice.UserId, CrossSigningKeys.IdOf(aliceX.UserSigning), aliceX.UserSigning.PublicKey));
    }

    [Fact]
    public async Task A_dehydrated_device_receives_to_device_messages_while_the_user_is_offline()
    {
        using var alice = await NewDevice();
        using var bob = await NewDevice();
        const string Path = "/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device";
        Assert.Equal("M_NOT_FOUND", (await alice.Client.Get(Path)).ErrCode);
        Assert.True((await alice.Client.Get("/_matrix/client/versions")).Ok().Obj["unstable_features"]!["org.matrix.msc3814"]!.GetValue<bool>());
        var dehydrated = new TestDevice(new MatrixClient(server) { UserId = alice.UserId, DeviceId = "DEHYDRATED1" });
        var put = new JsonObject
        {
            ["device_id"] = dehydrated.DeviceId,
            ["device_data"] = new JsonObject { ["algorithm"] = "org.matrix.msc3814.v1.olm", ["device_pickle"] = "opaque" },
            ["initial_device_display_name"] = "Dehydrated device",
            ["device_keys"] = dehydrated.DeviceKeys(),
            ["one_time_keys"] = dehydrated.OneTimeKeys(3),
            ["fallback_keys"] = new JsonObject { ["signed_curve25519:FB"] = dehydrated.SignedKey("fb", fallback: true) },
        };
        Assert.Equal(dehydrated.DeviceId, (await alice.Client.Put(Path, put)).Ok().Obj["device_id"]!.GetValue<string>());
        Assert.Equal("opaque", (await alice.Client.Get(Path)).Ok().Obj["device_data"]!["device_pickle"]!.GetValue<string>());
        // It is a device others can find and claim keys of, but not one of the sessions /devices lists.
        var q = (await bob.Client.Post(C + "/keys/query", Query(alice.UserId))).Ok().Obj;
        Assert.True(q["device_keys"]![alice.UserId]!.AsObject().ContainsKey(dehydrated.DeviceId));
        Assert.NotEmpty((await Claim(bob.Client, alice.UserId, dehydrated.DeviceId))["one_time_keys"]!.AsObject());
        Assert.DoesNotContain(dehydrated.DeviceId, (await alice.Client.Get(C + "/devices")).Ok().Obj.ToJsonString());

        for (var i = 0; i < 3; i++)
            (await bob.Client.Put($"{C}/sendToDevice/m.room.encrypted/{Txn()}", new JsonObject
            {
                ["messages"] = new JsonObject { [alice.UserId] = new JsonObject { ["*"] = new JsonObject { ["i"] = i } } },
            })).Ok();
        var events = (await alice.Client.Post($"{Path}/{dehydrated.DeviceId}/events", new JsonObject())).Ok().Obj;
        Assert.Equal([0, 1, 2], events["events"]!.AsArray().Select(e => e!["content"]!["i"]!.GetValue<int>()));
        var next = events["next_batch"]!.GetValue<string>();
        Assert.Empty((await alice.Client.Post($"{Path}/{dehydrated.DeviceId}/events", new JsonObject { ["next_batch"] = next })).Ok().Obj["events"]!.AsArray());
        Assert.Equal("M_FORBIDDEN", (await alice.Client.Post($"{Path}/{alice.DeviceId}/events", new JsonObject())).ErrCode);
        // A real device's ID cannot be taken over.
        var takeover = (JsonObject)put.DeepClone();
        takeover["device_id"] = alice.DeviceId;
        Assert.Equal("M_INVALID_PARAM", (await alice.Client.Put(Path, takeover)).ErrCode);

        Assert.Equal(dehydrated.DeviceId, (await alice.Client.Call("DELETE", Path)).Ok().Obj["device_id"]!.GetValue<string>());
        Assert.Equal("M_NOT_FOUND", (await alice.Client.Get(Path)).ErrCode);
        q = (await bob.Client.Post(C + "/keys/query", Query(alice.UserId))).Ok().Obj;
        Assert.False(q["device_keys"]![alice.UserId]!.AsObject().ContainsKey(dehydrated.DeviceId));
    }

    [Fact]
    public async Task Deactivation_deletes_every_key_and_peers_hear_of_it()
    {
        using var alice = await NewDevice();
        using var bob = await NewDevice();
        var room = await alice.Client.CreateRoom(new JsonObject { ["preset"] = "public_chat" });
        (await bob.Client.Post($"{C}/join/{E(room)}", new JsonObject())).Ok();
        await bob.Upload(otks: 3, fallback: "FB");
        using var bobX = CrossSigningKeys.Create(bob);
        (await bob.Client.Post(C + "/keys/device_signing/upload", bobX.Upload())).Ok();
        var since = (await alice.Client.Sync())["next_batch"]!.GetValue<string>();

        var first = await bob.Client.Post(C + "/account/deactivate", new JsonObject());
        (await bob.Client.Post(C + "/account/deactivate", new JsonObject
        {
            ["auth"] = new JsonObject
            {
                ["type"] = "m.login.password", ["session"] = first.Obj["session"]!.GetValue<string>(), ["password"] = "correct horse",
                ["identifier"] = new JsonObject { ["type"] = "m.id.user", ["user"] = bob.UserId },
            },
        })).Ok();
        var q = (await alice.Client.Post(C + "/keys/query", Query(bob.UserId))).Ok().Obj;
        Assert.Empty(q["device_keys"]![bob.UserId]!.AsObject());
        Assert.False(q["master_keys"]!.AsObject().ContainsKey(bob.UserId));
        Assert.Empty((await Claim(alice.Client, bob.UserId, bob.DeviceId))["one_time_keys"]!.AsObject());
        var s = await alice.Client.Sync(since);
        Assert.Contains(bob.UserId, Strings(s["device_lists"]!["left"]).Concat(Strings(s["device_lists"]!["changed"])));
    }
}

/// <summary>A user's three cross-signing keys, each an Ed25519 key whose ID is its public key.</summary>
public sealed class CrossSigningKeys : IDisposable
{
    public required TestDevice Owner { get; init; }
    public required SigningKey Master { get; init; }
    public required SigningKey SelfSigning { get; init; }
    public required SigningKey UserSigning { get; init; }

    // A cross-signing key's ID is "ed25519:" + its public key, which may hold '+' and '/' (not a valid server key
    // version), so these keys sign through Sign below rather than JsonSigning.Sign.
    static SigningKey NamedByPublicKey() => SigningKey.Generate("x");

    public static string IdOf(SigningKey k) => "ed25519:" + k.PublicKeyBase64;

    public static void Sign(JsonObject o, string userId, SigningKey k)
        => JsonSigning.AddSignature(o, userId, IdOf(k), k.SignBase64(JsonSigning.SigningBytes(o)));

    public static CrossSigningKeys Create(TestDevice owner) => new()
    {
        Owner = owner, Master = NamedByPublicKey(), SelfSigning = NamedByPublicKey(), UserSigning = NamedByPublicKey(),
    };

    JsonObject Key(string usage, SigningKey k) => new()
    {
        ["user_id"] = Owner.UserId,
        ["usage"] = new JsonArray(usage),
        ["keys"] = new JsonObject { [IdOf(k)] = k.PublicKeyBase64 },
    };

    public JsonObject MasterJson => Key("master", Master);

    public JsonObject Upload()
    {
        var ssk = Key("self_signing", SelfSigning);
        Sign(ssk, Owner.UserId, Master);
        var usk = Key("user_signing", UserSigning);
        Sign(usk, Owner.UserId, Master);
        return new JsonObject { ["master_key"] = MasterJson, ["self_signing_key"] = ssk, ["user_signing_key"] = usk };
    }

    public void Dispose()
    {
        Master.Dispose();
        SelfSigning.Dispose();
        UserSigning.Dispose();
    }
}

public sealed class AllInOneE2eeTests(AllInOneFixture f) : E2eeTests(f), IClassFixture<AllInOneFixture>;

public sealed class SplitE2eeTests(SplitFixture f) : E2eeTests(f), IClassFixture<SplitFixture>;

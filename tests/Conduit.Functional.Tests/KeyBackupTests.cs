using System.Net;
using System.Text.Json.Nodes;
using Conduit.Common.Storage;
using Conduit.Keys;
using Microsoft.Extensions.DependencyInjection;
using static Conduit.Functional.Tests.MatrixClient;

namespace Conduit.Functional.Tests;

/// <summary>Server-side key backups (spec: client-server-api, "Server-side key backups") through the edge.</summary>
public abstract class KeyBackupTests(ServerFixture server)
{
    const string Alg = "m.megolm_backup.v1.curve25519-aes-sha2";
    const string V = C + "/room_keys/version";
    const string Keys = C + "/room_keys/keys";

    static JsonObject NewVersion(string publicKey = "pk") => new() { ["algorithm"] = Alg, ["auth_data"] = new JsonObject { ["public_key"] = publicKey } };

    static JsonObject KeyData(long index = 0, long forwarded = 0, bool verified = false, string ciphertext = "c") => new()
    {
        ["first_message_index"] = index,
        ["forwarded_count"] = forwarded,
        ["is_verified"] = verified,
        ["session_data"] = new JsonObject { ["ephemeral"] = "e", ["ciphertext"] = ciphertext, ["mac"] = "m" },
    };

    static JsonObject Sessions(params (string Session, JsonObject Data)[] sessions)
    {
        var o = new JsonObject();
        foreach (var (s, d) in sessions) o[s] = d;
        return new JsonObject { ["sessions"] = o };
    }

    static string Room(string name) => $"!{name}:test.local";

    static async Task<string> Create(MatrixClient u, string publicKey = "pk")
        => (await u.Post(V, NewVersion(publicKey))).Ok().Obj["version"]!.GetValue<string>();

    static (long Count, string Etag) State(Response r) => (r.Ok().Obj["count"]!.GetValue<long>(), r.Obj["etag"]!.GetValue<string>());

    static void Error(Response r, HttpStatusCode status, string errcode)
        => Assert.True(r.Status == status && r.ErrCode == errcode, $"expected {(int)status} {errcode}, got {(int)r.Status}: {r.Body?.ToJsonString()}");

    static string Ciphertext(JsonNode? keyData) => keyData!["session_data"]!["ciphertext"]!.GetValue<string>();

    [Fact]
    public async Task Versions_are_created_read_updated_and_deleted()
    {
        var u = await Register(server);
        var none = await u.Get(V);
        Error(none, HttpStatusCode.NotFound, "M_NOT_FOUND");
        Assert.Equal("No current backup version", none.Obj["error"]!.GetValue<string>());

        var v1 = await Create(u);
        var info = (await u.Get(V)).Ok().Obj;
        Assert.Equal((Alg, "pk", 0L, v1), (info["algorithm"]!.GetValue<string>(), info["auth_data"]!["public_key"]!.GetValue<string>(), info["count"]!.GetValue<long>(), info["version"]!.GetValue<string>()));
        Assert.IsType<string>(info["etag"]!.GetValue<string>());
        Assert.Equal(info.ToJsonString(), (await u.Get($"{V}/{v1}")).Ok().Obj.ToJsonString());
        // The same through r0.
        Assert.Equal(v1, (await u.Get($"/_matrix/client/r0/room_keys/version/{v1}")).Ok().Obj["version"]!.GetValue<string>());

        // Update: only auth_data changes; the body's version, if present, must match; the algorithm must stay.
        (await u.Put($"{V}/{v1}", new JsonObject { ["algorithm"] = Alg, ["auth_data"] = new JsonObject { ["public_key"] = "pk2" }, ["version"] = v1 })).Ok();
        Assert.Equal("pk2", (await u.Get(V)).Ok().Obj["auth_data"]!["public_key"]!.GetValue<string>());
        Error(await u.Put($"{V}/{v1}", new JsonObject { ["algorithm"] = Alg, ["auth_data"] = new JsonObject(), ["version"] = v1 + "0" }), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Error(await u.Put($"{V}/{v1}", new JsonObject { ["algorithm"] = "org.example.other", ["auth_data"] = new JsonObject() }), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Assert.Equal("pk2", (await u.Get(V)).Ok().Obj["auth_data"]!["public_key"]!.GetValue<string>());
        Error(await u.Put($"{V}/999", NewVersion()), HttpStatusCode.NotFound, "M_NOT_FOUND");

        // A newer version becomes current; deleting it makes the older one current again.
        var v2 = await Create(u, "pk3");
        Assert.NotEqual(v1, v2);
        Assert.Equal(v2, (await u.Get(V)).Ok().Obj["version"]!.GetValue<string>());
        (await u.Call("DELETE", $"{V}/{v2}")).Ok();
        (await u.Call("DELETE", $"{V}/{v2}")).Ok();
        Error(await u.Get($"{V}/{v2}"), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Error(await u.Put($"{V}/{v2}", NewVersion()), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Assert.Equal(v1, (await u.Get(V)).Ok().Obj["version"]!.GetValue<string>());
        (await u.Call("DELETE", $"{V}/{v1}")).Ok();
        Error(await u.Get(V), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Error(await u.Call("DELETE", $"{V}/999"), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Error(await u.Get($"{V}/not-a-version"), HttpStatusCode.NotFound, "M_NOT_FOUND");
        // Numbers are not reused after a deletion.
        Assert.NotEqual(v2, await Create(u));
    }

    [Fact]
    public async Task Keys_are_stored_read_and_deleted_at_three_levels_with_count_and_etag()
    {
        var u = await Register(server);
        var v = await Create(u);
        var q = "?version=" + v;
        string r1 = Room("one"), r2 = Room("two"), r3 = Room("three");

        var (count, etag0) = State(await u.Put($"{Keys}/{E(r1)}/s1{q}", KeyData(ciphertext: "one-s1")));
        Assert.Equal(1, count);
        var (count2, etag1) = State(await u.Put($"{Keys}/{E(r1)}{q}", Sessions(("s2", KeyData(ciphertext: "one-s2")), ("s3", KeyData(ciphertext: "one-s3")))));
        Assert.Equal(3, count2);
        Assert.NotEqual(etag0, etag1);
        var (count3, etag2) = State(await u.Put($"{Keys}{q}", new JsonObject
        {
            ["rooms"] = new JsonObject { [r2] = Sessions(("s1", KeyData(ciphertext: "two-s1"))), [r3] = Sessions(("s1", KeyData(ciphertext: "three-s1"))) },
        }));
        Assert.Equal(5, count3);
        Assert.NotEqual(etag1, etag2);
        var info = (await u.Get(V)).Ok().Obj;
        Assert.Equal((5L, etag2), (info["count"]!.GetValue<long>(), info["etag"]!.GetValue<string>()));

        Assert.Equal("one-s2", Ciphertext((await u.Get($"{Keys}/{E(r1)}/s2{q}")).Ok().Body));
        var room = (await u.Get($"{Keys}/{E(r1)}{q}")).Ok().Obj["sessions"]!.AsObject();
        Assert.Equal(["s1", "s2", "s3"], room.Select(p => p.Key).Order());
        Assert.Equal(KeyData(ciphertext: "one-s3").ToJsonString(), room["s3"]!.ToJsonString());
        var all = (await u.Get($"{Keys}{q}")).Ok().Obj["rooms"]!.AsObject();
        Assert.Equal([r1, r3, r2], all.Select(p => p.Key).Order(StringComparer.Ordinal));
        Assert.Equal("three-s1", Ciphertext(all[r3]!["sessions"]!["s1"]));

        // Missing: a session is 404, a room is an empty set of sessions.
        Error(await u.Get($"{Keys}/{E(r1)}/nope{q}"), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Assert.Empty((await u.Get($"{Keys}/{E(Room("empty"))}{q}")).Ok().Obj["sessions"]!.AsObject());

        var (c4, etag4) = State(await u.Call("DELETE", $"{Keys}/{E(r1)}/s1{q}"));
        Assert.Equal(4, c4);
        Assert.NotEqual(etag2, etag4);
        Error(await u.Get($"{Keys}/{E(r1)}/s1{q}"), HttpStatusCode.NotFound, "M_NOT_FOUND");
        // Deleting what is not there changes nothing.
        Assert.Equal((4L, etag4), State(await u.Call("DELETE", $"{Keys}/{E(r1)}/s1{q}")));
        var (c5, etag5) = State(await u.Call("DELETE", $"{Keys}/{E(r1)}{q}"));
        Assert.Equal(2, c5);
        Assert.NotEqual(etag4, etag5);
        Assert.Equal([r3, r2], (await u.Get($"{Keys}{q}")).Ok().Obj["rooms"]!.AsObject().Select(p => p.Key).Order(StringComparer.Ordinal));
        var (c6, etag6) = State(await u.Call("DELETE", $"{Keys}{q}"));
        Assert.Equal(0, c6);
        Assert.NotEqual(etag5, etag6);
        Assert.Empty((await u.Get($"{Keys}{q}")).Ok().Obj["rooms"]!.AsObject());
        Assert.Equal(0, (await u.Get(V)).Ok().Obj["count"]!.GetValue<long>());

        // Deleting the version deletes its keys: they cannot be read, and a new version starts empty.
        (await u.Put($"{Keys}/{E(r1)}/s1{q}", KeyData())).Ok();
        (await u.Call("DELETE", $"{V}/{v}")).Ok();
        Error(await u.Get($"{Keys}{q}"), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Error(await u.Call("DELETE", $"{Keys}{q}"), HttpStatusCode.NotFound, "M_NOT_FOUND");
        var next = await Create(u);
        Assert.Equal(0, (await u.Get(V)).Ok().Obj["count"]!.GetValue<long>());
        Assert.Empty((await u.Get($"{Keys}?version={next}")).Ok().Obj["rooms"]!.AsObject());
    }

    [Fact]
    public async Task The_better_key_is_kept_in_the_spec_order()
    {
        var u = await Register(server);
        var q = "?version=" + await Create(u);
        var path = $"{Keys}/{E(Room("r"))}/s{q}";
        var (_, etag) = State(await u.Put(path, KeyData(index: 0, forwarded: 0, verified: false, ciphertext: "unverified")));
        // Verified beats unverified even with a higher index (Synapse kept the unverified one here: its #13704).
        var (count, etag2) = State(await u.Put(path, KeyData(index: 10, forwarded: 2, verified: true, ciphertext: "verified")));
        Assert.Equal(1, count);
        Assert.NotEqual(etag, etag2);
        Assert.Equal("verified", Ciphertext((await u.Get(path)).Ok().Body));
        // Not replaced by an unverified key, nor by a verified one with a higher index or as many forwards: same etag.
        Assert.Equal((1L, etag2), State(await u.Put(path, KeyData(index: 0, forwarded: 0, verified: false, ciphertext: "worse"))));
        Assert.Equal((1L, etag2), State(await u.Put(path, KeyData(index: 11, forwarded: 0, verified: true, ciphertext: "worse"))));
        Assert.Equal((1L, etag2), State(await u.Put(path, KeyData(index: 10, forwarded: 2, verified: true, ciphertext: "tie"))));
        Assert.Equal("verified", Ciphertext((await u.Get(path)).Ok().Body));
        // A lower index wins, then fewer forwards.
        (await u.Put(path, KeyData(index: 5, forwarded: 9, verified: true, ciphertext: "lower index"))).Ok();
        Assert.Equal("lower index", Ciphertext((await u.Get(path)).Ok().Body));
        (await u.Put(path, KeyData(index: 5, forwarded: 1, verified: true, ciphertext: "fewer forwards"))).Ok();
        Assert.Equal("fewer forwards", Ciphertext((await u.Get(path)).Ok().Body));
    }

    [Fact]
    public async Task Keys_go_only_to_the_current_version()
    {
        var u = await Register(server);
        var key = $"{Keys}/{E(Room("r"))}/s";
        // No backup at all.
        Error(await u.Put($"{key}?version=1", KeyData()), HttpStatusCode.NotFound, "M_NOT_FOUND");
        var v1 = await Create(u);
        (await u.Put($"{key}?version={v1}", KeyData())).Ok();
        var v2 = await Create(u);
        foreach (var (path, body) in new (string, JsonObject)[]
        {
            ($"{key}?version={v1}", KeyData()),
            ($"{Keys}/{E(Room("r"))}?version={v1}", Sessions(("s", KeyData()))),
            ($"{Keys}?version=nonsense", new JsonObject { ["rooms"] = new JsonObject() }),
        })
        {
            var r = await u.Put(path, body);
            Error(r, HttpStatusCode.Forbidden, "M_WRONG_ROOM_KEYS_VERSION");
            Assert.Equal(v2, r.Obj["current_version"]!.GetValue<string>());
        }
        // The old version still answers reads and deletes.
        Assert.Equal("c", Ciphertext((await u.Get($"{key}?version={v1}")).Ok().Body));
        Assert.Equal(0, State(await u.Call("DELETE", $"{Keys}?version={v1}")).Count);
        // version is required on every keys path and method.
        foreach (var method in new[] { "GET", "PUT", "DELETE" })
            foreach (var path in new[] { Keys, $"{Keys}/{E(Room("r"))}", key })
                Error(await u.Call(method, path, method == "PUT" ? KeyData() : null), HttpStatusCode.BadRequest, "M_MISSING_PARAM");
    }

    [Fact]
    public async Task Bad_input_gets_a_Matrix_error_and_writes_nothing()
    {
        var u = await Register(server);
        var v = await Create(u);
        var q = "?version=" + v;
        var session = $"{Keys}/{E(Room("r"))}/s{q}";
        var before = (await u.Get(V)).Ok().Obj;

        Error(await u.Call("POST", V, rawBody: "{not json"), HttpStatusCode.BadRequest, "M_NOT_JSON");
        Error(await u.Post(V, new JsonObject { ["algorithm"] = 5, ["auth_data"] = new JsonObject() }), HttpStatusCode.BadRequest, "M_BAD_JSON");
        Error(await u.Post(V, new JsonObject { ["algorithm"] = Alg, ["auth_data"] = "x" }), HttpStatusCode.BadRequest, "M_BAD_JSON");
        Error(await u.Post(V, new JsonObject { ["algorithm"] = Alg }), HttpStatusCode.BadRequest, "M_MISSING_PARAM");
        Error(await u.Post(V, new JsonObject { ["auth_data"] = new JsonObject() }), HttpStatusCode.BadRequest, "M_MISSING_PARAM");
        Error(await u.Put($"{V}/{v}", new JsonObject { ["algorithm"] = Alg, ["auth_data"] = new JsonArray() }), HttpStatusCode.BadRequest, "M_BAD_JSON");
        Error(await u.Put($"{V}/{v}", new JsonObject { ["algorithm"] = Alg, ["auth_data"] = new JsonObject(), ["version"] = 1 }), HttpStatusCode.BadRequest, "M_BAD_JSON");
        Assert.Equal(v, (await u.Get(V)).Ok().Obj["version"]!.GetValue<string>());

        foreach (var (field, value) in new (string, JsonNode?)[]
        {
            ("first_message_index", -1), ("first_message_index", "0"), ("first_message_index", 1.5), ("first_message_index", true),
            ("forwarded_count", -1), ("forwarded_count", "0"), ("forwarded_count", new JsonArray()),
            ("is_verified", "true"), ("is_verified", 1),
            ("session_data", "x"), ("session_data", new JsonArray()), ("session_data", 1),
        })
        {
            var data = KeyData();
            data[field] = value;
            Error(await u.Put(session, data), HttpStatusCode.BadRequest, "M_BAD_JSON");
        }
        foreach (var field in new[] { "first_message_index", "forwarded_count", "is_verified", "session_data" })
        {
            var data = KeyData();
            data.Remove(field);
            Error(await u.Put(session, data), HttpStatusCode.BadRequest, "M_MISSING_PARAM");
        }
        Error(await u.Call("PUT", session, rawBody: "[]"), HttpStatusCode.BadRequest, "M_BAD_JSON");
        Error(await u.Call("PUT", session, rawBody: "{\"first_message_index\":0,"), HttpStatusCode.BadRequest, "M_NOT_JSON");

        // An invalid room ID in the path, on every method; in a body, as a key of rooms.
        foreach (var method in new[] { "GET", "PUT", "DELETE" })
        {
            Error(await u.Call(method, $"{Keys}/not-a-room{q}", method == "PUT" ? Sessions() : null), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
            Error(await u.Call(method, $"{Keys}/not-a-room/s{q}", method == "PUT" ? KeyData() : null), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        }
        Error(await u.Put($"{Keys}{q}", new JsonObject { ["rooms"] = new JsonObject { ["not-a-room"] = Sessions(("s", KeyData())) } }), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Error(await u.Put($"{Keys}{q}", new JsonObject { ["rooms"] = new JsonObject { [Room("r")] = "x" } }), HttpStatusCode.BadRequest, "M_BAD_JSON");
        Error(await u.Put($"{Keys}{q}", new JsonObject { ["rooms"] = new JsonArray() }), HttpStatusCode.BadRequest, "M_BAD_JSON");
        Error(await u.Put($"{Keys}{q}", new JsonObject()), HttpStatusCode.BadRequest, "M_MISSING_PARAM");
        Error(await u.Put($"{Keys}/{E(Room("r"))}{q}", new JsonObject { ["sessions"] = new JsonObject { ["s"] = 5 } }), HttpStatusCode.BadRequest, "M_BAD_JSON");
        Error(await u.Put($"{Keys}/{E(Room("r"))}{q}", new JsonObject { ["sessions"] = new JsonObject { [""] = KeyData() } }), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Error(await u.Put($"{Keys}/{E(Room("r"))}{q}", new JsonObject()), HttpStatusCode.BadRequest, "M_MISSING_PARAM");

        // All or nothing: good keys beside one bad one are not stored either.
        var bad = KeyData();
        bad["forwarded_count"] = -5;
        Error(await u.Put($"{Keys}{q}", new JsonObject
        {
            ["rooms"] = new JsonObject
            {
                [Room("a")] = Sessions(("s1", KeyData()), ("s2", KeyData())),
                [Room("b")] = Sessions(("s1", KeyData()), ("s2", bad)),
            },
        }), HttpStatusCode.BadRequest, "M_BAD_JSON");
        Assert.Equal(before.ToJsonString(), (await u.Get(V)).Ok().Obj.ToJsonString());
        Assert.Empty((await u.Get($"{Keys}{q}")).Ok().Obj["rooms"]!.AsObject());
    }

    [Fact]
    public async Task A_user_never_sees_or_touches_another_users_backup()
    {
        var alice = await Register(server);
        var bob = await Register(server);
        var v = await Create(alice);
        var q = "?version=" + v;
        var key = $"{Keys}/{E(Room("r"))}/s{q}";
        (await alice.Put(key, KeyData(ciphertext: "alice's"))).Ok();

        Error(await bob.Get(V), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Error(await bob.Get($"{V}/{v}"), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Error(await bob.Put($"{V}/{v}", NewVersion("bob's")), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Error(await bob.Call("DELETE", $"{V}/{v}"), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Error(await bob.Get(key), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Error(await bob.Get($"{Keys}{q}"), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Error(await bob.Put(key, KeyData(ciphertext: "bob's")), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Error(await bob.Call("DELETE", $"{Keys}{q}"), HttpStatusCode.NotFound, "M_NOT_FOUND");
        // Bob's own backup is separate, even with the same version number.
        var bv = await Create(bob, "bob's");
        (await bob.Put($"{Keys}/{E(Room("r"))}/s?version={bv}", KeyData(index: 0, verified: true, ciphertext: "bob's"))).Ok();
        (await bob.Call("DELETE", $"{Keys}?version={bv}")).Ok();

        var info = (await alice.Get(V)).Ok().Obj;
        Assert.Equal(("pk", 1L), (info["auth_data"]!["public_key"]!.GetValue<string>(), info["count"]!.GetValue<long>()));
        Assert.Equal("alice's", Ciphertext((await alice.Get(key)).Ok().Body));
    }

    [Fact]
    public async Task Deactivation_deletes_the_backup()
    {
        var u = await Register(server, password: "secret");
        var other = await Register(server);
        var v1 = await Create(u);
        (await u.Put($"{Keys}/{E(Room("r"))}/s?version={v1}", KeyData())).Ok();
        var v2 = await Create(u);
        (await u.Call("DELETE", $"{V}/{v2}")).Ok();
        var kept = await Create(other);
        (await other.Put($"{Keys}/{E(Room("r"))}/s?version={kept}", KeyData())).Ok();

        var auth = new JsonObject { ["type"] = "m.login.password", ["identifier"] = new JsonObject { ["type"] = "m.id.user", ["user"] = u.UserId }, ["password"] = "secret" };
        (await u.Post(C + "/account/deactivate", new JsonObject { ["auth"] = auth })).Ok();

        // The user has no token any more: ask the keys service itself.
        switch (server)
        {
            case AllInOneFixture aio:
                var kv = aio.Services.GetRequiredService<IKeyValueStore>();
                Assert.Empty(kv.Map(KeysFamilies.BackupVersions).Scan(KeysFamilies.BackupUserPrefix(u.UserId)));
                Assert.Empty(kv.Map(KeysFamilies.BackupSessions).Scan(KeysFamilies.BackupUserPrefix(u.UserId)));
                break;
            case SplitFixture split:
                Error(await AsUserAtKeysService(split, u.UserId, "GET", V), HttpStatusCode.NotFound, "M_NOT_FOUND");
                Error(await AsUserAtKeysService(split, u.UserId, "GET", $"{Keys}?version={v1}"), HttpStatusCode.NotFound, "M_NOT_FOUND");
                // Not even the deleted version's tombstone is left (deleting it again would succeed).
                Error(await AsUserAtKeysService(split, u.UserId, "DELETE", $"{V}/{v2}"), HttpStatusCode.NotFound, "M_NOT_FOUND");
                // Nor can a request that got past the edge create a new one.
                Error(await AsUserAtKeysService(split, u.UserId, "POST", V, NewVersion()), HttpStatusCode.Forbidden, "M_USER_DEACTIVATED");
                break;
            default:
                throw new InvalidOperationException($"no way to look inside {server.Mode}");
        }
        Assert.Equal(1, (await other.Get(V)).Ok().Obj["count"]!.GetValue<long>());
    }

    /// <summary>A request to the keys service's own listener as the edge sends it (internal secret, caller header).</summary>
    static async Task<Response> AsUserAtKeysService(SplitFixture split, string userId, string method, string path, JsonNode? body = null)
    {
        using var http = new HttpClient();
        using var req = new HttpRequestMessage(new HttpMethod(method), split.Addresses["keys"] + path);
        req.Headers.Add("x-conduit-internal", split.Secret);
        req.Headers.Add("X-Conduit-User", userId);
        req.Headers.Add("X-Conduit-Device", "GONE");
        (req.Version, req.VersionPolicy) = (HttpVersion.Version20, HttpVersionPolicy.RequestVersionExact);
        if (body is not null) req.Content = new StringContent(body.ToJsonString(), System.Text.Encoding.UTF8, "application/json");
        using var resp = await http.SendAsync(req);
        return new Response(resp.StatusCode, JsonNode.Parse(await resp.Content.ReadAsStringAsync()));
    }
}

public sealed class AllInOneKeyBackupTests(AllInOneFixture f) : KeyBackupTests(f), IClassFixture<AllInOneFixture>;

public sealed class SplitKeyBackupTests(SplitFixture f) : KeyBackupTests(f), IClassFixture<SplitFixture>;

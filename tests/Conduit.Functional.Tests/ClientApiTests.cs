using System.Diagnostics;
using System.Net;
using System.Text.Json.Nodes;
using static Conduit.Functional.Tests.MatrixClient;

namespace Conduit.Functional.Tests;

/// <summary>The client-server API through the edge. The same tests run all-in-one and split.</summary>
public abstract class ClientApiTests(ServerFixture server)
{
    // ---- edge

    [Fact]
    public async Task Versions_and_cors_preflight()
    {
        var anon = new MatrixClient(server);
        var v = (await anon.Get("/_matrix/client/versions")).Ok().Obj;
        Assert.Contains("v1.1", v["versions"]!.AsArray().Select(n => n!.GetValue<string>()));
        using var req = new HttpRequestMessage(HttpMethod.Options, server.BaseUrl + C + "/sync");
        req.Headers.Add("Origin", "https://app.element.io");
        using var resp = await server.Http.SendAsync(req);
        Assert.Equal(HttpStatusCode.OK, resp.StatusCode);
        Assert.Equal("*", resp.Headers.GetValues("Access-Control-Allow-Origin").Single());
    }

    [Fact]
    public async Task Bad_requests_get_matrix_errors()
    {
        var u = await Register(server);
        var unknown = await u.Get(C + "/no/such/endpoint");
        Assert.Equal((HttpStatusCode.NotFound, "M_UNRECOGNIZED"), (unknown.Status, unknown.ErrCode));
        var wrongMethod = await u.Call("DELETE", C + "/createRoom");
        Assert.Equal((HttpStatusCode.MethodNotAllowed, "M_UNRECOGNIZED"), (wrongMethod.Status, wrongMethod.ErrCode));
        var notJson = await u.Call("POST", C + "/createRoom", rawBody: "{not json");
        Assert.Equal((HttpStatusCode.BadRequest, "M_NOT_JSON"), (notJson.Status, notJson.ErrCode));
        var badJson = await u.Post(C + "/createRoom", new JsonObject { ["name"] = 5 });
        Assert.Equal((HttpStatusCode.BadRequest, "M_BAD_JSON"), (badJson.Status, badJson.ErrCode));
        var missing = await new MatrixClient(server).Get(C + "/account/whoami");
        Assert.Equal((HttpStatusCode.Unauthorized, "M_MISSING_TOKEN"), (missing.Status, missing.ErrCode));
        var unknownToken = await new MatrixClient(server, "syt_nonsense").Get(C + "/account/whoami");
        Assert.Equal((HttpStatusCode.Unauthorized, "M_UNKNOWN_TOKEN"), (unknownToken.Status, unknownToken.ErrCode));
        // Refused from Content-Length before the body is read (the client waits for 100-continue, as browsers' fetch of large uploads may not).
        using var big = new HttpRequestMessage(HttpMethod.Put, $"{server.BaseUrl}{C}/user/{E(u.UserId)}/account_data/big")
        {
            Content = new StringContent(new JsonObject { ["x"] = new string('a', 1_100_000) }.ToJsonString()),
        };
        big.Headers.ExpectContinue = true;
        big.Headers.Authorization = new("Bearer", u.Token);
        using var tooLarge = await server.Http.SendAsync(big);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, tooLarge.StatusCode);
        Assert.Contains("M_TOO_LARGE", await tooLarge.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task Forged_identity_headers_are_ignored()
    {
        var victim = await Register(server);
        var anon = new MatrixClient(server);
        using var req = new HttpRequestMessage(HttpMethod.Get, server.BaseUrl + C + "/account/whoami");
        req.Headers.Add("X-Conduit-User", victim.UserId);
        req.Headers.Add("X-Conduit-Device", victim.DeviceId);
        using var resp = await server.Http.SendAsync(req);
        Assert.Equal(HttpStatusCode.Unauthorized, resp.StatusCode);
    }

    // ---- accounts

    [Fact]
    public async Task Registration_login_and_logout()
    {
        var name = UniqueName("reg");
        var anon = new MatrixClient(server);
        (await anon.Get($"{C}/register/available?username={name}")).Ok();
        var u = await Register(server, name, "pw1");
        Assert.Equal($"@{name}:{server.ServerName}", u.UserId);
        var taken = await anon.Get($"{C}/register/available?username={name}");
        Assert.Equal("M_USER_IN_USE", taken.ErrCode);
        var again = await anon.Call("POST", C + "/register", new JsonObject { ["username"] = name, ["password"] = "x" }, auth: false);
        Assert.Equal("M_USER_IN_USE", again.ErrCode);
        var invalid = await anon.Call("POST", C + "/register", new JsonObject { ["username"] = "bad name!", ["password"] = "x" }, auth: false);
        Assert.Equal("M_INVALID_USERNAME", invalid.ErrCode);

        var wrong = await anon.Post(C + "/login", new JsonObject { ["type"] = "m.login.password", ["identifier"] = new JsonObject { ["type"] = "m.id.user", ["user"] = name }, ["password"] = "nope" });
        Assert.Equal((HttpStatusCode.Forbidden, "M_FORBIDDEN"), (wrong.Status, wrong.ErrCode));
        // The legacy top-level "user" field and the r0 path still work (Hydrogen, Conduit's docs).
        var login = (await anon.Post("/_matrix/client/r0/login", new JsonObject { ["type"] = "m.login.password", ["user"] = u.UserId, ["password"] = "pw1" })).Ok().Obj;
        var second = new MatrixClient(server, login["access_token"]!.GetValue<string>());
        Assert.Equal(u.UserId, (await second.Get(C + "/account/whoami")).Ok().Obj["user_id"]!.GetValue<string>());

        (await second.Post(C + "/logout", new JsonObject())).Ok();
        Assert.Equal("M_UNKNOWN_TOKEN", (await second.Get(C + "/account/whoami")).ErrCode);
        (await u.Get(C + "/account/whoami")).Ok();
        (await u.Post(C + "/logout/all", new JsonObject())).Ok();
        Assert.Equal("M_UNKNOWN_TOKEN", (await u.Get(C + "/account/whoami")).ErrCode);
    }

    [Fact]
    public async Task Devices_rename_and_delete_behind_uia()
    {
        var u = await Register(server, password: "secret");
        var devices = (await u.Get(C + "/devices")).Ok().Obj["devices"]!.AsArray();
        Assert.Single(devices);
        (await u.Put($"{C}/devices/{u.DeviceId}", new JsonObject { ["display_name"] = "phone" })).Ok();
        Assert.Equal("phone", (await u.Get($"{C}/devices/{u.DeviceId}")).Ok().Obj["display_name"]!.GetValue<string>());

        var other = new MatrixClient(server);
        var login = (await other.Post(C + "/login", new JsonObject { ["type"] = "m.login.password", ["user"] = u.UserId, ["password"] = "secret" })).Ok().Obj;
        other.Token = login["access_token"]!.GetValue<string>();
        var otherDevice = login["device_id"]!.GetValue<string>();

        var challenge = await u.Call("DELETE", $"{C}/devices/{otherDevice}", new JsonObject());
        Assert.Equal(HttpStatusCode.Unauthorized, challenge.Status);
        Assert.Null(challenge.ErrCode);
        var session = challenge.Obj["session"]!.GetValue<string>();
        var badPw = await u.Call("DELETE", $"{C}/devices/{otherDevice}", new JsonObject { ["auth"] = new JsonObject { ["type"] = "m.login.password", ["identifier"] = new JsonObject { ["type"] = "m.id.user", ["user"] = u.UserId }, ["password"] = "wrong", ["session"] = session } });
        Assert.Equal((HttpStatusCode.Unauthorized, "M_FORBIDDEN"), (badPw.Status, badPw.ErrCode));
        (await u.Call("DELETE", $"{C}/devices/{otherDevice}", new JsonObject { ["auth"] = new JsonObject { ["type"] = "m.login.password", ["identifier"] = new JsonObject { ["type"] = "m.id.user", ["user"] = u.UserId }, ["password"] = "secret", ["session"] = session } })).Ok();
        Assert.Equal("M_UNKNOWN_TOKEN", (await other.Get(C + "/account/whoami")).ErrCode);
        Assert.Single((await u.Get(C + "/devices")).Ok().Obj["devices"]!.AsArray());
    }

    [Fact]
    public async Task Password_change_and_deactivation()
    {
        var u = await Register(server, password: "old");
        var room = await u.CreateRoom();
        var auth = (string pw) => new JsonObject { ["type"] = "m.login.password", ["identifier"] = new JsonObject { ["type"] = "m.id.user", ["user"] = u.UserId }, ["password"] = pw };
        var ch = await u.Post(C + "/account/password", new JsonObject { ["new_password"] = "new" });
        Assert.Equal(HttpStatusCode.Unauthorized, ch.Status);
        (await u.Post(C + "/account/password", new JsonObject { ["new_password"] = "new", ["auth"] = auth("old") })).Ok();
        var anon = new MatrixClient(server);
        (await anon.Post(C + "/login", new JsonObject { ["type"] = "m.login.password", ["user"] = u.UserId, ["password"] = "new" })).Ok();

        (await u.Post(C + "/account/deactivate", new JsonObject { ["auth"] = auth("new") })).Ok();
        Assert.Equal("M_UNKNOWN_TOKEN", (await u.Get(C + "/account/whoami")).ErrCode);
        var relog = await anon.Post(C + "/login", new JsonObject { ["type"] = "m.login.password", ["user"] = u.UserId, ["password"] = "new" });
        Assert.Equal(HttpStatusCode.Forbidden, relog.Status);
        var reg = await anon.Call("POST", C + "/register", new JsonObject { ["username"] = u.UserId[1..u.UserId.IndexOf(':')], ["password"] = "x" }, auth: false);
        Assert.Equal("M_USER_IN_USE", reg.ErrCode);
    }

    [Fact]
    public async Task Profile_changes_update_member_events()
    {
        var u = await Register(server);
        var room = await u.CreateRoom();
        (await u.Put($"{C}/profile/{E(u.UserId)}/displayname", new JsonObject { ["displayname"] = "Alice Liddell" })).Ok();
        Assert.Equal("Alice Liddell", (await new MatrixClient(server).Get($"{C}/profile/{E(u.UserId)}")).Ok().Obj["displayname"]!.GetValue<string>());
        var member = (await u.Get($"{C}/rooms/{E(room)}/state/m.room.member/{E(u.UserId)}")).Ok().Obj;
        Assert.Equal("Alice Liddell", member["displayname"]!.GetValue<string>());
        var other = await Register(server);
        var forbidden = await other.Put($"{C}/profile/{E(u.UserId)}/displayname", new JsonObject { ["displayname"] = "Mallory" });
        Assert.Equal((HttpStatusCode.Forbidden, "M_FORBIDDEN"), (forbidden.Status, forbidden.ErrCode));
        Assert.Equal("M_NOT_FOUND", (await u.Get($"{C}/profile/{E("@nobody:" + server.ServerName)}")).ErrCode);
    }

    // ---- rooms, messages, sync

    [Fact]
    public async Task Two_users_talk_and_see_each_other_live()
    {
        var alice = await Register(server);
        var bob = await Register(server);
        var room = await alice.CreateRoom(new JsonObject { ["name"] = "Tea party", ["invite"] = new JsonArray(bob.UserId) });
        var bobSync = await bob.Sync();
        Assert.NotNull(bobSync["rooms"]!["invite"]![room]);
        var stripped = bobSync["rooms"]!["invite"]![room]!["invite_state"]!["events"]!.AsArray();
        Assert.Contains(stripped, e => e!["type"]!.GetValue<string>() == "m.room.name" && e["content"]!["name"]!.GetValue<string>() == "Tea party");

        (await bob.Post($"{C}/rooms/{E(room)}/join", new JsonObject())).Ok();
        var since = (await bob.Sync())["next_batch"]!.GetValue<string>();

        // Bob waits; Alice's message must wake his long-poll rather than wait out the timeout.
        var sw = Stopwatch.StartNew();
        var waiting = bob.Sync(since, timeoutMs: 30_000);
        await Task.Delay(300);
        Assert.False(waiting.IsCompleted, "a sync with nothing new must wait");
        await alice.SendText(room, "hello bob");
        var woke = await waiting;
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(15), $"sync took {sw.Elapsed}");
        Assert.Equal(["hello bob"], TimelineBodies(woke, room));

        await bob.SendText(room, "hi alice");
        var aliceSync = await alice.Sync();
        Assert.Contains("hi alice", TimelineBodies(aliceSync, room));
        Assert.Equal(2, aliceSync["rooms"]!["join"]![room]!["summary"]!["m.joined_member_count"]!.GetValue<int>());
        var joined = (await bob.Get($"{C}/joined_rooms")).Ok().Obj["joined_rooms"]!.AsArray().Select(n => n!.GetValue<string>());
        Assert.Contains(room, joined);
        var members = (await bob.Get($"{C}/rooms/{E(room)}/joined_members")).Ok().Obj["joined"]!.AsObject();
        Assert.True(members.ContainsKey(alice.UserId) && members.ContainsKey(bob.UserId));
    }

    [Fact]
    public async Task A_sync_right_after_a_send_sees_it()
    {
        // Read-your-writes: a /sync with timeout=0 issued after the 200 of a send must include that event, even
        // if the sync service's notifier has not yet heard of it.
        var alice = await Register(server);
        var room = await alice.CreateRoom();
        var since = (await alice.Sync())["next_batch"]!.GetValue<string>();
        for (var i = 0; i < 30; i++)
        {
            await alice.SendText(room, $"n{i}");
            var s = await alice.Sync(since);
            Assert.Equal([$"n{i}"], TimelineBodies(s, room));
            since = s["next_batch"]!.GetValue<string>();
        }
    }

    [Fact]
    public async Task Transaction_ids_make_sends_idempotent()
    {
        var u = await Register(server);
        var room = await u.CreateRoom();
        var path = $"{C}/rooms/{E(room)}/send/m.room.message/same-txn";
        var a = (await u.Put(path, new JsonObject { ["msgtype"] = "m.text", ["body"] = "once" })).Ok().Obj["event_id"]!.GetValue<string>();
        var b = (await u.Put(path, new JsonObject { ["msgtype"] = "m.text", ["body"] = "once" })).Ok().Obj["event_id"]!.GetValue<string>();
        Assert.Equal(a, b);
        var msgs = (await u.Get($"{C}/rooms/{E(room)}/messages?dir=b&limit=50")).Ok().Obj["chunk"]!.AsArray();
        Assert.Single(msgs, e => e!["content"]?["body"]?.GetValue<string>() == "once");
        // The sending device sees its transaction ID; the event ID is a v4+ reference hash.
        var mine = msgs.Single(e => e!["event_id"]!.GetValue<string>() == a)!;
        Assert.Equal("same-txn", mine["unsigned"]!["transaction_id"]!.GetValue<string>());
        Assert.Matches("^\\$[A-Za-z0-9_-]{43}$", a);
    }

    [Fact]
    public async Task Messages_paginate_backwards_and_forwards()
    {
        var u = await Register(server);
        var room = await u.CreateRoom();
        for (var i = 0; i < 5; i++) await u.SendText(room, $"m{i}");
        var page1 = (await u.Get($"{C}/rooms/{E(room)}/messages?dir=b&limit=2")).Ok().Obj;
        Assert.Equal(["m4", "m3"], page1["chunk"]!.AsArray().Select(e => e!["content"]!["body"]!.GetValue<string>()));
        var page2 = (await u.Get($"{C}/rooms/{E(room)}/messages?dir=b&limit=2&from={E(page1["end"]!.GetValue<string>())}")).Ok().Obj;
        Assert.Equal(["m2", "m1"], page2["chunk"]!.AsArray().Select(e => e!["content"]!["body"]!.GetValue<string>()));
        var forward = (await u.Get($"{C}/rooms/{E(room)}/messages?dir=f&limit=100&from={E(page2["end"]!.GetValue<string>())}")).Ok().Obj;
        Assert.Equal(["m1", "m2", "m3", "m4"], forward["chunk"]!.AsArray().Where(e => e!["type"]!.GetValue<string>() == "m.room.message").Select(e => e!["content"]!["body"]!.GetValue<string>()));

        // A limited sync's prev_batch continues into /messages.
        var sync = await u.Sync(filter: "{\"room\":{\"timeline\":{\"limit\":2}}}");
        var tl = sync["rooms"]!["join"]![room]!["timeline"]!;
        Assert.True(tl["limited"]!.GetValue<bool>());
        var before = (await u.Get($"{C}/rooms/{E(room)}/messages?dir=b&limit=1&from={E(tl["prev_batch"]!.GetValue<string>())}")).Ok().Obj;
        Assert.Equal("m2", before["chunk"]![0]!["content"]!["body"]!.GetValue<string>());
    }

    [Fact]
    public async Task Outsiders_can_neither_read_nor_write()
    {
        var owner = await Register(server);
        var outsider = await Register(server);
        var room = await owner.CreateRoom(new JsonObject { ["preset"] = "private_chat" });
        await owner.SendText(room, "secret");
        Assert.Equal("M_FORBIDDEN", (await outsider.Get($"{C}/rooms/{E(room)}/messages?dir=b")).ErrCode);
        Assert.Equal("M_FORBIDDEN", (await outsider.Put($"{C}/rooms/{E(room)}/send/m.room.message/x1", new JsonObject { ["body"] = "hi" })).ErrCode);
        Assert.Equal("M_FORBIDDEN", (await outsider.Get($"{C}/rooms/{E(room)}/state")).ErrCode);
        Assert.Equal("M_FORBIDDEN", (await outsider.Post($"{C}/rooms/{E(room)}/join", new JsonObject())).ErrCode);
        var sync = await outsider.Sync();
        Assert.Null(sync["rooms"]!["join"]![room]);
    }

    [Fact]
    public async Task Power_levels_guard_kicks_bans_and_state()
    {
        var admin = await Register(server);
        var bob = await Register(server);
        var carol = await Register(server);
        var room = await admin.CreateRoom(new JsonObject { ["preset"] = "public_chat" });
        (await bob.Post($"{C}/join/{E(room)}", new JsonObject())).Ok();
        (await carol.Post($"{C}/join/{E(room)}", new JsonObject())).Ok();
        var kick = await bob.Post($"{C}/rooms/{E(room)}/kick", new JsonObject { ["user_id"] = carol.UserId });
        Assert.Equal((HttpStatusCode.Forbidden, "M_FORBIDDEN"), (kick.Status, kick.ErrCode));
        var topic = await bob.Put($"{C}/rooms/{E(room)}/state/m.room.topic/", new JsonObject { ["topic"] = "bob's" });
        Assert.Equal("M_FORBIDDEN", topic.ErrCode);
        var redact = await bob.Put($"{C}/rooms/{E(room)}/redact/{E(await admin.SendText(room, "admin says"))}/r1", new JsonObject());
        Assert.Equal("M_FORBIDDEN", redact.ErrCode);

        (await admin.Post($"{C}/rooms/{E(room)}/ban", new JsonObject { ["user_id"] = carol.UserId, ["reason"] = "spam" })).Ok();
        Assert.Equal("M_FORBIDDEN", (await carol.Post($"{C}/rooms/{E(room)}/join", new JsonObject())).ErrCode);
        Assert.Equal("M_FORBIDDEN", (await carol.Put($"{C}/rooms/{E(room)}/send/m.room.message/c1", new JsonObject { ["body"] = "x" })).ErrCode);
        (await admin.Post($"{C}/rooms/{E(room)}/unban", new JsonObject { ["user_id"] = carol.UserId })).Ok();
        (await carol.Post($"{C}/rooms/{E(room)}/join", new JsonObject())).Ok();
        var before = (await carol.Sync())["next_batch"]!.GetValue<string>();
        (await admin.Post($"{C}/rooms/{E(room)}/kick", new JsonObject { ["user_id"] = carol.UserId })).Ok();
        var leaveSync = await carol.Sync(before);
        var kickEvent = leaveSync["rooms"]!["leave"]![room]!["timeline"]!["events"]!.AsArray().Last()!;
        Assert.Equal("leave", kickEvent["content"]!["membership"]!.GetValue<string>());
        Assert.Equal(admin.UserId, kickEvent["sender"]!.GetValue<string>());
        // An initial sync leaves out rooms the user has left unless the filter asks for them.
        Assert.Null((await carol.Sync())["rooms"]!["leave"]![room]);
        Assert.NotNull((await carol.Sync(filter: "{\"room\":{\"include_leave\":true}}"))["rooms"]!["leave"]![room]);
    }

    [Fact]
    public async Task Leaving_stops_new_history_and_forget_hides_the_room()
    {
        var alice = await Register(server);
        var bob = await Register(server);
        var room = await alice.CreateRoom(new JsonObject { ["preset"] = "public_chat" });
        (await bob.Post($"{C}/join/{E(room)}", new JsonObject())).Ok();
        await alice.SendText(room, "before");
        (await bob.Post($"{C}/rooms/{E(room)}/leave", new JsonObject())).Ok();
        await alice.SendText(room, "after");
        var seen = (await bob.Get($"{C}/rooms/{E(room)}/messages?dir=b&limit=50")).Ok().Obj["chunk"]!.AsArray()
            .Select(e => e!["content"]?["body"]?.GetValue<string>()).ToList();
        Assert.Contains("before", seen);
        Assert.DoesNotContain("after", seen);
        (await bob.Post($"{C}/rooms/{E(room)}/forget", new JsonObject())).Ok();
        var s = await bob.Sync();
        Assert.Null(s["rooms"]!["leave"]![room]);
    }

    [Fact]
    public async Task State_keys_with_slashes_survive_the_edge()
    {
        var u = await Register(server);
        var room = await u.CreateRoom();
        (await u.Put($"{C}/rooms/{E(room)}/state/org.example.widget/{E("a/b c")}", new JsonObject { ["v"] = 1 })).Ok();
        var got = (await u.Get($"{C}/rooms/{E(room)}/state/org.example.widget/{E("a/b c")}")).Ok().Obj;
        Assert.Equal(1, got["v"]!.GetValue<int>());
        var state = (await u.Get($"{C}/rooms/{E(room)}/state")).Ok().Body!.AsArray();
        Assert.Contains(state, e => e!["type"]!.GetValue<string>() == "org.example.widget" && e["state_key"]!.GetValue<string>() == "a/b c");
        (await u.Put($"{C}/rooms/{E(room)}/state/m.room.name", new JsonObject { ["name"] = "no key" })).Ok();
        Assert.Equal("no key", (await u.Get($"{C}/rooms/{E(room)}/state/m.room.name/")).Ok().Obj["name"]!.GetValue<string>());
    }

    [Fact]
    public async Task Redaction_strips_content()
    {
        var u = await Register(server);
        var room = await u.CreateRoom();
        var ev = await u.SendText(room, "oops");
        (await u.Put($"{C}/rooms/{E(room)}/redact/{E(ev)}/r1", new JsonObject { ["reason"] = "typo" })).Ok();
        var got = (await u.Get($"{C}/rooms/{E(room)}/event/{E(ev)}")).Ok().Obj;
        Assert.Empty(got["content"]!.AsObject());
        Assert.Equal("typo", got["unsigned"]!["redacted_because"]!["content"]!["reason"]!.GetValue<string>());
    }

    [Fact]
    public async Task Aliases_resolve_and_join()
    {
        var alice = await Register(server);
        var bob = await Register(server);
        var name = UniqueName("tea");
        var room = await alice.CreateRoom(new JsonObject { ["preset"] = "public_chat", ["room_alias_name"] = name });
        var alias = $"#{name}:{server.ServerName}";
        Assert.Equal(room, (await bob.Get($"{C}/directory/room/{E(alias)}")).Ok().Obj["room_id"]!.GetValue<string>());
        Assert.Equal(room, (await bob.Post($"{C}/join/{E(alias)}", new JsonObject())).Ok().Obj["room_id"]!.GetValue<string>());
        var alt = $"#{UniqueName("alt")}:{server.ServerName}";
        (await bob.Put($"{C}/directory/room/{E(alt)}", new JsonObject { ["room_id"] = room })).Ok();
        Assert.Equal("M_ROOM_IN_USE", (await alice.Put($"{C}/directory/room/{E(alt)}", new JsonObject { ["room_id"] = room })).ErrCode);
        var aliases = (await alice.Get($"{C}/rooms/{E(room)}/aliases")).Ok().Obj["aliases"]!.AsArray().Select(n => n!.GetValue<string>());
        Assert.Contains(alt, aliases);
        (await alice.Call("DELETE", $"{C}/directory/room/{E(alt)}")).Ok();
        Assert.Equal("M_NOT_FOUND", (await bob.Get($"{C}/directory/room/{E(alt)}")).ErrCode);
    }

    [Fact]
    public async Task Filters_and_account_data_reach_sync()
    {
        var u = await Register(server);
        var filterId = (await u.Post($"{C}/user/{E(u.UserId)}/filter", new JsonObject { ["room"] = new JsonObject { ["timeline"] = new JsonObject { ["limit"] = 1 } } })).Ok().Obj["filter_id"]!.GetValue<string>();
        Assert.Equal(1, (await u.Get($"{C}/user/{E(u.UserId)}/filter/{filterId}")).Ok().Obj["room"]!["timeline"]!["limit"]!.GetValue<int>());
        var room = await u.CreateRoom();
        await u.SendText(room, "one");
        await u.SendText(room, "two");
        var s = await u.Sync(filter: filterId);
        Assert.Equal(["two"], TimelineBodies(s, room));
        Assert.Contains(s["account_data"]!["events"]!.AsArray(), e => e!["type"]!.GetValue<string>() == "m.push_rules");

        var since = s["next_batch"]!.GetValue<string>();
        var waiting = u.Sync(since, 30_000);
        (await u.Put($"{C}/user/{E(u.UserId)}/account_data/org.example.cfg", new JsonObject { ["on"] = true })).Ok();
        (await u.Put($"{C}/user/{E(u.UserId)}/rooms/{E(room)}/account_data/m.tag.like", new JsonObject { ["x"] = 1 })).Ok();
        var woke = await waiting;
        Assert.Contains(woke["account_data"]!["events"]!.AsArray(), e => e!["type"]!.GetValue<string>() == "org.example.cfg");
        Assert.True((await u.Get($"{C}/user/{E(u.UserId)}/account_data/org.example.cfg")).Ok().Obj["on"]!.GetValue<bool>());
        Assert.Equal(1, (await u.Get($"{C}/user/{E(u.UserId)}/rooms/{E(room)}/account_data/m.tag.like")).Ok().Obj["x"]!.GetValue<int>());
        var other = await Register(server);
        Assert.Equal("M_FORBIDDEN", (await other.Get($"{C}/user/{E(u.UserId)}/account_data/org.example.cfg")).ErrCode);
        Assert.Equal(HttpStatusCode.MethodNotAllowed, (await u.Put($"{C}/user/{E(u.UserId)}/account_data/m.push_rules", new JsonObject())).Status);
    }

    [Fact]
    public async Task What_element_asks_for_on_start()
    {
        var u = await Register(server);
        var caps = (await u.Get(C + "/capabilities")).Ok().Obj["capabilities"]!;
        Assert.Equal("11", caps["m.room_versions"]!["default"]!.GetValue<string>());
        Assert.Equal("stable", caps["m.room_versions"]!["available"]!["10"]!.GetValue<string>());
        var rules = (await u.Get(C + "/pushrules/")).Ok().Obj;
        Assert.Contains(rules["global"]!["override"]!.AsArray(), r => r!["rule_id"]!.GetValue<string>() == ".m.rule.master");
        (await u.Get(C + "/pushrules/global/override/.m.rule.master")).Ok();
        Assert.Empty((await u.Get(C + "/voip/turnServer")).Ok().Obj);
        Assert.Empty((await u.Get(C + "/thirdparty/protocols")).Ok().Obj);
        Assert.Empty((await u.Get(C + "/account/3pid")).Ok().Obj["threepids"]!.AsArray());
        (await new MatrixClient(server).Get("/_matrix/key/v2/server")).Ok();
    }

    [Fact]
    public async Task Room_version_10_is_creatable_and_unknown_versions_refused()
    {
        var u = await Register(server);
        var room = await u.CreateRoom(new JsonObject { ["room_version"] = "10" });
        var create = (await u.Get($"{C}/rooms/{E(room)}/state/m.room.create/")).Ok().Obj;
        Assert.Equal("10", create["room_version"]!.GetValue<string>());
        Assert.Equal(u.UserId, create["creator"]!.GetValue<string>());
        Assert.Equal("M_UNSUPPORTED_ROOM_VERSION", (await u.Post(C + "/createRoom", new JsonObject { ["room_version"] = "999" })).ErrCode);
    }
}

public sealed class AllInOneClientApiTests(AllInOneFixture f) : ClientApiTests(f), IClassFixture<AllInOneFixture>;

public sealed class AllInOneSqliteClientApiTests(AllInOneSqliteFixture f) : ClientApiTests(f), IClassFixture<AllInOneSqliteFixture>;

public sealed class SplitClientApiTests(SplitFixture f) : ClientApiTests(f), IClassFixture<SplitFixture>;

using System.Net;
using System.Text.Json.Nodes;
using static Conduit.Functional.Tests.MatrixClient;

namespace Conduit.Functional.Tests;

/// <summary>
/// Rooms across two servers (the pair of <see cref="FederationPair"/>: localhost:PORT names, HTTPS with a test CA):
/// joining the other server's room by ID and by alias, messages both ways, leaving and rejoining, and what the
/// server-server endpoints refuse.
/// </summary>
public abstract partial class FederationRoomTests(FederationPair pair)
{
    static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    /// <summary>Syncs until <paramref name="done"/> holds for the latest response (long-polling, so no busy loop).</summary>
    internal static async Task<JsonObject> SyncUntil(MatrixClient c, Func<JsonObject, bool> done, string what, string? since = null)
    {
        var deadline = DateTime.UtcNow + Patience;
        var seen = new JsonObject();
        while (DateTime.UtcNow < deadline)
        {
            var s = await c.Sync(since, timeoutMs: since is null ? 0 : 5000);
            if (done(s)) return s;
            since = s["next_batch"]!.GetValue<string>();
        }
        throw new Xunit.Sdk.XunitException($"{c.UserId} never saw {what}");
    }

    static bool Sees(JsonObject sync, string roomId, string body) => TimelineBodies(sync, roomId).Contains(body);

    async Task<List<string>> Members(MatrixClient c, string roomId)
        => (await c.Get($"{C}/rooms/{E(roomId)}/joined_members")).Ok().Obj["joined"]!.AsObject().Select(kv => kv.Key).Order().ToList();

    [Fact]
    public async Task A_user_joins_a_public_room_on_the_other_server_and_they_talk_both_ways()
    {
        var alice = await Register(pair.A);
        var bob = await Register(pair.B);
        var room = await alice.CreateRoom(new JsonObject { ["preset"] = "public_chat", ["name"] = "across" });
        await alice.SendText(room, "before bob");

        var joined = await bob.Post($"{C}/join/{E(room)}?via={E(pair.A.ServerName)}", new JsonObject());
        Assert.Equal(room, joined.Ok().Obj["room_id"]!.GetValue<string>());
        // Bob's server now has the room: its name and both members, in Bob's /sync and his reads.
        Assert.Equal(new[] { alice.UserId, bob.UserId }.Order(), await Members(bob, room));
        Assert.Equal("across", (await bob.Get($"{C}/rooms/{E(room)}/state/m.room.name/")).Ok().Obj["name"]!.GetValue<string>());
        var first = await bob.Sync();
        Assert.True(first["rooms"]!["join"]!.AsObject().ContainsKey(room));

        // Alice's server learns of the join, then messages cross in both directions.
        Assert.Equal(new[] { alice.UserId, bob.UserId }.Order(), await Members(alice, room));
        await alice.SendText(room, "hello from A");
        await SyncUntil(bob, s => Sees(s, room, "hello from A"), "Alice's message");
        await bob.SendText(room, "hello from B");
        await SyncUntil(alice, s => Sees(s, room, "hello from B"), "Bob's message");
    }

    [Fact]
    public async Task Typing_and_read_receipts_cross_to_the_other_server()
    {
        var alice = await Register(pair.A);
        var bob = await Register(pair.B);
        var room = await alice.CreateRoom(new JsonObject { ["preset"] = "public_chat" });
        (await bob.Post($"{C}/join/{E(room)}?via={E(pair.A.ServerName)}", new JsonObject())).Ok();

        (await alice.Put($"{C}/rooms/{E(room)}/typing/{E(alice.UserId)}", new JsonObject { ["typing"] = true, ["timeout"] = 30000 })).Ok();
        await SyncUntil(bob, s => (s["rooms"]?["join"]?[room]?["ephemeral"]?["events"] as JsonArray ?? []).Any(e =>
            e!["type"]!.GetValue<string>() == "m.typing" && e["content"]!["user_ids"]!.AsArray().Any(u => u!.GetValue<string>() == alice.UserId)), "Alice typing");

        var message = await bob.SendText(room, "read me");
        await SyncUntil(alice, s => Sees(s, room, "read me"), "Bob's message");
        (await alice.Post($"{C}/rooms/{E(room)}/receipt/m.read/{E(message)}", new JsonObject())).Ok();
        await SyncUntil(bob, s => (s["rooms"]?["join"]?[room]?["ephemeral"]?["events"] as JsonArray ?? []).Any(e =>
            e!["type"]!.GetValue<string>() == "m.receipt" && e["content"]?[message]?["m.read"]?[alice.UserId] is not null), "Alice's read receipt");
    }

    [Fact]
    public async Task Messages_sent_while_the_other_server_is_down_arrive_when_it_is_back()
    {
        var alice = await Register(pair.A);
        var bob = await Register(pair.B);
        var room = await alice.CreateRoom(new JsonObject { ["preset"] = "public_chat" });
        (await bob.Post($"{C}/join/{E(room)}?via={E(pair.A.ServerName)}", new JsonObject())).Ok();
        await alice.SendText(room, "before the outage");
        await SyncUntil(bob, s => Sees(s, room, "before the outage"), "the first message");

        await pair.StopAsync(pair.B);
        for (var i = 1; i <= 3; i++) await alice.SendText(room, $"while B was down {i}");
        await pair.StartAsync(pair.B);

        // B's first request to A (Bob's message) ends A's backoff for B; A's queue then delivers what B missed, in order.
        await bob.SendText(room, "back online");
        await SyncUntil(alice, s => Sees(s, room, "back online"), "Bob's message after the restart");
        var seen = new List<string>();
        await SyncUntil(bob, s =>
        {
            seen.AddRange(TimelineBodies(s, room));
            return Enumerable.Range(1, 3).All(i => seen.Contains($"while B was down {i}"));
        }, "the messages sent while B was down");
        var order = seen.Where(b => b.StartsWith("while B was down", StringComparison.Ordinal)).Distinct().ToList();
        Assert.Equal(["while B was down 1", "while B was down 2", "while B was down 3"], order);
    }

    [Fact]
    public async Task Profiles_of_the_other_servers_users_resolve()
    {
        var alice = await Register(pair.A);
        var bob = await Register(pair.B);
        (await bob.Put($"{C}/profile/{E(bob.UserId)}/displayname", new JsonObject { ["displayname"] = "Bob from B" })).Ok();
        var profile = (await alice.Get($"{C}/profile/{E(bob.UserId)}")).Ok().Obj;
        Assert.Equal("Bob from B", profile["displayname"]!.GetValue<string>());
        Assert.Equal("Bob from B", (await alice.Get($"{C}/profile/{E(bob.UserId)}/displayname")).Ok().Obj["displayname"]!.GetValue<string>());
        var nobody = await alice.Get($"{C}/profile/{E("@nobody-here:" + pair.B.ServerName)}");
        Assert.Equal((HttpStatusCode.NotFound, "M_NOT_FOUND"), (nobody.Status, nobody.ErrCode));
    }

    [Fact]
    public async Task Device_keys_one_time_keys_to_device_messages_and_device_list_changes_cross_servers()
    {
        using var alice = new TestDevice(await Register(pair.A));
        using var bob = new TestDevice(await Register(pair.B));
        await alice.Upload(otks: 2);
        await bob.Upload(otks: 1);
        var room = await alice.Client.CreateRoom(new JsonObject { ["preset"] = "public_chat" });
        (await bob.Client.Post($"{C}/join/{E(room)}?via={E(pair.A.ServerName)}", new JsonObject())).Ok();

        // Bob's server asks Alice's for her device keys, and claims her one-time keys one at a time.
        var query = (await bob.Client.Post(C + "/keys/query", new JsonObject { ["device_keys"] = new JsonObject { [alice.UserId] = new JsonArray() } })).Ok().Obj;
        Assert.Empty(query["failures"]!.AsObject());
        var keys = query["device_keys"]![alice.UserId]![alice.DeviceId]!.AsObject();
        Assert.Equal(alice.Ed.PublicKeyBase64, keys["keys"]![$"ed25519:{alice.DeviceId}"]!.GetValue<string>());
        var claimed = new HashSet<string>();
        for (var i = 0; i < 2; i++)
        {
            var claim = (await bob.Client.Post(C + "/keys/claim", new JsonObject
            {
                ["one_time_keys"] = new JsonObject { [alice.UserId] = new JsonObject { [alice.DeviceId] = "signed_curve25519" } },
            })).Ok().Obj;
            claimed.Add(claim["one_time_keys"]![alice.UserId]![alice.DeviceId]!.AsObject().Single().Key);
        }
        Assert.Equal(2, claimed.Count);

        // A to-device message from Bob reaches Alice's device through an EDU.
        (await bob.Client.Put($"{C}/sendToDevice/m.test/{UniqueName("td")}", new JsonObject
        {
            ["messages"] = new JsonObject { [alice.UserId] = new JsonObject { [alice.DeviceId] = new JsonObject { ["secret"] = "olm payload" } } },
        })).Ok();
        await SyncUntil(alice.Client, s => (s["to_device"]?["events"] as JsonArray ?? []).Any(e =>
            e!["sender"]!.GetValue<string>() == bob.UserId && e["content"]?["secret"]?.GetValue<string>() == "olm payload"), "Bob's to-device message");

        // Alice signs in on a new device: Bob's /sync lists her as changed, and a new query finds the new device.
        var since = (await bob.Client.Sync())["next_batch"]!.GetValue<string>();
        var login = (await new MatrixClient(pair.A).Call("POST", C + "/login", new JsonObject
        {
            ["type"] = "m.login.password",
            ["identifier"] = new JsonObject { ["type"] = "m.id.user", ["user"] = alice.UserId },
            ["password"] = "correct horse",
        }, auth: false)).Ok().Obj;
        var secondClient = new MatrixClient(pair.A, login["access_token"]!.GetValue<string>()) { UserId = alice.UserId, DeviceId = login["device_id"]!.GetValue<string>() };
        using var second = new TestDevice(secondClient);
        await second.Upload();
        var deadline = DateTime.UtcNow + Patience;
        while (true)
        {
            var s = await bob.Client.Sync(since, timeoutMs: 5000);
            if ((s["device_lists"]?["changed"] as JsonArray ?? []).Any(u => u!.GetValue<string>() == alice.UserId)) break;
            since = s["next_batch"]!.GetValue<string>();
            if (DateTime.UtcNow > deadline) throw new Xunit.Sdk.XunitException("Bob never saw Alice's device list change");
        }
        var again = (await bob.Client.Post(C + "/keys/query", new JsonObject { ["device_keys"] = new JsonObject { [alice.UserId] = new JsonArray() } })).Ok().Obj;
        Assert.True(again["device_keys"]![alice.UserId]!.AsObject().ContainsKey(second.DeviceId));
    }

    /// <summary>Queries a user's device keys through <paramref name="c"/>: the device IDs and the failures.</summary>
    static async Task<(List<string> Devices, JsonObject Failures)> QueryDevices(MatrixClient c, string userId)
    {
        var q = (await c.Post(C + "/keys/query", new JsonObject { ["device_keys"] = new JsonObject { [userId] = new JsonArray() } })).Ok().Obj;
        return ((q["device_keys"]?[userId] as JsonObject ?? []).Select(kv => kv.Key).Order().ToList(), q["failures"]!.AsObject());
    }

    /// <summary>Syncs from <paramref name="since"/> until <paramref name="userId"/> is in device_lists.changed; the next token.</summary>
    static async Task<string> UntilDeviceListChanged(MatrixClient c, string userId, string since)
    {
        var deadline = DateTime.UtcNow + Patience;
        while (DateTime.UtcNow < deadline)
        {
            var s = await c.Sync(since, timeoutMs: 5000);
            since = s["next_batch"]!.GetValue<string>();
            if ((s["device_lists"]?["changed"] as JsonArray ?? []).Any(u => u!.GetValue<string>() == userId)) return since;
        }
        throw new Xunit.Sdk.XunitException($"{c.UserId} never saw {userId}'s device list change");
    }

    [Fact]
    public async Task The_device_list_of_a_user_in_a_shared_room_is_kept_by_the_other_server_and_follows_each_change()
    {
        using var alice = new TestDevice(await Register(pair.A));
        var bob = await Register(pair.B);
        await alice.Upload();
        var room = await alice.Client.CreateRoom(new JsonObject { ["preset"] = "public_chat" });
        (await bob.Post($"{C}/join/{E(room)}?via={E(pair.A.ServerName)}", new JsonObject())).Ok();
        Assert.Equal([alice.DeviceId], (await QueryDevices(bob, alice.UserId)).Devices);
        var since = (await bob.Sync())["next_batch"]!.GetValue<string>();

        // A second device: its update reaches B, whose kept list then has it.
        var login = (await new MatrixClient(pair.A).Call("POST", C + "/login", new JsonObject
        {
            ["type"] = "m.login.password",
            ["identifier"] = new JsonObject { ["type"] = "m.id.user", ["user"] = alice.UserId },
            ["password"] = "correct horse",
        }, auth: false)).Ok().Obj;
        using var second = new TestDevice(new MatrixClient(pair.A, login["access_token"]!.GetValue<string>()) { UserId = alice.UserId, DeviceId = login["device_id"]!.GetValue<string>() });
        await second.Upload();
        since = await UntilDeviceListChanged(bob, alice.UserId, since);
        Assert.Equal(new[] { alice.DeviceId, second.DeviceId }.Order(), (await QueryDevices(bob, alice.UserId)).Devices);

        // With A down, B still answers from the list it keeps: both devices, no failure.
        await pair.StopAsync(pair.A);
        try
        {
            var (devices, failures) = await QueryDevices(bob, alice.UserId);
            Assert.Empty(failures);
            Assert.Equal(new[] { alice.DeviceId, second.DeviceId }.Order(), devices);
        }
        finally { await pair.StartAsync(pair.A); }

        // The second device is deleted: B hears of it (after A's return) and its list loses the device.
        var auth = new JsonObject { ["type"] = "m.login.password", ["identifier"] = new JsonObject { ["type"] = "m.id.user", ["user"] = alice.UserId }, ["password"] = "correct horse" };
        var challenge = await alice.Client.Call("DELETE", $"{C}/devices/{second.DeviceId}", new JsonObject());
        auth["session"] = challenge.Obj["session"]!.GetValue<string>();
        (await alice.Client.Call("DELETE", $"{C}/devices/{second.DeviceId}", new JsonObject { ["auth"] = auth })).Ok();
        var deadline = DateTime.UtcNow + Patience;
        while ((await QueryDevices(bob, alice.UserId)).Devices.Contains(second.DeviceId))
        {
            if (DateTime.UtcNow > deadline) throw new Xunit.Sdk.XunitException("B never heard that the second device was deleted");
            since = await UntilDeviceListChanged(bob, alice.UserId, since);
        }
        Assert.Equal([alice.DeviceId], (await QueryDevices(bob, alice.UserId)).Devices);
    }

    [Fact]
    public async Task Media_uploaded_on_one_server_is_downloaded_and_thumbnailed_on_the_other()
    {
        var alice = await Register(pair.A);
        var bob = await Register(pair.B);
        var image = TestImages.Png(640, 480);
        using var upload = new HttpRequestMessage(HttpMethod.Post, pair.A.BaseUrl + "/_matrix/media/v3/upload?filename=holiday.png")
        {
            Content = new ByteArrayContent(image) { Headers = { ContentType = new("image/png") } },
        };
        upload.Headers.Authorization = new("Bearer", alice.Token);
        using var uploaded = await pair.A.Http.SendAsync(upload);
        var mxc = System.Text.Json.Nodes.JsonNode.Parse(await uploaded.Content.ReadAsStringAsync())!["content_uri"]!.GetValue<string>();
        var path = mxc["mxc://".Length..];

        async Task<HttpResponseMessage> Get(string p)
        {
            using var req = new HttpRequestMessage(HttpMethod.Get, pair.B.BaseUrl + p);
            req.Headers.Authorization = new("Bearer", bob.Token);
            return await pair.B.Http.SendAsync(req);
        }
        // Bob's server fetches it from Alice's (a signed federation media request) and serves it as its own copy.
        using var download = await Get($"/_matrix/client/v1/media/download/{path}");
        Assert.Equal(HttpStatusCode.OK, download.StatusCode);
        Assert.Equal(image, await download.Content.ReadAsByteArrayAsync());
        Assert.Equal("image/png", download.Content.Headers.ContentType!.MediaType);
        Assert.Contains("holiday.png", download.Content.Headers.ContentDisposition!.ToString());
        using var thumb = await Get($"/_matrix/client/v1/media/thumbnail/{path}?width=96&height=96&method=scale");
        Assert.Equal(HttpStatusCode.OK, thumb.StatusCode);
        Assert.True((await thumb.Content.ReadAsByteArrayAsync()).Length is > 0 and < 100_000);
        using var missing = await Get($"/_matrix/client/v1/media/download/{pair.A.ServerName}/nosuchmedia");
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);

        // Without a signature, Alice's server does not hand its media to anyone claiming to be a server.
        var unsigned = await new MatrixClient(pair.A).Call("GET", $"/_matrix/federation/v1/media/download/{path.Split('/')[1]}", auth: false);
        Assert.Equal(HttpStatusCode.Unauthorized, unsigned.Status);
    }

    [Fact]
    public async Task A_restricted_room_is_joined_through_the_resident_server_by_a_member_of_an_allowed_room()
    {
        var alice = await Register(pair.A);
        var bob = await Register(pair.B);
        var space = await alice.CreateRoom(new JsonObject { ["preset"] = "public_chat", ["room_version"] = "10" });
        var room = await alice.CreateRoom(new JsonObject
        {
            ["preset"] = "private_chat",
            ["room_version"] = "10",
            ["initial_state"] = new JsonArray(new JsonObject
            {
                ["type"] = "m.room.join_rules", ["state_key"] = "",
                ["content"] = new JsonObject
                {
                    ["join_rule"] = "restricted",
                    ["allow"] = new JsonArray(new JsonObject { ["type"] = "m.room_membership", ["room_id"] = space }),
                },
            }),
        });
        // Not yet in the allowed room: refused.
        var refused = await bob.Post($"{C}/join/{E(room)}?via={E(pair.A.ServerName)}", new JsonObject());
        Assert.Equal(HttpStatusCode.Forbidden, refused.Status);
        (await bob.Post($"{C}/join/{E(space)}?via={E(pair.A.ServerName)}", new JsonObject())).Ok();
        (await bob.Post($"{C}/join/{E(room)}?via={E(pair.A.ServerName)}", new JsonObject())).Ok();
        var member = (await alice.Get($"{C}/rooms/{E(room)}/state/m.room.member/{E(bob.UserId)}")).Ok().Obj;
        Assert.Equal("join", member["membership"]!.GetValue<string>());
        Assert.Equal(alice.UserId, member["join_authorised_via_users_server"]!.GetValue<string>());
    }

    [Fact]
    public async Task A_remote_user_knocks_is_let_in_and_joins()
    {
        var alice = await Register(pair.A);
        var bob = await Register(pair.B);
        var room = await alice.CreateRoom(new JsonObject
        {
            ["preset"] = "private_chat",
            ["room_version"] = "10",
            ["name"] = "knock first",
            ["initial_state"] = new JsonArray(new JsonObject { ["type"] = "m.room.join_rules", ["state_key"] = "", ["content"] = new JsonObject { ["join_rule"] = "knock" } }),
        });
        (await bob.Post($"{C}/knock/{E(room)}?via={E(pair.A.ServerName)}", new JsonObject { ["reason"] = "let me in" })).Ok();
        var knocked = await SyncUntil(bob, s => s["rooms"]?["knock"]?[room] is not null, "his knock in /sync");
        Assert.Contains(knocked["rooms"]!["knock"]![room]!["knock_state"]!["events"]!.AsArray(), e => e!["type"]!.GetValue<string>() == "m.room.name");
        var member = (await alice.Get($"{C}/rooms/{E(room)}/state/m.room.member/{E(bob.UserId)}")).Ok().Obj;
        Assert.Equal(("knock", "let me in"), (member["membership"]!.GetValue<string>(), member["reason"]!.GetValue<string>()));
        (await alice.Post($"{C}/rooms/{E(room)}/invite", new JsonObject { ["user_id"] = bob.UserId })).Ok();
        await SyncUntil(bob, s => s["rooms"]?["invite"]?[room] is not null, "the invite after knocking");
        (await bob.Post($"{C}/rooms/{E(room)}/join", new JsonObject())).Ok();
        Assert.Contains(bob.UserId, await Members(alice, room));
    }

    [Fact]
    public async Task A_knock_on_a_room_of_the_other_server_is_rescinded_by_leaving()
    {
        var alice = await Register(pair.A);
        var bob = await Register(pair.B);
        var room = await alice.CreateRoom(new JsonObject
        {
            ["preset"] = "private_chat",
            ["room_version"] = "12",
            ["initial_state"] = new JsonArray(new JsonObject { ["type"] = "m.room.join_rules", ["state_key"] = "", ["content"] = new JsonObject { ["join_rule"] = "knock" } }),
        });
        (await bob.Post($"{C}/knock/{E(room)}?via={E(pair.A.ServerName)}", new JsonObject())).Ok();
        var since = (await SyncUntil(bob, s => s["rooms"]?["knock"]?[room] is not null, "his knock"))["next_batch"]!.GetValue<string>();
        (await bob.Post($"{C}/rooms/{E(room)}/leave", new JsonObject())).Ok();
        var member = (await alice.Get($"{C}/rooms/{E(room)}/state/m.room.member/{E(bob.UserId)}")).Ok().Obj;
        Assert.Equal("leave", member["membership"]!.GetValue<string>());
        await SyncUntil(bob, s => s["rooms"]?["leave"]?[room] is not null, "the rescinded knock as a left room", since);
    }

    [Fact]
    public async Task A_join_while_the_room_is_busy_leaves_no_gap_that_blocks_later_messages()
    {
        var alice = await Register(pair.A);
        var bob = await Register(pair.B);
        var room = await alice.CreateRoom(new JsonObject { ["preset"] = "public_chat" });
        // Messages race Bob's join: some of them are after the template his join was built on, before his join.
        var chatter = Task.WhenAll(Enumerable.Range(0, 20).Select(i => alice.SendText(room, $"busy {i}")));
        (await bob.Post($"{C}/join/{E(room)}?via={E(pair.A.ServerName)}", new JsonObject())).Ok();
        await chatter;
        await alice.SendText(room, "after the rush");
        await SyncUntil(bob, s => Sees(s, room, "after the rush"), "the message after the rush");
        await bob.SendText(room, "heard you");
        await SyncUntil(alice, s => Sees(s, room, "heard you"), "Bob's answer");
    }

    [Fact]
    public async Task Public_room_directories_of_the_other_server_are_listed()
    {
        var alice = await Register(pair.A);
        var bob = await Register(pair.B);
        var name = UniqueName("listed");
        var room = await alice.CreateRoom(new JsonObject { ["preset"] = "public_chat", ["visibility"] = "public", ["name"] = name });
        var page = (await bob.Post($"{C}/publicRooms?server={E(pair.A.ServerName)}", new JsonObject
        {
            ["filter"] = new JsonObject { ["generic_search_term"] = name },
        })).Ok().Obj;
        var entry = Assert.Single(page["chunk"]!.AsArray())!;
        Assert.Equal((room, name), (entry["room_id"]!.GetValue<string>(), entry["name"]!.GetValue<string>()));
        var all = (await bob.Get($"{C}/publicRooms?server={E(pair.A.ServerName)}&limit=500")).Ok().Obj;
        Assert.Contains(all["chunk"]!.AsArray(), r => r!["room_id"]!.GetValue<string>() == room);
    }

    [Fact]
    public async Task Presence_crosses_to_users_who_share_a_room()
    {
        var alice = await Register(pair.A);
        var bob = await Register(pair.B);
        var room = await alice.CreateRoom(new JsonObject { ["preset"] = "public_chat" });
        (await bob.Post($"{C}/join/{E(room)}?via={E(pair.A.ServerName)}", new JsonObject())).Ok();
        (await alice.Put($"{C}/presence/{E(alice.UserId)}/status", new JsonObject { ["presence"] = "online", ["status_msg"] = "at the beach" })).Ok();
        await SyncUntil(bob, s => (s["presence"]?["events"] as JsonArray ?? []).Any(e => e!["sender"]!.GetValue<string>() == alice.UserId
            && e["content"]?["status_msg"]?.GetValue<string>() == "at the beach"), "Alice's presence");
        var status = (await bob.Get($"{C}/presence/{E(alice.UserId)}/status")).Ok().Obj;
        Assert.Equal(("online", "at the beach"), (status["presence"]!.GetValue<string>(), status["status_msg"]!.GetValue<string>()));
    }

    [Fact]
    public async Task A_server_that_joined_later_fetches_the_history_from_before_its_join()
    {
        var alice = await Register(pair.A);
        var bob = await Register(pair.B);
        var room = await alice.CreateRoom(new JsonObject { ["preset"] = "public_chat", ["name"] = "old times" });
        for (var i = 0; i < 30; i++) await alice.SendText(room, $"history {i}");
        (await bob.Post($"{C}/join/{E(room)}?via={E(pair.A.ServerName)}", new JsonObject())).Ok();

        // Bob pages back from the end through everything, as a client scrolling up does.
        var bodies = new List<string>();
        var types = new List<string>();
        string? from = null;
        for (var pages = 0; pages < 20; pages++)
        {
            var page = (await bob.Get($"{C}/rooms/{E(room)}/messages?dir=b&limit=7" + (from is null ? "" : "&from=" + E(from)))).Ok().Obj;
            foreach (var e in page["chunk"]!.AsArray())
            {
                types.Add(e!["type"]!.GetValue<string>());
                if (e["content"]?["body"] is { } b) bodies.Add(b.GetValue<string>());
            }
            if (page["end"] is null) break;
            from = page["end"]!.GetValue<string>();
        }
        Assert.Equal(Enumerable.Range(0, 30).Reverse().Select(i => $"history {i}"), bodies);
        Assert.Equal("m.room.create", types[^1]);
        Assert.Contains("m.room.name", types);
    }

    // Spec (client-server-api, getEventByTimestamp): a server without that part of the history may ask another with
    // GET /_matrix/federation/v1/timestamp_to_event; B asks A, checks the event it names and answers as A does.
    [Fact]
    public async Task Timestamp_to_event_on_a_server_that_joined_later_finds_the_history_before_its_join_on_the_other_server()
    {
        var alice = await Register(pair.A);
        var bob = await Register(pair.B);
        var room = await alice.CreateRoom(new JsonObject { ["preset"] = "public_chat" }); // history_visibility shared
        var sent = await alice.SendSpacedTexts(room, "before bob ", 3);
        var (ids, stamps) = (sent.Select(s => s.Id).ToList(), sent.Select(s => s.Ts).ToList());
        await Task.Delay(30);
        (await bob.Post($"{C}/join/{E(room)}?via={E(pair.A.ServerName)}", new JsonObject())).Ok();
        var path = $"/_matrix/client/v1/rooms/{E(room)}/timestamp_to_event";

        // Backwards from between the 2nd and 3rd messages: B has nothing that old in its timeline.
        var onA = (await alice.Get($"{path}?ts={stamps[1] + 1}&dir=b")).Ok().Obj;
        Assert.Equal(ids[1], onA["event_id"]!.GetValue<string>());
        var onB = (await bob.Get($"{path}?ts={stamps[1] + 1}&dir=b")).Ok().Obj;
        Assert.Equal(onA.ToJsonString(), onB.ToJsonString());

        // Forwards from the first message: B's own closest is its join, which comes after a gap; A has the message.
        var forward = (await bob.Get($"{path}?ts={stamps[0]}&dir=f")).Ok().Obj;
        Assert.Equal((ids[0], stamps[0]), (forward["event_id"]!.GetValue<string>(), forward["origin_server_ts"]!.GetValue<long>()));

        // What a client does next ("jump to date"): the event itself and /context around it, paged forward into B's timeline.
        Assert.Equal("before bob 0", (await bob.Get($"{C}/rooms/{E(room)}/event/{E(ids[0])}")).Ok().Obj["content"]!["body"]!.GetValue<string>());
        var context = (await bob.Get($"{C}/rooms/{E(room)}/context/{E(ids[0])}?limit=4")).Ok().Obj;
        Assert.Equal(ids[0], context["event"]!["event_id"]!.GetValue<string>());
        // Before it, the room's setup (state events from createRoom), fetched from A as history.
        Assert.Equal(2, context["events_before"]!.AsArray().Count(e => e!["type"]!.GetValue<string>().StartsWith("m.room.", StringComparison.Ordinal)));
        Assert.Equal([ids[1], ids[2]], context["events_after"]!.AsArray().Select(e => e!["event_id"]!.GetValue<string>()).ToList());
        var onward = (await bob.Get($"{C}/rooms/{E(room)}/messages?dir=f&limit=10&from={E(context["end"]!.GetValue<string>())}")).Ok().Obj;
        var next = onward["chunk"]!.AsArray().Select(e => (Type: e!["type"]!.GetValue<string>(), Key: e["state_key"]?.GetValue<string>())).ToList();
        Assert.Contains(("m.room.member", bob.UserId), next);
        Assert.Contains(context["state"]!.AsArray(), e => e!["type"]!.GetValue<string>() == "m.room.create");

        // Nothing anywhere before the room was created: A answers 404 and so does B.
        var none = await bob.Get($"{path}?ts={stamps[0] - 3_600_000}&dir=b");
        Assert.Equal((HttpStatusCode.NotFound, "M_NOT_FOUND"), (none.Status, none.ErrCode));
    }

    [Fact]
    public async Task A_space_lists_its_rooms_on_the_other_server()
    {
        var alice = await Register(pair.A);
        var bob = await Register(pair.B);
        // Bob's space on B holds a public room of Alice's on A (and a private one, which stays hidden).
        var hall = await alice.CreateRoom(new JsonObject { ["preset"] = "public_chat", ["name"] = "the hall" });
        var secret = await alice.CreateRoom(new JsonObject { ["preset"] = "private_chat", ["name"] = "the vault" });
        var space = await bob.CreateRoom(new JsonObject { ["preset"] = "public_chat", ["name"] = "bob's space", ["creation_content"] = new JsonObject { ["type"] = "m.space" } });
        foreach (var child in new[] { hall, secret })
            (await bob.Put($"{C}/rooms/{E(space)}/state/m.space.child/{E(child)}", new JsonObject { ["via"] = new JsonArray(pair.A.ServerName) })).Ok();
        var answer = (await bob.Get($"/_matrix/client/v1/rooms/{E(space)}/hierarchy")).Ok().Obj;
        var listed = answer["rooms"]!.AsArray().Select(r => r!["room_id"]!.GetValue<string>()).ToList();
        Assert.Equal([space, hall], listed);
        Assert.Equal("the hall", answer["rooms"]![1]!["name"]!.GetValue<string>());
    }

    [Fact]
    public async Task A_room_is_joined_by_an_alias_of_the_other_server()
    {
        var alice = await Register(pair.A);
        var bob = await Register(pair.B);
        var name = UniqueName("hall");
        var room = await alice.CreateRoom(new JsonObject { ["preset"] = "public_chat", ["room_alias_name"] = name });
        var alias = $"#{name}:{pair.A.ServerName}";
        Assert.Equal(room, (await bob.Post($"{C}/join/{E(alias)}", new JsonObject())).Ok().Obj["room_id"]!.GetValue<string>());
        Assert.Contains(bob.UserId, await Members(alice, room));
        var missing = await bob.Post($"{C}/join/{E($"#nope{name}:{pair.A.ServerName}")}", new JsonObject());
        Assert.Equal((HttpStatusCode.NotFound, "M_NOT_FOUND"), (missing.Status, missing.ErrCode));
    }

    [Fact]
    public async Task An_invite_only_room_refuses_a_remote_join_and_nothing_changes()
    {
        var alice = await Register(pair.A);
        var bob = await Register(pair.B);
        var room = await alice.CreateRoom(new JsonObject { ["preset"] = "private_chat" });
        var refused = await bob.Post($"{C}/join/{E(room)}?via={E(pair.A.ServerName)}", new JsonObject());
        Assert.Equal((HttpStatusCode.Forbidden, "M_FORBIDDEN"), (refused.Status, refused.ErrCode));
        Assert.Equal([alice.UserId], await Members(alice, room));
        var unknown = await bob.Get($"{C}/rooms/{E(room)}/state");
        Assert.Contains(unknown.Status, new[] { HttpStatusCode.Forbidden, HttpStatusCode.NotFound });
    }

    [Fact]
    public async Task A_remote_user_leaves_and_rejoins()
    {
        var alice = await Register(pair.A);
        var bob = await Register(pair.B);
        var room = await alice.CreateRoom(new JsonObject { ["preset"] = "public_chat" });
        (await bob.Post($"{C}/join/{E(room)}?via={E(pair.A.ServerName)}", new JsonObject())).Ok();
        (await bob.Post($"{C}/rooms/{E(room)}/leave", new JsonObject())).Ok();
        await WaitFor(async () => !(await Members(alice, room)).Contains(bob.UserId), "Bob's leave on A");
        (await bob.Post($"{C}/join/{E(room)}?via={E(pair.A.ServerName)}", new JsonObject())).Ok();
        Assert.Contains(bob.UserId, await Members(alice, room));
        await bob.SendText(room, "back again");
        await SyncUntil(alice, s => Sees(s, room, "back again"), "Bob's message after rejoining");
    }

    [Fact]
    public async Task Invites_cross_both_ways_and_the_invitee_joins_the_invite_only_room()
    {
        foreach (var (home, away) in new[] { (pair.A, pair.B), (pair.B, pair.A) })
        {
            var alice = await Register(home);
            var bob = await Register(away);
            var room = await alice.CreateRoom(new JsonObject { ["preset"] = "private_chat", ["name"] = "secret plans" });
            (await alice.Post($"{C}/rooms/{E(room)}/invite", new JsonObject { ["user_id"] = bob.UserId })).Ok();
            // Bob's /sync shows the invite with the room's name from the stripped state his server was sent.
            var invited = await SyncUntil(bob, s => s["rooms"]?["invite"]?[room] is not null, "the invite");
            var strippedState = invited["rooms"]!["invite"]![room]!["invite_state"]!["events"]!.AsArray();
            Assert.Contains(strippedState, e => e!["type"]!.GetValue<string>() == "m.room.name" && e["content"]!["name"]!.GetValue<string>() == "secret plans");
            Assert.Contains(strippedState, e => e!["type"]!.GetValue<string>() == "m.room.member" && e["state_key"]!.GetValue<string>() == bob.UserId);
            // He joins through the inviter's server without naming it.
            (await bob.Post($"{C}/rooms/{E(room)}/join", new JsonObject())).Ok();
            Assert.Equal(new[] { alice.UserId, bob.UserId }.Order(), await Members(alice, room));
            await bob.SendText(room, "thanks for the invite");
            await SyncUntil(alice, s => Sees(s, room, "thanks for the invite"), "Bob's message in the invite-only room");
        }
    }

    [Fact]
    public async Task CreateRoom_invites_reach_the_other_servers_users()
    {
        var alice = await Register(pair.A);
        var carol = await Register(pair.A);
        var bob = await Register(pair.B);
        // What matrix-js-sdk and Element do for a DM: the invitees are in createRoom's invite list.
        var room = await alice.CreateRoom(new JsonObject
        {
            ["preset"] = "trusted_private_chat", ["is_direct"] = true, ["invite"] = new JsonArray(bob.UserId, carol.UserId),
        });
        var invited = await SyncUntil(bob, s => s["rooms"]?["invite"]?[room] is not null, "the invite from createRoom");
        var strippedState = invited["rooms"]!["invite"]![room]!["invite_state"]!["events"]!.AsArray();
        Assert.Contains(strippedState, e => e!["type"]!.GetValue<string>() == "m.room.member" && e["state_key"]!.GetValue<string>() == bob.UserId
            && e["content"]?["is_direct"]?.GetValue<bool>() == true);
        await SyncUntil(carol, s => s["rooms"]?["invite"]?[room] is not null, "the invite from createRoom (local)");
        var since = invited["next_batch"]!.GetValue<string>();
        (await bob.Post($"{C}/rooms/{E(room)}/join", new JsonObject())).Ok();
        Assert.Equal(new[] { alice.UserId, bob.UserId }.Order(), await Members(alice, room));

        // Bob's /sync, incremental and initial, gives the room's state (the state his server was sent on joining):
        // the timeline starts with the invite his server holds out of band, which has no state of its own here.
        foreach (var sync in new[] { await SyncUntil(bob, s => s["rooms"]?["join"]?[room] is not null, "the joined room", since), await bob.Sync() })
        {
            var joined = sync["rooms"]!["join"]![room]!;
            var events = joined["state"]!["events"]!.AsArray().Concat(joined["timeline"]!["events"]!.AsArray()).ToList();
            foreach (var type in new[] { "m.room.create", "m.room.power_levels", "m.room.join_rules", "m.room.history_visibility" })
                Assert.Contains(events, e => e!["type"]!.GetValue<string>() == type);
            Assert.Contains(events, e => e!["type"]!.GetValue<string>() == "m.room.member" && e["state_key"]!.GetValue<string>() == alice.UserId);
        }
    }

    [Fact]
    public async Task A_remote_invite_is_rejected_through_the_inviting_server()
    {
        var alice = await Register(pair.A);
        var bob = await Register(pair.B);
        var room = await alice.CreateRoom(new JsonObject { ["preset"] = "private_chat" });
        (await alice.Post($"{C}/rooms/{E(room)}/invite", new JsonObject { ["user_id"] = bob.UserId })).Ok();
        await SyncUntil(bob, s => s["rooms"]?["invite"]?[room] is not null, "the invite");
        (await bob.Post($"{C}/rooms/{E(room)}/leave", new JsonObject())).Ok();
        var member = (await alice.Get($"{C}/rooms/{E(room)}/state/m.room.member/{E(bob.UserId)}")).Ok().Obj;
        Assert.Equal("leave", member["membership"]!.GetValue<string>());
        var after = await bob.Sync();
        Assert.Null(after["rooms"]?["invite"]?[room]);
    }

    static async Task WaitFor(Func<Task<bool>> condition, string what)
    {
        var deadline = DateTime.UtcNow + Patience;
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline) throw new Xunit.Sdk.XunitException("never happened: " + what);
            await Task.Delay(200);
        }
    }

    [Fact]
    public async Task Server_endpoints_refuse_requests_without_a_valid_signature()
    {
        var c = new MatrixClient(pair.A);
        var unsigned = await c.Call("PUT", "/_matrix/federation/v1/send/t1", new JsonObject { ["pdus"] = new JsonArray() }, auth: false);
        Assert.Equal((HttpStatusCode.Unauthorized, "M_UNAUTHORIZED"), (unsigned.Status, unsigned.ErrCode));
        using var req = new HttpRequestMessage(HttpMethod.Get, pair.A.BaseUrl + "/_matrix/federation/v1/make_join/!r:x/@u:x");
        req.Headers.TryAddWithoutValidation("Authorization",
            $"X-Matrix origin=\"{pair.B.ServerName}\",destination=\"{pair.A.ServerName}\",key=\"ed25519:nope\",sig=\"AAAA\"");
        using var forged = await pair.A.Http.SendAsync(req);
        Assert.Equal(HttpStatusCode.Unauthorized, forged.StatusCode);
    }
}

public sealed class AllInOneFederationRoomTests(FederationPairFixture f) : FederationRoomTests(f), IClassFixture<FederationPairFixture>;

public sealed class SplitFederationRoomTests(SplitFederationPairFixture f) : FederationRoomTests(f), IClassFixture<SplitFederationPairFixture>;

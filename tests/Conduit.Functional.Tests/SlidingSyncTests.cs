using System.Diagnostics;
using System.Net;
using System.Text.Json.Nodes;
using static Conduit.Functional.Tests.MatrixClient;

namespace Conduit.Functional.Tests;

/// <summary>
/// Simplified sliding sync (MSC4186) through the edge, with the request shapes Element X sends (its "room-list"
/// and "encryption" connections). The same tests run all-in-one and split.
/// </summary>
public abstract class SlidingSyncTests(ServerFixture server)
{
    const string Path = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";

    static JsonArray Pairs(params (string Type, string Key)[] entries) => new([.. entries.Select(e => (JsonNode)new JsonArray(e.Type, e.Key))]);

    /// <summary>Element X's room list: one list of joined and invited rooms, timeline 1, about fifteen state types.</summary>
    static JsonObject RoomList(int end = 19, JsonObject? filters = null, JsonObject? extensions = null, JsonObject? subscriptions = null, JsonObject? moreLists = null)
    {
        var lists = new JsonObject
        {
            ["all_rooms"] = new JsonObject
            {
                ["ranges"] = new JsonArray(new JsonArray(0, end)),
                ["timeline_limit"] = 1,
                ["required_state"] = Pairs(("m.room.name", ""), ("m.room.topic", ""), ("m.room.avatar", ""), ("m.room.canonical_alias", ""),
                    ("m.room.encryption", ""), ("m.room.join_rules", ""), ("m.room.power_levels", ""), ("m.room.create", ""),
                    ("m.room.member", "$LAZY"), ("m.room.member", "$ME"), ("m.room.history_visibility", ""), ("m.space.parent", "*")),
                // Not the admin room's invite the server's first account gets, whichever test registers first.
                ["filters"] = filters ?? new JsonObject { ["is_invite"] = false, ["not_room_types"] = new JsonArray("m.space") },
            },
        };
        foreach (var (k, v) in moreLists ?? []) lists[k] = v!.DeepClone();
        return new JsonObject
        {
            ["conn_id"] = "room-list",
            ["lists"] = lists,
            ["room_subscriptions"] = subscriptions ?? new JsonObject(),
            ["extensions"] = extensions ?? new JsonObject(),
        };
    }

    static Task<Response> Slide(MatrixClient c, JsonObject body, string? pos = null, int timeoutMs = 0)
        => c.Post($"{Path}?timeout={timeoutMs}" + (pos is null ? "" : "&pos=" + E(pos)), body);

    static async Task<JsonObject> SlideOk(MatrixClient c, JsonObject body, string? pos = null, int timeoutMs = 0)
        => (await Slide(c, body, pos, timeoutMs)).Ok().Obj;

    static List<string> Sorted(params string[] ids) => [.. ids.Order(StringComparer.Ordinal)];
    static string Pos(JsonObject r) => r["pos"]!.GetValue<string>();
    static JsonObject Rooms(JsonObject r) => r["rooms"]!.AsObject();
    static long Count(JsonObject r, string list = "all_rooms") => r["lists"]![list]!["count"]!.GetValue<long>();
    static long Bump(JsonObject r, string room) => r["rooms"]![room]!["bump_stamp"]!.GetValue<long>();

    static List<string> Bodies(JsonObject room)
        => room["timeline"]!.AsArray().Where(e => e!["type"]!.GetValue<string>() == "m.room.message").Select(e => e!["content"]!["body"]!.GetValue<string>()).ToList();

    /// <summary>Long-polls until a response satisfies <paramref name="done"/> (or 15 s), returning it and its pos.</summary>
    static async Task<JsonObject> SlideUntil(MatrixClient c, JsonObject body, string pos, Func<JsonObject, bool> done)
    {
        var sw = Stopwatch.StartNew();
        while (true)
        {
            var r = await SlideOk(c, body, pos, 5000);
            if (done(r)) return r;
            Assert.True(sw.Elapsed < TimeSpan.FromSeconds(15), "no such sliding sync response in 15 s: " + r.ToJsonString());
            pos = Pos(r);
        }
    }

    [Fact]
    public async Task Versions_advertise_simplified_sliding_sync()
    {
        var v = (await new MatrixClient(server).Get("/_matrix/client/versions")).Ok().Obj;
        Assert.True(v["unstable_features"]!["org.matrix.simplified_msc3575"]!.GetValue<bool>());
    }

    [Fact]
    public async Task The_first_response_lists_rooms_by_bump_stamp_with_their_fields()
    {
        var u = await Register(server);
        var friend = await Register(server);
        var a = await u.CreateRoom(new JsonObject { ["name"] = "Room A" });
        var b = await u.CreateRoom(new JsonObject { ["invite"] = new JsonArray(friend.UserId), ["is_direct"] = true });
        var c = await u.CreateRoom(new JsonObject { ["name"] = "Room C", ["topic"] = "about C" });
        await u.SendText(a, "newest in A");
        (await u.Put($"{C}/user/{E(u.UserId)}/account_data/m.direct", new JsonObject { [friend.UserId] = new JsonArray(b) })).Ok();
        var space = await u.CreateRoom(new JsonObject { ["creation_content"] = new JsonObject { ["type"] = "m.space" } });

        var dms = new JsonObject { ["dms"] = new JsonObject { ["ranges"] = new JsonArray(new JsonArray(0, 9)), ["timeline_limit"] = 0, ["filters"] = new JsonObject { ["is_dm"] = true } } };
        var r = await SlideOk(u, RoomList(moreLists: dms));
        Assert.False(string.IsNullOrEmpty(Pos(r)));
        Assert.Equal(3, Count(r));
        Assert.Equal(1, Count(r, "dms"));
        Assert.Equal(Sorted(a, b, c), Sorted([.. Rooms(r).Select(kv => kv.Key)]));
        Assert.DoesNotContain(space, Rooms(r).Select(kv => kv.Key));
        // A's message is the newest bump; C was created after B.
        Assert.True(Bump(r, a) > Bump(r, c) && Bump(r, c) > Bump(r, b), r.ToJsonString());

        var ra = Rooms(r)[a]!.AsObject();
        Assert.Equal("Room A", ra["name"]!.GetValue<string>());
        Assert.True(ra["initial"]!.GetValue<bool>());
        Assert.Equal(["newest in A"], Bodies(ra));
        Assert.True(ra["limited"]!.GetValue<bool>());
        Assert.StartsWith("t", ra["prev_batch"]!.GetValue<string>());
        Assert.Equal(1, ra["joined_count"]!.GetValue<int>());
        Assert.Equal(0, ra["notification_count"]!.GetValue<int>());
        Assert.False(ra["is_dm"]!.GetValue<bool>());
        var state = ra["required_state"]!.AsArray().Select(e => (e!["type"]!.GetValue<string>(), e["state_key"]!.GetValue<string>())).ToList();
        Assert.Contains(("m.room.name", ""), state);
        Assert.Contains(("m.room.create", ""), state);
        Assert.Contains(("m.room.member", u.UserId), state);
        Assert.DoesNotContain(state, s => s.Item1 == "m.room.topic");
        Assert.Contains(("m.room.topic", ""), Rooms(r)[c]!["required_state"]!.AsArray().Select(e => (e!["type"]!.GetValue<string>(), e["state_key"]!.GetValue<string>())));

        // The DM has no name: its heroes are the other member, with the invited count.
        var rb = Rooms(r)[b]!.AsObject();
        Assert.Null(rb["name"]);
        Assert.Equal(friend.UserId, Assert.Single(rb["heroes"]!.AsArray())!["user_id"]!.GetValue<string>());
        Assert.Equal(1, rb["invited_count"]!.GetValue<int>());
        Assert.True(rb["is_dm"]!.GetValue<bool>());

        // The prev_batch pages back with /messages.
        var page = (await u.Get($"{C}/rooms/{E(a)}/messages?dir=b&limit=50&from={E(ra["prev_batch"]!.GetValue<string>())}")).Ok().Obj;
        Assert.Contains(page["chunk"]!.AsArray(), e => e!["type"]!.GetValue<string>() == "m.room.name");
        Assert.DoesNotContain(page["chunk"]!.AsArray(), e => e!["type"]!.GetValue<string>() == "m.room.message");

        // Ranges are inclusive: [0, 1] holds the two newest rooms only.
        var top = await SlideOk(u, RoomList(end: 1));
        Assert.Equal(3, Count(top));
        Assert.Equal(Sorted(a, c), Sorted([.. Rooms(top).Select(kv => kv.Key)]));

        // A subscription with its own config, and filters on room type.
        var sub = await SlideOk(u, RoomList(end: 0, filters: new JsonObject { ["room_types"] = new JsonArray("m.space") },
            subscriptions: new JsonObject { [b] = new JsonObject { ["timeline_limit"] = 5, ["required_state"] = Pairs(("*", "*")) } }));
        Assert.Equal(1, Count(sub));
        Assert.Equal(Sorted(b, space), Sorted([.. Rooms(sub).Select(kv => kv.Key)]));
        Assert.Contains(Rooms(sub)[b]!["required_state"]!.AsArray(), e => e!["type"]!.GetValue<string>() == "m.room.power_levels");
        Assert.Equal(5, Rooms(sub)[b]!["timeline"]!.AsArray().Count);
    }

    [Fact]
    public async Task A_new_message_bumps_its_room_into_the_incremental_response_alone()
    {
        var u = await Register(server);
        var a = await u.CreateRoom(new JsonObject { ["name"] = "A" });
        var b = await u.CreateRoom(new JsonObject { ["name"] = "B" });
        var c = await u.CreateRoom(new JsonObject { ["name"] = "C" });
        var body = RoomList(end: 1);
        var first = await SlideOk(u, body);
        Assert.Equal(Sorted(b, c), Sorted([.. Rooms(first).Select(kv => kv.Key)]));

        // Nothing new: an immediate answer carries no room.
        var quiet = await SlideOk(u, body, Pos(first));
        Assert.Empty(Rooms(quiet));
        Assert.Equal(3, Count(quiet));

        // A's message takes it to the top: it is new to the connection, so it comes whole.
        await u.SendText(a, "hello A");
        var next = await SlideUntil(u, body, Pos(quiet), r => Rooms(r).ContainsKey(a));
        Assert.Equal([a], Rooms(next).Select(kv => kv.Key));
        var ra = Rooms(next)[a]!;
        Assert.True(ra["initial"]!.GetValue<bool>());
        Assert.Equal(["hello A"], Bodies(ra.AsObject()));
        Assert.Equal("A", ra["name"]!.GetValue<string>());
        Assert.True(Bump(next, a) > Bump(first, c));

        // A message in a room already sent: only the new event, not initial, counted as live.
        await u.SendText(c, "hello C");
        var again = await SlideUntil(u, body, Pos(next), r => Rooms(r).ContainsKey(c));
        var rc = Rooms(again)[c]!.AsObject();
        Assert.Null(rc["initial"]);
        Assert.Null(rc["name"]);
        Assert.Equal(["hello C"], Bodies(rc));
        Assert.Equal(1, rc["num_live"]!.GetValue<int>());
        Assert.Single(rc["timeline"]!.AsArray());

        // Retrying the same pos gives the same news again (the client may not have received the answer).
        var retried = await SlideOk(u, body, Pos(next));
        Assert.Equal(["hello C"], Bodies(Rooms(retried)[c]!.AsObject()));
    }

    [Fact]
    public async Task A_message_counts_as_unread_and_a_read_receipt_clears_the_count()
    {
        var (alice, bob, room) = await PublicRoomPair(server);
        var body = RoomList(extensions: new JsonObject { ["receipts"] = new JsonObject { ["enabled"] = true } });
        var first = await SlideOk(alice, body);
        Assert.Equal(0, Rooms(first)[room]!["notification_count"]!.GetValue<int>());

        var sent = await bob.SendText(room, "unread for alice");
        var unread = await SlideUntil(alice, body, Pos(first), r => Rooms(r).ContainsKey(room));
        Assert.Equal(1, Rooms(unread)[room]!["notification_count"]!.GetValue<int>());

        // Alice reads it (on another device, say): the count goes back to 0 and her receipt comes with it.
        (await alice.Post($"{C}/rooms/{E(room)}/receipt/m.read/{E(sent)}", new JsonObject())).Ok();
        var read = await SlideUntil(alice, body, Pos(unread), r => Rooms(r)[room]?["notification_count"]?.GetValue<int>() == 0);
        Assert.Equal(0, Rooms(read)[room]!["highlight_count"]!.GetValue<int>());
        Assert.NotNull(read["extensions"]!["receipts"]?["rooms"]?[room]?["content"]?[sent]?["m.read"]?[alice.UserId]);
    }

    /// <summary>A new user's room "A" with messages m0.. and the first response of its room list, whose timeline
    /// of 1 has the last one.</summary>
    async Task<(MatrixClient U, string Room, JsonObject List, JsonObject First)> RoomWithMessages(int count)
    {
        var u = await Register(server);
        var a = await u.CreateRoom(new JsonObject { ["name"] = "A" });
        foreach (var i in Enumerable.Range(0, count)) await u.SendText(a, $"m{i}");
        var list = RoomList();
        var first = await SlideOk(u, list);
        Assert.Equal([$"m{count - 1}"], Bodies(Rooms(first)[a]!.AsObject()));
        return (u, a, list, first);
    }

    [Fact]
    public async Task A_subscription_asking_for_more_sends_the_room_whole_again_and_dropping_it_does_not()
    {
        var (u, a, list, first) = await RoomWithMessages(3);

        // Element X opens the room: a subscription with a longer timeline and all state.
        var open = RoomList(subscriptions: new JsonObject { [a] = new JsonObject { ["timeline_limit"] = 20, ["required_state"] = Pairs(("*", "*")) } });
        var opened = await SlideOk(u, open, Pos(first));
        var ra = Rooms(opened)[a]!.AsObject();
        Assert.True(ra["initial"]!.GetValue<bool>());
        Assert.Equal(["m0", "m1", "m2"], Bodies(ra));
        Assert.Contains(ra["required_state"]!.AsArray(), e => e!["type"]!.GetValue<string>() == "m.room.power_levels");

        // Closed again: the smaller config is no reason to send it, and its next message comes incrementally.
        var closed = await SlideOk(u, list, Pos(opened));
        Assert.Empty(Rooms(closed));
        await u.SendText(a, "m3");
        var next = await SlideUntil(u, list, Pos(closed), r => Rooms(r).ContainsKey(a));
        Assert.Null(Rooms(next)[a]!["initial"]);
        Assert.Equal(["m3"], Bodies(Rooms(next)[a]!.AsObject()));
    }

    [Fact]
    public async Task An_unknown_pos_is_M_UNKNOWN_POS_and_a_bad_body_is_refused()
    {
        var u = await Register(server);
        var r = await Slide(u, RoomList(), "nope_123");
        Assert.True(r.Status == HttpStatusCode.BadRequest && r.ErrCode == "M_UNKNOWN_POS", r.Body?.ToJsonString());

        // A pos of another connection (conn_id) is unknown on this one.
        var pos = Pos(await SlideOk(u, RoomList()));
        var other = RoomList();
        other["conn_id"] = "encryption";
        Assert.Equal("M_UNKNOWN_POS", (await Slide(u, other, pos)).ErrCode);

        // Only the acknowledged snapshot and the newest are kept: an older pos expires.
        var p2 = Pos(await SlideOk(u, RoomList(), pos));
        var p3 = Pos(await SlideOk(u, RoomList(), p2));
        Assert.Equal("M_UNKNOWN_POS", (await Slide(u, RoomList(), pos)).ErrCode);
        (await Slide(u, RoomList(), p3)).Ok();

        var bad = RoomList();
        bad["lists"]!["all_rooms"]!["ranges"] = new JsonArray(new JsonArray(5, 1));
        Assert.Equal("M_INVALID_PARAM", (await Slide(u, bad)).ErrCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await new MatrixClient(server).Post(Path, RoomList())).Status);
    }

    [Fact]
    public async Task A_request_with_pos_waits_for_news_until_its_timeout()
    {
        var u = await Register(server);
        var a = await u.CreateRoom();
        var body = RoomList();
        var pos = Pos(await SlideOk(u, body));

        var sw = Stopwatch.StartNew();
        var empty = await SlideOk(u, body, pos, 1500);
        Assert.True(sw.Elapsed >= TimeSpan.FromMilliseconds(1300), $"answered after {sw.Elapsed}");
        Assert.Empty(Rooms(empty));
        Assert.Empty(empty["extensions"]!.AsObject());

        // A message wakes a waiting request at once.
        sw.Restart();
        var waiting = SlideOk(u, body, Pos(empty), 30_000);
        await Task.Delay(300);
        Assert.False(waiting.IsCompleted, "a request with nothing new must wait");
        await u.SendText(a, "wake up");
        var woke = await waiting;
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(15), $"took {sw.Elapsed}");
        Assert.Equal(["wake up"], Bodies(Rooms(woke)[a]!.AsObject()));
    }

    [Fact]
    public async Task A_room_the_user_leaves_is_sent_with_its_leave()
    {
        var (alice, bob, room) = await PublicRoomPair(server);
        var body = RoomList();
        var first = await SlideOk(bob, body);
        Assert.True(Rooms(first).ContainsKey(room));
        (await bob.Post($"{C}/rooms/{E(room)}/leave", new JsonObject())).Ok();
        var left = await SlideUntil(bob, body, Pos(first), r => Rooms(r).ContainsKey(room));
        Assert.Equal("leave", Rooms(left)[room]!["membership"]!.GetValue<string>());
        // What Alice says afterwards is not Bob's to see.
        await alice.SendText(room, "after bob left");
        var after = await SlideOk(bob, body, Pos(left), 500);
        Assert.False(Rooms(after).ContainsKey(room));
    }

    [Fact]
    public async Task The_to_device_and_e2ee_extensions_deliver_and_acknowledge()
    {
        var (alice, bob, room) = await PublicRoomPair(server);
        var body = new JsonObject
        {
            ["conn_id"] = "encryption",
            ["extensions"] = new JsonObject
            {
                ["to_device"] = new JsonObject { ["enabled"] = true },
                ["e2ee"] = new JsonObject { ["enabled"] = true },
            },
        };
        var first = await SlideOk(alice, body);
        var e2ee = first["extensions"]!["e2ee"]!.AsObject();
        Assert.NotNull(e2ee["device_one_time_keys_count"] as JsonObject);
        Assert.NotNull(e2ee["device_unused_fallback_key_types"] as JsonArray);
        var since = first["extensions"]!["to_device"]!["next_batch"]!.GetValue<string>();

        (await bob.Put($"{C}/sendToDevice/m.test/{UniqueName("t")}", new JsonObject
        {
            ["messages"] = new JsonObject { [alice.UserId] = new JsonObject { [alice.DeviceId] = new JsonObject { ["hello"] = "alice" } } },
        })).Ok();
        body["extensions"]!["to_device"]!["since"] = since;
        var got = await SlideUntil(alice, body, Pos(first), r => r["extensions"]?["to_device"]?["events"]?.AsArray().Count > 0);
        var msg = Assert.Single(got["extensions"]!["to_device"]!["events"]!.AsArray())!;
        Assert.Equal("m.test", msg["type"]!.GetValue<string>());
        Assert.Equal(bob.UserId, msg["sender"]!.GetValue<string>());

        // Acknowledged by the next since: not sent again.
        body["extensions"]!["to_device"]!["since"] = got["extensions"]!["to_device"]!["next_batch"]!.DeepClone();
        var acked = await SlideOk(alice, body, Pos(got));
        Assert.Empty(acked["extensions"]!["to_device"]!["events"]!.AsArray());

        // Someone who starts sharing a room is in device_lists.changed.
        var carol = await Register(server);
        (await carol.Post($"{C}/join/{E(room)}", new JsonObject())).Ok();
        var changed = await SlideUntil(alice, body, Pos(acked), r => r["extensions"]?["e2ee"]?["device_lists"] is not null);
        Assert.Contains(carol.UserId, changed["extensions"]!["e2ee"]!["device_lists"]!["changed"]!.AsArray().Select(n => n!.GetValue<string>()));
    }

    [Fact]
    public async Task The_account_data_receipts_and_typing_extensions_cover_the_listed_rooms()
    {
        var (alice, bob, room) = await PublicRoomPair(server);
        var extensions = new JsonObject
        {
            ["account_data"] = new JsonObject { ["enabled"] = true },
            ["receipts"] = new JsonObject { ["enabled"] = true },
            ["typing"] = new JsonObject { ["enabled"] = true },
        };
        var body = RoomList(extensions: extensions);
        var first = await SlideOk(bob, body);
        Assert.Contains(first["extensions"]!["account_data"]!["global"]!.AsArray(), e => e!["type"]!.GetValue<string>() == "m.push_rules");

        (await bob.Put($"{C}/user/{E(bob.UserId)}/account_data/org.example.setting", new JsonObject { ["v"] = 1 })).Ok();
        (await bob.Put($"{C}/user/{E(bob.UserId)}/rooms/{E(room)}/account_data/m.tag", new JsonObject { ["tags"] = new JsonObject { ["u.x"] = new JsonObject() } })).Ok();
        var ad = await SlideUntil(bob, body, Pos(first), r => r["extensions"]?["account_data"]?["rooms"]?[room] is not null);
        Assert.Contains(ad["extensions"]!["account_data"]!["global"]!.AsArray(), e => e!["type"]!.GetValue<string>() == "org.example.setting");
        Assert.Equal("m.tag", Assert.Single(ad["extensions"]!["account_data"]!["rooms"]![room]!.AsArray())!["type"]!.GetValue<string>());

        var ev = await alice.SendText(room, "read me");
        (await alice.Post($"{C}/rooms/{E(room)}/receipt/m.read/{E(ev)}", new JsonObject())).Ok();
        var receipt = await SlideUntil(bob, body, Pos(ad), r => r["extensions"]?["receipts"]?["rooms"]?[room] is not null);
        var content = receipt["extensions"]!["receipts"]!["rooms"]![room]!;
        Assert.Equal("m.receipt", content["type"]!.GetValue<string>());
        Assert.NotNull(content["content"]![ev]!["m.read"]![alice.UserId]);

        (await alice.Put($"{C}/rooms/{E(room)}/typing/{E(alice.UserId)}", new JsonObject { ["typing"] = true, ["timeout"] = 30000 })).Ok();
        var typing = await SlideUntil(bob, body, Pos(receipt), r => r["extensions"]?["typing"]?["rooms"]?[room] is not null);
        Assert.Equal([alice.UserId], typing["extensions"]!["typing"]!["rooms"]![room]!["content"]!["user_ids"]!.AsArray().Select(n => n!.GetValue<string>()));
    }

    static List<(string Type, string Key)> StateKeys(JsonObject room)
        => [.. room["required_state"]!.AsArray().Select(e => (e!["type"]!.GetValue<string>(), e["state_key"]!.GetValue<string>()))];

    [Fact]
    public async Task A_room_new_to_the_connection_comes_with_its_receipts_typing_and_account_data_in_full()
    {
        var (alice, bob, room) = await PublicRoomPair(server);
        var ev = await alice.SendText(room, "read me");
        (await alice.Post($"{C}/rooms/{E(room)}/receipt/m.read/{E(ev)}", new JsonObject())).Ok();
        (await bob.Post($"{C}/rooms/{E(room)}/read_markers", new JsonObject { ["m.fully_read"] = ev })).Ok();
        (await bob.Put($"{C}/user/{E(bob.UserId)}/rooms/{E(room)}/account_data/m.tag", new JsonObject { ["tags"] = new JsonObject { ["u.x"] = new JsonObject() } })).Ok();
        (await alice.Put($"{C}/rooms/{E(room)}/typing/{E(alice.UserId)}", new JsonObject { ["typing"] = true, ["timeout"] = 30000 })).Ok();
        JsonObject Extensions() => new()
        {
            ["account_data"] = new JsonObject { ["enabled"] = true },
            ["receipts"] = new JsonObject { ["enabled"] = true },
            ["typing"] = new JsonObject { ["enabled"] = true },
        };
        // The connection starts with a list the room is not in (DMs only); everything above happened before its pos.
        var first = await SlideOk(bob, RoomList(filters: new JsonObject { ["is_dm"] = true }, extensions: Extensions()));
        Assert.Empty(Rooms(first));

        var r = await SlideOk(bob, RoomList(extensions: Extensions()), Pos(first));
        Assert.True(Rooms(r)[room]!["initial"]!.GetValue<bool>());
        var ext = r["extensions"]!;
        Assert.NotNull(ext["receipts"]!["rooms"]![room]!["content"]![ev]!["m.read"]![alice.UserId]);
        Assert.Equal([alice.UserId], ext["typing"]!["rooms"]![room]!["content"]!["user_ids"]!.AsArray().Select(n => n!.GetValue<string>()));
        var types = ext["account_data"]!["rooms"]![room]!.AsArray().Select(e => e!["type"]!.GetValue<string>()).ToList();
        Assert.Contains("m.tag", types);
        Assert.Contains("m.fully_read", types);

        // Sent again with nothing new: none of it is repeated.
        var again = await SlideOk(bob, RoomList(extensions: Extensions()), Pos(r));
        Assert.Null(again["extensions"]!["receipts"]?["rooms"]?[room]);
        Assert.Null(again["extensions"]!["account_data"]?["rooms"]?[room]);
    }

    [Fact]
    public async Task Lazy_members_are_sent_once_per_connection_and_a_new_sender_with_their_first_event()
    {
        var (alice, bob, room) = await PublicRoomPair(server);
        await alice.SendText(room, "one");
        var list = RoomList();
        var first = await SlideOk(bob, list);
        Assert.Contains(("m.room.member", alice.UserId), StateKeys(Rooms(first)[room]!.AsObject()));

        await alice.SendText(room, "two");
        var second = await SlideUntil(bob, list, Pos(first), r => Rooms(r).ContainsKey(room));
        Assert.Equal(["two"], Bodies(Rooms(second)[room]!.AsObject()));
        Assert.DoesNotContain(("m.room.member", alice.UserId), StateKeys(Rooms(second)[room]!.AsObject()));

        var carol = await Register(server);
        (await carol.Post($"{C}/join/{E(room)}", new JsonObject())).Ok();
        await carol.SendText(room, "hi from carol");
        var third = await SlideUntil(bob, list, Pos(second), r => Rooms(r)[room] is { } x && Bodies(x.AsObject()).Contains("hi from carol"));
        var state = StateKeys(Rooms(third)[room]!.AsObject());
        Assert.Contains(("m.room.member", carol.UserId), state);
        Assert.DoesNotContain(("m.room.member", alice.UserId), state);

        await alice.SendText(room, "three");
        var fourth = await SlideUntil(bob, list, Pos(third), r => Rooms(r)[room] is { } x && Bodies(x.AsObject()).Contains("three"));
        Assert.Empty(StateKeys(Rooms(fourth)[room]!.AsObject()));
    }

    [Fact]
    public async Task A_larger_timeline_limit_expands_the_timeline_as_Synapse_does()
    {
        var (u, a, list, first) = await RoomWithMessages(5);

        // Opened with the list's state and a longer timeline: not sent whole, its timeline expanded.
        var listConfig = list["lists"]!["all_rooms"]!;
        JsonObject Open(int limit) => RoomList(subscriptions: new JsonObject
        {
            [a] = new JsonObject { ["timeline_limit"] = limit, ["required_state"] = listConfig["required_state"]!.DeepClone() },
        });
        var opened = await SlideOk(u, Open(10), Pos(first));
        var ra = Rooms(opened)[a]!.AsObject();
        Assert.Null(ra["initial"]);
        Assert.True(ra["unstable_expanded_timeline"]!.GetValue<bool>());
        Assert.Equal(["m0", "m1", "m2", "m3", "m4"], Bodies(ra));

        // Closed; one new message (the timeline of 1 is not limited): opening again expands nothing.
        var closed = await SlideOk(u, list, Pos(opened));
        await u.SendText(a, "m5");
        var m5 = await SlideUntil(u, list, Pos(closed), r => Rooms(r).ContainsKey(a));
        Assert.False(Rooms(m5)[a]!["limited"]!.GetValue<bool>());
        var reopened = await SlideOk(u, Open(10), Pos(m5));
        Assert.Empty(Rooms(reopened));

        // Closed; two new messages under a timeline of 1 leave a gap: opening again expands the timeline again.
        closed = await SlideOk(u, list, Pos(reopened));
        await u.SendText(a, "m6");
        await u.SendText(a, "m7");
        var gap = await SlideUntil(u, list, Pos(closed), r => Rooms(r)[a] is { } x && Bodies(x.AsObject()).Contains("m7"));
        Assert.True(Rooms(gap)[a]!["limited"]!.GetValue<bool>());
        var expanded = Rooms(await SlideOk(u, Open(10), Pos(gap)))[a]!.AsObject();
        Assert.True(expanded["unstable_expanded_timeline"]!.GetValue<bool>());
        Assert.Equal(["m2", "m3", "m4", "m5", "m6", "m7"], Bodies(expanded)[^6..]);
    }

    [Fact]
    public async Task A_room_out_of_view_picks_up_where_the_connection_left_it()
    {
        var u = await Register(server);
        var x = await u.CreateRoom(new JsonObject { ["name"] = "X" });
        var y = await u.CreateRoom(new JsonObject { ["name"] = "Y" });
        await u.SendText(x, "x1");
        var top = RoomList(end: 0);
        var first = await SlideOk(u, top);
        Assert.True(Rooms(first).ContainsKey(x));

        // Y's message puts it on top and X out of the range; X's topic then changes (no bump).
        await u.SendText(y, "y1");
        var second = await SlideUntil(u, top, Pos(first), r => Rooms(r).ContainsKey(y));
        (await u.Put($"{C}/rooms/{E(x)}/state/m.room.topic", new JsonObject { ["topic"] = "new topic" })).Ok();
        var third = await SlideOk(u, top, Pos(second), 1000);

        // Back in view (a subscription): the topic change comes, though the connection's pos is past it.
        var sub = RoomList(end: 0, subscriptions: new JsonObject { [x] = top["lists"]!["all_rooms"]!.DeepClone() });
        sub["room_subscriptions"]![x]!.AsObject().Remove("ranges");
        sub["room_subscriptions"]![x]!.AsObject().Remove("filters");
        var back = await SlideOk(u, sub, Pos(third));
        var rx = Rooms(back)[x]!.AsObject();
        Assert.Null(rx["initial"]);
        Assert.Contains(rx["timeline"]!.AsArray(), e => e!["type"]!.GetValue<string>() == "m.room.topic");
    }
}

public sealed class AllInOneSlidingSyncTests(AllInOneFixture f) : SlidingSyncTests(f), IClassFixture<AllInOneFixture>;

public sealed class SplitSlidingSyncTests(SplitFixture f) : SlidingSyncTests(f), IClassFixture<SplitFixture>;

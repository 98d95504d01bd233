using System.Net;
using System.Text.Json.Nodes;
using static Conduit.Functional.Tests.MatrixClient;

namespace Conduit.Functional.Tests;

/// <summary>Knocking, restricted joins, room upgrades and timestamp_to_event, as users see them. Both modes.</summary>
public abstract class RoomFeatureTests(ServerFixture server)
{
    static JsonObject JoinRules(string rule, string? allowRoom = null)
    {
        var content = new JsonObject { ["join_rule"] = rule };
        if (allowRoom is not null)
            content["allow"] = new JsonArray(new JsonObject { ["type"] = "m.room_membership", ["room_id"] = allowRoom });
        return new JsonObject { ["type"] = "m.room.join_rules", ["state_key"] = "", ["content"] = content };
    }

    static async Task<JsonObject> State(MatrixClient u, string room, string type, string stateKey = "")
        => (await u.Get($"{C}/rooms/{E(room)}/state/{type}/{E(stateKey)}")).Ok().Obj;

    static JsonArray Timeline(JsonObject sync, string room)
        => sync["rooms"]?["join"]?[room]?["timeline"]?["events"] as JsonArray ?? [];

    // ---- knocking

    [Fact]
    public async Task Knock_then_accept_by_invite_then_join()
    {
        var alice = await Register(server);
        var bob = await Register(server);
        var room = await alice.CreateRoom(new JsonObject { ["name"] = "Knock knock", ["initial_state"] = new JsonArray(JoinRules("knock")) });
        var aliceSince = (await alice.Sync())["next_batch"]!.GetValue<string>();

        Assert.Equal("M_FORBIDDEN", (await bob.Post($"{C}/join/{E(room)}", new JsonObject())).ErrCode);
        Assert.Equal(room, (await bob.Post($"{C}/knock/{E(room)}", new JsonObject { ["reason"] = "let me in" })).Ok().Obj["room_id"]!.GetValue<string>());

        // Bob sees the room among his knocks, with its name and his own knock.
        var bobSync = await bob.Sync();
        var knockState = bobSync["rooms"]!["knock"]![room]!["knock_state"]!["events"]!.AsArray();
        Assert.Contains(knockState, e => e!["type"]!.GetValue<string>() == "m.room.name" && e["content"]!["name"]!.GetValue<string>() == "Knock knock");
        Assert.Contains(knockState, e => e!["type"]!.GetValue<string>() == "m.room.member" && e["content"]!["membership"]!.GetValue<string>() == "knock");
        Assert.Null(bobSync["rooms"]!["join"]![room]);

        // Alice sees the knock, with its reason, in her timeline.
        var knock = Timeline(await alice.Sync(aliceSince), room).Single(e => e!["type"]!.GetValue<string>() == "m.room.member" && e["state_key"]!.GetValue<string>() == bob.UserId)!;
        Assert.Equal("knock", knock["content"]!["membership"]!.GetValue<string>());
        Assert.Equal("let me in", knock["content"]!["reason"]!.GetValue<string>());

        (await alice.Post($"{C}/rooms/{E(room)}/invite", new JsonObject { ["user_id"] = bob.UserId })).Ok();
        Assert.NotNull((await bob.Sync())["rooms"]!["invite"]![room]);
        (await bob.Post($"{C}/rooms/{E(room)}/join", new JsonObject())).Ok();
        Assert.Contains(room, (await bob.Get($"{C}/joined_rooms")).Ok().Obj["joined_rooms"]!.AsArray().Select(n => n!.GetValue<string>()));
        await alice.SendText(room, "welcome");
        Assert.Contains("welcome", TimelineBodies(await bob.Sync(), room));
    }

    [Fact]
    public async Task Knock_then_deny_by_kick()
    {
        var alice = await Register(server);
        var bob = await Register(server);
        var room = await alice.CreateRoom(new JsonObject { ["initial_state"] = new JsonArray(JoinRules("knock")) });
        (await bob.Post($"{C}/knock/{E(room)}", new JsonObject())).Ok();
        var since = (await bob.Sync())["next_batch"]!.GetValue<string>();
        (await alice.Post($"{C}/rooms/{E(room)}/kick", new JsonObject { ["user_id"] = bob.UserId, ["reason"] = "not today" })).Ok();

        var after = await bob.Sync(since);
        var leave = after["rooms"]!["leave"]![room]!["timeline"]!["events"]!.AsArray().Last()!;
        Assert.Equal("leave", leave["content"]!["membership"]!.GetValue<string>());
        Assert.Equal(alice.UserId, leave["sender"]!.GetValue<string>());
        Assert.Null(after["rooms"]!["knock"]?[room]);
        Assert.Equal("M_FORBIDDEN", (await bob.Post($"{C}/join/{E(room)}", new JsonObject())).ErrCode);
        Assert.Equal("M_FORBIDDEN", (await bob.Get($"{C}/rooms/{E(room)}/messages?dir=b")).ErrCode);
    }

    [Fact]
    public async Task Knock_is_refused_where_the_join_rule_does_not_take_knocks()
    {
        var alice = await Register(server);
        var bob = await Register(server);
        var inviteOnly = await alice.CreateRoom(new JsonObject { ["preset"] = "private_chat" });
        var knockOnInvite = await bob.Post($"{C}/knock/{E(inviteOnly)}", new JsonObject());
        Assert.Equal((HttpStatusCode.Forbidden, "M_FORBIDDEN"), (knockOnInvite.Status, knockOnInvite.ErrCode));
        var joined = await alice.CreateRoom(new JsonObject { ["initial_state"] = new JsonArray(JoinRules("knock")) });
        Assert.Equal("M_FORBIDDEN", (await alice.Post($"{C}/knock/{E(joined)}", new JsonObject())).ErrCode);
        Assert.Equal("M_NOT_FOUND", (await bob.Post($"{C}/knock/{E("!nowhere:" + server.ServerName)}", new JsonObject())).ErrCode);
        Assert.Null((await bob.Sync())["rooms"]!["knock"]?[inviteOnly]);
    }

    // ---- restricted joins

    [Theory]
    [InlineData("restricted")]
    [InlineData("knock_restricted")]
    public async Task Restricted_join_needs_membership_of_an_allowed_room(string rule)
    {
        var alice = await Register(server);
        var bob = await Register(server);
        var carol = await Register(server);
        var space = await alice.CreateRoom(new JsonObject { ["preset"] = "private_chat", ["invite"] = new JsonArray(bob.UserId) });
        (await bob.Post($"{C}/rooms/{E(space)}/join", new JsonObject())).Ok();
        var room = await alice.CreateRoom(new JsonObject { ["initial_state"] = new JsonArray(JoinRules(rule, space)) });

        (await bob.Post($"{C}/join/{E(room)}", new JsonObject())).Ok();
        var member = await State(bob, room, "m.room.member", bob.UserId);
        Assert.Equal("join", member["membership"]!.GetValue<string>());
        Assert.Equal(alice.UserId, member["join_authorised_via_users_server"]!.GetValue<string>());

        var refused = await carol.Post($"{C}/join/{E(room)}", new JsonObject());
        Assert.Equal((HttpStatusCode.Forbidden, "M_FORBIDDEN"), (refused.Status, refused.ErrCode));
        Assert.DoesNotContain(room, (await carol.Get($"{C}/joined_rooms")).Ok().Obj["joined_rooms"]!.AsArray().Select(n => n!.GetValue<string>()));
        if (rule == "knock_restricted") (await carol.Post($"{C}/knock/{E(room)}", new JsonObject())).Ok();

        // An invite still lets someone outside the allowed rooms in, with no authorising user.
        (await alice.Post($"{C}/rooms/{E(room)}/invite", new JsonObject { ["user_id"] = carol.UserId })).Ok();
        (await carol.Post($"{C}/rooms/{E(room)}/join", new JsonObject())).Ok();
        Assert.Null((await State(carol, room, "m.room.member", carol.UserId))["join_authorised_via_users_server"]);
    }

    // ---- upgrades

    [Fact]
    public async Task Upgrade_replaces_the_room_and_moves_aliases()
    {
        var alice = await Register(server);
        var bob = await Register(server);
        var aliasName = UniqueName("up");
        var alias = $"#{aliasName}:{server.ServerName}";
        var room = await alice.CreateRoom(new JsonObject
        {
            ["preset"] = "public_chat", ["name"] = "Old name", ["topic"] = "Old topic", ["room_alias_name"] = aliasName, ["room_version"] = "10",
            ["power_level_content_override"] = new JsonObject { ["events"] = new JsonObject { ["m.room.topic"] = 20, ["m.room.tombstone"] = 100, ["m.room.power_levels"] = 100 } },
        });
        (await bob.Post($"{C}/join/{E(room)}", new JsonObject())).Ok();
        var bobSince = (await bob.Sync())["next_batch"]!.GetValue<string>();

        Assert.Equal("M_FORBIDDEN", (await bob.Post($"{C}/rooms/{E(room)}/upgrade", new JsonObject { ["new_version"] = "11" })).ErrCode);
        var unknown = await alice.Post($"{C}/rooms/{E(room)}/upgrade", new JsonObject { ["new_version"] = "999" });
        Assert.Equal((HttpStatusCode.BadRequest, "M_UNSUPPORTED_ROOM_VERSION"), (unknown.Status, unknown.ErrCode));

        var newRoom = (await alice.Post($"{C}/rooms/{E(room)}/upgrade", new JsonObject { ["new_version"] = "11" })).Ok().Obj["replacement_room"]!.GetValue<string>();
        Assert.NotEqual(room, newRoom);

        // The old room points at the new one, and Bob hears about it.
        Assert.Equal(newRoom, (await State(bob, room, "m.room.tombstone"))["replacement_room"]!.GetValue<string>());
        Assert.Contains(Timeline(await bob.Sync(bobSince), room), e => e!["type"]!.GetValue<string>() == "m.room.tombstone");
        // Ordinary members can no longer chat there.
        Assert.Equal("M_FORBIDDEN", (await bob.Put($"{C}/rooms/{E(room)}/send/m.room.message/late", new JsonObject { ["body"] = "hello?" })).ErrCode);

        // The new room: version, predecessor, copied state.
        var create = await State(alice, newRoom, "m.room.create");
        Assert.Equal("11", create["room_version"]!.GetValue<string>());
        Assert.Equal(room, create["predecessor"]!["room_id"]!.GetValue<string>());
        Assert.Equal("Old name", (await State(alice, newRoom, "m.room.name"))["name"]!.GetValue<string>());
        Assert.Equal("Old topic", (await State(alice, newRoom, "m.room.topic"))["topic"]!.GetValue<string>());
        var pl = await State(alice, newRoom, "m.room.power_levels");
        Assert.Equal(20, pl["events"]!["m.room.topic"]!.GetValue<int>());
        Assert.Equal(100, pl["users"]![alice.UserId]!.GetValue<int>());
        Assert.Equal("public", (await State(alice, newRoom, "m.room.join_rules"))["join_rule"]!.GetValue<string>());

        // The alias moved; Bob follows it into the new room and talks there.
        Assert.Equal(newRoom, (await bob.Get($"{C}/directory/room/{E(alias)}")).Ok().Obj["room_id"]!.GetValue<string>());
        Assert.Equal(alias, (await State(alice, newRoom, "m.room.canonical_alias"))["alias"]!.GetValue<string>());
        Assert.Contains(alias, (await alice.Get($"{C}/rooms/{E(newRoom)}/aliases")).Ok().Obj["aliases"]!.AsArray().Select(n => n!.GetValue<string>()));
        Assert.Equal(newRoom, (await bob.Post($"{C}/join/{E(alias)}", new JsonObject())).Ok().Obj["room_id"]!.GetValue<string>());
        await bob.SendText(newRoom, "made it");
        Assert.Contains("made it", TimelineBodies(await alice.Sync(), newRoom));
    }

    [Fact]
    public async Task Upgrade_to_version_12_gives_a_room_id_from_its_create_event()
    {
        var alice = await Register(server);
        var room = await alice.CreateRoom(new JsonObject { ["preset"] = "public_chat", ["name"] = "To twelve", ["room_version"] = "11" });
        var newRoom = (await alice.Post($"{C}/rooms/{E(room)}/upgrade", new JsonObject { ["new_version"] = "12" })).Ok().Obj["replacement_room"]!.GetValue<string>();
        Assert.DoesNotContain(":", newRoom);
        var create = await State(alice, newRoom, "m.room.create");
        Assert.Equal("12", create["room_version"]!.GetValue<string>());
        Assert.Equal(room, create["predecessor"]!["room_id"]!.GetValue<string>());
        Assert.Equal("To twelve", (await State(alice, newRoom, "m.room.name"))["name"]!.GetValue<string>());
        // The creator is not listed in the new room's power levels (v12 creators are above them) and can still act.
        Assert.Null((await State(alice, newRoom, "m.room.power_levels"))["users"]?[alice.UserId]);
        await alice.SendText(newRoom, "still mine");
        Assert.Equal(newRoom, (await State(alice, room, "m.room.tombstone"))["replacement_room"]!.GetValue<string>());
    }

    // ---- timestamp_to_event

    [Fact]
    public async Task Timestamp_to_event_finds_the_nearest_event_in_either_direction()
    {
        var alice = await Register(server);
        var outsider = await Register(server);
        var room = await alice.CreateRoom(new JsonObject { ["preset"] = "private_chat" });
        var sent = await alice.SendSpacedTexts(room, "m", 3);
        var (ids, stamps) = (sent.Select(s => s.Id).ToList(), sent.Select(s => s.Ts).ToList());
        var path = $"/_matrix/client/v1/rooms/{E(room)}/timestamp_to_event";
        async Task<string> Find(long ts, string dir) => (await alice.Get($"{path}?ts={ts}&dir={dir}")).Ok().Obj["event_id"]!.GetValue<string>();

        Assert.Equal(ids[1], await Find(stamps[0] + 1, "f"));
        Assert.Equal(ids[1], await Find(stamps[2] - 1, "b"));
        Assert.Equal(ids[2], await Find(stamps[2], "b"));
        Assert.Equal(ids[0], await Find(stamps[0], "f"));
        var found = (await alice.Get($"{path}?ts={stamps[1]}&dir=f")).Ok().Obj;
        Assert.Equal(stamps[1], found["origin_server_ts"]!.GetValue<long>());
        Assert.Equal("M_NOT_FOUND", (await alice.Get($"{path}?ts={stamps[2] + 60_000}&dir=f")).ErrCode);
        Assert.Equal("M_INVALID_PARAM", (await alice.Get($"{path}?ts={stamps[0]}&dir=x")).ErrCode);

        var refused = await outsider.Get($"{path}?ts={stamps[0]}&dir=f");
        Assert.Equal((HttpStatusCode.Forbidden, "M_FORBIDDEN"), (refused.Status, refused.ErrCode));
    }

    // ---- the same endpoints in every room ID format (v1-11 "!x:server", v12 "!" + hash): one parameter rule for all.

    [Theory]
    [InlineData("1")]
    [InlineData("6")]
    [InlineData("11")]
    [InlineData("12")]
    public async Task Knock_upgrade_and_timestamp_to_event_take_rooms_of_every_version(string versionId)
    {
        var alice = await Register(server);
        var bob = await Register(server);
        var room = await alice.CreateRoom(new JsonObject { ["room_version"] = versionId, ["initial_state"] = new JsonArray(JoinRules("knock")) });
        var first = await alice.SendText(room, "first");

        // Knocking exists from room version 7 (rooms/v7.md); before that the auth rules refuse it, as a 403, never as
        // a malformed request.
        var knock = await bob.Post($"{C}/knock/{E(room)}", new JsonObject { ["reason"] = "hi" });
        if (int.Parse(versionId) >= 7)
        {
            Assert.Equal(room, knock.Ok().Obj["room_id"]!.GetValue<string>());
            Assert.Equal("knock", (await State(alice, room, "m.room.member", bob.UserId))["membership"]!.GetValue<string>());
        }
        else Assert.Equal((HttpStatusCode.Forbidden, "M_FORBIDDEN"), (knock.Status, knock.ErrCode));

        var ts = (await alice.Get($"{C}/rooms/{E(room)}/event/{E(first)}")).Ok().Obj["origin_server_ts"]!.GetValue<long>();
        var found = (await alice.Get($"/_matrix/client/v1/rooms/{E(room)}/timestamp_to_event?ts={ts}&dir=b")).Ok().Obj;
        Assert.Equal(ts, found["origin_server_ts"]!.GetValue<long>());

        var newRoom = (await alice.Post($"{C}/rooms/{E(room)}/upgrade", new JsonObject { ["new_version"] = versionId })).Ok().Obj["replacement_room"]!.GetValue<string>();
        Assert.Equal(room, (await State(alice, newRoom, "m.room.create"))["predecessor"]!["room_id"]!.GetValue<string>());
        Assert.Equal(newRoom, (await State(alice, room, "m.room.tombstone"))["replacement_room"]!.GetValue<string>());
        await alice.SendText(newRoom, "moved");
        Assert.Contains("moved", TimelineBodies(await alice.Sync(), newRoom));
    }
}

public sealed class AllInOneRoomFeatureTests(AllInOneFixture f) : RoomFeatureTests(f), IClassFixture<AllInOneFixture>;

public sealed class SplitRoomFeatureTests(SplitFixture f) : RoomFeatureTests(f), IClassFixture<SplitFixture>;

using System.Net;
using System.Text.Json.Nodes;
using static Conduit.Functional.Tests.MatrixClient;

namespace Conduit.Functional.Tests;

/// <summary>Small behaviours clients rely on, each where we once differed from the spec or from Synapse. Both modes.</summary>
public abstract class ClientDetailsTests(ServerFixture server)
{
    static async Task<JsonObject> State(MatrixClient u, string room, string type, string stateKey = "")
        => (await u.Get($"{C}/rooms/{E(room)}/state/{type}/{E(stateKey)}")).Ok().Obj;

    [Fact]
    public async Task A_member_sets_a_display_name_and_avatar_for_one_room()
    {
        var alice = await Register(server);
        var room = await alice.CreateRoom(new JsonObject { ["preset"] = "public_chat" });
        // Element sends the member event's content with the membership unchanged; some clients leave membership out.
        (await alice.Put($"{C}/rooms/{E(room)}/state/m.room.member/{E(alice.UserId)}",
            new JsonObject { ["membership"] = "join", ["displayname"] = "Alice here", ["avatar_url"] = "mxc://x/y" })).Ok();
        Assert.Equal("Alice here", (await State(alice, room, "m.room.member", alice.UserId))["displayname"]!.GetValue<string>());
        (await alice.Put($"{C}/rooms/{E(room)}/state/m.room.member/{E(alice.UserId)}", new JsonObject { ["displayname"] = "Alice again", ["avatar_url"] = "mxc://x/y" })).Ok();
        var member = await State(alice, room, "m.room.member", alice.UserId);
        Assert.Equal(("join", "Alice again"), (member["membership"]!.GetValue<string>(), member["displayname"]!.GetValue<string>()));

        // Changing the membership this way, or someone else's member event, stays refused.
        var leave = await alice.Put($"{C}/rooms/{E(room)}/state/m.room.member/{E(alice.UserId)}", new JsonObject { ["membership"] = "leave" });
        Assert.Equal((HttpStatusCode.Forbidden, "M_FORBIDDEN"), (leave.Status, leave.ErrCode));
        var bob = await Register(server);
        (await bob.Post($"{C}/join/{E(room)}", new JsonObject())).Ok();
        Assert.Equal("M_FORBIDDEN", (await alice.Put($"{C}/rooms/{E(room)}/state/m.room.member/{E(bob.UserId)}", new JsonObject { ["membership"] = "join", ["displayname"] = "Bob?" })).ErrCode);

        var joined = (await bob.Get($"{C}/rooms/{E(room)}/joined_members")).Ok().Obj["joined"]!;
        Assert.Equal("mxc://x/y", joined[alice.UserId]!["avatar_url"]!.GetValue<string>());
        Assert.Equal("Alice again", joined[alice.UserId]!["display_name"]!.GetValue<string>());
        // avatar_url is present (null) for a member without one.
        Assert.True(joined[bob.UserId]!.AsObject().ContainsKey("avatar_url"));
    }

    [Fact]
    public async Task A_join_keeps_the_reason_and_display_name_it_was_sent_with()
    {
        var alice = await Register(server);
        var bob = await Register(server);
        var room = await alice.CreateRoom(new JsonObject { ["preset"] = "public_chat" });
        (await bob.Post($"{C}/join/{E(room)}", new JsonObject { ["reason"] = "saw the invite", ["displayname"] = "Bobby in here" })).Ok();
        var member = await State(alice, room, "m.room.member", bob.UserId);
        Assert.Equal("join", member["membership"]!.GetValue<string>());
        Assert.Equal("saw the invite", member["reason"]!.GetValue<string>());
        Assert.Equal("Bobby in here", member["displayname"]!.GetValue<string>());
        // The server-decided keys cannot be smuggled in.
        var carol = await Register(server);
        (await carol.Post($"{C}/rooms/{E(room)}/join", new JsonObject { ["membership"] = "ban", ["join_authorised_via_users_server"] = alice.UserId })).Ok();
        var carolMember = await State(alice, room, "m.room.member", carol.UserId);
        Assert.Equal("join", carolMember["membership"]!.GetValue<string>());
        Assert.Null(carolMember["join_authorised_via_users_server"]);
        Assert.Equal("M_BAD_JSON", (await Register(server).ContinueWith(t => t.Result.Post($"{C}/join/{E(room)}", new JsonObject { ["displayname"] = 5 })).Unwrap()).ErrCode);
    }

    [Fact]
    public async Task Sending_the_current_state_again_returns_the_existing_event()
    {
        var alice = await Register(server);
        var room = await alice.CreateRoom(new JsonObject { ["preset"] = "private_chat" });
        var first = (await alice.Put($"{C}/rooms/{E(room)}/state/m.room.topic/", new JsonObject { ["topic"] = "tea" })).Ok().Obj["event_id"]!.GetValue<string>();
        var since = (await alice.Sync())["next_batch"]!.GetValue<string>();
        var again = (await alice.Put($"{C}/rooms/{E(room)}/state/m.room.topic/", new JsonObject { ["topic"] = "tea" })).Ok().Obj["event_id"]!.GetValue<string>();
        Assert.Equal(first, again);
        Assert.Empty(TimelineBodies(await alice.Sync(since), room));
        var changed = (await alice.Put($"{C}/rooms/{E(room)}/state/m.room.topic/", new JsonObject { ["topic"] = "coffee" })).Ok().Obj["event_id"]!.GetValue<string>();
        Assert.NotEqual(first, changed);
    }

    [Fact]
    public async Task Deleting_the_canonical_alias_removes_it_from_the_room()
    {
        var alice = await Register(server);
        var name = UniqueName("canon");
        var alias = $"#{name}:{server.ServerName}";
        var other = $"#{UniqueName("alt")}:{server.ServerName}";
        var room = await alice.CreateRoom(new JsonObject { ["preset"] = "public_chat", ["room_alias_name"] = name });
        (await alice.Put($"{C}/directory/room/{E(other)}", new JsonObject { ["room_id"] = room })).Ok();
        (await alice.Put($"{C}/rooms/{E(room)}/state/m.room.canonical_alias/", new JsonObject { ["alias"] = alias, ["alt_aliases"] = new JsonArray(other) })).Ok();

        (await alice.Call("DELETE", $"{C}/directory/room/{E(alias)}")).Ok();
        var canonical = await State(alice, room, "m.room.canonical_alias");
        Assert.Null(canonical["alias"]);
        Assert.Equal([other], canonical["alt_aliases"]!.AsArray().Select(n => n!.GetValue<string>()));
        (await alice.Call("DELETE", $"{C}/directory/room/{E(other)}")).Ok();
        Assert.Empty((await State(alice, room, "m.room.canonical_alias"))["alt_aliases"]!.AsArray());
    }

    [Fact]
    public async Task Context_and_redaction_answer_as_synapse_does()
    {
        var alice = await Register(server);
        var bob = await Register(server);
        var secret = await alice.CreateRoom(new JsonObject { ["preset"] = "private_chat" });
        var hidden = await alice.SendText(secret, "secret");
        var ctx = await bob.Get($"{C}/rooms/{E(secret)}/context/{E(hidden)}");
        Assert.Equal((HttpStatusCode.Forbidden, "M_FORBIDDEN"), (ctx.Status, ctx.ErrCode));

        var open = await alice.CreateRoom(new JsonObject { ["preset"] = "public_chat" });
        var otherRoom = await alice.Put($"{C}/rooms/{E(open)}/redact/{E(hidden)}/r1", new JsonObject());
        Assert.Equal((HttpStatusCode.BadRequest, "M_INVALID_PARAM"), (otherRoom.Status, otherRoom.ErrCode));
        Assert.Equal("secret", (await alice.Get($"{C}/rooms/{E(secret)}/event/{E(hidden)}")).Ok().Obj["content"]!["body"]!.GetValue<string>());
        // An event this server has not seen may be redacted (it may still arrive over federation).
        (await alice.Put($"{C}/rooms/{E(open)}/redact/{E("$unknown:" + server.ServerName)}/r2", new JsonObject())).Ok();
        var create = (await alice.Get($"{C}/rooms/{E(open)}/state/m.room.create/?format=event")).Ok().Obj["event_id"]!.GetValue<string>();
        Assert.Equal("M_FORBIDDEN", (await alice.Put($"{C}/rooms/{E(open)}/redact/{E(create)}/r3", new JsonObject())).ErrCode);
    }

    [Fact]
    public async Task Messages_omit_end_on_the_last_page_in_both_directions()
    {
        var alice = await Register(server);
        var room = await alice.CreateRoom(new JsonObject { ["preset"] = "private_chat" });
        for (var i = 0; i < 5; i++) await alice.SendText(room, $"m{i}");
        var back = (await alice.Get($"{C}/rooms/{E(room)}/messages?dir=b&limit=4")).Ok().Obj;
        Assert.Equal(4, back["chunk"]!.AsArray().Count);
        var end = back["end"]!.GetValue<string>();
        var rest = (await alice.Get($"{C}/rooms/{E(room)}/messages?dir=b&limit=100&from={E(end)}")).Ok().Obj;
        Assert.NotEmpty(rest["chunk"]!.AsArray());
        Assert.Null(rest["end"]);
        var forward = (await alice.Get($"{C}/rooms/{E(room)}/messages?dir=f&limit=100")).Ok().Obj;
        Assert.Null(forward["end"]);
    }

    [Fact]
    public async Task A_sync_filter_with_timeline_limit_0_gives_state_without_timeline()
    {
        var alice = await Register(server);
        var room = await alice.CreateRoom(new JsonObject { ["preset"] = "private_chat", ["name"] = "Only state" });
        await alice.SendText(room, "hello");
        var sync = await alice.Sync(filter: """{"room":{"timeline":{"limit":0}}}""");
        var joined = sync["rooms"]!["join"]![room]!;
        Assert.Empty(joined["timeline"]!["events"]!.AsArray());
        Assert.True(joined["timeline"]!["limited"]!.GetValue<bool>());
        Assert.Contains(joined["state"]!["events"]!.AsArray(), e => e!["type"]!.GetValue<string>() == "m.room.name");
    }

    [Fact]
    public async Task An_upgraded_room_keeps_its_guest_access()
    {
        var alice = await Register(server);
        var room = await alice.CreateRoom(new JsonObject { ["preset"] = "public_chat" });
        (await alice.Put($"{C}/rooms/{E(room)}/state/m.room.guest_access/", new JsonObject { ["guest_access"] = "forbidden" })).Ok();
        var newRoom = (await alice.Post($"{C}/rooms/{E(room)}/upgrade", new JsonObject { ["new_version"] = "11" })).Ok().Obj["replacement_room"]!.GetValue<string>();
        Assert.Equal("forbidden", (await State(alice, newRoom, "m.room.guest_access"))["guest_access"]!.GetValue<string>());
    }
}

public sealed class AllInOneClientDetailsTests(AllInOneFixture f) : ClientDetailsTests(f), IClassFixture<AllInOneFixture>;

public sealed class SplitClientDetailsTests(SplitFixture f) : ClientDetailsTests(f), IClassFixture<SplitFixture>;

using System.Net;
using System.Text.Json.Nodes;
using static Conduit.Functional.Tests.MatrixClient;

namespace Conduit.Functional.Tests;

/// <summary>History visibility and the state at past events, as users notice them. Both modes.</summary>
public abstract class VisibilityTests(ServerFixture server)
{
    static List<string> Bodies(JsonArray events) => events.Where(e => e!["type"]!.GetValue<string>() == "m.room.message").Select(e => e!["content"]!["body"]!.GetValue<string>()).ToList();

    async Task<(MatrixClient Owner, string Room)> Room(string visibility, string preset = "public_chat")
    {
        var owner = await Register(server);
        var room = await owner.CreateRoom(new JsonObject
        {
            ["preset"] = preset,
            ["initial_state"] = new JsonArray(new JsonObject { ["type"] = "m.room.history_visibility", ["content"] = new JsonObject { ["history_visibility"] = visibility } }),
        });
        return (owner, room);
    }

    [Fact]
    public async Task A_user_who_joined_later_does_not_see_joined_only_history()
    {
        var (alice, room) = await Room("joined");
        await alice.SendText(room, "before bob");
        var bob = await Register(server);
        (await bob.Post($"{C}/join/{E(room)}", new JsonObject())).Ok();
        await alice.SendText(room, "after bob");
        var messages = (await bob.Get($"{C}/rooms/{E(room)}/messages?dir=b&limit=50")).Ok().Obj["chunk"]!.AsArray();
        Assert.Equal(["after bob"], Bodies(messages));
        Assert.Equal(["after bob"], TimelineBodies(await bob.Sync(), room));
        var early = (await alice.Get($"{C}/rooms/{E(room)}/messages?dir=b&limit=50")).Ok().Obj["chunk"]!.AsArray()
            .First(e => e!["content"]?["body"]?.GetValue<string>() == "before bob")!["event_id"]!.GetValue<string>();
        Assert.Equal("M_NOT_FOUND", (await bob.Get($"{C}/rooms/{E(room)}/event/{E(early)}")).ErrCode);
        Assert.Equal("M_NOT_FOUND", (await bob.Get($"{C}/rooms/{E(room)}/context/{E(early)}")).ErrCode);
        // With "shared" (the default) the same late joiner sees everything.
        var (carol, shared) = await Room("shared");
        await carol.SendText(shared, "old news");
        (await bob.Post($"{C}/join/{E(shared)}", new JsonObject())).Ok();
        Assert.Contains("old news", Bodies((await bob.Get($"{C}/rooms/{E(shared)}/messages?dir=b&limit=50")).Ok().Obj["chunk"]!.AsArray()));
    }

    [Fact]
    public async Task A_world_readable_room_is_readable_without_joining()
    {
        var (alice, room) = await Room("world_readable");
        var ev = await alice.SendText(room, "hello world");
        var stranger = await Register(server);
        Assert.Contains("hello world", Bodies((await stranger.Get($"{C}/rooms/{E(room)}/messages?dir=b")).Ok().Obj["chunk"]!.AsArray()));
        (await stranger.Get($"{C}/rooms/{E(room)}/event/{E(ev)}")).Ok();
        (await stranger.Get($"{C}/rooms/{E(room)}/state")).Ok();
        // Reading is not writing.
        Assert.Equal("M_FORBIDDEN", (await stranger.Put($"{C}/rooms/{E(room)}/send/m.room.message/w1", new JsonObject { ["body"] = "x" })).ErrCode);
        // A private (shared) room stays closed to the same stranger.
        var (bob, priv) = await Room("shared", "private_chat");
        await bob.SendText(priv, "private");
        Assert.Equal(HttpStatusCode.Forbidden, (await stranger.Get($"{C}/rooms/{E(priv)}/messages?dir=b")).Status);
    }

    [Fact]
    public async Task A_banned_user_reads_nothing_new()
    {
        var (alice, room) = await Room("shared");
        var mallory = await Register(server);
        (await mallory.Post($"{C}/join/{E(room)}", new JsonObject())).Ok();
        await alice.SendText(room, "before the ban");
        (await alice.Post($"{C}/rooms/{E(room)}/ban", new JsonObject { ["user_id"] = mallory.UserId })).Ok();
        var after = await alice.SendText(room, "after the ban");
        var seen = Bodies((await mallory.Get($"{C}/rooms/{E(room)}/messages?dir=b&limit=50")).Ok().Obj["chunk"]!.AsArray());
        Assert.Contains("before the ban", seen);
        Assert.DoesNotContain("after the ban", seen);
        Assert.Equal("M_NOT_FOUND", (await mallory.Get($"{C}/rooms/{E(room)}/event/{E(after)}")).ErrCode);
        (await alice.Put($"{C}/rooms/{E(room)}/state/m.room.topic/", new JsonObject { ["topic"] = "new topic" })).Ok();
        var state = (await mallory.Get($"{C}/rooms/{E(room)}/state")).Ok().Body!.AsArray();
        Assert.DoesNotContain(state, e => e!["type"]!.GetValue<string>() == "m.room.topic");
    }

    [Fact]
    public async Task Context_gives_the_events_around_and_the_state_at_that_point()
    {
        var (alice, room) = await Room("shared");
        (await alice.Put($"{C}/rooms/{E(room)}/state/m.room.topic/", new JsonObject { ["topic"] = "first topic" })).Ok();
        await alice.SendText(room, "one");
        var two = await alice.SendText(room, "two");
        await alice.SendText(room, "three");
        (await alice.Put($"{C}/rooms/{E(room)}/state/m.room.topic/", new JsonObject { ["topic"] = "second topic" })).Ok();

        var ctx = (await alice.Get($"{C}/rooms/{E(room)}/context/{E(two)}?limit=2")).Ok().Obj;
        Assert.Equal(two, ctx["event"]!["event_id"]!.GetValue<string>());
        Assert.Equal(["one"], Bodies(ctx["events_before"]!.AsArray()));
        Assert.Equal(["three"], Bodies(ctx["events_after"]!.AsArray()));
        var topic = ctx["state"]!.AsArray().Single(e => e!["type"]!.GetValue<string>() == "m.room.topic")!;
        Assert.Equal("first topic", topic["content"]!["topic"]!.GetValue<string>());
        // The tokens continue into /messages.
        var older = (await alice.Get($"{C}/rooms/{E(room)}/messages?dir=b&limit=1&from={E(ctx["start"]!.GetValue<string>())}")).Ok().Obj;
        Assert.Equal("first topic", older["chunk"]![0]!["content"]!["topic"]!.GetValue<string>());
    }

    [Fact]
    public async Task A_former_member_sees_the_state_as_it_was_when_they_left()
    {
        var (alice, room) = await Room("shared");
        var bob = await Register(server);
        (await alice.Put($"{C}/rooms/{E(room)}/state/m.room.name", new JsonObject { ["name"] = "Old name" })).Ok();
        (await bob.Post($"{C}/join/{E(room)}", new JsonObject())).Ok();
        (await bob.Post($"{C}/rooms/{E(room)}/leave", new JsonObject())).Ok();
        (await alice.Put($"{C}/rooms/{E(room)}/state/m.room.name", new JsonObject { ["name"] = "New name" })).Ok();
        Assert.Equal("Old name", (await bob.Get($"{C}/rooms/{E(room)}/state/m.room.name")).Ok().Obj["name"]!.GetValue<string>());
        var members = (await bob.Get($"{C}/rooms/{E(room)}/members")).Ok().Obj["chunk"]!.AsArray();
        Assert.Contains(members, m => m!["state_key"]!.GetValue<string>() == bob.UserId && m["content"]!["membership"]!.GetValue<string>() == "leave");
    }
}

public sealed class AllInOneVisibilityTests(AllInOneFixture f) : VisibilityTests(f), IClassFixture<AllInOneFixture>;

public sealed class SplitVisibilityTests(SplitFixture f) : VisibilityTests(f), IClassFixture<SplitFixture>;

public abstract class SearchTests(ServerFixture server)
{
    static List<string> Bodies(JsonObject r) => r["search_categories"]!["room_events"]!["results"]!.AsArray()
        .Select(x => x!["result"]!["content"]!["body"]!.GetValue<string>()).ToList();

    static JsonObject Query(string term, JsonObject? extra = null)
    {
        var criteria = new JsonObject { ["search_term"] = term, ["order_by"] = "recent" };
        foreach (var (k, v) in extra ?? []) criteria[k] = v?.DeepClone();
        return new JsonObject { ["search_categories"] = new JsonObject { ["room_events"] = criteria } };
    }

    [Fact]
    public async Task Search_finds_what_the_user_may_see_and_nothing_else()
    {
        var alice = await Register(server);
        var word = UniqueName("zebra");
        var room = await alice.CreateRoom(new JsonObject
        {
            ["preset"] = "public_chat",
            ["initial_state"] = new JsonArray(new JsonObject { ["type"] = "m.room.history_visibility", ["content"] = new JsonObject { ["history_visibility"] = "joined" } }),
        });
        await alice.SendText(room, $"early {word} sighting");
        var bob = await Register(server);
        (await bob.Post($"{C}/join/{E(room)}", new JsonObject())).Ok();
        await alice.SendText(room, $"late {word} sighting");
        await alice.SendText(room, "nothing to see");

        Assert.Equal([$"late {word} sighting", $"early {word} sighting"], Bodies((await alice.Post($"{C}/search", Query(word))).Ok().Obj));
        // Bob joined after the first message of a joined-only room: he finds only the second.
        Assert.Equal([$"late {word} sighting"], Bodies((await bob.Post($"{C}/search", Query(word))).Ok().Obj));
        // Someone who is not in the room finds nothing.
        var carol = await Register(server);
        Assert.Empty(Bodies((await carol.Post($"{C}/search", Query(word))).Ok().Obj));

        // All terms must match; pages continue with next_batch; context comes when asked.
        Assert.Empty(Bodies((await alice.Post($"{C}/search", Query($"{word} unicorn"))).Ok().Obj));
        var first = (await alice.Post($"{C}/search", Query(word, new JsonObject { ["filter"] = new JsonObject { ["limit"] = 1 }, ["event_context"] = new JsonObject { ["before_limit"] = 1 } }))).Ok().Obj;
        Assert.Equal([$"late {word} sighting"], Bodies(first));
        Assert.Single(first["search_categories"]!["room_events"]!["results"]![0]!["context"]!["events_before"]!.AsArray());
        var next = first["search_categories"]!["room_events"]!["next_batch"]!.GetValue<string>();
        var second = (await alice.Post($"{C}/search?next_batch={E(next)}", Query(word, new JsonObject { ["filter"] = new JsonObject { ["limit"] = 1 } }))).Ok().Obj;
        Assert.Equal([$"early {word} sighting"], Bodies(second));
        Assert.Equal("M_MISSING_PARAM", (await alice.Post($"{C}/search", new JsonObject { ["search_categories"] = new JsonObject() })).ErrCode);
    }
}

public sealed class AllInOneSearchTests(AllInOneFixture f) : SearchTests(f), IClassFixture<AllInOneFixture>;

public sealed class SplitSearchTests(SplitFixture f) : SearchTests(f), IClassFixture<SplitFixture>;

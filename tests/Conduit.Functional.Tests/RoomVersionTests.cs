using System.Net;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Conduit.Common.Events;
using static Conduit.Functional.Tests.MatrixClient;

namespace Conduit.Functional.Tests;

/// <summary>Rooms of every room version, created and used through the client API. The same tests run all-in-one and split.</summary>
public abstract partial class RoomVersionTests(ServerFixture server)
{
    public static TheoryData<string> Versions()
    {
        var data = new TheoryData<string>();
        foreach (var v in RoomVersion.All) data.Add(v.Id);
        return data;
    }

    [GeneratedRegex("^![A-Za-z0-9_-]{43}$")]
    private static partial Regex HashRoomId();

    [GeneratedRegex("^\\$[A-Za-z0-9+/]{43}$")]
    private static partial Regex Base64EventId();

    [GeneratedRegex("^\\$[A-Za-z0-9_-]{43}$")]
    private static partial Regex UrlSafeEventId();

    /// <summary>The event ID format of the version (spec: rooms/v1.md, v3.md, v4.md "Event IDs").</summary>
    void AssertEventId(RoomVersion version, string eventId)
    {
        switch (version.EventIdFormat)
        {
            case EventIdFormat.ServerGenerated:
                Assert.StartsWith("$", eventId);
                Assert.EndsWith(":" + server.ServerName, eventId);
                Assert.True(eventId.Length > server.ServerName.Length + 2, eventId);
                break;
            case EventIdFormat.ReferenceHashBase64:
                Assert.Matches(Base64EventId(), eventId);
                break;
            default:
                Assert.Matches(UrlSafeEventId(), eventId);
                break;
        }
    }

    [Fact]
    public async Task Capabilities_list_every_room_version_as_stable()
    {
        var u = await Register(server);
        var versions = (await u.Get(C + "/capabilities")).Ok().Obj["capabilities"]!["m.room_versions"]!;
        Assert.Equal("11", versions["default"]!.GetValue<string>());
        var available = versions["available"]!.AsObject();
        Assert.Equal(RoomVersion.All.Select(v => v.Id).Order(), available.Select(kv => kv.Key).Order());
        Assert.All(available, kv => Assert.Equal("stable", kv.Value!.GetValue<string>()));
    }

    [Theory, MemberData(nameof(Versions))]
    public async Task A_room_of_each_version_works(string versionId)
    {
        var version = RoomVersion.Find(versionId)!;
        var alice = await Register(server);
        var bob = await Register(server);
        var room = await alice.CreateRoom(new JsonObject { ["room_version"] = versionId, ["name"] = "v" + versionId });
        if (version.RoomIdFromCreateEvent) Assert.Matches(HashRoomId(), room);
        else Assert.EndsWith(":" + server.ServerName, room);

        var create = (await alice.Get($"{C}/rooms/{E(room)}/state/m.room.create/?format=event")).Ok().Obj;
        Assert.Equal(versionId, create["content"]!["room_version"]!.GetValue<string>());
        Assert.Equal(room, create["room_id"]!.GetValue<string>());
        AssertEventId(version, create["event_id"]!.GetValue<string>());
        if (version.CreatorInCreateContent) Assert.Equal(alice.UserId, create["content"]!["creator"]!.GetValue<string>());
        else Assert.Null(create["content"]!["creator"]);
        if (version.RoomIdFromCreateEvent) Assert.Equal("!" + create["event_id"]!.GetValue<string>()[1..], room);

        // Membership: invite, then join by ID.
        (await alice.Post($"{C}/rooms/{E(room)}/invite", new JsonObject { ["user_id"] = bob.UserId })).Ok();
        Assert.Contains(room, (await bob.Sync())["rooms"]!["invite"]!.AsObject().Select(kv => kv.Key));
        Assert.Equal(room, (await bob.Post($"{C}/join/{E(room)}", new JsonObject())).Ok().Obj["room_id"]!.GetValue<string>());
        var joined = (await alice.Get($"{C}/rooms/{E(room)}/joined_members")).Ok().Obj["joined"]!.AsObject();
        Assert.Equal(new[] { alice.UserId, bob.UserId }.Order(), joined.Select(kv => kv.Key).Order());

        // Messages, read back by /messages and /sync.
        var one = await alice.SendText(room, "one");
        var two = await bob.SendText(room, "two");
        var three = await alice.SendText(room, "three");
        foreach (var id in new[] { one, two, three }) AssertEventId(version, id);
        var chunk = (await bob.Get($"{C}/rooms/{E(room)}/messages?dir=b&limit=50")).Ok().Obj["chunk"]!.AsArray();
        Assert.Equal(["three", "two", "one"], chunk.Where(e => e!["type"]!.GetValue<string>() == "m.room.message")
            .Select(e => e!["content"]!["body"]!.GetValue<string>()));
        Assert.All(chunk, e =>
        {
            Assert.Equal(room, e!["room_id"]!.GetValue<string>());
            AssertEventId(version, e["event_id"]!.GetValue<string>());
        });
        Assert.Equal(["one", "two", "three"], TimelineBodies(await bob.Sync(), room));
        var ev = (await bob.Get($"{C}/rooms/{E(room)}/event/{E(two)}")).Ok().Obj;
        Assert.Equal((two, "two"), (ev["event_id"]!.GetValue<string>(), ev["content"]!["body"]!.GetValue<string>()));

        // The creator redacts Bob's message (it needs the creator's power, infinite in v12).
        var redaction = (await alice.Put($"{C}/rooms/{E(room)}/redact/{E(two)}/r1", new JsonObject { ["reason"] = "test" })).Ok().Obj["event_id"]!.GetValue<string>();
        AssertEventId(version, redaction);
        var redacted = (await bob.Get($"{C}/rooms/{E(room)}/event/{E(two)}")).Ok().Obj;
        Assert.Empty(redacted["content"]!.AsObject());
        Assert.Equal(redaction, redacted["unsigned"]!["redacted_because"]!["event_id"]!.GetValue<string>());
        Assert.Equal(two, redacted["unsigned"]!["redacted_because"]!["redacts"]!.GetValue<string>());
        var timeline = (await bob.Sync())["rooms"]!["join"]![room]!["timeline"]!["events"]!.AsArray()
            .Where(e => e!["type"]!.GetValue<string>() == "m.room.message").ToList();
        Assert.Equal([one, two, three], timeline.Select(e => e!["event_id"]!.GetValue<string>()));
        Assert.Empty(timeline[1]!["content"]!.AsObject());
        // Bob may not redact Alice's message.
        Assert.Equal("M_FORBIDDEN", (await bob.Put($"{C}/rooms/{E(room)}/redact/{E(one)}/r2", new JsonObject())).ErrCode);

        // State: the topic.
        var topic = (await alice.Put($"{C}/rooms/{E(room)}/state/m.room.topic/", new JsonObject { ["topic"] = "versions" })).Ok().Obj["event_id"]!.GetValue<string>();
        AssertEventId(version, topic);
        Assert.Equal("versions", (await bob.Get($"{C}/rooms/{E(room)}/state/m.room.topic/")).Ok().Obj["topic"]!.GetValue<string>());
        var state = (await bob.Get($"{C}/rooms/{E(room)}/state")).Ok().Body!.AsArray();
        Assert.Contains(state, e => e!["type"]!.GetValue<string>() == "m.room.topic" && e["event_id"]!.GetValue<string>() == topic);
        Assert.Contains(room, (await bob.Get(C + "/joined_rooms")).Ok().Obj["joined_rooms"]!.AsArray().Select(n => n!.GetValue<string>()));

        // Leaving works too.
        (await bob.Post($"{C}/rooms/{E(room)}/leave", new JsonObject())).Ok();
        Assert.Equal("M_FORBIDDEN", (await bob.Get($"{C}/rooms/{E(room)}/joined_members")).ErrCode);
    }

    [Fact]
    public async Task V12_creators_have_infinite_power_and_are_not_in_power_levels()
    {
        var alice = await Register(server);
        var bob = await Register(server);
        var carol = await Register(server);
        var room = await alice.CreateRoom(new JsonObject { ["room_version"] = "12", ["preset"] = "public_chat" });
        Assert.Matches(HashRoomId(), room);
        var pl = (await alice.Get($"{C}/rooms/{E(room)}/state/m.room.power_levels/")).Ok().Obj;
        Assert.Null(pl["users"]![alice.UserId]);
        Assert.True(pl["events"]!["m.room.tombstone"]!.GetValue<long>() > pl["state_default"]!.GetValue<long>());

        // Listing the creator (to demote them) is refused; so is everyone else's attempt to outrank them.
        var demote = pl.DeepClone().AsObject();
        demote["users"] = new JsonObject { [alice.UserId] = 0 };
        var refused = await alice.Put($"{C}/rooms/{E(room)}/state/m.room.power_levels/", demote);
        Assert.Equal((HttpStatusCode.Forbidden, "M_FORBIDDEN"), (refused.Status, refused.ErrCode));
        (await bob.Post($"{C}/join/{E(room)}", new JsonObject())).Ok();
        var promote = pl.DeepClone().AsObject();
        promote["users"] = new JsonObject { [bob.UserId] = 100 };
        (await alice.Put($"{C}/rooms/{E(room)}/state/m.room.power_levels/", promote)).Ok();
        var coup = promote.DeepClone().AsObject();
        coup["users"] = new JsonObject { [bob.UserId] = 100, [alice.UserId] = 0 };
        Assert.Equal("M_FORBIDDEN", (await bob.Put($"{C}/rooms/{E(room)}/state/m.room.power_levels/", coup)).ErrCode);
        // Bob at 100 still cannot kick the creator; the creator can kick Bob.
        Assert.Equal("M_FORBIDDEN", (await bob.Post($"{C}/rooms/{E(room)}/kick", new JsonObject { ["user_id"] = alice.UserId })).ErrCode);
        (await alice.Post($"{C}/rooms/{E(room)}/kick", new JsonObject { ["user_id"] = bob.UserId })).Ok();

        // trusted_private_chat: invitees become additional creators, not power level entries.
        var trusted = await alice.CreateRoom(new JsonObject { ["room_version"] = "12", ["preset"] = "trusted_private_chat", ["invite"] = new JsonArray(carol.UserId) });
        var create = (await alice.Get($"{C}/rooms/{E(trusted)}/state/m.room.create/")).Ok().Obj;
        Assert.Equal([carol.UserId], create["additional_creators"]!.AsArray().Select(n => n!.GetValue<string>()));
        Assert.Empty((await alice.Get($"{C}/rooms/{E(trusted)}/state/m.room.power_levels/")).Ok().Obj["users"]!.AsObject());
        (await carol.Post($"{C}/join/{E(trusted)}", new JsonObject())).Ok();
        (await carol.Put($"{C}/rooms/{E(trusted)}/state/m.room.name/", new JsonObject { ["name"] = "co-created" })).Ok();
    }
}

public sealed class AllInOneRoomVersionTests(AllInOneFixture f) : RoomVersionTests(f), IClassFixture<AllInOneFixture>;

public sealed class SplitRoomVersionTests(SplitFixture f) : RoomVersionTests(f), IClassFixture<SplitFixture>;

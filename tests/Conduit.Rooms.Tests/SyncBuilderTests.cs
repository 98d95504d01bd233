using System.Text.Json.Nodes;
using Conduit.Common.Events;
using static Conduit.Rooms.Tests.RoomsHarness;

namespace Conduit.Rooms.Tests;

public sealed class SyncBuilderTests : IDisposable
{
    const string Room = "!room:test.local";
    readonly RoomsHarness _h = new();

    public void Dispose() => _h.Dispose();

    static List<string> Ids(JsonNode? events) => events!.AsArray().Select(e => e!["event_id"]!.GetValue<string>()).ToList();
    static List<string> Types(JsonNode? events) => events!.AsArray().Select(e => e!["type"]!.GetValue<string>()).ToList();

    [Fact]
    public async Task InitialSync_ContainsTheJoinedRoomWithTimeline()
    {
        var created = await _h.CreateRoomAsync(Room);
        var m = await _h.MessageAsync(Room, Alice, "hello");

        var r = _h.Sync.Build(Alice, "DEV", 0, false, null);

        Assert.Equal(5, r.Position);
        Assert.Equal([Room], r.JoinedRoomIds);
        var room = r.Rooms["join"]![Room]!;
        Assert.Equal([.. created.Select(e => e.EventId), m.EventId], Ids(room["timeline"]!["events"]));
        Assert.False(room["timeline"]!["limited"]!.GetValue<bool>());
        Assert.Empty(room["state"]!["events"]!.AsArray()); // all state is in the timeline
        Assert.Equal(1, room["summary"]!["m.joined_member_count"]!.GetValue<int>());
        Assert.Empty(r.Rooms["invite"]!.AsObject());
        Assert.Empty(r.Rooms["leave"]!.AsObject());
        var last = room["timeline"]!["events"]!.AsArray()[^1]!;
        Assert.Equal("hello", last["content"]!["body"]!.GetValue<string>());
        Assert.Null(last["room_id"]); // sync omits room_id in events
    }

    [Fact]
    public async Task InitialSync_WithLimit1_IsLimitedAndPutsTheRestOfTheStateInState()
    {
        var created = await _h.CreateRoomAsync(Room);
        var m = await _h.MessageAsync(Room, Alice, "newest");
        var filter = Filter.Parse(JsonNode.Parse("""{"room":{"timeline":{"limit":1}}}""")!.AsObject());

        var r = _h.Sync.Build(Alice, null, 0, false, filter);

        var room = r.Rooms["join"]![Room]!;
        Assert.Equal([m.EventId], Ids(room["timeline"]!["events"]));
        Assert.True(room["timeline"]!["limited"]!.GetValue<bool>());
        Assert.Equal($"t{m.Pos - 1}", room["timeline"]!["prev_batch"]!.GetValue<string>());
        Assert.Equal(created.Select(e => e.EventId).Order(), Ids(room["state"]!["events"]).Order());
    }

    [Fact]
    public async Task DefaultLimit_Is10()
    {
        await _h.CreateRoomAsync(Room);
        var msgs = new List<StoredEvent>();
        for (var i = 0; i < 12; i++) msgs.Add(await _h.MessageAsync(Room, Alice, $"m{i}"));

        var room = _h.Sync.Build(Alice, null, 0, false, null).Rooms["join"]![Room]!;

        Assert.Equal(msgs.Skip(2).Select(e => e.EventId), Ids(room["timeline"]!["events"]));
        Assert.True(room["timeline"]!["limited"]!.GetValue<bool>());
        Assert.Equal(4, room["state"]!["events"]!.AsArray().Count);
    }

    [Fact]
    public async Task IncrementalSync_SinceTheLastPosition_IsEmpty()
    {
        await _h.CreateRoomAsync(Room);
        await _h.MessageAsync(Room, Alice, "hello");
        var first = _h.Sync.Build(Alice, "DEV", 0, false, null);

        var next = _h.Sync.Build(Alice, "DEV", first.Position, false, null);

        Assert.Equal(first.Position, next.Position);
        Assert.Empty(next.Rooms["join"]!.AsObject());
        Assert.Empty(next.Rooms["invite"]!.AsObject());
        Assert.Empty(next.Rooms["leave"]!.AsObject());
        Assert.Equal([Room], next.JoinedRoomIds);
    }

    [Fact]
    public async Task IncrementalSync_AfterAMessage_ContainsExactlyThatMessage()
    {
        await _h.CreateRoomAsync(Room);
        var since = _h.Sync.Build(Alice, "DEV", 0, false, null).Position;
        var m = await _h.MessageAsync(Room, Alice, "new one", new TxnRef(Alice, "DEV", "tx1"));

        var r = _h.Sync.Build(Alice, "DEV", since, false, null);

        Assert.Equal(since + 1, r.Position);
        var room = r.Rooms["join"]![Room]!;
        Assert.Equal([m.EventId], Ids(room["timeline"]!["events"]));
        Assert.False(room["timeline"]!["limited"]!.GetValue<bool>());
        Assert.Empty(room["state"]!["events"]!.AsArray());
        var ev = room["timeline"]!["events"]!.AsArray()[0]!;
        Assert.Equal("new one", ev["content"]!["body"]!.GetValue<string>());
        // The sending device sees its transaction ID; another device does not.
        Assert.Equal("tx1", ev["unsigned"]!["transaction_id"]!.GetValue<string>());
        var other = _h.Sync.Build(Alice, "OTHER", since, false, null).Rooms["join"]![Room]!["timeline"]!["events"]!.AsArray()[0]!;
        Assert.Null(other["unsigned"]!["transaction_id"]);
    }

    static List<string> StateMembers(JsonNode room)
        => room["state"]!["events"]!.AsArray().Where(e => e!["type"]!.GetValue<string>() == "m.room.member")
            .Select(e => e!["state_key"]!.GetValue<string>()).Order(StringComparer.Ordinal).ToList();

    static Filter Parse(string json) => Filter.Parse(JsonNode.Parse(json)!.AsObject());

    [Fact]
    public async Task LazyMembers_AreChosenFromTheWholeStateAndFromALimitedGap_WithTheStateFilterStillApplied()
    {
        const string Dan = "@dan:test.local";
        await _h.CreateRoomAsync(Room);
        foreach (var u in new[] { Bob, Carol, Dan }) await _h.MemberAsync(Room, u, u, "join");
        await _h.MessageAsync(Room, Carol, "hi");
        const string Lazy = """{"room":{"state":{"lazy_load_members":true},"timeline":{"limit":2}}}""";

        // Initial: the timeline is Dan's join and Carol's message; Dan's member event is in the timeline, not the state.
        var initial = _h.Sync.Build(Alice, null, 0, false, Parse(Lazy));
        var room = initial.Rooms["join"]![Room]!;
        Assert.Equal([Alice, Carol], StateMembers(room));
        Assert.Contains("m.room.power_levels", Types(room["state"]!["events"]));
        Assert.Equal([Alice, Bob, Carol], StateMembers(_h.Sync.Build(Alice, null, 0, false, Parse("""{"room":{"timeline":{"limit":2}}}""")).Rooms["join"]![Room]!));
        // The state filter applies to what lazy loading keeps.
        var membersOnly = _h.Sync.Build(Alice, null, 0, false,
            Parse("""{"room":{"state":{"lazy_load_members":true,"types":["m.room.member"]},"timeline":{"limit":2}}}""")).Rooms["join"]![Room]!;
        Assert.Equal(["m.room.member", "m.room.member"], Types(membersOnly["state"]!["events"]));

        // A limited incremental sync: the gap changed Dan's member event and the topic; Bob sends the timeline.
        var since = initial.Position;
        await _h.StateAsync(Room, Dan, "m.room.member", Dan, new JsonObject { ["membership"] = "join", ["displayname"] = "Dan" });
        var topic = await _h.StateAsync(Room, Alice, "m.room.topic", "", new JsonObject { ["topic"] = "t" });
        await _h.MessageAsync(Room, Bob, "one");
        await _h.MessageAsync(Room, Bob, "two");

        var next = _h.Sync.Build(Alice, null, since, false, Parse(Lazy)).Rooms["join"]![Room]!;
        Assert.True(next["timeline"]!["limited"]!.GetValue<bool>());
        // The gap's other state, and the members of the sender and of the user (unchanged in the gap), not Dan's.
        Assert.Equal([Alice, Bob], StateMembers(next));
        Assert.Contains(topic.EventId, Ids(next["state"]!["events"]));
        Assert.Equal(3, next["state"]!["events"]!.AsArray().Count);
        var eager = _h.Sync.Build(Alice, null, since, false, Parse("""{"room":{"timeline":{"limit":2}}}""")).Rooms["join"]![Room]!;
        Assert.Equal([Dan], StateMembers(eager));
    }

    [Fact]
    public async Task IncrementalSync_StateChange_IsInTheTimelineNotTwice()
    {
        await _h.CreateRoomAsync(Room);
        var since = _h.Rooms.StreamPosition;
        var name = await _h.StateAsync(Room, Alice, "m.room.name", "", new JsonObject { ["name"] = "Renamed" });

        var room = _h.Sync.Build(Alice, null, since, false, null).Rooms["join"]![Room]!;

        Assert.Equal([name.EventId], Ids(room["timeline"]!["events"]));
        Assert.Empty(room["state"]!["events"]!.AsArray());
    }

    [Fact]
    public async Task InvitedUser_SeesInviteStateWithTheRoomName()
    {
        await _h.CreateRoomAsync(Room, joinRule: "invite");
        await _h.StateAsync(Room, Alice, "m.room.name", "", new JsonObject { ["name"] = "Secret Garden" });
        await _h.MemberAsync(Room, Alice, Carol, "invite");

        var r = _h.Sync.Build(Carol, null, 0, false, null);

        Assert.Empty(r.Rooms["join"]!.AsObject());
        Assert.Empty(r.JoinedRoomIds);
        var events = r.Rooms["invite"]![Room]!["invite_state"]!["events"]!.AsArray();
        var name = Assert.Single(events, e => e!["type"]!.GetValue<string>() == "m.room.name")!;
        Assert.Equal("Secret Garden", name["content"]!["name"]!.GetValue<string>());
        Assert.Equal(Alice, name["sender"]!.GetValue<string>());
        Assert.Equal("", name["state_key"]!.GetValue<string>());
        var me = Assert.Single(events, e => e!["type"]!.GetValue<string>() == "m.room.member" && e["state_key"]!.GetValue<string>() == Carol)!;
        Assert.Equal("invite", me["content"]!["membership"]!.GetValue<string>());
        // The inviter's membership is included too, and nothing from the timeline leaks.
        Assert.Contains(events, e => e!["type"]!.GetValue<string>() == "m.room.member" && e["state_key"]!.GetValue<string>() == Alice);
        Assert.DoesNotContain(events, e => e!["type"]!.GetValue<string>() == "m.room.power_levels");
        Assert.All(events, e => Assert.Null(e!["event_id"]));
    }

    [Fact]
    public async Task Invite_AppearsInIncrementalSyncOnlyWhenNew()
    {
        await _h.CreateRoomAsync(Room, joinRule: "invite");
        var since = _h.Rooms.StreamPosition;
        await _h.MemberAsync(Room, Alice, Carol, "invite");

        var r1 = _h.Sync.Build(Carol, null, since, false, null);
        Assert.True(r1.Rooms["invite"]!.AsObject().ContainsKey(Room));

        var r2 = _h.Sync.Build(Carol, null, r1.Position, false, null);
        Assert.Empty(r2.Rooms["invite"]!.AsObject());
    }

    [Fact]
    public async Task JoiningARoom_SendsItWholeInTheNextIncrementalSync()
    {
        var created = await _h.CreateRoomAsync(Room);
        var m = await _h.MessageAsync(Room, Alice, "before bob");
        var since = _h.Sync.Build(Bob, null, 0, false, null).Position;
        Assert.Empty(_h.Sync.Build(Bob, null, 0, false, null).Rooms["join"]!.AsObject());

        var join = await _h.MemberAsync(Room, Bob, Bob, "join");
        var room = _h.Sync.Build(Bob, null, since, false, null).Rooms["join"]![Room]!;

        Assert.Equal([.. created.Select(e => e.EventId), m.EventId, join.EventId], Ids(room["timeline"]!["events"]));
        Assert.Equal(2, room["summary"]!["m.joined_member_count"]!.GetValue<int>());
    }

    [Fact]
    public async Task LeftUser_GetsTheLeaveAndNothingAfterIt()
    {
        await _h.CreateRoomAsync(Room);
        await _h.MemberAsync(Room, Bob, Bob, "join");
        var seen = await _h.MessageAsync(Room, Alice, "while bob is here");
        var since = _h.Rooms.StreamPosition;
        var leave = await _h.MemberAsync(Room, Bob, Bob, "leave");
        var after = await _h.MessageAsync(Room, Alice, "after bob left");
        await _h.StateAsync(Room, Alice, "m.room.name", "", new JsonObject { ["name"] = "Renamed after" });

        var r = _h.Sync.Build(Bob, null, since, false, null);

        Assert.Empty(r.Rooms["join"]!.AsObject());
        var room = r.Rooms["leave"]![Room]!;
        Assert.Equal([leave.EventId], Ids(room["timeline"]!["events"]));
        Assert.DoesNotContain(after.EventId, Ids(room["state"]!["events"]));
        Assert.DoesNotContain("m.room.name", Types(room["state"]!["events"]));
        Assert.NotEqual(seen.EventId, after.EventId);

        var r2 = _h.Sync.Build(Bob, null, r.Position, false, null);
        Assert.Empty(r2.Rooms["leave"]!.AsObject());
    }
}

public sealed class VisibilityTests : IDisposable
{
    const string Room = "!room:test.local";
    readonly RoomsHarness _h = new();

    public void Dispose() => _h.Dispose();

    [Fact]
    public async Task UserWhoLeft_CannotSeeEventsAfterTheLeave()
    {
        await _h.CreateRoomAsync(Room);
        await _h.MemberAsync(Room, Bob, Bob, "join");
        var during = await _h.MessageAsync(Room, Alice, "during");
        var leave = await _h.MemberAsync(Room, Bob, Bob, "leave");
        var after = await _h.MessageAsync(Room, Alice, "after");

        Assert.True(_h.Visibility.CanSee(Bob, during));
        Assert.True(_h.Visibility.CanSee(Bob, leave));
        Assert.False(_h.Visibility.CanSee(Bob, after));
        Assert.True(_h.Visibility.CanSee(Alice, after));
        Assert.Equal(new ReadWindow(0, leave.Pos), _h.Visibility.ReadableWindow(Bob, Room));
    }

    [Fact]
    public async Task UserWhoLeft_SeesTheStateAsOfTheirLeave()
    {
        await _h.CreateRoomAsync(Room);
        var name1 = await _h.StateAsync(Room, Alice, "m.room.name", "", new JsonObject { ["name"] = "Before" });
        await _h.MemberAsync(Room, Bob, Bob, "join");
        await _h.MemberAsync(Room, Bob, Bob, "leave");
        await _h.StateAsync(Room, Alice, "m.room.name", "", new JsonObject { ["name"] = "After" });

        var name = _h.Visibility.VisibleStateEvent(Bob, Room, "m.room.name", "");
        Assert.NotNull(name);
        Assert.Equal(name1.EventId, name!.EventId);
        Assert.Equal("After", _h.Visibility.VisibleStateEvent(Alice, Room, "m.room.name", "")!.Content["name"]!.GetValue<string>());
    }

    [Fact]
    public async Task Stranger_SeesNothingOfASharedRoom()
    {
        await _h.CreateRoomAsync(Room);
        var m = await _h.MessageAsync(Room, Alice, "private");
        Assert.Null(_h.Visibility.ReadableWindow(Carol, Room));
        Assert.False(_h.Visibility.CanSee(Carol, m));
        Assert.Null(_h.Visibility.VisibleState(Carol, Room));
    }

    [Fact]
    public async Task UserInvitedButNeverJoined_SeesNothingAfterRejecting()
    {
        await _h.CreateRoomAsync(Room, joinRule: "invite");
        var m = await _h.MessageAsync(Room, Alice, "before invite");
        await _h.MemberAsync(Room, Alice, Carol, "invite");
        await _h.MemberAsync(Room, Carol, Carol, "leave");
        Assert.False(_h.Visibility.CanSee(Carol, m));
    }

    [Fact]
    public async Task WorldReadableRoom_IsReadableByAnyone()
    {
        await _h.CreateRoomAsync(Room);
        await _h.StateAsync(Room, Alice, "m.room.history_visibility", "", new JsonObject { ["history_visibility"] = "world_readable" });
        var m = await _h.MessageAsync(Room, Alice, "public");
        Assert.True(_h.Visibility.CanSee(Carol, m));
    }

    [Fact]
    public async Task JoinedHistory_HidesEventsBeforeTheJoin()
    {
        await _h.CreateRoomAsync(Room);
        await _h.StateAsync(Room, Alice, "m.room.history_visibility", "", new JsonObject { ["history_visibility"] = "joined" });
        var before = await _h.MessageAsync(Room, Alice, "before");
        var join = await _h.MemberAsync(Room, Bob, Bob, "join");
        var afterJoin = await _h.MessageAsync(Room, Alice, "after");
        Assert.False(_h.Visibility.CanSee(Bob, before));
        Assert.True(_h.Visibility.CanSee(Bob, join));
        Assert.True(_h.Visibility.CanSee(Bob, afterJoin));
    }
}

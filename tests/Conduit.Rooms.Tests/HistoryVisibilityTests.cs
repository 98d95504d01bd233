using System.Text.Json.Nodes;
using static Conduit.Rooms.Tests.RoomsHarness;

namespace Conduit.Rooms.Tests;

/// <summary>History visibility as /sync and the visibility window apply it (found by review, fixed since).</summary>
public sealed class HistoryVisibilityTests : IDisposable
{
    const string Room = "!room:test.local";
    readonly RoomsHarness _h = new();

    public void Dispose() => _h.Dispose();

    static List<string> Ids(JsonNode? events) => events!.AsArray().Select(e => e!["event_id"]!.GetValue<string>()).ToList();

    // A user who joins a "joined"-visibility room must not get the messages sent before their join in /sync,
    // just as /messages and /event hide them.
    [Fact]
    public async Task Sync_JoinedHistoryVisibility_DoesNotLeakMessagesFromBeforeTheJoin()
    {
        await _h.CreateRoomAsync(Room);
        await _h.StateAsync(Room, Alice, "m.room.history_visibility", "", new JsonObject { ["history_visibility"] = "joined" });
        var secret = await _h.MessageAsync(Room, Alice, "said before bob joined");
        var since = _h.Rooms.StreamPosition;
        var join = await _h.MemberAsync(Room, Bob, Bob, "join");

        Assert.False(_h.Visibility.CanSee(Bob, secret)); // what /messages and /event enforce

        var incremental = Ids(_h.Sync.Build(Bob, null, since, false, null).Rooms["join"]![Room]!["timeline"]!["events"]);
        Assert.Contains(join.EventId, incremental);
        Assert.DoesNotContain(secret.EventId, incremental);

        var initial = Ids(_h.Sync.Build(Bob, null, 0, false, null).Rooms["join"]![Room]!["timeline"]!["events"]);
        Assert.DoesNotContain(secret.EventId, initial);
    }

    // Spec (client-server-api, "History visibility"): with "invited", events are visible "from the point they were
    // invited onwards", so events between the invite and the join are visible.
    [Fact]
    public async Task Visibility_InvitedHistory_ShowsEventsFromTheInviteOnwards()
    {
        await _h.CreateRoomAsync(Room, joinRule: "invite");
        await _h.StateAsync(Room, Alice, "m.room.history_visibility", "", new JsonObject { ["history_visibility"] = "invited" });
        var before = await _h.MessageAsync(Room, Alice, "before the invite");
        var invite = await _h.MemberAsync(Room, Alice, Bob, "invite");
        var between = await _h.MessageAsync(Room, Alice, "between invite and join");
        await _h.MemberAsync(Room, Bob, Bob, "join");

        Assert.False(_h.Visibility.CanSee(Bob, before));
        Assert.True(_h.Visibility.CanSee(Bob, invite));
        Assert.True(_h.Visibility.CanSee(Bob, between));
    }
}

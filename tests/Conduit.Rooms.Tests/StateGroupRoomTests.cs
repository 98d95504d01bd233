using System.Text.Json.Nodes;
using static Conduit.Rooms.Tests.RoomsHarness;

namespace Conduit.Rooms.Tests;

public sealed class StateGroupRoomTests : IDisposable
{
    const string Room = "!sg:test.local";
    readonly RoomsHarness _h = new();
    public void Dispose() => _h.Dispose();

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(6)]
    public async Task The_state_after_a_leave_holds_the_leave(int extraState)
    {
        await _h.CreateRoomAsync(Room);
        for (var i = 0; i < extraState; i++)
            await _h.StateAsync(Room, Alice, "org.example.s" + (i % 2), "", new JsonObject { ["i"] = i });
        await _h.MemberAsync(Room, Bob, Bob, "join");
        var leave = await _h.MemberAsync(Room, Bob, Bob, "leave");
        await _h.StateAsync(Room, Alice, "m.room.name", "", new JsonObject { ["name"] = "later" });
        // Read back from storage, as the endpoints do, not the object the sender returned.
        leave = _h.Rooms.Event(leave.EventId)!;
        var after = _h.States.Full(leave.StateAfter);
        Assert.Equal(leave.EventId, after[("m.room.member", Bob)]);
        Assert.False(after.ContainsKey(("m.room.name", "")));
        var before = _h.States.Full(leave.StateBefore);
        Assert.NotEqual(leave.EventId, before[("m.room.member", Bob)]);
        Assert.Equal(_h.Rooms.CurrentState(Room).Count, _h.States.Full(_h.Rooms.Info(Room)!["state_group"]!.GetValue<ulong>()).Count);
    }
}

public sealed class AuthChainTests : IDisposable
{
    const string Room = "!chain:test.local";
    readonly RoomsHarness _h = new();
    public void Dispose() => _h.Dispose();

    [Fact]
    public async Task The_auth_chain_of_a_message_reaches_back_to_the_create_event()
    {
        var created = await _h.CreateRoomAsync(Room);
        var join = await _h.MemberAsync(Room, Bob, Bob, "join");
        var msg = await _h.MessageAsync(Room, Bob, "hi");
        var chain = _h.Rooms.AuthChain(msg.EventId);
        var create = created[0].EventId;
        var powerLevels = created.Single(e => e.Type == "m.room.power_levels").EventId;
        var joinRules = created.Single(e => e.Type == "m.room.join_rules").EventId;
        Assert.Contains(create, chain);
        Assert.Contains(powerLevels, chain);
        Assert.Contains(join.EventId, chain);
        // Bob's join was authorised by the join rules, so they are in the chain too; no event appears twice.
        Assert.Contains(joinRules, chain);
        Assert.Equal(chain.Count, chain.Distinct().Count());
        Assert.DoesNotContain(msg.EventId, chain);
        Assert.Empty(_h.Rooms.AuthChain(create));
    }
}

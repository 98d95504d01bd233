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

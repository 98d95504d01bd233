using System.Text.Json.Nodes;
using static Conduit.Rooms.Tests.RoomsHarness;

namespace Conduit.Rooms.Tests;

/// <summary>History purges of rooms with another server's events (<see cref="RoomPurger"/>).</summary>
public sealed partial class IngestTests
{
    [Fact]
    public async Task A_history_purge_drops_remote_messages_keeps_local_ones_and_remote_events_still_build_on_the_room()
    {
        await _h.CreateRoomAsync(Room);
        var join = await JoinAsync(Rem);
        var remote = await Accept(Build(Rem, "m.room.message", null, new JsonObject { ["body"] = "remote" }));
        Assert.Equal(IngestOutcome.Accepted, remote.Outcome);
        var local = await _h.MessageAsync(Room, Alice, "local");
        var last = await _h.MessageAsync(Room, Alice, "last");

        var purger = new RoomPurger(_h.Rooms, _h.States, _h.Writer, _h.Config);
        var result = await purger.PurgeHistoryAsync(Room, last.EventId, 0, deleteLocal: false, CancellationToken.None);
        Assert.Equal(new RoomPurger.HistoryResult(1, 0), result);
        Assert.Null(_h.Rooms.Event(remote.EventId!));
        Assert.Equal([local.EventId, last.EventId], TimelineIds()[^2..]);
        Assert.Contains(join.EventId!, TimelineIds());

        // The local message's prev event is gone: readers and new remote events get on without it.
        Assert.NotNull(_h.Format.Format(_h.Rooms.Event(local.EventId)!, null, false, Alice));
        var next = await Accept(Build(Rem, "m.room.message", null, new JsonObject { ["body"] = "next" }));
        Assert.Equal(IngestOutcome.Accepted, next.Outcome);
        Assert.Equal(next.EventId, TimelineIds()[^1]);
    }
}

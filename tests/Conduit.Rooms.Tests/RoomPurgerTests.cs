using System.Text.Json.Nodes;
using static Conduit.Rooms.Tests.RoomsHarness;

namespace Conduit.Rooms.Tests;

/// <summary>
/// <see cref="RoomPurger"/>: a history purge leaves no index entry naming a deleted event (timeline, stream,
/// transaction IDs, relations, threads) and keeps what the room needs; a room purge leaves nothing of the room but its
/// blocked flag, and the same room can be stored again afterwards.
/// </summary>
public sealed class RoomPurgerTests : IDisposable
{
    const string Room = "!purge:test.local";
    readonly RoomsHarness _h = new();
    readonly RoomPurger _purger;
    readonly Relations _relations;

    public RoomPurgerTests()
    {
        _purger = new RoomPurger(_h.Rooms, _h.States, _h.Writer, _h.Config);
        _relations = new Relations(_h.Rooms);
    }

    public void Dispose() => _h.Dispose();

    async Task<StoredEvent> Send(string type, JsonObject content, TxnRef? txn = null)
        => (await _h.Sender.SendAsync(Room, Alice, [new NewEvent(type, null, content)], txn, CancellationToken.None)).Single();

    static JsonObject Related(string relType, string parent, string body) => new()
    {
        ["body"] = body,
        ["m.relates_to"] = new JsonObject { ["rel_type"] = relType, ["event_id"] = parent },
    };

    List<string> Timeline() => _h.Rooms.Timeline(Room, 0, long.MaxValue, backwards: false).Select(t => t.EventId).ToList();

    [Fact]
    public async Task A_history_purge_drops_the_events_and_every_entry_naming_them_and_keeps_the_current_state()
    {
        await _h.CreateRoomAsync(Room);
        var oldTopic = await _h.StateAsync(Room, Alice, "m.room.topic", "", new JsonObject { ["topic"] = "first" });
        var root = await _h.MessageAsync(Room, Alice, "root");
        var replies = new List<StoredEvent>();
        for (var i = 0; i < 3; i++) replies.Add(await Send("m.room.message", Related("m.thread", root.EventId, $"reply {i}")));
        var edit = await Send("m.room.message", Related("m.replace", root.EventId, "edited"));
        var withTxn = await _h.MessageAsync(Room, Alice, "txn", new TxnRef(Alice, "DEV", "t1"));
        var topic = await _h.StateAsync(Room, Alice, "m.room.topic", "", new JsonObject { ["topic"] = "second" });
        var keptRoot = await _h.MessageAsync(Room, Alice, "kept root");
        var keptReply = await Send("m.room.message", Related("m.thread", keptRoot.EventId, "kept reply"));
        var stateIds = _h.Rooms.CurrentState(Room).Values.ToHashSet();

        // Local events stay without delete_local_events: only the old topic leaves the timeline.
        var soft = await _purger.PurgeHistoryAsync(Room, keptRoot.EventId, 0, deleteLocal: false, CancellationToken.None);
        Assert.Equal(new RoomPurger.HistoryResult(0, 1), soft);
        Assert.DoesNotContain(oldTopic.EventId, Timeline());
        Assert.NotNull(_h.Rooms.Event(oldTopic.EventId));

        var result = await _purger.PurgeHistoryAsync(Room, keptRoot.EventId, 0, deleteLocal: true, CancellationToken.None);
        Assert.Equal(new RoomPurger.HistoryResult(6, 0), result);
        foreach (var gone in replies.Append(root).Append(edit).Append(withTxn)) Assert.Null(_h.Rooms.Event(gone.EventId));
        Assert.Null(_h.Rooms.TxnEvent(Alice, "DEV", "t1"));
        Assert.Empty(_relations.Children(Room, root.EventId, null));
        Assert.Null(_relations.Thread(Room, root.EventId));
        Assert.False(_relations.Participated(Room, root.EventId, Alice));
        Assert.Equal([keptRoot.EventId], _relations.Threads(Room, long.MaxValue).Select(t => t.RootId));
        Assert.Equal(1, _relations.Thread(Room, keptRoot.EventId)!.Count);
        // The timeline: the current state events (the create event's group), then what came from the point on.
        Assert.Equal(stateIds.Where(id => id != topic.EventId).Order(), Timeline().Take(stateIds.Count - 1).Order());
        Assert.Equal([topic.EventId, keptRoot.EventId, keptReply.EventId], Timeline().Skip(stateIds.Count - 1));
        Assert.DoesNotContain(_h.Rooms.StreamAfter(0, long.MaxValue), s => _h.Rooms.Event(s.Event.EventId) is null);

        // The room keeps working: the latest event is the extremity new events build on.
        var after = await _h.MessageAsync(Room, Alice, "after");
        Assert.Equal(after.EventId, Timeline()[^1]);
        Assert.Equal("second", _h.Rooms.StateContent(Room, "m.room.topic")!["topic"]!.GetValue<string>());
    }

    [Fact]
    public async Task The_latest_event_is_never_purged_and_a_time_before_everything_purges_nothing()
    {
        await _h.CreateRoomAsync(Room);
        var sent = await _h.SpacedMessagesAsync(Room, 3);
        Assert.Null(await _purger.PurgeHistoryAsync(Room, null, 1, deleteLocal: true, CancellationToken.None));
        var result = await _purger.PurgeHistoryAsync(Room, null, long.MaxValue, deleteLocal: true, CancellationToken.None);
        Assert.Equal(2, result!.Deleted);
        Assert.Equal(sent[^1].Event.EventId, Timeline()[^1]);
        Assert.NotNull(_h.Rooms.Event(sent[^1].Event.EventId));
    }

    [Fact]
    public async Task A_room_purge_leaves_only_the_block_and_the_room_can_be_stored_again()
    {
        await _h.CreateRoomAsync(Room);
        await _h.MemberAsync(Room, Alice, Bob, "invite");
        var message = await _h.MessageAsync(Room, Alice, "hello", new TxnRef(Alice, "DEV", "t1"));
        var group = _h.Rooms.Info(Room)!["state_group"]!.GetValue<ulong>();
        var ids = Timeline();
        _h.Rooms.SetBlocked(Room, Alice);

        Assert.Equal(ids.Count, await _purger.PurgeRoomAsync(Room, CancellationToken.None));
        Assert.Null(_h.Rooms.Info(Room));
        Assert.Empty(Timeline());
        Assert.Empty(_h.Rooms.CurrentState(Room));
        Assert.Empty(_h.Rooms.Members(Room));
        Assert.Null(_h.Rooms.MembershipOf(Alice, Room));
        Assert.Null(_h.Rooms.MembershipOf(Bob, Room));
        Assert.Null(_h.Rooms.TxnEvent(Alice, "DEV", "t1"));
        Assert.All(ids, id => Assert.Null(_h.Rooms.Event(id)));
        Assert.Null(_h.Kv.Map(RoomsFamilies.StateGroups).Get(RoomsFamilies.ShortIdKey(group)));
        Assert.DoesNotContain(_h.Rooms.StreamAfter(0, long.MaxValue), s => s.RoomId == Room);
        Assert.DoesNotContain(Room, _h.Rooms.AllRoomIds());
        Assert.NotNull(_h.Rooms.Blocked(Room));
        Assert.Null(_h.Rooms.Event(message.EventId));

        // Stored again from scratch (as a remote join would, once unblocked): state groups and caches start over.
        _h.Rooms.SetBlocked(Room, null);
        await _h.CreateRoomAsync(Room);
        await _h.MessageAsync(Room, Alice, "again");
        Assert.Equal("join", _h.Rooms.MembershipOf(Alice, Room)!.State);
        Assert.Equal(5, Timeline().Count);
    }
}

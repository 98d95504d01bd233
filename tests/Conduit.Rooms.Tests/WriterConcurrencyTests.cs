using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Storage;
using static Conduit.Rooms.Tests.RoomsHarness;

namespace Conduit.Rooms.Tests;

/// <summary>
/// Rooms are written in parallel (a lock per room) and commits are grouped: positions stay contiguous and unique,
/// each room's graph stays a single chain, and nothing acknowledged is missing.
/// </summary>
public sealed class WriterConcurrencyTests : IDisposable
{
    readonly RoomsHarness _h = new();

    public void Dispose() => _h.Dispose();

    static string[] PrevEvents(StoredEvent e) => e.Pdu["prev_events"]!.AsArray().Select(n => n!.GetValue<string>()).ToArray();

    [Fact]
    public async Task Ten_rooms_written_at_once_get_contiguous_unique_positions_and_ordered_timelines()
    {
        var roomIds = Enumerable.Range(0, 10).Select(i => $"!r{i}:test.local").ToList();
        foreach (var r in roomIds) await _h.CreateRoomAsync(r);
        var before = _h.Stream.Position;

        var sends = roomIds.Select(r => Task.Run(async () =>
        {
            var sent = new List<StoredEvent>();
            for (var i = 0; i < 30; i++) sent.Add(await _h.MessageAsync(r, Alice, $"{r} {i}"));
            return (Room: r, Sent: sent);
        })).ToList();
        var results = await Task.WhenAll(sends);

        var positions = results.SelectMany(x => x.Sent).Select(e => e.Pos).Order().ToList();
        Assert.Equal(Enumerable.Range(1, 300).Select(i => before + i), positions);
        Assert.Equal(before + 300, _h.Stream.Position);
        Assert.Equal(before + 300, _h.Rooms.StreamPosition);
        foreach (var (room, sent) in results)
        {
            // In each room: stream order is send order, and every event builds on the one before it.
            Assert.Equal(sent.Select(e => e.EventId), _h.Rooms.Timeline(room, before, long.MaxValue, backwards: false).Select(t => t.EventId));
            for (var i = 1; i < sent.Count; i++) Assert.Equal([sent[i - 1].EventId], PrevEvents(sent[i]));
            Assert.Equal([sent[^1].EventId], _h.Rooms.Info(room)!["forward_extremities"]!.AsArray().Select(n => n!.GetValue<string>()));
        }
    }

    [Fact]
    public async Task Concurrent_sends_into_one_room_form_one_chain_without_forks()
    {
        const string Room = "!one:test.local";
        await _h.CreateRoomAsync(Room);
        foreach (var u in new[] { Bob, Carol }) await _h.MemberAsync(Room, u, u, "join");
        var senders = new[] { Alice, Bob, Carol };

        var all = await Task.WhenAll(Enumerable.Range(0, 60).Select(i => Task.Run(() => _h.MessageAsync(Room, senders[i % 3], $"m{i}"))));

        var timeline = _h.Rooms.Timeline(Room, 0, long.MaxValue, backwards: false).Select(t => _h.Rooms.Event(t.EventId)!).ToList();
        Assert.Equal(66, timeline.Count);
        for (var i = 1; i < timeline.Count; i++)
        {
            Assert.Equal([timeline[i - 1].EventId], PrevEvents(timeline[i]));
            Assert.Equal(timeline[i - 1].Pdu["depth"]!.GetValue<long>() + 1, timeline[i].Pdu["depth"]!.GetValue<long>());
        }
        Assert.Equal(all.Select(e => e.EventId).Order(), timeline.Skip(6).Select(e => e.EventId).Order());
    }

    [Fact]
    public async Task A_state_key_first_used_by_two_rooms_at_once_gets_one_short_id()
    {
        var rooms = Enumerable.Range(0, 8).Select(i => $"!s{i}:test.local").ToList();
        foreach (var r in rooms) await _h.CreateRoomAsync(r);
        // Every room sets the same new state key at the same time.
        await Task.WhenAll(rooms.Select(r => Task.Run(() => _h.StateAsync(r, Alice, "org.example.shared", "k", new JsonObject { ["room"] = r }))));

        Assert.True(_h.States.TryShortStateKey("org.example.shared", "k", out _));
        foreach (var r in rooms)
        {
            var id = _h.Rooms.StateEventId(r, "org.example.shared", "k")!;
            var group = _h.Rooms.Info(r)!["state_group"]!.GetValue<ulong>();
            Assert.Equal(id, _h.States.LookupEventId(group, "org.example.shared", "k"));
        }
    }

    [Fact]
    public async Task Sends_queued_on_a_busy_room_are_written_together_and_a_refused_one_fails_alone()
    {
        const string Room = "!busy:test.local";
        await _h.CreateRoomAsync(Room);
        await _h.MemberAsync(Room, Bob, Bob, "join");
        var before = _h.Stream.Position;
        using var advances = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var published = new List<long>();
        var watching = Task.Run(async () =>
        {
            try { await foreach (var a in _h.Stream.Subscribe(advances.Token)) lock (published) published.Add(a.Position); }
            catch (OperationCanceledException) { }
        });

        // While the room is busy, eight messages, a retried transaction and a send by a stranger queue up.
        Task<StoredEvent> sent0, retry, refused;
        var sends = new List<Task<StoredEvent>>();
        using (await _h.Writer.LockAsync(Room, CancellationToken.None))
        {
            for (var i = 0; i < 8; i++) sends.Add(_h.MessageAsync(Room, i % 2 == 0 ? Alice : Bob, $"m{i}"));
            sent0 = _h.MessageAsync(Room, Alice, "once", new TxnRef(Alice, "D", "t1"));
            retry = _h.MessageAsync(Room, Alice, "once again", new TxnRef(Alice, "D", "t1"));
            refused = _h.MessageAsync(Room, Carol, "let me in");
            await Task.Delay(200);
        }
        var all = await Task.WhenAll(sends);
        Assert.Equal("M_FORBIDDEN", (await Assert.ThrowsAsync<MatrixException>(() => refused)).ErrCode);
        Assert.Equal((await sent0).EventId, (await retry).EventId);

        // Nine events in one chain, one commit: the stream advanced once, by nine.
        var timeline = _h.Rooms.Timeline(Room, before, long.MaxValue, backwards: false).Select(t => _h.Rooms.Event(t.EventId)!).ToList();
        Assert.Equal(9, timeline.Count);
        for (var i = 1; i < timeline.Count; i++) Assert.Equal([timeline[i - 1].EventId], PrevEvents(timeline[i]));
        Assert.Equal(all.Select(e => e.EventId).Append((await sent0).EventId).Order(), timeline.Select(e => e.EventId).Order());
        await Task.Delay(100);
        advances.Cancel();
        await watching;
        lock (published) Assert.Equal([before, before + 9], published);
    }

    [Fact]
    public async Task Identifiers_continue_after_a_restart_without_reuse()
    {
        var dir = Directory.CreateTempSubdirectory("conduit-writer-").FullName;
        try
        {
            HashSet<string> seen = [];
            ulong lastGroup = 0;
            for (var run = 0; run < 2; run++)
            {
                using var kv = KvStore.Open("rocksdb", dir, RoomsFamilies.All);
                var states = new StateStore(kv);
                using var batch = kv.CreateBatch();
                var tx = states.Begin(batch);
                var group = states.Set(tx, lastGroup, states.ShortStateKey(tx, "t", $"k{run}"), states.ShortEventId(tx, $"$e{run}"));
                kv.Write(batch);
                states.Committed(tx);
                Assert.True(group > lastGroup);
                lastGroup = group;
                Assert.True(seen.Add($"{states.ShortStateKey(states.Begin(kv.CreateBatch()), "t", $"k{run}")}"));
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}

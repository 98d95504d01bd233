using Conduit.Common.Storage;

namespace Conduit.Rooms.Tests;

public sealed class StateStoreTests : IDisposable
{
    readonly IKeyValueStore _kv = KvStore.Open("memory", "", RoomsFamilies.All);

    public void Dispose() => _kv.Dispose();

    // Applies random state changes one batch at a time and checks every group against a plain dictionary.
    [Fact]
    public void Every_group_holds_exactly_the_state_at_that_point_and_stays_shallow()
    {
        var states = new StateStore(_kv);
        var rng = new Random(42);
        var naive = new Dictionary<(string, string), string>();
        var history = new List<(ulong Group, Dictionary<(string, string), string> State)>();
        ulong group = 0;
        for (var i = 0; i < 1500; i++)
        {
            using var batch = _kv.CreateBatch();
            var tx = states.Begin(batch);
            // Mostly new members (a growing room), sometimes a change to an existing key.
            var key = rng.Next(4) == 0 && naive.Count > 0 ? naive.Keys.ElementAt(rng.Next(naive.Count)) : ("m.room.member", $"@u{i}:t");
            var ev = $"$e{i}";
            group = states.Set(tx, group, states.ShortStateKey(tx, key.Item1, key.Item2), states.ShortEventId(tx, ev));
            _kv.Write(batch);
            states.Committed(tx);
            naive[key] = ev;
            if (i % 97 == 0 || i > 1490) history.Add((group, new Dictionary<(string, string), string>(naive)));
        }
        foreach (var (g, expected) in history)
        {
            var full = states.Full(g);
            Assert.Equal(expected.Count, full.Count);
            foreach (var (k, v) in expected) Assert.Equal(v, full[k]);
            Assert.Equal(expected.First().Value, states.LookupEventId(g, expected.First().Key.Item1, expected.First().Key.Item2));
        }
        // At most four layers between any group and its root.
        var depth = 0;
        for (var g = group; g != 0; g = states.LoadLayer(g).Parent) depth++;
        Assert.InRange(depth, 1, 4);
        // Far smaller than a copy of the state per change (1500 changes of a state growing to ~1100 entries).
        var stored = states.GroupBytes(Enumerable.Range(1, 1500).Select(i => (ulong)i));
        var copies = history.Sum(h => 16L * h.State.Count) * 1500 / history.Count;
        Assert.True(stored * 5 < copies, $"stored {stored} bytes vs {copies} for copies");
    }

    [Fact]
    public void A_failed_batch_leaves_nothing_visible_and_reuses_no_ids()
    {
        var states = new StateStore(_kv);
        ulong first;
        using (var batch = _kv.CreateBatch())
        {
            var tx = states.Begin(batch);
            first = states.Set(tx, 0, states.ShortStateKey(tx, "m.room.name", ""), states.ShortEventId(tx, "$a"));
            _kv.Write(batch);
            states.Committed(tx);
        }
        using (var abandoned = _kv.CreateBatch())
        {
            var tx = states.Begin(abandoned);
            states.Set(tx, first, states.ShortStateKey(tx, "m.room.topic", ""), states.ShortEventId(tx, "$b"));
            // never written
        }
        Assert.False(states.TryShortStateKey("m.room.topic", "", out _));
        using var again = _kv.CreateBatch();
        var tx2 = states.Begin(again);
        var next = states.Set(tx2, first, states.ShortStateKey(tx2, "m.room.topic", ""), states.ShortEventId(tx2, "$c"));
        _kv.Write(again);
        states.Committed(tx2);
        Assert.True(next > first + 1);
        Assert.Equal("$c", states.Full(next)[("m.room.topic", "")]);
    }
}

using Xunit.Abstractions;
using System.Diagnostics;
using System.Text.Json.Nodes;
using Conduit.Protos.Rooms;
using static Conduit.Rooms.Tests.RoomsHarness;

namespace Conduit.Rooms.Tests;

/// <summary>
/// Sliding sync for a user in many rooms: what an incremental request with no news costs the rooms service. The
/// room count is CONDUIT_SLIDING_SCALE_ROOMS (default 200, so CI stays quick; 2000 to measure); timings are
/// written to the test output, never asserted.
/// </summary>
public sealed class SlidingScaleTests(ITestOutputHelper output) : IDisposable
{
    readonly RoomsHarness _h = new();

    public void Dispose() => _h.Dispose();

    static SlidingRoomsRequest ElementXLike(long since)
    {
        var config = new SlidingRoomConfig { TimelineLimit = 1 };
        foreach (var (t, k) in new[] { ("m.room.name", ""), ("m.room.encryption", ""), ("m.room.member", "$LAZY"), ("m.room.member", "$ME"), ("m.room.power_levels", "") })
            config.RequiredState.Add(new SlidingStateKey { Type = t, StateKey = k });
        // Element X's room list leaves spaces out.
        var list = new SlidingList { Name = "all", Config = config, Filters = new SlidingFilters { NotRoomTypes = new StringList { Values = { "m.space" } } } };
        list.Ranges.Add(new SlidingRange { Start = 0, End = 19 });
        return new SlidingRoomsRequest { UserId = Alice, DeviceId = "D", Since = since, Lists = { list } };
    }

    [Fact]
    public async Task ManyRooms_AnIncrementalRequestWithNoNews_SendsNoRoom()
    {
        var n = int.TryParse(Environment.GetEnvironmentVariable("CONDUIT_SLIDING_SCALE_ROOMS"), out var v) && v > 0 ? v : 200;
        var sw = Stopwatch.StartNew();
        for (var i = 0; i < n; i++)
        {
            var room = $"!r{i}:test.local";
            await _h.CreateRoomAsync(room);
            await _h.MessageAsync(room, Alice, $"hello {i}");
        }
        output.WriteLine($"{n} rooms created in {sw.ElapsedMilliseconds} ms");
        var builder = new SlidingBuilder(_h.Rooms, _h.Format, _h.Visibility, _h.Stream);

        sw.Restart();
        var first = builder.Build(ElementXLike(0));
        output.WriteLine($"first request: {sw.Elapsed.TotalMilliseconds:F1} ms");
        Assert.Equal(n, first.Lists.Single().Count);
        Assert.Equal(Math.Min(n, 20), first.Rooms.Count);

        var next = ElementXLike(first.Position);
        foreach (var r in first.Rooms) next.Sent[r.RoomId] = r.ConfigKey;
        const int rounds = 20;
        sw.Restart();
        SlidingRoomsReply again = null!;
        for (var i = 0; i < rounds; i++) again = builder.Build(next);
        output.WriteLine($"incremental request, no news: {sw.Elapsed.TotalMilliseconds / rounds:F2} ms each");
        Assert.Empty(again.Rooms);
        Assert.Equal(n, again.Lists.Single().Count);
    }
}

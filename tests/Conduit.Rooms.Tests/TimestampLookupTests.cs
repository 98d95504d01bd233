using Conduit.Common;

namespace Conduit.Rooms.Tests;

/// <summary>The search shared by the client and federation timestamp_to_event endpoints, and its parameters.</summary>
public sealed class TimestampLookupTests : IDisposable
{
    const string Room = "!ts:test.local";
    readonly RoomsHarness _h = new();

    public void Dispose() => _h.Dispose();

    /// <summary>Three messages with distinct timestamps, oldest first.</summary>
    async Task<List<(StoredEvent Event, long Ts)>> ThreeMessagesAsync()
    {
        await _h.CreateRoomAsync(Room);
        return await _h.SpacedMessagesAsync(Room, 3);
    }

    StoredEvent? Find(long ts, bool forward, Func<StoredEvent, bool>? maySee = null)
        => TimestampLookup.Closest(_h.Rooms, Room, new TimestampQuery(ts, forward), 0, long.MaxValue, maySee ?? (_ => true)).Event;

    [Fact]
    public async Task Closest_is_the_nearest_event_on_the_asked_side_of_ts()
    {
        var m = await ThreeMessagesAsync();
        Assert.Equal(m[1].Event.EventId, Find(m[0].Ts + 1, forward: true)?.EventId);
        Assert.Equal(m[1].Event.EventId, Find(m[2].Ts - 1, forward: false)?.EventId);
        Assert.Equal(m[0].Event.EventId, Find(m[0].Ts, forward: true)?.EventId);
        Assert.Equal(m[2].Event.EventId, Find(m[2].Ts, forward: false)?.EventId);
        Assert.Null(Find(m[2].Ts + 1, forward: true));
        Assert.Equal("m.room.create", Find(0, forward: true)?.Type);
        Assert.Null(Find(0, forward: false));
    }

    [Fact]
    public async Task Closest_passes_over_events_the_reader_may_not_see_and_says_so()
    {
        var m = await ThreeMessagesAsync();
        var (found, hidden) = TimestampLookup.Closest(_h.Rooms, Room, new TimestampQuery(m[0].Ts, true), 0, long.MaxValue, e => e.EventId == m[2].Event.EventId);
        Assert.Equal((m[2].Event.EventId, true), (found?.EventId, hidden));
        // Nothing visible on that side: none found, and the answer knows events were there (403 rather than 404).
        Assert.Equal((null, true), Pick(TimestampLookup.Closest(_h.Rooms, Room, new TimestampQuery(m[0].Ts, true), 0, long.MaxValue, _ => false)));
        // Events on the other side are not "hidden": nothing is there at all (404).
        Assert.Equal((null, false), Pick(TimestampLookup.Closest(_h.Rooms, Room, new TimestampQuery(m[2].Ts + 1, true), 0, long.MaxValue, _ => false)));

        static (string?, bool) Pick((StoredEvent? Event, bool Hidden) r) => (r.Event?.EventId, r.Hidden);
    }

    [Fact]
    public async Task Closest_keeps_within_the_stream_window()
    {
        var m = await ThreeMessagesAsync();
        Assert.Equal(m[1].Event.EventId, TimestampLookup.Closest(_h.Rooms, Room, new TimestampQuery(m[2].Ts, false), 0, m[1].Event.Pos, _ => true).Event?.EventId);
        Assert.Equal(m[1].Event.EventId, TimestampLookup.Closest(_h.Rooms, Room, new TimestampQuery(0, true), m[0].Event.Pos, long.MaxValue, _ => true).Event?.EventId);
    }

    [Fact]
    public async Task A_room_created_here_has_no_gap_before_its_events()
    {
        var m = await ThreeMessagesAsync();
        Assert.False(TimestampLookup.AfterGap(_h.Rooms, m[0].Event));
        Assert.False(TimestampLookup.AfterGap(_h.Rooms, Find(0, forward: true)!));
    }

    [Theory]
    [InlineData(null, "f", "M_MISSING_PARAM")]
    [InlineData("5", null, "M_MISSING_PARAM")]
    [InlineData("5", "x", "M_INVALID_PARAM")]
    [InlineData("soon", "f", "M_INVALID_PARAM")]
    [InlineData("1.5", "b", "M_INVALID_PARAM")]
    [InlineData("99999999999999999999", "b", "M_INVALID_PARAM")]
    public void Parse_refuses_missing_and_bad_parameters(string? ts, string? dir, string errcode)
    {
        var e = Assert.Throws<MatrixException>(() => TimestampQuery.Parse(ts, dir));
        Assert.Equal((400, errcode), (e.Status, e.ErrCode));
    }

    [Fact]
    public void Parse_and_the_sides_of_ts()
    {
        var f = TimestampQuery.Parse("-5", "f");
        Assert.Equal(new TimestampQuery(-5, true), f);
        Assert.True(f.Includes(-5) && f.Includes(0) && !f.Includes(-6));
        var b = TimestampQuery.Parse("100", "b");
        Assert.True(b.Includes(100) && b.Includes(long.MinValue) && !b.Includes(101));
        Assert.True(b.Closer(99, 50) && !b.Closer(50, 99) && !b.Closer(99, 99));
        Assert.True(f.Closer(0, long.MaxValue));
    }
}

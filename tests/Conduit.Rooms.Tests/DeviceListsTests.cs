using static Conduit.Rooms.Tests.RoomsHarness;

namespace Conduit.Rooms.Tests;

/// <summary>Who hears of whose device-list changes (spec: client-server-api, "Tracking the device list for a user").</summary>
public sealed class DeviceListsTests : IDisposable
{
    const string Dave = "@dave:test.local";
    readonly RoomsHarness _h = new();
    readonly DeviceLists _lists;

    public DeviceListsTests() => _lists = new DeviceLists(_h.Rooms);

    public void Dispose() => _h.Dispose();

    [Fact]
    public async Task Candidates_count_only_when_they_share_a_joined_room_and_joins_and_leaves_are_news()
    {
        await _h.CreateRoomAsync("!r:test.local");
        await _h.MemberAsync("!r:test.local", Bob, Bob, "join");
        await _h.CreateRoomAsync("!other:test.local", creator: Dave);
        var p0 = _h.Rooms.StreamPosition;

        // Bob and Dave changed keys: Alice shares a room with Bob only.
        var (changed, left) = _lists.Delta(Alice, p0, p0, [Bob, Dave, Alice]);
        Assert.Equal([Alice, Bob], changed.Order());
        Assert.Empty(left);

        // Carol joins Alice's room: news for Alice even without a key change; Carol hears of everyone in it.
        await _h.MemberAsync("!r:test.local", Carol, Carol, "join");
        var p1 = _h.Rooms.StreamPosition;
        Assert.Equal([Carol], _lists.Delta(Alice, p0, p1, []).Changed);
        Assert.Equal([Alice, Bob], _lists.Delta(Carol, p0, p1, []).Changed.Order());

        // Bob leaves: left for Alice and Carol (no other shared room); a user who still shares another room is not.
        await _h.MemberAsync("!other:test.local", Carol, Carol, "join");
        await _h.MemberAsync("!r:test.local", Bob, Bob, "leave");
        var p2 = _h.Rooms.StreamPosition;
        (changed, left) = _lists.Delta(Alice, p1, p2, []);
        Assert.Equal([Bob], left);
        Assert.Empty(changed);

        // Alice leaves: Carol is gone from her view; Dave never was in it.
        await _h.MemberAsync("!r:test.local", Alice, Alice, "leave");
        var p3 = _h.Rooms.StreamPosition;
        Assert.Equal([Carol], _lists.Delta(Alice, p2, p3, [Dave]).Left);
        Assert.Empty(_lists.Delta(Alice, p2, p3, [Dave]).Changed);
        // Carol and Dave still share !other.
        Assert.True(_lists.SharesRoom(Carol, Dave));
        Assert.Contains(Dave, _lists.SharedWith(Carol));
        Assert.DoesNotContain(Dave, _lists.SharedWith(Alice));
    }
}

using System.Text.Json.Nodes;
using Conduit.Protos.Federation;
using Microsoft.Extensions.Logging.Abstractions;
using static Conduit.Rooms.Tests.RoomsHarness;

namespace Conduit.Rooms.Tests;

/// <summary>
/// timestamp_to_event's questions to other servers (<see cref="RemoteTimestamps"/>) against a fake federation service:
/// which servers are asked, and that only an event that checks out, on the asked side and closer, is taken.
/// </summary>
public sealed class RemoteTimestampsTests : IDisposable
{
    const string Room = "!remote-ts:test.local";
    const string Other = "!other-ts:test.local";
    const string Remote = "@r:remote.example";
    readonly RoomsHarness _h = new();
    readonly RemoteHistory _history;
    readonly RemoteTimestamps _timestamps;

    public RemoteTimestampsTests()
    {
        var remote = new RemoteServers(_h.FederationClient);
        _history = new RemoteHistory(_h.Rooms, _h.Sender, remote, _h.Config, NullLogger<RemoteHistory>.Instance);
        _timestamps = new RemoteTimestamps(_h.Rooms, _history, remote, _h.Config, NullLogger<RemoteTimestamps>.Instance);
    }

    public void Dispose() => _h.Dispose();

    /// <summary>A room with a member of remote.example and three messages with distinct timestamps, oldest first.</summary>
    async Task<List<(StoredEvent Event, long Ts)>> RoomAsync()
    {
        await _h.CreateRoomAsync(Room);
        await _h.MemberAsync(Room, Remote, Remote, "join");
        return await _h.SpacedMessagesAsync(Room, 3);
    }

    /// <summary>remote.example answers timestamp_to_event with <paramref name="eventId"/>, and /event with <paramref name="pdu"/> (else 404).</summary>
    void RemoteNames(string eventId, JsonObject? pdu = null) => _h.Federation.Remote = r => r.Path.Contains("/timestamp_to_event/", StringComparison.Ordinal)
        ? new OutboundReply { Status = 200, Body = new JsonObject { ["event_id"] = eventId, ["origin_server_ts"] = 1 }.ToJsonString() }
        : pdu is not null && r.Path.Contains("/event/", StringComparison.Ordinal)
            ? new OutboundReply { Status = 200, Body = new JsonObject { ["pdus"] = new JsonArray(pdu.DeepClone()) }.ToJsonString() }
            : new OutboundReply { Status = 404, Body = """{"errcode":"M_NOT_FOUND"}""" };

    [Fact]
    public async Task An_event_of_the_room_on_the_asked_side_and_closer_is_taken()
    {
        var m = await RoomAsync();
        RemoteNames(m[0].Event.EventId);
        var q = new TimestampQuery(m[0].Ts, Forward: true);
        Assert.Equal(m[0].Event.EventId, (await _timestamps.CloserAsync(Room, q, null, default))?.EventId);
        Assert.Equal(m[0].Event.EventId, (await _timestamps.CloserAsync(Room, q, m[2].Event, default))?.EventId);
        var asked = _h.Federation.Sent.First(r => r.Path.Contains("/timestamp_to_event/", StringComparison.Ordinal));
        Assert.Equal(("remote.example", "GET"), (asked.Destination, asked.Method));
        Assert.EndsWith($"?ts={m[0].Ts}&dir=f", asked.Path, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_event_on_the_wrong_side_not_closer_or_of_another_room_is_not_taken()
    {
        var m = await RoomAsync();
        RemoteNames(m[2].Event.EventId);
        Assert.Null(await _timestamps.CloserAsync(Room, new TimestampQuery(m[1].Ts, Forward: false), null, default)); // after ts
        Assert.Null(await _timestamps.CloserAsync(Room, new TimestampQuery(m[0].Ts, Forward: true), m[1].Event, default)); // farther

        await _h.CreateRoomAsync(Other);
        var elsewhere = await _h.MessageAsync(Other, Alice, "another room");
        RemoteNames(elsewhere.EventId);
        Assert.Null(await _timestamps.CloserAsync(Room, new TimestampQuery(0, Forward: true), null, default));
    }

    [Fact]
    public async Task An_event_whose_content_does_not_match_its_id_is_not_taken_nor_kept()
    {
        var m = await RoomAsync();
        // A copy of a real event of the room with other content: its reference hash is not the ID named.
        var forged = m[1].Event.Pdu.DeepClone().AsObject();
        forged["content"]!["body"] = "rewritten";
        const string named = "$notTheHashOfThatEvent";
        RemoteNames(named, forged);
        Assert.Null(await _timestamps.CloserAsync(Room, new TimestampQuery(0, Forward: true), null, default));
        Assert.Null(_h.Rooms.Event(named));
        Assert.Contains(_h.Federation.Sent, r => r.Path.EndsWith("/event/" + Uri.EscapeDataString(named), StringComparison.Ordinal));
    }

    [Fact]
    public async Task At_most_three_other_servers_are_asked_and_never_this_one()
    {
        await RoomAsync();
        foreach (var s in new[] { "a.example", "b.example", "c.example", "d.example" }) await _h.MemberAsync(Room, $"@u:{s}", $"@u:{s}", "join");
        Assert.Null(await _timestamps.CloserAsync(Room, new TimestampQuery(0, Forward: true), null, default)); // all unreachable
        var asked = _h.Federation.Sent.Select(r => r.Destination).ToList();
        Assert.Equal(3, asked.Count);
        Assert.Equal(asked.Count, asked.Distinct().Count());
        Assert.DoesNotContain(Server, asked);
        Assert.Equal("remote.example", asked[0]); // in the room longest
    }

    [Fact]
    public async Task Other_servers_are_asked_only_when_nothing_or_an_event_after_a_gap_was_found_and_history_is_shared()
    {
        var m = await RoomAsync();
        var forward = new TimestampQuery(m[0].Ts, Forward: true);
        Assert.True(_timestamps.WorthAsking(Room, forward, null));
        Assert.False(_timestamps.WorthAsking(Room, forward, m[0].Event)); // the room began here: no gap
        await _h.StateAsync(Room, Alice, "m.room.history_visibility", "", new JsonObject { ["history_visibility"] = "joined" });
        Assert.False(_timestamps.WorthAsking(Room, forward, null));
    }
}

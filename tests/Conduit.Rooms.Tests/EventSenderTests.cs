using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Events;
using static Conduit.Rooms.Tests.RoomsHarness;

namespace Conduit.Rooms.Tests;

public sealed class EventSenderTests : IDisposable
{
    const string Room = "!room:test.local";
    readonly RoomsHarness _h = new();

    public void Dispose() => _h.Dispose();

    [Fact]
    public async Task CreateRoom_WritesFourEventsAtPositions1To4()
    {
        var created = await _h.CreateRoomAsync(Room);
        Assert.Equal([1L, 2L, 3L, 4L], created.Select(e => e.Pos));
        Assert.Equal(["m.room.create", "m.room.member", "m.room.power_levels", "m.room.join_rules"], created.Select(e => e.Type));
        Assert.Equal(4, _h.Rooms.StreamPosition);
        Assert.Equal(4, _h.Stream.Position);
        Assert.Equal(4, _h.TimelineCount(Room));
        Assert.Equal("join", _h.Rooms.MembershipOf(Alice, Room)!.State);
        Assert.Equal([Alice], _h.Rooms.JoinedMembers(Room));
        var info = _h.Rooms.Info(Room)!;
        Assert.Equal("11", info["room_version"]!.GetValue<string>());
        Assert.Equal(Alice, info["creator"]!.GetValue<string>());
        Assert.Equal(4, info["depth"]!.GetValue<long>());
        Assert.Equal([created[3].EventId], info["forward_extremities"]!.AsArray().Select(n => n!.GetValue<string>()));
        Assert.Equal(4, _h.Federation.Calls);
    }

    [Fact]
    public async Task EachMessage_AdvancesTheStreamAndChainsPrevEvents()
    {
        var created = await _h.CreateRoomAsync(Room);
        var m1 = await _h.MessageAsync(Room, Alice, "one");
        var m2 = await _h.MessageAsync(Room, Alice, "two");
        Assert.Equal(5, m1.Pos);
        Assert.Equal(6, m2.Pos);
        Assert.Equal(6, _h.Rooms.StreamPosition);
        Assert.Equal([created[3].EventId], m1.Pdu["prev_events"]!.AsArray().Select(n => n!.GetValue<string>()));
        Assert.Equal([m1.EventId], m2.Pdu["prev_events"]!.AsArray().Select(n => n!.GetValue<string>()));
        Assert.Equal(5, m1.Pdu["depth"]!.GetValue<long>());
        Assert.Equal(6, m2.Pdu["depth"]!.GetValue<long>());
        Assert.Equal([m1.EventId, m2.EventId], _h.Rooms.Timeline(Room, 4, 6, backwards: false).Select(t => t.EventId));
    }

    [Fact]
    public async Task Message_AuthEventsAreCreatePowerLevelsAndSendersMembership()
    {
        var created = await _h.CreateRoomAsync(Room);
        var m = await _h.MessageAsync(Room, Alice, "hi");
        var auth = m.Pdu["auth_events"]!.AsArray().Select(n => n!.GetValue<string>()).ToHashSet();
        Assert.Equal(new HashSet<string> { created[0].EventId, created[2].EventId, created[1].EventId }, auth);
        Assert.Empty(created[0].Pdu["auth_events"]!.AsArray());
    }

    [Fact]
    public async Task StoredPdu_HasTheReferenceHashAsIdAValidContentHashAndOurSignature()
    {
        await _h.CreateRoomAsync(Room);
        var sent = await _h.MessageAsync(Room, Alice, "hash me");
        var stored = _h.Rooms.Event(sent.EventId)!;
        Assert.NotNull(stored);
        Assert.Equal(sent.EventId, EventHashing.ComputeEventId(stored.Pdu, RoomVersion.V11));
        Assert.True(EventHashing.VerifyContentHash(stored.Pdu));
        Assert.True(EventHashing.VerifySignature(stored.Pdu, RoomVersion.V11, Server, _h.Key.KeyId, _h.Key.PublicKey));
        Assert.Equal("hash me", stored.Content["body"]!.GetValue<string>());
        Assert.Equal(Alice, stored.Sender);
        Assert.Equal(Room, stored.RoomId);
        Assert.Null(stored.Pdu["event_id"]); // v11 PDUs carry no event_id

        // Changing the content breaks the content hash; the ID (a hash of the redacted event) covers the body
        // through that content hash, so a re-hashed copy gets another ID.
        var tampered = (JsonObject)stored.Pdu.DeepClone();
        tampered["content"]!["body"] = "tampered";
        Assert.False(EventHashing.VerifyContentHash(tampered));
        EventHashing.AddContentHash(tampered);
        Assert.NotEqual(sent.EventId, EventHashing.ComputeEventId(tampered, RoomVersion.V11));
    }

    [Fact]
    public async Task EveryEventOfCreateRoom_HasAConsistentId()
    {
        foreach (var e in await _h.CreateRoomAsync(Room))
        {
            var stored = _h.Rooms.Event(e.EventId)!;
            Assert.Equal(e.EventId, EventHashing.ComputeEventId(stored.Pdu, RoomVersion.V11));
            Assert.True(EventHashing.VerifyContentHash(stored.Pdu));
        }
    }

    [Fact]
    public async Task RoomStream_PublishesTheNewPositionNamingJoinedLocalUsers()
    {
        await _h.CreateRoomAsync(Room);
        await _h.MemberAsync(Room, Bob, Bob, "join");
        await _h.MemberAsync(Room, Alice, Carol, "invite");
        await _h.MemberAsync(Room, Alice, "@remote:elsewhere.example", "invite");
        var before = _h.Rooms.StreamPosition;

        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await using var sub = _h.Stream.Subscribe(cts.Token).GetAsyncEnumerator(cts.Token);
        Assert.True(await sub.MoveNextAsync());
        Assert.Equal(before, sub.Current.Position);
        Assert.Empty(sub.Current.UserIds);

        var m = await _h.MessageAsync(Room, Bob, "hello");

        Assert.True(await sub.MoveNextAsync());
        Assert.Equal(m.Pos, sub.Current.Position);
        Assert.Equal(before + 1, sub.Current.Position);
        Assert.Equal(new[] { Alice, Bob }.Order(), sub.Current.UserIds.Order());
    }

    [Fact]
    public async Task RoomStream_AnInviteNamesTheInvitee()
    {
        await _h.CreateRoomAsync(Room);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await using var sub = _h.Stream.Subscribe(cts.Token).GetAsyncEnumerator(cts.Token);
        Assert.True(await sub.MoveNextAsync());

        await _h.MemberAsync(Room, Alice, Carol, "invite");

        Assert.True(await sub.MoveNextAsync());
        Assert.Equal(5, sub.Current.Position);
        Assert.Equal(new[] { Alice, Carol }.Order(), sub.Current.UserIds.Order());
    }

    [Fact]
    public async Task RetryWithTheSameTxn_ReturnsTheSameEventAndWritesNothing()
    {
        await _h.CreateRoomAsync(Room);
        var txn = new TxnRef(Alice, "DEV", "txn1");
        var first = await _h.MessageAsync(Room, Alice, "once", txn);
        var pos = _h.Rooms.StreamPosition;
        var count = _h.TimelineCount(Room);
        var signs = _h.Federation.Calls;

        var retry = await _h.MessageAsync(Room, Alice, "once", txn);
        var differentBody = await _h.MessageAsync(Room, Alice, "changed on retry", txn);

        Assert.Equal(first.EventId, retry.EventId);
        Assert.Equal(first.EventId, differentBody.EventId);
        Assert.Equal("once", differentBody.Content["body"]!.GetValue<string>());
        Assert.Equal(pos, _h.Rooms.StreamPosition);
        Assert.Equal(count, _h.TimelineCount(Room));
        Assert.Equal(signs, _h.Federation.Calls);
    }

    [Fact]
    public async Task SameTxnIdFromAnotherDevice_IsANewEvent()
    {
        await _h.CreateRoomAsync(Room);
        var a = await _h.MessageAsync(Room, Alice, "a", new TxnRef(Alice, "DEV1", "t"));
        var b = await _h.MessageAsync(Room, Alice, "b", new TxnRef(Alice, "DEV2", "t"));
        Assert.NotEqual(a.EventId, b.EventId);
        Assert.Equal(6, _h.Rooms.StreamPosition);
    }

    [Fact]
    public async Task UnauthorizedEventInABatch_WritesNothingOfTheBatch()
    {
        await _h.CreateRoomAsync(Room);
        await _h.MemberAsync(Room, Bob, Bob, "join");
        var pos = _h.Rooms.StreamPosition;
        var count = _h.TimelineCount(Room);
        var extremities = _h.Rooms.Info(Room)!["forward_extremities"]!.ToJsonString();

        // Bob (power 0) may send the message but not the name (state_default 50).
        var e = await Assert.ThrowsAsync<MatrixException>(() => _h.Sender.SendAsync(Room, Bob,
        [
            new NewEvent("m.room.message", null, new JsonObject { ["msgtype"] = "m.text", ["body"] = "first" }),
            new NewEvent("m.room.topic", "", new JsonObject { ["topic"] = "allowed? no" }),
        ], new TxnRef(Bob, "DEV", "batch"), CancellationToken.None));

        Assert.Equal("M_FORBIDDEN", e.ErrCode);
        Assert.Equal(pos, _h.Rooms.StreamPosition);
        Assert.Equal(pos, _h.Stream.Position);
        Assert.Equal(count, _h.TimelineCount(Room));
        Assert.Null(_h.Rooms.StateEventId(Room, "m.room.topic", ""));
        Assert.Null(_h.Rooms.TxnEvent(Bob, "DEV", "batch"));
        Assert.Equal(extremities, _h.Rooms.Info(Room)!["forward_extremities"]!.ToJsonString());
    }

    [Fact]
    public async Task NonMember_CannotSendAndNothingIsWritten()
    {
        await _h.CreateRoomAsync(Room);
        var e = await Assert.ThrowsAsync<MatrixException>(() => _h.MessageAsync(Room, Carol, "let me in"));
        Assert.Equal("M_FORBIDDEN", e.ErrCode);
        Assert.Equal(4, _h.Rooms.StreamPosition);
    }

    [Fact]
    public async Task UnknownRoom_IsNotFound()
    {
        var e = await Assert.ThrowsAsync<MatrixException>(() => _h.MessageAsync("!nope:test.local", Alice, "hi"));
        Assert.Equal("M_NOT_FOUND", e.ErrCode);
        Assert.Equal(0, _h.Rooms.StreamPosition);
    }

    [Fact]
    public async Task StateChange_RecordsTheReplacedEvent()
    {
        await _h.CreateRoomAsync(Room);
        var n1 = await _h.StateAsync(Room, Alice, "m.room.name", "", new JsonObject { ["name"] = "One" });
        var n2 = await _h.StateAsync(Room, Alice, "m.room.name", "", new JsonObject { ["name"] = "Two" });
        Assert.Equal(n2.EventId, _h.Rooms.StateEventId(Room, "m.room.name", ""));
        Assert.Equal("Two", _h.Rooms.StateContent(Room, "m.room.name")!["name"]!.GetValue<string>());
        Assert.Equal(n1.EventId, _h.Rooms.Event(n2.EventId)!.Meta["prev_content_event"]!.GetValue<string>());
        var client = _h.Format.Format(_h.Rooms.Event(n2.EventId)!);
        Assert.Equal("One", client["unsigned"]!["prev_content"]!["name"]!.GetValue<string>());
    }
}

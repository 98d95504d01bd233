using System.Text.Json.Nodes;
using Conduit.Common.Events;
using Conduit.Common.Grpc;
using Conduit.Protos.Rooms;
using Grpc.Core;
using static Conduit.Rooms.Tests.RoomsHarness;

namespace Conduit.Rooms.Tests;

/// <summary>The SyncRooms contract (protos/rooms.proto): a head, then rooms' raw JSON in bounded parts.</summary>
public sealed class SyncRoomsStreamTests : IDisposable
{
    readonly RoomsHarness _h = new();

    public void Dispose() => _h.Dispose();

    static string RoomId(int i) => $"!r{i:D3}:test.local";

    /// <summary>The JSON with every unsigned.age removed: it is computed at write time, so two builds differ there.</summary>
    static JsonNode WithoutAge(JsonNode n)
    {
        var copy = n.DeepClone();
        void Strip(JsonNode? x)
        {
            if (x is JsonObject o)
            {
                if (o["unsigned"] is JsonObject u) u.Remove("age");
                foreach (var (_, v) in o) Strip(v);
            }
            else if (x is JsonArray a) foreach (var v in a) Strip(v);
        }
        Strip(copy);
        return copy;
    }

    [Fact]
    public async Task The_head_comes_first_with_the_published_position_and_the_joined_rooms()
    {
        await _h.CreateRoomAsync(RoomId(1));
        await _h.CreateRoomAsync(RoomId(2));
        await _h.CreateRoomAsync(RoomId(3), joinRule: "invite", creator: Bob);
        await _h.MemberAsync(RoomId(3), Bob, Alice, "invite");

        var parts = _h.Builder.Build(Alice, null, 0, false, null).ToList();

        var head = parts[0].Head;
        Assert.Equal(_h.Stream.Position, head.Position);
        Assert.Equal([RoomId(1), RoomId(2)], head.JoinedRoomIds);
        Assert.Empty(parts[0].Rooms);
        Assert.All(parts.Skip(1), p => Assert.Null(p.Head));
        var r = SyncHarness.Assemble(parts);
        Assert.Equal([RoomId(1), RoomId(2)], r.Rooms["join"]!.AsObject().Select(kv => kv.Key));
        Assert.Equal([RoomId(3)], r.Rooms["invite"]!.AsObject().Select(kv => kv.Key));
        // Account data is the sync service's to add.
        Assert.Null(r.Rooms["join"]![RoomId(1)]!["account_data"]);
    }

    [Fact]
    public async Task Sections_come_grouped_join_invite_leave_knock_whatever_the_room_order()
    {
        // Room IDs sort so that the user's memberships, in storage order, alternate between sections.
        await _h.CreateRoomAsync(RoomId(1), joinRule: "knock", creator: Bob);
        await _h.MemberAsync(RoomId(1), Alice, Alice, "knock");
        await _h.CreateRoomAsync(RoomId(2));
        await _h.CreateRoomAsync(RoomId(3), creator: Bob);
        await _h.MemberAsync(RoomId(3), Alice, Alice, "join");
        await _h.MemberAsync(RoomId(3), Alice, Alice, "leave");
        await _h.CreateRoomAsync(RoomId(4), joinRule: "invite", creator: Bob);
        await _h.MemberAsync(RoomId(4), Bob, Alice, "invite");
        await _h.CreateRoomAsync(RoomId(5));
        var includeLeave = Filter.Parse(JsonNode.Parse("""{"room":{"include_leave":true}}""")!.AsObject());

        var r = _h.Sync.Build(Alice, null, 0, false, includeLeave);

        var order = r.Parts.SelectMany(p => p.Rooms).Select(p => (p.Section, p.RoomId)).ToList();
        Assert.Equal([(SyncSection.Join, RoomId(2)), (SyncSection.Join, RoomId(5)), (SyncSection.Invite, RoomId(4)),
            (SyncSection.Leave, RoomId(3)), (SyncSection.Knock, RoomId(1))], order);
        Assert.NotNull(r.Rooms["knock"]![RoomId(1)]!["knock_state"]);
        Assert.NotNull(r.Rooms["leave"]![RoomId(3)]!["timeline"]);
    }

    [Fact]
    public async Task Rooms_larger_than_a_part_are_cut_into_pieces_that_join_into_the_same_json()
    {
        for (var i = 0; i < 6; i++)
        {
            await _h.CreateRoomAsync(RoomId(i));
            for (var m = 0; m < 8; m++) await _h.MessageAsync(RoomId(i), Alice, $"message {m} in room {i} " + new string('x', 100));
        }
        var small = new SyncBuilder(_h.Rooms, _h.States, _h.Format, _h.Visibility, _h.Stream) { PartBytes = 600 };
        var filter = Filter.Parse(JsonNode.Parse("""{"room":{"timeline":{"limit":50}}}""")!.AsObject());

        var whole = _h.Sync.Build(Alice, null, 0, false, filter);
        var cut = SyncHarness.Assemble(small.Build(Alice, null, 0, false, filter).ToList());

        Assert.True(JsonNode.DeepEquals(WithoutAge(whole.Rooms), WithoutAge(cut.Rooms)));
        // Every room went out in several pieces, and no part is much larger than the part size: a room is cut at
        // the first event boundary past it (so a piece is larger by one event and the room's last members at most).
        var pieces = cut.Parts.SelectMany(p => p.Rooms).ToList();
        Assert.All(Enumerable.Range(0, 6), i => Assert.True(pieces.Count(p => p.RoomId == RoomId(i)) > 3));
        Assert.All(cut.Parts.Skip(1), p => Assert.InRange(p.Rooms.Sum(x => x.Json.Length), 1, 600 + 1000));
        Assert.Equal(6, pieces.Count(p => p.Last));
        // With the default part size the six rooms fit in one part.
        Assert.Equal(2, whole.Parts.Count);
    }

    [Fact]
    public async Task Many_rooms_stream_in_parts_of_bounded_size()
    {
        for (var i = 0; i < 60; i++) await _h.CreateRoomAsync(RoomId(i));
        var builder = new SyncBuilder(_h.Rooms, _h.States, _h.Format, _h.Visibility, _h.Stream) { PartBytes = 4096 };

        var r = SyncHarness.Assemble(builder.Build(Alice, null, 0, false, null).ToList());

        Assert.Equal(60, r.Rooms["join"]!.AsObject().Count);
        Assert.True(r.Parts.Count > 10, $"{r.Parts.Count} parts");
        // No room here is as large as a part, so no part is larger than the part size, and each holds a few rooms.
        Assert.All(r.Parts.Skip(1), p => Assert.InRange(p.Rooms.Sum(x => x.Json.Length), 1, 4096));
        Assert.All(r.Parts.Skip(1).SkipLast(1), p => Assert.True(p.Rooms.Count > 1));
    }

    [Fact]
    public void The_typed_filter_keeps_unset_lists_apart_from_empty_ones()
    {
        var f = RoomsGrpcService.FilterOf(new SyncRoomFilter
        {
            NotRooms = new StringList { Values = { "!no:test.local" } },
            Rooms = new StringList(),
            IncludeLeave = true,
            Timeline = new SyncEventFilter
            {
                Limit = 3,
                Types_ = new StringList { Values = { "m.room.*" } },
                NotSenders = new StringList { Values = { "@spam:test.local" } },
                ContainsUrl = false,
            },
            State = new SyncEventFilter { LazyLoadMembers = true, IncludeRedundantMembers = true, NotTypes = new StringList { Values = { "x.y" } } },
        });

        Assert.Equal(
            """{"rooms":[],"not_rooms":["!no:test.local"],"include_leave":true,"timeline":{"limit":3,"types":["m.room.*"],"not_senders":["@spam:test.local"],"contains_url":false},"state":{"not_types":["x.y"],"lazy_load_members":true,"include_redundant_members":true}}""",
            f.Room.ToJson().ToJsonString());
        Assert.False(f.Room.IncludesRoom("!any:test.local"));
        Assert.Null(RoomsGrpcService.FilterOf(new SyncRoomFilter()).Room.Rooms);
        Assert.Null(RoomsGrpcService.FilterOf(new SyncRoomFilter()).Room.Timeline.Limit);
    }

    [Fact]
    public async Task SyncRooms_streams_through_the_in_process_invoker_and_applies_the_typed_filter()
    {
        for (var i = 0; i < 4; i++) await _h.CreateRoomAsync(RoomId(i));
        var last = await _h.MessageAsync(RoomId(2), Alice, "last");
        var service = new RoomsGrpcService(_h.Rooms, _h.Stream, _h.Builder, _h.Sender, new DeviceLists(_h.Rooms), null!, null!, null!, null!, _h.Config, null!, null!);
        var client = new Protos.Rooms.Rooms.RoomsClient(InProcessCallInvoker.Create(null, b => Protos.Rooms.Rooms.BindService(b, service)).WithMatrixErrors());

        var request = new SyncRoomsRequest
        {
            UserId = Alice,
            Filter = new SyncRoomFilter
            {
                Rooms = new StringList { Values = { RoomId(1), RoomId(2) } },
                Timeline = new SyncEventFilter { Limit = 1 },
            },
        };
        async Task<SyncHarness.Result> Call(SyncRoomsRequest req)
        {
            using var call = client.SyncRooms(req);
            var parts = new List<SyncRoomsPart>();
            await foreach (var p in call.ResponseStream.ReadAllAsync()) parts.Add(p);
            return SyncHarness.Assemble(parts);
        }

        // The joined rooms are listed only when asked for (sync asks when it has per-room account data to place).
        Assert.Empty((await Call(request)).JoinedRoomIds);
        request.WantJoinedRoomIds = true;
        var r = await Call(request);

        Assert.Equal(4, r.JoinedRoomIds.Count);
        Assert.Equal([RoomId(1), RoomId(2)], r.Rooms["join"]!.AsObject().Select(kv => kv.Key));
        var timeline = r.Rooms["join"]![RoomId(2)]!["timeline"]!;
        Assert.Equal(last.EventId, Assert.Single(timeline["events"]!.AsArray())!["event_id"]!.GetValue<string>());
        Assert.True(timeline["limited"]!.GetValue<bool>());
    }
}

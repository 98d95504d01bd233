using System.Buffers;
using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common.Events;
using Conduit.Common.Storage;
using Conduit.Protos.Rooms;
using Google.Protobuf;

namespace Conduit.Sync.Tests;

/// <summary>The sync side of the SyncRooms contract: rooms' raw JSON pieces written through, account data merged.</summary>
public sealed class SyncResponseWriterTests : IDisposable
{
    const string Alice = "@alice:test.local";
    const string A = "!a:test.local", B = "!b:test.local", C = "!c:test.local", X = "!x:test.local", I = "!i:test.local", K = "!k:test.local";

    readonly IKeyValueStore _kv = KvStore.Open("memory", "", SyncFamilies.All);
    readonly AccountDataStore _data;

    public SyncResponseWriterTests() => _data = new AccountDataStore(_kv);

    public void Dispose() => _kv.Dispose();

    static string RoomJson(string body) =>
        $$$"""{"timeline":{"events":[{"type":"m.room.message","content":{"body":"{{{body}}}"}}],"limited":false},"state":{"events":[]},"summary":{}}""";

    /// <summary>A room's members (its JSON without the braces) cut into pieces at the given byte offsets.</summary>
    static IEnumerable<SyncRoomPiece> Pieces(SyncSection section, string roomId, string roomJson, params int[] cuts)
    {
        var members = Encoding.UTF8.GetBytes(roomJson[1..^1]);
        var at = 0;
        foreach (var end in cuts.Append(members.Length))
        {
            yield return new SyncRoomPiece { Section = section, RoomId = roomId, Json = ByteString.CopyFrom(members, at, end - at), Last = end == members.Length };
            at = end;
        }
    }

    static SyncRoomsPart Part(params IEnumerable<SyncRoomPiece>[] pieces)
    {
        var p = new SyncRoomsPart();
        foreach (var list in pieces) p.Rooms.AddRange(list);
        return p;
    }

    static readonly Conduit.Protos.Keys.SyncKeysReply E2ee = new()
    {
        Position = 7,
        ToDevice = { """{"sender":"@bob:test.local","type":"m.room_key_request","content":{"n":"é"}}""" },
        OneTimeKeyCounts = { ["signed_curve25519"] = 3 },
        UnusedFallbackKeyTypes = { "signed_curve25519" },
    };
    static readonly DeviceListDeltaReply Lists = new() { Changed = { "@bob:test.local" }, Left = { "@carol:test.local" } };

    static JsonObject Write(SyncRoomsHead head, SyncAccountData ad, bool incremental, params SyncRoomsPart[] parts)
    {
        var output = new ArrayBufferWriter<byte>();
        using (var w = new SyncResponseWriter(output, head, ad, E2ee, Lists, incremental))
        {
            foreach (var p in parts) w.Write(p);
            w.Finish();
        }
        return JsonNode.Parse(output.WrittenSpan)!.AsObject();
    }

    static List<string> Types(JsonNode? accountData) => accountData!["events"]!.AsArray().Select(e => e!["type"]!.GetValue<string>()).ToList();

    [Fact]
    public void A_response_streamed_in_parts_is_valid_JSON_with_per_room_account_data_merged()
    {
        _data.Put(Alice, "", "org.example.global", new JsonObject { ["g"] = 1 });
        _data.Put(Alice, A, "m.tag", new JsonObject { ["tags"] = new JsonObject { ["u.work"] = new JsonObject() } });
        _data.Put(Alice, A, "org.example.a", new JsonObject { ["n"] = 2 });
        _data.Put(Alice, C, "m.fully_read", new JsonObject { ["event_id"] = "$e" });
        _data.Put(Alice, X, "m.tag", new JsonObject());
        var ad = SyncAccountData.Read(_data, Alice, 0, initial: false, null);
        var head = new SyncRoomsHead { Position = 42, JoinedRoomIds = { A, B, C } };

        // Room A is cut inside the two bytes of a UTF-8 character and across two parts; B follows in the part of
        // A's end. (The body is JSON text here: an é, an escaped quote and an escaped backslash.)
        var a = RoomJson("a é \\\"quoted\\\" \\\\ body");
        var inE = Encoding.UTF8.GetBytes(a[1..^1]).AsSpan().IndexOf("é"u8) + 1;
        var r = Write(head, ad, incremental: true,
            Part(Pieces(SyncSection.Join, A, a, 5, inE).Take(2)),
            Part(Pieces(SyncSection.Join, A, a, 5, inE).Skip(2), Pieces(SyncSection.Join, B, RoomJson("b"))),
            Part(Pieces(SyncSection.Invite, I, """{"invite_state":{"events":[]}}""", 3)),
            Part(Pieces(SyncSection.Knock, K, """{"knock_state":{"events":[]}}""")));

        Assert.Equal($"s42_{_data.Position}_7_0_0_0", r["next_batch"]!.GetValue<string>());
        // The E2EE members: to-device events written through as the keys service made them, the rest typed.
        Assert.Equal("é", r["to_device"]!["events"]![0]!["content"]!["n"]!.GetValue<string>());
        Assert.Equal("@bob:test.local", r["device_lists"]!["changed"]![0]!.GetValue<string>());
        Assert.Equal("@carol:test.local", r["device_lists"]!["left"]![0]!.GetValue<string>());
        Assert.Equal(3, r["device_one_time_keys_count"]!["signed_curve25519"]!.GetValue<int>());
        Assert.Equal("signed_curve25519", r["device_unused_fallback_key_types"]![0]!.GetValue<string>());
        var join = r["rooms"]!["join"]!.AsObject();
        Assert.Equal([A, B, C], join.Select(kv => kv.Key));
        Assert.Equal("a \u00e9 \"quoted\" \\ body", join[A]!["timeline"]!["events"]![0]!["content"]!["body"]!.GetValue<string>());
        Assert.Equal(["m.tag", "org.example.a"], Types(join[A]!["account_data"]).Order());
        Assert.Empty(Types(join[B]!["account_data"]));
        // C has nothing but account data: it still gets a section, to carry it; X is not joined and gets none.
        Assert.Equal(["m.fully_read"], Types(join[C]!["account_data"]));
        Assert.Empty(join[C]!["timeline"]!["events"]!.AsArray());
        Assert.Null(join[X]);
        Assert.Null(r["rooms"]!["invite"]![I]!["account_data"]);
        Assert.NotNull(r["rooms"]!["invite"]![I]!["invite_state"]);
        Assert.Empty(r["rooms"]!["leave"]!.AsObject());
        Assert.NotNull(r["rooms"]!["knock"]![K]);
        Assert.Equal(["org.example.global"], Types(r["account_data"]));
    }

    [Fact]
    public void An_initial_sync_has_every_section_but_knock_and_the_default_push_rules()
    {
        _data.Put(Alice, C, "m.fully_read", new JsonObject { ["event_id"] = "$e" });
        var ad = SyncAccountData.Read(_data, Alice, 0, initial: true, null);

        var r = Write(new SyncRoomsHead { Position = 3, JoinedRoomIds = { C } }, ad, incremental: false);

        Assert.Empty(r["rooms"]!["join"]!.AsObject()); // an initial sync shows rooms as rooms says, account data or not
        Assert.Empty(r["rooms"]!["invite"]!.AsObject());
        Assert.Empty(r["rooms"]!["leave"]!.AsObject());
        Assert.Null(r["rooms"]!["knock"]);
        Assert.Equal(["m.push_rules"], Types(r["account_data"]));
        Assert.Equal("s3_1_7_0_0_0", r["next_batch"]!.GetValue<string>());
    }

    [Fact]
    public void Account_data_is_filtered_and_user_push_rules_replace_the_defaults()
    {
        _data.Put(Alice, "", "m.push_rules", new JsonObject { ["global"] = new JsonObject() });
        _data.Put(Alice, "", "org.example.hidden", new JsonObject());
        _data.Put(Alice, A, "org.example.hidden", new JsonObject());
        _data.Put(Alice, A, "m.tag", new JsonObject());
        var filter = Filter.Parse(JsonNode.Parse("""{"account_data":{"not_types":["org.example.*"]},"room":{"account_data":{"types":["m.tag"]}}}""")!.AsObject());

        var ad = SyncAccountData.Read(_data, Alice, 0, initial: true, filter);

        Assert.Equal(["m.push_rules"], ad.Global.Select(e => e.Type));
        Assert.Empty(ad.Global[0].Content["global"]!.AsObject());
        Assert.Equal(["m.tag"], ad.Rooms[A].Select(e => e.Type));
        Assert.True(ad.HasContentFor([A]));
        Assert.Empty(SyncAccountData.Read(_data, Alice, _data.Position, initial: false, filter).Global);
        Assert.False(SyncAccountData.Read(_data, Alice, _data.Position, initial: false, filter).HasContentFor([A]));
    }

    [Fact]
    public void A_broken_stream_is_refused_rather_than_written_as_broken_JSON()
    {
        var ad = SyncAccountData.Read(_data, Alice, 0, initial: false, null);
        var head = new SyncRoomsHead { Position = 1 };
        var unfinished = Pieces(SyncSection.Join, A, RoomJson("a"), 10).Take(1);

        Assert.Throws<InvalidOperationException>(() => Write(head, ad, true, Part(unfinished)));
        Assert.Throws<InvalidOperationException>(() => Write(head, ad, true, Part(unfinished, Pieces(SyncSection.Join, B, RoomJson("b")))));
        Assert.Throws<InvalidOperationException>(() => Write(head, ad, true,
            Part(Pieces(SyncSection.Leave, A, RoomJson("a"))), Part(Pieces(SyncSection.Join, B, RoomJson("b")))));
    }

    [Fact]
    public void The_room_filter_travels_typed_with_unset_lists_apart_from_empty_ones()
    {
        var filter = Filter.Parse(JsonNode.Parse("""
            {"account_data":{"types":["x"]},
             "room":{"rooms":[],"not_rooms":["!no:test.local"],"include_leave":true,
                     "timeline":{"limit":5,"types":["m.room.*"],"senders":["@a:test.local"],"contains_url":true},
                     "state":{"lazy_load_members":true,"not_senders":["@b:test.local"]}}}
            """)!.AsObject());

        var m = SyncRoomsFilter.From(filter);

        Assert.NotNull(m.Rooms);
        Assert.Empty(m.Rooms.Values);
        Assert.Equal(["!no:test.local"], m.NotRooms.Values);
        Assert.True(m.IncludeLeave);
        Assert.Equal(5, m.Timeline.Limit);
        Assert.Equal(["m.room.*"], m.Timeline.Types_.Values);
        Assert.Equal(["@a:test.local"], m.Timeline.Senders.Values);
        Assert.True(m.Timeline.HasContainsUrl && m.Timeline.ContainsUrl);
        Assert.Null(m.Timeline.NotTypes);
        Assert.False(m.State.HasLimit);
        Assert.False(m.State.HasContainsUrl);
        Assert.True(m.State.LazyLoadMembers);
        Assert.Equal(["@b:test.local"], m.State.NotSenders.Values);
        Assert.Null(SyncRoomsFilter.From(Filter.Parse(new JsonObject())).Rooms);
    }
}

using System.Text.Json.Nodes;
using Conduit.Common.Events;

namespace Conduit.Common.Tests;

public class FilterTests
{
    private static Filter P(string json) => Filter.Parse(JsonNode.Parse(json)!.AsObject());

    private static MatrixException Bad(string json)
    {
        var e = Assert.Throws<MatrixException>(() => P(json));
        Assert.Equal("M_BAD_JSON", e.ErrCode);
        Assert.Equal(400, e.Status);
        return e;
    }

    // The request body example of POST /user/{userId}/filter in the spec.
    private const string SpecExample = """
        {
          "room": {
            "state": { "types": ["m.room.*"], "not_rooms": ["!726s6s6q:example.com"] },
            "timeline": {
              "limit": 10,
              "types": ["m.room.message"],
              "not_rooms": ["!726s6s6q:example.com"],
              "not_senders": ["@spam:example.com"]
            },
            "ephemeral": {
              "types": ["m.receipt", "m.typing"],
              "not_rooms": ["!726s6s6q:example.com"],
              "not_senders": ["@spam:example.com"]
            }
          },
          "presence": { "types": ["m.presence"], "not_senders": ["@alice:example.com"] },
          "event_format": "client",
          "event_fields": ["type", "content", "sender"]
        }
        """;

    [Fact]
    public void Parses_spec_example()
    {
        var f = P(SpecExample);
        Assert.Equal(["type", "content", "sender"], f.EventFields);
        Assert.Equal("client", f.EventFormat);
        Assert.Equal(["m.presence"], f.Presence.Types);
        Assert.Equal(["@alice:example.com"], f.Presence.NotSenders);
        Assert.Null(f.Presence.Senders);
        Assert.Null(f.Presence.Limit);
        Assert.Equal(10, f.Room.Timeline.Limit);
        Assert.Equal(["m.room.message"], f.Room.Timeline.Types);
        Assert.Equal(["!726s6s6q:example.com"], f.Room.Timeline.NotRooms);
        Assert.Equal(["@spam:example.com"], f.Room.Timeline.NotSenders);
        Assert.Equal(["m.room.*"], f.Room.State.Types);
        Assert.Equal(["m.receipt", "m.typing"], f.Room.Ephemeral.Types);
        Assert.Null(f.Room.Rooms);
        Assert.False(f.Room.IncludeLeave);
        Assert.Null(f.Room.AccountData.Types);
        Assert.Null(f.AccountData.Types);
    }

    [Fact]
    public void Empty_object_is_the_match_everything_filter()
    {
        var f = P("{}");
        Assert.Equal("client", f.EventFormat);
        Assert.Null(f.EventFields);
        Assert.Null(f.Room.Timeline.Limit);
        Assert.True(f.Room.Timeline.Matches("m.room.message", "@a:x", "!r:x", hasUrl: true));
        Assert.True(f.Presence.Matches("m.presence", "@a:x"));
        Assert.True(f.Room.IncludesRoom("!r:x"));
        Assert.Equal("{}", f.ToJson().ToJsonString());
    }

    [Fact]
    public void Booleans_and_federation_format()
    {
        var f = P("""
            {"event_format": "federation",
             "room": {"include_leave": true, "rooms": ["!a:x"],
                      "timeline": {"lazy_load_members": true, "include_redundant_members": true,
                                   "unread_thread_notifications": true, "contains_url": false},
                      "account_data": {"limit": 3}}}
            """);
        Assert.Equal("federation", f.EventFormat);
        Assert.True(f.Room.IncludeLeave);
        Assert.Equal(["!a:x"], f.Room.Rooms);
        Assert.True(f.Room.Timeline.LazyLoadMembers);
        Assert.True(f.Room.Timeline.IncludeRedundantMembers);
        Assert.True(f.Room.Timeline.UnreadThreadNotifications);
        Assert.False(f.Room.Timeline.ContainsUrl);
        Assert.Null(f.Room.State.ContainsUrl);
        Assert.False(f.Room.State.LazyLoadMembers);
        Assert.Equal(3, f.Room.AccountData.Limit);
    }

    [Fact]
    public void Unknown_keys_and_nulls_are_ignored()
    {
        var f = P("""{"org.example": [1], "room": {"timeline": {"limit": null, "x": {}}, "state": null}, "presence": null}""");
        Assert.Null(f.Room.Timeline.Limit);
        Assert.Null(f.Room.State.Types);
        Assert.Null(f.Presence.Types);
    }

    [Theory]
    [InlineData("""{"event_fields": "content"}""")]
    [InlineData("""{"event_fields": ["content", 1]}""")]
    [InlineData("""{"event_format": "raw"}""")]
    [InlineData("""{"event_format": 1}""")]
    [InlineData("""{"presence": []}""")]
    [InlineData("""{"presence": {"types": "m.presence"}}""")]
    [InlineData("""{"account_data": {"not_types": [null]}}""")]
    [InlineData("""{"room": "all"}""")]
    [InlineData("""{"room": {"rooms": "!a:x"}}""")]
    [InlineData("""{"room": {"not_rooms": ["#alias:x"]}}""")]
    [InlineData("""{"room": {"include_leave": "true"}}""")]
    [InlineData("""{"room": {"include_leave": 1}}""")]
    [InlineData("""{"room": {"timeline": 5}}""")]
    [InlineData("""{"room": {"timeline": {"limit": "10"}}}""")]
    [InlineData("""{"room": {"timeline": {"limit": 1.5}}}""")]
    [InlineData("""{"room": {"timeline": {"limit": -3}}}""")]
    [InlineData("""{"room": {"timeline": {"limit": true}}}""")]
    [InlineData("""{"room": {"timeline": {"senders": ["alice"]}}}""")]
    [InlineData("""{"room": {"timeline": {"contains_url": "yes"}}}""")]
    [InlineData("""{"room": {"state": {"lazy_load_members": 1}}}""")]
    [InlineData("""{"room": {"ephemeral": {"rooms": [{}]}}}""")]
    [InlineData("""{"room": {"account_data": {"unread_thread_notifications": "no"}}}""")]
    public void Wrong_types_are_M_BAD_JSON(string json) => Bad(json);

    [Fact]
    public void Error_message_names_the_field()
    {
        var e = Bad("""{"room": {"timeline": {"limit": "10"}}}""");
        Assert.Contains("room.timeline.limit", e.Message);
    }

    [Theory]
    [InlineData("0", 0)]
    [InlineData("1", 1)]
    [InlineData("50", 50)]
    [InlineData("10.0", 10)]
    [InlineData("1e2", 100)]
    [InlineData("1000", 1000)]
    [InlineData("1001", 1000)]
    [InlineData("99999999999999999999999", 1000)]
    public void Limit_is_a_positive_integer_clamped_to_max(string limit, int expected)
    {
        var f = P("""{"room": {"timeline": {"limit": """ + limit + """}}, "presence": {"limit": """ + limit + "}}");
        Assert.Equal(expected, f.Room.Timeline.Limit);
        Assert.Equal(expected, f.Presence.Limit);
    }

    [Fact]
    public void Limit_from_in_code_json_values()
    {
        var json = new JsonObject { ["room"] = new JsonObject { ["timeline"] = new JsonObject { ["limit"] = 7L } } };
        Assert.Equal(7, Filter.Parse(json).Room.Timeline.Limit);
        json = new JsonObject { ["room"] = new JsonObject { ["timeline"] = new JsonObject { ["limit"] = 20.0 } } };
        Assert.Equal(20, Filter.Parse(json).Room.Timeline.Limit);
    }

    [Theory]
    [InlineData("m.room.*", "m.room.message", true)]
    [InlineData("m.room.*", "m.room.", true)]
    [InlineData("m.room.*", "m.room", false)]
    [InlineData("m.room.*", "m.roomx.message", false)]
    [InlineData("*", "", true)]
    [InlineData("*", "anything", true)]
    [InlineData("m.*.message", "m.room.message", true)]
    [InlineData("m.*.message", "m.room.foo.message", true)]
    [InlineData("m.*.message", "m.room.messages", false)]
    [InlineData("*.typing", "m.typing", true)]
    [InlineData("*a*b*", "xxaxxbxx", true)]
    [InlineData("*a*b*", "xxbxxaxx", false)]
    [InlineData("m.room.message", "m.room.message", true)]
    [InlineData("m.room.message", "M.room.message", false)]
    [InlineData("m.room.message", "m.room.messag", false)]
    [InlineData("m.room.?", "m.room.x", false)]
    [InlineData("m.room.?", "m.room.?", true)]
    [InlineData("**", "m.x", true)]
    [InlineData("", "", true)]
    [InlineData("", "m", false)]
    public void Type_wildcards(string pattern, string type, bool expected)
    {
        var filter = new EventFilter { Types = [pattern] };
        Assert.Equal(expected, filter.Matches(type, "@a:x"));
        // The same pattern excludes exactly what it would include.
        var not = new RoomEventFilter { NotTypes = [pattern] };
        Assert.Equal(!expected, not.Matches(type, "@a:x", "!r:x"));
    }

    [Fact]
    public void Not_types_and_not_senders_take_precedence()
    {
        var f = P("""
            {"room": {"timeline": {"types": ["m.room.*"], "not_types": ["m.room.member"],
                                   "senders": ["@a:x", "@b:x"], "not_senders": ["@b:x"]}}}
            """).Room.Timeline;
        Assert.True(f.Matches("m.room.message", "@a:x"));
        Assert.False(f.Matches("m.room.member", "@a:x"));
        Assert.False(f.Matches("m.room.message", "@b:x"));
        Assert.False(f.Matches("m.room.message", "@c:x"));
        Assert.False(f.Matches("m.reaction", "@a:x"));
    }

    [Fact]
    public void Not_types_star_excludes_everything()
    {
        var f = P("""{"presence": {"types": ["m.presence"], "not_types": ["*"]}}""").Presence;
        Assert.False(f.Matches("m.presence", "@a:x"));
    }

    [Fact]
    public void Empty_lists_include_nothing()
    {
        var f = P("""{"presence": {"types": []}, "account_data": {"senders": []}, "room": {"rooms": []}}""");
        Assert.False(f.Presence.Matches("m.presence", "@a:x"));
        Assert.False(f.AccountData.Matches("m.direct", "@a:x"));
        Assert.False(f.Room.IncludesRoom("!a:x"));
        Assert.True(P("""{"presence": {"not_types": []}}""").Presence.Matches("m.presence", "@a:x"));
    }

    [Fact]
    public void Room_filter_rooms_and_not_rooms()
    {
        var room = P("""{"room": {"rooms": ["!a:x", "!b:x"], "not_rooms": ["!b:x"]}}""").Room;
        Assert.True(room.IncludesRoom("!a:x"));
        Assert.False(room.IncludesRoom("!b:x"));
        Assert.False(room.IncludesRoom("!c:x"));

        var onlyNot = P("""{"room": {"not_rooms": ["!b:x"]}}""").Room;
        Assert.True(onlyNot.IncludesRoom("!a:x"));
        Assert.False(onlyNot.IncludesRoom("!b:x"));
    }

    [Fact]
    public void Room_event_filter_rooms_and_contains_url()
    {
        var t = P("""{"room": {"timeline": {"rooms": ["!a:x", "!b:x"], "not_rooms": ["!b:x"], "contains_url": true}}}""")
            .Room.Timeline;
        Assert.True(t.Matches("m.room.message", "@u:x", "!a:x", hasUrl: true));
        Assert.False(t.Matches("m.room.message", "@u:x", "!a:x", hasUrl: false));
        Assert.False(t.Matches("m.room.message", "@u:x", "!b:x", hasUrl: true));
        Assert.False(t.Matches("m.room.message", "@u:x", "!c:x", hasUrl: true));
        // Unknown room / unknown url presence: those checks are skipped.
        Assert.True(t.Matches("m.room.message", "@u:x"));

        var noUrl = new RoomEventFilter { ContainsUrl = false };
        Assert.True(noUrl.Matches("m.room.message", "@u:x", "!a:x", hasUrl: false));
        Assert.False(noUrl.Matches("m.room.message", "@u:x", "!a:x", hasUrl: true));

        // EventFilter ignores room and url arguments.
        Assert.True(new EventFilter { Types = ["m.presence"] }.Matches("m.presence", "@u:x", "!zzz:x", hasUrl: true));
    }

    [Fact]
    public void Room_event_filter_matches_event_objects()
    {
        var t = new RoomEventFilter { Types = ["m.room.message"], Rooms = ["!a:x"], ContainsUrl = true };
        var ev = JsonNode.Parse("""
            {"type": "m.room.message", "sender": "@u:x", "room_id": "!a:x",
             "content": {"msgtype": "m.image", "url": "mxc://x/y"}}
            """)!.AsObject();
        Assert.True(t.Matches(ev));
        ev["content"]!.AsObject().Remove("url");
        Assert.False(t.Matches(ev));
        ev["content"]!["url"] = "mxc://x/z";
        ev["room_id"] = "!b:x";
        Assert.False(t.Matches(ev));
    }

    [Fact]
    public void ToJson_is_normalized_and_round_trips()
    {
        var f = P("""
            {"event_format": "client", "unknown": 1,
             "room": {"timeline": {"limit": 5000, "lazy_load_members": false, "types": ["m.*"]},
                      "state": {"lazy_load_members": true, "contains_url": false},
                      "not_rooms": ["!a:x"], "include_leave": true},
             "presence": {"not_types": ["*"]}, "account_data": {}}
            """);
        var json = f.ToJson();
        Assert.Equal(
            """{"presence":{"not_types":["*"]},"room":{"not_rooms":["!a:x"],"include_leave":true,"timeline":{"limit":1000,"types":["m.*"]},"state":{"contains_url":false,"lazy_load_members":true}}}""",
            json.ToJsonString());
        Assert.Equal(json.ToJsonString(), Filter.Parse(json).ToJson().ToJsonString());
    }

    [Fact]
    public void Original_keeps_the_submitted_json()
    {
        var input = JsonNode.Parse("""{"room": {"timeline": {"limit": 5000}}, "org.example.custom": true}""")!.AsObject();
        var f = Filter.Parse(input);
        input["mutated"] = 1; // the stored copy is independent of the caller's object
        Assert.Equal("""{"room":{"timeline":{"limit":5000}},"org.example.custom":true}""", f.Original!.ToJsonString());
        Assert.Null(new Filter().Original);
    }

    [Fact]
    public void ParseText_errors()
    {
        Assert.Equal("M_NOT_JSON", Assert.Throws<MatrixException>(() => Filter.ParseText("{nope")).ErrCode);
        Assert.Equal("M_BAD_JSON", Assert.Throws<MatrixException>(() => Filter.ParseText("[1]")).ErrCode);
        Assert.Equal(4, Filter.ParseText("""{"room":{"timeline":{"limit":4}}}""").Room.Timeline.Limit);
    }
}

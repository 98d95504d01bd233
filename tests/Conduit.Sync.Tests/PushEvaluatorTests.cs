using System.Text.Json.Nodes;
using Conduit.Common.Storage;
using Conduit.Sync.Push;
using Conduit.Sync.PushRules;

namespace Conduit.Sync.Tests;

/// <summary>Push rule evaluation (spec: client-server-api, "Push Rules": conditions, predefined rules, actions).</summary>
public sealed class PushEvaluatorTests
{
    const string Me = "@me:test.local";
    const string Room = "!room:test.local";

    static PushEvent Message(string body, string msgtype = "m.text", JsonObject? extra = null, string type = "m.room.message", string sender = "@other:test.local")
    {
        var content = new JsonObject { ["msgtype"] = msgtype, ["body"] = body };
        foreach (var (k, v) in extra ?? []) content[k] = v?.DeepClone();
        return new PushEvent(new JsonObject { ["type"] = type, ["sender"] = sender, ["room_id"] = Room, ["event_id"] = "$e", ["content"] = content });
    }

    static PushRoomContext RoomOf(long members, long senderLevel = 0) => new(members, senderLevel, new Dictionary<string, long> { ["room"] = 50 });

    static PushActions? Defaults(PushEvent e, PushRoomContext room) => PushEvaluator.Compile(DefaultPushRules.For(Me)).Evaluate(e, room, Me, () => "Me Myself");

    /// <summary>A ruleset of one override rule with the given conditions and ["notify"].</summary>
    static PushEvaluator One(params JsonObject[] conditions) => PushEvaluator.Compile(new JsonObject
    {
        ["global"] = new JsonObject
        {
            ["override"] = new JsonArray(new JsonObject
            {
                ["rule_id"] = "test", ["enabled"] = true, ["actions"] = new JsonArray("notify"),
                ["conditions"] = new JsonArray([.. conditions.Select(c => (JsonNode)c)]),
            }),
        },
    });

    static bool Matches(PushEvaluator rules, PushEvent e, long members = 5, long level = 0, string? displayName = null)
        => rules.Evaluate(e, RoomOf(members, level), Me, () => displayName) is not null;

    [Fact]
    public void Default_rules_notify_messages_highlight_mentions_and_stay_quiet_for_notices_reactions_edits_and_members()
    {
        var group = RoomOf(5);
        var dm = RoomOf(2);
        Assert.Equal(".m.rule.message", Defaults(Message("hi"), group)!.RuleId);
        Assert.False(Defaults(Message("hi"), group)!.Highlight);
        var one = Defaults(Message("hi"), dm)!;
        Assert.Equal(".m.rule.room_one_to_one", one.RuleId);
        Assert.Equal("default", one.Tweaks()["sound"]!.GetValue<string>());

        var mention = Defaults(Message("hey", extra: new JsonObject { ["m.mentions"] = new JsonObject { ["user_ids"] = new JsonArray(Me) } }), group)!;
        Assert.True(mention.Notify && mention.Highlight);
        Assert.Equal(".m.rule.is_user_mention", mention.RuleId);

        Assert.False(Defaults(Message("bot", "m.notice"), group)!.Notify);
        Assert.False(Defaults(new PushEvent(new JsonObject { ["type"] = "m.reaction", ["sender"] = "@o:t", ["content"] = new JsonObject() }), group)!.Notify);
        var edit = Message("* x", extra: new JsonObject { ["m.relates_to"] = new JsonObject { ["rel_type"] = "m.replace", ["event_id"] = "$o" } });
        Assert.False(Defaults(edit, group)!.Notify);
        var join = new PushEvent(new JsonObject { ["type"] = "m.room.member", ["state_key"] = "@o:t", ["sender"] = "@o:t", ["content"] = new JsonObject { ["membership"] = "join" } });
        Assert.False(Defaults(join, group)!.Notify);
        var invite = new PushEvent(new JsonObject { ["type"] = "m.room.member", ["state_key"] = Me, ["sender"] = "@o:t", ["content"] = new JsonObject { ["membership"] = "invite" } });
        Assert.Equal(".m.rule.invite_for_me", Defaults(invite, group)!.RuleId);
        // An unknown event type matches no default rule.
        Assert.Null(Defaults(new PushEvent(new JsonObject { ["type"] = "org.example.custom", ["sender"] = "@o:t", ["content"] = new JsonObject() }), group));
    }

    [Fact]
    public void A_room_mention_highlights_only_when_the_sender_has_the_notification_power()
    {
        var e = Message("@room hello", extra: new JsonObject { ["m.mentions"] = new JsonObject { ["room"] = true } });
        Assert.Equal(".m.rule.message", Defaults(e, RoomOf(5, senderLevel: 0))!.RuleId);
        var loud = Defaults(e, RoomOf(5, senderLevel: 50))!;
        Assert.Equal(".m.rule.is_room_mention", loud.RuleId);
        Assert.True(loud.Highlight);
        // A custom notifications level.
        var strict = new PushRoomContext(5, 50, new Dictionary<string, long> { ["room"] = 100 });
        Assert.Equal(".m.rule.message", PushEvaluator.Compile(DefaultPushRules.For(Me)).Evaluate(e, strict, Me, () => null)!.RuleId);
    }

    [Theory]
    [InlineData("content.topic", "lunc?*", "Lunch plans", true)]
    [InlineData("content.topic", "lunc?*", "LUNCH", true)]
    [InlineData("content.topic", "lunc?*", " lunch", false)]
    [InlineData("content.topic", "lunc?*", "lunc", false)]
    [InlineData("content.topic", "m.notice", "M.NOTICE", true)]
    [InlineData("content.topic", "m.notice", "m_notice", false)]
    [InlineData("content.body", "ex*ple", "An example event.", true)]
    [InlineData("content.body", "ex*ple", "exple", true)]
    [InlineData("content.body", "ex*ple", "An exciting triple-whammy", true)]
    [InlineData("content.body", "cake", "I like cake!", true)]
    [InlineData("content.body", "cake", "I like cakes", false)]
    [InlineData("content.body", "cake", "pancake", false)]
    [InlineData("content.body", "cake", "CAKE_", false)]
    [InlineData("content.body", "cake", "a pancake and a CAKE", true)]
    public void Event_match_is_a_case_insensitive_glob_of_the_whole_value_or_of_words_in_the_body(string key, string pattern, string value, bool match)
    {
        var parts = key.Split('.');
        var e = new PushEvent(new JsonObject { ["type"] = "t", ["content"] = new JsonObject { [parts[1]] = value } });
        Assert.Equal(match, Matches(One(new JsonObject { ["kind"] = "event_match", ["key"] = key, ["pattern"] = pattern }), e));
    }

    [Fact]
    public void Event_match_needs_a_string_value_even_for_a_star()
    {
        var rules = One(new JsonObject { ["kind"] = "event_match", ["key"] = "content.n", ["pattern"] = "*" });
        Assert.False(Matches(rules, new PushEvent(new JsonObject { ["content"] = new JsonObject { ["n"] = 1 } })));
        Assert.False(Matches(rules, new PushEvent(new JsonObject { ["content"] = new JsonObject() })));
        Assert.True(Matches(rules, new PushEvent(new JsonObject { ["content"] = new JsonObject { ["n"] = "" } })));
    }

    [Fact]
    public void Property_paths_take_escaped_dots_literally()
    {
        Assert.Equal(["content", "m.relates_to", "rel_type"], PushEvent.SplitPath(@"content.m\.relates_to.rel_type"));
        Assert.Equal(["a\\b", "c"], PushEvent.SplitPath(@"a\\b.c"));
        var e = new PushEvent(new JsonObject { ["content"] = new JsonObject { ["m.federate"] = true, ["m"] = new JsonObject { ["federate"] = false } } });
        Assert.True(Matches(One(new JsonObject { ["kind"] = "event_property_is", ["key"] = @"content.m\.federate", ["value"] = true }), e));
        Assert.True(Matches(One(new JsonObject { ["kind"] = "event_property_is", ["key"] = "content.m.federate", ["value"] = false }), e));
    }

    [Fact]
    public void Event_property_is_and_contains_compare_exact_scalars_without_casting()
    {
        var e = new PushEvent(new JsonObject
        {
            ["content"] = new JsonObject
            {
                ["flag"] = true, ["n"] = 5, ["s"] = "true", ["nothing"] = null,
                ["list"] = new JsonArray("#a:x", 3, null, new JsonObject()),
            },
        });
        JsonObject Is(string key, JsonNode? value) => new() { ["kind"] = "event_property_is", ["key"] = key, ["value"] = value };
        JsonObject Has(string key, JsonNode? value) => new() { ["kind"] = "event_property_contains", ["key"] = key, ["value"] = value };
        Assert.True(Matches(One(Is("content.flag", true)), e));
        Assert.False(Matches(One(Is("content.s", true)), e));
        Assert.False(Matches(One(Is("content.flag", "true")), e));
        Assert.True(Matches(One(Is("content.n", 5)), e));
        Assert.False(Matches(One(Is("content.n", 6)), e));
        Assert.True(Matches(One(Is("content.nothing", null)), e));
        Assert.False(Matches(One(Is("content.absent", null)), e));
        Assert.False(Matches(One(Is("content.list", null)), e));
        Assert.True(Matches(One(Has("content.list", "#a:x")), e));
        Assert.True(Matches(One(Has("content.list", 3)), e));
        Assert.True(Matches(One(Has("content.list", null)), e));
        Assert.False(Matches(One(Has("content.list", ":x")), e));
        Assert.False(Matches(One(Has("content.s", "true")), e));
    }

    [Theory]
    [InlineData("2", 2, true)]
    [InlineData("==2", 3, false)]
    [InlineData("<10", 9, true)]
    [InlineData("<10", 10, false)]
    [InlineData("<=10", 10, true)]
    [InlineData(">2", 3, true)]
    [InlineData(">=3", 2, false)]
    [InlineData("x", 2, false)]
    [InlineData("", 0, false)]
    public void Room_member_count_compares_with_its_prefix(string spec, long members, bool match)
        => Assert.Equal(match, Matches(One(new JsonObject { ["kind"] = "room_member_count", ["is"] = spec }), Message("x"), members));

    [Fact]
    public void Contains_display_name_matches_the_name_as_a_word_of_the_body()
    {
        var rules = One(new JsonObject { ["kind"] = "contains_display_name" });
        Assert.True(Matches(rules, Message("hello Me Myself!"), displayName: "Me Myself"));
        Assert.True(Matches(rules, Message("ME MYSELF"), displayName: "Me Myself"));
        Assert.False(Matches(rules, Message("Me Myselfish"), displayName: "Me Myself"));
        Assert.False(Matches(rules, Message("hello"), displayName: null));
        // A name with glob characters is a literal.
        Assert.False(Matches(rules, Message("abc"), displayName: "a*"));
        Assert.True(Matches(rules, Message("hi a*"), displayName: "a*"));
    }

    [Fact]
    public void Disabled_rules_unknown_conditions_and_malformed_rules_never_match_and_historical_actions_are_dropped()
    {
        var ruleset = new JsonObject
        {
            ["global"] = new JsonObject
            {
                ["override"] = new JsonArray(
                    new JsonObject { ["rule_id"] = "off", ["enabled"] = false, ["conditions"] = new JsonArray(), ["actions"] = new JsonArray("notify") },
                    new JsonObject { ["rule_id"] = "future", ["enabled"] = true, ["conditions"] = new JsonArray(new JsonObject { ["kind"] = "org.example.future" }), ["actions"] = new JsonArray("notify") },
                    new JsonObject { ["rule_id"] = "broken", ["enabled"] = true, ["conditions"] = "nope", ["actions"] = new JsonArray("notify") }),
                ["content"] = new JsonArray(new JsonObject { ["rule_id"] = "cake", ["enabled"] = true, ["pattern"] = "cake", ["actions"] = new JsonArray("notify", "coalesce") }),
                ["room"] = new JsonArray(new JsonObject { ["rule_id"] = Room, ["enabled"] = true, ["actions"] = new JsonArray("dont_notify") }),
                ["sender"] = new JsonArray(new JsonObject { ["rule_id"] = "@boss:test.local", ["enabled"] = true, ["actions"] = new JsonArray("notify", new JsonObject { ["set_tweak"] = "highlight", ["value"] = false }) }),
            },
        };
        var rules = PushEvaluator.Compile(ruleset);
        var cake = rules.Evaluate(Message("cake time"), RoomOf(3), Me, () => null)!;
        Assert.Equal("cake", cake.RuleId);
        Assert.Equal(["notify"], cake.Actions.Select(a => a!.GetValue<string>()));
        var room = rules.Evaluate(Message("hello"), RoomOf(3), Me, () => null)!;
        Assert.Equal(Room, room.RuleId);
        Assert.False(room.Notify);
        Assert.Empty(room.Actions);
        var otherRoom = new PushEvent(new JsonObject { ["type"] = "m.room.message", ["room_id"] = "!else:x", ["sender"] = "@boss:test.local", ["content"] = new JsonObject { ["body"] = "x" } });
        var boss = rules.Evaluate(otherRoom, RoomOf(3), Me, () => null)!;
        Assert.Equal("@boss:test.local", boss.RuleId);
        Assert.False(boss.Highlight);
    }

    [Fact]
    public void Glob_patterns_with_wildcards_stay_fast_on_hostile_input()
    {
        var rules = One(new JsonObject { ["kind"] = "event_match", ["key"] = "content.body", ["pattern"] = "*a*a*a*a*a*a*a*a*a*a*a*a*b" });
        var started = System.Diagnostics.Stopwatch.StartNew();
        Assert.False(Matches(rules, Message(new string('a', 20_000))));
        // Non-backtracking: linear, not exponential (a backtracking engine takes far longer than a minute here).
        Assert.True(started.Elapsed < TimeSpan.FromSeconds(30));
    }
}

/// <summary>Unread counts from notifying events and read positions (spec: "Receiving notifications", threaded receipts).</summary>
public sealed class PushStoreTests : IDisposable
{
    const string Room = "!r:test.local";
    const string Bob = "@bob:test.local";

    readonly IKeyValueStore _kv = KvStore.Open("memory", "", SyncFamilies.All);
    readonly ReceiptStore _receipts;
    readonly PushStore _push;

    public PushStoreTests()
    {
        _receipts = new ReceiptStore(_kv);
        _push = new PushStore(_kv, _receipts);
    }

    public void Dispose() => _kv.Dispose();

    void Notify(long pos, string thread = "main", bool highlight = false)
    {
        using var b = _kv.CreateBatch();
        PushStore.AddUnread(b, Bob, Room, pos, thread, highlight);
        _kv.Write(b);
    }

    [Fact]
    public void Counts_split_by_thread_and_each_read_position_clears_its_part()
    {
        Notify(10);
        Notify(11, "$root", highlight: true);
        Notify(12);
        Notify(13, "$root");
        var c = _push.Counts(Bob, Room);
        Assert.Equal((4, 1), (c.Notifications, c.Highlights));
        Assert.Equal((2, 0), (c.MainNotifications, c.MainHighlights));
        Assert.Equal((2L, 1L), c.Threads["$root"]);

        // A threaded receipt in the thread reads only the thread up to there.
        _receipts.Put(Room, Bob, "m.read", "$root", "$e11", 11, 1);
        c = _push.Counts(Bob, Room);
        Assert.Equal((3, 0), (c.Notifications, c.Highlights));
        Assert.Equal(1L, c.Threads["$root"].Notifications);
        // The main timeline's receipt reads main only.
        _receipts.Put(Room, Bob, "m.read.private", "main", "$e12", 12, 2);
        Assert.Equal(1, _push.Counts(Bob, Room).Notifications);
        // The user's own event in the thread reads it.
        using (var b = _kv.CreateBatch())
        {
            PushStore.SetImplicitRead(b, Bob, Room, "$root", 14);
            _kv.Write(b);
        }
        Assert.Same(UnreadCounts.None, _push.Counts(Bob, Room));
        Assert.True(_push.HasRead(Bob, Room, "$root", 13));
        Assert.False(_push.HasRead(Bob, Room, "main", 15));
    }

    [Fact]
    public void An_unthreaded_receipt_reads_every_thread_and_the_badge_counts_rooms()
    {
        Notify(10);
        Notify(11, "$root");
        using (var b = _kv.CreateBatch())
        {
            PushStore.AddUnread(b, Bob, "!other:test.local", 5, "main", false);
            _kv.Write(b);
        }
        Assert.Equal(2, _push.RoomsWithUnread(Bob));
        _receipts.Put(Room, Bob, "m.read", "", "$e11", 11, 1);
        _push.ForgetReadUpTo(Bob, Room, 11);
        Assert.Equal(0, _push.Counts(Bob, Room).Notifications);
        Assert.Equal(1, _push.RoomsWithUnread(Bob));
        Notify(12);
        Assert.Equal(1, _push.Counts(Bob, Room).Notifications);
    }
}

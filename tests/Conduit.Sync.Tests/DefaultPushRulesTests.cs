using System.Text.Json.Nodes;
using Conduit.Sync.PushRules;

namespace Conduit.Sync.Tests;

public class DefaultPushRulesTests
{
    private const string User = "@alice:example.com";

    private static JsonObject Global => DefaultPushRules.For(User)["global"]!.AsObject();

    private static JsonObject RuleById(string kind, string id) =>
        Global[kind]!.AsArray().OfType<JsonObject>().Single(r => (string?)r["rule_id"] == id);

    private static string[] Ids(string kind) =>
        Global[kind]!.AsArray().Select(r => (string)r!["rule_id"]!).ToArray();

    [Fact]
    public void Ruleset_shape()
    {
        var root = DefaultPushRules.For(User);
        Assert.Equal(["global"], root.Select(p => p.Key));
        Assert.Equal(["override", "content", "room", "sender", "underride"], Global.Select(p => p.Key));
        // v1.17 removed the body-matching defaults; v1.19 defines no default content rules.
        Assert.Empty(Global["content"]!.AsArray());
        Assert.Empty(Global["room"]!.AsArray());
        Assert.Empty(Global["sender"]!.AsArray());
    }

    [Fact]
    public void Override_rules_in_spec_order()
    {
        Assert.Equal(
            [
                ".m.rule.master", ".m.rule.suppress_notices", ".m.rule.invite_for_me", ".m.rule.member_event",
                ".m.rule.is_user_mention", ".m.rule.is_room_mention", ".m.rule.tombstone", ".m.rule.reaction",
                ".m.rule.room.server_acl", ".m.rule.suppress_edits",
            ],
            Ids("override"));
    }

    [Fact]
    public void Underride_rules_in_spec_order()
    {
        Assert.Equal(
            [".m.rule.call", ".m.rule.encrypted_room_one_to_one", ".m.rule.room_one_to_one", ".m.rule.message", ".m.rule.encrypted"],
            Ids("underride"));
    }

    [Fact]
    public void Master_rule_is_disabled_and_empty()
    {
        Assert.Equal(
            """{"rule_id":".m.rule.master","default":true,"enabled":false,"conditions":[],"actions":[]}""",
            RuleById("override", ".m.rule.master").ToJsonString());
    }

    [Fact]
    public void Every_rule_is_default_enabled_except_master()
    {
        foreach (var kind in new[] { "override", "content", "room", "sender", "underride" })
        {
            foreach (var rule in Global[kind]!.AsArray().OfType<JsonObject>())
            {
                string id = (string)rule["rule_id"]!;
                Assert.StartsWith(".m.rule.", id);
                Assert.True((bool)rule["default"]!, id);
                Assert.Equal(id != ".m.rule.master", (bool)rule["enabled"]!);
                Assert.IsType<JsonArray>(rule["conditions"], exactMatch: false);
                Assert.IsType<JsonArray>(rule["actions"], exactMatch: false);
            }
        }
        Assert.Equal(15, Ids("override").Length + Ids("underride").Length);
    }

    [Fact]
    public void Invite_for_me_uses_the_user_id()
    {
        Assert.Equal(
            """{"rule_id":".m.rule.invite_for_me","default":true,"enabled":true,"conditions":[""" +
            """{"kind":"event_match","key":"type","pattern":"m.room.member"},""" +
            """{"kind":"event_match","key":"content.membership","pattern":"invite"},""" +
            """{"kind":"event_match","key":"state_key","pattern":"@alice:example.com"}],"actions":""" +
            """["notify",{"set_tweak":"sound","value":"default"}]}""",
            RuleById("override", ".m.rule.invite_for_me").ToJsonString());

        var bob = DefaultPushRules.For("@bob:other.org");
        Assert.Equal("@bob:other.org", (string?)bob["global"]!["override"]![2]!["conditions"]![2]!["pattern"]);
        Assert.Equal("@bob:other.org", (string?)bob["global"]!["override"]![4]!["conditions"]![0]!["value"]);
    }

    [Fact]
    public void Mention_rules()
    {
        Assert.Equal(
            """{"rule_id":".m.rule.is_user_mention","default":true,"enabled":true,"conditions":[""" +
            """{"kind":"event_property_contains","key":"content.m\\.mentions.user_ids","value":"@alice:example.com"}],"actions":""" +
            """["notify",{"set_tweak":"sound","value":"default"},{"set_tweak":"highlight"}]}""",
            RuleById("override", ".m.rule.is_user_mention").ToJsonString());
        Assert.Equal(
            """{"rule_id":".m.rule.is_room_mention","default":true,"enabled":true,"conditions":[""" +
            """{"kind":"event_property_is","key":"content.m\\.mentions.room","value":true},""" +
            """{"kind":"sender_notification_permission","key":"room"}],"actions":""" +
            """["notify",{"set_tweak":"highlight"}]}""",
            RuleById("override", ".m.rule.is_room_mention").ToJsonString());
    }

    [Fact]
    public void Other_override_rules()
    {
        Assert.Equal(
            """[{"kind":"event_match","key":"content.msgtype","pattern":"m.notice"}]""",
            RuleById("override", ".m.rule.suppress_notices")["conditions"]!.ToJsonString());
        Assert.Equal(
            """{"rule_id":".m.rule.tombstone","default":true,"enabled":true,"conditions":[""" +
            """{"kind":"event_match","key":"type","pattern":"m.room.tombstone"},""" +
            """{"kind":"event_match","key":"state_key","pattern":""}],"actions":""" +
            """["notify",{"set_tweak":"highlight"}]}""",
            RuleById("override", ".m.rule.tombstone").ToJsonString());
        Assert.Equal(
            """[{"kind":"event_property_is","key":"content.m\\.relates_to.rel_type","value":"m.replace"}]""",
            RuleById("override", ".m.rule.suppress_edits")["conditions"]!.ToJsonString());
        Assert.Equal(
            """[{"kind":"event_match","key":"type","pattern":"m.room.server_acl"},{"kind":"event_match","key":"state_key","pattern":""}]""",
            RuleById("override", ".m.rule.room.server_acl")["conditions"]!.ToJsonString());
        foreach (var silent in new[] { ".m.rule.suppress_notices", ".m.rule.member_event", ".m.rule.reaction", ".m.rule.room.server_acl", ".m.rule.suppress_edits" })
        {
            Assert.Equal("[]", RuleById("override", silent)["actions"]!.ToJsonString());
        }
    }

    [Fact]
    public void Underride_rule_definitions()
    {
        Assert.Equal(
            """{"rule_id":".m.rule.call","default":true,"enabled":true,"conditions":[""" +
            """{"kind":"event_match","key":"type","pattern":"m.call.invite"}],"actions":""" +
            """["notify",{"set_tweak":"sound","value":"ring"}]}""",
            RuleById("underride", ".m.rule.call").ToJsonString());
        Assert.Equal(
            """{"rule_id":".m.rule.encrypted_room_one_to_one","default":true,"enabled":true,"conditions":[""" +
            """{"kind":"room_member_count","is":"2"},{"kind":"event_match","key":"type","pattern":"m.room.encrypted"}],"actions":""" +
            """["notify",{"set_tweak":"sound","value":"default"}]}""",
            RuleById("underride", ".m.rule.encrypted_room_one_to_one").ToJsonString());
        Assert.Equal(
            """[{"kind":"room_member_count","is":"2"},{"kind":"event_match","key":"type","pattern":"m.room.message"}]""",
            RuleById("underride", ".m.rule.room_one_to_one")["conditions"]!.ToJsonString());
        Assert.Equal("""["notify"]""", RuleById("underride", ".m.rule.message")["actions"]!.ToJsonString());
        Assert.Equal("""["notify"]""", RuleById("underride", ".m.rule.encrypted")["actions"]!.ToJsonString());
    }

    [Fact]
    public void For_returns_independent_copies()
    {
        var a = DefaultPushRules.For(User);
        a["global"]!["override"]!.AsArray().Clear();
        Assert.Equal(10, DefaultPushRules.For(User)["global"]!["override"]!.AsArray().Count);
    }

    [Fact]
    public void Select_paths()
    {
        var rules = DefaultPushRules.For(User);

        Assert.Equal(rules.ToJsonString(), DefaultPushRules.Select(rules, [])!.ToJsonString());
        Assert.Equal(rules["global"]!.ToJsonString(), DefaultPushRules.Select(rules, ["global"])!.ToJsonString());
        Assert.Equal(rules["global"]!.ToJsonString(), DefaultPushRules.Select(rules, ["global", ""])!.ToJsonString());
        Assert.Equal(5, DefaultPushRules.Select(rules, ["global", "underride"])!.AsArray().Count);
        Assert.Equal("[]", DefaultPushRules.Select(rules, ["global", "content"])!.ToJsonString());

        var master = DefaultPushRules.Select(rules, ["global", "override", ".m.rule.master"])!;
        Assert.Equal(
            """{"rule_id":".m.rule.master","default":true,"enabled":false,"conditions":[],"actions":[]}""",
            master.ToJsonString());
        Assert.Equal("""{"enabled":false}""",
            DefaultPushRules.Select(rules, ["global", "override", ".m.rule.master", "enabled"])!.ToJsonString());
        Assert.Equal("""{"enabled":true}""",
            DefaultPushRules.Select(rules, ["global", "underride", ".m.rule.message", "enabled"])!.ToJsonString());
        Assert.Equal("""{"actions":["notify",{"set_tweak":"sound","value":"ring"}]}""",
            DefaultPushRules.Select(rules, ["global", "underride", ".m.rule.call", "actions"])!.ToJsonString());

        // The result is a copy: it can be put into a response and mutating it leaves the ruleset alone.
        _ = new JsonObject { ["rule"] = master };
        master["enabled"] = true;
        Assert.False((bool)rules["global"]!["override"]![0]!["enabled"]!);
    }

    [Theory]
    [InlineData("device")]
    [InlineData("global/overrides")]
    [InlineData("global/override/.m.rule.nope")]
    [InlineData("global/underride/.m.rule.master")]
    [InlineData("global/override/.m.rule.master/conditions")]
    [InlineData("global/override/.m.rule.master/enabled/x")]
    [InlineData("global/content/.m.rule.contains_user_name")]
    public void Select_unknown_paths_are_null(string path)
    {
        Assert.Null(DefaultPushRules.Select(DefaultPushRules.For(User), path.Split('/')));
    }
}

using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Sync.PushRules;

namespace Conduit.Sync.Tests;

public sealed class PushRuleEditorTests
{
    const string User = "@alice:example.org";
    readonly JsonObject _rules = DefaultPushRules.For(User);

    List<string> Ids(string kind) => _rules["global"]![kind]!.AsArray().Select(r => r!["rule_id"]!.GetValue<string>()).ToList();

    static JsonObject Notify(string? pattern = null)
    {
        var o = new JsonObject { ["actions"] = new JsonArray("notify") };
        if (pattern is not null) o["pattern"] = pattern;
        return o;
    }

    [Fact]
    public void A_new_override_rule_goes_right_after_the_master_rule()
    {
        PushRuleEditor.Put(_rules, "override", "mine", new JsonObject { ["actions"] = new JsonArray("notify"), ["conditions"] = new JsonArray() }, null, null);
        Assert.Equal([".m.rule.master", "mine"], Ids("override").Take(2));
        var rule = _rules["global"]!["override"]![1]!;
        Assert.False(rule["default"]!.GetValue<bool>());
        Assert.True(rule["enabled"]!.GetValue<bool>());
    }

    [Fact]
    public void Before_and_after_place_relative_to_user_rules_only()
    {
        PushRuleEditor.Put(_rules, "content", "a", Notify("a*"), null, null);
        PushRuleEditor.Put(_rules, "content", "b", Notify("b*"), null, "a");
        PushRuleEditor.Put(_rules, "content", "c", Notify("c*"), "a", null);
        Assert.Equal(["c", "a", "b"], Ids("content"));
        var e = Assert.Throws<MatrixException>(() => PushRuleEditor.Put(_rules, "override", "x", Notify(), ".m.rule.master", null));
        Assert.Equal("M_UNKNOWN", e.ErrCode);
    }

    [Fact]
    public void Default_rules_can_be_toggled_but_not_created_or_deleted()
    {
        PushRuleEditor.SetEnabled(_rules, "override", ".m.rule.master", true);
        Assert.True(DefaultPushRules.Select(_rules, ["global", "override", ".m.rule.master"])!["enabled"]!.GetValue<bool>());
        PushRuleEditor.SetActions(_rules, "underride", ".m.rule.message", new JsonArray());
        Assert.Empty(DefaultPushRules.Select(_rules, ["global", "underride", ".m.rule.message", "actions"])!["actions"]!.AsArray());
        Assert.Equal("M_INVALID_PARAM", Assert.Throws<MatrixException>(() => PushRuleEditor.Put(_rules, "override", ".m.rule.mine", Notify(), null, null)).ErrCode);
        Assert.Equal("M_INVALID_PARAM", Assert.Throws<MatrixException>(() => PushRuleEditor.Delete(_rules, "override", ".m.rule.master")).ErrCode);
        Assert.Equal("M_NOT_FOUND", Assert.Throws<MatrixException>(() => PushRuleEditor.SetEnabled(_rules, "override", "nope", true)).ErrCode);
    }

    [Fact]
    public void Rules_are_validated_by_kind()
    {
        Assert.Equal("M_MISSING_PARAM", Assert.Throws<MatrixException>(() => PushRuleEditor.Put(_rules, "content", "p", Notify(), null, null)).ErrCode);
        Assert.Equal("M_INVALID_PARAM", Assert.Throws<MatrixException>(() => PushRuleEditor.Put(_rules, "room", "not-a-room", Notify(), null, null)).ErrCode);
        Assert.Equal("M_INVALID_PARAM", Assert.Throws<MatrixException>(() => PushRuleEditor.Put(_rules, "bogus", "x", Notify(), null, null)).ErrCode);
        PushRuleEditor.Put(_rules, "room", "!r:example.org", new JsonObject { ["actions"] = new JsonArray() }, null, null);
        PushRuleEditor.Delete(_rules, "room", "!r:example.org");
        Assert.Empty(Ids("room"));
    }
}

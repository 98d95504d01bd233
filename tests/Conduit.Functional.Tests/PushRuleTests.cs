using System.Text.Json.Nodes;
using static Conduit.Functional.Tests.MatrixClient;

namespace Conduit.Functional.Tests;

public abstract class PushRuleTests(ServerFixture server)
{
    [Fact]
    public async Task Push_rule_changes_persist_and_reach_sync()
    {
        var u = await Register(server);
        var room = await u.CreateRoom();
        var since = (await u.Sync())["next_batch"]!.GetValue<string>();
        // Mute one room, as Element does, and turn the master switch on.
        (await u.Put($"{C}/pushrules/global/room/{E(room)}", new JsonObject { ["actions"] = new JsonArray() })).Ok();
        (await u.Put($"{C}/pushrules/global/override/.m.rule.master/enabled", new JsonObject { ["enabled"] = true })).Ok();
        Assert.True((await u.Get($"{C}/pushrules/global/override/.m.rule.master/enabled")).Ok().Obj["enabled"]!.GetValue<bool>());
        var roomRule = (await u.Get($"{C}/pushrules/global/room/{E(room)}")).Ok().Obj;
        Assert.Empty(roomRule["actions"]!.AsArray());
        var sync = await u.Sync(since);
        var pushRules = sync["account_data"]!["events"]!.AsArray().Single(e => e!["type"]!.GetValue<string>() == "m.push_rules")!;
        Assert.Contains(pushRules["content"]!["global"]!["room"]!.AsArray(), r => r!["rule_id"]!.GetValue<string>() == room);
        (await u.Call("DELETE", $"{C}/pushrules/global/room/{E(room)}")).Ok();
        Assert.Equal("M_NOT_FOUND", (await u.Get($"{C}/pushrules/global/room/{E(room)}")).ErrCode);
        Assert.Equal("M_INVALID_PARAM", (await u.Put($"{C}/pushrules/global/override/.m.rule.custom", new JsonObject { ["actions"] = new JsonArray() })).ErrCode);
    }

    [Theory]
    [InlineData("room", "#room:example.org")]
    [InlineData("sender", "@bob:example.org")]
    [InlineData("override", "my rule with spaces & %")]
    public async Task Rule_ids_with_reserved_characters_round_trip(string kind, string ruleId)
    {
        var u = await Register(server);
        var body = new JsonObject { ["actions"] = new JsonArray("notify") };
        if (kind == "override") body["conditions"] = new JsonArray();
        (await u.Put($"{C}/pushrules/global/{kind}/{E(ruleId)}", body)).Ok();
        var rule = (await u.Get($"{C}/pushrules/global/{kind}/{E(ruleId)}")).Ok().Obj;
        Assert.Equal(ruleId, rule["rule_id"]!.GetValue<string>());
        (await u.Put($"{C}/pushrules/global/{kind}/{E(ruleId)}/enabled", new JsonObject { ["enabled"] = false })).Ok();
        Assert.False((await u.Get($"{C}/pushrules/global/{kind}/{E(ruleId)}/enabled")).Ok().Obj["enabled"]!.GetValue<bool>());
        Assert.Contains((await u.Get($"{C}/pushrules/global/{kind}")).Ok().Body!.AsArray(), r => r!["rule_id"]!.GetValue<string>() == ruleId);
        (await u.Call("DELETE", $"{C}/pushrules/global/{kind}/{E(ruleId)}")).Ok();
        Assert.Equal("M_NOT_FOUND", (await u.Get($"{C}/pushrules/global/{kind}/{E(ruleId)}")).ErrCode);
    }

    [Fact]
    public async Task A_missing_part_an_unknown_scope_or_kind_is_refused()
    {
        var u = await Register(server);
        var actions = new JsonObject { ["actions"] = new JsonArray() };
        // PUT and DELETE need scope, kind and rule ID (Synapse: 400 M_UNRECOGNIZED).
        foreach (var path in (string[])["/pushrules/global/room", "/pushrules/global/room/", "/pushrules/global", "/pushrules/"])
        {
            var r = await u.Put(C + path, actions);
            Assert.True(r.Status == System.Net.HttpStatusCode.BadRequest, $"PUT {path}: {(int)r.Status} {r.Body?.ToJsonString()}");
        }
        Assert.Equal(System.Net.HttpStatusCode.BadRequest, (await u.Put($"{C}/pushrules/device/room/{E("!r:x")}", actions)).Status);
        Assert.Equal(System.Net.HttpStatusCode.BadRequest, (await u.Put($"{C}/pushrules/global/nonsense/x", actions)).Status);
        // An encoded slash stays inside the rule ID, which may not have one (as Synapse).
        Assert.Equal("M_INVALID_PARAM", (await u.Put($"{C}/pushrules/global/sender/{E("@a/b:x")}", actions)).ErrCode);
        // GET of what does not exist: 404.
        Assert.Equal("M_NOT_FOUND", (await u.Get($"{C}/pushrules/global/nonsense")).ErrCode);
        Assert.Equal("M_NOT_FOUND", (await u.Get($"{C}/pushrules/device/")).ErrCode);
        Assert.Equal("M_NOT_FOUND", (await u.Get($"{C}/pushrules/global/room/{E("!unknown:x")}")).ErrCode);
        Assert.Equal("M_NOT_FOUND", (await u.Get($"{C}/pushrules/global/override/.m.rule.master/nonsense")).ErrCode);
        // The whole ruleset and the global scope.
        Assert.NotNull((await u.Get($"{C}/pushrules/")).Ok().Obj["global"]);
        Assert.NotNull((await u.Get($"{C}/pushrules/global/")).Ok().Obj["override"]);
    }
}

public sealed class AllInOnePushRuleTests(AllInOneFixture f) : PushRuleTests(f), IClassFixture<AllInOneFixture>;

public sealed class SplitPushRuleTests(SplitFixture f) : PushRuleTests(f), IClassFixture<SplitFixture>;

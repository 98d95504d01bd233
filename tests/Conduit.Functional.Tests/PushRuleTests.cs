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
}

public sealed class AllInOnePushRuleTests(AllInOneFixture f) : PushRuleTests(f), IClassFixture<AllInOneFixture>;

public sealed class SplitPushRuleTests(SplitFixture f) : PushRuleTests(f), IClassFixture<SplitFixture>;

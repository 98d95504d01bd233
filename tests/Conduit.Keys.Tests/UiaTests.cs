using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Http;
using Conduit.Keys;

namespace Conduit.Keys.Tests;

public sealed class UiaTests
{
    static readonly string[][] DummyFlow = [["m.login.dummy"]];
    static readonly string[][] PasswordFlow = [["m.login.password"]];

    readonly Uia _uia = new();

    // Begin and Require, as an endpoint calls them; the owner is the client's address before login.
    Uia.Request Require(JsonObject body, string op, string? user, string[][] flows, string owner = "192.0.2.1")
    {
        var r = _uia.Begin(body, op, user);
        _uia.Require(r, owner, flows, Check);
        return r;
    }

    // Accepts dummy, and password only when it is "secret".
    static bool Check(string stage, JsonObject auth) => stage switch
    {
        "m.login.dummy" => true,
        "m.login.password" => auth["password"]?.GetValue<string>() == "secret",
        _ => false,
    };

    MatrixException Challenge(JsonObject body, string op, string? user, string[][] flows, string owner = "192.0.2.1")
        => Assert.Throws<MatrixException>(() => Require(body, op, user, flows, owner));

    [Fact]
    public void FirstCall_Is401WithFlowsAndSession()
    {
        var e = Challenge(new JsonObject(), "register", null, DummyFlow);
        Assert.Equal(401, e.Status);
        Assert.NotNull(e.Extra);
        var flows = e.Extra!["flows"]!.AsArray();
        var flow = Assert.Single(flows);
        Assert.Equal(["m.login.dummy"], flow!["stages"]!.AsArray().Select(s => s!.GetValue<string>()));
        var session = e.Extra["session"]!.GetValue<string>();
        Assert.False(string.IsNullOrEmpty(session));
        Assert.NotNull(e.Extra["params"] as JsonObject);
        Assert.False(e.Extra.ContainsKey("errcode"));
        Assert.False(e.Extra.ContainsKey("completed"));
    }

    [Fact]
    public void EachChallengeGetsADistinctSession()
    {
        var a = Challenge(new JsonObject(), "register", null, DummyFlow).Extra!["session"]!.GetValue<string>();
        var b = Challenge(new JsonObject(), "register", null, DummyFlow).Extra!["session"]!.GetValue<string>();
        Assert.NotEqual(a, b);
    }

    [Fact]
    public void CompletingDummyWithTheSession_Returns()
    {
        var session = Challenge(new JsonObject(), "register", null, DummyFlow).Extra!["session"]!.GetValue<string>();
        var body = new JsonObject { ["auth"] = new JsonObject { ["type"] = "m.login.dummy", ["session"] = session } };
        Require(body, "register", null, DummyFlow); // does not throw
    }

    [Fact]
    public async Task ACompletedSessionRetried_GetsTheFirstResultWithoutRunningTheOperationAgain()
    {
        var session = Challenge(new JsonObject(), "register", null, DummyFlow).Extra!["session"]!.GetValue<string>();
        JsonObject Body() => new() { ["auth"] = new JsonObject { ["type"] = "m.login.dummy", ["session"] = session } };
        var runs = 0;
        Task<JsonObject> Operation(JsonObject p) => Task.FromResult(new JsonObject { ["run"] = ++runs });
        var first = await _uia.Once(Require(Body(), "register", null, DummyFlow), Operation);
        var retry = Require(Body(), "register", null, DummyFlow);
        Assert.True(retry.Authenticated);
        var again = await _uia.Once(retry, Operation);
        Assert.Equal((1, 1, 1), (runs, first["run"]!.GetValue<int>(), again["run"]!.GetValue<int>()));
    }

    [Fact]
    public async Task AnOperationThatFailed_RunsAgainOnRetry()
    {
        var session = Challenge(new JsonObject(), "register", null, DummyFlow).Extra!["session"]!.GetValue<string>();
        JsonObject Body() => new() { ["auth"] = new JsonObject { ["type"] = "m.login.dummy", ["session"] = session } };
        await Assert.ThrowsAsync<MatrixException>(() => _uia.Once(Require(Body(), "register", null, DummyFlow), _ => throw Err.UserInUse()));
        var ok = await _uia.Once(Require(Body(), "register", null, DummyFlow), _ => Task.FromResult(new JsonObject { ["ok"] = true }));
        Assert.True(ok["ok"]!.GetValue<bool>());
    }

    [Fact]
    public void TheFirstRequestsParameters_AreRememberedAcrossStages()
    {
        var first = new JsonObject { ["username"] = "alice", ["password"] = "pw", ["inhibit_login"] = true };
        var session = Challenge(first, "register", null, DummyFlow).Extra!["session"]!.GetValue<string>();
        // The next stage sends only auth, and one parameter changed.
        var r = Require(new JsonObject
        {
            ["initial_device_display_name"] = "phone",
            ["auth"] = new JsonObject { ["type"] = "m.login.dummy", ["session"] = session },
        }, "register", null, DummyFlow);
        Assert.Equal("alice", r.Params["username"]!.GetValue<string>());
        Assert.True(r.Params["inhibit_login"]!.GetValue<bool>());
        Assert.Equal("phone", r.Params["initial_device_display_name"]!.GetValue<string>());
        Assert.False(r.Params.ContainsKey("auth"));
    }

    [Fact]
    public void ParametersTooLargeToRemember_AreNotButTheFlowStillWorks()
    {
        var big = new JsonObject { ["devices"] = new JsonArray(Enumerable.Range(0, 3000).Select(i => (JsonNode)$"DEVICE{i:D6}").ToArray()) };
        var session = Challenge(big, "delete_devices", "@alice:test.local", DummyFlow).Extra!["session"]!.GetValue<string>();
        var bare = Require(new JsonObject { ["auth"] = new JsonObject { ["type"] = "m.login.dummy", ["session"] = session } }, "delete_devices", "@alice:test.local", DummyFlow);
        Assert.False(bare.Params.ContainsKey("devices"));
    }

    [Fact]
    public void AFloodOfChallengesFromOneOwner_EvictsOnlyItsOwnOldestSessions()
    {
        var other = Challenge(new JsonObject(), "register", null, DummyFlow, "198.51.100.7").Extra!["session"]!.GetValue<string>();
        var flood = Enumerable.Range(0, 500).Select(_ => Challenge(new JsonObject(), "register", null, DummyFlow, "203.0.113.9").Extra!["session"]!.GetValue<string>()).ToList();
        Assert.Equal(Uia.MaxPerOwner + 1, _uia.Count);
        JsonObject Body(string s) => new() { ["auth"] = new JsonObject { ["type"] = "m.login.dummy", ["session"] = s } };
        Assert.Equal("M_UNKNOWN", Assert.Throws<MatrixException>(() => Require(Body(flood[0]), "register", null, DummyFlow)).ErrCode);
        Require(Body(flood[^1]), "register", null, DummyFlow);
        Require(Body(other), "register", null, DummyFlow);
    }

    [Fact]
    public void SessionsFromManyOwners_AreCappedOldestFirst()
    {
        var sessions = Enumerable.Range(0, Uia.MaxSessions + 50)
            .Select(i => Challenge(new JsonObject(), "register", null, DummyFlow, $"owner{i}").Extra!["session"]!.GetValue<string>()).ToList();
        Assert.Equal(Uia.MaxSessions, _uia.Count);
        JsonObject Body(string s) => new() { ["auth"] = new JsonObject { ["type"] = "m.login.dummy", ["session"] = s } };
        Assert.Throws<MatrixException>(() => Require(Body(sessions[0]), "register", null, DummyFlow));
        Require(Body(sessions[^1]), "register", null, DummyFlow);
    }

    sealed class ManualClock : TimeProvider
    {
        public DateTimeOffset Now = DateTimeOffset.UnixEpoch;
        public override DateTimeOffset GetUtcNow() => Now;
    }

    [Fact]
    public void SessionsExpireAfterAnHour()
    {
        var clock = new ManualClock();
        var uia = new Uia(clock);
        var r = uia.Begin(new JsonObject(), "register", null);
        var session = Assert.Throws<MatrixException>(() => uia.Require(r, "192.0.2.1", DummyFlow, Check)).Extra!["session"]!.GetValue<string>();
        clock.Now += TimeSpan.FromMinutes(61);
        var e = Assert.Throws<MatrixException>(() => uia.Begin(new JsonObject { ["auth"] = new JsonObject { ["session"] = session } }, "register", null));
        Assert.Equal("M_UNKNOWN", e.ErrCode);
        Assert.Equal(0, uia.Count);
    }

    [Fact]
    public void WrongPassword_Is401WithForbiddenInTheBodyAndTheSameSession()
    {
        var first = Challenge(new JsonObject(), "delete_devices", "@alice:test.local", PasswordFlow);
        var session = first.Extra!["session"]!.GetValue<string>();
        var body = new JsonObject
        {
            ["auth"] = new JsonObject { ["type"] = "m.login.password", ["password"] = "wrong", ["session"] = session },
        };
        var e = Challenge(body, "delete_devices", "@alice:test.local", PasswordFlow);
        Assert.Equal(401, e.Status);
        Assert.Equal("M_FORBIDDEN", e.Extra!["errcode"]!.GetValue<string>());
        Assert.Equal(session, e.Extra["session"]!.GetValue<string>());
        Assert.False(e.Extra.ContainsKey("completed"));

        // The right password in the same session then completes it.
        var ok = new JsonObject
        {
            ["auth"] = new JsonObject { ["type"] = "m.login.password", ["password"] = "secret", ["session"] = session },
        };
        Require(ok, "delete_devices", "@alice:test.local", PasswordFlow);
    }

    [Fact]
    public void SessionOfAnotherOperation_IsRefused()
    {
        var session = Challenge(new JsonObject(), "delete_devices", "@alice:test.local", DummyFlow).Extra!["session"]!.GetValue<string>();
        var body = new JsonObject { ["auth"] = new JsonObject { ["type"] = "m.login.dummy", ["session"] = session } };
        var e = Assert.Throws<MatrixException>(() => Require(body, "deactivate", "@alice:test.local", DummyFlow));
        Assert.Equal("M_FORBIDDEN", e.ErrCode);
        Assert.Equal(403, e.Status);
    }

    [Fact]
    public void SessionOfAnotherUser_IsRefused()
    {
        var session = Challenge(new JsonObject(), "deactivate", "@alice:test.local", DummyFlow).Extra!["session"]!.GetValue<string>();
        var body = new JsonObject { ["auth"] = new JsonObject { ["type"] = "m.login.dummy", ["session"] = session } };
        var e = Assert.Throws<MatrixException>(() => Require(body, "deactivate", "@mallory:test.local", DummyFlow));
        Assert.Equal("M_FORBIDDEN", e.ErrCode);
    }

    [Fact]
    public void UnknownSession_IsRefused()
    {
        var body = new JsonObject { ["auth"] = new JsonObject { ["type"] = "m.login.dummy", ["session"] = "no-such-session" } };
        var e = Assert.Throws<MatrixException>(() => Require(body, "register", null, DummyFlow));
        Assert.Equal("M_UNKNOWN", e.ErrCode);
    }

    [Fact]
    public void AStageNotOffered_IsForbiddenEvenIfItsCheckWouldPass()
    {
        var session = Challenge(new JsonObject(), "register", null, PasswordFlow).Extra!["session"]!.GetValue<string>();
        var body = new JsonObject { ["auth"] = new JsonObject { ["type"] = "m.login.dummy", ["session"] = session } };
        var e = Challenge(body, "register", null, PasswordFlow);
        Assert.Equal(401, e.Status);
        Assert.Equal("M_FORBIDDEN", e.Extra!["errcode"]!.GetValue<string>());
    }

    [Fact]
    public void MultiStageFlow_ReportsCompletedStagesUntilAllAreDone()
    {
        string[][] flows = [["m.login.password", "m.login.dummy"]];
        var session = Challenge(new JsonObject(), "op", "@alice:test.local", flows).Extra!["session"]!.GetValue<string>();
        var pw = new JsonObject
        {
            ["auth"] = new JsonObject { ["type"] = "m.login.password", ["password"] = "secret", ["session"] = session },
        };
        var e = Challenge(pw, "op", "@alice:test.local", flows);
        Assert.Equal(["m.login.password"], e.Extra!["completed"]!.AsArray().Select(s => s!.GetValue<string>()));
        Assert.False(e.Extra.ContainsKey("errcode"));
        var dummy = new JsonObject { ["auth"] = new JsonObject { ["type"] = "m.login.dummy", ["session"] = session } };
        Require(dummy, "op", "@alice:test.local", flows);
    }
}

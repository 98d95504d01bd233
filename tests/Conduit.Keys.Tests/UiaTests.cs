using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Keys;

namespace Conduit.Keys.Tests;

public sealed class UiaTests
{
    static readonly string[][] DummyFlow = [["m.login.dummy"]];
    static readonly string[][] PasswordFlow = [["m.login.password"]];

    readonly Uia _uia = new();

    // Accepts dummy, and password only when it is "secret".
    static bool Check(string stage, JsonObject auth) => stage switch
    {
        "m.login.dummy" => true,
        "m.login.password" => auth["password"]?.GetValue<string>() == "secret",
        _ => false,
    };

    MatrixException Challenge(JsonObject body, string op, string? user, string[][] flows)
        => Assert.Throws<MatrixException>(() => _uia.Require(body, op, user, flows, Check));

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
        _uia.Require(body, "register", null, DummyFlow, Check); // does not throw
    }

    [Fact]
    public void ACompletedSessionCannotBeReplayed()
    {
        var session = Challenge(new JsonObject(), "register", null, DummyFlow).Extra!["session"]!.GetValue<string>();
        JsonObject Body() => new() { ["auth"] = new JsonObject { ["type"] = "m.login.dummy", ["session"] = session } };
        _uia.Require(Body(), "register", null, DummyFlow, Check);
        var e = Assert.Throws<MatrixException>(() => _uia.Require(Body(), "register", null, DummyFlow, Check));
        Assert.Equal("M_UNKNOWN", e.ErrCode);
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
        _uia.Require(ok, "delete_devices", "@alice:test.local", PasswordFlow, Check);
    }

    [Fact]
    public void SessionOfAnotherOperation_IsRefused()
    {
        var session = Challenge(new JsonObject(), "delete_devices", "@alice:test.local", DummyFlow).Extra!["session"]!.GetValue<string>();
        var body = new JsonObject { ["auth"] = new JsonObject { ["type"] = "m.login.dummy", ["session"] = session } };
        var e = Assert.Throws<MatrixException>(() => _uia.Require(body, "deactivate", "@alice:test.local", DummyFlow, Check));
        Assert.Equal("M_FORBIDDEN", e.ErrCode);
        Assert.Equal(403, e.Status);
    }

    [Fact]
    public void SessionOfAnotherUser_IsRefused()
    {
        var session = Challenge(new JsonObject(), "deactivate", "@alice:test.local", DummyFlow).Extra!["session"]!.GetValue<string>();
        var body = new JsonObject { ["auth"] = new JsonObject { ["type"] = "m.login.dummy", ["session"] = session } };
        var e = Assert.Throws<MatrixException>(() => _uia.Require(body, "deactivate", "@mallory:test.local", DummyFlow, Check));
        Assert.Equal("M_FORBIDDEN", e.ErrCode);
    }

    [Fact]
    public void UnknownSession_IsRefused()
    {
        var body = new JsonObject { ["auth"] = new JsonObject { ["type"] = "m.login.dummy", ["session"] = "no-such-session" } };
        var e = Assert.Throws<MatrixException>(() => _uia.Require(body, "register", null, DummyFlow, Check));
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
        _uia.Require(dummy, "op", "@alice:test.local", flows, Check);
    }
}

using System.Net;
using System.Text.Json.Nodes;
using static Conduit.Functional.Tests.MatrixClient;

namespace Conduit.Functional.Tests;

/// <summary>
/// POST /_matrix/client/v1/login/get_token and m.login.token (spec: client-server-api, "Login"; Synapse's
/// login_via_existing_session), through the edge with the switch on, and off by default.
/// </summary>
public abstract class LoginTokenTests(ServerFixture server)
{
    public const string Config = "rate_limits = { enabled = false }\nlogin_via_existing_session = { enabled = true }";
    const string GetToken = "/_matrix/client/v1/login/get_token";

    static void Error(Response r, HttpStatusCode status, string errcode)
        => Assert.True(r.Status == status && r.ErrCode == errcode, $"expected {(int)status} {errcode}, got {(int)r.Status}: {r.Body?.ToJsonString()}");

    [Fact]
    public async Task A_signed_in_device_lets_another_device_log_in_once()
    {
        var u = await Register(server, password: "pw-for-token");
        var anon = new MatrixClient(server);
        var flows = (await anon.Call("GET", $"{C}/login", auth: false)).Ok().Obj["flows"]!.AsArray();
        Assert.Contains(flows, f => f!["type"]!.GetValue<string>() == "m.login.token" && f["get_login_token"]!.GetValue<bool>());
        Assert.True((await u.Get($"{C}/capabilities")).Ok().Obj["capabilities"]!["m.get_login_token"]!["enabled"]!.GetValue<bool>());

        // The password again first (user-interactive auth), then the token.
        var challenge = await u.Post(GetToken, new JsonObject());
        Assert.Equal(HttpStatusCode.Unauthorized, challenge.Status);
        var session = challenge.Obj["session"]!.GetValue<string>();
        var issued = (await u.Post(GetToken, new JsonObject
        {
            ["auth"] = new JsonObject { ["type"] = "m.login.password", ["identifier"] = new JsonObject { ["type"] = "m.id.user", ["user"] = u.UserId }, ["password"] = "pw-for-token", ["session"] = session },
        })).Ok().Obj;
        var token = issued["login_token"]!.GetValue<string>();
        Assert.Equal(300_000, issued["expires_in_ms"]!.GetValue<long>());

        var login = (await anon.Call("POST", $"{C}/login", new JsonObject { ["type"] = "m.login.token", ["token"] = token }, auth: false)).Ok().Obj;
        Assert.Equal(u.UserId, login["user_id"]!.GetValue<string>());
        Assert.NotEqual(u.DeviceId, login["device_id"]!.GetValue<string>());
        var second = new MatrixClient(server, login["access_token"]!.GetValue<string>());
        Assert.Equal(u.UserId, (await second.Get($"{C}/account/whoami")).Ok().Obj["user_id"]!.GetValue<string>());
        // Single use.
        Error(await anon.Call("POST", $"{C}/login", new JsonObject { ["type"] = "m.login.token", ["token"] = token }, auth: false), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        Error(await anon.Call("POST", $"{C}/login", new JsonObject { ["type"] = "m.login.token", ["token"] = "made-up" }, auth: false), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        Error(await anon.Call("POST", GetToken, new JsonObject(), auth: false), HttpStatusCode.Unauthorized, "M_MISSING_TOKEN");
    }
}

public sealed class LoginTokenAllInOneFixture : AllInOneFixture
{
    protected override string ExtraConfig => LoginTokenTests.Config;
}

public sealed class LoginTokenSplitFixture : SplitFixture
{
    protected override string ExtraConfig => LoginTokenTests.Config;
}

public sealed class AllInOneLoginTokenTests(LoginTokenAllInOneFixture f) : LoginTokenTests(f), IClassFixture<LoginTokenAllInOneFixture>;

public sealed class SplitLoginTokenTests(LoginTokenSplitFixture f) : LoginTokenTests(f), IClassFixture<LoginTokenSplitFixture>;

/// <summary>With the default config the endpoint is off and m.login.token is not offered.</summary>
public sealed class LoginTokenOffTests(AllInOneFixture server) : IClassFixture<AllInOneFixture>
{
    [Fact]
    public async Task Login_tokens_are_off_by_default()
    {
        var u = await Register(server);
        var r = await u.Post("/_matrix/client/v1/login/get_token", new JsonObject());
        Assert.True(r.Status == HttpStatusCode.NotFound && r.ErrCode == "M_UNRECOGNIZED", r.Body?.ToJsonString());
        Assert.DoesNotContain("m.login.token", (await u.Get($"{C}/login")).Ok().Obj.ToJsonString());
        Assert.False((await u.Get($"{C}/capabilities")).Ok().Obj["capabilities"]!["m.get_login_token"]!["enabled"]!.GetValue<bool>());
        var login = await u.Call("POST", $"{C}/login", new JsonObject { ["type"] = "m.login.token", ["token"] = "x" }, auth: false);
        Assert.Equal(HttpStatusCode.BadRequest, login.Status);
    }
}

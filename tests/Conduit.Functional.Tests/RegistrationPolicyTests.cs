using System.Net;
using System.Text.Json.Nodes;
using static Conduit.Functional.Tests.MatrixClient;

namespace Conduit.Functional.Tests;

public sealed class ClosedRegistrationFixture : AllInOneFixture
{
    public const string SharedSecret = "closed-but-shared";
    protected override string Registration => $"allow_registration = false\nregistration_shared_secret = \"{SharedSecret}\"";
}

public sealed class TokenRegistrationFixture : AllInOneFixture
{
    protected override string Registration => "allow_registration = true\nregistration_token = \"let-me-in\"";
}

public sealed class ClosedRegistrationTests(ClosedRegistrationFixture server) : IClassFixture<ClosedRegistrationFixture>
{
    [Fact]
    public async Task Registration_is_refused_when_closed()
    {
        var r = await new MatrixClient(server).Call("POST", C + "/register", new JsonObject { ["username"] = UniqueName("x"), ["password"] = "pw" }, auth: false);
        Assert.Equal((HttpStatusCode.Forbidden, "M_FORBIDDEN"), (r.Status, r.ErrCode));
    }

    [Fact]
    public async Task Shared_secret_registration_works_with_registration_closed()
    {
        var name = UniqueName("ssr");
        var (answer, _) = await AdminApiTests.SharedSecretRegister(server, ClosedRegistrationFixture.SharedSecret, name, "pw", admin: false);
        Assert.Equal($"@{name}:{server.ServerName}", answer.Ok().Obj["user_id"]!.GetValue<string>());
        (await PasswordLogin(server, $"@{name}:{server.ServerName}", "pw")).Ok();
    }
}

public sealed class TokenRegistrationTests(TokenRegistrationFixture server) : IClassFixture<TokenRegistrationFixture>
{
    [Fact]
    public async Task Registration_needs_the_configured_token()
    {
        var anon = new MatrixClient(server);
        var name = UniqueName("tok");
        var body = (JsonObject? auth) => new JsonObject { ["username"] = name, ["password"] = "pw", ["auth"] = auth };
        var first = await anon.Call("POST", C + "/register", body(null), auth: false);
        Assert.Equal(HttpStatusCode.Unauthorized, first.Status);
        Assert.Equal("m.login.registration_token", first.Obj["flows"]![0]!["stages"]![0]!.GetValue<string>());
        var session = first.Obj["session"]!.GetValue<string>();
        // The dummy stage is not offered when a token is required.
        var dummy = await anon.Call("POST", C + "/register", body(new JsonObject { ["type"] = "m.login.dummy", ["session"] = session }), auth: false);
        Assert.Equal(HttpStatusCode.Unauthorized, dummy.Status);
        var wrong = await anon.Call("POST", C + "/register", body(new JsonObject { ["type"] = "m.login.registration_token", ["token"] = "guess", ["session"] = session }), auth: false);
        Assert.Equal((HttpStatusCode.Unauthorized, "M_FORBIDDEN"), (wrong.Status, wrong.ErrCode));
        var ok = (await anon.Call("POST", C + "/register", body(new JsonObject { ["type"] = "m.login.registration_token", ["token"] = "let-me-in", ["session"] = session }), auth: false)).Ok();
        Assert.Equal($"@{name}:{server.ServerName}", ok.Obj["user_id"]!.GetValue<string>());
    }

    [Fact]
    public async Task Shared_secret_registration_is_not_enabled_without_the_secret()
    {
        var anon = new MatrixClient(server);
        foreach (var r in new[] { await anon.Call("GET", "/_synapse/admin/v1/register", auth: false),
                     await anon.Call("POST", "/_synapse/admin/v1/register", new JsonObject { ["nonce"] = "x" }, auth: false) })
        {
            Assert.Equal((HttpStatusCode.BadRequest, "M_UNKNOWN"), (r.Status, r.ErrCode));
            Assert.Equal("Shared secret registration is not enabled", r.Body!["error"]!.GetValue<string>());
        }
    }
}

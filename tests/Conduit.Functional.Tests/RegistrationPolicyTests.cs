using System.Net;
using System.Text.Json.Nodes;
using static Conduit.Functional.Tests.MatrixClient;

namespace Conduit.Functional.Tests;

public sealed class ClosedRegistrationFixture : AllInOneFixture
{
    protected override string Registration => "allow_registration = false";
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
}

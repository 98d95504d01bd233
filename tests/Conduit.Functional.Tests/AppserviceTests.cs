using System.Net;
using System.Text.Json.Nodes;
using static Conduit.Functional.Tests.MatrixClient;

namespace Conduit.Functional.Tests;

/// <summary>
/// Application services (spec: application-service-api): a registration file named by app_service_config_files, its
/// as_token acting as its sender or (with user_id) as a user of its namespace, registration and login with
/// m.login.application_service, and its exclusive namespace closed to ordinary registration.
/// </summary>
public abstract class AppserviceTests(ServerFixture server)
{
    public const string AsToken = "appservice_tests_as_token";
    public const string HsToken = "appservice_tests_hs_token";
    const string Id = "irc-bridge";

    /// <summary>The registration file the fixtures write into their work directory.</summary>
    public static string Registration(string? url) => $"""
        id: {Id}
        url: {(url is null ? "null" : $"\"{url}\"")}
        as_token: {AsToken}
        hs_token: {HsToken}
        sender_localpart: ircbot
        rate_limited: false
        namespaces:
          users:
            - exclusive: true
              regex: "@irc_.*:test\\.local"
          aliases: []
          rooms: []
        """;

    MatrixClient Appservice => new(server, AsToken);

    static void Error(Response r, HttpStatusCode status, string errcode)
    {
        Assert.True(r.Status == status, $"expected {(int)status}, got {(int)r.Status}: {r.Body?.ToJsonString()}");
        Assert.Equal(errcode, r.ErrCode);
    }

    Task<Response> AppserviceRegister(string username, MatrixClient? by = null, bool inhibit = false)
        => (by ?? Appservice).Post($"{C}/register", new JsonObject
        {
            ["type"] = "m.login.application_service",
            ["username"] = username,
            ["inhibit_login"] = inhibit,
        });

    Task<Response> AppserviceLogin(string user, MatrixClient by)
        => by.Post($"{C}/login", new JsonObject
        {
            ["type"] = "m.login.application_service",
            ["identifier"] = new JsonObject { ["type"] = "m.id.user", ["user"] = user },
        });

    [Fact]
    public async Task Without_user_id_the_as_token_is_the_appservices_sender()
    {
        var whoami = (await Appservice.Get($"{C}/account/whoami")).Ok().Obj;
        Assert.Equal($"@ircbot:{server.ServerName}", whoami["user_id"]!.GetValue<string>());
        // A profile like any user's: the account was made on first use.
        (await Appservice.Get($"{C}/profile/{E($"@ircbot:{server.ServerName}")}")).Ok();
    }

    [Fact]
    public async Task The_appservice_registers_logs_in_and_acts_as_users_of_its_namespace()
    {
        var name = UniqueName("irc_");
        var userId = $"@{name}:{server.ServerName}";
        var registered = (await AppserviceRegister(name)).Ok().Obj;
        Assert.Equal(userId, registered["user_id"]!.GetValue<string>());
        var device = registered["device_id"]!.GetValue<string>();
        Assert.Equal(userId, (await new MatrixClient(server, registered["access_token"]!.GetValue<string>()).Get($"{C}/account/whoami")).Ok().Obj["user_id"]!.GetValue<string>());
        Error(await AppserviceRegister(name), HttpStatusCode.BadRequest, "M_USER_IN_USE");
        Error(await AppserviceRegister(UniqueName("plain")), HttpStatusCode.BadRequest, "M_EXCLUSIVE");
        var quiet = UniqueName("irc_");
        var inhibited = (await AppserviceRegister(quiet, inhibit: true)).Ok().Obj;
        Assert.Null(inhibited["access_token"]);

        // Identity assertion: ?user_id= in its namespace and registered; the device must be the user's.
        var asUser = (await Appservice.Get($"{C}/account/whoami?user_id={E(userId)}")).Ok().Obj;
        Assert.Equal(userId, asUser["user_id"]!.GetValue<string>());
        var withDevice = (await Appservice.Get($"{C}/account/whoami?user_id={E(userId)}&org.matrix.msc3202.device_id={E(device)}")).Ok().Obj;
        Assert.Equal(device, withDevice["device_id"]!.GetValue<string>());
        Error(await Appservice.Get($"{C}/account/whoami?user_id={E(userId)}&device_id=NOTADEVICE"), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        Error(await Appservice.Get($"{C}/account/whoami?user_id={E($"@{UniqueName("irc_")}:{server.ServerName}")}"), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        var outsider = await Register(server);
        Error(await Appservice.Get($"{C}/account/whoami?user_id={E(outsider.UserId)}"), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        Error(await Appservice.Get($"{C}/account/whoami?user_id={E("@irc_x:elsewhere.example")}"), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        // An ordinary user's token ignores user_id.
        Assert.Equal(outsider.UserId, (await outsider.Get($"{C}/account/whoami?user_id={E(userId)}")).Ok().Obj["user_id"]!.GetValue<string>());
        // Answers are per user_id, never one cached for the token.
        Assert.Equal($"@ircbot:{server.ServerName}", (await Appservice.Get($"{C}/account/whoami")).Ok().Obj["user_id"]!.GetValue<string>());

        // Login without a password, as the appservice only.
        var login = (await AppserviceLogin(quiet, Appservice)).Ok().Obj;
        Assert.Equal($"@{quiet}:{server.ServerName}", login["user_id"]!.GetValue<string>());
        Error(await AppserviceLogin(outsider.UserId, Appservice), HttpStatusCode.BadRequest, "M_EXCLUSIVE");
        Error(await AppserviceLogin(quiet, new MatrixClient(server)), HttpStatusCode.Unauthorized, "M_MISSING_TOKEN");
        Error(await AppserviceLogin(quiet, outsider), HttpStatusCode.Unauthorized, "M_UNKNOWN_TOKEN");
        Error(await AppserviceRegister(UniqueName("irc_"), outsider), HttpStatusCode.Unauthorized, "M_UNKNOWN_TOKEN");
        // Its users have no password to guess.
        Assert.Equal(HttpStatusCode.Forbidden, (await PasswordLogin(server, userId, "anything")).Status);
    }

    [Fact]
    public async Task Ordinary_registration_cannot_take_a_name_in_an_exclusive_namespace()
    {
        var name = UniqueName("irc_");
        var c = new MatrixClient(server);
        Error(await c.Call("POST", $"{C}/register", new JsonObject { ["username"] = name, ["password"] = "correct horse" }, auth: false), HttpStatusCode.BadRequest, "M_EXCLUSIVE");
        Error(await c.Call("GET", $"{C}/register/available?username={name}", auth: false), HttpStatusCode.BadRequest, "M_EXCLUSIVE");
        (await c.Call("GET", $"{C}/register/available?username={UniqueName("plain")}", auth: false)).Ok();
    }
}

public sealed class AppserviceAllInOneFixture : AllInOneFixture
{
    protected override string ExtraConfig => $"rate_limits = {{ enabled = false }}\napp_service_config_files = ['{Path.Combine(Work, "appservice.yaml")}']";

    public override Task InitializeAsync()
    {
        File.WriteAllText(Path.Combine(Work, "appservice.yaml"), AppserviceTests.Registration(null));
        return base.InitializeAsync();
    }
}

public sealed class AppserviceSplitFixture : SplitFixture
{
    protected override string ExtraConfig => $"rate_limits = {{ enabled = false }}\napp_service_config_files = ['{Path.Combine(Work, "appservice.yaml")}']";

    public override Task InitializeAsync()
    {
        File.WriteAllText(Path.Combine(Work, "appservice.yaml"), AppserviceTests.Registration(null));
        return base.InitializeAsync();
    }
}

public sealed class AllInOneAppserviceTests(AppserviceAllInOneFixture f) : AppserviceTests(f), IClassFixture<AppserviceAllInOneFixture>;

public sealed class SplitAppserviceTests(AppserviceSplitFixture f) : AppserviceTests(f), IClassFixture<AppserviceSplitFixture>;

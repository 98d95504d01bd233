using System.Net;
using System.Text.Json.Nodes;
using static Conduit.Functional.Tests.AdminRoomClient;
using static Conduit.Functional.Tests.MatrixClient;

namespace Conduit.Functional.Tests;

/// <summary>
/// Application services registered at runtime from the admin room (<c>!admin appservices ...</c> and Conduit's
/// register-appservice, unregister-appservice, list-appservices): the new as_token works at once, every process sees
/// the registration (in split mode rooms learns it from keys: its exclusive alias namespace is closed to others), it
/// survives a restart, and unregistering ends it; bad or clashing registrations are refused with the reason, and a
/// config file's registration cannot be removed from the room.
/// </summary>
public abstract class RuntimeAppserviceTests(ServerFixture server, MatrixClient admin, Func<Task> restart)
{
    readonly AdminRoomClient _room = new(server);
    string Bot => _room.Bot;

    /// <summary>The config file's registration the fixtures list in app_service_config_files.</summary>
    const string FixedAsToken = "runtime_tests_fixed_as";

    public static string Config(string work)
    {
        var path = Path.Combine(work, "fixed.yaml");
        File.WriteAllText(path, $"""
            id: fixed
            url: null
            as_token: {FixedAsToken}
            hs_token: runtime_tests_fixed_hs
            sender_localpart: fixedbot
            namespaces: {"{users: [], aliases: [], rooms: []}"}
            """);
        return $"rate_limits = {{ enabled = false }}\napp_service_config_files = ['{path}']";
    }

    sealed record Registration(string Id, string AsToken, string Yaml)
    {
        public string Command(string prefix = "!admin appservices register") => $"{prefix}\n```yaml\n{Yaml}\n```";
    }

    static Registration NewRegistration(string? asToken = null, string? hsToken = null, string? id = null, string? sender = null)
    {
        id ??= UniqueName("rt");
        asToken ??= UniqueName("as_");
        return new(id, asToken, $"""
            id: {id}
            url: null
            as_token: {asToken}
            hs_token: {hsToken ?? UniqueName("hs_")}
            sender_localpart: {sender ?? id + "bot"}
            rate_limited: false
            namespaces:
              users:
                - exclusive: true
                  regex: '@{id}_.*:test\.local'
              aliases:
                - exclusive: true
                  regex: '#{id}_.*:test\.local'
            """);
    }

    async Task<string> Run(string command) => Body(await _room.Command(admin, command));

    Task<Response> WhoAmI(string token) => new MatrixClient(server, token).Get($"{C}/account/whoami");

    /// <summary>Creating an alias in the appservice's exclusive namespace as an ordinary user: the rooms service's
    /// check, so in split mode it shows what the rooms process has learnt. Polls until the answer is <paramref name="errcode"/>
    /// (null: success).</summary>
    async Task AliasAnswerBecomes(MatrixClient user, string room, Registration r, string? errcode)
    {
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (true)
        {
            var alias = $"#{r.Id}_{UniqueName("a")}:{server.ServerName}";
            var answer = await user.Put($"{C}/directory/room/{E(alias)}", new JsonObject { ["room_id"] = room });
            if (answer.ErrCode == errcode && (errcode is not null || answer.Status == HttpStatusCode.OK)) return;
            Assert.True(DateTime.UtcNow < deadline, $"creating {alias}: expected {errcode ?? "success"}, still {answer.Body?.ToJsonString()}");
            await Task.Delay(100);
        }
    }

    [Fact]
    public async Task An_appservice_registered_in_the_admin_room_works_at_once_everywhere_and_stops_when_unregistered()
    {
        var r = NewRegistration();
        Assert.Equal("M_UNKNOWN_TOKEN", (await WhoAmI(r.AsToken)).ErrCode);
        Assert.Contains($"Registered the application service `{r.Id}`", await Run(r.Command()));

        // The as_token is the sender, and registers a user of its namespace.
        Assert.Equal($"@{r.Id}bot:{server.ServerName}", (await WhoAmI(r.AsToken)).Ok().Obj["user_id"]!.GetValue<string>());
        var appservice = new MatrixClient(server, r.AsToken);
        var user = (await appservice.Post($"{C}/register", new JsonObject { ["type"] = "m.login.application_service", ["username"] = $"{r.Id}_alice" })).Ok().Obj;
        Assert.Equal($"@{r.Id}_alice:{server.ServerName}", user["user_id"]!.GetValue<string>());
        // Its exclusive namespaces hold in every process: ordinary registration (keys), aliases (rooms).
        var taken = await new MatrixClient(server).Call("GET", $"{C}/register/available?username={r.Id}_bob", auth: false);
        Assert.Equal("M_EXCLUSIVE", taken.ErrCode);
        var outsider = await Register(server);
        var room = await outsider.CreateRoom();
        await AliasAnswerBecomes(outsider, room, r, "M_EXCLUSIVE");

        // list (Conduit's name) and show: both registrations, the tokens never shown.
        var list = await Run($"{Bot}: list-appservices");
        Assert.Contains(r.Id, list);
        Assert.Contains("fixed", list);
        Assert.Contains("config file", list);
        Assert.DoesNotContain(r.AsToken, list);
        var shown = await Run($"!admin appservices show {r.Id}");
        Assert.Contains($"id: {r.Id}", shown);
        Assert.Contains(admin.UserId, shown);
        Assert.Contains("<redacted>", shown);
        Assert.DoesNotContain(r.AsToken, shown);

        // Unregistered (Conduit's name): the token stops working, the namespace opens up everywhere.
        Assert.Contains($"Unregistered the application service `{r.Id}`", await Run($"{Bot}: unregister-appservice {r.Id}"));
        Assert.Equal("M_UNKNOWN_TOKEN", (await WhoAmI(r.AsToken)).ErrCode);
        await AliasAnswerBecomes(outsider, room, r, null);
        Assert.DoesNotContain(r.Id, await Run("!admin appservices list"));
    }

    [Fact]
    public async Task Bad_registrations_and_clashes_are_refused_with_the_reason_and_a_config_files_cannot_be_removed()
    {
        Assert.Contains("code block", await Run("!admin appservices register"));
        Assert.Contains("YAML", await Run("!admin appservices register\n```yaml\nid: [unclosed\n```"));
        Assert.Contains("lacks 'as_token'", await Run("!admin appservices register\n```\nid: x\nurl: null\nhs_token: h\nsender_localpart: xbot\n```"));
        Assert.Contains("config file", await Run(NewRegistration(id: "fixed").Command()));
        Assert.Contains("'fixed'", await Run(NewRegistration(asToken: FixedAsToken).Command()));
        Assert.Contains("must differ", await Run(NewRegistration(asToken: "same_token_twice", hsToken: "same_token_twice").Command()));
        Assert.Contains("admin bot", await Run(NewRegistration(sender: "conduit").Command()));
        Assert.Contains("regular expression", await Run(NewRegistration().Command().Replace("_.*:test", "_(:test", StringComparison.Ordinal)));

        // A second runtime registration may not reuse the first's tokens; the first may be replaced by its id.
        var first = NewRegistration();
        Assert.Contains("Registered", await Run($"{Bot}: register-appservice\n```\n{first.Yaml}\n```"));
        Assert.Contains("unique", await Run(NewRegistration(asToken: first.AsToken).Command()));
        var replacement = NewRegistration(id: first.Id);
        Assert.Contains("Replaced", await Run(replacement.Command()));
        Assert.Equal("M_UNKNOWN_TOKEN", (await WhoAmI(first.AsToken)).ErrCode);
        (await WhoAmI(replacement.AsToken)).Ok();

        Assert.Contains("config file", await Run("!admin appservices unregister fixed"));
        (await WhoAmI(FixedAsToken)).Ok();
        Assert.Contains("No application service", await Run($"!admin appservices unregister {UniqueName("never")}"));

        // The admin API behind the commands is for admins only.
        var plain = await Register(server);
        Assert.Equal(HttpStatusCode.Forbidden, (await plain.Post("/_conduit/admin/v1/appservices", new JsonObject { ["registration"] = NewRegistration().Yaml })).Status);
        Assert.Equal(HttpStatusCode.Forbidden, (await plain.Get("/_conduit/admin/v1/appservices")).Status);
        var listed = (await admin.Get("/_conduit/admin/v1/appservices")).Ok().Obj["appservices"]!.AsArray();
        Assert.Contains(listed, a => a!["id"]!.GetValue<string>() == replacement.Id && a["runtime"]!.GetValue<bool>());
    }

    [Fact]
    public async Task A_registration_survives_a_restart()
    {
        var r = NewRegistration();
        Assert.Contains("Registered", await Run(r.Command()));
        await restart();
        Assert.Equal($"@{r.Id}bot:{server.ServerName}", (await WhoAmI(r.AsToken)).Ok().Obj["user_id"]!.GetValue<string>());
        // Split: the rooms process learns it from keys at its start.
        var outsider = await Register(server);
        await AliasAnswerBecomes(outsider, await outsider.CreateRoom(), r, "M_EXCLUSIVE");
        Assert.Contains(r.Id, await Run("!admin appservices list"));
    }
}

public sealed class RuntimeAppserviceAllInOneFixture : AllInOneFixture
{
    protected override string ExtraConfig => RuntimeAppserviceTests.Config(Work);
    public MatrixClient Admin { get; private set; } = null!;

    public override async Task InitializeAsync()
    {
        await base.InitializeAsync();
        Admin = await MatrixClient.Register(this, "first_admin");
    }

    /// <summary>Stops the host and starts it again on the same database (on a new port).</summary>
    public async Task RestartAsync()
    {
        await StopHostAsync();
        await StartHostAsync(0);
    }
}

public sealed class RuntimeAppserviceSplitFixture : SplitFixture
{
    protected override string ExtraConfig => RuntimeAppserviceTests.Config(Work);
    public MatrixClient Admin { get; private set; } = null!;

    public override async Task InitializeAsync()
    {
        await base.InitializeAsync();
        Admin = await MatrixClient.Register(this, "first_admin");
    }

    /// <summary>Stops every part and starts them again on the same databases (on new ports).</summary>
    public async Task RestartAsync()
    {
        await SplitDownAsync();
        var (code, err) = await SplitUpAsync("auto");
        if (code != 0) throw new InvalidOperationException($"split-up.sh failed ({code}): {err}");
    }
}

public sealed class AllInOneRuntimeAppserviceTests(RuntimeAppserviceAllInOneFixture f)
    : RuntimeAppserviceTests(f, f.Admin, f.RestartAsync), IClassFixture<RuntimeAppserviceAllInOneFixture>;

public sealed class SplitRuntimeAppserviceTests(RuntimeAppserviceSplitFixture f)
    : RuntimeAppserviceTests(f, f.Admin, f.RestartAsync), IClassFixture<RuntimeAppserviceSplitFixture>;

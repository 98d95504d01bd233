using System.Collections;
using System.Net;
using System.Net.Sockets;
using Conduit.Common.Config;
using Conduit.Common.Routing;
using Conduit.Edge;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Conduit.Functional.Tests;

/// <summary>Properties of the deployment itself: path ownership, internal ports, configuration.</summary>
public sealed class RouteOwnershipTests(AllInOneFixture server) : IClassFixture<AllInOneFixture>
{
    [Fact]
    public void Every_endpoint_is_served_by_the_service_the_route_table_routes_it_to()
    {
        var endpoints = server.Services.GetServices<EndpointDataSource>().SelectMany(s => s.Endpoints).OfType<RouteEndpoint>().ToList();
        Assert.NotEmpty(endpoints);
        var table = RouteTable.All.SelectMany(r => RouteTable.Templates(r).Select(t => (Template: t, r.Owner))).ToList();
        foreach (var e in endpoints)
        {
            var owner = e.Metadata.GetMetadata<OwnedBy>();
            Assert.True(owner is not null, $"{e.RoutePattern.RawText} is mapped without going through the route table");
            var routed = table.Where(t => t.Template == e.RoutePattern.RawText).Select(t => t.Owner).Distinct().ToList();
            Assert.True(routed.Count == 1 && routed[0] == owner!.Service,
                $"{e.RoutePattern.RawText} is served by {owner.Service} but the table routes it to {string.Join(",", routed)}");
        }
        // And the other way round: every row of the table is served by someone.
        foreach (var (template, _) in table)
            Assert.Contains(endpoints, e => e.RoutePattern.RawText == template);
    }
}

public sealed class InternalPortTests(SplitFixture server) : IClassFixture<SplitFixture>
{
    [Fact]
    public async Task A_service_port_without_the_internal_secret_is_refused()
    {
        using var http = new HttpClient();
        // The keys service's own listener, asked directly for a Matrix path with a forged caller.
        using var req = new HttpRequestMessage(HttpMethod.Get, $"{server.Addresses["keys"]}/_matrix/client/v3/account/whoami");
        req.Headers.Add("X-Conduit-User", "@admin:test.local");
        (req.Version, req.VersionPolicy) = (HttpVersion.Version20, HttpVersionPolicy.RequestVersionExact);
        using var resp = await http.SendAsync(req);
        Assert.Equal(HttpStatusCode.Forbidden, resp.StatusCode);
        Assert.Contains("M_FORBIDDEN", await resp.Content.ReadAsStringAsync());
        // With the secret the same listener answers (this is what the edge does).
        using var ok = new HttpRequestMessage(HttpMethod.Get, $"{server.Addresses["keys"]}/_matrix/client/v3/register/available?username=free");
        ok.Headers.Add("x-conduit-internal", server.Secret);
        (ok.Version, ok.VersionPolicy) = (HttpVersion.Version20, HttpVersionPolicy.RequestVersionExact);
        Assert.Equal(HttpStatusCode.OK, (await http.SendAsync(ok)).StatusCode);
    }

    [Fact]
    public void Each_part_says_its_role_and_the_internal_listener_it_opened()
    {
        foreach (var role in new[] { "keys", "rooms", "sync", "federation", "media" })
        {
            var log = server.Log(role);
            Assert.Contains($"conduit: split mode, role {role}; config: ", log);
            Assert.Contains($"{StartupReport.ListeningPrefix}{server.Addresses[role]} (internal listener", log);
            Assert.Contains("conduit: database: ", log);
        }
        var edge = server.Log("edge");
        Assert.Contains("conduit: split mode, role edge; config: ", edge);
        Assert.Contains($"{StartupReport.ListeningPrefix}{server.BaseUrl}", edge);
        Assert.Contains($"rooms {server.Addresses["rooms"]}", edge);
        // The split script's own CONDUIT_DLL is not a config key: no warning about it.
        Assert.DoesNotContain("dll", edge, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task Every_part_answers_the_healthcheck_command_of_its_role()
    {
        var port = new Uri(server.BaseUrl).Port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        foreach (var role in new[] { "edge", "keys", "rooms", "sync", "federation", "media" })
        {
            await using var check = ConduitProcess.Start(new Dictionary<string, string> { ["CONDUIT_DATABASE_PATH"] = server.DatabasePath, ["CONDUIT_PORT"] = port }, "healthcheck", "--role", role);
            Assert.True(await check.ExitCodeAsync() == 0, $"{role}: {string.Join('\n', check.Stderr)}");
        }
        // Nothing answers there: unhealthy, exit code 1.
        await using var none = ConduitProcess.Start(new Dictionary<string, string> { ["CONDUIT_DATABASE_PATH"] = Path.Combine(server.DatabasePath, "nowhere") }, "healthcheck", "--role", "keys");
        Assert.Equal(1, await none.ExitCodeAsync());
        Assert.StartsWith("conduit: unhealthy: ", Assert.Single(none.Stderr));
    }
}

/// <summary>The real executable started as a person starts it: what it says at start, and how it refuses to.</summary>
public sealed class StartupTests
{
    static string Dir() => Directory.CreateTempSubdirectory("conduit-start-").FullName;

    [Fact]
    public async Task The_startup_summary_names_the_config_server_backend_database_address_and_registration()
    {
        var dir = Dir();
        var config = Path.Combine(dir, "conduit.toml");
        File.WriteAllText(config, $"""
            [global]
            server_name = "summary.test"
            database_backend = "sqlite"
            database_path = "{Path.Combine(dir, "db")}"
            address = "127.0.0.1"
            port = 0
            allow_registration = true
            """);
        await using var p = ConduitProcess.Start(new Dictionary<string, string>
        {
            ["CONDUIT_CONFIG"] = config,
            ["CONDUIT_ALLOW_REGISTRATION"] = "false",
            ["CONDUIT_DLL"] = "/not/a/config/key.dll",
        });
        var url = await p.ListeningAsync();
        Assert.Matches(@"^http://127\.0\.0\.1:[1-9][0-9]*$", url);
        using var http = new HttpClient();
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync(url + "/_matrix/client/versions")).StatusCode);
        var lines = p.Stdout;
        Assert.Contains($"conduit: all-in-one; config: {config}, with CONDUIT_ALLOW_REGISTRATION from the environment", lines);
        Assert.Contains("conduit: server name: summary.test", lines);
        Assert.Contains($"conduit: database: sqlite at {Path.Combine(dir, "db")}", lines);
        Assert.Contains("conduit: registration: closed (allow_registration = false)", lines);
        Assert.Contains($"conduit: listening on {url}", lines);
        // Said once, and nothing else at the default log level: no warning about CONDUIT_DLL, no hosting chatter.
        Assert.Single(lines, l => l.StartsWith(StartupReport.ListeningPrefix, StringComparison.Ordinal));
        Assert.Empty(p.Stderr);
        Assert.DoesNotContain(lines, l => l.Contains("dll", StringComparison.OrdinalIgnoreCase));
    }

    [Fact]
    public async Task The_embedded_default_is_named_as_such()
    {
        var dir = Dir();
        await using var p = ConduitProcess.Start(new Dictionary<string, string>
        {
            ["CONDUIT_PORT"] = "0",
            ["CONDUIT_DATABASE_PATH"] = Path.Combine(dir, "db"),
        });
        var url = await p.ListeningAsync();
        Assert.Contains("conduit: all-in-one; config: the embedded default (CONDUIT_CONFIG is not set), with CONDUIT_DATABASE_PATH, CONDUIT_PORT from the environment", p.Stdout);
        Assert.Contains("conduit: server name: localhost", p.Stdout);
        Assert.Contains($"conduit: database: rocksdb at {Path.Combine(dir, "db")}", p.Stdout);
        Assert.Contains("conduit: registration: open to anyone who can reach the server", p.Stdout);
        Assert.Contains($"conduit: listening on {url}", p.Stdout);
    }

    [Fact]
    public async Task A_port_already_in_use_is_one_line_naming_the_address_and_exit_code_2()
    {
        // Held open for the whole test, so the port is certainly taken (nothing is chosen first and bound later).
        using var taken = new TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        var port = ((IPEndPoint)taken.LocalEndpoint).Port;
        await using var p = ConduitProcess.Start(new Dictionary<string, string>
        {
            ["CONDUIT_PORT"] = port.ToString(),
            ["CONDUIT_DATABASE_PATH"] = Path.Combine(Dir(), "db"),
        });
        Assert.Equal(2, await p.ExitCodeAsync());
        Assert.Equal([$"conduit: cannot listen on 127.0.0.1:{port}: address already in use"], p.Stderr);
        Assert.False(p.Stdout.Any(l => l.Contains("Exception") || l.Contains("listening on")), string.Join("\n", p.Stdout));
    }

    [Fact]
    public async Task An_address_that_is_not_this_machines_is_one_line_and_exit_code_2()
    {
        // 192.0.2.0/24 is TEST-NET-1 (RFC 5737): never assigned to a host.
        await using var p = ConduitProcess.Start(new Dictionary<string, string>
        {
            ["CONDUIT_ADDRESS"] = "192.0.2.1",
            ["CONDUIT_PORT"] = "0",
            ["CONDUIT_DATABASE_PATH"] = Path.Combine(Dir(), "db"),
        });
        Assert.Equal(2, await p.ExitCodeAsync());
        Assert.Equal(["conduit: cannot listen on 192.0.2.1:0: the address is not one of this machine's (see 'address' in the config)"], p.Stderr);
    }

    [Fact]
    public async Task A_database_another_server_holds_is_one_line_and_exit_code_2()
    {
        var db = Path.Combine(Dir(), "db");
        await using var first = ConduitProcess.Start(new Dictionary<string, string> { ["CONDUIT_PORT"] = "0", ["CONDUIT_DATABASE_PATH"] = db });
        await first.ListeningAsync();
        await using var second = ConduitProcess.Start(new Dictionary<string, string> { ["CONDUIT_PORT"] = "0", ["CONDUIT_DATABASE_PATH"] = db });
        Assert.Equal(2, await second.ExitCodeAsync());
        var line = Assert.Single(second.Stderr);
        Assert.StartsWith($"conduit: cannot open the rocksdb database at {db}: ", line);
    }

    [Fact]
    public async Task The_command_line_checks_the_config_lists_its_commands_and_refuses_unknown_ones()
    {
        var config = Path.Combine(Dir(), "conduit.toml");
        File.WriteAllText(config, "[global]\nserver_name = \"example.org\"\nport = 70000\n");
        await using (var bad = ConduitProcess.Start(new Dictionary<string, string> { ["CONDUIT_CONFIG"] = config }, "check-config"))
        {
            Assert.Equal(2, await bad.ExitCodeAsync());
            Assert.Equal($"conduit: {config}: key 'global.port' must be between 0 and 65535 (0: any free port)", Assert.Single(bad.Stderr));
        }
        File.WriteAllText(config, "[global]\nserver_name = \"example.org\"\n");
        await using (var good = ConduitProcess.Start(new Dictionary<string, string> { ["CONDUIT_CONFIG"] = config }, "check-config"))
        {
            Assert.Equal(0, await good.ExitCodeAsync());
            Assert.Equal($"conduit: the configuration is valid ({config}; server name example.org)", Assert.Single(good.Stdout));
        }
        await using (var help = ConduitProcess.Start(new Dictionary<string, string>(), "--help"))
        {
            Assert.Equal(0, await help.ExitCodeAsync());
            Assert.Contains(help.Stdout, l => l.Contains("conduit backup [DIR]", StringComparison.Ordinal));
        }
        await using var unknown = ConduitProcess.Start(new Dictionary<string, string>(), "frobnicate");
        Assert.Equal(2, await unknown.ExitCodeAsync());
        Assert.Equal("conduit: unknown command 'frobnicate' (conduit --help lists them)", Assert.Single(unknown.Stderr));
    }

    [Fact]
    public async Task Accounts_made_on_the_command_line_sign_in_and_admin_makes_a_server_admin()
    {
        var env = new Dictionary<string, string> { ["CONDUIT_PORT"] = "0", ["CONDUIT_DATABASE_PATH"] = Path.Combine(Dir(), "db") };
        await using (var first = ConduitProcess.Start(env, "create-user", "first", "pw-first"))
            Assert.Equal(0, await first.ExitCodeAsync());
        string bossPassword;
        await using (var admin = ConduitProcess.Start(env, "create-user", "boss", "--admin"))
        {
            Assert.Equal(0, await admin.ExitCodeAsync());
            var line = Assert.Single(admin.Stdout);
            Assert.StartsWith("conduit: created @boss:localhost, a server admin, password ", line);
            bossPassword = line[(line.LastIndexOf(' ') + 1)..];
        }
        await using (var plain = ConduitProcess.Start(env, "create-user", "@Plain:localhost", "pw-plain"))
        {
            Assert.Equal(0, await plain.ExitCodeAsync());
            Assert.Equal("conduit: created @plain:localhost", Assert.Single(plain.Stdout));
        }
        await using (var taken = ConduitProcess.Start(env, "create-user", "plain", "x"))
        {
            Assert.Equal(1, await taken.ExitCodeAsync());
            Assert.Equal("conduit: User ID already taken", Assert.Single(taken.Stderr));
        }
        await using var server = ConduitProcess.Start(env);
        var url = await server.ListeningAsync();
        using var http = new HttpClient();
        async Task<string> Login(string user, string password)
        {
            var body = new StringContent($$"""{"type":"m.login.password","identifier":{"type":"m.id.user","user":"{{user}}"},"password":"{{password}}"}""");
            using var resp = await http.PostAsync(url + "/_matrix/client/v3/login", body);
            Assert.Equal(HttpStatusCode.OK, resp.StatusCode);
            return System.Text.Json.Nodes.JsonNode.Parse(await resp.Content.ReadAsStringAsync())!["access_token"]!.GetValue<string>();
        }
        async Task<bool> IsAdmin(string token, string userId)
        {
            using var req = new HttpRequestMessage(HttpMethod.Get, $"{url}/_synapse/admin/v1/users/{Uri.EscapeDataString(userId)}/admin");
            req.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", token);
            using var resp = await http.SendAsync(req);
            return resp.StatusCode == HttpStatusCode.OK;
        }
        // The first account is an admin (as registration makes it); --admin makes one; the others are not.
        Assert.True(await IsAdmin(await Login("first", "pw-first"), "@first:localhost"));
        Assert.True(await IsAdmin(await Login("boss", bossPassword), "@boss:localhost"));
        Assert.False(await IsAdmin(await Login("plain", "pw-plain"), "@plain:localhost"));
    }

    [Fact]
    public async Task A_stopped_server_is_backed_up_from_its_database_and_old_backups_beyond_keep_are_removed()
    {
        var env = new Dictionary<string, string> { ["CONDUIT_PORT"] = "0", ["CONDUIT_DATABASE_PATH"] = Path.Combine(Dir(), "db"), ["CONDUIT_BACKUP__KEEP"] = "2" };
        await using (var server = ConduitProcess.Start(env))
        {
            await server.ListeningAsync();
            await server.LineAsync(l => l == $"conduit: control socket: {Path.Combine(env["CONDUIT_DATABASE_PATH"], "conduit.sock")} (conduit backup)");
        }
        var written = new List<string>();
        for (var i = 0; i < 3; i++)
        {
            await using var backup = ConduitProcess.Start(env, "backup");
            Assert.Equal(0, await backup.ExitCodeAsync());
            var line = Assert.Single(backup.Stdout);
            Assert.StartsWith($"conduit: backup written to {Path.Combine(env["CONDUIT_DATABASE_PATH"], "backups")}{Path.DirectorySeparatorChar}", line);
            written.Add(line["conduit: backup written to ".Length..]);
        }
        Assert.Equal(written.Skip(1).Order(), Directory.GetDirectories(Path.Combine(env["CONDUIT_DATABASE_PATH"], "backups")).Order());
        // A backup folder is a database_path: a server starts on it.
        await using var restored = ConduitProcess.Start(new Dictionary<string, string> { ["CONDUIT_PORT"] = "0", ["CONDUIT_DATABASE_PATH"] = written[^1] });
        await restored.ListeningAsync();
    }

    [Fact]
    public async Task Rotating_the_signing_key_publishes_a_new_key_and_keeps_the_old_one_as_an_old_verify_key()
    {
        var env = new Dictionary<string, string> { ["CONDUIT_PORT"] = "0", ["CONDUIT_DATABASE_PATH"] = Path.Combine(Dir(), "db") };
        using var http = new HttpClient();
        async Task<System.Text.Json.Nodes.JsonObject> ServerKeys(string url)
            => System.Text.Json.Nodes.JsonNode.Parse(await http.GetStringAsync(url + "/_matrix/key/v2/server"))!.AsObject();

        string first;
        await using (var server = ConduitProcess.Start(env))
        {
            first = (await ServerKeys(await server.ListeningAsync()))["verify_keys"]!.AsObject().Single().Key;
            // While the server runs, the database is its own: the rotation refuses, one line, exit code 2.
            await using var busy = ConduitProcess.Start(env, "--rotate-signing-key");
            Assert.Equal(2, await busy.ExitCodeAsync());
            Assert.StartsWith("conduit: cannot open the rocksdb database", Assert.Single(busy.Stderr));
        }
        await using (var rotate = ConduitProcess.Start(env, "--rotate-signing-key"))
        {
            Assert.Equal(0, await rotate.ExitCodeAsync());
            Assert.Contains(rotate.Stdout, l => l.StartsWith($"conduit: signing key {first} replaced by ed25519:", StringComparison.Ordinal));
        }
        await using (var server = ConduitProcess.Start(env))
        {
            var keys = await ServerKeys(await server.ListeningAsync());
            var now = keys["verify_keys"]!.AsObject().Single().Key;
            Assert.NotEqual(first, now);
            Assert.True(keys["old_verify_keys"]![first]!["expired_ts"]!.GetValue<long>() > 0);
        }
        await using var split = ConduitProcess.Start(env, "--rotate-signing-key", "--role", "rooms");
        Assert.Equal(2, await split.ExitCodeAsync());
    }
}

public sealed class ConfigTests
{
    [Fact]
    public void A_conduit_config_file_parses_with_its_own_keys()
    {
        var c = ConfigLoader.Parse("""
            [global]
            server_name = "example.org"
            database_backend = "sqlite"
            database_path = "/var/lib/matrix-conduit/"
            port = 6167
            max_request_size = 20_000_000
            allow_registration = true
            registration_token = "sekrit"
            allow_federation = true
            allow_check_for_updates = true
            trusted_servers = ["matrix.org"]
            address = "127.0.0.1"
            log = "warn,state_res=warn"

            [global.well_known]
            client = "https://matrix.example.org"
            server = "matrix.example.org:443"
            """, "conduit.toml", new Hashtable());
        Assert.Equal("example.org", c.Global.ServerName);
        Assert.Equal("sqlite", c.Global.DatabaseBackend);
        Assert.Equal(20_000_000, c.Global.MaxRequestSize);
        Assert.Equal("sekrit", c.Global.RegistrationToken);
        Assert.Equal("https://matrix.example.org", c.Global.WellKnown.Client);
        // A key we do not know is a warning naming it, not a crash.
        Assert.Contains(c.Warnings, w => w.Contains("allow_check_for_updates"));
    }

    [Fact]
    public void Environment_variables_override_global_keys()
    {
        var env = new Hashtable { ["CONDUIT_PORT"] = "8448", ["CONDUIT_SERVER_NAME"] = "env.example", ["CONDUIT_ALLOW_REGISTRATION"] = "false", ["CONDUIT_SERVICES__ROOMS"] = "http://10.0.0.2:6172" };
        var c = ConfigLoader.Parse("[global]\nserver_name = \"file.example\"\nallow_registration = true\n", "conduit.toml", env);
        Assert.Equal(8448, c.Global.Port);
        Assert.Equal("env.example", c.Global.ServerName);
        Assert.False(c.Global.AllowRegistration);
        Assert.Equal("http://10.0.0.2:6172", c.Global.Services.Rooms);
    }

    [Fact]
    public void Environment_variables_that_name_no_config_key_are_not_ours_and_ignored_silently()
    {
        // Our scripts' own variables, and keys no config table has, nested or not.
        var env = new Hashtable
        {
            ["CONDUIT_DLL"] = "/x/conduit.dll", ["CONDUIT_BIN"] = "/x/conduit", ["CONDUIT_URL"] = "http://127.0.0.1:1",
            ["CONDUIT_ARTIFACTS"] = "/tmp/a", ["CONDUIT_SERVICES__NOPE"] = "1", ["CONDUIT_NOPE__DEEPER"] = "x",
            ["CONDUIT_PORT"] = "8448", ["CONDUIT_WELL_KNOWN__CLIENT"] = "https://m.example", ["CONDUIT_TLS__CERTS"] = "/c.pem",
        };
        var c = ConfigLoader.Parse("[global]\nserver_name = \"file.example\"\n", "conduit.toml", env);
        Assert.Empty(c.Warnings);
        Assert.Equal(["CONDUIT_PORT", "CONDUIT_TLS__CERTS", "CONDUIT_WELL_KNOWN__CLIENT"], c.Overrides);
        Assert.Equal((8448, "https://m.example", "/c.pem"), (c.Global.Port, c.Global.WellKnown.Client, c.Global.Tls!.Certs));
        // The same unknown keys in the file are still a warning each: the file is only ever config.
        var f = ConfigLoader.Parse("[global]\ndll = \"x\"\n[global.services]\nnope = 1\n", "conduit.toml", env);
        Assert.Equal(["conduit.toml: unknown config key 'global.dll' is ignored", "conduit.toml: unknown config key 'global.services.nope' is ignored"], f.Warnings);
    }

    [Fact]
    public void Every_key_of_the_config_classes_can_be_set_from_the_environment()
    {
        // Which keys are known comes from the config classes themselves (their source-generated reader), not from a
        // list kept beside GlobalConfig: any key of any table may be set, including ones added later. A value that
        // reads as a TOML number where the key takes a string is that string (room version "10").
        var env = new Hashtable
        {
            ["CONDUIT_MAX_CONCURRENT_REQUESTS"] = "7", ["CONDUIT_TRUSTED_SERVERS"] = "[\"a.example\"]",
            ["CONDUIT_DEFAULT_ROOM_VERSION"] = "10", ["CONDUIT_TURN_TTL"] = "60", ["CONDUIT_REGISTRATION_TOKEN"] = "t",
            ["CONDUIT_SERVICES__INTERNAL_SECRET"] = "s",
        };
        var c = ConfigLoader.Parse("[global]\n", "c.toml", env).Global;
        Assert.Equal((7, "a.example", "10", 60L, "t", "s"),
            (c.MaxConcurrentRequests, c.TrustedServers.Single(), c.DefaultRoomVersion, c.TurnTtl, c.RegistrationToken, c.Services.InternalSecret));
    }

    [Fact]
    public void A_bad_value_from_the_environment_names_the_variable_and_the_key()
    {
        var e = Assert.Throws<ConfigException>(() => ConfigLoader.Parse("[global]\n", "conduit.toml", new Hashtable { ["CONDUIT_PORT"] = "eighty" }));
        Assert.Contains("CONDUIT_PORT", e.Message);
        Assert.Contains("global.port", e.Message);
    }

    [Fact]
    public void Port_0_means_any_free_port_and_out_of_range_ports_are_refused()
    {
        Assert.Equal(0, ConfigLoader.Parse("[global]\nport = 0\n", "c.toml", new Hashtable()).Global.Port);
        Assert.Equal(0, ConfigLoader.Parse("[global]\n", "c.toml", new Hashtable { ["CONDUIT_PORT"] = "0" }).Global.Port);
        foreach (var bad in new[] { "-1", "65536" })
            Assert.Contains("global.port", Assert.Throws<ConfigException>(() => ConfigLoader.Parse($"[global]\nport = {bad}\n", "c.toml", new Hashtable())).Message);
        Assert.Contains("global.address", Assert.Throws<ConfigException>(() => ConfigLoader.Parse("[global]\naddress = \"example.org\"\n", "c.toml", new Hashtable())).Message);
    }

    [Fact]
    public void A_split_service_address_needs_a_fixed_port()
    {
        // Peers dial the address in [global.services] before the service has started: port 0 could not be found.
        var loaded = ConfigLoader.Parse("""
            [global]
            database_path = "unused"
            [global.services]
            internal_secret = "s"
            rooms = "http://127.0.0.1:0"
            """, "c.toml", new Hashtable());
        var e = Assert.Throws<ConfigException>(() => ConduitHost.Build(loaded, "sync"));
        Assert.Contains("global.services.rooms", e.Message);
    }

    [Fact]
    public void A_broken_config_names_the_file_line_and_key()
    {
        var e = Assert.Throws<ConfigException>(() => ConfigLoader.Parse("[global]\nserver_name = \"x\"\nport = \"eighty\"\n", "/etc/conduit.toml", new Hashtable()));
        Assert.Contains("/etc/conduit.toml", e.Message);
        Assert.Contains("line 3", e.Message);
        Assert.Contains("key 'global.port'", e.Message);
        var bad = Assert.Throws<ConfigException>(() => ConfigLoader.Parse("[global]\ndatabase_backend = \"mysql\"\n", "c.toml", new Hashtable()));
        Assert.Contains("database_backend", bad.Message);
    }

    [Fact]
    public void With_no_config_the_embedded_default_serves_a_person_trying_it()
    {
        var c = ConfigLoader.Load(new Hashtable());
        Assert.Equal(("localhost", "127.0.0.1", 6167, true), (c.Global.ServerName, c.Global.Address, c.Global.Port, c.Global.AllowRegistration));
    }
}

/// <summary>A split deployment a test stops and starts again on the same databases (the command line's split paths).</summary>
public sealed class StoppableSplitFixture : SplitFixture
{
    public string ConfigPath => Path.Combine(Path.GetDirectoryName(DatabasePath)!, "conduit.toml");
    public Task StopAsync() => SplitDownAsync();
    public override async Task InitializeAsync()
    {
        var (code, err) = await SplitUpAsync("auto");
        if (code != 0) throw new InvalidOperationException($"split-up.sh failed ({code}): {err}");
    }
}

/// <summary>
/// The command line against a stopped split deployment, each verb on the service that holds the data: create-user on
/// the keys service's database, --rotate-signing-key on the federation service's, and backup on every service's.
/// </summary>
public sealed class SplitCommandLineTests
{
    [Fact]
    public async Task Create_user_rotate_signing_key_and_backup_work_on_a_stopped_split_deployment()
    {
        var server = new StoppableSplitFixture();
        await server.InitializeAsync();
        try
        {
            using var http = new HttpClient();
            string KeyId(string json) => System.Text.Json.Nodes.JsonNode.Parse(json)!["verify_keys"]!.AsObject().Single().Key;
            var before = KeyId(await http.GetStringAsync(server.BaseUrl + "/_matrix/key/v2/server"));
            await server.StopAsync();

            var env = new Dictionary<string, string> { ["CONDUIT_CONFIG"] = server.ConfigPath, ["CONDUIT_DATABASE_PATH"] = server.DatabasePath };
            await using (var create = ConduitProcess.Start(env, "create-user", "splitcli", "split-pw", "--role", "keys"))
            {
                Assert.Equal(0, await create.ExitCodeAsync());
                Assert.Equal("conduit: created @splitcli:test.local", Assert.Single(create.Stdout));
            }
            await using (var wrongRole = ConduitProcess.Start(env, "create-user", "other", "pw", "--role", "rooms"))
                Assert.Equal(2, await wrongRole.ExitCodeAsync());
            await using (var rotate = ConduitProcess.Start(env, "--rotate-signing-key", "--role", "federation"))
                Assert.Equal(0, await rotate.ExitCodeAsync());
            var dir = Path.Combine(server.DatabasePath, "..", "split-backups");
            await using (var backup = ConduitProcess.Start(env, "backup", dir))
            {
                Assert.Equal(0, await backup.ExitCodeAsync());
                Assert.Equal(["federation", "keys", "media", "rooms", "sync"],
                    backup.Stdout.Select(l => l.Split(' ')[3]).Order(StringComparer.Ordinal));
            }

            await server.InitializeAsync();
            var after = System.Text.Json.Nodes.JsonNode.Parse(await http.GetStringAsync(server.BaseUrl + "/_matrix/key/v2/server"))!;
            Assert.NotEqual(before, after["verify_keys"]!.AsObject().Single().Key);
            Assert.NotNull(after["old_verify_keys"]![before]);
            var login = await new MatrixClient(server).Call("POST", MatrixClient.C + "/login", new System.Text.Json.Nodes.JsonObject
            {
                ["type"] = "m.login.password",
                ["identifier"] = new System.Text.Json.Nodes.JsonObject { ["type"] = "m.id.user", ["user"] = "splitcli" },
                ["password"] = "split-pw",
            }, auth: false);
            login.Ok();
        }
        finally
        {
            await server.DisposeAsync();
        }
    }
}

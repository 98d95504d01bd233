using System.Collections;
using System.Net;
using Conduit.Common.Config;
using Conduit.Common.Routing;
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
        using var req = new HttpRequestMessage(HttpMethod.Get, $"http://127.0.0.1:{server.FirstInternalPort}/_matrix/client/v3/account/whoami");
        req.Headers.Add("X-Conduit-User", "@admin:test.local");
        (req.Version, req.VersionPolicy) = (HttpVersion.Version20, HttpVersionPolicy.RequestVersionExact);
        using var resp = await http.SendAsync(req);
        Assert.Equal(HttpStatusCode.Forbidden, resp.StatusCode);
        Assert.Contains("M_FORBIDDEN", await resp.Content.ReadAsStringAsync());
        // With the secret the same listener answers (this is what the edge does).
        using var ok = new HttpRequestMessage(HttpMethod.Get, $"http://127.0.0.1:{server.FirstInternalPort}/_matrix/client/v3/register/available?username=free");
        ok.Headers.Add("x-conduit-internal", server.Secret);
        (ok.Version, ok.VersionPolicy) = (HttpVersion.Version20, HttpVersionPolicy.RequestVersionExact);
        Assert.Equal(HttpStatusCode.OK, (await http.SendAsync(ok)).StatusCode);
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

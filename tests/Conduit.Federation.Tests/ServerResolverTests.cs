using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Conduit.Tests.Support;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.Logging;

namespace Conduit.Federation.Tests;

/// <summary>A clock the tests move.</summary>
sealed class TestClock : TimeProvider
{
    public DateTimeOffset Now { get; set; } = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
    public override DateTimeOffset GetUtcNow() => Now;
}

/// <summary>Fixed SRV answers; every host name is 127.0.0.1.</summary>
sealed class FakeDns : IFederationDns
{
    public Dictionary<string, SrvTarget[]> Srv { get; } = new(StringComparer.OrdinalIgnoreCase);
    public List<string> SrvQueries { get; } = [];

    public Task<IReadOnlyList<SrvTarget>> SrvAsync(string name, CancellationToken ct)
    {
        lock (SrvQueries) SrvQueries.Add(name);
        return Task.FromResult<IReadOnlyList<SrvTarget>>(Srv.TryGetValue(name, out var t) ? t : []);
    }

    public Task<IPAddress[]> AddressesAsync(string host, CancellationToken ct) => Task.FromResult(new[] { IPAddress.Loopback });
}

/// <summary>
/// A local HTTPS server on loopback standing in for every remote server: its certificate (from a test CA) names
/// the test hosts and 127.0.0.1, it answers /.well-known/matrix/server per Host header as the test says, and
/// /_matrix/federation/v1/version with the Host header it received. Clients reach it whatever host and port they
/// dial (the test's connect callback), and trust it only through the CA, as federation_ca_file would.
/// </summary>
public sealed class WellKnownServer : IAsyncLifetime
{
    public TestCa Ca { get; } = TestCa.Create();
    public ConcurrentDictionary<string, Func<HttpContext, Task>> WellKnown { get; } = new(StringComparer.OrdinalIgnoreCase);
    public ConcurrentDictionary<string, int> Hits { get; } = new(StringComparer.OrdinalIgnoreCase);
    public int Port { get; private set; }
    WebApplication? _app;

    public static readonly string[] Names = ["wk.test", "delegated.test", "target.test", "plain.test", "redirect.test", "bad.test", "cache.test", "down.test", "nowk.test"];

    public async Task InitializeAsync()
    {
        var cert = Ca.Issue(Names, [IPAddress.Loopback]);
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, l => l.UseHttps(new HttpsConnectionAdapterOptions { ServerCertificate = cert })));
        _app = builder.Build();
        _app.MapGet("/.well-known/matrix/server", ctx =>
        {
            var host = ctx.Request.Host.Host;
            Hits.AddOrUpdate(host, 1, (_, n) => n + 1);
            if (WellKnown.TryGetValue(host, out var answer)) return answer(ctx);
            ctx.Response.StatusCode = 404;
            return Task.CompletedTask;
        });
        _app.MapGet("/_matrix/federation/v1/version", ctx => ctx.Response.WriteAsync(ctx.Request.Host.Value ?? ""));
        await _app.StartAsync();
        Port = new Uri(_app.Urls.First()).Port;
    }

    /// <summary>The production handler (validation included), with connections going to this server.</summary>
    public SocketsHttpHandler Handler(bool followRedirects, bool trustCa = true)
    {
        var handler = FederationHttp.CreateHandler(new FakeDns(), trustCa ? [Ca.Certificate] : null, followRedirects);
        handler.ConnectCallback = async (_, ct) =>
        {
            var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
            await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, Port), ct);
            return new NetworkStream(socket, ownsSocket: true);
        };
        return handler;
    }

    public static Func<HttpContext, Task> Json(string body, Action<HttpResponse>? headers = null) => ctx =>
    {
        headers?.Invoke(ctx.Response);
        ctx.Response.ContentType = "application/json";
        return ctx.Response.WriteAsync(body);
    };

    public async Task DisposeAsync()
    {
        if (_app is not null) await _app.DisposeAsync();
        Ca.Dispose();
    }
}

public sealed class ServerResolverTests(WellKnownServer server) : IClassFixture<WellKnownServer>
{
    readonly FakeDns _dns = new();
    readonly TestClock _clock = new();

    ServerResolver Resolver(bool trustCa = true) => new(new HttpClient(server.Handler(followRedirects: true, trustCa)), _dns, _clock);

    int Hits(string host) => server.Hits.TryGetValue(host, out var n) ? n : 0;

    [Theory]
    [InlineData("1.2.3.4", "1.2.3.4", 8448, "1.2.3.4")]
    [InlineData("1.2.3.4:443", "1.2.3.4", 443, "1.2.3.4:443")]
    [InlineData("[2001:db8::1]", "2001:db8::1", 8448, "[2001:db8::1]")]
    [InlineData("[2001:db8::1]:8449", "2001:db8::1", 8449, "[2001:db8::1]:8449")]
    [InlineData("example.org:1234", "example.org", 1234, "example.org:1234")]
    public async Task An_ip_literal_or_an_explicit_port_is_used_as_it_is_without_well_known_or_srv(string name, string host, int port, string hostHeader)
    {
        var r = await Resolver().ResolveAsync(name);
        Assert.Equal(new ResolvedServer(host, port, hostHeader), r);
        Assert.Empty(_dns.SrvQueries);
        Assert.Equal(0, Hits("example.org"));
    }

    [Fact]
    public void The_tls_name_is_the_host_of_the_host_header_and_ipv6_is_bracketed_in_the_uri()
    {
        Assert.Equal("example.org", new ResolvedServer("example.org", 1234, "example.org:1234").TlsName);
        Assert.Equal("2001:db8::1", new ResolvedServer("2001:db8::1", 8449, "[2001:db8::1]:8449").TlsName);
        Assert.Equal(new Uri("https://[2001:db8::1]:8449/"), new ResolvedServer("2001:db8::1", 8449, "[2001:db8::1]:8449").BaseUri);
    }

    [Theory]
    [InlineData("")]
    [InlineData("exa mple.org")]
    [InlineData("example.org:0")]
    [InlineData("example.org:65536")]
    [InlineData("example.org:")]
    [InlineData("[not:an:ip]")]
    public async Task An_invalid_server_name_is_refused(string name)
        => await Assert.ThrowsAsync<ArgumentException>(() => Resolver().ResolveAsync(name));

    [Fact]
    public async Task A_delegation_with_a_port_is_used_with_the_delegated_name_as_host()
    {
        server.WellKnown["wk.test"] = WellKnownServer.Json("""{"m.server": "delegated.test:4443"}""");
        Assert.Equal(new ResolvedServer("delegated.test", 4443, "delegated.test:4443"), await Resolver().ResolveAsync("wk.test"));
        Assert.Empty(_dns.SrvQueries);
    }

    [Fact]
    public async Task A_delegation_to_an_ip_literal_is_used_with_port_8448_by_default()
    {
        server.WellKnown["plain.test"] = WellKnownServer.Json("""{"m.server": "192.0.2.7"}""");
        Assert.Equal(new ResolvedServer("192.0.2.7", 8448, "192.0.2.7"), await Resolver().ResolveAsync("plain.test"));
        server.WellKnown["target.test"] = WellKnownServer.Json("""{"m.server": "[2001:db8::2]:9000"}""");
        Assert.Equal(new ResolvedServer("2001:db8::2", 9000, "[2001:db8::2]:9000"), await Resolver().ResolveAsync("target.test"));
        Assert.Empty(_dns.SrvQueries);
    }

    [Fact]
    public async Task A_delegation_without_port_looks_up_matrix_fed_srv_then_legacy_srv_then_8448()
    {
        server.WellKnown["delegated.test"] = WellKnownServer.Json("""{"m.server": "srvhost.example"}""");
        // No SRV at all: port 8448 on the delegated name.
        Assert.Equal(new ResolvedServer("srvhost.example", 8448, "srvhost.example"), await Resolver().ResolveAsync("delegated.test"));
        Assert.Equal(["_matrix-fed._tcp.srvhost.example", "_matrix._tcp.srvhost.example"], _dns.SrvQueries);

        // The deprecated _matrix._tcp when _matrix-fed._tcp has nothing; the Host header stays the delegated name.
        _dns.Srv["_matrix._tcp.srvhost.example"] = [new SrvTarget("legacy.example", 8000, 10, 0)];
        Assert.Equal(new ResolvedServer("legacy.example", 8000, "srvhost.example"), await Resolver().ResolveAsync("delegated.test"));

        // _matrix-fed._tcp first; lowest priority wins, then the heavier; a "." target is no service.
        _dns.Srv["_matrix-fed._tcp.srvhost.example"] =
        [
            new SrvTarget("later.example", 1, 20, 100), new SrvTarget(".", 2, 1, 0),
            new SrvTarget("light.example", 3, 10, 1), new SrvTarget("heavy.example", 4, 10, 50),
        ];
        Assert.Equal(new ResolvedServer("heavy.example", 4, "srvhost.example"), await Resolver().ResolveAsync("delegated.test"));
    }

    [Fact]
    public async Task Without_a_well_known_the_server_name_gets_srv_then_port_8448()
    {
        Assert.Equal(new ResolvedServer("nowk.test", 8448, "nowk.test"), await Resolver().ResolveAsync("nowk.test"));
        Assert.Equal(1, Hits("nowk.test"));
        Assert.Equal(["_matrix-fed._tcp.nowk.test", "_matrix._tcp.nowk.test"], _dns.SrvQueries);

        _dns.Srv["_matrix-fed._tcp.nowk2.test"] = [new SrvTarget("fed.example", 8443, 0, 0)];
        Assert.Equal(new ResolvedServer("fed.example", 8443, "nowk2.test"), await Resolver().ResolveAsync("nowk2.test"));
        _dns.Srv["_matrix._tcp.nowk3.test"] = [new SrvTarget("old.example", 8444, 0, 0)];
        Assert.Equal(new ResolvedServer("old.example", 8444, "nowk3.test"), await Resolver().ResolveAsync("nowk3.test"));
    }

    [Theory]
    [InlineData("not json")]
    [InlineData("[]")]
    [InlineData("{}")]
    [InlineData("""{"m.server": 5}""")]
    [InlineData("""{"m.server": "bad name:1"}""")]
    public async Task An_invalid_well_known_is_as_none(string body)
    {
        server.WellKnown["bad.test"] = WellKnownServer.Json(body);
        Assert.Equal(new ResolvedServer("bad.test", 8448, "bad.test"), await Resolver().ResolveAsync("bad.test"));
    }

    [Fact]
    public async Task A_non_200_or_an_oversized_well_known_is_as_none()
    {
        server.WellKnown["bad.test"] = ctx => { ctx.Response.StatusCode = 500; return ctx.Response.WriteAsync("""{"m.server": "x.example:1"}"""); };
        Assert.Equal(new ResolvedServer("bad.test", 8448, "bad.test"), await Resolver().ResolveAsync("bad.test"));
        server.WellKnown["bad.test"] = WellKnownServer.Json("{\"m.server\": \"x.example:1\", \"pad\": \"" + new string('a', ServerResolver.MaxWellKnownBytes) + "\"}");
        Assert.Equal(new ResolvedServer("bad.test", 8448, "bad.test"), await Resolver().ResolveAsync("bad.test"));
    }

    [Fact]
    public async Task Redirects_of_the_well_known_are_followed_but_not_forever()
    {
        server.WellKnown["redirect.test"] = ctx => { ctx.Response.Redirect("https://target.test/.well-known/matrix/server"); return Task.CompletedTask; };
        server.WellKnown["target.test"] = WellKnownServer.Json("""{"m.server": "delegated.test:8555"}""");
        Assert.Equal(new ResolvedServer("delegated.test", 8555, "delegated.test:8555"), await Resolver().ResolveAsync("redirect.test"));

        // A loop ends after a bounded number of redirects, as no well-known.
        server.WellKnown["target.test"] = ctx => { ctx.Response.Redirect("https://redirect.test/.well-known/matrix/server"); return Task.CompletedTask; };
        Assert.Equal(new ResolvedServer("redirect.test", 8448, "redirect.test"), await Resolver().ResolveAsync("redirect.test"));
    }

    [Fact]
    public async Task A_well_known_from_a_server_whose_certificate_is_not_trusted_is_as_none()
    {
        server.WellKnown["wk.test"] = WellKnownServer.Json("""{"m.server": "delegated.test:4443"}""");
        Assert.Equal(new ResolvedServer("wk.test", 8448, "wk.test"), await Resolver(trustCa: false).ResolveAsync("wk.test"));
        // A name the certificate does not carry fails even with the CA trusted.
        server.WellKnown["unnamed.test"] = WellKnownServer.Json("""{"m.server": "delegated.test:4443"}""");
        Assert.Equal(new ResolvedServer("unnamed.test", 8448, "unnamed.test"), await Resolver().ResolveAsync("unnamed.test"));
        Assert.Equal(0, Hits("unnamed.test"));
    }

    [Fact]
    public async Task A_well_known_is_cached_24_hours_by_default()
    {
        var resolver = Resolver();
        server.WellKnown["cache.test"] = WellKnownServer.Json("""{"m.server": "delegated.test:1"}""");
        var before = Hits("cache.test");
        await resolver.ResolveAsync("cache.test");
        server.WellKnown["cache.test"] = WellKnownServer.Json("""{"m.server": "delegated.test:2"}""");
        _clock.Now += TimeSpan.FromHours(23.9);
        Assert.Equal(1, (await resolver.ResolveAsync("cache.test")).Port);
        Assert.Equal(before + 1, Hits("cache.test"));
        _clock.Now += TimeSpan.FromHours(0.2);
        Assert.Equal(2, (await resolver.ResolveAsync("cache.test")).Port);
        Assert.Equal(before + 2, Hits("cache.test"));
    }

    [Fact]
    public async Task A_failed_well_known_is_cached_an_hour()
    {
        var resolver = Resolver();
        server.WellKnown["down.test"] = ctx => { ctx.Response.StatusCode = 503; return Task.CompletedTask; };
        Assert.Equal(8448, (await resolver.ResolveAsync("down.test")).Port);
        var hits = Hits("down.test");
        server.WellKnown["down.test"] = WellKnownServer.Json("""{"m.server": "delegated.test:3"}""");
        _clock.Now += TimeSpan.FromMinutes(59);
        Assert.Equal(8448, (await resolver.ResolveAsync("down.test")).Port);
        Assert.Equal(hits, Hits("down.test"));
        _clock.Now += TimeSpan.FromMinutes(2);
        Assert.Equal(3, (await resolver.ResolveAsync("down.test")).Port);
        Assert.Equal(hits + 1, Hits("down.test"));
    }

    [Theory]
    [InlineData("max-age=600", null, 600)]
    [InlineData("max-age=10", null, 300)]                 // floor: 5 minutes
    [InlineData("max-age=864000", null, 48 * 3600)]       // ceiling: 48 hours
    [InlineData("no-store", null, 300)]
    [InlineData(null, 7200, 7200)]                        // Expires two hours ahead
    [InlineData(null, null, 24 * 3600)]                   // nothing: 24 hours
    [InlineData("public", null, 24 * 3600)]
    public void The_cache_lifetime_follows_cache_control_and_expires_within_bounds(string? cacheControl, int? expiresIn, int seconds)
    {
        var now = new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
        using var response = new HttpResponseMessage(HttpStatusCode.OK) { Content = new StringContent("{}") };
        if (cacheControl is not null) response.Headers.TryAddWithoutValidation("Cache-Control", cacheControl);
        if (expiresIn is { } e) response.Content.Headers.Expires = now.AddSeconds(e);
        Assert.Equal(TimeSpan.FromSeconds(seconds), ServerResolver.CacheLifetime(response, now));
    }

    [Fact]
    public void An_expires_that_does_not_parse_is_in_the_past()
    {
        using var response = new HttpResponseMessage(HttpStatusCode.OK) { Content = new StringContent("{}") };
        response.Content.Headers.TryAddWithoutValidation("Expires", "0");
        Assert.Equal(ServerResolver.MinCache, ServerResolver.CacheLifetime(response, DateTimeOffset.UtcNow));
    }

    [Fact]
    public async Task A_well_known_max_age_is_honoured()
    {
        var resolver = Resolver();
        server.WellKnown["target.test"] = WellKnownServer.Json("""{"m.server": "delegated.test:10"}""", r => r.Headers.CacheControl = "max-age=600");
        var before = Hits("target.test");
        await resolver.ResolveAsync("target.test");
        _clock.Now += TimeSpan.FromSeconds(599);
        await resolver.ResolveAsync("target.test");
        Assert.Equal(before + 1, Hits("target.test"));
        _clock.Now += TimeSpan.FromSeconds(2);
        await resolver.ResolveAsync("target.test");
        Assert.Equal(before + 2, Hits("target.test"));
    }

    [Fact]
    public async Task Federation_requests_go_to_the_resolved_server_with_the_spec_host_header_and_a_certificate_for_it()
    {
        server.WellKnown["wk.test"] = WellKnownServer.Json("""{"m.server": "delegated.test:4443"}""");
        using var http = new HttpClient(new FederationHandler(Resolver(), server.Handler(followRedirects: false)));
        Assert.Equal("delegated.test:4443", await http.GetStringAsync("matrix-federation://wk.test/_matrix/federation/v1/version"));
        // An IP literal: the certificate must carry the address.
        Assert.Equal("127.0.0.1:8448", await http.GetStringAsync("matrix-federation://127.0.0.1:8448/_matrix/federation/v1/version"));
        // A name the certificate does not carry is refused, even though the CA is trusted.
        await Assert.ThrowsAsync<HttpRequestException>(() => http.GetStringAsync("matrix-federation://unnamed.test:8448/_matrix/federation/v1/version"));
        // Without federation_ca_file the test CA is not trusted: no way around validation.
        using var untrusting = new HttpClient(new FederationHandler(Resolver(), server.Handler(followRedirects: false, trustCa: false)));
        await Assert.ThrowsAsync<HttpRequestException>(() => untrusting.GetStringAsync("matrix-federation://delegated.test:4443/_matrix/federation/v1/version"));
    }

    [Fact]
    public async Task The_configured_client_trusts_the_ca_file_and_connects_through_dns()
    {
        var dir = Directory.CreateTempSubdirectory("conduit-fedca-").FullName;
        try
        {
            var caFile = Path.Combine(dir, "ca.pem");
            server.Ca.WriteCaPem(caFile);
            using var client = new FederationClient(_dns, FederationHttp.LoadCaFile(caFile), _clock, null);
            // Explicit port: no well-known; the fake DNS gives 127.0.0.1 for delegated.test, on the test server's port.
            Assert.Equal($"delegated.test:{server.Port}", await client.Http.GetStringAsync($"matrix-federation://delegated.test:{server.Port}/_matrix/federation/v1/version"));

            using var systemOnly = new FederationClient(_dns, FederationHttp.LoadCaFile(null), _clock, null);
            await Assert.ThrowsAsync<HttpRequestException>(() => systemOnly.Http.GetStringAsync($"matrix-federation://delegated.test:{server.Port}/_matrix/federation/v1/version"));

            File.WriteAllText(Path.Combine(dir, "empty.pem"), "");
            Assert.Throws<InvalidDataException>(() => FederationHttp.LoadCaFile(Path.Combine(dir, "empty.pem")));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}

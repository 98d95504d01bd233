using System.Text.Json.Nodes;
using Conduit.Common.Http;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Conduit.Federation.Tests;

/// <summary>The HTTP fetcher against a loopback server playing both the remote server and a notary.</summary>
public sealed class HttpRemoteKeyFetcherTests : IAsyncLifetime
{
    readonly KeyWorld _w = new();
    WebApplication? _app;
    readonly HttpClient _http = new();
    readonly List<string> _asked = [];
    Uri _base = null!;

    public async Task InitializeAsync()
    {
        var remote = _w.Server("remote.org", reachable: false);
        (_app, _base) = await LoopbackHost.StartAsync(app =>
        {
            app.MapGet("/_matrix/key/v2/server", (HttpContext ctx) => ctx.Response.WriteJsonAsync(remote.KeyResponse()));
            app.MapGet("/_matrix/key/v2/query/{serverName}", (HttpContext ctx) =>
            {
                lock (_asked) _asked.Add($"{ctx.Request.RouteValues["serverName"]} {ctx.Request.Query["minimum_valid_until_ts"]}");
                return ctx.Response.WriteJsonAsync(new JsonObject { ["server_keys"] = new JsonArray((JsonNode)remote.KeyResponse()) });
            });
        });
    }

    [Fact]
    public async Task Fetches_directly_and_through_a_notary_at_the_resolved_base_url()
    {
        var resolved = new List<string>();
        var fetcher = new HttpRemoteKeyFetcher(_http, (name, _) => { resolved.Add(name); return ValueTask.FromResult(_base); });
        var direct = Assert.Single(await fetcher.FetchAsync("remote.org", null, 0, default));
        Assert.Equal("remote.org", direct["server_name"]!.GetValue<string>());
        var viaNotary = Assert.Single(await fetcher.FetchAsync("remote.org", "notary.org", 1234, default));
        Assert.True(RemoteKeyStore.IsValidResponse(viaNotary, "remote.org"));
        Assert.Equal(["remote.org", "notary.org"], resolved);
        Assert.Equal(["remote.org 1234"], _asked);
    }

    [Fact]
    public async Task An_unreachable_server_is_an_HttpRequestException()
    {
        var fetcher = new HttpRemoteKeyFetcher(_http, (_, _) => ValueTask.FromResult(new Uri("http://127.0.0.1:1")));
        await Assert.ThrowsAsync<HttpRequestException>(() => fetcher.FetchAsync("remote.org", null, 0, default));
    }

    public async Task DisposeAsync()
    {
        if (_app is not null) await _app.DisposeAsync();
        _http.Dispose();
        _w.Dispose();
    }
}

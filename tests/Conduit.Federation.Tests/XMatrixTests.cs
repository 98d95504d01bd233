using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common.Crypto;
using Conduit.Common.Http;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Conduit.Federation.Tests;

public sealed class XMatrixHeaderTests
{
    [Fact]
    public void The_spec_example_and_its_allowed_variations_parse()
    {
        Assert.True(XMatrix.TryParse("""X-Matrix origin="origin.hs.example.com",destination="destination.hs.example.com",key="ed25519:key1",sig="ABCDEF..." """.Trim(), out var a));
        Assert.Equal(new XMatrixAuth("origin.hs.example.com", "destination.hs.example.com", "ed25519:key1", "ABCDEF..."), a);
        // Case-insensitive scheme and names, any order, spaces and tabs around commas, unquoted values with colons,
        // escapes inside quotes, unknown parameters ignored, no destination (older servers).
        Assert.True(XMatrix.TryParse("x-matrix   KEY=ed25519:k1 ,\tSig=\"a\\\"b\\\\c\" , extra=1,origin=other.org:8448", out var b));
        Assert.Equal(new XMatrixAuth("other.org:8448", null, "ed25519:k1", "a\"b\\c"), b);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("Bearer abc")]
    [InlineData("X-Matrix")]
    [InlineData("X-Matrixorigin=\"a\",key=\"k\",sig=\"s\"")]
    [InlineData("X-Matrix origin=\"a\",key=\"k\"")]
    [InlineData("X-Matrix origin=\"a\",key=\"k\",sig=\"s")]
    [InlineData("X-Matrix origin=\"a\",key=\"k\",sig=\"s\",origin=\"b\"")]
    [InlineData("X-Matrix origin=\"a\";key=\"k\",sig=\"s\"")]
    [InlineData("X-Matrix origin=,key=\"k\",sig=\"s\"")]
    public void Malformed_headers_are_refused(string? header) => Assert.False(XMatrix.TryParse(header, out _));

    [Fact]
    public void The_header_written_for_a_request_parses_back()
    {
        using var key = SigningKey.Generate("k1");
        var header = XMatrix.Authorization(key, "a.org", "b.org", "GET", "/_matrix/federation/v1/x", null);
        Assert.StartsWith("X-Matrix origin=\"a.org\",destination=\"b.org\",key=\"ed25519:k1\",sig=\"", header);
        Assert.True(XMatrix.TryParse(header, out var auth));
        Assert.Equal(("a.org", "b.org", "ed25519:k1"), (auth!.Origin, auth.Destination, auth.KeyId));
    }
}

/// <summary>Signed requests to a small host whose one federation path is mapped behind <see cref="XMatrixVerifier"/>.</summary>
public sealed class XMatrixVerifierTests : IAsyncLifetime
{
    readonly KeyWorld _w = new();
    WebApplication? _app;
    readonly HttpClient _http = new();
    string _base = "";
    const string Path = "/_matrix/federation/v1/test/%21room%3Aa.org?limit=5&x=%20";

    public async Task InitializeAsync()
    {
        var verifier = new XMatrixVerifier(_w.Store, _w.Config);
        Uri baseUrl;
        (_app, baseUrl) = await LoopbackHost.StartAsync(app =>
        {
            app.UseMiddleware<ErrorMiddleware>();
            app.MapMethods("/_matrix/federation/v1/test/{**rest}", ["GET", "PUT"], verifier.Authenticated(async (ctx, origin) =>
                await ctx.Response.WriteJsonAsync(new JsonObject { ["origin"] = origin, ["body"] = (await ctx.Request.ReadJsonObjectAsync()).ToJsonString() })));
        });
        _base = baseUrl.ToString().TrimEnd('/');
    }

    async Task<(HttpStatusCode Status, JsonObject Body)> Send(string method, string? authorization, string? body)
    {
        using var req = new HttpRequestMessage(new HttpMethod(method), _base + Path);
        if (authorization is not null) req.Headers.TryAddWithoutValidation("Authorization", authorization);
        if (body is not null) req.Content = new StringContent(body, Encoding.UTF8, "application/json");
        using var res = await _http.SendAsync(req);
        return (res.StatusCode, JsonNode.Parse(await res.Content.ReadAsStringAsync())!.AsObject());
    }

    static string Sign(ServerKeys from, string destination, string method, string? body, SigningKey? key = null)
        => XMatrix.Authorization(key ?? from.Key, from.ServerName, destination, method, Path, body is null ? null : JsonNode.Parse(body));

    static void AssertUnauthorized((HttpStatusCode Status, JsonObject Body) r)
        => Assert.Equal((HttpStatusCode.Unauthorized, "M_UNAUTHORIZED"), (r.Status, r.Body["errcode"]?.GetValue<string>()));

    [Fact]
    public async Task A_signed_request_reaches_the_handler_with_its_origin_and_body()
    {
        var remote = _w.Server("remote.org");
        const string body = """{"pdus":[{"b":2,"a":1}]}""";
        var r = await Send("PUT", Sign(remote, "example.org", "PUT", body), body);
        Assert.Equal(HttpStatusCode.OK, r.Status);
        Assert.Equal("remote.org", r.Body["origin"]!.GetValue<string>());
        Assert.Equal(JsonNode.Parse(body)!.ToJsonString(), r.Body["body"]!.GetValue<string>());
        Assert.Equal(HttpStatusCode.OK, (await Send("GET", Sign(remote, "example.org", "GET", null), null)).Status);
    }

    [Fact]
    public async Task Tampered_requests_are_refused()
    {
        var remote = _w.Server("remote.org");
        AssertUnauthorized(await Send("PUT", Sign(remote, "example.org", "PUT", """{"a":1}"""), """{"a":2}"""));
        AssertUnauthorized(await Send("PUT", Sign(remote, "example.org", "GET", """{"a":1}"""), """{"a":1}"""));
        AssertUnauthorized(await Send("GET", Sign(remote, "example.org", "GET", """{"a":1}"""), null));
        AssertUnauthorized(await Send("GET", null, null));
        AssertUnauthorized(await Send("GET", "X-Matrix origin=\"remote.org\"", null));
    }

    [Fact]
    public async Task A_request_for_another_destination_is_refused()
    {
        var remote = _w.Server("remote.org");
        AssertUnauthorized(await Send("GET", Sign(remote, "elsewhere.org", "GET", null), null));
    }

    [Fact]
    public async Task Unknown_keys_and_keys_of_unreachable_servers_are_refused()
    {
        var remote = _w.Server("remote.org");
        using var stray = SigningKey.Generate("stray");
        AssertUnauthorized(await Send("GET", Sign(remote, "example.org", "GET", null, stray), null));
        var hidden = _w.Server("hidden.org", reachable: false);
        AssertUnauthorized(await Send("GET", Sign(hidden, "example.org", "GET", null), null));
    }

    [Fact]
    public async Task Old_and_expired_keys_do_not_sign_requests()
    {
        var remote = _w.Server("remote.org");
        var old = remote.Key;
        remote.Rotate();
        AssertUnauthorized(await Send("GET", Sign(remote, "example.org", "GET", null, old), null));
        Assert.Equal(HttpStatusCode.OK, (await Send("GET", Sign(remote, "example.org", "GET", null), null)).Status);

        var lapsed = _w.Server("lapsed.org");
        _w.Fetcher.Direct["lapsed.org"] = () =>
        {
            var r = lapsed.KeyResponse();
            r.Remove("signatures");
            r["valid_until_ts"] = Conduit.Common.Ids.NowMs() - 1000;
            lapsed.Sign(r);
            return r;
        };
        AssertUnauthorized(await Send("GET", Sign(lapsed, "example.org", "GET", null), null));
    }

    public async Task DisposeAsync()
    {
        if (_app is not null) await _app.DisposeAsync();
        _http.Dispose();
        _w.Dispose();
    }
}

using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Storage;
using Conduit.Common.Http;
using Conduit.Media.Previews;
using Microsoft.Extensions.Logging.Abstractions;
using SkiaSharp;

namespace Conduit.Media.Tests;

public sealed class UrlPreviewTests : IDisposable
{
    const string User = "@alice:test.local";
    readonly List<string> _dirs = [];
    readonly List<IDisposable> _owned = [];

    (UrlPreviewer Previewer, MediaStore Store) Make(Action<GlobalConfig>? configure = null, bool allowLoopback = true)
    {
        var config = new GlobalConfig { ServerName = "test.local", UrlPreview = true };
        if (allowLoopback) config.UrlPreviewIpRangeAllowlist = ["127.0.0.1/32"];
        configure?.Invoke(config);
        var dir = Directory.CreateTempSubdirectory("conduit-preview-").FullName;
        _dirs.Add(dir);
        var store = new MediaStore(KvStore.Open("memory", "", MediaFamilies.All), config, new MediaDirectory(dir));
        var previewer = new UrlPreviewer(store, config, NullLogger<UrlPreviewer>.Instance);
        _owned.Add(previewer);
        return (previewer, store);
    }

    PreviewTestServer Serve(Func<string, CannedResponse?> handler)
    {
        var s = new PreviewTestServer(handler);
        _owned.Add(s);
        return s;
    }

    public void Dispose()
    {
        foreach (var o in _owned) o.Dispose();
        foreach (var d in _dirs)
            try { Directory.Delete(d, recursive: true); }
            catch (IOException) { }
    }

    static byte[] Png(int width, int height)
    {
        using var bitmap = new SKBitmap(width, height);
        bitmap.Erase(SKColors.CornflowerBlue);
        using var image = SKImage.FromBitmap(bitmap);
        return image.Encode(SKEncodedImageFormat.Png, 100).ToArray();
    }

    static async Task<MatrixException> Fails(Task t, int status, string errcode)
    {
        var e = await Assert.ThrowsAsync<MatrixException>(() => t);
        Assert.Equal(status, e.Status);
        Assert.Equal(errcode, e.ErrCode);
        return e;
    }

    static string? Str(JsonObject o, string key) => o[key]?.GetValue<string>();

    const string OgPage = """
        <!doctype html>
        <html><head>
        <title>Not this one</title>
        <meta property="og:title" content="Matrix Blog Post">
        <meta content='This is a really cool blog post &amp; more' property='og:description'>
        <meta property="og:image" content="/img/logo.png">
        <meta property="og:image:width" content="9999">
        </head><body>hello</body></html>
        """;

    // ---- address and domain checks

    [Fact]
    public async Task Loopback_is_refused_by_the_default_deny_list_before_any_request()
    {
        var server = Serve(_ => CannedResponse.Html(OgPage));
        var (p, _) = Make(allowLoopback: false);
        await Fails(p.PreviewAsync(User, server.Url("/"), default), 403, "M_FORBIDDEN");
        // A name that resolves to loopback is checked on the resolved address.
        var e = await Fails(p.PreviewAsync(User, server.Url("/", host: "localhost"), default), 403, "M_FORBIDDEN");
        Assert.Contains("addresses localhost resolves to", e.Message);
        await Fails(p.PreviewAsync(User, $"http://[::ffff:127.0.0.1]:{server.Port}/", default), 403, "M_FORBIDDEN");
        Assert.Equal(0, server.Requests);
    }

    [Fact]
    public async Task The_ip_allow_list_lets_loopback_through_and_the_request_says_who_it_is()
    {
        var server = Serve(_ => CannedResponse.Html("<title>Hi</title>"));
        var (p, _) = Make();
        var og = await p.PreviewAsync(User, server.Url("/page"), default);
        Assert.Equal("Hi", Str(og, "og:title"));
        var (path, headers) = Assert.Single(server.Seen);
        Assert.Equal("/page", path);
        Assert.Contains("User-Agent: " + PreviewFetcher.UserAgent, headers);
        Assert.Contains("Accept: text/html", headers);
    }

    [Fact]
    public async Task A_redirect_to_a_denied_domain_is_refused()
    {
        var server = Serve(_ => CannedResponse.Redirect("http://evil.example/steal"));
        var (p, _) = Make(c => c.UrlPreviewDomainDenylist = ["example"]);
        var e = await Fails(p.PreviewAsync(User, server.Url("/"), default), 403, "M_FORBIDDEN");
        Assert.Contains("evil.example", e.Message);
        // The requested URL's own domain is checked too, subdomains included.
        await Fails(p.PreviewAsync(User, "https://www.sub.example/", default), 403, "M_FORBIDDEN");
    }

    [Fact]
    public async Task With_a_domain_allow_list_a_redirect_elsewhere_is_refused()
    {
        var port = 0;
        var server = Serve(path => path switch
        {
            "/away" => CannedResponse.Redirect($"http://127.0.0.1:{port}/final"),
            "/here" => CannedResponse.Redirect("/final"),
            _ => CannedResponse.Html("<title>Final</title>"),
        });
        port = server.Port;
        var (p, _) = Make(c => c.UrlPreviewDomainAllowlist = ["localhost"]);
        // localhost is allowed, and a redirect within it is followed...
        var og = await p.PreviewAsync(User, server.Url("/here", host: "localhost"), default);
        Assert.Equal("Final", Str(og, "og:title"));
        // ...but not one to a host the allow list does not name, even one that is the same address.
        await Fails(p.PreviewAsync(User, server.Url("/away", host: "localhost"), default), 403, "M_FORBIDDEN");
        await Fails(p.PreviewAsync(User, server.Url("/"), default), 403, "M_FORBIDDEN");
        Assert.Equal(3, server.Requests);
    }

    [Fact]
    public async Task Redirects_are_limited_and_only_to_http()
    {
        var server = Serve(path => path switch
        {
            "/file" => CannedResponse.Redirect("file:///etc/passwd"),
            "/nowhere" => new CannedResponse(302, null, []),
            _ => CannedResponse.Redirect("/loop" + path.Length, 301),
        });
        var (p, _) = Make();
        await Fails(p.PreviewAsync(User, server.Url("/file"), default), 502, "M_UNKNOWN");
        await Fails(p.PreviewAsync(User, server.Url("/nowhere"), default), 502, "M_UNKNOWN");
        var before = server.Requests;
        await Fails(p.PreviewAsync(User, server.Url("/x"), default), 502, "M_UNKNOWN");
        Assert.Equal(1 + PreviewFetcher.MaxRedirects, server.Requests - before);
    }

    [Theory]
    [InlineData("ftp://example.org/file")]
    [InlineData("file:///etc/passwd")]
    [InlineData("javascript:alert(1)")]
    [InlineData("not a url")]
    [InlineData("/relative/path")]
    [InlineData("http://user:pass@example.org/")]
    public async Task Only_absolute_http_and_https_urls_are_previewed(string url)
    {
        var (p, _) = Make();
        await Fails(p.PreviewAsync(User, url, default), 400, "M_INVALID_PARAM");
    }

    [Fact]
    public async Task An_overlong_url_is_refused()
    {
        var (p, _) = Make();
        await Fails(p.PreviewAsync(User, "https://example.org/" + new string('a', 2100), default), 400, "M_INVALID_PARAM");
    }

    [Fact]
    public async Task Upstream_errors_are_502()
    {
        var server = Serve(_ => new CannedResponse(500, "text/html", Encoding.UTF8.GetBytes("<title>oops</title>")));
        var (p, _) = Make();
        await Fails(p.PreviewAsync(User, server.Url("/"), default), 502, "M_UNKNOWN");
        // Nobody listening.
        var closed = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        closed.Start();
        var port = ((IPEndPoint)closed.LocalEndpoint).Port;
        closed.Stop();
        await Fails(p.PreviewAsync(User, $"http://127.0.0.1:{port}/", default), 502, "M_UNKNOWN");
    }

    [Fact]
    public async Task A_server_that_never_answers_times_out()
    {
        var server = Serve(_ => null);
        var (p, _) = Make();
        p.Timeout = TimeSpan.FromMilliseconds(500);
        var started = DateTime.UtcNow;
        await Fails(p.PreviewAsync(User, server.Url("/"), default), 504, "M_UNKNOWN");
        Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(5));
    }

    // ---- what is read

    [Fact]
    public async Task OpenGraph_data_is_read_and_the_image_stored_as_media_of_the_user()
    {
        var png = Png(40, 30);
        var server = Serve(path => path == "/img/logo.png" ? new CannedResponse(200, "image/png", png) : CannedResponse.Html(OgPage));
        var (p, store) = Make();
        var og = await p.PreviewAsync(User, server.Url("/post/1"), default);
        Assert.Equal("Matrix Blog Post", Str(og, "og:title"));
        Assert.Equal("This is a really cool blog post & more", Str(og, "og:description"));
        Assert.Equal("image/png", Str(og, "og:image:type"));
        Assert.Equal(40, og["og:image:width"]!.GetValue<int>());
        Assert.Equal(30, og["og:image:height"]!.GetValue<int>());
        Assert.Equal(png.Length, og["matrix:image:size"]!.GetValue<long>());
        var mxc = Str(og, "og:image")!;
        Assert.StartsWith("mxc://test.local/", mxc);
        var media = store.Get("test.local", mxc["mxc://test.local/".Length..]);
        Assert.NotNull(media);
        Assert.Equal(User, media.UserId);
        Assert.Equal("image/png", media.ContentType);
        Assert.True(store.Blobs.Exists(media.Sha256));
        Assert.Equal(png, await File.ReadAllBytesAsync(store.Blobs.PathOf(media.Sha256)));
        Assert.Contains(server.Seen, r => r.Path == "/img/logo.png");
    }

    [Fact]
    public async Task An_image_that_is_not_one_or_fails_is_left_out()
    {
        var server = Serve(path => path switch
        {
            "/fake.png" => new CannedResponse(200, "image/png", Encoding.UTF8.GetBytes("not a png")),
            "/gone.png" => new CannedResponse(404, "text/plain", []),
            "/a" => CannedResponse.Html("<meta property=og:title content=A><meta property=og:image content=/fake.png><meta property=og:image:width content=5>"),
            _ => CannedResponse.Html("<meta property=og:title content=B><meta property=og:image content=/gone.png>"),
        });
        var (p, _) = Make();
        var a = await p.PreviewAsync(User, server.Url("/a"), default);
        Assert.Equal("A", Str(a, "og:title"));
        Assert.Null(a["og:image"]);
        Assert.Null(a["og:image:width"]);
        var b = await p.PreviewAsync(User, server.Url("/b"), default);
        Assert.Equal("B", Str(b, "og:title"));
        Assert.Null(b["og:image"]);
    }

    [Fact]
    public async Task Title_and_description_fall_back_to_the_title_tag_and_meta_description()
    {
        const string html = """
            <HTML><HEAD>
            <!-- <meta property="og:title" content="commented out"> -->
            <script>var s = '<meta property="og:title" content="in a script">';</script>
            <TITLE>
              Caf&eacute; &amp; Bar &#8212; &quot;Home&quot;
            </TITLE>
            <META CONTENT="Cheap &lt;coffee&gt;" NAME=description>
            <meta name="og:site_name" content=Example>
            </HEAD></HTML>
            """;
        var server = Serve(_ => CannedResponse.Html(html));
        var (p, _) = Make();
        var og = await p.PreviewAsync(User, server.Url("/"), default);
        Assert.Equal("Café & Bar — \"Home\"", Str(og, "og:title"));
        Assert.Equal("Cheap <coffee>", Str(og, "og:description"));
        Assert.Equal("Example", Str(og, "og:site_name"));
    }

    [Fact]
    public async Task A_page_larger_than_the_spider_size_is_parsed_up_to_it()
    {
        var html = "<meta property=\"og:title\" content=\"Early\">" + new string(' ', 20_000)
            + "<meta property=\"og:description\" content=\"Too late\">";
        var server = Serve(_ => CannedResponse.Html(html));
        var (p, _) = Make(c => c.UrlPreviewMaxSpiderSize = 10_000);
        var og = await p.PreviewAsync(User, server.Url("/"), default);
        Assert.Equal("Early", Str(og, "og:title"));
        Assert.Null(og["og:description"]);
    }

    [Fact]
    public async Task An_image_larger_than_the_spider_size_is_left_out()
    {
        var png = Png(300, 300);
        var server = Serve(path => path == "/big.png" ? new CannedResponse(200, "image/png", png)
            : CannedResponse.Html("<meta property=og:title content=Big><meta property=og:image content=big.png>"));
        var (p, _) = Make(c => c.UrlPreviewMaxSpiderSize = png.Length - 1);
        var og = await p.PreviewAsync(User, server.Url("/page"), default);
        Assert.Equal("Big", Str(og, "og:title"));
        Assert.Null(og["og:image"]);
        var direct = await p.PreviewAsync(User, server.Url("/big.png"), default);
        Assert.Null(direct["og:image"]);
    }

    [Fact]
    public async Task A_url_that_is_an_image_previews_as_that_image()
    {
        var png = Png(16, 8);
        var server = Serve(_ => new CannedResponse(200, "image/png", png));
        var (p, store) = Make();
        var og = await p.PreviewAsync(User, server.Url("/pics/cat%20photo.png?size=large"), default);
        Assert.Equal("cat photo.png", Str(og, "og:title"));
        Assert.Equal(16, og["og:image:width"]!.GetValue<int>());
        Assert.Equal(8, og["og:image:height"]!.GetValue<int>());
        var mxc = Str(og, "og:image")!;
        Assert.NotNull(store.Get("test.local", mxc[(mxc.LastIndexOf('/') + 1)..]));
    }

    [Fact]
    public async Task Other_content_types_preview_as_nothing()
    {
        var server = Serve(_ => new CannedResponse(200, "application/pdf", Encoding.UTF8.GetBytes("%PDF-1.4 <title>x</title>")));
        var (p, _) = Make();
        Assert.Empty(await p.PreviewAsync(User, server.Url("/doc.pdf"), default));
    }

    [Fact]
    public async Task The_charset_comes_from_the_header_else_the_meta_tag()
    {
        var latin1 = Encoding.Latin1.GetBytes("<meta charset=\"iso-8859-1\"><title>Caf\u00e9 cr\u00e8me</title>");
        var server = Serve(path => path == "/header"
            ? new CannedResponse(200, "text/html; charset=windows-1252", Encoding.Latin1.GetBytes("<title>\u00e9t\u00e9</title>"))
            : new CannedResponse(200, "text/html", latin1));
        var (p, _) = Make();
        Assert.Equal("\u00e9t\u00e9", Str(await p.PreviewAsync(User, server.Url("/header"), default), "og:title"));
        Assert.Equal("Caf\u00e9 cr\u00e8me", Str(await p.PreviewAsync(User, server.Url("/meta"), default), "og:title"));
    }

    // ---- cache and sharing

    [Fact]
    public async Task A_second_request_is_answered_from_the_cache()
    {
        var server = Serve(_ => CannedResponse.Html("<title>Once</title>"));
        var (p, _) = Make();
        var first = await p.PreviewAsync(User, server.Url("/"), default);
        var second = await p.PreviewAsync("@bob:test.local", server.Url("/"), default);
        Assert.Equal("Once", Str(second, "og:title"));
        Assert.Equal(first.ToJsonString(), second.ToJsonString());
        Assert.Equal(1, server.Requests);
    }

    [Fact]
    public async Task Concurrent_requests_for_a_url_share_one_fetch()
    {
        var gate = new ManualResetEventSlim();
        var server = Serve(_ =>
        {
            gate.Wait(TimeSpan.FromSeconds(5));
            return CannedResponse.Html("<title>Shared</title>");
        });
        var (p, _) = Make();
        var calls = Enumerable.Range(0, 5).Select(_ => p.PreviewAsync(User, server.Url("/slow"), default)).ToArray();
        await Task.Delay(200);
        gate.Set();
        foreach (var og in await Task.WhenAll(calls)) Assert.Equal("Shared", Str(og, "og:title"));
        Assert.Equal(1, server.Requests);
    }

    // ---- the policy itself

    static readonly IpRangeList Ranges = new(["10.0.0.0/8", "192.168.1.7/24", "fd00::/8", "2001:db8::1"], "test");

    [Theory]
    [InlineData("10.255.0.1", true)]
    [InlineData("11.0.0.1", false)]
    [InlineData("192.168.1.200", true)]        // "192.168.1.7/24" is the /24 it is in
    [InlineData("192.168.2.1", false)]
    [InlineData("fd12:3456::1", true)]
    [InlineData("fe80::1", false)]
    [InlineData("2001:db8::1", true)]          // a bare address is a /128
    [InlineData("2001:db8::2", false)]
    [InlineData("::ffff:10.1.2.3", true)]      // v4-mapped: as its IPv4 address
    [InlineData("::ffff:11.1.2.3", false)]
    public void Ip_ranges_match_ipv4_ipv6_and_v4_mapped_addresses(string ip, bool inside)
        => Assert.Equal(inside, Ranges.Contains(IPAddress.Parse(ip)));

    [Theory]
    [InlineData("10.0.0.0/33")]
    [InlineData("example.org")]
    [InlineData("10.0.0.0/")]
    public void Bad_ranges_are_refused(string entry) => Assert.Throws<FormatException>(() => new IpRangeList([entry], "test"));

    [Theory]
    [InlineData("127.0.0.1", false)]
    [InlineData("10.1.2.3", false)]
    [InlineData("172.31.255.255", false)]
    [InlineData("172.32.0.1", true)]
    [InlineData("169.254.169.254", false)]
    [InlineData("100.64.0.1", false)]
    [InlineData("224.0.0.1", false)]
    [InlineData("0.0.0.0", false)]
    [InlineData("0.1.2.3", false)]
    [InlineData("8.8.8.8", true)]
    [InlineData("::1", false)]
    [InlineData("::", false)]
    [InlineData("fe80::1", false)]
    [InlineData("fd00::1", false)]
    [InlineData("2606:4700::1111", true)]
    [InlineData("::ffff:127.0.0.1", false)]
    [InlineData("::ffff:8.8.8.8", true)]
    [InlineData("2002:7f00:1::1", false)]      // 6to4 of 127.0.0.1
    [InlineData("2002:808:808::1", true)]      // 6to4 of 8.8.8.8
    [InlineData("64:ff9b::a00:1", false)]      // NAT64 of 10.0.0.1
    [InlineData("64:ff9b::808:808", true)]
    [InlineData("::a00:1", false)]             // v4-compatible 10.0.0.1
    public void The_default_deny_list(string ip, bool allowed)
        => Assert.Equal(allowed, new PreviewPolicy(new GlobalConfig()).IsAllowed(IPAddress.Parse(ip)));

    [Theory]
    [InlineData("127.0.0.1", true)]
    [InlineData("::ffff:127.0.0.1", true)]
    [InlineData("::1", true)]
    [InlineData("10.0.0.1", true)]
    [InlineData("0.0.0.0", false)]             // whatever the allow list says
    [InlineData("::ffff:0.0.0.0", false)]
    [InlineData("::", false)]
    public void The_allow_list_exempts_ranges_but_never_the_unspecified_addresses(string ip, bool allowed)
    {
        var policy = new PreviewPolicy(new GlobalConfig { UrlPreviewIpRangeAllowlist = ["127.0.0.1/32", "0.0.0.0/0", "::/0"] });
        Assert.Equal(allowed, policy.IsAllowed(IPAddress.Parse(ip)));
        Assert.False(new PreviewPolicy(new GlobalConfig { UrlPreviewIpRangeAllowlist = ["127.0.0.1/32"] }).IsAllowed(IPAddress.Parse("127.0.0.2")));
    }

    [Fact]
    public void Domains_match_themselves_and_their_subdomains()
    {
        var deny = new PreviewPolicy(new GlobalConfig { UrlPreviewDomainDenylist = ["Example.COM.", "*.internal"] });
        Assert.False(deny.IsDomainAllowed("example.com"));
        Assert.False(deny.IsDomainAllowed("a.b.example.com"));
        Assert.False(deny.IsDomainAllowed("db.internal"));
        Assert.True(deny.IsDomainAllowed("notexample.com"));
        Assert.True(deny.IsDomainAllowed("example.org"));

        var allow = new PreviewPolicy(new GlobalConfig { UrlPreviewDomainAllowlist = ["example.org"], UrlPreviewDomainDenylist = ["secret.example.org"] });
        Assert.True(allow.IsDomainAllowed("example.org"));
        Assert.True(allow.IsDomainAllowed("www.example.org"));
        Assert.False(allow.IsDomainAllowed("secret.example.org"));
        Assert.False(allow.IsDomainAllowed("example.com"));
        Assert.False(allow.IsDomainAllowed("badexample.org"));
        Assert.True(new PreviewPolicy(new GlobalConfig { UrlPreviewDomainAllowlist = ["*"] }).IsDomainAllowed("anything.test"));
    }
}

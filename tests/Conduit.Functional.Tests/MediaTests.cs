using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using Conduit.Media;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Conduit.Media.Thumbnails;
using Microsoft.Extensions.DependencyInjection;
using SkiaSharp;
using static Conduit.Functional.Tests.MatrixClient;

namespace Conduit.Functional.Tests;

/// <summary>The content repository through the edge (spec: client-server-api, "Content repository").</summary>
public abstract class MediaTests(ServerFixture server)
{
    /// <summary>Created IDs expire after 6 s so expiry is quick to see; URL previews on, with 127.0.0.2 (only) exempt from
    /// the default deny list, which keeps the rest of loopback out.</summary>
    public const string MediaConfig = """
        rate_limits = { enabled = false }
        media_unused_expiration_secs = 6
        url_preview = true
        url_preview_ip_range_allowlist = ["127.0.0.2/32"]
        """;
    const string Upload = "/_matrix/media/v3/upload";
    const string Authed = "/_matrix/client/v1/media";
    const string Legacy = "/_matrix/media/v3";

    public sealed record Fetched(HttpStatusCode Status, byte[] Bytes, HttpResponseMessage Response)
    {
        public string Header(string name)
            => Response.Headers.TryGetValues(name, out var v) ? string.Join(", ", v)
                : Response.Content.Headers.TryGetValues(name, out var c) ? string.Join(", ", c) : "";
        public JsonObject Json => JsonNode.Parse(Bytes)!.AsObject();
        public string? ErrCode => Status >= HttpStatusCode.BadRequest ? Json["errcode"]?.GetValue<string>() : null;
    }

    async Task<Fetched> Send(string method, string path, string? token, HttpContent? content = null, Action<HttpRequestMessage>? configure = null)
    {
        using var req = new HttpRequestMessage(new HttpMethod(method), server.BaseUrl + path) { Content = content };
        if (token is not null) req.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        configure?.Invoke(req);
        var resp = await server.Http.SendAsync(req);
        return new Fetched(resp.StatusCode, await resp.Content.ReadAsByteArrayAsync(), resp);
    }

    static ByteArrayContent Bytes(byte[] data, string? contentType)
    {
        var c = new ByteArrayContent(data);
        if (contentType is not null) c.Headers.TryAddWithoutValidation("Content-Type", contentType);
        return c;
    }

    async Task<string> UploadOk(MatrixClient u, byte[] data, string? contentType, string? fileName = null)
    {
        var r = await Send("POST", Upload + (fileName is null ? "" : "?filename=" + E(fileName)), u.Token, Bytes(data, contentType));
        Assert.True(r.Status == HttpStatusCode.OK, $"upload: {(int)r.Status} {Encoding.UTF8.GetString(r.Bytes)}");
        var uri = r.Json["content_uri"]!.GetValue<string>();
        Assert.StartsWith($"mxc://{server.ServerName}/", uri);
        return uri["mxc://".Length..];
    }

    static void Error(Fetched r, HttpStatusCode status, string errcode)
        => Assert.True(r.Status == status && r.ErrCode == errcode, $"expected {(int)status} {errcode}, got {(int)r.Status}: {Encoding.UTF8.GetString(r.Bytes)}");

    static void AssertSafeHeaders(Fetched r)
    {
        Assert.StartsWith("sandbox; default-src 'none'; script-src 'none';", r.Header("Content-Security-Policy"));
        Assert.Equal("nosniff", r.Header("X-Content-Type-Options"));
        Assert.Equal("cross-origin", r.Header("Cross-Origin-Resource-Policy"));
    }

    // ---- upload and download

    [Fact]
    public async Task An_upload_downloads_byte_identical_on_every_path()
    {
        var u = await Register(server);
        var data = new byte[300_000];
        Random.Shared.NextBytes(data);
        var id = await UploadOk(u, data, "application/pdf", "report.pdf");
        foreach (var path in new[] { $"{Authed}/download/{id}", $"{Authed}/download/{id}/other.pdf", $"{Legacy}/download/{id}", $"/_matrix/media/r0/download/{id}" })
        {
            var r = await Send("GET", path, path.StartsWith(Authed, StringComparison.Ordinal) ? u.Token : null);
            Assert.Equal(HttpStatusCode.OK, r.Status);
            Assert.Equal(data, r.Bytes);
            Assert.Equal("application/pdf", r.Header("Content-Type"));
            // Not a type that is safe inline: an attachment, under the name given at upload or in the path.
            Assert.Equal(path.EndsWith("other.pdf", StringComparison.Ordinal) ? "attachment; filename=\"other.pdf\"" : "attachment; filename=\"report.pdf\"", r.Header("Content-Disposition"));
            AssertSafeHeaders(r);
            Assert.Contains("max-age=", r.Header("Cache-Control"));
        }
        // r0 upload too, without a content type or name.
        var r0 = await Send("POST", "/_matrix/media/r0/upload", u.Token, Bytes([1, 2, 3], null));
        var plain = await Send("GET", $"{Authed}/download/{r0.Json["content_uri"]!.GetValue<string>()["mxc://".Length..]}", u.Token);
        Assert.Equal([1, 2, 3], plain.Bytes);
        Assert.Equal(("application/octet-stream", "attachment"), (plain.Header("Content-Type"), plain.Header("Content-Disposition")));
    }

    [Fact]
    public async Task Authenticated_downloads_need_a_valid_token()
    {
        var u = await Register(server);
        var id = await UploadOk(u, [1, 2, 3], "text/plain");
        Error(await Send("GET", $"{Authed}/download/{id}", null), HttpStatusCode.Unauthorized, "M_MISSING_TOKEN");
        Error(await Send("GET", $"{Authed}/download/{id}", "not-a-token"), HttpStatusCode.Unauthorized, "M_UNKNOWN_TOKEN");
        Error(await Send("GET", $"{Authed}/thumbnail/{id}?width=32&height=32", null), HttpStatusCode.Unauthorized, "M_MISSING_TOKEN");
        Error(await Send("GET", $"{Authed}/config", null), HttpStatusCode.Unauthorized, "M_MISSING_TOKEN");
        Error(await Send("POST", Upload, null, Bytes([1], "text/plain")), HttpStatusCode.Unauthorized, "M_MISSING_TOKEN");
        Error(await Send("POST", "/_matrix/media/v1/create", null), HttpStatusCode.Unauthorized, "M_MISSING_TOKEN");
        // Another user may download it (knowing the mxc URI is enough, as the spec says).
        var other = await Register(server);
        Assert.Equal(HttpStatusCode.OK, (await Send("GET", $"{Authed}/download/{id}", other.Token)).Status);
    }

    [Fact]
    public async Task Hostile_file_names_and_content_types_are_served_safely()
    {
        var u = await Register(server);
        var html = "<html><script>alert(document.cookie)</script></html>"u8.ToArray();
        var id = await UploadOk(u, html, "text/html", "x\"; filename=evil.html\r\nSet-Cookie: a=b");
        var r = await Send("GET", $"{Authed}/download/{id}", u.Token);
        Assert.Equal(html, r.Bytes);
        Assert.Equal("text/html", r.Header("Content-Type"));
        var disposition = r.Header("Content-Disposition");
        Assert.StartsWith("attachment; filename=\"x_; filename=evil.html__Set-Cookie: a=b\"", disposition);
        Assert.False(r.Response.Headers.Contains("Set-Cookie"));
        AssertSafeHeaders(r);

        // SVG can carry script: never inline. A content type that is not a media type is stored as octet-stream.
        var svg = await UploadOk(u, "<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>"u8.ToArray(), "image/svg+xml", "a.svg");
        Assert.StartsWith("attachment", (await Send("GET", $"{Authed}/download/{svg}", u.Token)).Header("Content-Disposition"));
        var junk = await UploadOk(u, [1], "text/html<script>");
        Assert.Equal("application/octet-stream", (await Send("GET", $"{Authed}/download/{junk}", u.Token)).Header("Content-Type"));
        // A safe type is inline, and a non-ASCII name is encoded per RFC 6266.
        var text = await UploadOk(u, "hello"u8.ToArray(), "text/plain", "gr\u00fc\u00dfe.txt");
        Assert.Equal("inline; filename=\"gr__e.txt\"; filename*=UTF-8''gr%C3%BC%C3%9Fe.txt", (await Send("GET", $"{Authed}/download/{text}", u.Token)).Header("Content-Disposition"));
        // A path-override name with a slash or a control character.
        var r2 = await Send("GET", $"{Authed}/download/{text}/..%2F..%0Aevil.html", u.Token);
        Assert.Equal(HttpStatusCode.OK, r2.Status);
        var d2 = r2.Header("Content-Disposition");
        Assert.StartsWith("inline; filename=\"", d2);
        Assert.DoesNotContain('/', d2);
        Assert.DoesNotContain('\n', d2);
    }

    [Fact]
    public async Task Unknown_invalid_and_remote_media_are_refused()
    {
        var u = await Register(server);
        Error(await Send("GET", $"{Authed}/download/{server.ServerName}/NoSuchMedia", u.Token), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Error(await Send("GET", $"{Authed}/download/{server.ServerName}/bad.id", u.Token), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Error(await Send("GET", $"{Authed}/download/{server.ServerName}/..%2F..%2Fetc", u.Token), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Error(await Send("GET", $"{Authed}/download/bad%20server/abc", u.Token), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        // Media of other servers comes with federation.
        Error(await Send("GET", $"{Authed}/download/other.example/abc", u.Token), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Error(await Send("GET", $"{Authed}/thumbnail/other.example/abc?width=32&height=32", u.Token), HttpStatusCode.NotFound, "M_NOT_FOUND");
    }

    [Fact]
    public async Task Range_and_conditional_requests_are_answered()
    {
        var u = await Register(server);
        var data = Enumerable.Range(0, 1000).Select(i => (byte)i).ToArray();
        var id = await UploadOk(u, data, "application/octet-stream");
        var part = await Send("GET", $"{Authed}/download/{id}", u.Token, configure: r => r.Headers.Range = new RangeHeaderValue(100, 199));
        Assert.Equal(HttpStatusCode.PartialContent, part.Status);
        Assert.Equal(data[100..200], part.Bytes);
        Assert.Equal("bytes 100-199/1000", part.Header("Content-Range"));
        var tail = await Send("GET", $"{Legacy}/download/{id}", null, configure: r => r.Headers.Range = new RangeHeaderValue(null, 10));
        Assert.Equal(data[990..], tail.Bytes);
        var unsatisfiable = await Send("GET", $"{Authed}/download/{id}", u.Token, configure: r => r.Headers.Range = new RangeHeaderValue(5000, 6000));
        Assert.Equal(HttpStatusCode.RequestedRangeNotSatisfiable, unsatisfiable.Status);
        var full = await Send("GET", $"{Authed}/download/{id}", u.Token);
        var etag = full.Response.Headers.ETag!;
        var again = await Send("GET", $"{Authed}/download/{id}", u.Token, configure: r => r.Headers.IfNoneMatch.Add(etag));
        Assert.Equal(HttpStatusCode.NotModified, again.Status);
        Assert.Empty(again.Bytes);
    }

    [Fact]
    public async Task The_size_limit_is_advertised_and_enforced()
    {
        var u = await Register(server);
        var config = await Send("GET", $"{Authed}/config", u.Token);
        Assert.Equal(server.MaxRequestSize, config.Json["m.upload.size"]!.GetValue<long>());
        Assert.Equal(server.MaxRequestSize, (await Send("GET", $"{Legacy}/config", null)).Json["m.upload.size"]!.GetValue<long>());
        var big = new byte[server.MaxRequestSize + 1];
        Error(await Send("POST", Upload, u.Token, Bytes(big, "application/octet-stream")), HttpStatusCode.RequestEntityTooLarge, "M_TOO_LARGE");
        // Chunked, so the size is only known while reading.
        var chunked = new StreamContent(new MemoryStream(big));
        chunked.Headers.ContentLength = null;
        Error(await Send("POST", Upload, u.Token, chunked, r => r.Headers.TransferEncodingChunked = true), HttpStatusCode.RequestEntityTooLarge, "M_TOO_LARGE");
        // Exactly at the limit is fine.
        var exact = new byte[server.MaxRequestSize];
        var id = await UploadOk(u, exact, "application/octet-stream");
        Assert.Equal(exact.Length, (await Send("GET", $"{Authed}/download/{id}", u.Token)).Bytes.Length);
    }

    [Fact]
    public async Task Identical_uploads_are_stored_once()
    {
        var u = await Register(server);
        var data = Encoding.UTF8.GetBytes("same content " + Guid.NewGuid());
        var a = await UploadOk(u, data, "text/plain", "a.txt");
        var b = await UploadOk(u, data, "text/csv", "b.csv");
        Assert.NotEqual(a, b);
        var ra = await Send("GET", $"{Authed}/download/{a}", u.Token);
        var rb = await Send("GET", $"{Authed}/download/{b}", u.Token);
        Assert.Equal(data, ra.Bytes);
        Assert.Equal(data, rb.Bytes);
        Assert.Equal(("text/plain", "text/csv"), (ra.Header("Content-Type"), rb.Header("Content-Type")));
        Assert.Equal(ra.Response.Headers.ETag, rb.Response.Headers.ETag);
        if (server is AllInOneFixture aio)
        {
            var store = aio.Services.GetRequiredService<MediaStore>();
            var sha = store.Get(server.ServerName, a.Split('/')[1])!.Sha256;
            Assert.Single(Directory.EnumerateFiles(store.Blobs.Root, sha, SearchOption.AllDirectories));
        }
    }

    // ---- asynchronous upload

    [Fact]
    public async Task Created_ids_take_one_upload_from_their_creator()
    {
        var u = await Register(server);
        var other = await Register(server);
        var created = await Send("POST", "/_matrix/media/v1/create", u.Token);
        Assert.Equal(HttpStatusCode.OK, created.Status);
        var id = created.Json["content_uri"]!.GetValue<string>()["mxc://".Length..];
        var expires = created.Json["unused_expires_at"]!.GetValue<long>();
        Assert.InRange(expires - DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), 1000, 7000);

        // Not uploaded yet: a download that will not wait answers M_NOT_YET_UPLOADED.
        Error(await Send("GET", $"{Authed}/download/{id}?timeout_ms=0", u.Token), HttpStatusCode.GatewayTimeout, "M_NOT_YET_UPLOADED");
        // A download that waits gets the content as soon as it lands.
        var waiting = Send("GET", $"{Authed}/download/{id}?timeout_ms=20000", other.Token);
        Error(await Send("PUT", $"{Upload}/{id}", other.Token, Bytes([9], "text/plain")), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        Assert.Equal(HttpStatusCode.OK, (await Send("PUT", $"{Upload}/{id}?filename=late.txt", u.Token, Bytes("late"u8.ToArray(), "text/plain"))).Status);
        var got = await waiting;
        Assert.Equal(("late", "inline; filename=\"late.txt\""), (Encoding.UTF8.GetString(got.Bytes), got.Header("Content-Disposition")));
        Error(await Send("PUT", $"{Upload}/{id}", u.Token, Bytes([1], "text/plain")), HttpStatusCode.Conflict, "M_CANNOT_OVERWRITE_MEDIA");
        Error(await Send("PUT", $"{Upload}/{server.ServerName}/NeverCreated", u.Token, Bytes([1], "text/plain")), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Error(await Send("PUT", $"{Upload}/other.example/abc", u.Token, Bytes([1], "text/plain")), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Assert.Equal("late", Encoding.UTF8.GetString((await Send("GET", $"{Authed}/download/{id}", u.Token)).Bytes));
    }

    [Fact]
    public async Task Pending_ids_are_limited_per_user_and_expire()
    {
        var u = await Register(server);
        var ids = new List<string>();
        for (var i = 0; i < 5; i++)
            ids.Add((await Send("POST", "/_matrix/media/v1/create", u.Token)).Json["content_uri"]!.GetValue<string>()["mxc://".Length..]);
        var refused = await Send("POST", "/_matrix/media/v1/create", u.Token);
        Error(refused, HttpStatusCode.TooManyRequests, "M_LIMIT_EXCEEDED");
        Assert.True(refused.Json["retry_after_ms"]!.GetValue<long>() > 0);
        // Another user has their own allowance; an upload frees a slot.
        Assert.Equal(HttpStatusCode.OK, (await Send("POST", "/_matrix/media/v1/create", (await Register(server)).Token)).Status);
        Assert.Equal(HttpStatusCode.OK, (await Send("PUT", $"{Upload}/{ids[0]}", u.Token, Bytes([1], "text/plain"))).Status);
        Assert.Equal(HttpStatusCode.OK, (await Send("POST", "/_matrix/media/v1/create", u.Token)).Status);

        // media_unused_expiration_secs = 6: the unused IDs expire, then uploading to one is M_NOT_FOUND.
        var deadline = DateTime.UtcNow.AddSeconds(60);
        Fetched r;
        // ids[4] was created last: once it has expired, so have the others.
        while ((r = await Send("GET", $"{Authed}/download/{ids[4]}?timeout_ms=0", u.Token)).Status == HttpStatusCode.GatewayTimeout && DateTime.UtcNow < deadline)
            await Task.Delay(250);
        Error(r, HttpStatusCode.NotFound, "M_NOT_FOUND");
        Error(await Send("PUT", $"{Upload}/{ids[2]}", u.Token, Bytes([1], "text/plain")), HttpStatusCode.NotFound, "M_NOT_FOUND");
        // The four expired IDs no longer count (the one created after the upload may not have expired yet).
        for (var i = 0; i < 4; i++) Assert.Equal(HttpStatusCode.OK, (await Send("POST", "/_matrix/media/v1/create", u.Token)).Status);
    }

    // ---- URL previews

    /// <summary>A web page served by the test on a loopback address, with OpenGraph tags and an image.</summary>
    static async Task<WebApplication> PageServer(string address)
    {
        var b = WebApplication.CreateSlimBuilder();
        b.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Parse(address), 0));
        b.Logging.ClearProviders();
        var app = b.Build();
        var png = TestImages.Png(400, 300);
        app.MapGet("/page", () => Results.Content("""
            <html><head><title>Fallback</title>
            <meta property="og:title" content="A page &amp; its title">
            <meta property="og:description" content="Served by the test">
            <meta property="og:image" content="/pic.png">
            </head><body>hello</body></html>
            """, "text/html; charset=utf-8"));
        app.MapGet("/pic.png", () => Results.Bytes(png, "image/png"));
        await app.StartAsync();
        return app;
    }

    static string UrlOf(WebApplication app, string path)
        => app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First().TrimEnd('/') + path;

    [Fact]
    public async Task Url_previews_reach_only_allowed_addresses()
    {
        var u = await Register(server);
        await using var denied = await PageServer("127.0.0.1");
        await using var allowed = await PageServer("127.0.0.2");
        // 127.0.0.1 is loopback, in the default deny list: refused, and nothing is fetched.
        var refused = await Send("GET", $"{Authed}/preview_url?url={E(UrlOf(denied, "/page"))}", u.Token);
        Error(refused, HttpStatusCode.Forbidden, "M_FORBIDDEN");
        // 127.0.0.2 is exempt (url_preview_ip_range_allowlist): the page's OpenGraph data, its image stored as media.
        var r = await Send("GET", $"{Authed}/preview_url?url={E(UrlOf(allowed, "/page"))}", u.Token);
        Assert.True(r.Status == HttpStatusCode.OK, Encoding.UTF8.GetString(r.Bytes));
        var og = r.Json;
        Assert.Equal(("A page & its title", "Served by the test"), (og["og:title"]!.GetValue<string>(), og["og:description"]!.GetValue<string>()));
        var mxc = og["og:image"]!.GetValue<string>();
        Assert.StartsWith($"mxc://{server.ServerName}/", mxc);
        Assert.Equal((400, 300), (og["og:image:width"]!.GetValue<int>(), og["og:image:height"]!.GetValue<int>()));
        var image = await Send("GET", $"{Authed}/download/{mxc["mxc://".Length..]}", u.Token);
        Assert.Equal((400, 300), (TestImages.Inspect(image.Bytes).Width, TestImages.Inspect(image.Bytes).Height));
        // Other schemes, and no token.
        Error(await Send("GET", $"{Authed}/preview_url?url={E("file:///etc/passwd")}", u.Token), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Error(await Send("GET", $"{Authed}/preview_url?url={E(UrlOf(allowed, "/page"))}", null), HttpStatusCode.Unauthorized, "M_MISSING_TOKEN");
        Error(await Send("GET", $"{Authed}/preview_url", u.Token), HttpStatusCode.BadRequest, "M_MISSING_PARAM");
    }

    // ---- thumbnails

    public static TheoryData<string> Formats => new() { "jpeg", "png", "gif", "webp" };

    static (byte[] Bytes, string Type) Image(string format, int w, int h) => format switch
    {
        "jpeg" => (TestImages.Jpeg(w, h), "image/jpeg"),
        "png" => (TestImages.Png(w, h, alpha: true), "image/png"),
        "gif" => (TestImages.Gif(w, h), "image/gif"),
        _ => (TestImages.Webp(w, h), "image/webp"),
    };

    [Theory]
    [MemberData(nameof(Formats))]
    public async Task Thumbnails_are_made_in_every_format_at_the_specs_sizes(string format)
    {
        var u = await Register(server);
        var (bytes, type) = Image(format, 1000, 500);
        var id = await UploadOk(u, bytes, type, "picture." + format);
        // Opaque images become JPEG, the others PNG.
        var expectType = format is "jpeg" or "webp" ? "image/jpeg" : "image/png";
        var expectFormat = format is "jpeg" or "webp" ? SKEncodedImageFormat.Jpeg : SKEncodedImageFormat.Png;
        foreach (var (w, h, method, ew, eh) in new[]
        {
            (32, 32, "crop", 32, 32), (96, 96, "crop", 96, 96), (50, 40, "crop", 96, 96),
            (320, 240, "scale", 320, 160), (640, 480, "scale", 640, 320), (800, 600, "scale", 800, 400), (100, 100, "scale", 320, 160),
        })
        {
            var r = await Send("GET", $"{Authed}/thumbnail/{id}?width={w}&height={h}&method={method}", u.Token);
            Assert.True(r.Status == HttpStatusCode.OK, $"{w}x{h} {method}: {(int)r.Status} {Encoding.UTF8.GetString(r.Bytes)}");
            Assert.Equal(expectType, r.Header("Content-Type"));
            Assert.Equal("inline", r.Header("Content-Disposition"));
            AssertSafeHeaders(r);
            var (tw, th, _, f) = TestImages.Inspect(r.Bytes);
            Assert.Equal((ew, eh, expectFormat), (tw, th, f));
        }
        // The legacy path serves the same thumbnail; a request larger than every size gets the original.
        var legacy = await Send("GET", $"{Legacy}/thumbnail/{id}?width=96&height=96&method=crop", null);
        Assert.Equal((96, 96), (TestImages.Inspect(legacy.Bytes).Width, TestImages.Inspect(legacy.Bytes).Height));
        var original = await Send("GET", $"{Authed}/thumbnail/{id}?width=1000&height=1000", u.Token);
        Assert.Equal(bytes, original.Bytes);
        Assert.Equal(type, original.Header("Content-Type"));
    }

    [Fact]
    public async Task Each_thumbnail_is_made_once_and_served_from_storage()
    {
        var u = await Register(server);
        var id = await UploadOk(u, TestImages.Jpeg(1200, 900), "image/jpeg");
        var first = await Send("GET", $"{Authed}/thumbnail/{id}?width=320&height=240&method=scale", u.Token);
        var second = await Send("GET", $"{Authed}/thumbnail/{id}?width=300&height=200&method=scale", u.Token);
        Assert.Equal(first.Bytes, second.Bytes);
        Assert.Equal(first.Response.Headers.ETag, second.Response.Headers.ETag);
        if (server is AllInOneFixture aio)
        {
            var store = aio.Services.GetRequiredService<MediaStore>();
            var mediaId = id.Split('/')[1];
            ThumbnailRecord? Stored(string name) => store.GetThumbnail(server.ServerName, mediaId, ThumbnailSize.Standard.Single(s => s.Name == name));
            Assert.NotNull(Stored("320x240-scale"));
            // Sizes nobody asked for are not made, except the two made at upload (in the background).
            Assert.Null(Stored("32x32-crop"));
            Assert.Null(Stored("640x480-scale"));
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while ((Stored("800x600-scale") is null || Stored("96x96-crop") is null) && DateTime.UtcNow < deadline) await Task.Delay(50);
            Assert.NotNull(Stored("800x600-scale"));
            Assert.NotNull(Stored("96x96-crop"));
        }
    }

    [Fact]
    public async Task Images_smaller_than_the_request_are_served_as_they_are()
    {
        var u = await Register(server);
        var png = TestImages.Png(80, 60);
        var id = await UploadOk(u, png, "image/png");
        var r = await Send("GET", $"{Authed}/thumbnail/{id}?width=96&height=96&method=crop", u.Token);
        Assert.Equal(png, r.Bytes);
        r = await Send("GET", $"{Authed}/thumbnail/{id}?width=320&height=240&method=scale", u.Token);
        Assert.Equal(png, r.Bytes);
        // Never upscaled: a 32x32 crop of it is 32x32.
        r = await Send("GET", $"{Authed}/thumbnail/{id}?width=32&height=32&method=crop", u.Token);
        Assert.Equal((32, 32), (TestImages.Inspect(r.Bytes).Width, TestImages.Inspect(r.Bytes).Height));
    }

    [Fact]
    public async Task Animated_images_are_animated_only_when_asked()
    {
        var u = await Register(server);
        var gif = TestImages.Gif(200, 150, frames: 3);
        Assert.Equal(3, TestImages.Inspect(gif).Frames);
        var id = await UploadOk(u, gif, "image/gif");
        var animated = await Send("GET", $"{Authed}/thumbnail/{id}?width=96&height=96&method=crop&animated=true", u.Token);
        Assert.Equal(gif, animated.Bytes);
        Assert.Equal("image/gif", animated.Header("Content-Type"));
        var still = await Send("GET", $"{Authed}/thumbnail/{id}?width=96&height=96&method=crop&animated=false", u.Token);
        Assert.Equal("image/png", still.Header("Content-Type"));
        Assert.Equal((96, 96, 1), (TestImages.Inspect(still.Bytes).Width, TestImages.Inspect(still.Bytes).Height, TestImages.Inspect(still.Bytes).Frames));
        // Larger than every size and animation not asked for: the first frame at full size, not the animation.
        var big = await Send("GET", $"{Authed}/thumbnail/{id}?width=1000&height=1000", u.Token);
        Assert.Equal((200, 150, 1, SKEncodedImageFormat.Png), TestImages.Inspect(big.Bytes));
        // A still image asked for animated is served as if animated=false.
        var jpeg = await UploadOk(u, TestImages.Jpeg(400, 300), "image/jpeg");
        var r = await Send("GET", $"{Authed}/thumbnail/{jpeg}?width=32&height=32&method=crop&animated=true", u.Token);
        Assert.Equal((32, 32, 1, SKEncodedImageFormat.Jpeg), TestImages.Inspect(r.Bytes));
    }

    [Fact]
    public async Task Decompression_bombs_corrupt_images_and_non_images_get_clean_errors()
    {
        var u = await Register(server);
        // 6000x6000 = 36 Mpx (over max_image_pixels, 32 Mpx) in about 100 KB: refused from its header, never decoded.
        var bomb = TestImages.PngBomb(6000, 6000);
        Assert.True(bomb.Length < 200_000);
        var id = await UploadOk(u, bomb, "image/png");
        Error(await Send("GET", $"{Authed}/thumbnail/{id}?width=96&height=96&method=crop", u.Token), HttpStatusCode.RequestEntityTooLarge, "M_TOO_LARGE");
        // The file itself is still downloadable as it was uploaded.
        Assert.Equal(bomb, (await Send("GET", $"{Authed}/download/{id}", u.Token)).Bytes);
        var corrupt = await UploadOk(u, TestImages.CorruptPng(500, 500), "image/png");
        Error(await Send("GET", $"{Authed}/thumbnail/{corrupt}?width=96&height=96&method=crop", u.Token), HttpStatusCode.BadRequest, "M_UNKNOWN");
        var text = await UploadOk(u, "not an image"u8.ToArray(), "image/png");
        Error(await Send("GET", $"{Authed}/thumbnail/{text}?width=96&height=96", u.Token), HttpStatusCode.BadRequest, "M_UNKNOWN");
        var svg = await UploadOk(u, "<svg xmlns='http://www.w3.org/2000/svg' width='500' height='500'/>"u8.ToArray(), "image/svg+xml");
        Error(await Send("GET", $"{Authed}/thumbnail/{svg}?width=96&height=96", u.Token), HttpStatusCode.BadRequest, "M_UNKNOWN");
        // The server still works after all that.
        var ok = await UploadOk(u, TestImages.Jpeg(300, 300), "image/jpeg");
        Assert.Equal(HttpStatusCode.OK, (await Send("GET", $"{Authed}/thumbnail/{ok}?width=96&height=96&method=crop", u.Token)).Status);
    }

    [Fact]
    public async Task Bad_thumbnail_parameters_are_refused()
    {
        var u = await Register(server);
        var id = await UploadOk(u, TestImages.Jpeg(300, 300), "image/jpeg");
        Error(await Send("GET", $"{Authed}/thumbnail/{id}?height=32", u.Token), HttpStatusCode.BadRequest, "M_MISSING_PARAM");
        Error(await Send("GET", $"{Authed}/thumbnail/{id}?width=-1&height=32", u.Token), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Error(await Send("GET", $"{Authed}/thumbnail/{id}?width=1.5&height=32", u.Token), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Error(await Send("GET", $"{Authed}/thumbnail/{id}?width=32&height=32&method=stretch", u.Token), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Error(await Send("GET", $"{Authed}/thumbnail/{id}?width=32&height=32&animated=yes", u.Token), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Error(await Send("GET", $"{Authed}/download/{id}?timeout_ms=soon", u.Token), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
    }
}

/// <summary>The media tests' server (<see cref="MediaTests.MediaConfig"/>).</summary>
public sealed class MediaAllInOneFixture : AllInOneFixture
{
    protected override string ExtraConfig => MediaTests.MediaConfig;
}

public sealed class MediaSplitFixture : SplitFixture
{
    protected override string ExtraConfig => MediaTests.MediaConfig;
}

/// <summary>allow_legacy_media = false: the unauthenticated paths are gone, the authenticated ones and uploads stay.</summary>
public sealed class LegacyMediaOffTests : IAsyncLifetime
{
    sealed class Fixture : AllInOneFixture
    {
        protected override string ExtraConfig => "rate_limits = { enabled = false }\nallow_legacy_media = false";
    }

    readonly Fixture _server = new();
    public Task InitializeAsync() => _server.InitializeAsync();
    public Task DisposeAsync() => _server.DisposeAsync();

    [Fact]
    public async Task Legacy_paths_answer_not_found_when_turned_off()
    {
        var u = await Register(_server);
        using var up = new HttpRequestMessage(HttpMethod.Post, _server.BaseUrl + "/_matrix/media/v3/upload") { Content = new ByteArrayContent([1, 2, 3]) };
        up.Headers.Authorization = new AuthenticationHeaderValue("Bearer", u.Token);
        using var upResp = await _server.Http.SendAsync(up);
        var id = JsonNode.Parse(await upResp.Content.ReadAsStringAsync())!["content_uri"]!.GetValue<string>()["mxc://".Length..];
        foreach (var path in new[] { $"/_matrix/media/v3/download/{id}", $"/_matrix/media/r0/download/{id}", $"/_matrix/media/v3/thumbnail/{id}?width=32&height=32", "/_matrix/media/v3/config" })
        {
            var r = await new MatrixClient(_server).Call("GET", path, auth: false);
            Assert.True(r.Status == HttpStatusCode.NotFound && r.ErrCode == "M_NOT_FOUND", $"{path}: {(int)r.Status} {r.Body}");
        }
        using var req = new HttpRequestMessage(HttpMethod.Get, _server.BaseUrl + "/_matrix/client/v1/media/download/" + id);
        req.Headers.Authorization = new AuthenticationHeaderValue("Bearer", u.Token);
        using var resp = await _server.Http.SendAsync(req);
        Assert.Equal([1, 2, 3], await resp.Content.ReadAsByteArrayAsync());
    }
}

public sealed class AllInOneMediaTests(MediaAllInOneFixture f) : MediaTests(f), IClassFixture<MediaAllInOneFixture>;

public sealed class SplitMediaTests(MediaSplitFixture f) : MediaTests(f), IClassFixture<MediaSplitFixture>;

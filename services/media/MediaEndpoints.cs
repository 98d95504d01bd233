using System.Globalization;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Http;
using Conduit.Common.Routing;
using Conduit.Media.Previews;
using Conduit.Media.Thumbnails;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Routing;
using Microsoft.Net.Http.Headers;

namespace Conduit.Media;

/// <summary>
/// The content repository (spec: client-server-api, "Content repository"): uploads (direct, and to an ID created
/// first), downloads and thumbnails on the authenticated /_matrix/client/v1/media paths and, unless
/// allow_legacy_media = false, on the deprecated unauthenticated /_matrix/media/{v3,r0} ones; the upload limit; URL
/// previews. Bodies stream to disk (<see cref="Storage.BlobStore"/>); files stream back with ranges.
/// </summary>
public sealed class MediaEndpoints(MediaStore store, ThumbnailService thumbnails, UrlPreviewer previews, GlobalConfig config, RateLimits limits, RemoteMedia remote)
{
    /// <summary>The longest a download waits for an upload to a created ID (timeout_ms beyond this is cut to it).</summary>
    static readonly TimeSpan MaxWait = TimeSpan.FromSeconds(60);

    public void Map(IEndpointRouteBuilder app)
    {
        app.Map(RouteTable.MediaUpload, Upload);
        app.Map(RouteTable.MediaUploadTo, UploadTo);
        app.Map(RouteTable.MediaCreate, Create);
        app.Map(RouteTable.MediaConfig, ctx => Config(ctx, authenticated: true));
        app.Map(RouteTable.LegacyMediaConfig, ctx => Config(ctx, authenticated: false));
        app.Map(RouteTable.MediaDownload, ctx => Download(ctx, authenticated: true));
        app.Map(RouteTable.MediaDownloadNamed, ctx => Download(ctx, authenticated: true));
        app.Map(RouteTable.LegacyMediaDownload, ctx => Download(ctx, authenticated: false));
        app.Map(RouteTable.LegacyMediaDownloadNamed, ctx => Download(ctx, authenticated: false));
        app.Map(RouteTable.MediaThumbnail, ctx => Thumbnail(ctx, authenticated: true));
        app.Map(RouteTable.LegacyMediaThumbnail, ctx => Thumbnail(ctx, authenticated: false));
        app.Map(RouteTable.MediaPreviewUrl, ctx => PreviewUrl(ctx, legacy: false));
        app.Map(RouteTable.LegacyMediaPreviewUrl, ctx => PreviewUrl(ctx, legacy: true));
    }

    // ---- uploads

    async Task Upload(HttpContext ctx)
    {
        var caller = Caller.Required(ctx);
        var (contentType, fileName) = UploadDetails(ctx);
        using var blob = await StageBody(ctx);
        var media = store.Put(caller.UserId, blob, contentType, fileName);
        QueueThumbnails(media);
        await ctx.Response.WriteJsonAsync(new JsonObject { ["content_uri"] = media.Mxc });
    }

    async Task UploadTo(HttpContext ctx)
    {
        var caller = Caller.Required(ctx);
        var (serverName, mediaId) = MediaRef(ctx);
        // Refused before the body is read: someone else's ID, an expired one, one already uploaded.
        store.CheckUploadTo(caller.UserId, serverName, mediaId);
        var (contentType, fileName) = UploadDetails(ctx);
        using var blob = await StageBody(ctx);
        var media = store.CompleteUpload(caller.UserId, mediaId, blob, contentType, fileName);
        QueueThumbnails(media);
        await ctx.Response.WriteJsonAsync(new JsonObject());
    }

    async Task Create(HttpContext ctx)
    {
        var caller = Caller.Required(ctx);
        limits.Take(ctx, caller, new Charge(limits.MediaCreate, caller.UserId));
        var (mediaId, expires) = store.Create(caller.UserId);
        await ctx.Response.WriteJsonAsync(new JsonObject { ["content_uri"] = $"mxc://{store.ServerName}/{mediaId}", ["unused_expires_at"] = expires });
    }

    (string ContentType, string? FileName) UploadDetails(HttpContext ctx)
    {
        var fileName = ctx.Request.Query["filename"].ToString();
        if (fileName.Length > 255) throw Err.InvalidParam("'filename' is longer than 255 characters");
        return (ContentHeaders.Sanitise(ctx.Request.ContentType), fileName.Length == 0 ? null : fileName);
    }

    async Task<Storage.StagedBlob> StageBody(HttpContext ctx)
    {
        try
        {
            return await store.Blobs.StageAsync(ctx.Request.Body, ctx.RequestAborted);
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            throw Err.TooLarge($"The upload is larger than this server's limit of {config.MaxRequestSize} bytes");
        }
    }

    void QueueThumbnails(MediaRecord media)
    {
        if (media.ContentType is { } t && ContentHeaders.Essence(t).StartsWith("image/", StringComparison.OrdinalIgnoreCase) && media.Size > 0)
            thumbnails.MakeLater(media);
    }

    async Task Config(HttpContext ctx, bool authenticated)
    {
        Gate(ctx, authenticated);
        await ctx.Response.WriteJsonAsync(new JsonObject { ["m.upload.size"] = config.MaxRequestSize });
    }

    // ---- downloads

    async Task Download(HttpContext ctx, bool authenticated)
    {
        Gate(ctx, authenticated);
        var (serverName, mediaId) = MediaRef(ctx);
        var media = await Find(ctx, serverName, mediaId);
        var fileName = ctx.Request.RouteValues.TryGetValue("fileName", out var n) && n is string named ? named : media.FileName;
        var contentType = media.ContentType ?? "application/octet-stream";
        await Serve(ctx, store.Blobs.PathOf(media.Sha256), contentType, ContentHeaders.Disposition(contentType, fileName), media.Sha256, authenticated);
    }

    async Task Thumbnail(HttpContext ctx, bool authenticated)
    {
        Gate(ctx, authenticated);
        var (serverName, mediaId) = MediaRef(ctx);
        var width = Dimension(ctx, "width");
        var height = Dimension(ctx, "height");
        var method = ctx.Request.Query["method"].ToString();
        if (method is not ("" or "crop" or "scale")) throw Err.InvalidParam("'method' must be crop or scale");
        var animated = ctx.Request.Query["animated"].ToString() switch
        {
            "" or "false" => false,
            "true" => true,
            _ => throw Err.InvalidParam("'animated' must be true or false"),
        };
        var media = await Find(ctx, serverName, mediaId);
        var answer = await thumbnails.GetAsync(media, width, height, method == "crop", animated, ctx.RequestAborted);
        await Serve(ctx, answer.Path, answer.ContentType, ContentHeaders.Disposition(answer.ContentType, null), answer.ETag, authenticated);
    }

    static int Dimension(HttpContext ctx, string name)
    {
        var s = ctx.Request.Query[name].ToString();
        if (s.Length == 0) throw Err.MissingParam($"Missing '{name}'");
        return int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out var v) && v is > 0 and <= 10_000
            ? v
            : throw Err.InvalidParam($"'{name}' must be an integer from 1 to 10000");
    }

    /// <summary>The media behind a local mxc URI, waiting (timeout_ms, default 20 s) for an upload to a created ID.</summary>
    async Task<MediaRecord> Find(HttpContext ctx, string serverName, string mediaId)
    {
        var media = await FindUntouched(ctx, serverName, mediaId);
        store.Touch(media); // last_access_ts, for retention and the purges (at most one write an hour)
        return media;
    }

    async Task<MediaRecord> FindUntouched(HttpContext ctx, string serverName, string mediaId)
    {
        if (serverName != store.ServerName) return await remote.GetAsync(serverName, mediaId, ctx.RequestAborted);
        var timeout = TimeSpan.FromMilliseconds(20_000);
        var t = ctx.Request.Query["timeout_ms"].ToString();
        if (t.Length > 0)
            timeout = long.TryParse(t, NumberStyles.None, CultureInfo.InvariantCulture, out var ms)
                ? TimeSpan.FromMilliseconds(Math.Min(ms, (long)MaxWait.TotalMilliseconds))
                : throw Err.InvalidParam("'timeout_ms' must be a non-negative integer");
        return await store.WaitForAsync(serverName, mediaId, timeout, ctx.RequestAborted) ?? throw Err.NotFound("Media not found");
    }

    /// <summary>The {serverName} and {mediaId} of the path, checked against the grammar (400 M_INVALID_PARAM).</summary>
    internal static (string ServerName, string MediaId) MediaRef(HttpContext ctx)
    {
        var serverName = ctx.Route("serverName");
        var mediaId = ctx.Route("mediaId");
        if (!Ids.IsValidServerName(serverName)) throw Err.InvalidParam("Invalid server name");
        if (!Ids.IsValidMediaId(mediaId)) throw Err.InvalidParam("Invalid media ID: only A-Z, a-z, 0-9, '_' and '-' are allowed");
        return (serverName, mediaId);
    }

    /// <summary>The authenticated paths need a token; the legacy ones are served only while allow_legacy_media is on.</summary>
    void Gate(HttpContext ctx, bool authenticated)
    {
        if (authenticated) Caller.Required(ctx);
        else if (!config.AllowLegacyMedia)
            throw Err.NotFound("The unauthenticated media endpoints are disabled on this server: use /_matrix/client/v1/media");
    }

    /// <summary>Streams a file with its headers, answering Range (206, 416) and If-None-Match (304) requests.</summary>
    static async Task Serve(HttpContext ctx, string path, string contentType, string disposition, string sha256, bool authenticated)
    {
        if (!File.Exists(path)) throw Err.NotFound("Media not found");
        ContentHeaders.Apply(ctx.Response, authenticated);
        ctx.Response.Headers.ContentDisposition = disposition;
        var result = TypedResults.PhysicalFile(path, contentType, fileDownloadName: null, lastModified: null,
            entityTag: new EntityTagHeaderValue("\"" + sha256 + "\""), enableRangeProcessing: true);
        await result.ExecuteAsync(ctx);
    }

    // ---- URL previews

    async Task PreviewUrl(HttpContext ctx, bool legacy)
    {
        var caller = Caller.Required(ctx);
        if (legacy && !config.AllowLegacyMedia)
            throw Err.NotFound("The legacy media endpoints are disabled on this server: use /_matrix/client/v1/media");
        if (!config.UrlPreview) throw Err.Forbidden("URL previews are disabled on this server");
        var url = ctx.Request.Query["url"].ToString();
        if (url.Length == 0) throw Err.MissingParam("Missing 'url'");
        await ctx.Response.WriteJsonAsync(await previews.PreviewAsync(caller.UserId, url, ctx.RequestAborted));
    }
}

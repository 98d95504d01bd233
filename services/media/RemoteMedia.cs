using System.Collections.Concurrent;
using System.Net.Http.Headers;
using System.Text;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Http;
using Conduit.Protos.Federation;
using Grpc.Core;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Conduit.Media;

/// <summary>
/// Media of other servers (spec: server-server-api, "Content Repository"): fetched once through the federation
/// service (GET /_matrix/federation/v1/media/download/{mediaId}, then the legacy /_matrix/media/v3/download for
/// servers that lack it), kept here under its own mxc URI and served (and thumbnailed) like local media from then
/// on. Concurrent requests for the same media share one fetch; a file larger than max_request_size is refused.
/// </summary>
public sealed partial class RemoteMedia(MediaStore store, Protos.Federation.Federation.FederationClient federation, GlobalConfig config, ILogger<RemoteMedia> log)
{
    readonly ConcurrentDictionary<string, Lazy<Task<MediaRecord?>>> _fetching = new(StringComparer.Ordinal);

    public async Task<MediaRecord> GetAsync(string serverName, string mediaId, CancellationToken ct)
    {
        if (store.Get(serverName, mediaId) is { } cached) return cached;
        // Quarantined: never fetched again.
        if (store.IsBlocked(serverName, mediaId)) throw Err.NotFound("Media not found");
        if (!config.AllowFederation) throw Err.NotFound("Media of other servers is not fetched: federation is off");
        var key = serverName + "/" + mediaId;
        var fetch = _fetching.GetOrAdd(key, _ => new Lazy<Task<MediaRecord?>>(() => FetchThenForgetAsync(key, serverName, mediaId)));
        return await fetch.Value.WaitAsync(ct) ?? throw Err.NotFound("Media not found");
    }

    /// <summary>One fetch, whose entry goes once it ends (a failure is not remembered: the next request tries again).</summary>
    async Task<MediaRecord?> FetchThenForgetAsync(string key, string serverName, string mediaId)
    {
        try { return await FetchAsync(serverName, mediaId); }
        finally { _fetching.TryRemove(key, out _); }
    }

    async Task<MediaRecord?> FetchAsync(string serverName, string mediaId)
    {
        // Not tied to one caller: others may be waiting for the same fetch.
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        var id = Uri.EscapeDataString(mediaId);
        foreach (var path in new[] { $"/_matrix/federation/v1/media/download/{id}", $"/_matrix/media/v3/download/{Uri.EscapeDataString(serverName)}/{id}?allow_remote=false" })
        {
            try
            {
                if (await TryFetchAsync(serverName, mediaId, path, cts.Token) is { } record) return record;
            }
            catch (RpcException e)
            {
                LogFailed(log, serverName, mediaId, e.Status.Detail);
            }
        }
        return null;
    }

    async Task<MediaRecord?> TryFetchAsync(string serverName, string mediaId, string path, CancellationToken ct)
    {
        using var call = federation.Download(new OutboundRequest { Destination = serverName, Method = "GET", Path = path }, cancellationToken: ct);
        var parts = call.ResponseStream;
        if (!await parts.MoveNext(ct)) return null;
        var head = parts.Current;
        if (head.Status != 200)
        {
            LogFailed(log, serverName, mediaId, $"{path}: {head.Status} {head.Error}");
            return null;
        }
        await using var body = new PartStream(parts, config.MaxRequestSize, ct);
        using var blob = await store.Blobs.StageAsync(body, ct);
        var contentType = ContentHeaders.Sanitise(head.ContentType);
        string? fileName = null;
        if (head.ContentDisposition.Length > 0 && ContentDispositionHeaderValue.TryParse(head.ContentDisposition, out var cd))
            fileName = (cd.FileNameStar ?? cd.FileName)?.Trim('"') is { Length: > 0 and <= 255 } f ? f : null;
        return store.PutRemote(serverName, mediaId, blob, contentType, fileName);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Fetching mxc://{Server}/{MediaId} failed: {Error}")]
    static partial void LogFailed(ILogger log, string server, string mediaId, string error);

    /// <summary>The bytes of the download's parts after the first, read as a stream, at most <c>limit</c> bytes.</summary>
    sealed class PartStream(IAsyncStreamReader<DownloadPart> parts, long limit, CancellationToken ct) : Stream
    {
        ReadOnlyMemory<byte> _current;
        long _total;

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            while (_current.IsEmpty)
            {
                if (!await parts.MoveNext(ct)) return 0;
                _current = parts.Current.Data.Memory;
                _total += _current.Length;
                if (_total > limit) throw Err.TooLarge($"The remote file is larger than this server's limit of {limit} bytes");
            }
            var n = Math.Min(buffer.Length, _current.Length);
            _current[..n].CopyTo(buffer);
            _current = _current[n..];
            return n;
        }

        public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => _total; set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}

/// <summary>
/// GET /_matrix/federation/v1/media/download/{mediaId} and .../thumbnail/{mediaId} (spec: server-server-api,
/// "Content Repository"): our own media for other servers, behind X-Matrix (checked by the federation service), as
/// multipart/mixed: an empty JSON metadata part, then the file.
/// </summary>
public sealed class FederationMediaEndpoints(MediaStore store, Thumbnails.ThumbnailService thumbnails, Protos.Federation.Federation.FederationClient federation)
{
    public void Map(Microsoft.AspNetCore.Routing.IEndpointRouteBuilder app)
    {
        Conduit.Common.Routing.RouteTable.Map(app, Conduit.Common.Routing.RouteTable.FedMediaDownload, Download);
        Conduit.Common.Routing.RouteTable.Map(app, Conduit.Common.Routing.RouteTable.FedMediaThumbnail, Thumbnail);
    }

    async Task Authenticate(HttpContext ctx)
    {
        var raw = ctx.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpRequestFeature>()?.RawTarget is { Length: > 0 } t ? t : ctx.Request.Path + ctx.Request.QueryString;
        await federation.VerifyRequestAsync(new VerifyRequestRequest
        {
            Method = ctx.Request.Method, Uri = raw, Authorization = ctx.Request.Headers.Authorization.ToString(),
        }, cancellationToken: ctx.RequestAborted);
    }

    MediaRecord Local(HttpContext ctx)
    {
        var mediaId = ctx.Request.RouteValues["mediaId"] as string ?? "";
        if (!Ids.IsValidMediaId(mediaId)) throw Err.InvalidParam("Invalid media ID");
        var media = store.Get(store.ServerName, mediaId) ?? throw Err.NotFound("Media not found");
        store.Touch(media);
        return media;
    }

    async Task Download(HttpContext ctx)
    {
        await Authenticate(ctx);
        var media = Local(ctx);
        var contentType = media.ContentType ?? "application/octet-stream";
        await WriteMultipart(ctx, store.Blobs.PathOf(media.Sha256), contentType, ContentHeaders.Disposition(contentType, media.FileName));
    }

    async Task Thumbnail(HttpContext ctx)
    {
        await Authenticate(ctx);
        var media = Local(ctx);
        static int Dim(HttpContext ctx, string name)
            => int.TryParse(ctx.Request.Query[name].ToString(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var v) && v is > 0 and <= 10_000
                ? v : throw Err.InvalidParam($"'{name}' must be an integer from 1 to 10000");
        var answer = await thumbnails.GetAsync(media, Dim(ctx, "width"), Dim(ctx, "height"), ctx.Request.Query["method"].ToString() == "crop",
            ctx.Request.Query["animated"].ToString() == "true", ctx.RequestAborted);
        await WriteMultipart(ctx, answer.Path, answer.ContentType, ContentHeaders.Disposition(answer.ContentType, null));
    }

    static async Task WriteMultipart(HttpContext ctx, string path, string contentType, string disposition)
    {
        if (!File.Exists(path)) throw Err.NotFound("Media not found");
        var boundary = Guid.NewGuid().ToString("N");
        ctx.Response.ContentType = $"multipart/mixed; boundary={boundary}";
        var head = Encoding.ASCII.GetBytes($"--{boundary}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n--{boundary}\r\nContent-Type: {contentType}\r\nContent-Disposition: {disposition}\r\n\r\n");
        var tail = Encoding.ASCII.GetBytes($"\r\n--{boundary}--\r\n");
        await using var file = File.OpenRead(path);
        ctx.Response.ContentLength = head.Length + file.Length + tail.Length;
        await ctx.Response.Body.WriteAsync(head, ctx.RequestAborted);
        await file.CopyToAsync(ctx.Response.Body, ctx.RequestAborted);
        await ctx.Response.Body.WriteAsync(tail, ctx.RequestAborted);
    }
}

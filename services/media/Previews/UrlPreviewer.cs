using System.Collections.Concurrent;
using System.Net.Http.Headers;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Http;
using Conduit.Media.Thumbnails;
using Microsoft.Extensions.Logging;

namespace Conduit.Media.Previews;

/// <summary>
/// URL previews (GET /_matrix/client/v1/media/preview_url): the OpenGraph data of a web page, its og:image stored as
/// media uploaded by the user who asked (the client gets an mxc:// URI and never contacts the site itself); or, for
/// a URL that is an image, that image. Where previews may go is <see cref="PreviewPolicy"/>, enforced on every
/// connection by <see cref="PreviewFetcher"/>. A preview takes at most <see cref="Timeout"/> (page and image
/// together; 504 past it) and reads at most url_preview_max_spider_size bytes of each body: a longer page is read up
/// to there, a larger image is left out. Previews are kept an hour; requests for a URL being fetched wait for that
/// fetch rather than start their own.
/// </summary>
public sealed partial class UrlPreviewer : IDisposable
{
    public const long CacheMaxAgeMs = 3600_000;
    const string PageAccept = "text/html,application/xhtml+xml;q=0.9,image/*;q=0.8,*/*;q=0.1";
    const string ImageAccept = "image/*;q=0.9,*/*;q=0.1";

    readonly MediaStore _store;
    readonly GlobalConfig _config;
    readonly ILogger<UrlPreviewer> _log;
    readonly PreviewPolicy _policy;
    readonly PreviewFetcher _fetcher;
    readonly ConcurrentDictionary<string, Task<JsonObject>> _inFlight = new(StringComparer.Ordinal);

    public UrlPreviewer(MediaStore store, GlobalConfig config, ILogger<UrlPreviewer> log)
    {
        _store = store;
        _config = config;
        _log = log;
        _policy = new PreviewPolicy(config);
        _fetcher = new PreviewFetcher(_policy, DefaultTimeout);
    }

    static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(10);

    /// <summary>The most one preview may take, fetches and redirects included (tests shorten it).</summary>
    internal TimeSpan Timeout { get; set; } = DefaultTimeout;

    public async Task<JsonObject> PreviewAsync(string userId, string url, CancellationToken ct)
    {
        var uri = Refused(() => _policy.ParseRequested(url));
        if (_store.GetPreview(url, CacheMaxAgeMs) is { } cached) return cached;
        var mine = new TaskCompletionSource<JsonObject>(TaskCreationOptions.RunContinuationsAsynchronously);
        var task = _inFlight.GetOrAdd(url, mine.Task);
        if (task == mine.Task) _ = RunAsync(userId, url, uri, mine);
        // The fetch is shared, so it runs to its own end even if this caller goes away.
        return (JsonObject)(await task.WaitAsync(ct)).DeepClone();
    }

    static T Refused<T>(Func<T> f)
    {
        try { return f(); }
        catch (PreviewRefusedException e) { throw Err.Forbidden(e.Message); }
    }

    async Task RunAsync(string userId, string url, Uri uri, TaskCompletionSource<JsonObject> done)
    {
        try
        {
            // Another request may have finished this URL between our cache check and our turn.
            var og = _store.GetPreview(url, CacheMaxAgeMs);
            if (og is null)
            {
                og = await FetchAsync(userId, uri);
                _store.PutPreview(url, og);
            }
            done.SetResult(og);
        }
        catch (Exception e)
        {
            if (e is not MatrixException) LogFailed(_log, uri.Host, e.Message);
            done.SetException(e);
        }
        finally
        {
            _inFlight.TryRemove(new KeyValuePair<string, Task<JsonObject>>(url, done.Task));
        }
    }

    async Task<JsonObject> FetchAsync(string userId, Uri uri)
    {
        using var timeout = new CancellationTokenSource(Timeout);
        var ct = timeout.Token;
        try
        {
            var (response, finalUrl) = await _fetcher.GetAsync(uri, PageAccept, ct);
            using (response)
            {
                var mediaType = response.Content.Headers.ContentType?.MediaType?.ToLowerInvariant() ?? "";
                if (mediaType.StartsWith("image/", StringComparison.Ordinal))
                {
                    var og = await StoreImageAsync(userId, response, ct) ?? new JsonObject();
                    if (FileName(finalUrl) is { } name) og["og:title"] = name;
                    return og;
                }
                if (mediaType is not ("text/html" or "application/xhtml+xml" or "")) return new JsonObject();
                return await PageAsync(userId, response, finalUrl, ct);
            }
        }
        catch (PreviewRefusedException e)
        {
            throw Err.Forbidden(e.Message);
        }
        catch (PreviewFetchException e)
        {
            throw new MatrixException("M_UNKNOWN", 502, $"Could not preview the URL: {e.Message}");
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested)
        {
            throw new MatrixException("M_UNKNOWN", 504, $"Timed out fetching the URL (after {Timeout.TotalSeconds:0.#} s)");
        }
        catch (Exception e) when (e is HttpRequestException or IOException)
        {
            throw new MatrixException("M_UNKNOWN", 502, $"Could not preview the URL: {e.Message}");
        }
    }

    async Task<JsonObject> PageAsync(string userId, HttpResponseMessage response, Uri pageUrl, CancellationToken ct)
    {
        await using var body = await response.Content.ReadAsStreamAsync(ct);
        // A page longer than the limit is read up to it: what is in the head is what matters.
        var (bytes, _) = await PreviewFetcher.ReadUpToAsync(body, _config.UrlPreviewMaxSpiderSize, ct);
        var charset = response.Content.Headers.ContentType?.CharSet;
        var og = HtmlMeta.OpenGraph(HtmlMeta.Decode(bytes, charset));

        // The image is stored here and sent as an mxc:// URI; the page's own URLs of it are not passed on.
        var src = og["og:image"]?.GetValue<string>() ?? og["og:image:url"]?.GetValue<string>() ?? og["og:image:secure_url"]?.GetValue<string>();
        foreach (var k in (ReadOnlySpan<string>)["og:image", "og:image:url", "og:image:secure_url", "og:image:type", "og:image:width", "og:image:height"])
            og.Remove(k);
        if (src is not null && Uri.TryCreate(pageUrl, src.Trim(), out var imageUrl) && PreviewPolicy.IsWeb(imageUrl)
            && imageUrl.OriginalString.Length <= PreviewPolicy.MaxUrlLength)
        {
            try
            {
                _policy.CheckHost(imageUrl);
                var (imageResponse, _) = await _fetcher.GetAsync(imageUrl, ImageAccept, ct);
                using (imageResponse)
                    if (await StoreImageAsync(userId, imageResponse, ct) is { } image)
                        foreach (var (k, v) in image) og[k] = v!.DeepClone();
            }
            catch (Exception e) when (e is PreviewRefusedException or PreviewFetchException or HttpRequestException or IOException or OperationCanceledException)
            {
                // The page's preview stands without its image.
                LogImageFailed(_log, imageUrl.Host, e.Message);
            }
        }
        return og;
    }

    /// <summary>Stores the response's body as media of <paramref name="userId"/> if it is an image of at most the spider
    /// size; its og:image keys, or null.</summary>
    async Task<JsonObject?> StoreImageAsync(string userId, HttpResponseMessage response, CancellationToken ct)
    {
        var limit = _config.UrlPreviewMaxSpiderSize;
        if (response.Content.Headers.ContentLength > limit) return null;
        await using var body = await response.Content.ReadAsStreamAsync(ct);
        Storage.StagedBlob blob;
        try { blob = await _store.Blobs.StageAsync(new CappedStream(body, limit), ct); }
        catch (PreviewFetchException) { return null; }
        using (blob)
        {
            if (blob.Size == 0 || Thumbnailer.Probe(blob.TempPath) is not { } probe) return null;
            var media = _store.Put(userId, blob, probe.MimeType, null);
            return new JsonObject
            {
                ["og:image"] = media.Mxc,
                ["og:image:type"] = probe.MimeType,
                ["og:image:width"] = probe.Width,
                ["og:image:height"] = probe.Height,
                ["matrix:image:size"] = media.Size,
            };
        }
    }

    /// <summary>The last segment of the URL's path, unescaped, if there is one.</summary>
    static string? FileName(Uri url)
    {
        var path = url.AbsolutePath;
        var name = Uri.UnescapeDataString(path[(path.LastIndexOf('/') + 1)..]).Trim();
        return name.Length is > 0 and <= HtmlMeta.MaxValueLength ? name : null;
    }

    public void Dispose() => _fetcher.Dispose();

    [LoggerMessage(Level = LogLevel.Information, Message = "URL preview of {Host} failed: {Reason}")]
    static partial void LogFailed(ILogger log, string host, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "URL preview image from {Host} left out: {Reason}")]
    static partial void LogImageFailed(ILogger log, string host, string reason);
}

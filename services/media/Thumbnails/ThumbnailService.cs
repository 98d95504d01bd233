using System.Collections.Concurrent;
using System.Threading.Channels;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Http;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Conduit.Media.Thumbnails;

/// <summary>What a thumbnail request is answered with: a stored thumbnail, or the original file.</summary>
public sealed record ThumbnailAnswer(string Path, string ContentType, long Length, string ETag);

/// <summary>
/// Serves thumbnails: each size is made once, stored (<see cref="MediaStore.PutThumbnail"/>) and served from its file
/// afterwards. The first request for any size of a piece of media makes every standard size it lacks from one decode;
/// an upload of an image queues the same work in the background, so the thumbnails clients ask for right after
/// sending an image are usually ready (service README, "Thumbnails", has the measurement). Requests that arrive
/// while the work runs wait for it instead of decoding again. At most one image is decoded at a time, which bounds
/// the memory decoding takes (an image at max_image_pixels decodes to 4 bytes a pixel).
/// </summary>
public sealed partial class ThumbnailService(MediaStore store, GlobalConfig config, ILogger<ThumbnailService> log) : BackgroundService
{
    /// <summary>An animation up to this size is served as itself when the client asks for an animated thumbnail
    /// (Skia cannot encode animations); a larger one gets a still thumbnail.</summary>
    public const long AnimatedOriginalLimit = 8 * 1024 * 1024;

    readonly ConcurrentDictionary<string, Task> _inflight = new();
    readonly SemaphoreSlim _decode = new(1, 1);
    readonly Channel<MediaRecord> _queue = Channel.CreateBounded<MediaRecord>(new BoundedChannelOptions(256) { FullMode = BoundedChannelFullMode.DropWrite });

    public async Task<ThumbnailAnswer> GetAsync(MediaRecord media, int width, int height, bool crop, bool animated, CancellationToken ct)
    {
        var path = store.Blobs.PathOf(media.Sha256);
        var probe = Thumbnailer.Probe(path) ?? throw Err.Unknown("Cannot generate a thumbnail: the content is not a JPEG, PNG, GIF or WebP image");
        if (probe.Pixels > config.MaxImagePixels)
            throw Err.TooLarge($"The image is too large to thumbnail ({probe.Width}x{probe.Height} pixels; at most {config.MaxImagePixels})");
        // animated=true: the animation itself (spec: SHOULD return an animated thumbnail if possible).
        if (animated && probe.Animated && media.Size <= AnimatedOriginalLimit)
            return new ThumbnailAnswer(path, probe.MimeType, media.Size, media.Sha256);
        var size = ThumbnailSize.For(width, height, crop);
        if (size is null || size.Layout(probe.Width, probe.Height) is null)
        {
            // No thumbnail is larger than the request, or the image is no larger than one: the original, as a still
            // image when it is animated and animation was not asked for (spec: MUST NOT return an animated thumbnail).
            if (!probe.Animated) return new ThumbnailAnswer(path, probe.MimeType, media.Size, media.Sha256);
            size = ThumbnailSize.FullSize;
        }
        if (store.GetThumbnail(media.ServerName, media.MediaId, size) is not { } thumb)
        {
            await EnsureAsync(media, probe, size == ThumbnailSize.FullSize).WaitAsync(ct);
            thumb = store.GetThumbnail(media.ServerName, media.MediaId, size)
                ?? throw new InvalidOperationException($"thumbnail {size.Name} of {media.Mxc} was not made");
        }
        return new ThumbnailAnswer(store.Blobs.PathOf(thumb.Sha256), thumb.ContentType, thumb.Length, thumb.Sha256);
    }

    /// <summary>The work that makes the media's missing thumbnails, joined if it is already running.</summary>
    Task EnsureAsync(MediaRecord media, ImageProbe probe, bool fullSize)
    {
        var key = media.Mxc + (fullSize ? "#still" : "");
        var task = _inflight.GetOrAdd(key, k => Task.Run(async () =>
        {
            try { await MakeAsync(media, probe, fullSize); }
            finally { _inflight.TryRemove(k, out Task? _); }
        }));
        return task;
    }

    async Task MakeAsync(MediaRecord media, ImageProbe probe, bool fullSize)
    {
        await _decode.WaitAsync();
        try
        {
            var missing = fullSize ? [] : ThumbnailSize.Standard.Where(s => store.GetThumbnail(media.ServerName, media.MediaId, s) is null).ToList();
            if (!fullSize && missing.Count == 0) return;
            List<GeneratedThumbnail> made;
            try { made = Thumbnailer.Generate(store.Blobs.PathOf(media.Sha256), probe, missing, fullSize); }
            catch (InvalidImageException e)
            {
                throw Err.Unknown($"Cannot generate a thumbnail: {e.Message}");
            }
            foreach (var t in made)
            {
                using var blob = await store.Blobs.StageAsync(t.Bytes, CancellationToken.None);
                store.PutThumbnail(media, new ThumbnailRecord(t.Size, t.ContentType, blob.Size, blob.Sha256, t.Width, t.Height), blob);
            }
        }
        finally { _decode.Release(); }
    }

    /// <summary>Queues the thumbnails of a new upload, if it is an image small enough to decode (dropped when 256 wait).</summary>
    public void MakeLater(MediaRecord media) => _queue.Writer.TryWrite(media);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        await foreach (var media in _queue.Reader.ReadAllAsync(stoppingToken))
        {
            try
            {
                var probe = Thumbnailer.Probe(store.Blobs.PathOf(media.Sha256));
                if (probe is null || probe.Pixels > config.MaxImagePixels) continue;
                await EnsureAsync(media, probe, fullSize: false);
            }
            catch (Exception e) when (e is MatrixException or IOException)
            {
                LogPregenerationFailed(log, media.Mxc, e.Message);
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "No thumbnails for {Mxc}: {Reason}")]
    static partial void LogPregenerationFailed(ILogger log, string mxc, string reason);
}

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
/// Serves thumbnails: each size is made once, when first asked for, stored (<see cref="MediaStore.PutThumbnail"/>) and
/// served from its file afterwards. An upload of an image also queues, in the background, the two sizes clients ask for
/// right after an image is sent (800×600 scale for the timeline, 96×96 crop for avatars and lists), from one decode;
/// the service README has the measurement behind that choice. Requests that arrive while a size is being made wait for
/// it instead of decoding again. At most one image is decoded at a time, which bounds the memory decoding takes (an
/// image at max_image_pixels decodes to 4 bytes a pixel).
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
            await EnsureAsync(media, probe, [size]).WaitAsync(ct);
            thumb = store.GetThumbnail(media.ServerName, media.MediaId, size)
                ?? (store.Get(media.ServerName, media.MediaId) is null
                    ? throw Conduit.Common.Http.Err.NotFound("Media not found") // deleted or quarantined while the thumbnail was made
                    : throw new InvalidOperationException($"thumbnail {size.Name} of {media.Mxc} was not made"));
        }
        return new ThumbnailAnswer(store.Blobs.PathOf(thumb.Sha256), thumb.ContentType, thumb.Length, thumb.Sha256);
    }

    /// <summary>The work that makes these sizes of the media, joined if it is already running.</summary>
    Task EnsureAsync(MediaRecord media, ImageProbe probe, ThumbnailSize[] sizes)
    {
        var key = media.Mxc + "#" + string.Join(",", sizes.Select(s => s.Name));
        return _inflight.GetOrAdd(key, k => Task.Run(async () =>
        {
            try { await MakeAsync(media, probe, sizes); }
            finally { _inflight.TryRemove(k, out Task? _); }
        }));
    }

    async Task MakeAsync(MediaRecord media, ImageProbe probe, ThumbnailSize[] sizes)
    {
        await _decode.WaitAsync();
        try
        {
            var missing = sizes.Where(s => store.GetThumbnail(media.ServerName, media.MediaId, s) is null).ToList();
            if (missing.Count == 0) return;
            var full = missing.Remove(ThumbnailSize.FullSize);
            List<GeneratedThumbnail> made;
            try { made = Thumbnailer.Generate(store.Blobs.PathOf(media.Sha256), probe, missing, full); }
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

    /// <summary>The sizes made ahead, at upload.</summary>
    public static readonly ThumbnailSize[] MadeAtUpload = [ThumbnailSize.Standard[4], ThumbnailSize.Standard[1]];

    /// <summary>Queues the thumbnails of a new upload, if it is an image small enough to decode (dropped when 256 wait).</summary>
    public void MakeLater(MediaRecord media) => _queue.Writer.TryWrite(media);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try { await Drain(stoppingToken); }
        catch (Exception) when (stoppingToken.IsCancellationRequested)
        {
            // Stopping.
        }
    }

    async Task Drain(CancellationToken stoppingToken)
    {
        await foreach (var media in _queue.Reader.ReadAllAsync(stoppingToken))
        {
            try { await PregenerateAsync(media); }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                // Whatever an uploaded file does to the decoder, the queue goes on (an escaping exception would stop
                // the host); the request path reports the same failure to whoever asks for a thumbnail.
                LogPregenerationFailed(log, media.Mxc, e.Message);
            }
        }
    }

    // Apart from Drain, whose state machine is loaded at start: the image types (and SkiaSharp with them) load with
    // the first upload, not in every idle server.
    Task PregenerateAsync(MediaRecord media)
    {
        var probe = Thumbnailer.Probe(store.Blobs.PathOf(media.Sha256));
        if (probe is null || probe.Pixels > config.MaxImagePixels) return Task.CompletedTask;
        // Only the sizes smaller than the image: for the others the original is served.
        var sizes = MadeAtUpload.Where(s => s.Layout(probe.Width, probe.Height) is not null).ToArray();
        return sizes.Length > 0 ? EnsureAsync(media, probe, sizes) : Task.CompletedTask;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "No thumbnails for {Mxc}: {Reason}")]
    static partial void LogPregenerationFailed(ILogger log, string mxc, string reason);
}

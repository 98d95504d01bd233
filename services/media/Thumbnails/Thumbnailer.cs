using Conduit.Common;
using SkiaSharp;

namespace Conduit.Media.Thumbnails;

/// <summary>What an image's header says: read without decoding its pixels.</summary>
public sealed record ImageProbe(string MimeType, int Width, int Height, int FrameCount, bool Opaque, SKEncodedOrigin Origin)
{
    public long Pixels => (long)Width * Height;
    public bool Animated => FrameCount > 1;
}

/// <summary>One generated thumbnail, encoded.</summary>
public sealed record GeneratedThumbnail(ThumbnailSize Size, byte[] Bytes, string ContentType, int Width, int Height);

/// <summary>
/// Decodes and scales images with SkiaSharp (Skia's codecs; the choice and its measurements are in the service
/// README). JPEG, PNG, GIF and WebP only: other formats Skia knows (BMP, ICO, WBMP) are refused, to keep the decoder
/// surface small. The caller checks <see cref="ImageProbe.Pixels"/> against max_image_pixels before anything is
/// decoded. One decode serves every size: the image is decoded once, at the smallest scale the largest thumbnail
/// allows (JPEG decodes natively at 1/2, 1/4 or 1/8), turned upright by its EXIF orientation, then drawn at each size
/// with mipmapped linear sampling. JPEG and opaque WebP become JPEG (quality 80); PNG, GIF and WebP with
/// transparency become PNG (Synapse: jpeg and webp to jpeg, png and gif to png).
/// </summary>
public static class Thumbnailer
{
    /// <summary>The header of the file at <paramref name="path"/>, or null if it is not a JPEG, PNG, GIF or WebP image.</summary>
    public static ImageProbe? Probe(string path)
    {
        using var codec = SKCodec.Create(path);
        if (codec is null) return null;
        var mime = codec.EncodedFormat switch
        {
            SKEncodedImageFormat.Jpeg => "image/jpeg",
            SKEncodedImageFormat.Png => "image/png",
            SKEncodedImageFormat.Gif => "image/gif",
            SKEncodedImageFormat.Webp => "image/webp",
            _ => null,
        };
        if (mime is null) return null;
        var (w, h) = (codec.Info.Width, codec.Info.Height);
        if (w <= 0 || h <= 0) return null;
        if (Transposed(codec.EncodedOrigin)) (w, h) = (h, w);
        return new ImageProbe(mime, w, h, Math.Max(1, codec.FrameCount), codec.Info.AlphaType == SKAlphaType.Opaque, codec.EncodedOrigin);
    }

    static bool Transposed(SKEncodedOrigin o) => o is SKEncodedOrigin.LeftTop or SKEncodedOrigin.RightTop or SKEncodedOrigin.RightBottom or SKEncodedOrigin.LeftBottom;

    /// <summary>
    /// Makes each thumbnail in <paramref name="sizes"/> that is smaller than the image (the others are skipped),
    /// plus, when <paramref name="fullSize"/>, a still image at the image's own size (the first frame of an
    /// animation served where the original would be). Throws <see cref="InvalidImageException"/> for an image whose
    /// pixels cannot be decoded.
    /// </summary>
    public static List<GeneratedThumbnail> Generate(string path, ImageProbe probe, IEnumerable<ThumbnailSize> sizes, bool fullSize = false)
    {
        var jobs = new List<(ThumbnailSize Size, (int Width, int Height, int SrcX, int SrcY, int SrcWidth, int SrcHeight) L)>();
        foreach (var s in sizes)
            if (s.Layout(probe.Width, probe.Height) is { } l) jobs.Add((s, l));
        if (fullSize) jobs.Add((ThumbnailSize.FullSize, (probe.Width, probe.Height, 0, 0, probe.Width, probe.Height)));
        if (jobs.Count == 0) return [];

        using var codec = SKCodec.Create(path) ?? throw new InvalidImageException("not an image");
        // The largest scale any thumbnail needs from the (upright) image, then the smallest size the codec decodes to
        // that still gives at least that much.
        var need = jobs.Max(j => Math.Max((double)j.L.Width / j.L.SrcWidth, (double)j.L.Height / j.L.SrcHeight));
        var raw = codec.Info;
        var decodeSize = raw.Size;
        // GetScaledDimensions answers the nearest size the codec supports, which may be smaller than asked: try eighths
        // upwards and keep the first that is large enough (JPEG scales by eighths, WebP by any amount, PNG and GIF not).
        for (var k = 1; k < 8 && need < 1; k++)
        {
            var s = codec.GetScaledDimensions(k / 8f);
            if (s.Width >= Math.Ceiling(raw.Width * need) && s.Height >= Math.Ceiling(raw.Height * need) && s.Width > 0 && s.Height > 0)
            {
                decodeSize = s;
                break;
            }
        }
        var info = new SKImageInfo(decodeSize.Width, decodeSize.Height, SKColorType.Rgba8888, probe.Opaque ? SKAlphaType.Opaque : SKAlphaType.Premul);
        using var bitmap = new SKBitmap(info);
        // Anything but a whole, clean decode is a corrupt image (a truncated one too: Skia would fill the rest grey).
        var result = codec.GetPixels(info, bitmap.GetPixels());
        if (result != SKCodecResult.Success)
        {
            if (result is SKCodecResult.IncompleteInput or SKCodecResult.ErrorInInput || decodeSize == raw.Size) throw new InvalidImageException($"cannot decode the image ({result})");
            // The codec refused to scale while decoding: decode at full size instead.
            using var full = DecodeFull(codec, probe);
            return GenerateFrom(full, probe, jobs);
        }
        bitmap.SetImmutable();
        using var decoded = SKImage.FromBitmap(bitmap);
        return GenerateFrom(decoded, probe, jobs);
    }

    static SKImage DecodeFull(SKCodec codec, ImageProbe probe)
    {
        var info = new SKImageInfo(codec.Info.Width, codec.Info.Height, SKColorType.Rgba8888, probe.Opaque ? SKAlphaType.Opaque : SKAlphaType.Premul);
        var bitmap = new SKBitmap(info);
        var result = codec.GetPixels(info, bitmap.GetPixels());
        if (result != SKCodecResult.Success)
        {
            bitmap.Dispose();
            throw new InvalidImageException($"cannot decode the image ({result})");
        }
        bitmap.SetImmutable();
        return SKImage.FromBitmap(bitmap);
    }

    static List<GeneratedThumbnail> GenerateFrom(SKImage decoded, ImageProbe probe,
        List<(ThumbnailSize Size, (int Width, int Height, int SrcX, int SrcY, int SrcWidth, int SrcHeight) L)> jobs)
    {
        var upright = probe.Origin == SKEncodedOrigin.TopLeft ? decoded : Upright(decoded, probe.Origin);
        try { return Draw(upright, probe, jobs); }
        finally { if (upright != decoded) upright.Dispose(); }
    }

    static List<GeneratedThumbnail> Draw(SKImage upright, ImageProbe probe,
        List<(ThumbnailSize Size, (int Width, int Height, int SrcX, int SrcY, int SrcWidth, int SrcHeight) L)> jobs)
    {
        // Layouts are in the upright image's full-size coordinates; the decoded image may be smaller.
        double k = (double)upright.Width / probe.Width;
        var sampling = new SKSamplingOptions(SKFilterMode.Linear, SKMipmapMode.Linear);
        var jpeg = probe.MimeType == "image/jpeg" || probe.MimeType == "image/webp" && probe.Opaque;
        var format = jpeg ? SKEncodedImageFormat.Jpeg : SKEncodedImageFormat.Png;
        var contentType = jpeg ? "image/jpeg" : "image/png";
        var output = new List<GeneratedThumbnail>(jobs.Count);
        foreach (var (size, l) in jobs)
        {
            var outInfo = new SKImageInfo(l.Width, l.Height, SKColorType.Rgba8888, probe.Opaque ? SKAlphaType.Opaque : SKAlphaType.Premul);
            using var surface = SKSurface.Create(outInfo) ?? throw new InvalidImageException("cannot allocate the thumbnail");
            surface.Canvas.Clear(SKColors.Transparent);
            var src = SKRect.Create((float)(l.SrcX * k), (float)(l.SrcY * k), (float)(l.SrcWidth * k), (float)(l.SrcHeight * k));
            surface.Canvas.DrawImage(upright, src, SKRect.Create(l.Width, l.Height), sampling);
            using var snapshot = surface.Snapshot();
            using var data = snapshot.Encode(format, 80) ?? throw new InvalidImageException("cannot encode the thumbnail");
            output.Add(new GeneratedThumbnail(size, data.ToArray(), contentType, l.Width, l.Height));
        }
        return output;
    }

    /// <summary>The image turned by its EXIF orientation (x' and y' of each of the eight cases, TIFF/EXIF tag 274).</summary>
    static SKImage Upright(SKImage image, SKEncodedOrigin origin)
    {
        float w = image.Width, h = image.Height;
        var m = origin switch
        {
            SKEncodedOrigin.TopRight => new SKMatrix(-1, 0, w, 0, 1, 0, 0, 0, 1),
            SKEncodedOrigin.BottomRight => new SKMatrix(-1, 0, w, 0, -1, h, 0, 0, 1),
            SKEncodedOrigin.BottomLeft => new SKMatrix(1, 0, 0, 0, -1, h, 0, 0, 1),
            SKEncodedOrigin.LeftTop => new SKMatrix(0, 1, 0, 1, 0, 0, 0, 0, 1),
            SKEncodedOrigin.RightTop => new SKMatrix(0, -1, h, 1, 0, 0, 0, 0, 1),
            SKEncodedOrigin.RightBottom => new SKMatrix(0, -1, h, -1, 0, w, 0, 0, 1),
            SKEncodedOrigin.LeftBottom => new SKMatrix(0, 1, 0, -1, 0, w, 0, 0, 1),
            _ => SKMatrix.Identity,
        };
        var (ow, oh) = Transposed(origin) ? (image.Height, image.Width) : (image.Width, image.Height);
        using var surface = SKSurface.Create(new SKImageInfo(ow, oh, SKColorType.Rgba8888, image.AlphaType)) ?? throw new InvalidImageException("cannot allocate the image");
        surface.Canvas.SetMatrix(m);
        surface.Canvas.DrawImage(image, 0, 0, new SKSamplingOptions(SKFilterMode.Nearest));
        return surface.Snapshot();
    }
}

/// <summary>An image whose pixels cannot be decoded (corrupt, truncated, or not what its header says).</summary>
public sealed class InvalidImageException(string message) : Exception(message);

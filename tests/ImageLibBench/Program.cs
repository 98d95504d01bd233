// Image-library benchmark for the media service (thumbnails, memory, header-only reads) and a media-blob storage
// benchmark (files vs RocksDB values). Not a test; see README.md for how to run it and the figures.
using System.Diagnostics;
using System.Globalization;
using System.IO.Compression;
using System.Runtime.InteropServices;
using System.Text;
using Conduit.Common.Storage;
using ImageMagick;
using ImageMagick.Formats;
using SixLabors.ImageSharp.Formats.Gif;
using SixLabors.ImageSharp.Formats.Jpeg;
using SixLabors.ImageSharp.Formats.Png;
using SixLabors.ImageSharp.PixelFormats;
using SixLabors.ImageSharp.Processing;
using SixLabors.ImageSharp;
using SkiaSharp;
using IsImage = SixLabors.ImageSharp.Image;
using IsSize = SixLabors.ImageSharp.Size;
using VImage = NetVips.Image;

namespace ImageLibBench;

internal enum Fmt { Jpeg, Png, Gif, Webp }

/// <summary>One thumbnail: fit inside W x H (Crop false) or fill W x H and centre-crop (Crop true).</summary>
internal readonly record struct Op(int W, int H, bool Crop)
{
    public override string ToString() => $"{W}x{H} {(Crop ? "crop" : "scale")}";

    /// <summary>Output size of a scale (fit inside, never upscale) or a crop.</summary>
    public (int W, int H) OutputSize(int sw, int sh)
    {
        if (Crop) return (W, H);
        var f = Math.Min(1.0, Math.Min((double)W / sw, (double)H / sh));
        return (Math.Max(1, (int)Math.Round(sw * f)), Math.Max(1, (int)Math.Round(sh * f)));
    }

    /// <summary>The region of the source that the output shows: the whole image for a scale, the centred region of
    /// the output's aspect for a crop.</summary>
    public (int X, int Y, int W, int H) SourceRect(int sw, int sh)
    {
        if (!Crop) return (0, 0, sw, sh);
        if ((long)sw * H > (long)sh * W)
        {
            var cw = Math.Max(1, (int)Math.Round((double)sh * W / H));
            return ((sw - cw) / 2, 0, cw, sh);
        }
        var ch = Math.Max(1, (int)Math.Round((double)sw * H / W));
        return (0, (sh - ch) / 2, sw, ch);
    }

    /// <summary>The smallest decoded size that still gives full output resolution (for decode-at-reduced-scale).</summary>
    public (int W, int H) MinDecode(int sw, int sh)
    {
        var f = Crop ? Math.Max((double)W / sw, (double)H / sh) : Math.Min((double)W / sw, (double)H / sh);
        f = Math.Min(1.0, f);
        return ((int)Math.Ceiling(sw * f), (int)Math.Ceiling(sh * f));
    }
}

internal interface ILib
{
    string Name { get; }

    /// <summary>The call that reads width and height without decoding pixels.</summary>
    string HeaderApi { get; }

    bool Supports(Fmt f);

    /// <summary>Forces the (native) library to load and initialise.</summary>
    void Warm(byte[] tinyPng);

    (int W, int H) Header(byte[] data);

    int FrameCount(byte[] data);

    /// <summary>Decodes once (at reduced scale where possible) and encodes one output per op.</summary>
    byte[][] Thumbs(byte[] data, Fmt src, Op[] ops, Fmt outFmt);
}

internal sealed class SkiaLib : ILib
{
    public string Name => "SkiaSharp";

    public string HeaderApi => "SKCodec.Create(stream).Info";

    public bool Supports(Fmt f) => true;

    public void Warm(byte[] tinyPng) => Header(tinyPng);

    public (int W, int H) Header(byte[] data)
    {
        using var codec = SKCodec.Create(new MemoryStream(data, writable: false)) ?? throw new InvalidDataException("not an image");
        return (codec.Info.Width, codec.Info.Height);
    }

    public int FrameCount(byte[] data)
    {
        using var codec = SKCodec.Create(new MemoryStream(data, writable: false)) ?? throw new InvalidDataException("not an image");
        return codec.FrameCount;
    }

    /// <summary>Decodes the first frame at the smallest scale the codec supports that is still at least min
    /// (JPEG: 1/8 steps through libjpeg-turbo; WebP: any scale; PNG/GIF: full size only).</summary>
    public static SKBitmap Decode(byte[] data, (int W, int H) min)
    {
        using var codec = SKCodec.Create(new MemoryStream(data, writable: false)) ?? throw new InvalidDataException("not an image");
        var size = codec.Info.Size;
        for (var k = 1; k < 8; k++)
        {
            var d = codec.GetScaledDimensions(k / 8f);
            if (d.Width >= min.W && d.Height >= min.H && d.Width < size.Width)
            {
                size = d;
                break;
            }
        }
        var info = new SKImageInfo(size.Width, size.Height, SKImageInfo.PlatformColorType, SKAlphaType.Premul);
        var bmp = new SKBitmap(info);
        var r = codec.GetPixels(info, bmp.GetPixels());
        if (r is not SKCodecResult.Success and not SKCodecResult.IncompleteInput)
        {
            bmp.Dispose();
            throw new InvalidDataException($"decode failed: {r}");
        }
        return bmp;
    }

    public static SKBitmap Resize(SKBitmap src, Op op)
    {
        var (ow, oh) = op.OutputSize(src.Width, src.Height);
        var (x, y, w, h) = op.SourceRect(src.Width, src.Height);
        using var pm = src.PeekPixels();
        using var sub = pm.ExtractSubset(new SKRectI(x, y, x + w, y + h)) ?? throw new InvalidOperationException("ExtractSubset failed");
        var dst = new SKBitmap(new SKImageInfo(ow, oh, SKImageInfo.PlatformColorType, SKAlphaType.Premul));
        using var dpm = dst.PeekPixels();
        // Mipmaps (box-filtered levels, trilinear) for large reductions; Mitchell cubic for the last factor of < 2.
        var sampling = w >= 2 * ow ? new SKSamplingOptions(SKFilterMode.Linear, SKMipmapMode.Linear) : new SKSamplingOptions(SKCubicResampler.Mitchell);
        if (!sub.ScalePixels(dpm, sampling)) throw new InvalidOperationException("ScalePixels failed");
        return dst;
    }

    public static byte[] Encode(SKBitmap bmp, Fmt f)
    {
        using var pm = bmp.PeekPixels();
        using var data = f switch
        {
            Fmt.Jpeg => pm.Encode(new SKJpegEncoderOptions(80, SKJpegEncoderDownsample.Downsample420, SKJpegEncoderAlphaOption.Ignore)),
            Fmt.Png => pm.Encode(SKPngEncoderOptions.Default),
            Fmt.Webp => pm.Encode(new SKWebpEncoderOptions(SKWebpEncoderCompression.Lossy, 80)),
            _ => throw new NotSupportedException(f.ToString()),
        };
        return (data ?? throw new InvalidOperationException("encode failed")).ToArray();
    }

    public byte[][] Thumbs(byte[] data, Fmt src, Op[] ops, Fmt outFmt)
    {
        using var codecProbe = SKCodec.Create(new MemoryStream(data, writable: false)) ?? throw new InvalidDataException("not an image");
        var (sw, sh) = (codecProbe.Info.Width, codecProbe.Info.Height);
        var min = (W: 1, H: 1);
        foreach (var op in ops)
        {
            var m = op.MinDecode(sw, sh);
            min = (Math.Max(min.W, m.W), Math.Max(min.H, m.H));
        }
        using var bmp = Decode(data, min);
        var result = new byte[ops.Length][];
        for (var i = 0; i < ops.Length; i++)
        {
            using var t = Resize(bmp, ops[i]);
            result[i] = Encode(t, outFmt);
        }
        return result;
    }
}

internal sealed class ImageSharpLib : ILib
{
    private static readonly SixLabors.ImageSharp.Configuration Config = CreateConfig();

    private static SixLabors.ImageSharp.Configuration CreateConfig()
    {
        var c = SixLabors.ImageSharp.Configuration.Default.Clone();
        c.MaxDegreeOfParallelism = 1;
        return c;
    }

    public string Name => "ImageSharp";

    public string HeaderApi => "Image.Identify(bytes)";

    public bool Supports(Fmt f) => true;

    public void Warm(byte[] tinyPng) => Header(tinyPng);

    public (int W, int H) Header(byte[] data)
    {
        var info = IsImage.Identify(Config, data, out _) ?? throw new InvalidDataException("not an image");
        return (info.Width, info.Height);
    }

    public int FrameCount(byte[] data)
    {
        // Identify does not count GIF frames in 2.1; a full decode does (all frames).
        using var img = IsImage.Load(Config, data);
        return img.Frames.Count;
    }

    public byte[][] Thumbs(byte[] data, Fmt src, Op[] ops, Fmt outFmt)
    {
        using var img = src == Fmt.Gif
            ? IsImage.Load<Rgba32>(Config, data, new GifDecoder { DecodingMode = SixLabors.ImageSharp.Metadata.FrameDecodingMode.First })
            : IsImage.Load<Rgba32>(Config, data);
        var result = new byte[ops.Length][];
        for (var i = 0; i < ops.Length; i++)
        {
            var op = ops[i];
            var options = new ResizeOptions
            {
                Size = new IsSize(op.W, op.H),
                Mode = op.Crop ? ResizeMode.Crop : ResizeMode.Max,
                Sampler = KnownResamplers.Bicubic,
            };
            using var t = ops.Length == 1 ? img : img.Clone(x => x.Resize(options));
            if (ops.Length == 1) t.Mutate(x => x.Resize(options));
            var ms = new MemoryStream();
            if (outFmt == Fmt.Jpeg) t.SaveAsJpeg(ms, new JpegEncoder { Quality = 80 });
            else t.SaveAsPng(ms, new PngEncoder());
            result[i] = ms.ToArray();
        }
        return result;
    }
}

internal sealed class NetVipsLib : ILib
{
    static NetVipsLib()
    {
        // The operation cache would return the previous result for the same buffer: off, and one worker thread.
        NetVips.Cache.Max = 0;
        NetVips.Cache.MaxMem = 0;
        NetVips.Cache.MaxFiles = 0;
        NetVips.NetVips.Concurrency = 1;
    }

    public string Name => "NetVips";

    public string HeaderApi => "Image.NewFromBuffer(bytes, access: Sequential).Width/Height";

    public bool Supports(Fmt f) => true;

    public void Warm(byte[] tinyPng) => Header(tinyPng);

    public (int W, int H) Header(byte[] data)
    {
        using var im = VImage.NewFromBuffer(data, access: NetVips.Enums.Access.Sequential);
        return (im.Width, im.Height);
    }

    public int FrameCount(byte[] data)
    {
        using var im = VImage.NewFromBuffer(data, access: NetVips.Enums.Access.Sequential);
        return im.Contains("n-pages") ? (int)im.Get("n-pages") : 1;
    }

    private static byte[] Save(VImage im, Fmt f) => f switch
    {
        Fmt.Jpeg => im.JpegsaveBuffer(q: 80),
        Fmt.Png => im.PngsaveBuffer(),
        Fmt.Webp => im.WebpsaveBuffer(q: 80),
        _ => throw new NotSupportedException(f.ToString()),
    };

    public byte[][] Thumbs(byte[] data, Fmt src, Op[] ops, Fmt outFmt)
    {
        if (ops.Length == 1)
        {
            var op = ops[0];
            using var t = VImage.ThumbnailBuffer(data, op.W, height: op.H, size: NetVips.Enums.Size.Down,
                crop: op.Crop ? NetVips.Enums.Interesting.Centre : NetVips.Enums.Interesting.None);
            return [Save(t, outFmt)];
        }
        // One decode: shrink-on-load to the largest size needed, kept in memory, then thumbnail_image from it.
        var w = ops.Max(o => o.W);
        var h = ops.Max(o => o.H);
        using var probe = VImage.NewFromBuffer(data, access: NetVips.Enums.Access.Sequential);
        var min = (W: 1, H: 1);
        foreach (var op in ops)
        {
            var m = op.MinDecode(probe.Width, probe.Height);
            min = (Math.Max(min.W, m.W), Math.Max(min.H, m.H));
        }
        using var big = VImage.ThumbnailBuffer(data, Math.Max(w, min.W), height: Math.Max(h, min.H), size: NetVips.Enums.Size.Down,
            crop: NetVips.Enums.Interesting.None);
        using var mem = big.CopyMemory();
        var result = new byte[ops.Length][];
        for (var i = 0; i < ops.Length; i++)
        {
            var op = ops[i];
            using var t = mem.ThumbnailImage(op.W, height: op.H, size: NetVips.Enums.Size.Down,
                crop: op.Crop ? NetVips.Enums.Interesting.Centre : NetVips.Enums.Interesting.None);
            result[i] = Save(t, outFmt);
        }
        return result;
    }
}

internal sealed class MagickLib : ILib
{
    static MagickLib() => ResourceLimits.Thread = 1;

    public string Name => "Magick.NET";

    public string HeaderApi => "new MagickImageInfo(bytes) (ping)";

    public bool Supports(Fmt f) => true;

    public void Warm(byte[] tinyPng) => Header(tinyPng);

    public (int W, int H) Header(byte[] data)
    {
        var info = new MagickImageInfo(data);
        return ((int)info.Width, (int)info.Height);
    }

    public int FrameCount(byte[] data)
    {
        using var c = new MagickImageCollection();
        c.Ping(data);
        return c.Count;
    }

    public byte[][] Thumbs(byte[] data, Fmt src, Op[] ops, Fmt outFmt)
    {
        var settings = new MagickReadSettings { FrameIndex = 0, FrameCount = 1 };
        if (src == Fmt.Jpeg)
        {
            // jpeg:size: libjpeg decodes at a 1/8 scale near this size. ImageMagick rounds the scale down (asking for
            // 320x240 from 2000x1500 gave 250x188), so ask for twice the size, as its documentation advises.
            var info = new MagickImageInfo(data);
            var min = (W: 1, H: 1);
            foreach (var op in ops)
            {
                var m = op.MinDecode((int)info.Width, (int)info.Height);
                min = (Math.Max(min.W, m.W), Math.Max(min.H, m.H));
            }
            settings.SetDefines(new JpegReadDefines { Size = new MagickGeometry((uint)(2 * min.W), (uint)(2 * min.H)) });
        }
        using var img = new MagickImage(data, settings);
        var result = new byte[ops.Length][];
        for (var i = 0; i < ops.Length; i++)
        {
            var op = ops[i];
            using var t = ops.Length == 1 ? img : (MagickImage)img.Clone();
            if (op.Crop)
            {
                t.Thumbnail(new MagickGeometry((uint)op.W, (uint)op.H) { FillArea = true });
                t.Crop((uint)op.W, (uint)op.H, Gravity.Center);
                t.ResetPage();
            }
            else
            {
                t.Thumbnail(new MagickGeometry((uint)op.W, (uint)op.H) { Greater = true });
            }
            if (outFmt == Fmt.Jpeg)
            {
                t.Quality = 80;
                result[i] = t.ToByteArray(MagickFormat.Jpeg);
            }
            else
            {
                result[i] = t.ToByteArray(MagickFormat.Png);
            }
        }
        return result;
    }
}

/// <summary>StbImageSharp decode + StbImageWriteSharp encode; the resize is ours (exact area average, separable).</summary>
internal sealed class StbLib : ILib
{
    public string Name => "Stb (+own resize)";

    public string HeaderApi => "ImageInfo.FromStream(stream)";

    public bool Supports(Fmt f) => f != Fmt.Webp;

    public void Warm(byte[] tinyPng) => Header(tinyPng);

    public (int W, int H) Header(byte[] data)
    {
        var info = StbImageSharp.ImageInfo.FromStream(new MemoryStream(data, writable: false)) ?? throw new InvalidDataException("not an image");
        return (info.Width, info.Height);
    }

    public int FrameCount(byte[] data) =>
        StbImageSharp.ImageResult.AnimatedGifFramesFromStream(new MemoryStream(data, writable: false), StbImageSharp.ColorComponents.RedGreenBlueAlpha).Count();

    public byte[][] Thumbs(byte[] data, Fmt src, Op[] ops, Fmt outFmt)
    {
        var img = StbImageSharp.ImageResult.FromMemory(data, StbImageSharp.ColorComponents.RedGreenBlueAlpha);
        var result = new byte[ops.Length][];
        for (var i = 0; i < ops.Length; i++)
        {
            var op = ops[i];
            var (ow, oh) = op.OutputSize(img.Width, img.Height);
            var rect = op.SourceRect(img.Width, img.Height);
            var px = AreaResize(img.Data, img.Width, rect, ow, oh);
            var ms = new MemoryStream();
            var writer = new StbImageWriteSharp.ImageWriter();
            if (outFmt == Fmt.Jpeg) writer.WriteJpg(px, ow, oh, StbImageWriteSharp.ColorComponents.RedGreenBlueAlpha, ms, 80);
            else writer.WritePng(px, ow, oh, StbImageWriteSharp.ColorComponents.RedGreenBlueAlpha, ms);
            result[i] = ms.ToArray();
        }
        return result;
    }

    /// <summary>Box filter with fractional coverage: each output pixel is the exact mean of its source footprint.</summary>
    internal static byte[] AreaResize(byte[] src, int stride, (int X, int Y, int W, int H) r, int ow, int oh)
    {
        // Horizontal pass into floats (r.H rows x ow), then vertical pass into bytes.
        var tmp = new float[r.H * ow * 4];
        var sx = (double)r.W / ow;
        for (var ox = 0; ox < ow; ox++)
        {
            var a = ox * sx;
            var b = a + sx;
            for (var y = 0; y < r.H; y++)
            {
                float c0 = 0, c1 = 0, c2 = 0, c3 = 0;
                var row = (r.Y + y) * stride;
                for (var x = (int)a; x < b && x < r.W; x++)
                {
                    var wgt = (float)(Math.Min(b, x + 1) - Math.Max(a, x));
                    var p = (row + r.X + x) * 4;
                    c0 += src[p] * wgt;
                    c1 += src[p + 1] * wgt;
                    c2 += src[p + 2] * wgt;
                    c3 += src[p + 3] * wgt;
                }
                var t = (y * ow + ox) * 4;
                var inv = (float)(1 / sx);
                tmp[t] = c0 * inv;
                tmp[t + 1] = c1 * inv;
                tmp[t + 2] = c2 * inv;
                tmp[t + 3] = c3 * inv;
            }
        }
        var dst = new byte[ow * oh * 4];
        var sy = (double)r.H / oh;
        for (var oy = 0; oy < oh; oy++)
        {
            var a = oy * sy;
            var b = a + sy;
            for (var ox = 0; ox < ow * 4; ox++)
            {
                float c = 0;
                for (var y = (int)a; y < b && y < r.H; y++) c += tmp[y * ow * 4 + ox] * (float)(Math.Min(b, y + 1) - Math.Max(a, y));
                dst[oy * ow * 4 + ox] = (byte)Math.Clamp(c / sy + 0.5, 0, 255);
            }
        }
        return dst;
    }
}

internal static partial class Program
{
    private static readonly ILib[] AllLibs = [new SkiaLib(), new ImageSharpLib(), new NetVipsLib(), new MagickLib(), new StbLib()];

    private static string _work = Path.Combine(Path.GetTempPath(), "imagelibbench");

    private static int Main(string[] args)
    {
        var a = new List<string>(args);
        string? Opt(string name)
        {
            var i = a.IndexOf(name);
            if (i < 0) return null;
            var v = i + 1 < a.Count ? a[i + 1] : throw new ArgumentException($"{name} needs a value");
            a.RemoveRange(i, 2);
            return v;
        }
        bool Flag(string name) => a.Remove(name);

        _work = Opt("--work") ?? _work;
        Directory.CreateDirectory(_work);
        var iters = int.Parse(Opt("--iters") ?? "21", CultureInfo.InvariantCulture);
        var only = Opt("--only");
        var childMem = Opt("--child-mem");
        var childHeader = Opt("--child-header");
        var libs = only is null ? AllLibs : AllLibs.Where(l => Key(l) == only).ToArray();
        if (libs.Length == 0) throw new ArgumentException($"unknown library '{only}' (skia, imagesharp, netvips, magick, stb)");

        if (childMem is not null) return ChildMem(libs[0], childMem);
        if (childHeader is not null) return ChildHeader(libs[0], childHeader);
        if (Flag("--gen"))
        {
            Generate();
            return 0;
        }
        if (Flag("--blobs"))
        {
            Blobs(int.Parse(Opt("--rounds") ?? "3", CultureInfo.InvariantCulture));
            return 0;
        }
        var skipSpeed = Flag("--no-speed");
        var skipMem = Flag("--no-mem");
        if (a.Count > 0) throw new ArgumentException($"unknown arguments: {string.Join(' ', a)}");

        Console.WriteLine($"# ImageLibBench {DateTime.UtcNow:yyyy-MM-dd HH:mm}Z, {Environment.ProcessorCount} cores, .NET {Environment.Version}, work dir {_work}");
        var inputs = Generate();
        if (!skipSpeed) Speed(libs, inputs, iters);
        if (!skipMem)
        {
            Memory(libs);
            Headers(libs);
        }
        return 0;
    }

    internal static string Key(ILib l) => l switch
    {
        SkiaLib => "skia",
        ImageSharpLib => "imagesharp",
        NetVipsLib => "netvips",
        MagickLib => "magick",
        _ => "stb",
    };

    // ---------------------------------------------------------------- inputs

    internal sealed record Input(string Name, string Path, Fmt Fmt, Fmt OutFmt);

    private static string P(string file) => Path.Combine(_work, file);

    private static Dictionary<string, Input> Generate()
    {
        var inputs = new Dictionary<string, Input>
        {
            ["jpeg"] = new("2000x1500 JPEG", P("photo-2000x1500.jpg"), Fmt.Jpeg, Fmt.Jpeg),
            ["png"] = new("1024x768 PNG", P("image-1024x768.png"), Fmt.Png, Fmt.Png),
            ["gif"] = new("500x500 GIF (4 frames)", P("anim-500x500.gif"), Fmt.Gif, Fmt.Png),
            ["webp"] = new("1600x1200 WebP", P("photo-1600x1200.webp"), Fmt.Webp, Fmt.Jpeg),
            ["jpeg6k"] = new("6000x4000 JPEG", P("photo-6000x4000.jpg"), Fmt.Jpeg, Fmt.Jpeg),
        };
        void Make(string path, Action<string> make)
        {
            if (File.Exists(path)) return;
            make(path + ".tmp");
            File.Move(path + ".tmp", path, overwrite: true);
        }
        Make(inputs["jpeg"].Path, p => SaveSkia(Photo(2000, 1500, 1, 14), p, SKEncodedImageFormat.Jpeg, 90));
        Make(inputs["jpeg6k"].Path, p => SaveSkia(Photo(6000, 4000, 2, 14), p, SKEncodedImageFormat.Jpeg, 90));
        Make(inputs["png"].Path, p => SaveSkia(Photo(1024, 768, 3, 3), p, SKEncodedImageFormat.Png, 100));
        Make(inputs["webp"].Path, p => SaveSkia(Photo(1600, 1200, 4, 10), p, SKEncodedImageFormat.Webp, 80));
        Make(inputs["gif"].Path, AnimatedGif);
        // An animated WebP for the frame-count check (SkiaSharp cannot write one; libvips converts the GIF).
        Make(P("anim-500x500.webp"), p =>
        {
            using var im = VImage.NewFromFile(inputs["gif"].Path, kwargs: new NetVips.VOption { { "n", -1 } });
            im.Webpsave(p, q: 80);
        });
        Make(P("bomb-20000x20000.png"), p => BombPng(p, 20000, 20000));
        Make(P("tiny.png"), p => SaveSkia(Photo(8, 8, 5, 0), p, SKEncodedImageFormat.Png, 100));
        return inputs;
    }

    /// <summary>A photo-like image: a gradient sky, soft radial blobs and hard-edged shapes, plus per-pixel noise
    /// (sensor grain) so that it does not compress trivially.</summary>
    private static SKBitmap Photo(int w, int h, int seed, int noise, int shift = 0)
    {
        var rnd = new Random(seed);
        var bmp = new SKBitmap(new SKImageInfo(w, h, SKColorType.Rgba8888, SKAlphaType.Premul));
        using (var canvas = new SKCanvas(bmp))
        {
            using var bg = new SKPaint
            {
                Shader = SKShader.CreateLinearGradient(new SKPoint(0, 0), new SKPoint(w * 0.3f, h),
                    [new SKColor(70, 120, 200), new SKColor(200, 190, 160), new SKColor(60, 90, 40)], SKShaderTileMode.Clamp),
            };
            canvas.DrawRect(0, 0, w, h, bg);
            for (var i = 0; i < 60; i++)
            {
                var cx = (float)rnd.NextDouble() * w + shift;
                var cy = (float)rnd.NextDouble() * h;
                var r = (float)(rnd.NextDouble() * 0.25 + 0.03) * Math.Min(w, h);
                var col = new SKColor((byte)rnd.Next(256), (byte)rnd.Next(256), (byte)rnd.Next(256));
                using var p = new SKPaint { IsAntialias = true };
                if (i % 3 == 0)
                {
                    p.Color = col.WithAlpha(200);
                    canvas.DrawRect(cx - r, cy - r / 2, r * 1.3f, r * 0.8f, p);
                }
                else
                {
                    p.Shader = SKShader.CreateRadialGradient(new SKPoint(cx, cy), r, [col, col.WithAlpha(0)], SKShaderTileMode.Clamp);
                    canvas.DrawCircle(cx, cy, r, p);
                }
            }
        }
        if (noise > 0)
        {
            var px = bmp.GetPixelSpan();
            var state = (uint)(seed * 2654435761u + 1);
            for (var i = 0; i < px.Length; i++)
            {
                if ((i & 3) == 3) continue;
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                var n = (int)(state % (uint)(2 * noise + 1)) - noise;
                px[i] = (byte)Math.Clamp(px[i] + n, 0, 255);
            }
        }
        return bmp;
    }

    private static void SaveSkia(SKBitmap bmp, string path, SKEncodedImageFormat f, int q)
    {
        using (bmp)
        using (var data = bmp.Encode(f, q))
        using (var fs = File.Create(path))
            data.SaveTo(fs);
    }

    /// <summary>SkiaSharp cannot write GIF; ImageSharp writes the 4-frame animation.</summary>
    private static void AnimatedGif(string path)
    {
        using var gif = new SixLabors.ImageSharp.Image<Rgba32>(500, 500);
        for (var f = 0; f < 4; f++)
        {
            using var bmp = Photo(500, 500, 6, 6, shift: f * 40);
            using var frame = SixLabors.ImageSharp.Image.LoadPixelData<Rgba32>(bmp.GetPixelSpan(), 500, 500);
            frame.Frames.RootFrame.Metadata.GetGifMetadata().FrameDelay = 10;
            gif.Frames.AddFrame(frame.Frames.RootFrame);
        }
        gif.Frames.RemoveFrame(0);
        gif.Metadata.GetGifMetadata().RepeatCount = 0;
        gif.SaveAsGif(path);
    }

    /// <summary>A valid 8-bit greyscale PNG of w x h zero pixels: about 0.4 MB on disk, 400 MB (1.6 GB as RGBA)
    /// decoded.</summary>
    private static void BombPng(string path, int w, int h)
    {
        using var fs = File.Create(path);
        fs.Write([0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A]);
        var ihdr = new byte[13];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(ihdr, w);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(ihdr.AsSpan(4), h);
        ihdr[8] = 8; // bit depth
        ihdr[9] = 0; // greyscale
        Chunk(fs, "IHDR", ihdr);
        var z = new MemoryStream();
        using (var zs = new ZLibStream(z, CompressionLevel.SmallestSize, leaveOpen: true))
        {
            var row = new byte[w + 1];
            for (var y = 0; y < h; y++) zs.Write(row);
        }
        var all = z.ToArray();
        for (var off = 0; off < all.Length; off += 1 << 20) Chunk(fs, "IDAT", all.AsSpan(off, Math.Min(1 << 20, all.Length - off)));
        Chunk(fs, "IEND", []);
    }

    private static void Chunk(Stream s, string type, ReadOnlySpan<byte> data)
    {
        Span<byte> len = stackalloc byte[4];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(len, data.Length);
        s.Write(len);
        var t = Encoding.ASCII.GetBytes(type);
        s.Write(t);
        s.Write(data);
        var crc = Crc32(Crc32(0xFFFFFFFFu, t), data) ^ 0xFFFFFFFFu;
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(len, crc);
        s.Write(len);
    }

    private static readonly uint[] CrcTable = Enumerable.Range(0, 256).Select(n =>
    {
        var c = (uint)n;
        for (var k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        return c;
    }).ToArray();

    private static uint Crc32(uint crc, ReadOnlySpan<byte> data)
    {
        foreach (var b in data) crc = CrcTable[(crc ^ b) & 0xFF] ^ (crc >> 8);
        return crc;
    }

    // ---------------------------------------------------------------- speed

    private static readonly Op Scale320 = new(320, 240, false);
    private static readonly Op Crop96 = new(96, 96, true);
    private static readonly Op[] FiveSizes = [new(32, 32, true), new(96, 96, true), new(320, 240, false), new(640, 480, false), new(800, 600, false)];

    private sealed record Scenario(string Name, Input Input, Op[] Ops, bool Separate, int Thumbs);

    private static void Speed(ILib[] libs, Dictionary<string, Input> inputs, int iters)
    {
        var scenarios = new List<Scenario>();
        foreach (var k in new[] { "jpeg", "png", "gif", "webp" })
        {
            scenarios.Add(new($"{inputs[k].Name} -> {Scale320} {inputs[k].OutFmt}", inputs[k], [Scale320], false, 1));
            scenarios.Add(new($"{inputs[k].Name} -> {Crop96} {inputs[k].OutFmt}", inputs[k], [Crop96], false, 1));
        }
        scenarios.Add(new($"{inputs["jpeg"].Name} -> 5 sizes, one decode", inputs["jpeg"], FiveSizes, false, 5));
        scenarios.Add(new($"{inputs["jpeg"].Name} -> 5 sizes, 5 decodes", inputs["jpeg"], FiveSizes, true, 5));

        var bytes = inputs.Values.ToDictionary(i => i.Path, i => File.ReadAllBytes(i.Path));
        Console.WriteLine();
        Console.WriteLine("## Inputs");
        Console.WriteLine();
        foreach (var i in inputs.Values) Console.WriteLine($"- {i.Name}: {bytes[i.Path].Length / 1024} KB");
        var tiny = File.ReadAllBytes(P("tiny.png"));
        foreach (var l in libs) l.Warm(tiny);

        // Check once per library that the outputs decode and have the expected size (SkiaSharp reads them back).
        var outSizes = new Dictionary<(string, string), string>();
        foreach (var s in scenarios)
            foreach (var l in libs.Where(l => l.Supports(s.Input.Fmt)))
            {
                var outs = Run(l, s, bytes[s.Input.Path]);
                var src = new SkiaLib().Header(bytes[s.Input.Path]);
                for (var i = 0; i < outs.Length; i++)
                {
                    var got = new SkiaLib().Header(outs[i]);
                    var want = s.Ops[i].OutputSize(src.W, src.H);
                    if (Math.Abs(got.W - want.W) > 1 || Math.Abs(got.H - want.H) > 1)
                        Console.WriteLine($"  ! {l.Name} {s.Name} op {s.Ops[i]}: got {got.W}x{got.H}, expected {want.W}x{want.H}");
                }
                outSizes[(s.Name, l.Name)] = string.Join("+", outs.Select(o => (o.Length / 1024.0).ToString("0.#", CultureInfo.InvariantCulture)));
                if (s.Ops.Length == 1 || !s.Separate)
                {
                    var dir = Path.Combine(_work, "out");
                    Directory.CreateDirectory(dir);
                    for (var i = 0; i < outs.Length; i++)
                    {
                        var ext = s.Input.OutFmt == Fmt.Jpeg ? "jpg" : "png";
                        var name = $"{Key(l)}-{Path.GetFileNameWithoutExtension(s.Input.Path)}-{s.Ops[i].W}x{s.Ops[i].H}{(s.Ops[i].Crop ? "c" : "s")}.{ext}";
                        File.WriteAllBytes(Path.Combine(dir, name), outs[i]);
                    }
                }
            }

        // Round-robin: every iteration runs each library once (rotating which goes first), so that background noise
        // (another build on the 2 cores) falls on all of them alike; the median of each is reported.
        var times = new Dictionary<(string, string), List<double>>();
        var sw = new Stopwatch();
        foreach (var s in scenarios)
        {
            var ls = libs.Where(l => l.Supports(s.Input.Fmt)).ToArray();
            var data = bytes[s.Input.Path];
            for (var it = -2; it < iters; it++)
                for (var j = 0; j < ls.Length; j++)
                {
                    var l = ls[(j + Math.Max(it, 0)) % ls.Length];
                    sw.Restart();
                    Run(l, s, data);
                    sw.Stop();
                    if (it < 0) continue;
                    var key = (s.Name, l.Name);
                    if (!times.TryGetValue(key, out var list)) times[key] = list = [];
                    list.Add(sw.Elapsed.TotalMilliseconds);
                }
        }

        Console.WriteLine();
        Console.WriteLine($"## Thumbnails per second, single thread (median of {iters} round-robin iterations; ms per call in brackets)");
        Console.WriteLine();
        Console.WriteLine("| scenario | " + string.Join(" | ", libs.Select(l => l.Name)) + " |");
        Console.WriteLine("|---|" + string.Concat(libs.Select(_ => "---:|")));
        foreach (var s in scenarios)
        {
            var cells = libs.Select(l =>
            {
                if (!times.TryGetValue((s.Name, l.Name), out var list)) return "n/a";
                var med = Median(list);
                return $"{s.Thumbs * 1000 / med:0.#} ({med:0.0} ms)";
            });
            Console.WriteLine($"| {s.Name} | " + string.Join(" | ", cells) + " |");
        }
        Console.WriteLine();
        Console.WriteLine("Output sizes (KB):");
        Console.WriteLine();
        Console.WriteLine("| scenario | " + string.Join(" | ", libs.Select(l => l.Name)) + " |");
        Console.WriteLine("|---|" + string.Concat(libs.Select(_ => "---:|")));
        foreach (var s in scenarios.Where(s => !s.Separate))
            Console.WriteLine($"| {s.Name} | " + string.Join(" | ", libs.Select(l => outSizes.GetValueOrDefault((s.Name, l.Name), "n/a"))) + " |");
    }

    private static byte[][] Run(ILib l, Scenario s, byte[] data)
    {
        if (!s.Separate) return l.Thumbs(data, s.Input.Fmt, s.Ops, s.Input.OutFmt);
        return s.Ops.Select(op => l.Thumbs(data, s.Input.Fmt, [op], s.Input.OutFmt)[0]).ToArray();
    }

    private static double Median(List<double> xs)
    {
        var s = xs.Order().ToList();
        return s.Count % 2 == 1 ? s[s.Count / 2] : (s[s.Count / 2 - 1] + s[s.Count / 2]) / 2;
    }

    // ---------------------------------------------------------------- memory (child processes)

    internal static long Status(string field)
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith(field + ":", StringComparison.Ordinal))
                return long.Parse(line.AsSpan(field.Length + 1).Trim().TrimEnd("kB").Trim(), CultureInfo.InvariantCulture);
        return -1;
    }

    /// <summary>Resets VmHWM to the current RSS (Linux 4.0+).</summary>
    internal static void ResetPeak() => File.WriteAllText("/proc/self/clear_refs", "5");

    private static int ChildMem(ILib l, string file)
    {
        var data = File.ReadAllBytes(file);
        var tiny = File.ReadAllBytes(P("tiny.png"));
        GC.Collect();
        var rss0 = Status("VmRSS");
        l.Warm(tiny);
        GC.Collect();
        var rssIdle = Status("VmRSS");
        ResetPeak();
        var fmt = file.EndsWith(".png", StringComparison.Ordinal) ? Fmt.Png : Fmt.Jpeg;
        for (var i = 0; i < 3; i++)
        {
            l.Thumbs(data, fmt, [Scale320], Fmt.Jpeg);
            l.Thumbs(data, fmt, [Crop96], Fmt.Jpeg);
        }
        var hwm = Status("VmHWM");
        Console.WriteLine($"{rss0} {rssIdle} {hwm}");
        return 0;
    }

    private static int ChildHeader(ILib l, string file)
    {
        var data = File.ReadAllBytes(file);
        l.Warm(File.ReadAllBytes(P("tiny.png")));
        GC.Collect();
        var rss = Status("VmRSS");
        ResetPeak();
        var list = new List<double>();
        (int W, int H) dims = default;
        for (var i = 0; i < 9; i++)
        {
            var sw = Stopwatch.StartNew();
            dims = l.Header(data);
            list.Add(sw.Elapsed.TotalMilliseconds);
        }
        var hwm = Status("VmHWM");
        string Frames(string file)
        {
            try
            {
                return l.FrameCount(File.ReadAllBytes(P(file))).ToString(CultureInfo.InvariantCulture);
            }
            catch (Exception e)
            {
                Console.Error.WriteLine(e.Message);
                return "fails";
            }
        }
        var frames = Frames("anim-500x500.gif") + "/" + (l.Supports(Fmt.Webp) ? Frames("anim-500x500.webp") : "n/a");
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{dims.W} {dims.H} {Median(list):0.000} {hwm - rss} {frames}"));
        return 0;
    }

    private static string RunChild(params string[] args)
    {
        var psi = new ProcessStartInfo { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        var self = Environment.ProcessPath!;
        psi.FileName = self;
        if (Path.GetFileNameWithoutExtension(self) == "dotnet") psi.ArgumentList.Add(typeof(Program).Assembly.Location);
        foreach (var x in args) psi.ArgumentList.Add(x);
        psi.ArgumentList.Add("--work");
        psi.ArgumentList.Add(_work);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEnd();
        p.WaitForExit();
        var o = stdout.Result.Trim();
        if (p.ExitCode != 0) return $"FAILED ({p.ExitCode}): {stderr.Split('\n').FirstOrDefault()}";
        return o.Split('\n')[^1];
    }

    private static void Memory(ILib[] libs)
    {
        Console.WriteLine();
        Console.WriteLine("## Memory (one child process per library and input; RSS in MB)");
        Console.WriteLine();
        Console.WriteLine("Idle = RSS after the library loaded (one header read of an 8x8 PNG) minus RSS before; "
            + "peak = VmHWM during 3 x (320x240 scale + 96x96 crop, JPEG q80), reset after load (clear_refs 5).");
        Console.WriteLine();
        Console.WriteLine("| library | RSS before load | + idle after load | peak 2000x1500 JPEG | peak 6000x4000 JPEG |");
        Console.WriteLine("|---|---:|---:|---:|---:|");
        foreach (var l in libs)
        {
            var small = RunChild("--only", Key(l), "--child-mem", P("photo-2000x1500.jpg")).Split(' ');
            var big = RunChild("--only", Key(l), "--child-mem", P("photo-6000x4000.jpg")).Split(' ');
            string Mb(string[] v, int i) => v.Length == 3 ? (long.Parse(v[i], CultureInfo.InvariantCulture) / 1024.0).ToString("0", CultureInfo.InvariantCulture) : string.Join(' ', v);
            string Delta(string[] v) => v.Length == 3
                ? ((long.Parse(v[1], CultureInfo.InvariantCulture) - long.Parse(v[0], CultureInfo.InvariantCulture)) / 1024.0).ToString("0", CultureInfo.InvariantCulture)
                : string.Join(' ', v);
            Console.WriteLine($"| {l.Name} | {Mb(small, 0)} | {Delta(small)} | {Mb(small, 2)} | {Mb(big, 2)} |");
        }
    }

    private static void Headers(ILib[] libs)
    {
        Console.WriteLine();
        Console.WriteLine("## Header only (width, height) and frame count");
        Console.WriteLine();
        Console.WriteLine("20000x20000 8-bit PNG (~0.4 MB file, 1.6 GB as RGBA); median of 9 calls; RSS growth = VmHWM after the calls "
            + "minus RSS before (child process). Frames: frame count of the 4-frame GIF / the 4-frame animated WebP.");
        Console.WriteLine();
        Console.WriteLine("| library | API | 20000x20000 PNG: dims | time | RSS growth | 2000x1500 JPEG time | frames GIF/WebP |");
        Console.WriteLine("|---|---|---|---:|---:|---:|---:|");
        foreach (var l in libs)
        {
            var bomb = RunChild("--only", Key(l), "--child-header", P("bomb-20000x20000.png")).Split(' ');
            var jpg = RunChild("--only", Key(l), "--child-header", P("photo-2000x1500.jpg")).Split(' ');
            if (bomb.Length != 5)
            {
                Console.WriteLine($"| {l.Name} | `{l.HeaderApi}` | {string.Join(' ', bomb)} | | | | |");
                continue;
            }
            Console.WriteLine($"| {l.Name} | `{l.HeaderApi}` | {bomb[0]}x{bomb[1]} | {bomb[2]} ms | {long.Parse(bomb[3], CultureInfo.InvariantCulture) / 1024.0:0.0} MB | "
                + $"{(jpg.Length == 5 ? jpg[2] + " ms" : string.Join(' ', jpg))} | {bomb[4]} |");
        }
    }

    // ---------------------------------------------------------------- blobs

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);

    /// <summary>fsync of a directory, so that a rename into it is durable (.NET has no API for it).</summary>
    private static void FsyncDir(string dir)
    {
        var fd = Open(dir, 0x10000 /* O_RDONLY | O_DIRECTORY */);
        if (fd < 0) throw new IOException($"open {dir}: errno {Marshal.GetLastPInvokeError()}");
        try
        {
            if (Fsync(fd) != 0) throw new IOException($"fsync {dir}: errno {Marshal.GetLastPInvokeError()}");
        }
        finally
        {
            Close(fd);
        }
    }

    private static long DiskKb(string dir)
    {
        var psi = new ProcessStartInfo("du", ["-sk", dir]) { RedirectStandardOutput = true };
        using var p = Process.Start(psi)!;
        var o = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return long.Parse(o.Split('\t')[0], CultureInfo.InvariantCulture);
    }

    private sealed record BlobResult(double WritesPerSec, double ReadsPerSec, long DiskKb, long PeakRssGrowthKb);

    private static void Blobs(int rounds)
    {
        var sets = new[] { (Count: 500, Size: 100 * 1024), (Count: 20, Size: 10 * 1024 * 1024) };
        var results = new Dictionary<(string, int), List<BlobResult>>();
        Console.WriteLine($"# Blob storage, {Environment.ProcessorCount} cores, {rounds} rounds (files and RocksDB alternate), dir {_work}/blobs");
        for (var round = 0; round < rounds; round++)
            foreach (var (count, size) in sets)
                foreach (var kind in round % 2 == 0 ? new[] { "files", "rocksdb" } : ["rocksdb", "files"])
                {
                    var r = kind == "files" ? BlobFiles(count, size) : BlobRocks(count, size);
                    var key = (kind, size);
                    if (!results.TryGetValue(key, out var list)) results[key] = list = [];
                    list.Add(r);
                    Console.Error.WriteLine($"round {round} {kind} {count}x{size / 1024}KB: {r}");
                }
        Console.WriteLine();
        Console.WriteLine($"## Media blobs: durable writes and full reads (median of {rounds} rounds; reads are warm, from the page cache)");
        Console.WriteLine();
        Console.WriteLine("| store | blobs | writes/s (min-max) | write MB/s | reads/s (min-max) | read MB/s | on disk after | peak RSS growth during writes |");
        Console.WriteLine("|---|---|---:|---:|---:|---:|---:|---:|");
        foreach (var (count, size) in sets)
            foreach (var kind in new[] { "files", "rocksdb" })
            {
                var list = results[(kind, size)];
                var w = Median(list.Select(r => r.WritesPerSec).ToList());
                var rd = Median(list.Select(r => r.ReadsPerSec).ToList());
                var wr = string.Create(CultureInfo.InvariantCulture, $"{list.Min(r => r.WritesPerSec):0}-{list.Max(r => r.WritesPerSec):0}");
                var rr = string.Create(CultureInfo.InvariantCulture, $"{list.Min(r => r.ReadsPerSec):0}-{list.Max(r => r.ReadsPerSec):0}");
                var disk = Median(list.Select(r => (double)r.DiskKb).ToList());
                var peak = Median(list.Select(r => (double)r.PeakRssGrowthKb).ToList());
                var mb = size / 1048576.0;
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"| {(kind == "files" ? "files (tmp + fsync + rename + dir fsync)" : "RocksDB (KvStore, sync WAL)")} | {count} x {size / 1024} KB | {w:0.#} ({wr}) | {w * mb:0.#} | {rd:0} ({rr}) | {rd * mb:0} | {disk / 1024:0.0} MB | {peak / 1024:0} MB |"));
            }
    }

    private static byte[] BlobData(int size, int i)
    {
        var b = new byte[size];
        new Random(i).NextBytes(b); // incompressible, like JPEG/PNG/video bytes
        return b;
    }

    private static BlobResult BlobFiles(int count, int size)
    {
        var root = Path.Combine(_work, "blobs", $"files-{size}");
        if (Directory.Exists(root)) Directory.Delete(root, true);
        var tmpDir = Path.Combine(root, "tmp");
        Directory.CreateDirectory(tmpDir);
        var blobs = Enumerable.Range(0, count).Select(i => BlobData(size, i)).ToArray();
        var names = Enumerable.Range(0, count).Select(i => Convert.ToHexStringLower(BitConverter.GetBytes(i * 2654435761u)) + "AbCdEfGhIjKlMnOpQrStUvWx").ToArray();
        GC.Collect();
        var rss = Status("VmRSS");
        ResetPeak();
        var sw = Stopwatch.StartNew();
        for (var i = 0; i < count; i++)
        {
            // Sharded like a media store: root/ab/cd/<media id>.
            var dir = Path.Combine(root, names[i][..2], names[i][2..4]);
            if (!Directory.Exists(dir))
            {
                Directory.CreateDirectory(dir);
                FsyncDir(Path.GetDirectoryName(dir)!);
            }
            var tmp = Path.Combine(tmpDir, names[i] + ".part");
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.None))
            {
                fs.Write(blobs[i]);
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, Path.Combine(dir, names[i]));
            FsyncDir(dir);
        }
        var writes = count / sw.Elapsed.TotalSeconds;
        var peak = Status("VmHWM") - rss;
        sw.Restart();
        long total = 0;
        for (var i = 0; i < count; i++) total += File.ReadAllBytes(Path.Combine(root, names[i][..2], names[i][2..4], names[i])).Length;
        var reads = count / sw.Elapsed.TotalSeconds;
        if (total != (long)count * size) throw new InvalidDataException("read back the wrong size");
        return new BlobResult(writes, reads, DiskKb(root), peak);
    }

    private static BlobResult BlobRocks(int count, int size)
    {
        var root = Path.Combine(_work, "blobs", $"rocksdb-{size}");
        if (Directory.Exists(root)) Directory.Delete(root, true);
        var blobs = Enumerable.Range(0, count).Select(i => BlobData(size, i)).ToArray();
        var keys = Enumerable.Range(0, count).Select(i => Encoding.UTF8.GetBytes(Convert.ToHexStringLower(BitConverter.GetBytes(i * 2654435761u)) + "AbCdEfGhIjKlMnOpQrStUvWx")).ToArray();
        double writes, reads;
        long peak;
        // Default StoreOptions (8 MiB cache), as the server opens it; every Put is a synced WAL write.
        using (var store = KvStore.Open("rocksdb", root, [new ColumnFamily("media_blobs", "media id", "bytes")]))
        {
            var map = store.Map("media_blobs");
            GC.Collect();
            var rss = Status("VmRSS");
            ResetPeak();
            var sw = Stopwatch.StartNew();
            for (var i = 0; i < count; i++) map.Put(keys[i], blobs[i]);
            writes = count / sw.Elapsed.TotalSeconds;
            peak = Status("VmHWM") - rss;
            sw.Restart();
            long total = 0;
            for (var i = 0; i < count; i++) total += map.Get(keys[i])!.Length;
            reads = count / sw.Elapsed.TotalSeconds;
            if (total != (long)count * size) throw new InvalidDataException("read back the wrong size");
        }
        return new BlobResult(writes, reads, DiskKb(root), peak);
    }
}

// Native AOT probe: loads one image library, makes a 320x240 JPEG thumbnail of args[0] into args[1], and prints
// "lib rssBeforeKb rssAfterLoadKb outW outH outBytes" (RSS from /proc/self/status; the output is read back through
// the same library's header API).
using System.Globalization;

var input = File.ReadAllBytes(args[0]);
var before = Rss();
var (w, h) = Header(input); // loads and initialises the library
var idle = Rss();
var output = Thumb(input, w, h);
File.WriteAllBytes(args[1], output);
var (ow, oh) = Header(output);
Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{LibName()} {before} {idle} {ow} {oh} {output.Length}"));
return ow == 320 && oh == 240 ? 0 : 1;

static long Rss()
{
    GC.Collect();
    foreach (var line in File.ReadLines("/proc/self/status"))
        if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            return long.Parse(line.AsSpan(6).Trim().TrimEnd("kB").Trim(), CultureInfo.InvariantCulture);
    return -1;
}

#if LIB_SKIA
static (int, int) Header(byte[] b)
{
    using var codec = SkiaSharp.SKCodec.Create(new MemoryStream(b))!;
    return (codec.Info.Width, codec.Info.Height);
}

static byte[] Thumb(byte[] b, int w, int h)
{
    using var codec = SkiaSharp.SKCodec.Create(new MemoryStream(b))!;
    var size = codec.GetScaledDimensions(2 / 8f); // 500x375 for 2000x1500
    var info = new SkiaSharp.SKImageInfo(size.Width, size.Height);
    using var bmp = new SkiaSharp.SKBitmap(info);
    codec.GetPixels(info, bmp.GetPixels());
    using var dst = bmp.Resize(new SkiaSharp.SKSizeI(320, 240), new SkiaSharp.SKSamplingOptions(SkiaSharp.SKCubicResampler.Mitchell))!;
    using var data = dst.Encode(SkiaSharp.SKEncodedImageFormat.Jpeg, 80)!;
    return data.ToArray();
}

static string LibName() => "skia";
#elif LIB_IMAGESHARP
static (int, int) Header(byte[] b)
{
    var i = SixLabors.ImageSharp.Image.Identify(b)!;
    return (i.Width, i.Height);
}

static byte[] Thumb(byte[] b, int w, int h)
{
    using var img = SixLabors.ImageSharp.Image.Load(b);
    SixLabors.ImageSharp.Processing.ProcessingExtensions.Mutate(img, x => SixLabors.ImageSharp.Processing.ResizeExtensions.Resize(x,
        new SixLabors.ImageSharp.Processing.ResizeOptions { Size = new(320, 240), Mode = SixLabors.ImageSharp.Processing.ResizeMode.Max }));
    var ms = new MemoryStream();
    SixLabors.ImageSharp.ImageExtensions.SaveAsJpeg(img, ms, new SixLabors.ImageSharp.Formats.Jpeg.JpegEncoder { Quality = 80 });
    return ms.ToArray();
}

static string LibName() => "imagesharp";
#elif LIB_NETVIPS
static (int, int) Header(byte[] b)
{
    using var im = NetVips.Image.NewFromBuffer(b, access: NetVips.Enums.Access.Sequential);
    return (im.Width, im.Height);
}

static byte[] Thumb(byte[] b, int w, int h)
{
    using var t = NetVips.Image.ThumbnailBuffer(b, 320, height: 240, size: NetVips.Enums.Size.Down);
    return t.JpegsaveBuffer(q: 80);
}

static string LibName() => "netvips";
#elif LIB_MAGICK
static (int, int) Header(byte[] b)
{
    var i = new ImageMagick.MagickImageInfo(b);
    return ((int)i.Width, (int)i.Height);
}

static byte[] Thumb(byte[] b, int w, int h)
{
    var settings = new ImageMagick.MagickReadSettings();
    settings.SetDefines(new ImageMagick.Formats.JpegReadDefines { Size = new ImageMagick.MagickGeometry(640, 480) });
    using var img = new ImageMagick.MagickImage(b, settings);
    img.Thumbnail(320, 240);
    img.Quality = 80;
    return img.ToByteArray(ImageMagick.MagickFormat.Jpeg);
}

static string LibName() => "magick";
#elif LIB_STB
static (int, int) Header(byte[] b)
{
    var i = StbImageSharp.ImageInfo.FromStream(new MemoryStream(b))!.Value;
    return (i.Width, i.Height);
}

static byte[] Thumb(byte[] b, int w, int h)
{
    // Nearest-neighbour here: the probe only checks that the libraries run under AOT.
    var img = StbImageSharp.ImageResult.FromMemory(b, StbImageSharp.ColorComponents.RedGreenBlue);
    var px = new byte[320 * 240 * 3];
    for (var y = 0; y < 240; y++)
        for (var x = 0; x < 320; x++)
            for (var c = 0; c < 3; c++)
                px[(y * 320 + x) * 3 + c] = img.Data[((y * img.Height / 240) * img.Width + x * img.Width / 320) * 3 + c];
    var ms = new MemoryStream();
    new StbImageWriteSharp.ImageWriter().WriteJpg(px, 320, 240, StbImageWriteSharp.ColorComponents.RedGreenBlue, ms, 80);
    return ms.ToArray();
}

static string LibName() => "stb";
#endif

using Conduit.Media.Thumbnails;
using SkiaSharp;

namespace Conduit.Media.Tests;

public class ThumbnailerTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("thumbs-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>An opaque image, red on its left half and blue on its right, as a JPEG.</summary>
    static byte[] HalfRedHalfBlue(int w, int h)
    {
        using var bmp = new SKBitmap(new SKImageInfo(w, h, SKColorType.Rgba8888, SKAlphaType.Opaque));
        using (var canvas = new SKCanvas(bmp))
        {
            canvas.Clear(SKColors.Blue);
            using var red = new SKPaint { Color = SKColors.Red };
            canvas.DrawRect(0, 0, w / 2, h, red);
        }
        using var image = SKImage.FromBitmap(bmp);
        return image.Encode(SKEncodedImageFormat.Jpeg, 95).ToArray();
    }

    /// <summary>The JPEG with an EXIF APP1 segment right after SOI carrying only Orientation (tag 274).</summary>
    static byte[] WithOrientation(byte[] jpeg, ushort orientation)
    {
        byte[] tiff =
        [
            (byte)'M', (byte)'M', 0, 42, 0, 0, 0, 8, // big-endian TIFF header, IFD at 8
            0, 1,                                    // one entry
            0x01, 0x12, 0, 3, 0, 0, 0, 1, (byte)(orientation >> 8), (byte)orientation, 0, 0, // Orientation, SHORT, 1
            0, 0, 0, 0,                              // no next IFD
        ];
        var payload = "Exif\0\0"u8.ToArray().Concat(tiff).ToArray();
        var len = payload.Length + 2;
        return [0xFF, 0xD8, 0xFF, 0xE1, (byte)(len >> 8), (byte)len, .. payload, .. jpeg[2..]];
    }

    string Save(byte[] bytes)
    {
        var path = Path.Combine(_dir, Guid.NewGuid().ToString("N"));
        File.WriteAllBytes(path, bytes);
        return path;
    }

    static SKColor Pixel(byte[] encoded, int x, int y)
    {
        using var bmp = SKBitmap.Decode(encoded);
        return bmp.GetPixel(x, y);
    }

    [Fact]
    public void Exif_orientation_is_applied()
    {
        // 800x400, red left half; orientation 6 (rotate 90° clockwise to display): upright it is 400x800, red on top.
        var path = Save(WithOrientation(HalfRedHalfBlue(800, 400), 6));
        var probe = Thumbnailer.Probe(path)!;
        Assert.Equal((400, 800, "image/jpeg"), (probe.Width, probe.Height, probe.MimeType));
        var t = Thumbnailer.Generate(path, probe, [ThumbnailSize.Standard[2]]).Single();
        Assert.Equal((120, 240), (t.Width, t.Height));
        var top = Pixel(t.Bytes, 60, 20);
        var bottom = Pixel(t.Bytes, 60, 220);
        Assert.True(top.Red > 200 && top.Blue < 60, $"top should be red: {top}");
        Assert.True(bottom.Blue > 200 && bottom.Red < 60, $"bottom should be blue: {bottom}");
    }

    [Fact]
    public void Without_orientation_the_image_is_as_stored()
    {
        var path = Save(HalfRedHalfBlue(800, 400));
        var probe = Thumbnailer.Probe(path)!;
        var t = Thumbnailer.Generate(path, probe, [ThumbnailSize.Standard[2]]).Single();
        Assert.Equal((320, 160), (t.Width, t.Height));
        Assert.True(Pixel(t.Bytes, 20, 80).Red > 200);
        Assert.True(Pixel(t.Bytes, 300, 80).Blue > 200);
    }

    [Fact]
    public void Non_images_and_unsupported_formats_have_no_probe()
    {
        Assert.Null(Thumbnailer.Probe(Save("hello"u8.ToArray())));
        // BMP is decodable by Skia but not a format this server thumbnails.
        var bmpFile = new byte[54 + 10 * 10 * 4];
        "BM"u8.CopyTo(bmpFile);
        Assert.Null(Thumbnailer.Probe(Save(bmpFile)));
    }
}

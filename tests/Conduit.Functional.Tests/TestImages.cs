using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using SkiaSharp;

namespace Conduit.Functional.Tests;

/// <summary>Images made by the tests themselves: photos-like pictures in each format, animations, and hostile files.</summary>
public static class TestImages
{
    /// <summary>A gradient with a diagonal band, so crops and scales are visibly different; opaque unless asked.</summary>
    public static SKBitmap Picture(int width, int height, bool alpha = false)
    {
        var bmp = new SKBitmap(new SKImageInfo(width, height, SKColorType.Rgba8888, alpha ? SKAlphaType.Unpremul : SKAlphaType.Opaque));
        for (var y = 0; y < height; y++)
            for (var x = 0; x < width; x++)
            {
                var band = Math.Abs(x - y) < Math.Max(4, width / 20);
                bmp.SetPixel(x, y, new SKColor((byte)(255 * x / width), (byte)(255 * y / height), band ? (byte)255 : (byte)40, alpha ? (byte)(x % 2 == 0 ? 255 : 128) : (byte)255));
            }
        return bmp;
    }

    public static byte[] Encode(SKBitmap bmp, SKEncodedImageFormat format, int quality = 90)
    {
        using var image = SKImage.FromBitmap(bmp);
        using var data = image.Encode(format, quality);
        return data.ToArray();
    }

    public static byte[] Jpeg(int w, int h) { using var b = Picture(w, h); return Encode(b, SKEncodedImageFormat.Jpeg); }
    public static byte[] Png(int w, int h, bool alpha = false) { using var b = Picture(w, h, alpha); return Encode(b, SKEncodedImageFormat.Png); }
    public static byte[] Webp(int w, int h) { using var b = Picture(w, h); return Encode(b, SKEncodedImageFormat.Webp); }

    /// <summary>
    /// A GIF89a (Skia decodes GIF but cannot write it), animated when <paramref name="frames"/> &gt; 1: a 256-grey
    /// palette, each frame a shifted gradient. The LZW data never grows its code size: a clear code every 254
    /// literal codes keeps codes at 9 bits, which every decoder accepts.
    /// </summary>
    public static byte[] Gif(int width, int height, int frames = 1)
    {
        var o = new MemoryStream();
        void U16(int v) { o.WriteByte((byte)v); o.WriteByte((byte)(v >> 8)); }
        o.Write("GIF89a"u8);
        U16(width); U16(height);
        o.WriteByte(0xF7); // global colour table, 8 bits, 256 entries
        o.WriteByte(0); o.WriteByte(0);
        for (var i = 0; i < 256; i++) { o.WriteByte((byte)i); o.WriteByte((byte)i); o.WriteByte((byte)(255 - i)); }
        if (frames > 1)
        {
            o.Write([0x21, 0xFF, 0x0B]); o.Write("NETSCAPE2.0"u8); o.Write([0x03, 0x01, 0x00, 0x00, 0x00]);
        }
        for (var f = 0; f < frames; f++)
        {
            if (frames > 1) { o.Write([0x21, 0xF9, 0x04, 0x00]); U16(10); o.Write([0x00, 0x00]); }
            o.WriteByte(0x2C); U16(0); U16(0); U16(width); U16(height); o.WriteByte(0);
            o.WriteByte(8); // LZW minimum code size
            var codes = new List<int>();
            int sinceClear = 0;
            codes.Add(256);
            for (var y = 0; y < height; y++)
                for (var x = 0; x < width; x++)
                {
                    if (sinceClear == 254) { codes.Add(256); sinceClear = 0; }
                    codes.Add((x * 255 / Math.Max(1, width - 1) + f * 40) % 256);
                    sinceClear++;
                }
            codes.Add(257);
            var bytes = new List<byte>();
            int acc = 0, bits = 0;
            foreach (var c in codes)
            {
                acc |= c << bits;
                bits += 9;
                while (bits >= 8) { bytes.Add((byte)acc); acc >>= 8; bits -= 8; }
            }
            if (bits > 0) bytes.Add((byte)acc);
            for (var i = 0; i < bytes.Count; i += 255)
            {
                var n = Math.Min(255, bytes.Count - i);
                o.WriteByte((byte)n);
                o.Write(bytes.GetRange(i, n).ToArray());
            }
            o.WriteByte(0);
        }
        o.WriteByte(0x3B);
        return o.ToArray();
    }

    /// <summary>
    /// A decompression bomb: a valid greyscale PNG of <paramref name="width"/>×<paramref name="height"/> pixels, all
    /// black, which zlib packs to about a thousandth of its decoded size.
    /// </summary>
    public static byte[] PngBomb(int width, int height)
    {
        var idat = new MemoryStream();
        using (var z = new ZLibStream(idat, CompressionLevel.SmallestSize, leaveOpen: true))
        {
            var row = new byte[width + 1];
            for (var y = 0; y < height; y++) z.Write(row);
        }
        return PngWith(width, height, colorType: 0, idat.ToArray());
    }

    /// <summary>A PNG whose header is fine and whose pixel data is garbage.</summary>
    public static byte[] CorruptPng(int width, int height)
    {
        var garbage = new byte[4096];
        new Random(7).NextBytes(garbage);
        garbage[0] = 0x78; garbage[1] = 0x9C; // a zlib header, then nonsense
        return PngWith(width, height, colorType: 2, garbage);
    }

    static byte[] PngWith(int width, int height, byte colorType, byte[] idat)
    {
        var o = new MemoryStream();
        o.Write([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]);
        var ihdr = new byte[13];
        BinaryPrimitives.WriteInt32BigEndian(ihdr, width);
        BinaryPrimitives.WriteInt32BigEndian(ihdr.AsSpan(4), height);
        ihdr[8] = 8; ihdr[9] = colorType;
        Chunk(o, "IHDR", ihdr);
        Chunk(o, "IDAT", idat);
        Chunk(o, "IEND", []);
        return o.ToArray();
    }

    static void Chunk(Stream o, string type, byte[] data)
    {
        Span<byte> len = stackalloc byte[4];
        BinaryPrimitives.WriteInt32BigEndian(len, data.Length);
        o.Write(len);
        var typed = Encoding.ASCII.GetBytes(type).Concat(data).ToArray();
        o.Write(typed);
        BinaryPrimitives.WriteUInt32BigEndian(len, Crc32(typed));
        o.Write(len);
    }

    static uint Crc32(byte[] data)
    {
        var crc = 0xFFFFFFFFu;
        foreach (var b in data)
        {
            crc ^= b;
            for (var k = 0; k < 8; k++) crc = (crc & 1) != 0 ? (crc >> 1) ^ 0xEDB88320u : crc >> 1;
        }
        return ~crc;
    }

    /// <summary>Width, height, frame count and format of an encoded image, read the way a client would.</summary>
    public static (int Width, int Height, int Frames, SKEncodedImageFormat Format) Inspect(byte[] bytes)
    {
        using var data = SKData.CreateCopy(bytes);
        using var codec = SKCodec.Create(data) ?? throw new InvalidOperationException("not an image");
        return (codec.Info.Width, codec.Info.Height, Math.Max(1, codec.FrameCount), codec.EncodedFormat);
    }
}

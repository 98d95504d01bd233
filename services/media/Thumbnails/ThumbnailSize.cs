namespace Conduit.Media.Thumbnails;

/// <summary>
/// A thumbnail size this server makes. Only the spec's recommended sizes are made (spec: client-server-api,
/// "Thumbnails"): a request is served the smallest of them that is at least as large as asked, so each piece of media
/// has at most five thumbnails however many sizes clients ask for (Conduit snaps to the same list; a size per request
/// would let anyone fill the disk with thumbnails of one image).
/// </summary>
public sealed record ThumbnailSize(int Width, int Height, bool Crop)
{
    public string Method => Crop ? "crop" : "scale";
    public string Name => this == FullSize ? "still" : $"{Width}x{Height}-{Method}";

    /// <summary>The first frame of an animation at the image's own size: what is served where the original would be
    /// when the request does not allow an animated thumbnail.</summary>
    public static readonly ThumbnailSize FullSize = new(0, 0, false);

    public static readonly ThumbnailSize[] Standard =
    [
        new(32, 32, true), new(96, 96, true), new(320, 240, false), new(640, 480, false), new(800, 600, false),
    ];

    /// <summary>
    /// The size that serves a request: for crop, the smallest crop size covering both dimensions; otherwise (scale,
    /// or a crop larger than 96×96) the smallest scale size covering both. Null when the request is larger than every
    /// size: the original is served (the spec never allows a smaller thumbnail than asked).
    /// </summary>
    public static ThumbnailSize? For(int width, int height, bool crop)
    {
        if (crop)
            foreach (var s in Standard)
                if (s.Crop && s.Width >= width && s.Height >= height) return s;
        foreach (var s in Standard)
            if (!s.Crop && s.Width >= width && s.Height >= height) return s;
        return null;
    }

    /// <summary>
    /// The dimensions of this thumbnail of an image of <paramref name="w"/>×<paramref name="h"/>, and the centred
    /// region of the image it shows; null when the image is no larger than the box (never upscale: the spec says to
    /// serve the original then). Scale keeps the aspect ratio and fits inside the box; crop fills the box and cuts
    /// what overflows, or, when the image is narrower or shorter than the box, cuts the largest region of the box's
    /// aspect ratio without scaling.
    /// </summary>
    public (int Width, int Height, int SrcX, int SrcY, int SrcWidth, int SrcHeight)? Layout(int w, int h)
    {
        if (w <= Width && h <= Height) return null;
        if (!Crop)
        {
            var r = Math.Min((double)Width / w, (double)Height / h);
            return (Math.Max(1, (int)Math.Round(w * r)), Math.Max(1, (int)Math.Round(h * r)), 0, 0, w, h);
        }
        if (w >= Width && h >= Height)
        {
            var r = Math.Max((double)Width / w, (double)Height / h);
            int sw = Math.Min(w, (int)Math.Round(Width / r)), sh = Math.Min(h, (int)Math.Round(Height / r));
            return (Width, Height, (w - sw) / 2, (h - sh) / 2, sw, sh);
        }
        // Narrower or shorter than the box: the largest centred region of the box's aspect ratio, at its own scale.
        var aspect = (double)Width / Height;
        int cw = w, ch = (int)Math.Round(w / aspect);
        if (ch > h) (cw, ch) = ((int)Math.Round(h * aspect), h);
        cw = Math.Max(1, cw);
        ch = Math.Max(1, ch);
        return (cw, ch, (w - cw) / 2, (h - ch) / 2, cw, ch);
    }
}

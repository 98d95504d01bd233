using Conduit.Media.Thumbnails;

namespace Conduit.Media.Tests;

public class ThumbnailSizeTests
{
    [Theory]
    [InlineData(32, 32, true, "32x32-crop")]
    [InlineData(1, 1, true, "32x32-crop")]
    [InlineData(48, 48, true, "96x96-crop")]
    [InlineData(96, 96, true, "96x96-crop")]
    [InlineData(97, 96, true, "320x240-scale")]
    [InlineData(32, 32, false, "320x240-scale")]
    [InlineData(320, 240, false, "320x240-scale")]
    [InlineData(321, 240, false, "640x480-scale")]
    [InlineData(800, 600, false, "800x600-scale")]
    [InlineData(800, 601, false, null)]
    [InlineData(2000, 2000, true, null)]
    public void Requests_snap_to_the_smallest_standard_size_that_covers_them(int w, int h, bool crop, string? expected)
        => Assert.Equal(expected, ThumbnailSize.For(w, h, crop)?.Name);

    [Fact]
    public void Scale_fits_inside_the_box_keeping_the_aspect_ratio()
    {
        var s = ThumbnailSize.Standard.Single(x => x.Name == "320x240-scale");
        Assert.Equal((320, 240, 0, 0, 2000, 1500), s.Layout(2000, 1500));
        Assert.Equal((320, 80, 0, 0, 2000, 500), s.Layout(2000, 500));
        Assert.Equal((160, 240, 0, 0, 1000, 1500), s.Layout(1000, 1500));
        // Never upscaled: no thumbnail of an image that already fits.
        Assert.Null(s.Layout(300, 200));
        Assert.Null(s.Layout(320, 240));
    }

    [Fact]
    public void Crop_fills_the_box_and_cuts_the_centre()
    {
        var s = ThumbnailSize.Standard.Single(x => x.Name == "96x96-crop");
        Assert.Equal((96, 96, 250, 0, 1000, 1000), s.Layout(1500, 1000));
        Assert.Equal((96, 96, 0, 250, 1000, 1000), s.Layout(1000, 1500));
        // Narrower than the box: the largest centred square, not scaled up.
        Assert.Equal((50, 50, 0, 75, 50, 50), s.Layout(50, 200));
        Assert.Null(s.Layout(96, 60));
    }
}

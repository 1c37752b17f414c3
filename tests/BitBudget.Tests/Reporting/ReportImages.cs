using SkiaSharp;

namespace BitBudget.Tests.Reporting;

/// <summary>Checks on rendered PNGs: decodable, the expected size, and not one flat colour.</summary>
static class ReportImages
{
    internal static SKBitmap DecodeChecked(byte[] png, int width, int height)
    {
        Assert.True(png.Length > 8 && png[0] == 0x89 && png[1] == (byte)'P' && png[2] == (byte)'N' && png[3] == (byte)'G', "not a PNG signature");
        var bitmap = SKBitmap.Decode(png);
        Assert.NotNull(bitmap);
        Assert.Equal(width, bitmap.Width);
        Assert.Equal(height, bitmap.Height);
        return bitmap;
    }

    /// <summary>Variance of the luminance over all pixels (0 for a blank image; a chart on white is in the hundreds).</summary>
    internal static double LuminanceVariance(SKBitmap bitmap)
    {
        double sum = 0, sumSq = 0;
        long n = 0;
        for (int y = 0; y < bitmap.Height; y++)
        {
            for (int x = 0; x < bitmap.Width; x++)
            {
                SKColor c = bitmap.GetPixel(x, y);
                double l = 0.299 * c.Red + 0.587 * c.Green + 0.114 * c.Blue;
                sum += l;
                sumSq += l * l;
                n++;
            }
        }
        double mean = sum / n;
        return sumSq / n - mean * mean;
    }

    /// <summary>Counts clearly red and clearly blue pixels.</summary>
    internal static (int Red, int Blue) RedBlue(SKBitmap bitmap)
    {
        int red = 0, blue = 0;
        for (int y = 0; y < bitmap.Height; y++)
        {
            for (int x = 0; x < bitmap.Width; x++)
            {
                SKColor c = bitmap.GetPixel(x, y);
                if (c.Red > c.Blue + 25 && c.Red > c.Green + 25) { red++; }
                if (c.Blue > c.Red + 25 && c.Blue >= c.Green) { blue++; }
            }
        }
        return (red, blue);
    }
}

using System.Text.RegularExpressions;
using BitBudget.Numerics;
using BitBudget.Reporting;
using BitBudget.Tests.Support;

namespace BitBudget.Tests.Reporting;

public class HtmlReportTests
{
    static HtmlReportInput Input(string oddName = "<script>alert('x')</script>")
    {
        var layers = SyntheticReport.Layers(oddName);
        return new HtmlReportInput(SyntheticReport.Front(layers, model: "resnet20 & <b>friends</b>"))
        {
            Layers = layers,
            Omega = SyntheticReport.Omega(layers),
            Manifest = SyntheticReport.Manifest(),
            Notes = ["Synthetic data <not measured>."],
        };
    }

    [Fact]
    public void Write_EmbedsEveryChartAsADecodablePng()
    {
        using var dir = new Assets.TempDir();
        string path = dir.File("report.html");

        HtmlReport.Write(path, Input());
        string html = File.ReadAllText(path);

        var images = Regex.Matches(html, "src=\"data:image/png;base64,([A-Za-z0-9+/=]+)\"");
        Assert.Equal(3, images.Count);   // Pareto, bits per layer, Ω
        foreach (Match m in images)
        {
            using var bitmap = SkiaSharp.SKBitmap.Decode(Convert.FromBase64String(m.Groups[1].Value));
            Assert.NotNull(bitmap);
            Assert.True(ReportImages.LuminanceVariance(bitmap) > 100);
        }
        Assert.DoesNotMatch("(src|href)=\"(https?:)?//", html);   // self-contained
        Assert.DoesNotContain("<link", html);
        Assert.Contains("<h2>Bits per layer at 3.5bits</h2>", html);
        Assert.Contains("<td>Optimal</td>", html);
        Assert.Contains("91.60%", html);
    }

    [Fact]
    public void Render_EscapesEveryName_SoAScriptLayerStaysInert()
    {
        string html = HtmlReport.Render(Input());

        Assert.DoesNotContain("<script", html, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("<b>friends", html);
        Assert.DoesNotContain("<not measured>", html);
        // The template engine's encoder (System.Text.Encodings.Web) writes ' as &#x27;; a browser shows the name as written.
        Assert.Contains("&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;", html);
        Assert.Contains("resnet20 &amp; &lt;b&gt;friends&lt;/b&gt;", html);
        Assert.Contains("<th>predicted ΔL</th>", html);   // non-ASCII text stays as written, not as entities
    }

    [Fact]
    public void Render_WithFrontOnly_LeavesOptionalSectionsOut()
    {
        var layers = SyntheticReport.Layers();
        string html = HtmlReport.Render(new HtmlReportInput(SyntheticReport.Front(layers)));

        Assert.Contains("Pareto front", html);
        Assert.DoesNotContain("Cross-layer sensitivity", html);
        Assert.DoesNotContain("manifest.json", html);
        Assert.Equal(2, Regex.Matches(html, "data:image/png;base64,").Count);   // Pareto + bits per layer
    }

    [Fact]
    public void OmegaHeatmap_ShowsBothSigns()
    {
        var layers = SyntheticReport.Layers();
        var omega = SyntheticReport.Omega(layers);
        Assert.Contains(omega.Values.ToRowMajorArray(), v => v < 0);

        using var bitmap = ReportImages.DecodeChecked(ReportCharts.Omega(omega, 700, 640), 700, 640);
        var (red, blue) = ReportImages.RedBlue(bitmap);

        Assert.True(red > 2000, $"only {red} red pixels");
        Assert.True(blue > 2000, $"only {blue} blue pixels");
    }

    [Fact]
    public void OmegaMatrix_RejectsLabelsThatDoNotMatchItsOrder()
    {
        var ex = Assert.Throws<ArgumentException>(() => new OmegaMatrix(["a@2", "a@4", "b@2"], SquareMatrix.Copy(new double[16], 4)));
        Assert.Contains("4×4 but has 3 labels", ex.Message);
    }

    [Fact]
    public void OmegaHeatmap_DrawsRowZeroAtTheTop()
    {
        // Ω[0,0] > 0 (red), Ω[3,0] = Ω[0,3] < 0 (blue): top-left red, bottom-left blue.
        var values = new double[16];
        values[0] = 1;
        values[12] = values[3] = -1;
        var omega = new OmegaMatrix(["a@2", "a@4", "b@2", "b@4"], SquareMatrix.Copy(values, 4));

        byte[] png = ReportCharts.Omega(omega, 600, 600);
        using var bitmap = ReportImages.DecodeChecked(png, 600, 600);
        using var topLeft = new SkiaSharp.SKBitmap(300, 300);
        using var bottomLeft = new SkiaSharp.SKBitmap(300, 300);
        Assert.True(bitmap.ExtractSubset(topLeft, new SkiaSharp.SKRectI(0, 0, 300, 300)));
        Assert.True(bitmap.ExtractSubset(bottomLeft, new SkiaSharp.SKRectI(0, 300, 300, 600)));

        var (topRed, topBlue) = ReportImages.RedBlue(topLeft);
        var (bottomRed, bottomBlue) = ReportImages.RedBlue(bottomLeft);
        Assert.True(topRed > 1000 && topBlue < 100, $"top-left: {topRed} red, {topBlue} blue");
        Assert.True(bottomBlue > 1000 && bottomRed < 100, $"bottom-left: {bottomRed} red, {bottomBlue} blue");
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(1e-9)]
    [InlineData(3e-4)]
    [InlineData(12.5)]
    public void Symlog_IsOddAndIncreasing(double v)
    {
        const double tau = 1e-3;
        Assert.Equal(-ReportCharts.Symlog(v, tau), ReportCharts.Symlog(-v, tau));
        Assert.True(ReportCharts.Symlog(v * 1.5 + 1e-12, tau) > ReportCharts.Symlog(v, tau));
    }

    [Fact]
    public void SymlogThreshold_IsATenthOfTheMedianMagnitude()
    {
        Assert.Equal(0.3, ReportCharts.SymlogThreshold([0, -1, 3, -5, double.NaN]), 12);
    }
}

public class ReportSampleTests
{
    /// <summary>Writes every report file (kept in BITBUDGET_REPORT_SAMPLES when set: the sample of docs/reporting.md) and checks each reads back.</summary>
    [Fact]
    public void WriteSamples_EveryFileIsWrittenAndReadsBack()
    {
        // BITBUDGET_REPORT_SAMPLES=DIR keeps the samples (docs/img is made from them); otherwise a temporary folder.
        string? keep = Environment.GetEnvironmentVariable("BITBUDGET_REPORT_SAMPLES");
        using var temp = new Assets.TempDir();
        string dir = string.IsNullOrEmpty(keep) ? temp.Path : keep;
        Directory.CreateDirectory(dir);
        var layers = SyntheticReport.Layers();
        var front = SyntheticReport.Front(layers);
        ParetoReport.WritePng(front, Path.Combine(dir, "pareto.png"), 1200, 480);
        ParetoReport.WriteJson(front, Path.Combine(dir, "pareto.json"));
        LayerReport.WriteCsv(layers, Path.Combine(dir, "layers.csv"));
        LayerReport.WriteJson(layers, Path.Combine(dir, "layers.json"));
        ManifestReport.WriteJson(SyntheticReport.Manifest(), Path.Combine(dir, "manifest.json"));
        File.WriteAllText(Path.Combine(dir, "results.md"), ResultsTable.ToMarkdown(front));
        File.WriteAllBytes(Path.Combine(dir, "omega.png"), ReportCharts.Omega(SyntheticReport.Omega(layers), 900, 820));
        HtmlReport.Write(Path.Combine(dir, "report.html"), new HtmlReportInput(front)
        {
            Layers = layers,
            Omega = SyntheticReport.Omega(layers),
            Manifest = SyntheticReport.Manifest(),
            Notes = ["Synthetic data from tests/BitBudget.Tests/Reporting/SyntheticReport.cs, not a measurement."],
        });

        using (var pareto = SkiaSharp.SKBitmap.Decode(Path.Combine(dir, "pareto.png")))
        {
            Assert.Equal((1200, 480), (pareto.Width, pareto.Height));
            Assert.True(ReportImages.LuminanceVariance(pareto) > 100);
        }
        using (var omega = SkiaSharp.SKBitmap.Decode(Path.Combine(dir, "omega.png")))
        {
            Assert.Equal((900, 820), (omega.Width, omega.Height));
        }
        Assert.Equal(front.Points.Count, ParetoReport.ReadJson(Path.Combine(dir, "pareto.json")).Points.Count);
        Assert.Equal(layers, LayerReport.ReadJson(Path.Combine(dir, "layers.json")), LayerRowComparer.Instance);
        Assert.Equal(SyntheticReport.Manifest().ModelSha256, ManifestReport.ReadJson(Path.Combine(dir, "manifest.json")).ModelSha256);
        string[] csv = File.ReadAllLines(Path.Combine(dir, "layers.csv"));
        Assert.Equal(layers.Count + 1, csv.Length);
        Assert.StartsWith("index,name,op,weights,macs_per_image,fixed,delta_loss_", csv[0], StringComparison.Ordinal);
        string[] table = File.ReadAllLines(Path.Combine(dir, "results.md"));
        Assert.StartsWith("|", table[0], StringComparison.Ordinal);
        string html = File.ReadAllText(Path.Combine(dir, "report.html"));
        Assert.StartsWith("<!DOCTYPE html>", html, StringComparison.OrdinalIgnoreCase);
        Assert.EndsWith("</html>", html.TrimEnd(), StringComparison.OrdinalIgnoreCase);
        Assert.Equal(3, System.Text.RegularExpressions.Regex.Count(html, "data:image/png;base64,"));   // Pareto, bits per layer, Ω
        Assert.Contains(front.ModelName, html, StringComparison.Ordinal);
    }

    /// <summary>Rows compare by value, their two dictionaries by content.</summary>
    sealed class LayerRowComparer : IEqualityComparer<LayerReportRow>
    {
        public static readonly LayerRowComparer Instance = new();

        public bool Equals(LayerReportRow? a, LayerReportRow? b) =>
            a is not null && b is not null && a with { DeltaLoss = b.DeltaLoss, ChosenBits = b.ChosenBits } == b
            && a.DeltaLoss.OrderBy(p => p.Key).SequenceEqual(b.DeltaLoss.OrderBy(p => p.Key))
            && a.ChosenBits.OrderBy(p => p.Key, StringComparer.Ordinal).SequenceEqual(b.ChosenBits.OrderBy(p => p.Key, StringComparer.Ordinal));

        public int GetHashCode(LayerReportRow row) => row.Index;
    }
}

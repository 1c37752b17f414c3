using BitBudget.Reporting;
using BitBudget.Tests.Support;

namespace BitBudget.Tests.Reporting;

public class ParetoReportTests
{
    [Fact]
    public void WritePng_SyntheticFront_DecodesToRequestedSizeAndIsNotBlank()
    {
        using var dir = new Assets.TempDir();
        var front = SyntheticReport.Front(SyntheticReport.Layers());
        string path = dir.File("pareto.png");

        ParetoReport.WritePng(front, path, 1000, 400);

        using var bitmap = ReportImages.DecodeChecked(File.ReadAllBytes(path), 1000, 400);
        Assert.True(ReportImages.LuminanceVariance(bitmap) > 100, "the plot looks blank");
        Assert.Empty(Directory.GetFiles(dir.Path, "*.tmp"));
    }

    [Fact]
    public void WritePng_OnlyUniformPointsWithoutPredictions_StillRenders()
    {
        var layers = SyntheticReport.Layers();
        var front = SyntheticReport.Front(layers);
        front = front with { Points = [.. front.Points.Where(p => p.IsUniform).Select(p => p with { PredictedLoss = null })] };

        using var bitmap = ReportImages.DecodeChecked(ParetoReport.RenderPng(front, 800, 300), 800, 300);
        Assert.True(ReportImages.LuminanceVariance(bitmap) > 100);
    }

    [Fact]
    public void Json_RoundTrip_KeepsEveryPointAndConfiguration()
    {
        using var dir = new Assets.TempDir();
        var front = SyntheticReport.Front(SyntheticReport.Layers());
        front = front with { Points = [.. front.Points.Select((p, i) => i == 0 ? p with { Gap = double.PositiveInfinity, Top1Simulated = null } : p)] };
        string path = dir.File("pareto.json");

        ParetoReport.WriteJson(front, path);
        var back = ParetoReport.ReadJson(path);

        Assert.Equal(front.ModelName, back.ModelName);
        Assert.Equal(front.FpTop1, back.FpTop1);
        Assert.Equal(front.FpSizeBytes, back.FpSizeBytes);
        Assert.Equal(front.Points.Count, back.Points.Count);
        for (int i = 0; i < front.Points.Count; i++)
        {
            var (a, b) = (front.Points[i], back.Points[i]);
            Assert.Equal(a with { Bits = [] }, b with { Bits = [] });
            Assert.Equal(a.Bits, b.Bits);
        }
        Assert.Contains("\"budget_label\": \"2.5bits\"", File.ReadAllText(path));
    }

    [Fact]
    public void WriteJson_InvalidFront_ThrowsAndKeepsThePreviousFile()
    {
        using var dir = new Assets.TempDir();
        var front = SyntheticReport.Front(SyntheticReport.Layers());
        string path = dir.File("pareto.json");
        ParetoReport.WriteJson(front, path);
        byte[] before = File.ReadAllBytes(path);

        var bad = front with { Points = [.. front.Points.Select((p, i) => i == 3 ? p with { Top1Exported = 91.6 } : p)] };
        var e = Assert.Throws<BitBudgetException>(() => ParetoReport.WriteJson(bad, path));

        Assert.Equal(ErrorKind.InvalidInput, e.Kind);
        Assert.Equal("Point 'clado' at '4bits' has top-1 91.6; expected a fraction between 0 and 1.", e.Message);
        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Empty(Directory.GetFiles(dir.Path, "*.tmp", SearchOption.AllDirectories));
    }

    [Fact]
    public void WritePng_TargetIsAFolder_FailsWithoutLeavingATempFile()
    {
        using var dir = new Assets.TempDir();
        string target = dir.File("pareto.png");
        Directory.CreateDirectory(target);   // the rename onto a folder fails after the temp file was written

        Assert.ThrowsAny<IOException>(() => ParetoReport.WritePng(SyntheticReport.Front(SyntheticReport.Layers()), target, 600, 300));

        Assert.Empty(Directory.GetFiles(dir.Path, "*", SearchOption.AllDirectories));
    }

    [Fact]
    public void WriteJson_MissingFolder_ThrowsFileNotFound()
    {
        using var dir = new Assets.TempDir();
        var e = Assert.Throws<BitBudgetException>(() => ParetoReport.WriteJson(SyntheticReport.Front(SyntheticReport.Layers()), dir.File("no/such/pareto.json")));
        Assert.Equal(ErrorKind.FileNotFound, e.Kind);
    }

    [Fact]
    public void EmptyFront_IsInvalidInput()
    {
        var front = new ParetoFront("m", 0.9, "test", 1000, []);
        var e = Assert.Throws<BitBudgetException>(() => ParetoReport.RenderPng(front));
        Assert.Equal("The Pareto front of 'm' has no points; expected at least one evaluated configuration.", e.Message);
    }
}

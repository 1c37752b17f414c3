using BitBudget.Reporting;
using BitBudget.Tests.Support;

namespace BitBudget.Tests.Reporting;

public class ResultsTableTests
{
    static ParetoPoint P(string method, string budget, double? top1, int draw = 0, double? simulated = null) =>
        new(method, "rtn", budget, 3, 1000, null, simulated, top1, "Optimal", 0, [], draw);

    [Fact]
    public void ToMarkdown_AveragesDrawsWithSampleStandardDeviation()
    {
        var front = new ParetoFront("m", 0.915, "test split", 4000,
        [
            P("clado", "3bits", 0.90, 0), P("clado", "3bits", 0.88, 1), P("clado", "4bits", 0.91, 0), P("clado", "4bits", 0.91, 1),
            P("uniform", "3bits", 0.70, 0), P("uniform", "3bits", 0.70, 1), P("uniform|x", "4bits", null),
        ]);

        string md = ResultsTable.ToMarkdown(front);

        Assert.Equal(
            "| method | 3bits | 4bits |\n" +
            "|---|---:|---:|\n" +
            "| float | 91.50 | 91.50 |\n" +
            "| clado (rtn) | 89.00 ± 1.41 | 91.00 ± 0.00 |\n" +
            "| uniform (rtn) | 70.00 ± 0.00 | – |\n" +
            "| uniform\\|x (rtn) | – | – |\n" +
            "\nTop-1 (%) on test split: mean ± sample standard deviation over draws of the sensitivity set.\n",
            md);
    }

    [Fact]
    public void ToMarkdown_SimulatedSource_IgnoresExportedNumbers()
    {
        var front = new ParetoFront("m", 0.9, "s", 4000, [P("clado", "3bits", 0.80, simulated: 0.85)]);
        Assert.Contains("| clado (rtn) | 85.00 |", ResultsTable.ToMarkdown(front, Top1Source.Simulated));
        Assert.Contains("| clado (rtn) | 80.00 |", ResultsTable.ToMarkdown(front));
    }
}

public class ManifestReportTests
{
    [Fact]
    public void Json_RoundTripsEveryField()
    {
        using var dir = new Assets.TempDir();
        var manifest = SyntheticReport.Manifest();
        string path = dir.File("manifest.json");

        ManifestReport.WriteJson(manifest, path);
        var back = ManifestReport.ReadJson(path);

        Assert.Equal(manifest.ToolVersion, back.ToolVersion);
        Assert.Equal(manifest.OrtVersion, back.OrtVersion);
        Assert.Equal(manifest.Opset, back.Opset);
        Assert.Equal(manifest.Seeds, back.Seeds);
        Assert.Equal(manifest.DataHashes, back.DataHashes);
        Assert.Equal(manifest.Timings, back.Timings);
        Assert.Equal(manifest.SolverRuns, back.SolverRuns);
        Assert.Equal(manifest.CommandLine, back.CommandLine);
        Assert.Equal(manifest.CreatedUtc, back.CreatedUtc);
        Assert.Contains("\"ort_version\": \"1.31.1\"", File.ReadAllText(path));
    }

    [Fact]
    public void ReadJson_NotJson_IsInvalidInput()
    {
        using var dir = new Assets.TempDir();
        string path = dir.File("manifest.json");
        File.WriteAllText(path, "not json");
        Assert.Equal(ErrorKind.InvalidInput, Assert.Throws<BitBudgetException>(() => ManifestReport.ReadJson(path)).Kind);
    }
}

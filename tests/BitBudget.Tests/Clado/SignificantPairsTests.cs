using BitBudget.Data;
using BitBudget.Evaluation;
using BitBudget.Graph;
using BitBudget.Quantization;
using BitBudget.Clado;
using BitBudget.Tests.Support;

namespace BitBudget.Tests.Clado;

/// <summary>--pairs significant: singles first, then only pairs whose two singles are at least the threshold × the largest |ΔL|.</summary>
public class SignificantPairsTests
{
    /// <summary>ResNet-20 with four searched layers, A8 inputs (so 8-bit schemes also quantize the layer input).</summary>
    static SensitivityInput Input() => CladoSensitivityTests.Input(images: 12, searchedFrom: 3, searchedCount: 4, calibImages: 32);

    [Fact]
    public void SkippedPairsAreZeroAndKeptPairsEqualAll()
    {
        SensitivityInput input = Input();
        using var dir = new Assets.TempDir();
        var options = new SensitivityOptions { BatchSize = 6, StorePath = dir.File("s.db") };
        SensitivityResult all = CladoSensitivity.Measure(input, options with { Pairs = PairSelection.All, StorePath = dir.File("all.db") });
        int n = all.Size, S = 3, L = 4;
        // A threshold between the smallest and the largest |ΔL|, so some schemes are kept and some are not.
        double largest = all.DeltaSingle.Max(Math.Abs);
        double[] relative = [.. all.DeltaSingle.Select(d => Math.Abs(d) / largest).Order()];
        double threshold = (relative[n / 2 - 1] + relative[n / 2]) / 2;
        bool[] kept = [.. all.DeltaSingle.Select(d => Math.Abs(d) >= threshold * largest)];
        Assert.Contains(true, kept);
        Assert.Contains(false, kept);

        SensitivityResult significant = CladoSensitivity.Measure(input, options with { Pairs = PairSelection.Significant, PairThreshold = threshold });
        Assert.True(significant.Complete);
        Assert.Equal(all.DeltaSingle, significant.DeltaSingle);   // the same singles, bit for bit
        Assert.NotEqual(all.Context, significant.Context);        // never mixed with `all` downstream
        int skipped = 0, keptPairs = 0;
        for (int i = 0; i < n; i++)
        {
            Assert.Equal(all.Omega[i, i], significant.Omega[i, i]);
            for (int j = i + 1; j < n; j++)
            {
                if (i / S == j / S) { Assert.Equal(0, significant.Omega[i, j]); continue; }
                if (kept[i] && kept[j])
                {
                    keptPairs++;
                    Assert.Equal(all.Omega[i, j], significant.Omega[i, j]);
                }
                else
                {
                    skipped++;
                    Assert.Equal(0, significant.Omega[i, j]);
                    Assert.Equal(0, significant.Omega[j, i]);
                }
            }
        }
        Assert.Equal(S * S * L * (L - 1) / 2, significant.TotalPairs);
        Assert.Equal(skipped, significant.SkippedPairs);
        Assert.Equal(threshold, significant.PairThreshold);
        Assert.Contains($"{skipped} of {significant.TotalPairs} pairs skipped", significant.PairsSummary, StringComparison.Ordinal);
        // Evaluations: every single once (its own context), then per batch each kept unit with a kept later pair: its single again
        // (the trunk its pairs read) and those pairs. Units without such a pair run nothing more.
        int batches = 2;
        long phase2 = 0;
        for (int i = 0; i < n; i++)
        {
            long later = Enumerable.Range((i / S + 1) * S, n - (i / S + 1) * S).Count(j => kept[i] && kept[j]);
            if (later > 0) { phase2 += 1 + later; }
        }
        Assert.Equal(batches * (n + phase2), significant.Cost.Evaluations);
        Assert.True(significant.Cost.Evaluations < all.Cost.Evaluations);
        Assert.Equal(0, all.SkippedPairs);
        Assert.Null(all.PairThreshold);

        // From the store, a second run measures nothing and gives the same Ω.
        SensitivityResult again = CladoSensitivity.Measure(input, options with { Pairs = PairSelection.Significant, PairThreshold = threshold });
        Assert.Equal(0, again.Cost.Evaluations);
        Assert.Equal(significant.Omega.ToRowMajorArray(), again.Omega.ToRowMajorArray());

        // A store that holds every pair (here `all`'s; merged shards alike) gives the exact Ω without measuring anything.
        SensitivityResult fromAll = CladoSensitivity.Measure(input, options with { Pairs = PairSelection.Significant, PairThreshold = threshold, StorePath = dir.File("all.db") });
        Assert.Equal(0, fromAll.Cost.Evaluations);
        Assert.Equal(all.Omega.ToRowMajorArray(), fromAll.Omega.ToRowMajorArray());
        Assert.Equal(all.Context, fromAll.Context);
        Assert.Null(fromAll.PairThreshold);
        Assert.Equal(0, fromAll.SkippedPairs);
    }

    [Fact]
    public void SignificantPairsWithAShardOrABadThresholdAreRefused()
    {
        SensitivityInput input = Input();
        using var dir = new Assets.TempDir();
        var options = new SensitivityOptions { BatchSize = 12, StorePath = dir.File("s.db"), Pairs = PairSelection.Significant };
        var shard = Assert.Throws<BitBudgetException>(() => CladoSensitivity.Measure(input, options with { Shard = new Shard(0, 2) }));
        Assert.Contains("--pairs significant", shard.Message, StringComparison.Ordinal);
        Assert.Contains("PairSelection.All", shard.Message, StringComparison.Ordinal);
        var bad = Assert.Throws<BitBudgetException>(() => CladoSensitivity.Measure(input, options with { PairThreshold = 1.5 }));
        Assert.Contains("--pair-threshold", bad.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void CliValidatesPairsAndReportsWhatWasSkipped()
    {
        string idx = Assets.Require("mnist/t10k-images-idx3-ubyte");
        string[] common = ["sensitivity", Assets.Mnist8, "--calib", idx, "--calib-images", "32", "--sens-images", "16", "--sens-batch", "16", "--first-bits", "search", "--rounding", "rtn"];
        InProcessCli.Result wrong = InProcessCli.Run([.. common, "--pairs", "some"]);
        Assert.Equal(2, wrong.Code);
        Assert.Equal("error: --pairs 'some' is not all or significant.", wrong.ErrLines.Single(l => l.StartsWith("error:", StringComparison.Ordinal)));
        InProcessCli.Result threshold = InProcessCli.Run([.. common, "--pairs", "significant", "--pair-threshold", "0"]);
        Assert.Equal(2, threshold.Code);
        Assert.StartsWith("error: --pair-threshold must be between 0 and 1", threshold.ErrLines.Single(l => l.StartsWith("error:", StringComparison.Ordinal)), StringComparison.Ordinal);

        using var dir = new Assets.TempDir();
        InProcessCli.Result ok = InProcessCli.Run([.. common, "--pairs", "significant", "--pair-threshold", "0.5", "-o", dir.File("s.json")]);
        Assert.True(ok.Code == 0, ok.ToString());
        Assert.Contains("pairs: significant (single |ΔL| ≥ 0.5 × the largest)", ok.Err, StringComparison.Ordinal);
        using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(dir.File("s.json")));
        var pairs = json.RootElement.EnumerateObject().First(p => p.Name.Equals("pairs", StringComparison.OrdinalIgnoreCase)).Value;
        string Field(string name) => pairs.EnumerateObject().First(p => p.Name.Equals(name, StringComparison.OrdinalIgnoreCase)).Value.ToString();
        Assert.Equal("significant", Field("selection"));
        Assert.Equal("0.5", Field("threshold"));
        Assert.True(int.Parse(Field("total"), System.Globalization.CultureInfo.InvariantCulture) > 0);
    }

    [Fact]
    public void CliSignificantPairsWithAShardIsRefused()
    {
        string idx = Assets.Require("mnist/t10k-images-idx3-ubyte");
        using var dir = new Assets.TempDir();
        InProcessCli.Result refused = InProcessCli.Run(["sensitivity", Assets.Mnist8, "--calib", idx, "--calib-images", "32", "--sens-images", "16",
            "--sens-batch", "16", "--first-bits", "search", "--rounding", "rtn", "--store", dir.File("shard.db"), "--shard", "0/2",
            "--pairs", "significant", "-o", dir.File("refused.json")]);
        Assert.Equal(2, refused.Code);
        Assert.StartsWith("error: --pairs significant chooses pairs from every single's measured ΔL, which one shard does not have",
            refused.ErrLines.Single(l => l.StartsWith("error:", StringComparison.Ordinal)), StringComparison.Ordinal);
        Assert.False(File.Exists(dir.File("refused.json")));
    }
}

using BitBudget.Numerics;
using System.Diagnostics;
using BitBudget.Optimization;

namespace BitBudget.Tests.Optimization;

/// <summary>The QCR reformulations behind the exact CLADO search: exact on every configuration, and valid (never above the optimum) as a bound.</summary>
public class ConvexRelaxationTests
{
    static SearchProblem Indefinite(int seed)
    {
        SearchProblem problem = BitSearchTests.RandomInstance(seed, 3.2);
        int n = problem.Omega.Order;
        var omega = problem.Omega.ToArray();
        var random = new Random(seed);
        for (int u = 0; u < n; u++)
        {
            for (int v = 0; v < u; v++) { omega[u, v] = omega[v, u] = omega[u, v] + 0.05 * (random.NextDouble() - 0.5); }
        }
        return problem with { Omega = omega };
    }

    public static TheoryData<bool, int, bool> Cases()
    {
        var data = new TheoryData<bool, int, bool>();
        foreach (bool tangent in new[] { false, true })
        {
            foreach (int seed in new[] { 1, 2 })
            {
                data.Add(tangent, seed, false);
                data.Add(tangent, seed, true);
            }
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Value_EqualsXOmegaX_OnEveryConfiguration(bool tangent, int seed, bool indefinite)
    {
        SearchProblem problem = indefinite ? Indefinite(seed) : BitSearchTests.RandomInstance(seed, 8);
        Instance inst = Instance.Compile(problem);
        var relax = ConvexRelaxation.Build(inst, dropBelow: 0, tangent: tangent);
        double scale = inst.Q.Max(Math.Abs);
        var choice = new int[inst.L];
        int checkedCount = 0;
        while (true)
        {
            Assert.Equal(inst.Quadratic(choice), relax.Value(inst, choice), 1e-8 * scale);
            checkedCount++;
            int i = 0;
            while (i < inst.L && ++choice[i] == 3) { choice[i++] = 0; }
            if (i == inst.L) { break; }
        }
        Assert.Equal(729, checkedCount);
    }

    [Theory]
    [InlineData(1, 2.6)]
    [InlineData(2, 3.5)]
    [InlineData(3, 5.0)]
    public void RootBounds_AreValid_AndTheTangentSearchIsExact_OnLowRankOmega(int seed, double avgBits)
    {
        // Ω = GGᵀ of rank 5 on 18 variables: the full-space QCR must keep Ω − B ⪰ 0 on Ω's null space, the tangent one not.
        // (B is chosen by a heuristic, so neither root bound dominates on every instance; both must stay below the optimum.)
        Instance inst = Instance.Compile(BitSearchTests.RandomInstance(seed, avgBits));
        double optimum = LocalSearch.BruteForce(inst)!.Value.Objective;
        var options = new SearchOptions { RelativeGap = 1e-9 };
        int[] start = MipModels.Independent(inst, options, "HIGHS", options.TimeLimit).Choice!;
        double upper = LocalSearch.Improve(inst, start);
        var full = ConvexBranchAndBound.Solve(inst, options, (int[])start.Clone(), upper, Stopwatch.StartNew(), TestContext.Current.CancellationToken, tangent: false);
        var tangent = ConvexBranchAndBound.Solve(inst, options, (int[])start.Clone(), upper, Stopwatch.StartNew(), TestContext.Current.CancellationToken, tangent: true);
        double tolerance = 1e-9 * Math.Abs(optimum);
        Assert.True(tangent.Stats.RootBound <= optimum + tolerance, $"tangent root bound {tangent.Stats.RootBound} above the optimum {optimum}");
        Assert.True(full.Stats.RootBound <= optimum + tolerance, $"full root bound {full.Stats.RootBound} above the optimum {optimum}");
        Assert.Equal(optimum, inst.Quadratic(tangent.Outcome.Choice!), tolerance);
        Assert.True(tangent.Outcome.Optimal);
    }

    [Fact]
    public void ReducedCostFixing_KeepsTheSearchExact_AndExcludesVariables()
    {
        // Ten-layer issue-6 instances (59,049 configurations) at four budgets, searched with and without reduced-cost fixing at a
        // tight gap: both must find brute force's optimum with a bound at or below it, and the fixing must actually exclude
        // variables (else this test would pass with the feature switched off).
        int excluded = 0;
        foreach (var (seed, fraction) in new[] { (0, 0.4), (1, 0.3), (2, 0.55), (3, 0.8), (4, 0.45), (5, 0.35) })
        {
            Instance inst = Instance.Compile(SyntheticProblem.Generate(10, seed, fraction));
            double optimum = LocalSearch.BruteForce(inst)!.Value.Objective;
            var options = new SearchOptions { RelativeGap = 1e-9 };
            int[] start = MipModels.Independent(inst, options, "HIGHS", options.TimeLimit).Choice!;
            double upper = LocalSearch.Improve(inst, start);
            foreach (bool fixing in new[] { false, true })
            {
                var (outcome, stats) = ConvexBranchAndBound.Solve(inst, options, (int[])start.Clone(), upper, Stopwatch.StartNew(),
                    TestContext.Current.CancellationToken, reducedCostFixing: fixing);
                double tolerance = 1e-9 * Math.Abs(optimum);
                Assert.True(outcome.Optimal, $"seed {seed}, fixing {fixing}: not proven");
                Assert.Equal(optimum, inst.Quadratic(outcome.Choice!), tolerance);
                Assert.True(outcome.Bound <= optimum + tolerance, $"seed {seed}, fixing {fixing}: bound {outcome.Bound} above the optimum {optimum}");
                if (fixing) { excluded += stats.FixedOut; } else { Assert.Equal(0, stats.FixedOut); }
            }
        }
        Assert.True(excluded > 0, "reduced-cost fixing excluded no variable on any instance");
    }
}

/// <summary>The exact search on the measured ResNet-20 Ω (20 searched layers × {2,4,8}, A8, 256 sensitivity images; saved by `iqp-real resnet STORE FILE`).</summary>
public class MeasuredOmegaSearchTests
{
    internal static SearchProblem ResNet20(string budget)
    {
        string path = Path.Combine(Support.Assets.RepoRoot, "tests", "BitBudget.Tests", "Optimization", "Fixtures", "resnet20-omega.json");
        using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(path));
        var layers = json.RootElement.GetProperty("layers").EnumerateArray().Select(l => new SearchLayer(
            l.GetProperty("name").GetString()!, l.GetProperty("weightCount").GetInt64(), l.GetProperty("macsPerImage").GetInt64(),
            [.. l.GetProperty("candidateBits").EnumerateArray().Select(b => b.GetInt32())],
            l.GetProperty("fixedBits").ValueKind == System.Text.Json.JsonValueKind.Null ? null : l.GetProperty("fixedBits").GetInt32())).ToArray();
        double[][] rows = [.. json.RootElement.GetProperty("omega").EnumerateArray().Select(r => r.EnumerateArray().Select(v => v.GetDouble()).ToArray())];
        var omega = new double[rows.Length, rows.Length];
        for (int u = 0; u < rows.Length; u++) { for (int v = 0; v < rows.Length; v++) { omega[u, v] = rows[u][v]; } }
        return new SearchProblem(layers, omega, [Budget.Parse(budget)]);
    }

    [Theory]
    [InlineData("2.5bits")]
    [InlineData("3.5bits")]
    [InlineData("4bits")]
    [InlineData("6bits")]
    public void Default_ProvesTheOptimum_ThatTheRltMilpInScipFinds(string budget)
    {
        SearchProblem problem = ResNet20(budget);
        Assert.Equal(60, problem.Omega.Order);
        var ct = TestContext.Current.CancellationToken;
        SearchResult fast = BitSearch.Solve(problem, SearchMethod.Clado, new SearchOptions { TimeLimit = TimeSpan.FromSeconds(120) }, ct);
        SearchResult milp = BitSearch.Solve(problem, SearchMethod.Clado, new SearchOptions { Algorithm = IqpAlgorithm.RltScip, TimeLimit = TimeSpan.FromSeconds(120) }, ct);
        Assert.Equal(SearchStatus.Optimal, fast.Status);
        Assert.Equal(SearchStatus.Optimal, milp.Status);
        Assert.True(fast.Gap <= 1e-3 && fast.BestBound <= fast.Objective, $"gap {fast.Gap}, bound {fast.BestBound}, objective {fast.Objective}");
        // Both proven within 0.1 %: the objectives agree to that, and neither bound exceeds the other's objective.
        Assert.Equal(milp.Objective, fast.Objective, 1e-3 * milp.Objective);
        Assert.True(fast.BestBound <= milp.Objective * (1 + 1e-9), $"bound {fast.BestBound} above the MILP's objective {milp.Objective}");
        Assert.True(problem.AverageBits(fast.Bits) <= double.Parse(budget[..^4], System.Globalization.CultureInfo.InvariantCulture) + 1e-9);
    }
}

public class SyntheticProblemTests
{
    [Fact]
    public void ResNet50WeightCounts_AreTheFiftyFourLayersOfResNet50()
    {
        IReadOnlyList<long> counts = SyntheticProblem.ResNet50WeightCounts;
        Assert.Equal(54, counts.Count);
        Assert.Equal(64 * 3 * 7 * 7, counts[0]);
        Assert.Equal(2048L * 1000, counts[^1]);
        Assert.Equal(512L * 512 * 9, counts.Max());
        // torchvision's resnet50 has 25,557,032 parameters: these weights plus 53,120 batch-norm weights and biases and the 1,000 classifier biases.
        Assert.Equal(25_557_032 - 53_120 - 1_000, counts.Sum());
    }

    [Fact]
    public void Generate_WithGivenSizes_UsesThemAndTheIssueBudget()
    {
        SearchProblem p = SyntheticProblem.Generate(SyntheticProblem.ResNet50WeightCounts, seed: 0);
        Assert.Equal(54, p.Layers.Count);
        Assert.Equal(162, p.Omega.Order);
        Assert.Equal(SyntheticProblem.ResNet50WeightCounts, p.Layers.Select(l => l.WeightCount));
        Assert.Equal(0.4 * SyntheticProblem.ResNet50WeightCounts.Sum(), p.Budgets[0].Value, 1e-6);
        Assert.True(PsdProjection.MinEigenvalue(p.Omega) >= -1e-12);
        Assert.Equal(p.Omega.ToRowMajorArray(), SyntheticProblem.Generate(SyntheticProblem.ResNet50WeightCounts, seed: 0).Omega.ToRowMajorArray());
    }
}

using System.Diagnostics;
using BitBudget.Optimization;

namespace BitBudget.Tests.Optimization;

/// <summary>The QCR reformulations behind the exact CLADO search: exact on every configuration, and valid (never above the optimum) as a bound.</summary>
public class ConvexRelaxationTests
{
    static SearchProblem Indefinite(int seed)
    {
        SearchProblem problem = BitSearchTests.RandomInstance(seed, 3.2);
        int n = problem.Omega.GetLength(0);
        var omega = (double[,])problem.Omega.Clone();
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
}

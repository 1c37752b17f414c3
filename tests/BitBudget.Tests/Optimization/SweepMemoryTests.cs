using BitBudget.Optimization;

namespace BitBudget.Tests.Optimization;

/// <summary>The sweep memory keeps the last few Ω per process: tests that check what it remembers run alone, so that the solves
/// of parallel test classes do not evict their entries.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class SweepMemoryCollection
{
    public const string Name = "sweep memory";
}

/// <summary>
/// Warm starts across the budgets of one sweep (<see cref="SweepMemory"/>): the answers must be those of solving every budget
/// cold, whatever the order of the budgets, and the memory must actually be used.
/// </summary>
[Collection(SweepMemoryCollection.Name)]
public class SweepMemoryTests
{
    static SearchResult Solve(SearchProblem problem, SearchOptions options) =>
        BitSearch.Solve(problem, SearchMethod.Clado, options, TestContext.Current.CancellationToken);

    /// <summary>Whether the sweep's memory holds this budget's result: its proven bound is offered back at the same budget.</summary>
    static bool Remembered(SearchProblem problem, SearchResult result, IqpAlgorithm algorithm)
    {
        Instance inst = Instance.Compile(problem);
        var (choice, value, floor) = SweepMemory.For(inst, algorithm).Lookup(inst);
        return choice is not null && value <= result.Objective && floor >= result.BestBound;
    }

    [Theory]
    [InlineData(101, false)]
    [InlineData(101, true)]
    [InlineData(102, false)]
    [InlineData(102, true)]
    [InlineData(103, true)]
    public void Sweep_OnSyntheticInstances_EqualsBruteForceAndColdSolves_InEitherOrder(int seed, bool descending)
    {
        // 10 layers × {2,4,8} (59,049 configurations): the issue-6 generator, the same Ω at every budget fraction.
        double[] fractions = [0.3, 0.35, 0.4, 0.5, 0.6, 0.75, 1.0];
        if (descending) { Array.Reverse(fractions); }
        // The seed and order make Ω unique to this case, so the memory starts empty.
        int uniqueSeed = seed * 2 + (descending ? 1 : 0);
        var warm = new SearchOptions { Algorithm = IqpAlgorithm.QcrBranchAndBound, RelativeGap = 1e-9 };
        foreach (double fraction in fractions)
        {
            SearchProblem problem = SyntheticProblem.Generate(10, uniqueSeed, fraction);
            SearchResult brute = Solve(problem, new SearchOptions { Algorithm = IqpAlgorithm.BruteForce });
            SearchResult cold = Solve(problem, warm with { ReuseAcrossBudgets = false });
            SearchResult swept = Solve(problem, warm);
            Assert.Equal(SearchStatus.Optimal, swept.Status);
            Assert.Equal(brute.Objective, swept.Objective, 1e-9 * Math.Abs(brute.Objective));
            Assert.Equal(cold.Objective, swept.Objective, 1e-9 * Math.Abs(brute.Objective));
            Assert.Equal(brute.Bits, swept.Bits);
            Assert.True(swept.BestBound <= brute.Objective * (1 + 1e-9), $"bound {swept.BestBound} above the optimum {brute.Objective} at {fraction}");
            Assert.True(Remembered(problem, swept, IqpAlgorithm.QcrBranchAndBound), $"the sweep's memory has no record of {fraction}");
        }
    }

    [Fact]
    public void LooserBudgetsOptimum_ThatFitsATighterBudget_IsProvenWithoutSearch()
    {
        SearchProblem loose = SyntheticProblem.Generate(12, 7, 1.0);
        var options = new SearchOptions { Algorithm = IqpAlgorithm.QcrBranchAndBound, RelativeGap = 1e-9 };
        SearchResult first = Solve(loose, options);
        // A budget exactly at the loose optimum's size: tighter, and the optimum still fits, so the loose bound proves it.
        double size = loose.SizeBytes(first.Bits);
        SearchProblem tight = loose with { Budgets = [new Budget(BudgetKind.Bytes, size)] };
        SearchResult second = Solve(tight, options);
        SearchResult cold = Solve(tight, options with { ReuseAcrossBudgets = false });
        Assert.Contains("looser budget", second.Solver, StringComparison.Ordinal);
        Assert.Equal(SearchStatus.Optimal, second.Status);
        Assert.Equal(cold.Bits, second.Bits);
        Assert.Equal(cold.Objective, second.Objective, 1e-9 * Math.Abs(cold.Objective));
    }

    [Fact]
    public void Lookup_TakesBoundsOnlyFromLooserBudgets_AndIncumbentsOnlyWhenFeasible()
    {
        SearchProblem problem = SyntheticProblem.Generate(6, 11, 0.5);
        Instance mid = Instance.Compile(problem);
        Instance tighter = Instance.Compile(SyntheticProblem.Generate(6, 11, 0.3));
        Instance looser = Instance.Compile(SyntheticProblem.Generate(6, 11, 0.9));
        var memory = SweepMemory.For(mid, IqpAlgorithm.BruteForce);
        var (choice, value) = LocalSearch.BruteForce(mid)!.Value;
        memory.Record(mid, choice, value, value);

        // Looser budget: the mid optimum is feasible there (an incumbent), but its bound is not a bound there.
        var atLooser = memory.Lookup(looser);
        Assert.Equal(choice, atLooser.Choice);
        Assert.Equal(double.NegativeInfinity, atLooser.Floor);
        // Tighter budget: the mid bound holds; the mid optimum is offered only if it fits.
        var atTighter = memory.Lookup(tighter);
        Assert.Equal(value, atTighter.Floor);
        Assert.Equal(tighter.Feasible(choice), atTighter.Choice is not null);
    }

    [Fact]
    public void MeasuredResNet20_AscendingSweep_EqualsColdSolves_AtEveryBudget()
    {
        string[] budgets = ["2.5bits", "3bits", "3.25bits", "3.5bits", "3.75bits", "4bits", "4.5bits", "5bits", "6bits"];
        // Known optima (xᵀΩx, proven within 0.1 % by the QCR B&B and by SCIP's RLT MILP, docs/optimization.md).
        double[] known = [0.1562378, 0.116097, 0.1080805, 0.08962651, 0.0747547, 0.0747547, 0.05482614, 0.05215, 0.05142993];
        // A unique copy of Ω (one entry pair moved by a rounding-level amount) so that this sweep's memory starts empty.
        var options = new SearchOptions { Algorithm = IqpAlgorithm.QcrBranchAndBound, TimeLimit = TimeSpan.FromSeconds(120) };
        double[,] omega = MeasuredOmegaSearchTests.ResNet20("2.5bits").Omega.ToArray();
        omega[0, 0] *= 1 + 1e-15;
        for (int k = 0; k < budgets.Length; k++)
        {
            SearchProblem problem = MeasuredOmegaSearchTests.ResNet20(budgets[k]) with { Omega = omega };
            SearchResult swept = Solve(problem, options);
            SearchResult cold = Solve(problem, options with { ReuseAcrossBudgets = false });
            Assert.Equal(SearchStatus.Optimal, swept.Status);
            Assert.Equal(SearchStatus.Optimal, cold.Status);
            Assert.Equal(cold.Objective, swept.Objective, 1e-3 * cold.Objective);
            Assert.Equal(known[k], swept.Objective, 1e-3 * known[k]);
            Assert.True(swept.BestBound <= known[k] * (1 + 1e-3), $"bound {swept.BestBound} above the known optimum {known[k]} at {budgets[k]}");
            Assert.True(Remembered(problem, swept, IqpAlgorithm.QcrBranchAndBound), $"the sweep's memory has no record of {budgets[k]}");
        }
    }
}

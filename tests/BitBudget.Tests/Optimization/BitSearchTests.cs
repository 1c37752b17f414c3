using BitBudget.Numerics;
using System.Text.Json;
using BitBudget.Optimization;

namespace BitBudget.Tests.Optimization;

public class BitSearchTests
{
    static SearchResult Solve(SearchProblem problem, SearchMethod method, SearchOptions? options = null) =>
        BitSearch.Solve(problem, method, options, TestContext.Current.CancellationToken);

    /// <summary>A random PSD instance: 6 searched layers × {2,4,8} plus a fixed 8-bit first layer, Ω = GGᵀ with entries that fall with the bits.</summary>
    internal static SearchProblem RandomInstance(int seed, double avgBits)
    {
        var random = new Random(seed);
        int layers = 6, n = 18, rank = 5;
        var list = new List<SearchLayer> { new("first", 50, 5000, [8], FixedBits: 8) };
        for (int i = 0; i < layers; i++)
        {
            long count = 50 + random.Next(1000);
            list.Add(new SearchLayer($"l{i}", count, count * 10, [2, 4, 8]));
        }
        var g = new double[n, rank];
        for (int u = 0; u < n; u++)
        {
            double scale = Math.Pow(4, -(new[] { 2, 4, 8 }[u % 3] - 2) / 2.0);
            for (int k = 0; k < rank; k++) { g[u, k] = scale * (random.NextDouble() - 0.5); }
        }
        var omega = new double[n, n];
        for (int u = 0; u < n; u++)
        {
            for (int v = 0; v < n; v++)
            {
                for (int k = 0; k < rank; k++) { omega[u, v] += g[u, k] * g[v, k]; }
            }
        }
        return new SearchProblem(list, omega, [new Budget(BudgetKind.AvgBits, avgBits)]);
    }

    public static TheoryData<IqpAlgorithm, int, double> Cases()
    {
        var data = new TheoryData<IqpAlgorithm, int, double>();
        foreach (IqpAlgorithm a in new[] { IqpAlgorithm.RltHighs, IqpAlgorithm.RltScip, IqpAlgorithm.McCormickHighs, IqpAlgorithm.OuterApproximationScip, IqpAlgorithm.OuterApproximationHighs, IqpAlgorithm.QcrBranchAndBound })
        {
            foreach (int seed in new[] { 1, 2, 3 })
            {
                foreach (double bits in new[] { 2.6, 3.5, 5.0 }) { data.Add(a, seed, bits); }
            }
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Clado_SmallRandomPsd_MatchesBruteForce(IqpAlgorithm algorithm, int seed, double avgBits)
    {
        SearchProblem problem = RandomInstance(seed, avgBits);
        SearchResult brute = Solve(problem, SearchMethod.Clado, new SearchOptions { Algorithm = IqpAlgorithm.BruteForce });
        SearchResult exact = Solve(problem, SearchMethod.Clado, new SearchOptions { Algorithm = algorithm, RelativeGap = 1e-7 });
        Assert.Equal(SearchStatus.Optimal, exact.Status);
        Assert.Equal(brute.Objective, exact.Objective, 1e-7 * Math.Abs(brute.Objective));
        Assert.True(exact.BestBound <= exact.Objective + 1e-9);
        Assert.True(exact.AverageBits <= avgBits + 1e-12);
        Assert.Equal(8, exact.Bits["first"]);
    }

    /// <summary>Every feasible configuration's objective (xᵀΩx, or diag(Ω)ᵀx for the independent ILP), ascending.</summary>
    static List<double> EnumerateObjectives(SearchProblem problem, bool diagonalOnly)
    {
        var searched = problem.Layers.Where(l => l.FixedBits is null).ToList();
        var values = new List<double>();
        var choice = new int[searched.Count];
        while (true)
        {
            var bits = problem.Layers.ToDictionary(l => l.Name, l => l.FixedBits ?? 0);
            for (int i = 0; i < searched.Count; i++) { bits[searched[i].Name] = searched[i].CandidateBits[choice[i]]; }
            if (problem.Budgets.All(b => b.Measure(problem, bits) <= b.Value))
            {
                int[] u = [.. Enumerable.Range(0, searched.Count).Select(i => 3 * i + choice[i])];
                values.Add(diagonalOnly ? u.Sum(a => problem.Omega[a, a]) : u.Sum(a => u.Sum(b => problem.Omega[a, b])));
            }
            int k = 0;
            while (k < choice.Length && ++choice[k] == 3) { choice[k++] = 0; }
            if (k == choice.Length) { break; }
        }
        values.Sort();
        return values;
    }

    [Theory]
    [InlineData(SearchMethod.Clado, 1, 3.5)]
    [InlineData(SearchMethod.Clado, 2, 2.6)]
    [InlineData(SearchMethod.Independent, 1, 3.5)]
    [InlineData(SearchMethod.Independent, 3, 5.0)]
    public void SolveRanked_SmallRandomPsd_ReturnsTheKBestDistinctConfigurations(SearchMethod method, int seed, double avgBits)
    {
        SearchProblem problem = RandomInstance(seed, avgBits);
        List<double> all = EnumerateObjectives(problem, method == SearchMethod.Independent);
        var ranked = BitSearch.SolveRanked(problem, method, 5, new SearchOptions { RelativeGap = 1e-9 }, TestContext.Current.CancellationToken);
        Assert.Equal(Math.Min(5, all.Count), ranked.Count);
        for (int k = 0; k < ranked.Count; k++)
        {
            Assert.Equal(all[k], ranked[k].Objective, 1e-9 * Math.Max(1e-12, Math.Abs(all[k])));
            Assert.True(ranked[k].AverageBits <= avgBits + 1e-12);
        }
        Assert.Equal(ranked.Count, ranked.Select(r => string.Join(",", r.Bits.Values)).Distinct().Count());
        Assert.Equal(Solve(problem, method, new SearchOptions { RelativeGap = 1e-9 }).Bits, ranked[0].Bits);
    }

    [Fact]
    public void SolveRanked_StopsWhenTheBudgetAdmitsFewerConfigurations()
    {
        // Budget just above all-2-bit: only configurations with at most one layer at 4 bits fit, far fewer than asked for.
        SearchProblem problem = RandomInstance(5, 2.0);
        var lowest = problem.Layers.ToDictionary(l => l.Name, l => l.FixedBits ?? 2);
        double floor = problem.AverageBits(lowest);
        problem = problem with { Budgets = [new Budget(BudgetKind.AvgBits, floor + 1e-9)] };
        var ranked = BitSearch.SolveRanked(problem, SearchMethod.Clado, 4, cancellationToken: TestContext.Current.CancellationToken);
        Assert.Single(ranked);
        Assert.Single(BitSearch.SolveRanked(problem, SearchMethod.Independent, 4, cancellationToken: TestContext.Current.CancellationToken));
    }

    [Theory]
    [InlineData(0, 0.4)]
    [InlineData(1, 0.3)]
    [InlineData(2, 0.55)]
    [InlineData(3, 0.8)]
    public void QcrBranchAndBound_SyntheticTenLayers_MatchesBruteForce(int seed, double fraction)
    {
        SearchProblem problem = SyntheticProblem.Generate(10, seed, fraction);
        SearchResult brute = Solve(problem, SearchMethod.Clado, new SearchOptions { Algorithm = IqpAlgorithm.BruteForce });
        SearchResult exact = Solve(problem, SearchMethod.Clado, new SearchOptions { Algorithm = IqpAlgorithm.QcrBranchAndBound, RelativeGap = 1e-9 });
        Assert.Equal(SearchStatus.Optimal, exact.Status);
        Assert.Equal(brute.Objective, exact.Objective, 1e-9 * Math.Abs(brute.Objective));
        Assert.True(exact.BestBound <= brute.Objective * (1 + 1e-12));
    }

    [Theory]
    [InlineData(11)]
    [InlineData(12)]
    public void QcrBranchAndBound_IndefiniteOmega_MatchesBruteForce(int seed)
    {
        // QCR needs no PSD Ω: the block-diagonal move makes the relaxation convex whatever Ω's eigenvalues.
        SearchProblem problem = RandomInstance(seed, 3.2);
        int n = problem.Omega.Order;
        var omega = problem.Omega.ToArray();
        var random = new Random(seed);
        for (int u = 0; u < n; u++)
        {
            for (int v = 0; v < u; v++) { omega[u, v] = omega[v, u] = omega[u, v] + 0.05 * (random.NextDouble() - 0.5); }
        }
        Assert.True(PsdProjection.MinEigenvalue(omega) < 0);
        problem = problem with { Omega = omega };
        SearchResult brute = Solve(problem, SearchMethod.Clado, new SearchOptions { Algorithm = IqpAlgorithm.BruteForce });
        SearchResult exact = Solve(problem, SearchMethod.Clado, new SearchOptions { Algorithm = IqpAlgorithm.QcrBranchAndBound, RelativeGap = 1e-9 });
        Assert.Equal(SearchStatus.Optimal, exact.Status);
        Assert.Equal(brute.Objective, exact.Objective, 1e-9 * Math.Abs(brute.Objective));
        Assert.Equal(brute.Bits, exact.Bits);
    }

    [Fact]
    public void Clado_DefaultWithTwoBudgets_FallsBackAndMatchesBruteForce()
    {
        SearchProblem problem = RandomInstance(4, 3.5);
        var bits = problem.Layers.ToDictionary(l => l.Name, l => l.FixedBits ?? 4);
        problem = problem with { Budgets = [Budget.Parse("3.5bits"), new Budget(BudgetKind.BitOps, 0.9 * problem.BitOps(bits))] };
        SearchResult brute = Solve(problem, SearchMethod.Clado, new SearchOptions { Algorithm = IqpAlgorithm.BruteForce });
        SearchResult exact = Solve(problem, SearchMethod.Clado, new SearchOptions { RelativeGap = 1e-9 });
        Assert.Equal(SearchStatus.Optimal, exact.Status);
        Assert.Contains("SCIP", exact.Solver);
        Assert.Equal(brute.Objective, exact.Objective, 1e-9 * Math.Abs(brute.Objective));
    }

    [Fact]
    public void Clado_IsNeverWorseThanIndependentOrUniform_OnXOmegaX()
    {
        SearchProblem problem = RandomInstance(7, 3.5);
        double clado = Solve(problem, SearchMethod.Clado).QuadraticObjective;
        Assert.True(clado <= Solve(problem, SearchMethod.Independent).QuadraticObjective + 1e-12);
        Assert.True(clado <= Solve(problem, SearchMethod.Uniform).QuadraticObjective + 1e-12);
    }

    [Fact]
    public void Independent_MatchesBruteForceOnTheDiagonal()
    {
        SearchProblem problem = RandomInstance(5, 3.0);
        int n = problem.Omega.Order;
        var diagonal = new double[n, n];
        for (int u = 0; u < n; u++) { diagonal[u, u] = problem.Omega[u, u]; }
        SearchResult brute = Solve(problem with { Omega = diagonal }, SearchMethod.Clado, new SearchOptions { Algorithm = IqpAlgorithm.BruteForce });
        SearchResult independent = Solve(problem, SearchMethod.Independent, new SearchOptions { RelativeGap = 1e-9 });
        Assert.Equal(SearchStatus.Optimal, independent.Status);
        Assert.Equal(brute.Objective, independent.Objective, 1e-9);
        Assert.Equal(brute.Bits, independent.Bits);
    }

    [Fact]
    public void Uniform_PicksLargestFeasibleWidth_CountingFixedLayers()
    {
        // Fixed 8-bit layer of 16 weights + two searched layers of 992: all-4 is (16·8 + 1984·4)/2000 = 4.032 bits > 4.0.
        SearchLayer[] layers = [new("first", 16, 0, [8], 8), new("a", 992, 0, [2, 4, 8]), new("b", 992, 0, [2, 4, 8])];
        var problem = new SearchProblem(layers, new double[6, 6], [Budget.Parse("4bits")]);
        SearchResult r = Solve(problem, SearchMethod.Uniform);
        Assert.Equal(2, r.Bits["a"]);
        Assert.Equal(2, r.Bits["b"]);
        Assert.Equal((16 * 8 + 1984 * 2) / 2000.0, r.AverageBits, 12);
        Assert.Equal(2.0, r.AverageBitsSearched, 12);

        SearchResult searched = Solve(problem with { Budgets = [Budget.Parse("4bits-searched")] }, SearchMethod.Uniform);
        Assert.Equal(4, searched.Bits["a"]);
    }

    [Fact]
    public void Solve_BudgetBelowFloor_ThrowsInfeasibleNamingTheMinimum()
    {
        SearchLayer[] layers = [new("first", 16, 0, [8], 8), new("a", 992, 0, [2, 4, 8]), new("b", 992, 0, [2, 4, 8])];
        var problem = new SearchProblem(layers, new double[6, 6], [Budget.Parse("2bits")]);
        foreach (SearchMethod method in Enum.GetValues<SearchMethod>())
        {
            var e = Assert.Throws<BitBudgetException>(() => Solve(problem, method));
            Assert.Equal(ErrorKind.Infeasible, e.Kind);
            // (16·8 + 1984·2) / 2000 = 2.048
            Assert.Equal("Budget 2 bits is infeasible: the minimum feasible is 2.048 bits (every searched layer at its lowest bit-width).", e.Message);
        }
        var bytes = problem with { Budgets = [Budget.Parse("400B")] };
        var b = Assert.Throws<BitBudgetException>(() => Solve(bytes, SearchMethod.Clado));
        Assert.Equal("Budget 400 B is infeasible: the minimum feasible is 512 B (every searched layer at its lowest bit-width).", b.Message);
    }

    [Fact]
    public void BitOpsBudget_GroupedConv_UsesMacsTimesWeightBitsTimesActivationBits()
    {
        // A depthwise conv (groups = 32): 32×1×3×3 weights on a 16×16 output → MACs = 32·9·256 = 73,728 (already / groups).
        // A dense 1×1 conv 32→64 on 16×16: 2048 weights, MACs = 524,288. Ω prefers 8 bits strongly for the depthwise layer.
        SearchLayer[] layers = [new("dw", 288, 73_728, [2, 4, 8]), new("pw", 2048, 524_288, [2, 4, 8])];
        var omega = new double[6, 6];
        double[] diag = [100, 10, 0, 5, 1, 0];
        for (int u = 0; u < 6; u++) { omega[u, u] = diag[u]; }
        // Budget: dw at 8 and pw at 2 → (73,728·8 + 524,288·2)·4 = 6,553,600 with 4-bit activations.
        var problem = new SearchProblem(layers, omega, [new Budget(BudgetKind.BitOps, 6_553_600)], ActivationBits: 4);
        SearchResult r = Solve(problem, SearchMethod.Clado, new SearchOptions { RelativeGap = 1e-9 });
        Assert.Equal(8, r.Bits["dw"]);
        Assert.Equal(2, r.Bits["pw"]);
        Assert.Equal(6_553_600, r.BitOps, 6);
        Assert.Equal(5, r.Objective, 12);
        // One BitOP less and dw cannot stay at 8 with pw at 2 → dw drops to 4 (dw 4 + pw 4 = 9,437,184 does not fit either).
        SearchResult tighter = Solve(problem with { Budgets = [new Budget(BudgetKind.BitOps, 6_553_599)] }, SearchMethod.Clado);
        Assert.Equal(4, tighter.Bits["dw"]);
        Assert.Equal(2, tighter.Bits["pw"]);
    }

    [Fact]
    public void CombinedBudgets_AllHold()
    {
        SearchProblem problem = RandomInstance(9, 8) with { Budgets = [Budget.Parse("5bits"), Budget.Parse("3bits-searched")] };
        SearchResult brute = Solve(problem, SearchMethod.Clado, new SearchOptions { Algorithm = IqpAlgorithm.BruteForce });
        SearchResult r = Solve(problem, SearchMethod.Clado, new SearchOptions { RelativeGap = 1e-9 });
        Assert.True(r.AverageBits <= 5 + 1e-12);
        Assert.True(r.AverageBitsSearched <= 3 + 1e-12);
        Assert.Equal(brute.Objective, r.Objective, 1e-9 * Math.Abs(brute.Objective));
    }

    [Fact]
    public void LocalSearch_IsFeasibleAndAtLeastAsGoodAsIndependent()
    {
        SearchProblem problem = SyntheticProblem.Generate(19, seed: 0);
        SearchResult local = Solve(problem, SearchMethod.Clado, new SearchOptions { Algorithm = IqpAlgorithm.LocalSearch });
        SearchResult independent = Solve(problem, SearchMethod.Independent);
        Assert.Equal(SearchStatus.Feasible, local.Status);
        Assert.True(local.SizeBytes <= problem.Budgets[0].Value);
        Assert.True(local.Objective <= independent.QuadraticObjective);
    }

    [Fact]
    public void Synthetic_IsDeterministicAndPsd_WithIssueBudget()
    {
        SearchProblem a = SyntheticProblem.Generate(19, seed: 4), b = SyntheticProblem.Generate(19, seed: 4);
        Assert.Equal(57, a.Omega.Order);
        Assert.Equal(a.Omega[3, 7], b.Omega[3, 7]);
        Assert.True(PsdProjection.MinEigenvalue(a.Omega) > 0);
        double allEight = a.Layers.Sum(l => l.WeightCount);
        Assert.Equal(0.4 * allEight, a.Budgets[0].Value, 6);
        Assert.All(a.Layers, l => Assert.InRange(l.WeightCount, 1000, 148_414));
    }

    [Fact]
    public void ToJson_HasEveryFieldAndLayersInOrder()
    {
        SearchProblem problem = RandomInstance(2, 3.5);
        SearchResult r = Solve(problem, SearchMethod.Clado);
        using var doc = JsonDocument.Parse(r.ToJson());
        JsonElement root = doc.RootElement;
        Assert.Equal("clado", root.GetProperty("method").GetString());
        Assert.Equal("optimal", root.GetProperty("status").GetString());
        Assert.Equal(r.Objective, root.GetProperty("objective").GetDouble(), 12);
        Assert.Equal(r.SizeBytes, root.GetProperty("size_bytes").GetDouble(), 9);
        Assert.Equal(r.BestBound, root.GetProperty("best_bound").GetDouble(), 12);
        Assert.Equal(r.AverageBitsSearched, root.GetProperty("average_bits_searched").GetDouble(), 12);
        string[] names = [.. root.GetProperty("layers").EnumerateArray().Select(e => e.GetProperty("layer").GetString()!)];
        Assert.Equal(problem.Layers.Select(l => l.Name), names);
        Assert.Equal(r.Bits["l3"], root.GetProperty("layers")[4].GetProperty("bits").GetInt32());
    }

    [Fact]
    public void Solve_MismatchedOmega_ThrowsInvalidInput()
    {
        var problem = new SearchProblem([new SearchLayer("a", 10, 10, [2, 4, 8])], new double[2, 2], [Budget.Parse("4bits")]);
        var e = Assert.Throws<BitBudgetException>(() => Solve(problem, SearchMethod.Clado));
        Assert.Equal(ErrorKind.InvalidInput, e.Kind);
        Assert.Equal("Ω is 2×2 but the searched layers have 3 (layer, scheme) pairs in total.", e.Message);
    }
}

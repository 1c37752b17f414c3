using BitBudget.Ompq;
using BitBudget.Optimization;
using BitBudget.Tests.Support;

namespace BitBudget.Tests.Ompq;

public class OmpqAllocationTests
{
    // Three units of 100, 200, 100 weights, θ = [1, 1, 0.5] → c = [5/6, 3/4, 1/2]; one fixed layer of 50 weights at 8 bits.
    static OmpqAllocationInput Hand(double searchedBits) =>
        new([100, 200, 100], [1, 1, 0.5], [50], 8, new Budget(BudgetKind.AvgBits, searchedBits, BudgetScope.SearchedOnly));

    [Fact]
    public void Solve_HandChecked_LpIsFractionalKnapsackAndIlpIsBestCandidateConfiguration()
    {
        OmpqAllocationResult r = OmpqAllocation.Solve(Hand(3.75));   // 1500 searched bits
        AssertEx.Near([5 / 6.0, 0.75, 0.5], r.Coefficients, 1e-12);
        // Benefit per weight bit: unit 0 (5/600) > unit 2 (1/200) > unit 1 (3/800): unit 0 to 8 (1400 bits), unit 2 gets the last 100 → 3.
        AssertEx.Near([8, 2, 3], r.LpBits, 1e-6);
        Assert.Equal(5 / 6.0 * 8 + 1.5 + 1.5, r.LpObjective, 1e-6);
        Assert.Equal("OPTIMAL", r.LpStatus);
        // Over {2,4,8}: (8,2,2) = 9.1667 beats (4,4,2) = 7.33 and (4,2,4) = 6.83; (8,2,4) needs 1600 bits.
        Assert.Equal([8, 2, 2], r.Bits);
        Assert.Equal(5 / 6.0 * 8 + 1.5 + 1, r.IlpObjective, 1e-9);
        Assert.Equal("OPTIMAL", r.IlpStatus);
        Assert.Equal(400, r.FixedBitsTotal);
        Assert.Equal(1500 + 400, r.CapacityBits);
        Assert.Equal(1400 + 400, r.UsedBits);
        Assert.Equal(3.5, r.AverageBitsSearched, 1e-12);
        Assert.Equal(1800 / 450.0, r.AverageBits, 1e-12);
    }

    [Fact]
    public void Solve_BudgetThatFitsExactly_IlpMatchesLp()
    {
        OmpqAllocationResult r = OmpqAllocation.Solve(Hand(4));
        AssertEx.Near([8, 2, 4], r.LpBits, 1e-6);
        Assert.Equal([8, 2, 4], r.Bits);
        Assert.Equal(r.LpObjective, r.IlpObjective, 1e-6);
    }

    [Fact]
    public void Solve_RandomSmallProblems_MatchBruteForceAndNeverExceedBudget()
    {
        var random = new Random(11);
        int[] candidates = [2, 4, 8];
        for (int trial = 0; trial < 40; trial++)
        {
            int l = random.Next(1, 7);
            long[] w = [.. Enumerable.Range(0, l).Select(_ => (long)random.Next(1, 500))];
            double[] theta = [.. Enumerable.Range(0, l).Select(_ => random.NextDouble())];
            double avg = 2 + random.NextDouble() * 6;
            var input = new OmpqAllocationInput(w, theta, [], 8, new Budget(BudgetKind.AvgBits, avg));
            OmpqAllocationResult r = OmpqAllocation.Solve(input);
            long capacity = (long)Math.Floor(avg * w.Sum() * (1 + 1e-12));
            double best = double.NegativeInfinity;
            foreach (int[] bits in Configurations(l, candidates))
            {
                long size = 0; double value = 0;
                for (int i = 0; i < l; i++) { size += w[i] * bits[i]; value += r.Coefficients[i] * bits[i]; }
                if (size <= capacity) { best = Math.Max(best, value); }
            }
            Assert.Equal(best, r.IlpObjective, 1e-7);
            Assert.True(r.UsedBits <= capacity);
            Assert.True(r.LpObjective >= r.IlpObjective - 1e-7);
            Assert.All(r.Bits, b => Assert.Contains(b, candidates));
        }
    }

    [Fact]
    public void GlopsLpOptimum_EqualsTheFractionalKnapsack()
    {
        var random = new Random(5);
        for (int trial = 0; trial < 40; trial++)
        {
            int l = random.Next(1, 12);
            long[] w = [.. Enumerable.Range(0, l).Select(_ => (long)random.Next(1, 5000))];
            double[] theta = [.. Enumerable.Range(0, l).Select(_ => random.NextDouble())];
            double avg = 2 + random.NextDouble() * 2;
            OmpqAllocationResult r = OmpqAllocation.Solve(new OmpqAllocationInput(w, theta, [], 8, new Budget(BudgetKind.AvgBits, avg)) { CandidateBits = [2, 4] });
            Assert.Equal("OPTIMAL", r.LpStatus);
            (double[] bits, double objective) = FractionalKnapsack(w, r.Coefficients, 2, 4, r.CapacityBits);
            Assert.Equal(r.LpObjective, objective, 1e-6 * Math.Max(1, Math.Abs(objective)));
            Assert.True(w.Select((x, i) => x * bits[i]).Sum() <= r.CapacityBits + 1e-6);
            Assert.All(bits, b => Assert.InRange(b, 2, 4));
        }
    }

    [Fact]
    public void Solve_InstanceWhereGlopIsAbnormal_FallsBackToClp()
    {
        // ResNet-20's 18 OMPQ units (ERAN images, θ at β = 0.483), bits {2, 4}, 3 bits average searched: GLOP returned ABNORMAL.
        long[] w = [2304, 2304, 2304, 2304, 2304, 2304, 4608, 9728, 9216, 9216, 9216, 9216, 18432, 38912, 36864, 36864, 36864, 36864];
        double[] theta = [0.27532405797557347, 0.1792850107618573, 0.15734306323378566, 0.15019141333438912, 0.1675584543120513, 0.13811942372953817,
            0.1396573013771239, 0.14026821352518282, 0.1498911687918075, 0.1353352832366127, 0.1510579786572918, 0.1356568959638423, 0.14157377388571982,
            0.14530927683472883, 0.15607381156782896, 0.15148392095752533, 0.18878111947879622, 1];
        OmpqAllocationResult r = OmpqAllocation.Solve(new OmpqAllocationInput(w, theta, [432, 640], 8, Budget.Parse("3bits")) { CandidateBits = [2, 4] });
        (double[] bits, double objective) = FractionalKnapsack(w, r.Coefficients, 2, 4, r.CapacityBits - r.FixedBitsTotal);
        Assert.Contains("CLP", r.LpStatus, StringComparison.Ordinal);   // the path this instance exercises
        Assert.Equal(objective, r.LpObjective, 1e-6 * Math.Max(1, Math.Abs(objective)));
        Assert.Equal(w.Select((x, i) => x * bits[i]).Sum(), w.Select((x, i) => x * r.LpBits[i]).Sum(), 1e-6 * r.CapacityBits);
        Assert.True(r.LpObjective >= r.IlpObjective - 1e-9);
        Assert.All(r.Bits, b => Assert.Contains(b, new[] { 2, 4 }));
        Assert.True(r.UsedBits <= r.CapacityBits);
    }

    /// <summary>
    /// The independent check of the LP: max Σ c_i b_i subject to Σ w_i b_i ≤ capacity and bMin ≤ b_i ≤ bMax is a fractional
    /// knapsack, exact by raising units in decreasing c_i / w_i to bMax while capacity lasts, the last one fractionally.
    /// </summary>
    static (double[] Bits, double Objective) FractionalKnapsack(IReadOnlyList<long> weights, double[] c, int bMin, int bMax, long capacity)
    {
        int l = weights.Count;
        double[] bits = [.. Enumerable.Repeat((double)bMin, l)];
        double left = capacity - weights.Sum() * (double)bMin;
        foreach (int i in Enumerable.Range(0, l).Where(i => c[i] > 0).OrderByDescending(i => c[i] / weights[i]))
        {
            if (left <= 0) { break; }
            double step = Math.Min(bMax - bMin, left / weights[i]);
            bits[i] += step;
            left -= step * weights[i];
        }
        double objective = 0;
        for (int i = 0; i < l; i++) { objective += c[i] * bits[i]; }
        return (bits, objective);
    }

    static IEnumerable<int[]> Configurations(int l, int[] candidates)
    {
        int total = (int)Math.Pow(candidates.Length, l);
        for (int code = 0; code < total; code++)
        {
            var bits = new int[l];
            for (int i = 0, c = code; i < l; i++, c /= candidates.Length) { bits[i] = candidates[c % candidates.Length]; }
            yield return bits;
        }
    }

    [Fact]
    public void Solve_OneHotTheta_TieBreakFillsTheBudget()
    {
        // θ = [1, 0, 0]: c = [1/3, 0, 0]; units 1 and 2 do not count, the tie-break still spends the budget on them.
        var input = new OmpqAllocationInput([100, 100, 100], [1, 0, 0], [], 8, new Budget(BudgetKind.AvgBits, 6));
        OmpqAllocationResult r = OmpqAllocation.Solve(input);
        Assert.Equal(8, r.Bits[0]);
        Assert.Equal(1800, r.UsedBits);   // 8 + one of {8,2} / {2,8} … any split using all 1800 bits; 8+8+2
    }

    [Fact]
    public void Solve_BudgetBelowMinimum_ThrowsInfeasibleWithMinimum()
    {
        var e = Assert.Throws<BitBudgetException>(() => OmpqAllocation.Solve(
            new OmpqAllocationInput([100, 300], [1, 1], [600], 8, new Budget(BudgetKind.AvgBits, 4))));
        Assert.Equal(ErrorKind.Infeasible, e.Kind);
        // (400·2 + 600·8) / 1000 = 5.6
        Assert.Equal("Budget 4 avg bits (all layers) is infeasible: the smallest configuration (searched layers at 2 bits, fixed layers at 8) needs 5.6 avg bits (all layers).", e.Message);
        var bytes = Assert.Throws<BitBudgetException>(() => OmpqAllocation.Solve(
            new OmpqAllocationInput([100, 300], [1, 1], [600], 8, Budget.Parse("600B"))));
        Assert.Contains("needs 700 bytes", bytes.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("4bits", 4 * 1000)]                       // over all 1000 weights
    [InlineData("3bits-searched", 3 * 400 + 600 * 8)]     // searched weights at 3 bits, fixed layers on top
    [InlineData("300KB", 300_000 * 8)]
    [InlineData("1.5MiB", 1.5 * 1024 * 1024 * 8)]
    [InlineData("12000B", 12000 * 8)]
    public void Capacity_FromTheSharedBudgetVocabulary(string text, double bits)
    {
        // 400 searched and 600 fixed weights at 8 bits: the same budget strings the CLI parses for every method.
        Assert.Equal((long)bits, OmpqAllocation.Capacity(Budget.Parse(text), 400, 600, 600 * 8));
    }

    [Theory]
    [InlineData("2GBitOPs")]
    [InlineData("300KB-searched")]
    public void RequireSizeBudget_RefusesWhatOmpqCannotOptimize(string text)
    {
        var e = Assert.Throws<BitBudgetException>(() => OmpqAllocation.RequireSizeBudget(Budget.Parse(text)));
        Assert.Equal(ErrorKind.InvalidInput, e.Kind);
        Assert.StartsWith("OMPQ takes a size budget (average bits or bytes), not ", e.Message, StringComparison.Ordinal);
    }
}

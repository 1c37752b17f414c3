using BitBudget.Optimization;

namespace BitBudget.Tests.Optimization;

public class BudgetTests
{
    [Theory]
    [InlineData("3.5bits", BudgetKind.AvgBits, 3.5, BudgetScope.AllLayers)]
    [InlineData("3.5bits-searched", BudgetKind.AvgBits, 3.5, BudgetScope.SearchedOnly)]
    [InlineData(" 4 BITS ", BudgetKind.AvgBits, 4.0, BudgetScope.AllLayers)]
    [InlineData("120KB", BudgetKind.Bytes, 120_000.0, BudgetScope.AllLayers)]
    [InlineData("1.5MB", BudgetKind.Bytes, 1_500_000.0, BudgetScope.AllLayers)]
    [InlineData("2MiB", BudgetKind.Bytes, 2_097_152.0, BudgetScope.AllLayers)]
    [InlineData("100KiB-searched", BudgetKind.Bytes, 102_400.0, BudgetScope.SearchedOnly)]
    [InlineData("2.1GBitOPs", BudgetKind.BitOps, 2.1e9, BudgetScope.AllLayers)]
    [InlineData("500MBitOPs", BudgetKind.BitOps, 5e8, BudgetScope.AllLayers)]
    public void Parse_KnownUnits_GivesKindValueScope(string text, BudgetKind kind, double value, BudgetScope scope)
    {
        Budget budget = Budget.Parse(text);
        Assert.Equal(kind, budget.Kind);
        Assert.Equal(value, budget.Value, 1e-6);
        Assert.Equal(scope, budget.Scope);
    }

    [Theory]
    [InlineData("3.5")]
    [InlineData("bits")]
    [InlineData("-1bits")]
    [InlineData("3.5 parrots")]
    [InlineData("")]
    public void Parse_Garbage_ThrowsInvalidInput(string text)
    {
        var e = Assert.Throws<BitBudgetException>(() => Budget.Parse(text));
        Assert.Equal(ErrorKind.InvalidInput, e.Kind);
        Assert.Equal($"Budget '{text}' is not understood; expected a positive number with a unit such as '3.5bits', '3.5bits-searched', '120KB', '1.5MiB' or '2.1GBitOPs'.", e.Message);
    }

    [Fact]
    public void ParseList_CommaSeparated_ParsesEach()
    {
        var list = Budget.ParseList("4bits, 1.2MB");
        Assert.Equal([new Budget(BudgetKind.AvgBits, 4), new Budget(BudgetKind.Bytes, 1.2e6)], list);
    }

    [Theory]
    [InlineData("2.5bits,3bits")]
    [InlineData("1MB, 900KB")]
    [InlineData("3bits-searched,4bits-searched")]
    public void ParseList_TwoBudgetsOfOneKind_IsRefusedAsASweepTypedAsAList(string text)
    {
        // Only the tightest of two same-kind budgets can bind, so such a list silently searched one budget (found in issue 16's docs).
        var e = Assert.Throws<BitBudgetException>(() => Budget.ParseList(text));
        Assert.Equal(ErrorKind.InvalidInput, e.Kind);
        Assert.Contains("--pareto", e.Message, StringComparison.Ordinal);
        // Different scopes of average bits, or bits with bytes, are different constraints and stay allowed.
        Assert.Equal(2, Budget.ParseList("3bits,4bits-searched").Count);
    }

    [Fact]
    public void Measures_CountFixedLayers_AndIgnoreBiases()
    {
        // conv1 fixed at 8 (100 weights), a 1000-weight layer at 2, a 300-weight grouped conv at 4 (MACs already / groups).
        SearchLayer[] layers =
        [
            new("conv1", 100, 10_000, [8], FixedBits: 8),
            new("conv2", 1000, 50_000, [2, 4, 8]),
            new("dw", 300, 3_000, [2, 4, 8]),
        ];
        var problem = new SearchProblem(layers, new double[6, 6], [new Budget(BudgetKind.AvgBits, 8)], ActivationBits: 8);
        var bits = new Dictionary<string, int> { ["conv1"] = 8, ["conv2"] = 2, ["dw"] = 4 };
        Assert.Equal((100 * 8 + 1000 * 2 + 300 * 4) / 1400.0, problem.AverageBits(bits), 12);
        Assert.Equal((100 * 8 + 1000 * 2 + 300 * 4) / 8.0, problem.SizeBytes(bits), 12);
        Assert.Equal(10_000.0 * 8 * 8 + 50_000.0 * 2 * 8 + 3_000.0 * 4 * 8, problem.BitOps(bits), 6);
        Assert.Equal((1000 * 2 + 300 * 4) / 1300.0, new Budget(BudgetKind.AvgBits, 8, BudgetScope.SearchedOnly).Measure(problem, bits), 12);
    }

    [Fact]
    public void Sizes_CountStoredContainers_BitOpsTheNominalBits()
    {
        // ONNX has int2/int4/int8 only: a 3-bit weight is stored as int4, 5- and 6-bit ones as int8.
        SearchLayer[] layers = [new("a", 100, 1_000, [3, 4]), new("b", 300, 2_000, [5, 6, 8])];
        var problem = new SearchProblem(layers, new double[5, 5], [new Budget(BudgetKind.AvgBits, 8)], ActivationBits: 8);
        var bits = new Dictionary<string, int> { ["a"] = 3, ["b"] = 5 };
        Assert.Equal((100 * 4 + 300 * 8) / 400.0, problem.AverageBits(bits), 12);
        Assert.Equal((100 * 4 + 300 * 8) / 8.0, problem.SizeBytes(bits), 12);
        Assert.Equal(1_000.0 * 3 * 8 + 2_000.0 * 5 * 8, problem.BitOps(bits), 6);
        Assert.Equal([2, 4, 4, 8, 8, 8, 8, 32], new[] { 2, 3, 4, 5, 6, 7, 8, 32 }.Select(global::BitBudget.Graph.WeightStorage.StoredBits));
    }

    [Fact]
    public void Search_DoesNotBuyThreeBitsAtTheNominalPrice()
    {
        // Two 1000-weight layers, candidates 2/3/4/8 with losses 10 / 1 / 0.9 / 0 each. Counted at 3 bits, 3+3 would fit a
        // 3-bit budget at loss 2; stored in int4 it costs 4 bits, so the optimum is 2+4 (loss 10.9).
        SearchLayer[] layers = [new("a", 1000, 1_000, [2, 3, 4, 8]), new("b", 1000, 1_000, [2, 3, 4, 8])];
        var omega = new double[8, 8];
        double[] loss = [10, 1, 0.9, 0];
        for (int i = 0; i < 8; i++) { omega[i, i] = 2 * loss[i % 4]; }
        var problem = new SearchProblem(layers, omega, [new Budget(BudgetKind.AvgBits, 3)], ActivationBits: 8);
        SearchResult r = BitSearch.Solve(problem, SearchMethod.Independent);
        Assert.DoesNotContain(3, r.Bits.Values);
        Assert.Equal([2, 4], r.Bits.Values.Order());
        Assert.True(problem.AverageBits(r.Bits) <= 3 + 1e-9);
    }
}

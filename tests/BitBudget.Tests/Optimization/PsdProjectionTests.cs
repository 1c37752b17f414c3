using BitBudget.Optimization;

namespace BitBudget.Tests.Optimization;

public class PsdProjectionTests
{
    static SearchResult Solve(SearchProblem problem, SearchMethod method, SearchOptions? options = null) =>
        BitSearch.Solve(problem, method, options, TestContext.Current.CancellationToken);

    [Fact]
    public void ClipEigenvalues_IndefiniteMatrix_BecomesPsd_AndKeepsPsdPart()
    {
        double[,] m = { { 1, 2 }, { 2, 1 } };   // eigenvalues 3 (1,1)/√2 and −1 (1,−1)/√2
        double[,] c = PsdProjection.ClipEigenvalues(m);
        Assert.Equal(1.5, c[0, 0], 12);
        Assert.Equal(1.5, c[0, 1], 12);
        Assert.Equal(1.5, c[1, 0], 12);
        Assert.True(PsdProjection.MinEigenvalue(c) > -1e-12);
    }

    [Fact]
    public void ClipEigenvalues_PsdMatrix_IsUnchanged()
    {
        SearchProblem p = SyntheticProblem.Generate(5, seed: 3);
        double[,] c = PsdProjection.ClipEigenvalues(p.Omega);
        for (int u = 0; u < 15; u++)
        {
            for (int v = 0; v < 15; v++) { Assert.Equal(p.Omega[u, v], c[u, v], 10); }
        }
    }

    [Fact]
    public void ShiftDiagonal_AddsMinusSmallestEigenvalue_AndKeepsTheArgmin()
    {
        var random = new Random(11);
        int layers = 5, n = 15;
        var omega = new double[n, n];
        for (int u = 0; u < n; u++)
        {
            for (int v = 0; v <= u; v++) { omega[u, v] = omega[v, u] = random.NextDouble() - 0.5; }
        }
        double lambdaMin = PsdProjection.MinEigenvalue(omega);
        Assert.True(lambdaMin < 0);
        double[,] shifted = PsdProjection.ShiftDiagonal(omega);
        Assert.Equal(omega[0, 0] - lambdaMin, shifted[0, 0], 12);
        Assert.True(PsdProjection.MinEigenvalue(shifted) > -1e-9);

        SearchLayer[] ls = [.. Enumerable.Range(0, layers).Select(i => new SearchLayer($"l{i}", 100, 100, [2, 4, 8]))];
        var budget = new Budget(BudgetKind.AvgBits, 4);
        var raw = Solve(new SearchProblem(ls, omega, [budget]), SearchMethod.Clado, new SearchOptions { Algorithm = IqpAlgorithm.BruteForce });
        var exact = Solve(new SearchProblem(ls, shifted, [budget]), SearchMethod.Clado, new SearchOptions { RelativeGap = 1e-9 });
        Assert.Equal(raw.Objective - lambdaMin * layers, exact.Objective, 8);
        Assert.Equal(raw.Bits, exact.Bits);
    }
}

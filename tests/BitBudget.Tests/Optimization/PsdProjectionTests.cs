using BitBudget.Numerics;
using BitBudget.Optimization;
using MathNet.Numerics.LinearAlgebra;

namespace BitBudget.Tests.Optimization;

public class PsdProjectionTests
{
    static SearchResult Solve(SearchProblem problem, SearchMethod method, SearchOptions? options = null) =>
        BitSearch.Solve(problem, method, options, TestContext.Current.CancellationToken);

    [Fact]
    public void ClipEigenvalues_IndefiniteMatrix_BecomesPsd_AndKeepsPsdPart()
    {
        double[,] m = { { 1, 2 }, { 2, 1 } };   // eigenvalues 3 (1,1)/√2 and −1 (1,−1)/√2
        SquareMatrix c = PsdProjection.ClipEigenvalues(m);
        Assert.Equal(1.5, c[0, 0], 12);
        Assert.Equal(1.5, c[0, 1], 12);
        Assert.Equal(1.5, c[1, 0], 12);
        Assert.True(PsdProjection.MinEigenvalue(c) > -1e-12);
    }

    [Fact]
    public void ClipEigenvalues_PsdMatrix_IsUnchanged()
    {
        SearchProblem p = SyntheticProblem.Generate(5, seed: 3);
        SquareMatrix c = PsdProjection.ClipEigenvalues(p.Omega);
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
        SquareMatrix shifted = PsdProjection.ShiftDiagonal(omega);
        Assert.Equal(omega[0, 0] - lambdaMin, shifted[0, 0], 12);
        Assert.True(PsdProjection.MinEigenvalue(shifted) > -1e-9);

        SearchLayer[] ls = [.. Enumerable.Range(0, layers).Select(i => new SearchLayer($"l{i}", 100, 100, [2, 4, 8]))];
        var budget = new Budget(BudgetKind.AvgBits, 4);
        var raw = Solve(new SearchProblem(ls, omega, [budget]), SearchMethod.Clado, new SearchOptions { Algorithm = IqpAlgorithm.BruteForce });
        var exact = Solve(new SearchProblem(ls, shifted, [budget]), SearchMethod.Clado, new SearchOptions { RelativeGap = 1e-9 });
        Assert.Equal(raw.Objective - lambdaMin * layers, exact.Objective, 8);
        Assert.Equal(raw.Bits, exact.Bits);
    }

    /// <summary>
    /// CLADO's clipping on the measured ResNet-20 Ω against an independent sum of outer products Σ max(λ,0)·v vᵀ: equal to 1e-12 of
    /// max |Ω|, PSD to −1e-12, the nearest PSD matrix (Ω⁺ − Ω is negative semidefinite and Frobenius-orthogonal to Ω⁺), and the
    /// exact search on either matrix picks the same bits.
    /// </summary>
    [Fact]
    public void ClipEigenvalues_MeasuredResNet20Omega_MatchesTheOuterProductSum_AndTheSearchResult()
    {
        SearchProblem problem = MeasuredOmegaSearchTests.ResNet20("3.5bits");
        SquareMatrix omega = problem.Omega;
        int n = omega.Order;
        SquareMatrix clipped = PsdProjection.ClipEigenvalues(omega);

        var sym = Matrix<double>.Build.Dense(n, n, (i, j) => 0.5 * (omega[i, j] + omega[j, i]));
        var evd = sym.Evd(Symmetricity.Symmetric);
        Assert.True(evd.EigenValues.Real().Minimum() < 0, "the fixture is indefinite, so the clipping changes it");
        var reference = Matrix<double>.Build.Dense(n, n);
        for (int k = 0; k < n; k++)
        {
            double l = Math.Max(evd.EigenValues[k].Real, 0);
            if (l > 0) { reference += l * evd.EigenVectors.Column(k).OuterProduct(evd.EigenVectors.Column(k)); }
        }
        double scale = sym.Enumerate().Max(Math.Abs);
        var c = Matrix<double>.Build.DenseOfArray(clipped.ToArray());
        Assert.True((c - reference).Enumerate().Max(Math.Abs) <= 1e-12 * scale, $"max |Δ| {(c - reference).Enumerate().Max(Math.Abs)} vs scale {scale}");
        Assert.True(c.Evd(Symmetricity.Symmetric).EigenValues.Real().Minimum() >= -1e-12 * scale);
        Matrix<double> residual = c - sym;
        Assert.True(residual.Evd(Symmetricity.Symmetric).EigenValues.Real().Maximum() <= 1e-12 * scale);
        Assert.True(Math.Abs(c.PointwiseMultiply(residual).Enumerate().Sum()) <= 1e-12 * scale * scale * n);

        var ct = TestContext.Current.CancellationToken;
        SearchResult a = BitSearch.Solve(problem with { Omega = clipped }, SearchMethod.Clado, null, ct);
        SearchResult b = BitSearch.Solve(problem with { Omega = reference.ToArray() }, SearchMethod.Clado, null, ct);
        Assert.Equal(SearchStatus.Optimal, a.Status);
        Assert.Equal(b.Bits, a.Bits);
        Assert.Equal(b.Objective, a.Objective, 1e-9 * Math.Abs(b.Objective));
    }
}

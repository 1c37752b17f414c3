using MathNet.Numerics.LinearAlgebra;

namespace BitBudget.Optimization;

/// <summary>
/// Quadratic convex reformulation (QCR) of xᵀΩx on one-hot points: for any block-diagonal B (one block per searched layer),
/// xᵀBx = diag(B)ᵀx when x is one-hot per layer, so xᵀΩx = xᵀ(Ω − B)x + diag(B)ᵀx there. B is chosen so that Ω − B is
/// positive semidefinite and as "small" as possible (alternating projections between the PSD cone and the affine set
/// {Ω − B : B block-diagonal}, started from B = the diagonal blocks of Ω, then a final shift that guarantees PSD).
/// Ω − B = G·Gᵀ (eigen-directions above a tiny threshold; dropping positive parts only lowers the relaxation, so it stays a
/// valid lower bound). The relaxation is φ(x) = ‖Gᵀx‖² + cᵀx with c = diag(B): equal to xᵀΩx on one-hot points, convex,
/// and much tighter than Ω's own continuous relaxation because most of the curvature moved into the linear term.
/// </summary>
internal sealed class ConvexRelaxation
{
    /// <summary>Row-major n × Rank factor: φ's quadratic part is ‖Gᵀx‖².</summary>
    public double[] G { get; }
    /// <summary>Linear term c = diag(B).</summary>
    public double[] C { get; }
    public int Rank { get; }
    /// <summary>Alternating-projection rounds used.</summary>
    public int Rounds { get; }

    ConvexRelaxation(double[] g, double[] c, int rank, int rounds) => (G, C, Rank, Rounds) = (g, c, rank, rounds);

    /// <summary>Builds the reformulation (eigen-directions of Ω − B below <paramref name="dropBelow"/> × the largest are dropped: a weaker but cheaper, still valid bound); <paramref name="rounds"/> = 0 keeps B = the diagonal blocks of Ω shifted just enough to be PSD.</summary>
    public static ConvexRelaxation Build(Instance inst, int rounds = 30, bool blocks = true, double dropBelow = 1e-10)
    {
        int n = inst.N;
        double[,] omega = inst.Problem.Omega;
        var m = Matrix<double>.Build.Dense(n, n, (i, j) => 0.5 * (omega[i, j] + omega[j, i]));
        // B starts at Ω's diagonal blocks (or its diagonal), so E = Ω − B has zero blocks: the largest B worth trying.
        var b = Matrix<double>.Build.Dense(n, n);
        for (int u = 0; u < n; u++)
        {
            for (int v = inst.Offsets[inst.LayerOf[u]]; v < inst.Offsets[inst.LayerOf[u] + 1]; v++)
            {
                if (blocks || u == v) { b[u, v] = m[u, v]; }
            }
        }
        double scale = 0;
        for (int u = 0; u < n; u++) { scale = Math.Max(scale, Math.Abs(m[u, u])); }
        scale = Math.Max(scale, 1e-300);
        int used = 0;
        for (; used < rounds; used++)
        {
            var evd = (m - b).Evd(Symmetricity.Symmetric);
            double[] lambda = [.. evd.EigenValues.Select(z => z.Real)];
            if (lambda.Min() >= -1e-10 * scale) { break; }
            // Negative part N = Σ_{λ<0} λ v vᵀ; projecting E − N (PSD) back onto {Ω − B} moves B by the block part of N.
            Matrix<double> vectors = evd.EigenVectors;
            for (int k = 0; k < n; k++)
            {
                if (lambda[k] >= 0) { continue; }
                for (int u = 0; u < n; u++)
                {
                    double a = lambda[k] * vectors[u, k];
                    if (a == 0) { continue; }
                    int lo = blocks ? inst.Offsets[inst.LayerOf[u]] : u, hi = blocks ? inst.Offsets[inst.LayerOf[u] + 1] : u + 1;
                    for (int v = lo; v < hi; v++) { b[u, v] += a * vectors[v, k]; }
                }
            }
            b = 0.5 * (b + b.Transpose());
        }
        // Final guarantee: shift B by the remaining most negative eigenvalue (plus a hair), so Ω − B ⪰ 0 exactly enough.
        var final = (m - b).Evd(Symmetricity.Symmetric);
        double[] eig = [.. final.EigenValues.Select(z => z.Real)];
        double shift = Math.Max(0, -eig.Min()) + 1e-12 * scale;
        var c = new double[n];
        for (int u = 0; u < n; u++) { c[u] = b[u, u] - shift; }
        double max = eig.Max() + shift;
        var keep = new List<int>();
        for (int k = 0; k < n; k++) { if (eig[k] + shift > dropBelow * Math.Max(max, 1e-300)) { keep.Add(k); } }
        var g = new double[n * Math.Max(1, keep.Count)];
        for (int j = 0; j < keep.Count; j++)
        {
            double root = Math.Sqrt(eig[keep[j]] + shift);
            for (int u = 0; u < n; u++) { g[u * keep.Count + j] = root * final.EigenVectors[u, keep[j]]; }
        }
        return new ConvexRelaxation(g, c, keep.Count, used);
    }
}

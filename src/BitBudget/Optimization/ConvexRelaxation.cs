using System.Numerics.Tensors;
using BitBudget.Numerics;
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
    /// <summary>Linear term (diag(B), plus the tangent form's 2ΠMx0).</summary>
    public double[] C { get; }
    /// <summary>Constant term of φ (x0ᵀMx0 in the tangent form, else 0).</summary>
    public double Constant { get; }
    public int Rank { get; }
    /// <summary>Alternating-projection rounds used.</summary>
    public int Rounds { get; }

    ConvexRelaxation(double[] g, double[] c, double constant, int rank, int rounds) => (G, C, Constant, Rank, Rounds) = (g, c, constant, rank, rounds);

    /// <summary>φ(x) = ‖Gᵀx‖² + cᵀx + constant at a configuration (scheme index per searched layer); equals xᵀQx up to dropped directions.</summary>
    public double Value(Instance inst, ReadOnlySpan<int> choice)
    {
        var y = new double[Rank];
        double value = Constant;
        for (int i = 0; i < choice.Length; i++)
        {
            int u = inst.Offsets[i] + choice[i];
            value += C[u];
            TensorPrimitives.Add(y, G.AsSpan(u * Rank, Rank), y);
        }
        return value + TensorPrimitives.Dot<double>(y, y);
    }

    // The reformulation depends on Ω and the layer structure only, not on the budgets: a sweep over budgets of one Ω (the
    // Pareto sweep, SolveRanked) builds it once. Keyed by content (callers build a fresh Ω array per problem), compared in full.
    static readonly List<(double[] Q, int[] Offsets, (int, bool, double, bool) Knobs, ConvexRelaxation Relaxation)> s_cache = [];
    const int CacheSize = 8;

    /// <summary><see cref="Build"/>, or the reformulation built earlier for the same Ω, layers and knobs (the last <see cref="CacheSize"/> are kept).</summary>
    public static ConvexRelaxation Cached(Instance inst, int rounds = 30, bool blocks = true, double dropBelow = 1e-10, bool tangent = true)
    {
        var knobs = (rounds, blocks, dropBelow, tangent);
        lock (s_cache)
        {
            foreach (var entry in s_cache)
            {
                if (entry.Knobs == knobs && entry.Offsets.AsSpan().SequenceEqual(inst.Offsets) && entry.Q.AsSpan().SequenceEqual(inst.Q)) { return entry.Relaxation; }
            }
        }
        ConvexRelaxation built = Build(inst, rounds, blocks, dropBelow, tangent);
        lock (s_cache)
        {
            if (s_cache.Count == CacheSize) { s_cache.RemoveAt(0); }
            s_cache.Add((inst.Q, inst.Offsets, knobs, built));
        }
        return built;
    }

    /// <summary>Forgets every cached reformulation (benchmarks that time a cold start).</summary>
    public static void ClearCache()
    {
        lock (s_cache) { s_cache.Clear(); }
    }

    /// <summary>Builds the reformulation (eigen-directions of Ω − B below <paramref name="dropBelow"/> × the largest are dropped: a weaker but cheaper, still valid bound); <paramref name="rounds"/> = 0 keeps B = the diagonal blocks of Ω shifted just enough to be PSD.</summary>
    public static ConvexRelaxation Build(Instance inst, int rounds = 30, bool blocks = true, double dropBelow = 1e-10, bool tangent = true)
    {
        if (tangent) { return BuildTangent(inst, rounds, dropBelow); }
        int n = inst.N;
        SquareMatrix omega = inst.Problem.Omega;
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
            // Projecting E − N (PSD) back onto {Ω − B} moves B by the block part of E's negative part N.
            if (!AddNegativePartBlocks((m - b).Evd(Symmetricity.Symmetric), b, inst, blocks, +1, scale)) { break; }
            b = 0.5 * (b + b.Transpose());
        }
        // Final guarantee: shift B by the remaining most negative eigenvalue (plus a hair), so Ω − B ⪰ 0 exactly enough.
        var final = (m - b).Evd(Symmetricity.Symmetric);
        double[] eig = [.. final.EigenValues.Select(z => z.Real)];
        double shift = Math.Max(0, -eig.Min()) + 1e-12 * scale;
        var c = new double[n];
        for (int u = 0; u < n; u++) { c[u] = b[u, u] - shift; }
        (double[] g, int rank) = Factor(eig, shift, final.EigenVectors, dropBelow);
        return new ConvexRelaxation(g, c, 0, rank, used);
    }

    /// <summary>
    /// QCR that asks Ω − B to be PSD only on the tangent space T = {d : Σ_{u∈layer i} d_u = 0 ∀i} of the product of simplices,
    /// which is all the relaxation ever moves in. With Π the orthogonal projector onto T and x0 the per-layer uniform point
    /// (Πx0 = 0), every x with layer sums 1 has xᵀMx = x0ᵀMx0 + 2(ΠMx0)ᵀx + xᵀ(ΠMΠ)x for M = Q − B, so
    /// φ(x) = xᵀ(ΠMΠ)x + (diag(B) + 2ΠMx0)ᵀx + x0ᵀMx0 equals xᵀQx on configurations and is convex on the relaxation when
    /// ΠMΠ ⪰ 0. A low-rank Ω (e.g. after eigenvalue clipping) forces the full-space B to be ⪯ 0 on Ω's null space, which
    /// leaves almost nothing of the QCR gain; on T that restriction disappears. The same alternating projections choose B's
    /// blocks (each block lives on its layer's part of T).
    /// </summary>
    static ConvexRelaxation BuildTangent(Instance inst, int rounds, double dropBelow)
    {
        int n = inst.N;
        var q = Matrix<double>.Build.Dense(n, n, (i, j) => inst.Q[i * n + j]);
        var projector = Matrix<double>.Build.Dense(n, n);
        var x0 = Vector<double>.Build.Dense(n);
        for (int u = 0; u < n; u++)
        {
            int layer = inst.LayerOf[u], size = inst.Offsets[layer + 1] - inst.Offsets[layer];
            x0[u] = 1.0 / size;
            for (int v = inst.Offsets[layer]; v < inst.Offsets[layer + 1]; v++) { projector[u, v] = (u == v ? 1.0 : 0.0) - 1.0 / size; }
        }
        var qt = projector * q * projector;
        // D = the diagonal blocks of ΠMΠ; they start at zero (B's blocks = ΠQ_iiΠ), the cross blocks ΠQ_ijΠ never change.
        var d = Matrix<double>.Build.Dense(n, n);
        double scale = 0;
        for (int u = 0; u < n; u++) { scale = Math.Max(scale, Math.Abs(q[u, u])); }
        scale = Math.Max(scale, 1e-300);
        Matrix<double> Current()
        {
            var e = qt.Clone();
            for (int u = 0; u < n; u++)
            {
                for (int v = inst.Offsets[inst.LayerOf[u]]; v < inst.Offsets[inst.LayerOf[u] + 1]; v++) { e[u, v] = d[u, v]; }
            }
            return e;
        }
        int used = 0;
        for (; used < rounds; used++)
        {
            // D = ΠMΠ's diagonal blocks move by minus the block part of its negative part (B's blocks by plus it).
            if (!AddNegativePartBlocks(Current().Evd(Symmetricity.Symmetric), d, inst, blocks: true, -1, scale)) { break; }
            d = 0.5 * (d + d.Transpose());
        }
        // Final guarantee on T: add the remaining most negative eigenvalue times Π (D's blocks stay on T, so does Π).
        double lowest = Current().Evd(Symmetricity.Symmetric).EigenValues.Select(z => z.Real).Min();
        d += (Math.Max(0, -lowest) + 1e-12 * scale) * projector;
        Matrix<double> mt = Current();
        // B's blocks: ΠQ_iiΠ − D_i; M = Q − B.
        var b = Matrix<double>.Build.Dense(n, n);
        for (int u = 0; u < n; u++)
        {
            for (int v = inst.Offsets[inst.LayerOf[u]]; v < inst.Offsets[inst.LayerOf[u] + 1]; v++) { b[u, v] = qt[u, v] - d[u, v]; }
        }
        var m = q - b;
        var pmx0 = projector * (m * x0);
        var c = new double[n];
        for (int u = 0; u < n; u++) { c[u] = b[u, u] + 2 * pmx0[u]; }
        double constant = x0 * (m * x0);
        var final = (0.5 * (mt + mt.Transpose())).Evd(Symmetricity.Symmetric);
        double[] eig = [.. final.EigenValues.Select(z => z.Real)];
        (double[] g, int rank) = Factor(eig, 0, final.EigenVectors, dropBelow);
        return new ConvexRelaxation(g, c, constant, rank, used);
    }

    /// <summary>
    /// One alternating-projection step: adds <paramref name="sign"/> × the block-diagonal part (one block per searched layer, or
    /// the diagonal only) of the negative eigen-part N = Σ_{λ_k&lt;0} λ_k v_k v_kᵀ of the decomposed matrix to <paramref name="target"/>;
    /// false (nothing added) when no eigenvalue is below −1e-10 × <paramref name="scale"/>.
    /// </summary>
    static bool AddNegativePartBlocks(MathNet.Numerics.LinearAlgebra.Factorization.Evd<double> evd, Matrix<double> target, Instance inst, bool blocks, double sign, double scale)
    {
        double[] lambda = [.. evd.EigenValues.Select(z => z.Real)];
        if (lambda.Min() >= -1e-10 * scale) { return false; }
        Matrix<double> vectors = evd.EigenVectors;
        int n = lambda.Length;
        for (int k = 0; k < n; k++)
        {
            if (lambda[k] >= 0) { continue; }
            for (int u = 0; u < n; u++)
            {
                double a = sign * lambda[k] * vectors[u, k];
                if (a == 0) { continue; }
                int lo = blocks ? inst.Offsets[inst.LayerOf[u]] : u, hi = blocks ? inst.Offsets[inst.LayerOf[u] + 1] : u + 1;
                for (int v = lo; v < hi; v++) { target[u, v] += a * vectors[v, k]; }
            }
        }
        return true;
    }

    /// <summary>Row-major n × rank factor G with GGᵀ = Σ (λ_k + shift) v_k v_kᵀ over the eigenvalues above <paramref name="dropBelow"/> × the largest.</summary>
    static (double[] G, int Rank) Factor(double[] eig, double shift, Matrix<double> vectors, double dropBelow)
    {
        int n = eig.Length;
        double max = Math.Max(eig.Max() + shift, 1e-300);
        var keep = new List<int>();
        for (int k = 0; k < n; k++) { if (eig[k] + shift > dropBelow * max) { keep.Add(k); } }
        var g = new double[n * Math.Max(1, keep.Count)];
        for (int j = 0; j < keep.Count; j++)
        {
            double root = Math.Sqrt(eig[keep[j]] + shift);
            for (int u = 0; u < n; u++) { g[u * keep.Count + j] = root * vectors[u, keep[j]]; }
        }
        return (g, keep.Count);
    }
}

using MathNet.Numerics.LinearAlgebra;

namespace BitBudget.Optimization;

/// <summary>
/// Makes a measured Ω positive semidefinite, which the exact search (and CLADO's formulation) requires.
/// </summary>
internal static class PsdProjection
{
    /// <summary>
    /// CLADO's projection: Ω = U·diag(λ)·Uᵀ, negative eigenvalues set to 0, symmetrised. This changes the objective
    /// (it is the nearest PSD matrix in Frobenius norm), as in the CLADO paper and code.
    /// </summary>
    public static double[,] ClipEigenvalues(double[,] omega)
    {
        var (lambda, vectors) = Eigen(omega);
        int n = lambda.Length;
        var result = new double[n, n];
        for (int k = 0; k < n; k++)
        {
            double l = Math.Max(lambda[k], 0);
            if (l == 0) { continue; }
            for (int u = 0; u < n; u++)
            {
                double a = l * vectors[u, k];
                for (int v = 0; v < n; v++) { result[u, v] += a * vectors[v, k]; }
            }
        }
        for (int u = 0; u < n; u++)
        {
            for (int v = u + 1; v < n; v++) { result[u, v] = result[v, u] = 0.5 * (result[u, v] + result[v, u]); }
        }
        return result;
    }

    /// <summary>
    /// Ω + δI with δ = max(0, −λmin(Ω)): PSD, and on one-hot configurations it adds the same constant δ·L to every
    /// configuration, so the optimum is that of the measured Ω (algorithms.md §1.5).
    /// </summary>
    public static double[,] ShiftDiagonal(double[,] omega)
    {
        var (lambda, _) = Eigen(omega);
        double delta = Math.Max(0, -lambda.Min());
        var result = (double[,])omega.Clone();
        for (int u = 0; u < result.GetLength(0); u++) { result[u, u] += delta; }
        return result;
    }

    /// <summary>Smallest eigenvalue of the symmetric part of <paramref name="omega"/>.</summary>
    public static double MinEigenvalue(double[,] omega) => Eigen(omega).Lambda.Min();

    /// <summary>Symmetric eigendecomposition: eigenvalues and eigenvectors as columns.</summary>
    internal static (double[] Lambda, double[,] Vectors) Eigen(double[,] omega)
    {
        ArgumentNullException.ThrowIfNull(omega);
        int n = omega.GetLength(0);
        if (omega.GetLength(1) != n) { throw new ArgumentException("Ω must be square.", nameof(omega)); }
        var m = Matrix<double>.Build.Dense(n, n, (i, j) => 0.5 * (omega[i, j] + omega[j, i]));
        var evd = m.Evd(Symmetricity.Symmetric);
        return (evd.EigenValues.Select(c => c.Real).ToArray(), evd.EigenVectors.ToArray());
    }
}

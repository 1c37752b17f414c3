using MathNet.Numerics.LinearAlgebra;
using MathNet.Numerics.LinearAlgebra.Factorization;

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
        Evd<double> evd = Decompose(omega);
        Matrix<double> v = evd.EigenVectors;
        Vector<double> kept = evd.EigenValues.Map(c => Math.Max(c.Real, 0));
        // V·diag(λ⁺)·Vᵀ: the columns of V scaled by λ⁺, times Vᵀ (MathNet's product; `bench numeric kernels` times it against the scalar loop).
        Matrix<double> product = v.Multiply(Matrix<double>.Build.DiagonalOfDiagonalVector(kept)).TransposeAndMultiply(v);
        return (product + product.Transpose()).Multiply(0.5).ToArray();
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
        Evd<double> evd = Decompose(omega);
        return (evd.EigenValues.Select(c => c.Real).ToArray(), evd.EigenVectors.ToArray());
    }

    /// <summary>The symmetric eigendecomposition of the symmetric part of <paramref name="omega"/>.</summary>
    static Evd<double> Decompose(double[,] omega)
    {
        ArgumentNullException.ThrowIfNull(omega);
        int n = omega.GetLength(0);
        if (omega.GetLength(1) != n) { throw new ArgumentException("Ω must be square.", nameof(omega)); }
        return Matrix<double>.Build.Dense(n, n, (i, j) => 0.5 * (omega[i, j] + omega[j, i])).Evd(Symmetricity.Symmetric);
    }
}

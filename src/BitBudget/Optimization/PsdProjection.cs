using BitBudget.Numerics;
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
    public static SquareMatrix ClipEigenvalues(SquareMatrix omega)
    {
        Evd<double> evd = Decompose(omega);
        Matrix<double> v = evd.EigenVectors;
        Vector<double> kept = evd.EigenValues.Map(c => Math.Max(c.Real, 0));
        // V·diag(λ⁺)·Vᵀ as MathNet products (`bench numeric kernels` times them against the former scalar loop).
        Matrix<double> product = v.Multiply(Matrix<double>.Build.DiagonalOfDiagonalVector(kept)).TransposeAndMultiply(v);
        return SquareMatrix.Copy((product + product.Transpose()).Multiply(0.5));
    }

    /// <summary>
    /// Ω + δI with δ = max(0, −λmin(Ω)): PSD, and on one-hot configurations it adds the same constant δ·L to every
    /// configuration, so the optimum is that of the measured Ω (algorithms.md §1.5).
    /// </summary>
    public static SquareMatrix ShiftDiagonal(SquareMatrix omega)
    {
        double delta = Math.Max(0, -MinEigenvalue(omega));
        double[] result = omega.ToRowMajorArray();
        for (int u = 0; u < omega.Order; u++) { result[u * omega.Order + u] += delta; }
        return SquareMatrix.Own(result, omega.Order);
    }

    /// <summary>Smallest eigenvalue of the symmetric part of <paramref name="omega"/>.</summary>
    public static double MinEigenvalue(SquareMatrix omega) => Eigen(omega).Lambda.Min();

    /// <summary>Symmetric eigendecomposition of the symmetric part: eigenvalues and eigenvectors as columns.</summary>
    internal static (double[] Lambda, Matrix<double> Vectors) Eigen(SquareMatrix omega)
    {
        Evd<double> evd = Decompose(omega);
        return (evd.EigenValues.Select(c => c.Real).ToArray(), evd.EigenVectors);
    }

    static Evd<double> Decompose(SquareMatrix omega)
    {
        ArgumentNullException.ThrowIfNull(omega);
        return omega.SymmetricPart().Evd(Symmetricity.Symmetric);
    }
}

using System.Numerics.Tensors;
using BitBudget.Numerics;

namespace BitBudget.Ompq;

/// <summary>Gram matrices, centering, linear CKA and importance factors: the arithmetic of OMPQ's proxy.</summary>
internal static class OrthogonalityMath
{
    /// <summary>Feature elements per block: 32 rows × 2048 floats = 256 KiB stay in L2 while all row pairs are dotted.</summary>
    internal const int BlockLength = 2048;

    /// <summary>
    /// K = X Xᵀ for X = <paramref name="features"/> viewed as <paramref name="n"/> rows of equal length, row-major.
    /// Each block of <see cref="BlockLength"/> elements is dotted in float (vectorized), and the block sums are added in double,
    /// so the rounding error does not grow with the feature length.
    /// </summary>
    public static double[] Gram(ReadOnlySpan<float> features, int n)
    {
        if (n <= 0 || features.Length % n != 0)
        {
            throw new ArgumentException($"{features.Length} feature values do not split into {n} equal rows.", nameof(features));
        }
        int d = features.Length / n;
        var gram = new double[n * n];
        for (int start = 0; start < d; start += BlockLength)
        {
            int length = Math.Min(BlockLength, d - start);
            for (int a = 0; a < n; a++)
            {
                ReadOnlySpan<float> rowA = features.Slice(a * d + start, length);
                for (int b = a; b < n; b++)
                {
                    gram[a * n + b] += TensorPrimitives.Dot(rowA, features.Slice(b * d + start, length));
                }
            }
        }
        for (int a = 0; a < n; a++)
        {
            for (int b = 0; b < a; b++) { gram[a * n + b] = gram[b * n + a]; }
        }
        return gram;
    }

    /// <summary>H K H with H = I − 11ᵀ/n: subtract row and column means, add back the grand mean.</summary>
    public static double[] Center(ReadOnlySpan<double> gram, int n)
    {
        var means = new double[n];
        double grand = 0;
        for (int a = 0; a < n; a++)
        {
            double sum = TensorPrimitives.Sum(gram.Slice(a * n, n));
            means[a] = sum / n;
            grand += sum;
        }
        grand /= (double)n * n;
        var centered = new double[n * n];
        for (int a = 0; a < n; a++)
        {
            // ((K_ab − m_a) − m_b) + grand, element by element as the formula reads.
            Span<double> row = centered.AsSpan(a * n, n);
            TensorPrimitives.Subtract(gram.Slice(a * n, n), means[a], row);
            TensorPrimitives.Subtract(row, means, row);
            TensorPrimitives.Add(row, grand, row);
        }
        return centered;
    }

    /// <summary>Frobenius inner product of two n×n matrices.</summary>
    public static double Inner(ReadOnlySpan<double> x, ReadOnlySpan<double> y) => TensorPrimitives.Dot(x, y);

    /// <summary>
    /// ORM_ij = ⟨K_i,K_j⟩_F / (‖K_i‖_F ‖K_j‖_F), symmetric with unit diagonal. A Gram of zero norm (a constant feature)
    /// has no direction: its off-diagonal entries are 0 and its index is returned in <paramref name="constant"/>.
    /// </summary>
    public static SquareMatrix Orm(IReadOnlyList<double[]> grams, out List<int> constant)
    {
        int l = grams.Count;
        var norms = new double[l];
        constant = [];
        for (int i = 0; i < l; i++)
        {
            norms[i] = Math.Sqrt(Inner(grams[i], grams[i]));
            if (!(norms[i] > 0)) { constant.Add(i); }
        }
        var orm = new double[l * l];
        for (int i = 0; i < l; i++)
        {
            orm[i * l + i] = 1;
            for (int j = i + 1; j < l; j++)
            {
                double value = norms[i] > 0 && norms[j] > 0 ? Inner(grams[i], grams[j]) / (norms[i] * norms[j]) : 0;
                orm[i * l + j] = orm[j * l + i] = value;
            }
        }
        return SquareMatrix.Own(orm, l);
    }

    /// <summary>γ_i = Σ_{j≠i} ORM_ij.</summary>
    public static double[] Gamma(SquareMatrix orm)
    {
        int l = orm.Order;
        var gamma = new double[l];
        for (int i = 0; i < l; i++)
        {
            ReadOnlySpan<double> row = orm.Row(i);
            gamma[i] = TensorPrimitives.Sum(row[..i]) + TensorPrimitives.Sum(row[(i + 1)..]);
        }
        return gamma;
    }

    /// <summary>
    /// θ_i = exp(−β γ_i) / max_j exp(−β γ_j) = exp(−β (γ_i − min γ)), computed from the log so it never underflows before
    /// normalizing; <paramref name="logTheta"/> gets ln of the raw (unnormalized) θ_i = −β γ_i.
    /// </summary>
    public static double[] Theta(ReadOnlySpan<double> gamma, double beta, out double[] logTheta)
    {
        logTheta = new double[gamma.Length];
        double min = double.PositiveInfinity;
        for (int i = 0; i < gamma.Length; i++)
        {
            logTheta[i] = -beta * gamma[i];
            min = Math.Min(min, gamma[i]);
        }
        var theta = new double[gamma.Length];
        for (int i = 0; i < gamma.Length; i++) { theta[i] = Math.Exp(-beta * (gamma[i] - min)); }
        return theta;
    }

    /// <summary>Shannon entropy (nats) of <paramref name="weights"/> normalized to sum 1 (non-negative weights, not all zero).</summary>
    public static double Entropy(ReadOnlySpan<double> weights)
    {
        double sum = 0;
        foreach (double w in weights) { sum += w; }
        if (!(sum > 0)) { return 0; }
        double h = 0;
        foreach (double w in weights)
        {
            if (w > 0) { h -= w / sum * Math.Log(w / sum); }
        }
        return h;
    }
}

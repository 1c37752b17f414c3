using System.Numerics.Tensors;
using BitBudget.Numerics;

namespace BitBudget.Rounding;

/// <summary>Quantized rows of a weight matrix: integer levels, their dequantized values and the per-row scales used.</summary>
/// <param name="Levels">Rows × K signed integer levels in [−2^(b−1), 2^(b−1)−1].</param>
/// <param name="Dequantized">Rows × K values level·scale.</param>
/// <param name="Scales">One scale per row.</param>
/// <param name="OutputErrors">Per row, the layer-output error eᵀ H e of the rounding (undamped H; error-feedback rounding only, else null).</param>
internal sealed record RoundedWeights(sbyte[] Levels, float[] Dequantized, float[] Scales, double[]? OutputErrors = null);

/// <summary>Settings of error-feedback rounding.</summary>
internal sealed record GptqOptions
{
    /// <summary>Fraction of the mean of diag(H) added to the diagonal.</summary>
    public double Dampening { get; init; } = 0.01;

    /// <summary>Round columns in descending order of diag(H) ("act-order") instead of their natural order.</summary>
    public bool ActOrder { get; init; } = true;

    /// <summary>Rows rounded together, so each row of the inverse factor is read once per tile (the CPU form of GPTQ's lazy batch).</summary>
    public int RowTile { get; init; } = 16;
}

/// <summary>The damped, permuted input statistics of one (layer, group), factored once and reused for every bit-width.</summary>
/// <param name="K">Columns.</param>
/// <param name="Order">Rounding order: position p rounds column Order[p].</param>
/// <param name="Dead">Columns whose input is always zero (diag(H) = 0); their weights are zeroed.</param>
/// <param name="U">Upper Cholesky factor of the inverse of the damped, permuted H (K × K row-major): H⁻¹ = UᵀU.</param>
/// <param name="Hessian">The undamped H in the original column order (for error measurements).</param>
/// <param name="Damping">The value added to the diagonal of the permuted H before factoring.</param>
internal sealed record GptqFactor(int K, int[] Order, bool[] Dead, double[] U, SquareMatrix Hessian, double Damping);

/// <summary>
/// Error-feedback rounding (GPTQ, Frantar et al. 2022) per output channel with a symmetric signed grid: columns are rounded one
/// at a time and each rounding error is pushed onto the not-yet-rounded columns through the upper Cholesky factor of H⁻¹.
/// </summary>
/// <remarks>
/// Rows are independent given U, so the update runs row tile by row tile: one U row serves <see cref="GptqOptions.RowTile"/>
/// weight rows while both stay in cache, which gives the arithmetic intensity GPTQ's lazy column batches give on a GPU, and the
/// per-row arithmetic is exactly the sequential rule.
/// </remarks>
internal static class Gptq
{
    /// <summary>Dampens, permutes and factors <paramref name="hessian"/> (K × K).</summary>
    public static GptqFactor Factor(SquareMatrix hessian, GptqOptions? options = null, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(hessian);
        options ??= new GptqOptions();
        int k = hessian.Order;
        var dead = new bool[k];
        double meanDiag = 0;
        for (int i = 0; i < k; i++)
        {
            double d = hessian[i, i];
            dead[i] = d <= 0;
            meanDiag += dead[i] ? 1 : d;
        }
        meanDiag /= k;
        int[] order = new int[k];
        for (int i = 0; i < k; i++) { order[i] = i; }
        if (options.ActOrder)
        {
            var keys = new double[k];
            for (int i = 0; i < k; i++) { keys[i] = dead[i] ? 1 : hessian[i, i]; }
            // Descending diag; ties keep the natural order, so the result does not depend on the sort's stability.
            Array.Sort(order, (a, b) =>
            {
                int c = keys[b].CompareTo(keys[a]);
                return c != 0 ? c : a.CompareTo(b);
            });
        }
        // One K × K array from the damped statistics to U (ResNet-18's 4,608-wide layers: 170 MB each; five of them live at once
        // used to put the GPTQ stage over the memory budget). A retry rebuilds it from H: the factorization overwrites it.
        var work = new double[k * k];
        double damp = options.Dampening * meanDiag;
        for (int attempt = 0; ; attempt++)
        {
            for (int i = 0; i < k; i++)
            {
                int oi = order[i];
                for (int j = 0; j < k; j++)
                {
                    int oj = order[j];
                    work[i * k + j] = dead[oi] || dead[oj] ? (oi == oj ? 1 : 0) : hessian[oi, oj];
                }
                work[i * k + i] += damp;
            }
            if (InverseUpperFactorInPlace(work, k, cancel)) { return new GptqFactor(k, order, dead, work, hessian, damp); }
            if (attempt == 20)
            {
                throw new InvalidOperationException("The damped input statistics stay indefinite after 20 dampening increases.");
            }
            // Rounding can leave a near-singular H indefinite; more dampening always ends that.
            damp = damp == 0 ? 1e-8 : damp * 10;
        }
    }

    /// <summary>
    /// U upper triangular with A⁻¹ = UᵀU, via the lower Cholesky factor of A in reversed index order:
    /// J A J = L Lᵀ gives A = R Rᵀ with R = J L J upper, so A⁻¹ = (R⁻¹)ᵀ R⁻¹ and U = R⁻¹ = J L⁻¹ J. Null if A is not positive definite.
    /// </summary>
    /// <remarks>
    /// Hand-written on purpose: MathNet's managed Cholesky + inverse + Cholesky (GPTQ's reference route) gives the same U to
    /// 1e-14 and the same integers on ResNet-20 and SqueezeNet, but is 14–17× slower at K = 576–1152, 34× over ResNet-20's layers and 16× over SqueezeNet's
    /// (`bench numeric kernels`, `bench numeric gptq resnet`; figures in docs/architecture.md, "Numeric core").
    /// </remarks>
    internal static double[]? InverseUpperFactor(double[] a, int k, CancellationToken cancel = default)
    {
        var u = (double[])a.Clone();
        return InverseUpperFactorInPlace(u, k, cancel) ? u : null;
    }

    /// <summary>
    /// <see cref="InverseUpperFactor"/> in <paramref name="a"/> itself (row-major K × K): true and U in <paramref name="a"/>, or false
    /// (A not positive definite) with <paramref name="a"/> overwritten. The same operations in the same order as three separate
    /// arrays (reversed A, L, L⁻¹) would take, so U is bit for bit the same; only one K × K array is live instead of four.
    /// </summary>
    internal static bool InverseUpperFactorInPlace(double[] a, int k, CancellationToken cancel = default)
    {
        Span<double> all = a.AsSpan(0, k * k);
        // Reversing the flat array reverses both indices: entry (i, j) becomes A[k−1−i, k−1−j] = J A J.
        all.Reverse();
        // L: lower Cholesky of J A J in place, row by row with contiguous row dot products; each entry is read once, just before
        // L's entry overwrites it, and the upper triangle (never read) is cleared as each row is finished, as L⁻¹ needs.
        for (int i = 0; i < k; i++)
        {
            // K³/3 operations per loop (ResNet-18's 4,608-wide layers: tens of seconds on a loaded core): SIGTERM must not wait for them.
            if ((i & 63) == 0) { cancel.ThrowIfCancellationRequested(); }
            Span<double> li = all.Slice(i * k, k);
            for (int j = 0; j <= i; j++)
            {
                double s = li[j] - TensorPrimitives.Dot<double>(li[..j], all.Slice(j * k, j));
                if (j == i)
                {
                    if (!(s > 0)) { return false; }
                    li[i] = Math.Sqrt(s);
                }
                else
                {
                    li[j] = s / all[j * k + j];
                }
            }
            li[(i + 1)..].Clear();
        }
        // M = L⁻¹ row by row over L: M[i,:] = (e_i − Σ_{t<i} L[i,t]·M[t,:]) / L[i,i]; rows of M are zero beyond the diagonal.
        // Row i of L is copied out first because M's row i is built where it was.
        var lRow = new double[k];
        for (int i = 0; i < k; i++)
        {
            if ((i & 63) == 0) { cancel.ThrowIfCancellationRequested(); }
            Span<double> mi = all.Slice(i * k, i + 1);
            mi.CopyTo(lRow);
            mi.Clear();
            for (int t = 0; t < i; t++)
            {
                double c = -lRow[t];
                if (c != 0) { TensorPrimitives.MultiplyAdd(all.Slice(t * k, i + 1), c, mi, mi); }
            }
            mi[i] += 1;
            TensorPrimitives.Multiply(mi, 1 / lRow[i], mi);
        }
        // U = J M J: reversed again; M is lower triangular, so U is upper.
        all.Reverse();
        return true;
    }

    /// <summary>
    /// Rounds <paramref name="rows"/> × K weights (row-major) with error feedback at the given per-row scales. Also returns each
    /// row's output error eᵀ H e, which the pass gets almost for free: the final error is e = Uᵀ·err (err_p the scaled rounding
    /// error of step p), so eᵀ H_damped e = ‖err‖², and the undamped error is that minus damping·‖e‖² (dead columns have e = 0).
    /// </summary>
    public static RoundedWeights Quantize(ReadOnlySpan<float> weights, int rows, ReadOnlySpan<float> scales, int bits, GptqFactor factor, GptqOptions? options = null,
        CancellationToken cancel = default)
    {
        options ??= new GptqOptions();
        int k = factor.K;
        var levels = new sbyte[rows * k];
        var dequantized = new float[rows * k];
        var outputErrors = new double[rows];
        QuantizeInto(weights, rows, scales, bits, factor, options, levels, dequantized, outputErrors, new double[Math.Max(1, options.RowTile) * k], cancel);
        return new RoundedWeights(levels, dequantized, scales.ToArray(), outputErrors);
    }

    /// <summary>
    /// <see cref="Quantize"/> into the caller's buffers (<paramref name="work"/>: RowTile × K doubles), so a caller that rounds
    /// many row blocks allocates once. Rows are independent given U, so rounding rows in blocks gives the same values.
    /// </summary>
    static void QuantizeInto(ReadOnlySpan<float> weights, int rows, ReadOnlySpan<float> scales, int bits, GptqFactor factor, GptqOptions options,
        Span<sbyte> levels, Span<float> dequantized, Span<double> outputErrors, double[] work, CancellationToken cancel)
    {
        int k = factor.K;
        int tile = Math.Max(1, options.RowTile);
        var err = new double[tile];
        // ‖err‖² accumulates in outputErrors itself; the last loop turns each row's sum into its undamped output error.
        Span<double> errSquares = outputErrors[..rows];
        errSquares.Clear();
        double[] eSquares = new double[rows];
        double qMin = -(1 << (bits - 1)), qMax = (1 << (bits - 1)) - 1;
        for (int r0 = 0; r0 < rows; r0 += tile)
        {
            cancel.ThrowIfCancellationRequested();
            int count = Math.Min(tile, rows - r0);
            for (int t = 0; t < count; t++)
            {
                ReadOnlySpan<float> w = weights.Slice((r0 + t) * k, k);
                Span<double> row = work.AsSpan(t * k, k);
                for (int p = 0; p < k; p++) { row[p] = factor.Dead[factor.Order[p]] ? 0 : w[factor.Order[p]]; }
            }
            for (int p = 0; p < k; p++)
            {
                double d = factor.U[p * k + p];
                ReadOnlySpan<double> uRow = factor.U.AsSpan(p * k + p + 1, k - p - 1);
                for (int t = 0; t < count; t++)
                {
                    int r = r0 + t;
                    Span<double> row = work.AsSpan(t * k, k);
                    double s = scales[r];
                    double q = s > 0 ? Math.Clamp(Math.Round(row[p] / s), qMin, qMax) : 0;
                    levels[r * k + factor.Order[p]] = (sbyte)q;
                    // Feedback from the float value written, so ‖err‖² is the output error of exactly those weights.
                    float v = (float)(q * s);
                    dequantized[r * k + factor.Order[p]] = v;
                    err[t] = (row[p] - v) / d;
                    errSquares[r] += err[t] * err[t];
                    int column = factor.Order[p];
                    double e = (factor.Dead[column] ? 0 : weights[r * k + column]) - (double)v;   // against the original weight
                    eSquares[r] += e * e;
                }
                for (int t = 0; t < count; t++)
                {
                    if (err[t] == 0) { continue; }
                    Span<double> rest = work.AsSpan(t * k + p + 1, k - p - 1);
                    TensorPrimitives.MultiplyAdd(uRow, -err[t], rest, rest);
                }
            }
        }
        for (int r = 0; r < rows; r++) { outputErrors[r] = Math.Max(0, errSquares[r] - factor.Damping * eSquares[r]); }
    }

    /// <summary>Round to nearest at the given per-row scales (the baseline the error-feedback rounding must beat).</summary>
    public static RoundedWeights RoundToNearest(ReadOnlySpan<float> weights, int rows, int k, ReadOnlySpan<float> scales, int bits)
    {
        var levels = new sbyte[rows * k];
        var dequantized = new float[rows * k];
        float qMin = -(1 << (bits - 1)), qMax = (1 << (bits - 1)) - 1;
        for (int r = 0; r < rows; r++)
        {
            float s = scales[r];
            for (int i = 0; i < k; i++)
            {
                float q = s > 0 ? Math.Clamp(MathF.Round(weights[r * k + i] / s), qMin, qMax) : 0;
                levels[r * k + i] = (sbyte)q;
                dequantized[r * k + i] = q * s;
            }
        }
        return new RoundedWeights(levels, dequantized, scales.ToArray());
    }

    /// <summary>Layer-output error eᵀ H e of one row, e = w − w_q (the output error summed over the calibration columns).</summary>
    public static double OutputError(ReadOnlySpan<float> weights, ReadOnlySpan<float> quantized, SquareMatrix hessian)
    {
        int k = hessian.Order;
        Span<double> e = k <= 1024 ? stackalloc double[k] : new double[k];   // 1024 doubles = 8 KiB of stack
        for (int i = 0; i < k; i++) { e[i] = (double)weights[i] - quantized[i]; }
        double total = 0;
        for (int i = 0; i < k; i++)
        {
            if (e[i] != 0) { total += e[i] * TensorPrimitives.Dot(hessian.Row(i), e); }
        }
        return total;
    }

    /// <summary>
    /// Chooses each row's clip ratio by the error-feedback output error: every candidate ratio of max |w| is rounded with error
    /// feedback (the candidates run as extra rows, a block of rows at a time) and the row keeps the candidate with the least eᵀ H e.
    /// <paramref name="baseScales"/> (one per row, optional) are tried first, so the choice is never worse in eᵀ H e than
    /// rounding at them (ties keep them).
    /// </summary>
    public static RoundedWeights QuantizeSearchingScales(ReadOnlySpan<float> weights, int rows, int bits, GptqFactor factor,
        ReadOnlySpan<float> ratios, GptqOptions? options = null, ReadOnlySpan<float> baseScales = default, long blockBytes = SearchBlockBytes,
        CancellationToken cancel = default)
    {
        options ??= new GptqOptions();
        int k = factor.K;
        int extra = baseScales.IsEmpty ? 0 : 1;
        int candidates = ratios.Length + extra;
        // Every candidate is a row of its own (4 + 4 + 1 bytes per weight: copy, dequantized, level), 41 per row by default:
        // a whole ResNet-18 layer4 conv at once allocated ~0.9 GB per call, garbage the GC let pile up to 14 GB over the
        // 60 roundings of a sensitivity run. Rows are independent given U, so blocks of rows give the same result.
        int block = (int)Math.Clamp(blockBytes / Math.Max(1L, 9L * candidates * k), 1, Math.Max(1, rows));
        var expanded = new float[block * candidates * k];
        var scales = new float[block * candidates];
        var blockLevels = new sbyte[block * candidates * k];
        var blockDequantized = new float[block * candidates * k];
        var errors = new double[block * candidates];
        var work = new double[Math.Max(1, options.RowTile) * k];
        var levels = new sbyte[rows * k];
        var dequantized = new float[rows * k];
        var chosen = new float[rows];
        var chosenErrors = new double[rows];
        float qMax = (1 << (bits - 1)) - 1;
        for (int r0 = 0; r0 < rows; r0 += block)
        {
            int count = Math.Min(block, rows - r0);
            for (int r = 0; r < count; r++)
            {
                ReadOnlySpan<float> w = weights.Slice((r0 + r) * k, k);
                float absMax = k == 0 ? 0 : MathF.Abs(TensorPrimitives.MaxMagnitude(w));
                for (int c = 0; c < candidates; c++)
                {
                    w.CopyTo(expanded.AsSpan((r * candidates + c) * k, k));
                    scales[r * candidates + c] = c < extra ? baseScales[r0 + r] : absMax * ratios[c - extra] / qMax;
                }
            }
            int expandedRows = count * candidates;
            QuantizeInto(expanded.AsSpan(0, expandedRows * k), expandedRows, scales.AsSpan(0, expandedRows), bits, factor, options,
                blockLevels, blockDequantized, errors, work, cancel);
            for (int r = 0; r < count; r++)
            {
                (int best, double bestError) = (0, double.PositiveInfinity);
                for (int c = 0; c < candidates; c++)
                {
                    // A candidate must win by more than arithmetic noise, so near-ties keep the earlier (base) scale and the choice
                    // agrees with a direct eᵀ H e comparison.
                    double error = errors[r * candidates + c];
                    if (error < bestError * (1 - 1e-9)) { (best, bestError) = (c, error); }
                }
                int from = (r * candidates + best) * k;
                blockLevels.AsSpan(from, k).CopyTo(levels.AsSpan((r0 + r) * k, k));
                blockDequantized.AsSpan(from, k).CopyTo(dequantized.AsSpan((r0 + r) * k, k));
                chosen[r0 + r] = scales[r * candidates + best];
                chosenErrors[r0 + r] = bestError;
            }
        }
        return new RoundedWeights(levels, dequantized, chosen, chosenErrors);
    }

    /// <summary>Bytes of candidate rows <see cref="QuantizeSearchingScales"/> rounds at once (16 MiB).</summary>
    internal const long SearchBlockBytes = 16L << 20;
}

/// <summary>Bias correction: moves the mean output error of a quantized layer into its bias.</summary>
internal static class BiasCorrection
{
    /// <summary>
    /// bias'[o] = bias[o] + Σ_k (W − W_q)[o,k]·mean_g(o)[k], where g(o) is the group of output channel o. Returns a new array;
    /// a layer without a bias gets one (<paramref name="bias"/> null means zeros).
    /// </summary>
    /// <param name="weights">Output channels × K, row-major (Conv weights flattened per output channel).</param>
    /// <param name="quantized">The same shape, dequantized.</param>
    /// <param name="bias">The layer's bias, or null for none.</param>
    /// <param name="outputs">Output channels.</param>
    /// <param name="k">Inputs per output channel (K).</param>
    /// <param name="means">Mean input column of each group (K values each).</param>
    public static float[] Apply(ReadOnlySpan<float> weights, ReadOnlySpan<float> quantized, float[]? bias, int outputs, int k, IReadOnlyList<double[]> means)
    {
        var result = new float[outputs];
        bias?.AsSpan(0, outputs).CopyTo(result);
        int perGroup = outputs / means.Count;
        for (int o = 0; o < outputs; o++)
        {
            double[] mean = means[o / perGroup];
            double delta = 0;
            for (int i = 0; i < k; i++) { delta += ((double)weights[o * k + i] - quantized[o * k + i]) * mean[i]; }
            result[o] = (float)(result[o] + delta);
        }
        return result;
    }
}

using System.Numerics.Tensors;

namespace BitBudget.Quantization;

/// <summary>How an activation range is chosen from the observed values.</summary>
public enum ActivationCalibration
{
    /// <summary>The observed minimum and maximum.</summary>
    MinMax,
    /// <summary>The lower and upper percentiles (default 99.99 %) of the observed values.</summary>
    Percentile,
    /// <summary>The shrink of [min, max] (100 candidates) with the smallest squared quantization error over the histogram.</summary>
    Mse,
}

/// <summary>Asymmetric per-tensor quantization of an activation: q = clamp(round(x / Scale) + ZeroPoint, 0, 2^Bits − 1).</summary>
/// <param name="Scale">Step size (positive).</param>
/// <param name="ZeroPoint">Integer that represents 0.0, in [0, 2^Bits − 1].</param>
/// <param name="Bits">Activation bits 4–16.</param>
internal sealed record ActivationParams(float Scale, int ZeroPoint, int Bits)
{
    /// <summary>Largest integer of the grid.</summary>
    public int QMax => (1 << Bits) - 1;

    /// <summary>Smallest float the grid represents.</summary>
    public float RangeMin => (0 - ZeroPoint) * Scale;

    /// <summary>Largest float the grid represents.</summary>
    public float RangeMax => (QMax - ZeroPoint) * Scale;
}

/// <summary>
/// Streams the values of one activation tensor over calibration batches and derives its quantization parameters.
/// Memory is constant: the exact running min/max plus a histogram over [-R, R] whose range doubles (merging bin pairs
/// exactly) when a batch exceeds it.
/// </summary>
internal sealed class ActivationObserver
{
    /// <summary>Histogram bins; a multiple of 4 so that doubling the range merges pairs exactly.</summary>
    public const int Bins = 8192;

    readonly long[] _histogram = new long[Bins];
    float _range;   // histogram covers [-_range, _range]

    /// <summary>Smallest value seen (+∞ before any).</summary>
    public float Min { get; private set; } = float.PositiveInfinity;

    /// <summary>Largest value seen (−∞ before any).</summary>
    public float Max { get; private set; } = float.NegativeInfinity;

    /// <summary>Number of values seen.</summary>
    public long Count { get; private set; }

    /// <summary>Adds one batch of values; non-finite values are an error.</summary>
    public void Observe(ReadOnlySpan<float> values)
    {
        if (values.Length == 0) { return; }
        float min = TensorPrimitives.Min(values), max = TensorPrimitives.Max(values);
        if (!float.IsFinite(min) || !float.IsFinite(max))
        {
            throw Errors.InvalidInput("An activation contains NaN or infinity; check the model and the calibration images.");
        }
        Min = MathF.Min(Min, min);
        Max = MathF.Max(Max, max);
        Count += values.Length;
        float absMax = MathF.Max(-min, max);
        if (_range == 0 && absMax > 0) { _range = absMax; }   // zeros seen so far sit in bin Bins/2, the bin of 0 at any range
        while (absMax > _range) { Grow(); }
        if (_range == 0)
        {
            _histogram[Bins / 2] += values.Length;   // all zeros so far
            return;
        }
        float toBin = Bins / (2 * _range);
        foreach (float v in values)
        {
            int bin = (int)((v + _range) * toBin);
            _histogram[Math.Clamp(bin, 0, Bins - 1)]++;
        }
    }

    /// <summary>Doubles the histogram range; old bins 2k, 2k+1 land in new bin Bins/4 + k.</summary>
    void Grow()
    {
        var merged = new long[Bins];
        for (int k = 0; k < Bins / 2; k++) { merged[Bins / 4 + k] = _histogram[2 * k] + _histogram[2 * k + 1]; }
        merged.CopyTo(_histogram, 0);
        _range *= 2;
    }

    /// <summary>Quantization parameters for <paramref name="bits"/> (4–16) chosen by <paramref name="method"/>.</summary>
    /// <param name="bits">Activation bits.</param>
    /// <param name="method">Range method.</param>
    /// <param name="percentile">Upper percentile for <see cref="ActivationCalibration.Percentile"/>, e.g. 99.99; the lower one is 100 − it.</param>
    public ActivationParams Compute(int bits, ActivationCalibration method = ActivationCalibration.MinMax, double percentile = 99.99)
    {
        if (bits is < 4 or > 16)
        {
            throw Errors.InvalidInput($"Activation bits {bits} are not supported; expected 4–16.");
        }
        if (Count == 0)
        {
            throw Errors.InvalidInput("No activation values were observed; the calibration set is empty.");
        }
        (float lo, float hi) = method switch
        {
            ActivationCalibration.MinMax => (Min, Max),
            ActivationCalibration.Percentile => (Quantile((100 - percentile) / 100), Quantile(percentile / 100)),
            _ => MseRange(bits),
        };
        return FromRange(lo, hi, bits);
    }

    /// <summary>Parameters covering [lo, hi] widened to include 0 (so that 0 is exact, as ONNX requires of padding).</summary>
    public static ActivationParams FromRange(float lo, float hi, int bits)
    {
        lo = MathF.Min(lo, 0);
        hi = MathF.Max(hi, 0);
        int qmax = (1 << bits) - 1;
        if (hi - lo <= 0) { return new ActivationParams(1f, 0, bits); }
        float scale = (hi - lo) / qmax;
        int zeroPoint = Math.Clamp((int)MathF.Round(-lo / scale, MidpointRounding.ToEven), 0, qmax);
        return new ActivationParams(scale, zeroPoint, bits);
    }

    float BinCenter(int bin) => -_range + (bin + 0.5f) * (2 * _range / Bins);

    float Quantile(double q)
    {
        if (_range == 0) { return 0; }
        long target = (long)Math.Ceiling(Math.Clamp(q, 0, 1) * Count);
        long seen = 0;
        for (int b = 0; b < Bins; b++)
        {
            seen += _histogram[b];
            if (seen >= target && seen > 0) { return Math.Clamp(BinCenter(b), Min, Max); }
        }
        return Max;
    }

    (float Lo, float Hi) MseRange(int bits)
    {
        if (_range == 0) { return (0, 0); }
        double bestError = double.PositiveInfinity;
        (float, float) best = (Min, Max);
        for (int i = 100; i >= 1; i--)
        {
            float r = i / 100f;
            ActivationParams p = FromRange(Min * r, Max * r, bits);
            double error = 0;
            for (int b = 0; b < Bins; b++)
            {
                long n = _histogram[b];
                if (n == 0) { continue; }
                float x = BinCenter(b);
                float q = Math.Clamp(MathF.Round(x / p.Scale, MidpointRounding.ToEven) + p.ZeroPoint, 0, p.QMax);
                double d = x - (q - p.ZeroPoint) * p.Scale;
                error += n * d * d;
            }
            if (error < bestError) { bestError = error; best = (Min * r, Max * r); }
        }
        return best;
    }
}

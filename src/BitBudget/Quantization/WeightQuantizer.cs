using System.Buffers;
using System.Numerics.Tensors;

namespace BitBudget.Quantization;

/// <summary>How a weight tensor splits into output channels: element (o, c, i) sits at (o·Channels + c)·Inner + i.</summary>
internal readonly record struct WeightLayout(int Outer, int Channels, int Inner)
{
    public int ChannelSize => Outer * Inner;

    public int Count => Outer * Channels * Inner;

    /// <summary>The layout of a tensor of <paramref name="shape"/> whose output channels run along <paramref name="axis"/>.</summary>
    public static WeightLayout Of(IReadOnlyList<long> shape, int axis)
    {
        long outer = 1, inner = 1;
        for (int d = 0; d < axis; d++) { outer *= shape[d]; }
        for (int d = axis + 1; d < shape.Count; d++) { inner *= shape[d]; }
        return new WeightLayout(checked((int)outer), checked((int)shape[axis]), checked((int)inner));
    }

    /// <summary>One channel per tensor (per-tensor quantization).</summary>
    public WeightLayout PerTensor => new(1, 1, Count);
}

/// <summary>
/// Uniform symmetric signed weight quantization on the grid [-2^(b-1), 2^(b-1)-1]: q = clamp(round_half_even(w / s)), ŵ = q·s.
/// The no-clipping scale is max|w| / (2^(b-1) - 1); MSE clipping multiplies it by the ratio r ∈ {0.01, …, 1.00} with the
/// smallest squared error (ties keep the larger r), so it can never be worse than min/max.
/// </summary>
internal static class WeightQuantizer
{
    /// <summary>Clipping ratios tried per channel: r = i / 100 for i = 100 … 1.</summary>
    public const int ClipCandidates = 100;

    public static int QMin(int bits) => -(1 << (bits - 1));

    public static int QMax(int bits) => (1 << (bits - 1)) - 1;

    /// <summary>One scale per channel (or a single scale when <paramref name="perChannel"/> is false).</summary>
    public static float[] ComputeScales(ReadOnlySpan<float> weights, WeightLayout layout, int bits, bool perChannel, WeightRange range)
    {
        CheckBits(bits);
        if (weights.Length != layout.Count) { throw new ArgumentException($"Expected {layout.Count} weights, got {weights.Length}.", nameof(weights)); }
        if (!perChannel) { layout = layout.PerTensor; }
        var scales = new float[layout.Channels];
        float[] channel = ArrayPool<float>.Shared.Rent(layout.ChannelSize);
        float[] scratch = ArrayPool<float>.Shared.Rent(layout.ChannelSize);
        try
        {
            for (int c = 0; c < layout.Channels; c++)
            {
                ReadOnlySpan<float> x = Gather(weights, layout, c, channel);
                scales[c] = ChannelScale(x, bits, range, scratch.AsSpan(0, x.Length));
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(channel);
            ArrayPool<float>.Shared.Return(scratch);
        }
        return scales;
    }

    /// <summary>MSE-clipped scales of a rows × K matrix (row-major), one per row: the same search as <see cref="ComputeScales"/>.</summary>
    public static float[] RowScales(ReadOnlySpan<float> rows, int count, int k, int bits) =>
        ComputeScales(rows, new WeightLayout(1, count, k), bits, perChannel: true, WeightRange.Mse);

    /// <summary>Integers q = clamp(round(w / s)) for the given scales (length 1 means per-tensor).</summary>
    public static void Quantize(ReadOnlySpan<float> weights, WeightLayout layout, ReadOnlySpan<float> scales, int bits, Span<sbyte> result)
    {
        CheckBits(bits);
        if (scales.Length == 1) { layout = layout.PerTensor; }
        int qmin = QMin(bits), qmax = QMax(bits);
        float[] channel = ArrayPool<float>.Shared.Rent(layout.ChannelSize);
        float[] scratch = ArrayPool<float>.Shared.Rent(layout.ChannelSize);
        try
        {
            for (int c = 0; c < layout.Channels; c++)
            {
                ReadOnlySpan<float> x = Gather(weights, layout, c, channel);
                Span<float> q = scratch.AsSpan(0, x.Length);
                RoundToGrid(x, scales[c], qmin, qmax, q);
                ScatterInts(q, layout, c, result);
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(channel);
            ArrayPool<float>.Shared.Return(scratch);
        }
    }

    /// <summary>ŵ = q·s, exactly what ONNX DequantizeLinear computes in float32.</summary>
    public static void Dequantize(ReadOnlySpan<sbyte> values, WeightLayout layout, ReadOnlySpan<float> scales, Span<float> result)
    {
        if (scales.Length == 1) { layout = layout.PerTensor; }
        int channelStride = layout.Inner;
        for (int o = 0; o < layout.Outer; o++)
        {
            for (int c = 0; c < layout.Channels; c++)
            {
                float s = scales[c];
                int start = (o * layout.Channels + c) * channelStride;
                for (int i = 0; i < channelStride; i++) { result[start + i] = values[start + i] * s; }
            }
        }
    }

    /// <summary>Quantize then dequantize into <paramref name="result"/>.</summary>
    public static void FakeQuantize(ReadOnlySpan<float> weights, WeightLayout layout, ReadOnlySpan<float> scales, int bits, Span<float> result)
    {
        sbyte[] q = ArrayPool<sbyte>.Shared.Rent(weights.Length);
        try
        {
            Quantize(weights, layout, scales, bits, q.AsSpan(0, weights.Length));
            Dequantize(q.AsSpan(0, weights.Length), layout, scales, result);
        }
        finally
        {
            ArrayPool<sbyte>.Shared.Return(q);
        }
    }

    /// <summary>Sum of squared differences between two tensors, in double.</summary>
    public static double SquaredError(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double sum = 0;
        for (int i = 0; i < a.Length; i++) { double d = a[i] - b[i]; sum += d * d; }
        return sum;
    }

    static float ChannelScale(ReadOnlySpan<float> x, int bits, WeightRange range, Span<float> scratch)
    {
        float max = x.Length == 0 ? 0 : MathF.Abs(TensorPrimitives.MaxMagnitude(x));
        if (max == 0 || !float.IsFinite(max)) { return 1f; }   // an all-zero channel: any positive scale gives q = 0 exactly
        int qmin = QMin(bits), qmax = QMax(bits);
        float full = max / qmax;
        if (range == WeightRange.MinMax) { return full; }
        float best = full;
        double bestError = ChannelError(x, full, qmin, qmax, scratch);
        for (int i = ClipCandidates - 1; i >= 1; i--)
        {
            float s = full * (i / (float)ClipCandidates);
            double error = ChannelError(x, s, qmin, qmax, scratch);
            if (error < bestError) { bestError = error; best = s; }
        }
        return best;
    }

    /// <summary>Squared error of one channel at scale <paramref name="s"/>, with the same float arithmetic as Quantize + Dequantize.</summary>
    static double ChannelError(ReadOnlySpan<float> x, float s, int qmin, int qmax, Span<float> scratch)
    {
        RoundToGrid(x, s, qmin, qmax, scratch);
        TensorPrimitives.Multiply(scratch, s, scratch);
        TensorPrimitives.Subtract(x, scratch, scratch);
        return TensorPrimitives.SumOfSquares(scratch);
    }

    static void RoundToGrid(ReadOnlySpan<float> x, float s, int qmin, int qmax, Span<float> q)
    {
        TensorPrimitives.Divide(x, s, q);
        TensorPrimitives.Round(q, q);   // ties to even, like QuantizeLinear
        TensorPrimitives.Max(q, qmin, q);
        TensorPrimitives.Min(q, qmax, q);
    }

    static ReadOnlySpan<float> Gather(ReadOnlySpan<float> weights, WeightLayout layout, int c, float[] buffer)
    {
        if (layout.Outer == 1) { return weights.Slice(c * layout.Inner, layout.Inner); }
        Span<float> dst = buffer.AsSpan(0, layout.ChannelSize);
        for (int o = 0; o < layout.Outer; o++)
        {
            weights.Slice((o * layout.Channels + c) * layout.Inner, layout.Inner).CopyTo(dst.Slice(o * layout.Inner, layout.Inner));
        }
        return dst;
    }

    static void ScatterInts(ReadOnlySpan<float> q, WeightLayout layout, int c, Span<sbyte> result)
    {
        for (int o = 0; o < layout.Outer; o++)
        {
            int src = o * layout.Inner, dst = (o * layout.Channels + c) * layout.Inner;
            for (int i = 0; i < layout.Inner; i++) { result[dst + i] = (sbyte)q[src + i]; }
        }
    }

    static void CheckBits(int bits) => ArgumentOutOfRangeException.ThrowIfNotEqual(bits is >= 2 and <= 8, true, nameof(bits));
}

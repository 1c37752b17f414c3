using BitBudget.Graph;
using BitBudget.Rounding;

namespace BitBudget.Quantization;

/// <summary>One layer quantized at one bit-width, in the weight's own layout.</summary>
/// <param name="Levels">Integer levels, same layout as the ONNX weight.</param>
/// <param name="Dequantized">Levels × scale, same layout as the ONNX weight (what a fake-quant model uses).</param>
/// <param name="Scales">One scale per output channel.</param>
/// <param name="Bias">The (corrected) bias, one per output channel; null when the layer has no bias and no correction was asked.</param>
internal sealed record RoundedLayer(sbyte[] Levels, float[] Dequantized, float[] Scales, float[]? Bias);

/// <summary>Applies a rounding method to one layer: weight layout ↔ rows × K per group, scales, rounding, bias correction.</summary>
internal static class LayerRounder
{
    /// <summary>The weight of <paramref name="layer"/> as output channels × K, row-major (Conv weights are already in that order).</summary>
    public static float[] WeightRows(OnnxModel prepared, LayerInfo layer)
    {
        float[] w = TensorData.ReadFloats(prepared.FindInitializer(layer.WeightName)
            ?? throw new InvalidOperationException($"Initializer '{layer.WeightName}' is missing."));
        return layer.ChannelAxis == 0 ? w : Transpose(w, (int)layer.WeightShape[0], (int)layer.WeightShape[1]);
    }

    /// <summary>Transposes a rows × cols matrix (row-major).</summary>
    internal static T[] Transpose<T>(T[] m, int rows, int cols)
    {
        var t = new T[m.Length];
        for (int r = 0; r < rows; r++)
        {
            for (int c = 0; c < cols; c++) { t[c * rows + r] = m[r * cols + c]; }
        }
        return t;
    }

    /// <summary>Clip ratios of the output-error scale search: 1.00, 0.98, …, 0.22 of max |w| (plus the given MSE scale, tried first).</summary>
    internal static readonly float[] SearchRatios = [.. Enumerable.Range(0, 40).Select(i => 1f - 0.02f * i)];

    /// <summary>Quantizes <paramref name="layer"/> of <paramref name="prepared"/> at <paramref name="bits"/> (reads the weight and bias from the model).</summary>
    public static RoundedLayer Round(OnnxModel prepared, LayerInfo layer, int bits, RoundingMethod method, bool biasCorrection,
        LayerStatistics? statistics, float[]? scales = null, GptqOptions? options = null, IReadOnlyList<GptqFactor>? factors = null, bool searchScales = false,
        CancellationToken cancel = default)
    {
        float[] weight = TensorData.ReadFloats(prepared.FindInitializer(layer.WeightName)
            ?? throw new InvalidOperationException($"Initializer '{layer.WeightName}' is missing."));
        float[]? bias = layer.BiasName is null ? null : TensorData.ReadFloats(prepared.FindInitializer(layer.BiasName)!);
        return Round(layer, weight, bias, bits, method, biasCorrection, statistics, scales, options, factors, searchScales, cancel);
    }

    /// <summary>
    /// Quantizes <paramref name="layer"/> (float <paramref name="weight"/> in its ONNX layout, <paramref name="bias"/> or null) at
    /// <paramref name="bits"/>. <paramref name="scales"/> (one per output channel, or one for the tensor) default to the
    /// quantizer's MSE search (<see cref="WeightQuantizer.RowScales"/>); with <paramref name="searchScales"/> GPTQ chooses each
    /// row's scale by output error instead (<see cref="Gptq.QuantizeSearchingScales"/>). <paramref name="statistics"/> are
    /// needed for GPTQ and bias correction.
    /// </summary>
    public static RoundedLayer Round(LayerInfo layer, float[] weight, float[]? bias, int bits, RoundingMethod method, bool biasCorrection,
        LayerStatistics? statistics, float[]? scales = null, GptqOptions? options = null, IReadOnlyList<GptqFactor>? factors = null, bool searchScales = false,
        CancellationToken cancel = default)
    {
        int outputs = (int)layer.OutputChannels;
        float[] rows = layer.ChannelAxis == 0 ? weight : Transpose(weight, (int)layer.WeightShape[0], (int)layer.WeightShape[1]);
        int k = rows.Length / outputs;
        scales ??= WeightQuantizer.RowScales(rows, outputs, k, bits);
        if (scales.Length == 1 && outputs > 1) { scales = Enumerable.Repeat(scales[0], outputs).ToArray(); }
        searchScales &= method == RoundingMethod.Gptq;
        var levels = new sbyte[rows.Length];
        var dequantized = new float[rows.Length];
        var used = searchScales ? new float[outputs] : scales;
        int groups = layer.Groups, perGroup = outputs / groups;
        for (int g = 0; g < groups; g++)
        {
            ReadOnlySpan<float> w = rows.AsSpan(g * perGroup * k, perGroup * k);
            ReadOnlySpan<float> s = scales.AsSpan(g * perGroup, perGroup);
            RoundedWeights r;
            if (method == RoundingMethod.Rtn) { r = Gptq.RoundToNearest(w, perGroup, k, s, bits); }
            else
            {
                GptqFactor factor = factors?[g] ?? Gptq.Factor(Require(statistics, layer).Gram(g), options, cancel);
                r = searchScales ? Gptq.QuantizeSearchingScales(w, perGroup, bits, factor, SearchRatios, options, s, cancel: cancel) : Gptq.Quantize(w, perGroup, s, bits, factor, options, cancel);
            }
            r.Levels.CopyTo(levels, g * perGroup * k);
            r.Dequantized.CopyTo(dequantized, g * perGroup * k);
            if (searchScales) { r.Scales.CopyTo(used, g * perGroup); }
        }
        if (biasCorrection)
        {
            LayerStatistics st = Require(statistics, layer);
            var means = new double[groups][];
            for (int g = 0; g < groups; g++) { means[g] = st.Mean(g); }
            bias = BiasCorrection.Apply(rows, dequantized, bias, outputs, k, means);
        }
        if (layer.ChannelAxis != 0)
        {
            levels = Transpose(levels, outputs, k);
            dequantized = Transpose(dequantized, outputs, k);
        }
        return new RoundedLayer(levels, dequantized, used, bias);
    }

    /// <summary>The GPTQ factor of every group of a layer, computed once and shared by every bit-width.</summary>
    public static GptqFactor[] Factors(LayerStatistics statistics, GptqOptions? options = null, CancellationToken cancel = default)
    {
        var factors = new GptqFactor[statistics.Groups];
        for (int g = 0; g < statistics.Groups; g++) { factors[g] = Gptq.Factor(statistics.Gram(g), options, cancel); }
        return factors;
    }

    static LayerStatistics Require(LayerStatistics? statistics, LayerInfo layer) =>
        statistics ?? throw new ArgumentException($"Layer '{layer.Name}' needs input statistics for this rounding.", nameof(statistics));
}

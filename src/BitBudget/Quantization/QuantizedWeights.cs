using System.Collections.Concurrent;
using BitBudget.Graph;

namespace BitBudget.Quantization;

/// <summary>The quantized weight of one layer at one bit-width: integers, scales and the dequantized floats.</summary>
/// <param name="LayerIndex">Index of the layer.</param>
/// <param name="Bits">Weight bits 2–8.</param>
/// <param name="Shape">Weight shape.</param>
/// <param name="Axis">Axis the scales run along, or -1 for a single per-tensor scale.</param>
/// <param name="Scales">One scale per output channel (or one).</param>
/// <param name="Values">Integers in [-2^(b-1), 2^(b-1)-1], in the weight's element order.</param>
/// <param name="Dequantized">Values·scale in float32, exactly what DequantizeLinear produces.</param>
/// <param name="SquaredError">Σ (w − ŵ)² against the float weight.</param>
public sealed record QuantizedTensor(int LayerIndex, int Bits, IReadOnlyList<long> Shape, int Axis,
    ReadOnlyMemory<float> Scales, ReadOnlyMemory<sbyte> Values, ReadOnlyMemory<float> Dequantized, double SquaredError)
{
    /// <summary>Builds the tensor from integers and scales produced elsewhere (e.g. GPTQ rounding), checking their range.</summary>
    public static QuantizedTensor FromIntegers(LayerInfo layer, int bits, float[] scales, sbyte[] values, ReadOnlySpan<float> original)
    {
        ArgumentOutOfRangeException.ThrowIfNotEqual(values.Length, checked((int)layer.WeightCount), nameof(values));
        int qmin = WeightQuantizer.QMin(bits), qmax = WeightQuantizer.QMax(bits);
        foreach (sbyte v in values)
        {
            if (v < qmin || v > qmax) { throw new ArgumentOutOfRangeException(nameof(values), $"Value {v} is outside the {bits}-bit grid [{qmin}, {qmax}]."); }
        }
        bool perChannel = scales.Length != 1 || layer.OutputChannels == 1;
        if (perChannel) { ArgumentOutOfRangeException.ThrowIfNotEqual(scales.Length, checked((int)layer.OutputChannels), nameof(scales)); }
        WeightLayout layout = WeightLayout.Of(layer.WeightShape, layer.ChannelAxis);
        var dequantized = new float[values.Length];
        WeightQuantizer.Dequantize(values, layout, scales, dequantized);
        double error = original.Length == 0 ? double.NaN : WeightQuantizer.SquaredError(original, dequantized);
        return new QuantizedTensor(layer.Index, bits, layer.WeightShape, scales.Length == 1 ? -1 : layer.ChannelAxis, scales, values, dequantized, error);
    }
}

/// <summary>
/// Cache of quantized weights keyed by (layer, bits, granularity, range): each is computed once, on first use, then shared by
/// every simulated configuration and by the exporter. Thread-safe.
/// </summary>
public sealed class QuantizedWeights
{
    readonly IReadOnlyList<LayerInfo> _layers;
    readonly float[][] _originals;
    readonly ConcurrentDictionary<(int Layer, int Bits, bool PerChannel, WeightRange Range), Lazy<QuantizedTensor>> _cache = new();
    readonly ConcurrentDictionary<(int Layer, int Bits), QuantizedTensor> _overrides = new();

    /// <summary>Reads the float weights of <paramref name="layers"/> from the prepared model.</summary>
    public QuantizedWeights(OnnxModel prepared, IReadOnlyList<LayerInfo> layers)
    {
        ArgumentNullException.ThrowIfNull(prepared);
        _layers = layers;
        var initializers = prepared.InitializerMap();
        _originals = new float[layers.Count][];
        for (int i = 0; i < layers.Count; i++)
        {
            if (!initializers.TryGetValue(layers[i].WeightName, out var tensor))
            {
                throw new BitBudgetException(ErrorKind.InvalidInput, $"Layer '{layers[i].Name}' weight '{layers[i].WeightName}' is not an initializer of model '{prepared.Source}'.");
            }
            _originals[i] = TensorData.ReadFloats(tensor);
        }
    }

    /// <summary>The layers this cache serves.</summary>
    public IReadOnlyList<LayerInfo> Layers => _layers;

    /// <summary>Entries computed so far.</summary>
    public int Count => _cache.Count(e => e.Value.IsValueCreated);

    /// <summary>The float weight of a layer.</summary>
    public ReadOnlyMemory<float> Original(int layerIndex) => _originals[layerIndex];

    /// <summary>The quantized weight of a layer as the resolved config asks for it.</summary>
    public QuantizedTensor Get(LayerBits spec) => Get(spec.LayerIndex, spec.WeightBits, spec.PerChannel, spec.Range);

    /// <summary>The quantized weight of layer <paramref name="layerIndex"/> at <paramref name="bits"/>, computed on first use.</summary>
    /// <remarks>A tensor given to <see cref="Set"/> for this (layer, bits) wins over the round-to-nearest quantizer.</remarks>
    public QuantizedTensor Get(int layerIndex, int bits, bool perChannel = true, WeightRange range = WeightRange.Mse)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(layerIndex);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(layerIndex, _layers.Count);
        if (_overrides.TryGetValue((layerIndex, bits), out QuantizedTensor? given)) { return given; }
        return _cache.GetOrAdd((layerIndex, bits, perChannel, range),
            key => new Lazy<QuantizedTensor>(() => Compute(key.Layer, key.Bits, key.PerChannel, key.Range))).Value;
    }

    /// <summary>Replaces the (layer, bits) entry with a tensor quantized elsewhere (e.g. GPTQ).</summary>
    public void Set(QuantizedTensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        _overrides[(tensor.LayerIndex, tensor.Bits)] = tensor;
    }

    QuantizedTensor Compute(int index, int bits, bool perChannel, WeightRange range)
    {
        LayerInfo layer = _layers[index];
        float[] w = _originals[index];
        WeightLayout layout = WeightLayout.Of(layer.WeightShape, layer.ChannelAxis);
        float[] scales = WeightQuantizer.ComputeScales(w, layout, bits, perChannel, range);
        var values = new sbyte[w.Length];
        WeightQuantizer.Quantize(w, layout, scales, bits, values);
        var dequantized = new float[w.Length];
        WeightQuantizer.Dequantize(values, layout, scales, dequantized);
        return new QuantizedTensor(index, bits, layer.WeightShape, perChannel ? layer.ChannelAxis : -1, scales, values, dequantized,
            WeightQuantizer.SquaredError(w, dequantized));
    }
}

using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using BitBudget.Data;
using BitBudget.Graph;
using BitBudget.Internals;
using BitBudget.Rounding;
using BitBudget.Runtime;

namespace BitBudget.Quantization;

/// <summary>The quantized weight of one layer at one bit-width: integers, scales, the dequantized floats and the (corrected) bias.</summary>
/// <param name="LayerIndex">Index of the layer.</param>
/// <param name="Bits">Weight bits 2–8.</param>
/// <param name="Shape">Weight shape.</param>
/// <param name="Axis">Axis the scales run along, or -1 for a single per-tensor scale.</param>
/// <param name="Scales">One scale per output channel (or one).</param>
/// <param name="Values">Integers in [-2^(b-1), 2^(b-1)-1], in the weight's element order.</param>
/// <param name="Dequantized">Values·scale in float32, exactly what DequantizeLinear produces.</param>
/// <param name="SquaredError">Σ (w − ŵ)² against the float weight.</param>
/// <param name="Bias">
/// The bias to use with this weight (one per output channel) when bias correction changed it, or null for the layer's original
/// bias. A layer without a bias gets one; simulation and export both add it (Conv: third input, Gemm: C, MatMul: an Add).
/// </param>
internal sealed record QuantizedTensor(int LayerIndex, int Bits, IReadOnlyList<long> Shape, int Axis,
    ReadOnlyMemory<float> Scales, ReadOnlyMemory<sbyte> Values, ReadOnlyMemory<float> Dequantized, double SquaredError, float[]? Bias = null)
{
    /// <summary>Builds the tensor from integers and scales produced elsewhere (e.g. GPTQ rounding), checking their range.</summary>
    public static QuantizedTensor FromIntegers(LayerInfo layer, int bits, float[] scales, sbyte[] values, ReadOnlySpan<float> original, float[]? bias = null)
    {
        ArgumentNullException.ThrowIfNull(layer);
        ArgumentNullException.ThrowIfNull(scales);
        ArgumentNullException.ThrowIfNull(values);
        ArgumentOutOfRangeException.ThrowIfNotEqual(values.Length, checked((int)layer.WeightCount), nameof(values));
        int qmin = WeightQuantizer.QMin(bits), qmax = WeightQuantizer.QMax(bits);
        foreach (sbyte v in values)
        {
            if (v < qmin || v > qmax) { throw new ArgumentOutOfRangeException(nameof(values), $"Value {v} is outside the {bits}-bit grid [{qmin}, {qmax}]."); }
        }
        bool perChannel = scales.Length != 1 || layer.OutputChannels == 1;
        if (perChannel) { ArgumentOutOfRangeException.ThrowIfNotEqual(scales.Length, checked((int)layer.OutputChannels), nameof(scales)); }
        if (bias is not null) { ArgumentOutOfRangeException.ThrowIfNotEqual(bias.Length, checked((int)layer.OutputChannels), nameof(bias)); }
        WeightLayout layout = WeightLayout.Of(layer.WeightShape, layer.ChannelAxis);
        var dequantized = new float[values.Length];
        WeightQuantizer.Dequantize(values, layout, scales, dequantized);
        double error = original.Length == 0 ? double.NaN : WeightQuantizer.SquaredError(original, dequantized);
        return new QuantizedTensor(layer.Index, bits, layer.WeightShape, scales.Length == 1 ? -1 : layer.ChannelAxis, scales, values, dequantized, error, bias);
    }
}

/// <summary>
/// The one source of quantized weights: each (layer, bits, granularity, range) is computed once, on first use, with the
/// configured <see cref="WeightRounding"/>, then shared by every simulated configuration, every sensitivity measurement and the
/// exporter. Thread-safe.
/// </summary>
internal sealed class QuantizedWeights
{
    readonly IReadOnlyList<LayerInfo> _layers;
    readonly float[][] _originals;
    readonly float[]?[] _biases;
    readonly IReadOnlyList<LayerStatistics>? _statistics;
    readonly GptqFactorCache? _factors;
    readonly long _memoryBudget;   // the process's budget: GPTQ's rounding buffers must not fill it with garbage (0: no check)
    readonly string _fingerprint;
    readonly ConcurrentDictionary<(int Layer, int Bits, bool PerChannel, WeightRange Range), Lazy<QuantizedTensor>> _cache = new();
    readonly ConcurrentDictionary<(int Layer, int Bits), QuantizedTensor> _overrides = new();
    readonly OnnxModel _prepared;

    /// <summary>Round-to-nearest weights of <paramref name="layers"/> (<see cref="WeightRounding.RoundToNearest"/>): no calibration data.</summary>
    public QuantizedWeights(OnnxModel prepared, IReadOnlyList<LayerInfo> layers)
        : this(prepared, layers, WeightRounding.RoundToNearest, null, "")
    {
    }

    QuantizedWeights(OnnxModel prepared, IReadOnlyList<LayerInfo> layers, WeightRounding rounding, IReadOnlyList<LayerStatistics>? statistics, string calibration,
        long memoryBudget = 0)
    {
        ArgumentNullException.ThrowIfNull(prepared);
        ArgumentNullException.ThrowIfNull(layers);
        _memoryBudget = memoryBudget;
        _prepared = prepared;
        _layers = layers;
        Rounding = rounding;
        Calibration = calibration;
        _statistics = statistics;
        var initializers = prepared.InitializerMap();
        _originals = new float[layers.Count][];
        _biases = new float[layers.Count][];
        for (int i = 0; i < layers.Count; i++)
        {
            if (!initializers.TryGetValue(layers[i].WeightName, out var tensor))
            {
                throw Errors.InvalidInput($"Layer '{layers[i].Name}' weight '{layers[i].WeightName}' is not an initializer of model '{prepared.Source}'.");
            }
            _originals[i] = TensorData.ReadFloats(tensor);
            RequireFinite(prepared, layers[i], layers[i].WeightName, _originals[i]);
            if (layers[i].BiasName is string b && initializers.TryGetValue(b, out var bias))
            {
                _biases[i] = TensorData.ReadFloats(bias);
                RequireFinite(prepared, layers[i], b, _biases[i]!);
            }
        }
        if (statistics is not null && rounding.Method == RoundingMethod.Gptq)
        {
            GptqOptions options = rounding.GptqOptions;
            // GPTQ's factors (K² doubles per layer) are kept for at most an eighth of the budget: see GptqFactorCache.
            _factors = new GptqFactorCache(statistics, options, memoryBudget > 0 ? memoryBudget / 8 : long.MaxValue, memoryBudget);
        }
        _fingerprint = Hashing.Sha256Hex(string.Join('\n', "bitbudget-weights-v1", prepared.ComputeHash(), string.Join(',', layers.Select(l => l.Name)),
            rounding.Fingerprint(), calibration))[..32];
    }

    /// <summary>
    /// Weights rounded with <paramref name="rounding"/> (default <see cref="WeightRounding.Default"/>). GPTQ and bias correction
    /// first run the statistics pass once, over the first <see cref="WeightRounding.CalibrationImages"/> images of
    /// <paramref name="calibration"/> (full-precision inputs of every layer: H = Σ x xᵀ and the mean input); each tensor is then
    /// rounded lazily on its first <see cref="Get(int, int, bool, WeightRange, CancellationToken)"/>.
    /// </summary>
    /// <param name="prepared">The prepared model the layers were listed from.</param>
    /// <param name="layers">Its quantizable layers.</param>
    /// <param name="rounding">Rounding settings.</param>
    /// <param name="calibration">Calibration images (needed when <see cref="WeightRounding.NeedsCalibration"/>); keep them apart from the evaluation set.</param>
    /// <param name="runtime">ONNX Runtime options of the statistics pass.</param>
    /// <param name="progress">Calibration images processed so far.</param>
    /// <param name="cancellationToken">Stops the statistics pass between batches.</param>
    /// <exception cref="BitBudgetException">Calibration missing, empty or not fitting the model, or NaN/Inf in a layer's input.</exception>
    public static QuantizedWeights Create(OnnxModel prepared, IReadOnlyList<LayerInfo> layers, WeightRounding? rounding = null, Dataset? calibration = null,
        RuntimeOptions? runtime = null, IProgress<int>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prepared);
        ArgumentNullException.ThrowIfNull(layers);
        rounding = (rounding ?? WeightRounding.Default).Validated();
        if (!rounding.NeedsCalibration) { return new QuantizedWeights(prepared, layers, rounding, null, ""); }
        if (calibration is null || calibration.Count == 0)
        {
            throw Errors.InvalidInput(
                $"{(rounding.Method == RoundingMethod.Gptq ? "gptq rounding" : "Bias correction")} needs calibration images; give a calibration set or use rtn without bias correction.");
        }
        CheckFits(prepared, calibration);
        RequireFiniteWeights(prepared, layers);   // before the statistics pass, which would blame the images for a NaN weight
        int count = Math.Min(rounding.CalibrationImages, calibration.Count);
        int batch = Math.Clamp((1 << 22) / Math.Max(1, calibration.SampleSize), 1, 64);
        IReadOnlyList<LayerStatistics> statistics = LayerInputStatistics.Collect(prepared, layers, calibration, count, batch, runtime, progress, cancellationToken);
        return new QuantizedWeights(prepared, layers, rounding, statistics, $"{calibration.Hash}:first={count}",
            memoryBudget: (runtime ?? RuntimeOptions.Default).MaxMemory) { CalibrationCount = count };
    }

    /// <summary>A copy sharing every computed tensor and statistic, plus <paramref name="tensors"/> as overrides (this instance is unchanged).</summary>
    QuantizedWeights(QuantizedWeights from, IEnumerable<QuantizedTensor> tensors)
    {
        _prepared = from._prepared;
        _layers = from._layers;
        _originals = from._originals;
        _biases = from._biases;
        _statistics = from._statistics;
        _factors = from._factors;
        _memoryBudget = from._memoryBudget;
        _fingerprint = from._fingerprint;
        _cache = from._cache;
        _overrides = new(from._overrides);
        foreach (QuantizedTensor t in tensors) { _overrides[(t.LayerIndex, t.Bits)] = t; }
        Rounding = from.Rounding;
        Calibration = from.Calibration;
        CalibrationCount = from.CalibrationCount;
    }

    /// <summary>These weights with <paramref name="tensors"/> in place of the (layer, bits) entries they name; this instance is not changed.</summary>
    internal QuantizedWeights WithTensors(IEnumerable<QuantizedTensor> tensors) => new(this, tensors);

    /// <summary>The prepared model the layers belong to.</summary>
    internal OnnxModel Prepared => _prepared;

    /// <summary>Images the statistics pass used (the first this many of the calibration set), 0 without one.</summary>
    internal int CalibrationCount { get; private init; }

    /// <summary>The GPTQ factor cache (null unless GPTQ rounding), for tests.</summary>
    internal GptqFactorCache? Factors => _factors;

    /// <summary>
    /// Sets aside what rounding more tensors needs: drops the GPTQ factors (up to an eighth of the budget) and moves the input
    /// statistics' H matrices to temporary files (ResNet-18: 1.05 GB). A stage that has every tensor it needs calls it before
    /// it fills the memory with something else: CLADO's measurement, whose sessions and micro-batches are planned up to the
    /// budget from what is resident. A tensor rounded later reads H back and rebuilds its layer's factor, with the same result.
    /// </summary>
    /// <returns>Bytes of H moved to files.</returns>
    internal long ReleaseRoundingState()
    {
        _factors?.Clear();
        return _statistics?.Sum(s => s.Spill()) ?? 0;
    }

    /// <summary>The full-precision input statistics of a layer (null for round to nearest without bias correction).</summary>
    internal LayerStatistics? InputStatistics(int layerIndex) => _statistics?[layerIndex];

    static void RequireFiniteWeights(OnnxModel prepared, IReadOnlyList<LayerInfo> layers)
    {
        var initializers = prepared.InitializerMap();
        foreach (LayerInfo layer in layers)
        {
            foreach (string? name in (ReadOnlySpan<string?>)[layer.WeightName, layer.BiasName])
            {
                if (name is not null && initializers.TryGetValue(name, out var tensor)) { RequireFinite(prepared, layer, name, TensorData.ReadFloats(tensor)); }
            }
        }
    }

    /// <summary>NaN or ±Inf in a weight or bias would be rounded silently (a NaN channel to zeros, Inf to the largest level): refuse it.</summary>
    static void RequireFinite(OnnxModel prepared, LayerInfo layer, string tensor, float[] values)
    {
        if (System.Numerics.Tensors.TensorPrimitives.IsFiniteAll<float>(values)) { return; }
        int at = Array.FindIndex(values, v => !float.IsFinite(v));
        int count = values.Count(v => !float.IsFinite(v));
        throw Errors.InvalidInput(string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"Layer '{layer.Name}' tensor '{tensor}' of model '{prepared.Source}' holds {count} non-finite value{(count == 1 ? "" : "s")} (first: {values[at]} at element {at}); it cannot be quantized."));
    }

    static void CheckFits(OnnxModel prepared, Dataset data)
    {
        IReadOnlyList<long> shape = prepared.InputShape;
        bool fits = shape.Count == data.SampleShape.Count + 1;
        for (int i = 1; fits && i < shape.Count; i++) { fits = shape[i] <= 0 || shape[i] == data.SampleShape[i - 1]; }
        if (!fits)
        {
            throw Errors.InvalidInput(
                $"The calibration images are [{string.Join(",", data.SampleShape)}] but model input '{prepared.InputName}' is [{string.Join(",", shape.Select(d => d <= 0 ? "N" : d.ToString(System.Globalization.CultureInfo.InvariantCulture)))}]; check the preprocessing.");
        }
    }

    /// <summary>The layers this cache serves.</summary>
    public IReadOnlyList<LayerInfo> Layers => _layers;

    /// <summary>How the tensors are rounded.</summary>
    public WeightRounding Rounding { get; }

    /// <summary>Identity of the calibration images the statistics came from (dataset hash and count), or empty without calibration.</summary>
    public string Calibration { get; }

    /// <summary>
    /// Identifies every tensor this cache returns: the model, its layers, the rounding settings, the calibration images and any
    /// tensor installed with <see cref="Set"/>. Stores of measurements made with these weights key on it.
    /// </summary>
    public string Fingerprint
    {
        get
        {
            if (_overrides.IsEmpty) { return _fingerprint; }
            using var sha = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
            sha.AppendData(System.Text.Encoding.UTF8.GetBytes(_fingerprint));
            foreach (var ((layer, bits), t) in _overrides.OrderBy(p => p.Key))
            {
                sha.AppendData(BitConverter.GetBytes(layer));
                sha.AppendData(BitConverter.GetBytes(bits));
                sha.AppendData(MemoryMarshal.AsBytes(t.Values.Span));
                sha.AppendData(MemoryMarshal.AsBytes(t.Scales.Span));
                if (t.Bias is not null) { sha.AppendData(MemoryMarshal.AsBytes(t.Bias.AsSpan())); }
            }
            return Convert.ToHexStringLower(sha.GetHashAndReset())[..32];
        }
    }

    /// <summary>Entries computed so far.</summary>
    public int Count => _cache.Count(e => e.Value.IsValueCreated);

    /// <summary>The float weight of a layer.</summary>
    public ReadOnlyMemory<float> Original(int layerIndex) => _originals[layerIndex];

    /// <summary>The float bias of a layer as the model has it (empty when the layer has none).</summary>
    public ReadOnlyMemory<float> OriginalBias(int layerIndex) => _biases[layerIndex] ?? ReadOnlyMemory<float>.Empty;

    /// <summary>The quantized weight of a layer as the resolved config asks for it.</summary>
    public QuantizedTensor Get(LayerBits spec) => Get(spec, CancellationToken.None);

    /// <summary>As <see cref="Get(LayerBits)"/>; <paramref name="cancel"/> stops GPTQ's factorisation and rounding of a tensor not computed yet.</summary>
    public QuantizedTensor Get(LayerBits spec, CancellationToken cancel)
    {
        ArgumentNullException.ThrowIfNull(spec);
        return Get(spec.LayerIndex, spec.WeightBits, spec.PerChannel, spec.Range, cancel);
    }

    /// <summary>The quantized weight of layer <paramref name="layerIndex"/> at <paramref name="bits"/>, computed on first use.</summary>
    /// <remarks>A tensor given to <see cref="Set"/> for this (layer, bits) wins over the configured rounding.</remarks>
    public QuantizedTensor Get(int layerIndex, int bits, bool perChannel = true, WeightRange range = WeightRange.Mse, CancellationToken cancel = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(layerIndex);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(layerIndex, _layers.Count);
        if (_overrides.TryGetValue((layerIndex, bits), out QuantizedTensor? given)) { return given; }
        var key = (layerIndex, bits, perChannel, range);
        Lazy<QuantizedTensor> lazy = _cache.GetOrAdd(key, k => new Lazy<QuantizedTensor>(() => Compute(k.Layer, k.Bits, k.PerChannel, k.Range, cancel)));
        try
        {
            return lazy.Value;
        }
        catch (OperationCanceledException)
        {
            // A Lazy keeps its exception: a cancelled rounding leaves the cache so that a later Get computes the tensor.
            _cache.TryRemove(new KeyValuePair<(int, int, bool, WeightRange), Lazy<QuantizedTensor>>(key, lazy));
            throw;
        }
    }

    /// <summary>Replaces the (layer, bits) entry with a tensor quantized elsewhere; it changes <see cref="Fingerprint"/>.</summary>
    public void Set(QuantizedTensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        _overrides[(tensor.LayerIndex, tensor.Bits)] = tensor;
    }

    QuantizedTensor Compute(int index, int bits, bool perChannel, WeightRange range, CancellationToken cancel)
    {
        LayerInfo layer = _layers[index];
        float[] w = _originals[index];
        WeightLayout layout = WeightLayout.Of(layer.WeightShape, layer.ChannelAxis);
        float[] scales = WeightQuantizer.ComputeScales(w, layout, bits, perChannel, range);
        if (_statistics is null)
        {
            var values = new sbyte[w.Length];
            WeightQuantizer.Quantize(w, layout, scales, bits, values);
            var dequantized = new float[w.Length];
            WeightQuantizer.Dequantize(values, layout, scales, dequantized);
            return new QuantizedTensor(index, bits, layer.WeightShape, perChannel ? layer.ChannelAxis : -1, scales, values, dequantized,
                WeightQuantizer.SquaredError(w, dequantized));
        }
        // The output-error search replaces the MSE clip choice; per-tensor and min/max layers keep the scale they asked for.
        bool search = Rounding.ScaleSearch == ScaleSearch.OutputError && perChannel && range == WeightRange.Mse;
        RoundedLayer r = LayerRounder.Round(layer, w, _biases[index], bits, Rounding.Method, Rounding.BiasCorrection, _statistics[index], scales,
            Rounding.GptqOptions, _factors?.Get(index, cancel), search, cancel);
        ProcessMemory.CollectWhenNear(_memoryBudget);
        MemoryTrace.Mark($"rounded {layer.Name} at {bits} bits");
        return QuantizedTensor.FromIntegers(layer, bits, perChannel ? r.Scales : scales, r.Levels, w, r.Bias);
    }
}

using BitBudget.Data;
using BitBudget.Graph;
using BitBudget.Graph.Onnx;
using BitBudget.Rounding;
using BitBudget.Runtime;
using MathNet.Numerics.LinearAlgebra;

namespace BitBudget.Quantization;

/// <summary>How the weights of a chosen configuration are rounded for simulation and export.</summary>
public enum FinalRounding
{
    /// <summary>Each (layer, bits) tensor as the measurement rounded it: against the float model's inputs of the layer.</summary>
    Independent,
    /// <summary>
    /// Layer by layer in topological order against the inputs the layer sees once every layer before it is quantized (and its
    /// input activations, with A8), with the bias corrected towards the float model's layer output (<see cref="SequentialRounding"/>).
    /// </summary>
    Sequential,
}

/// <summary>
/// Re-rounds the weights of one chosen configuration sequentially: the layers are taken in waves (a wave holds every layer
/// whose input depends only on layers of earlier waves, e.g. a residual block's first conv and its 1×1 shortcut), and for each
/// wave one statistics pass over the calibration images runs the model with every earlier wave quantized as it will be exported
/// (weights, corrected biases, input activations) and the wave's own input activations quantized. Each layer of the wave is
/// then rounded with the configured method against the float layer's output: the pass runs the float model beside the partially
/// quantized one and collects Ĥ = Σ x̂ x̂ᵀ and C = Σ x x̂ᵀ (x the float input, x̂ the one the layer sees); GPTQ (and the
/// output-error scale search) round the least-squares target W* = W + W·(C − Ĥ)·(Ĥ + λI)⁻¹ with Ĥ, which minimises
/// ‖W·x − Ŵ·x̂‖² (upstream errors included, as GPTAQ's asymmetric calibration does); with bias correction the bias becomes
/// b + W·mean(x) − Ŵ·mean(x̂), so the layer's mean output matches the float model's.
/// </summary>
/// <remarks>
/// Measurement (CLADO's Ω) needs one tensor per (layer, bits), independent of the other layers' bits, so it keeps the
/// independent rounding; only the final configuration is worth a rounding that depends on all of it. The passes stream
/// through <see cref="Evaluation.TensorTap"/> under the memory budget, like the float statistics pass.
/// </remarks>
internal static class SequentialRounding
{
    /// <summary>
    /// The weights of <paramref name="config"/> rounded sequentially, as a copy of <paramref name="weights"/> whose entries for the
    /// configuration's (layer, bits) are replaced; <paramref name="weights"/> itself is not changed. Round to nearest without
    /// bias correction uses no data, so it returns <paramref name="weights"/>.
    /// </summary>
    /// <param name="weights">The independent weights (from <see cref="QuantizedWeights.Create"/> with calibration data when data-aware).</param>
    /// <param name="config">Resolved bits, one entry per layer.</param>
    /// <param name="activations">Calibrated input-activation parameters (needed for layers with activation bits).</param>
    /// <param name="calibration">The calibration set <paramref name="weights"/> was created from (its first images are used, as there).</param>
    /// <param name="runtime">ONNX Runtime options and the memory budget.</param>
    /// <param name="progress">Waves done.</param>
    /// <param name="cancel">Stops between batches.</param>
    public static QuantizedWeights Round(QuantizedWeights weights, IReadOnlyList<LayerBits> config, IReadOnlyDictionary<string, ActivationParams>? activations,
        Dataset? calibration, RuntimeOptions? runtime = null, IProgress<int>? progress = null, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(config);
        IReadOnlyList<LayerInfo> layers = weights.Layers;
        QdqGraph.CheckConfig(layers, config);
        WeightRounding rounding = weights.Rounding;
        if (!rounding.NeedsCalibration) { return weights; }
        if (calibration is null || weights.CalibrationCount == 0)
        {
            throw Errors.InvalidInput("Sequential rounding needs the calibration images the weights were rounded on.");
        }
        OnnxModel prepared = weights.Prepared;
        int count = Math.Min(weights.CalibrationCount, calibration.Count);
        int batch = Math.Clamp((1 << 22) / Math.Max(1, calibration.SampleSize), 1, 64);
        int[] wave = Waves(prepared, layers, config);
        var done = new List<QuantizedTensor>();
        QuantizedWeights current = weights.WithTensors([]);
        for (int w = 0; w <= (wave.Length == 0 ? -1 : wave.Max()); w++)
        {
            cancel.ThrowIfCancellationRequested();
            // A first-wave layer without input quantization sees the float inputs: its independent tensor is already the answer.
            int[] members = [.. Enumerable.Range(0, layers.Count).Where(i => wave[i] == w && !(w == 0 && config[i].ActivationBits == 0))];
            if (w == 0) { done.AddRange(Enumerable.Range(0, layers.Count).Where(i => wave[i] == 0 && config[i].ActivationBits == 0).Select(i => weights.Get(config[i], cancel))); }
            if (members.Length == 0) { current = weights.WithTensors(done); continue; }
            // Earlier waves quantized as exported; this wave and later ones keep float weights but quantize their inputs.
            var partial = config.Select(b => wave[b.LayerIndex] < w ? b : b with { WeightBits = 0 }).ToList();
            OnnxModel model = QuantSimulator.Build(prepared, layers, partial, current, activations, emulateActivations: true);
            OnnxModel paired = WithFloatBeside(model, prepared, out Func<string, string> floatName);
            var seen = LayerInputStatistics.CollectPaired(paired, prepared, floatName, [.. members.Select(i => layers[i])], calibration, count, batch, runtime, cancel);
            for (int m = 0; m < members.Length; m++)
            {
                done.Add(RoundLayer(weights, layers[members[m]], config[members[m]], seen[m].Seen, seen[m].Cross));
            }
            current = weights.WithTensors(done);
            MemoryTrace.Mark($"sequential rounding: wave {w} ({members.Length} layers)");
            progress?.Report(w + 1);
        }
        return current;
    }

    /// <summary>
    /// One layer against the inputs it sees: the least-squares target W* = W·C·(Ĥ + λI)⁻¹ (C = Σ x x̂ᵀ, Ĥ = Σ x̂ x̂ᵀ, λ the GPTQ
    /// dampening) makes ‖W·x − Ŵ·x̂‖² = ‖(W* − Ŵ)·x̂‖² + const, so rounding W* with Ĥ as usual minimises the error against the float
    /// layer output, upstream errors included; the bias then matches the float output's mean.
    /// </summary>
    static QuantizedTensor RoundLayer(QuantizedWeights weights, LayerInfo layer, LayerBits bits, LayerStatistics seen, double[] cross)
    {
        WeightRounding rounding = weights.Rounding;
        float[] w = weights.Original(layer.Index).ToArray();
        float[]? bias = weights.OriginalBias(layer.Index) is { Length: > 0 } b ? b.ToArray() : null;
        int outputs = (int)layer.OutputChannels;
        float[] rows = layer.ChannelAxis == 0 ? w : LayerRounder.Transpose(w, (int)layer.WeightShape[0], (int)layer.WeightShape[1]);
        float[] targetRows = Target(rows, outputs, seen, cross, rounding.Dampening);
        float[] target = layer.ChannelAxis == 0 ? targetRows : LayerRounder.Transpose(targetRows, outputs, rows.Length / outputs);
        WeightLayout layout = WeightLayout.Of(layer.WeightShape, layer.ChannelAxis);
        float[] scales = WeightQuantizer.ComputeScales(target, layout, bits.WeightBits, bits.PerChannel, bits.Range);
        bool search = rounding.ScaleSearch == ScaleSearch.OutputError && bits.PerChannel && bits.Range == WeightRange.Mse;
        RoundedLayer r = LayerRounder.Round(layer, target, bias, bits.WeightBits, rounding.Method, rounding.BiasCorrection, seen, scales,
            rounding.GptqOptions, null, search);
        float[]? corrected = r.Bias;
        if (rounding.BiasCorrection && weights.InputStatistics(layer.Index) is LayerStatistics floatInputs)
        {
            // r.Bias = b + (W* − Ŵ)·mean(x̂); adding W·mean(x) − W*·mean(x̂) makes it b + W·mean(x) − Ŵ·mean(x̂).
            corrected = TowardsFloatOutput(rows, targetRows, outputs, corrected!, floatInputs, seen);
        }
        return QuantizedTensor.FromIntegers(layer, bits.WeightBits, bits.PerChannel ? r.Scales : scales, r.Levels, w, corrected);
    }

    /// <summary>W* = W + W·(C − Ĥ)·(Ĥ + λI)⁻¹ per group (rows layout), λ = dampening × mean diag Ĥ, grown ×10 until Ĥ + λI factors.</summary>
    internal static float[] Target(float[] rows, int outputs, LayerStatistics seen, double[] cross, double dampening)
    {
        int k = seen.K, groups = seen.Groups, perGroup = outputs / groups;
        var result = new float[rows.Length];
        var build = Matrix<double>.Build;
        for (int g = 0; g < groups; g++)
        {
            Matrix<double> h = seen.Gram(g).ToMathNet();
            double mean = h.Diagonal().Sum() / k;
            if (mean <= 0) { rows.AsSpan(g * perGroup * k, perGroup * k).CopyTo(result.AsSpan(g * perGroup * k)); continue; }
            // Column-major views: the row-major C read column-major is Cᵀ, the row-major W_g (perGroup × K) is W_gᵀ.
            var ct = build.Dense(k, k, cross.AsSpan(g * k * k, k * k).ToArray());
            var wt = build.Dense(k, perGroup, Array.ConvertAll(rows[(g * perGroup * k)..((g + 1) * perGroup * k)], v => (double)v));
            // W* = W + W·(C − Ĥ)·(Ĥ + λI)⁻¹ (= W·C·Ĥ⁻¹ without dampening), so that W* = W exactly when the inputs are the float ones.
            var rhs = (ct - h) * wt;
            double lambda = Math.Max(dampening, 1e-6) * mean;
            for (int attempt = 0; ; attempt++)
            {
                Matrix<double> damped = h + build.DiagonalIdentity(k) * lambda;
                var cholesky = damped.Cholesky();
                double[] z = cholesky.Solve(rhs).ToColumnMajorArray();   // K × perGroup column-major = (W* − W)_g row-major
                if (z.All(double.IsFinite) || attempt >= 6)
                {
                    for (int i = 0; i < z.Length; i++) { result[g * perGroup * k + i] = (float)(rows[g * perGroup * k + i] + z[i]); }
                    break;
                }
                lambda *= 10;
            }
        }
        return result;
    }

    static float[] TowardsFloatOutput(float[] rows, float[] targetRows, int outputs, float[] bias, LayerStatistics floatInputs, LayerStatistics seen)
    {
        int k = rows.Length / outputs, perGroup = outputs / seen.Groups;
        var result = (float[])bias.Clone();
        for (int g = 0; g < seen.Groups; g++)
        {
            double[] mf = floatInputs.Mean(g), mq = seen.Mean(g);
            for (int o = g * perGroup; o < (g + 1) * perGroup; o++)
            {
                double delta = 0;
                for (int i = 0; i < k; i++) { delta += rows[o * k + i] * mf[i] - targetRows[o * k + i] * mq[i]; }
                result[o] = (float)(result[o] + delta);
            }
        }
        return result;
    }

    /// <summary>
    /// <paramref name="quantized"/> with the float model computed beside it from the same data input (every other tensor, node and
    /// initializer of the float copy renamed by <paramref name="floatName"/>), so one pass yields both inputs of every layer.
    /// </summary>
    internal static OnnxModel WithFloatBeside(OnnxModel quantized, OnnxModel prepared, out Func<string, string> floatName)
    {
        OnnxModel fp = prepared.Clone();
        if (quantized.Opset > fp.Opset) { OpsetUpgrade.Raise(fp, quantized.Opset); }
        string input = prepared.InputName;
        const string Prefix = "bitbudget_float/";
        string Rename(string t) => t.Length == 0 || t == input ? t : Prefix + t;
        OnnxModel combined = quantized.Clone();
        foreach (TensorProto initializer in fp.Graph.Initializer)
        {
            TensorProto copy = initializer.Clone();
            copy.Name = Rename(copy.Name);
            combined.Graph.Initializer.Add(copy);
        }
        foreach (NodeProto node in fp.Graph.Node)
        {
            NodeProto copy = node.Clone();
            copy.Name = Prefix + copy.Name;
            for (int i = 0; i < copy.Input.Count; i++) { copy.Input[i] = Rename(copy.Input[i]); }
            for (int i = 0; i < copy.Output.Count; i++) { copy.Output[i] = Rename(copy.Output[i]); }
            combined.Graph.Node.Add(copy);
        }
        floatName = Rename;
        return combined;
    }

    /// <summary>Statistics passes <see cref="Round"/> makes for <paramref name="config"/> (one per wave of layers).</summary>
    public static int WaveCount(OnnxModel prepared, IReadOnlyList<LayerInfo> layers, IReadOnlyList<LayerBits> config) =>
        Waves(prepared, layers, config).DefaultIfEmpty(-1).Max() + 1;

    /// <summary>
    /// The wave of every layer: 0 when no quantized layer lies upstream of its input, else one more than the latest such layer's
    /// wave. Float layers are passed through (they change nothing) and get wave −1.
    /// </summary>
    internal static int[] Waves(OnnxModel prepared, IReadOnlyList<LayerInfo> layers, IReadOnlyList<LayerBits> config)
    {
        var producer = new Dictionary<string, NodeProto>(StringComparer.Ordinal);
        foreach (NodeProto node in prepared.Graph.Node)
        {
            foreach (string o in node.Output) { if (o.Length > 0) { producer[o] = node; } }
        }
        var byWeight = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (LayerInfo l in layers) { if (!config[l.Index].IsFloat) { byWeight[l.WeightName] = l.Index; } }
        int? LayerOf(NodeProto n) => n.Input.Count >= 2 && byWeight.TryGetValue(n.Input[1], out int i) && n.OpType == layers[i].OpType ? i : null;

        // Direct quantized ancestors of each layer (the walk stops at a quantized layer: its own ancestors are in earlier waves).
        var upstream = new List<int>[layers.Count];
        for (int i = 0; i < layers.Count; i++)
        {
            upstream[i] = [];
            if (config[i].IsFloat) { continue; }
            var seen = new HashSet<string>(StringComparer.Ordinal);
            var stack = new Stack<string>(prepared.Graph.Node.Where(n => LayerOf(n) == i).Select(n => n.Input[0]));
            while (stack.Count > 0)
            {
                string t = stack.Pop();
                if (!seen.Add(t) || !producer.TryGetValue(t, out NodeProto? n)) { continue; }
                if (LayerOf(n) is int j) { upstream[i].Add(j); continue; }
                foreach (string input in n.Input) { if (input.Length > 0) { stack.Push(input); } }
            }
        }
        var wave = Enumerable.Repeat(int.MinValue, layers.Count).ToArray();
        int Of(int i)
        {
            if (wave[i] != int.MinValue) { return wave[i]; }
            wave[i] = int.MaxValue;   // marks the walk; a cycle is not possible in an ONNX graph
            return wave[i] = config[i].IsFloat ? -1 : upstream[i].Select(j => Of(j) + 1).DefaultIfEmpty(0).Max();
        }
        for (int i = 0; i < layers.Count; i++) { Of(i); }
        return wave;
    }
}

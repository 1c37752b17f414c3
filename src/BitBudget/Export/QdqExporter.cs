using System.Numerics.Tensors;
using BitBudget.Graph;
using BitBudget.Graph.Onnx;
using BitBudget.Internals;
using BitBudget.Quantization;
using BitBudget.Runtime;
using Microsoft.ML.OnnxRuntime;

namespace BitBudget.Export;

/// <summary>How one layer's weight is stored in the exported model.</summary>
/// <param name="Layer">Layer name.</param>
/// <param name="WeightBits">Weight bits, or 0 for a float weight.</param>
/// <param name="Storage">ONNX element type of the stored weight: int8, int4, int2 or float.</param>
/// <param name="Elements">Weight elements.</param>
/// <param name="AccountedBytes">⌈Elements·bits/8⌉ (4·Elements for float), the configuration's size accounting.</param>
/// <param name="StoredBytes">Bytes of the stored weight payload (greater than accounted for 3, 5, 6 and 7 bits, which use a wider container).</param>
/// <param name="ScaleBytes">Bytes of the float32 scales.</param>
/// <param name="ActivationBits">Bits of the input activation Q/DQ, or 0.</param>
/// <param name="BiasCorrected">Whether the float bias was replaced by the corrected one (added when the layer had none).</param>
public sealed record ExportedLayer(string Layer, int WeightBits, string Storage, long Elements, long AccountedBytes, long StoredBytes, long ScaleBytes, int ActivationBits,
    bool BiasCorrected = false);

/// <summary>Result of <see cref="QdqExporter.Export"/>.</summary>
/// <param name="Model">The QDQ model.</param>
/// <param name="Opset">Its default-domain opset.</param>
/// <param name="Layers">Per-layer storage.</param>
/// <param name="ModelBytes">Size of the serialized model.</param>
/// <param name="CheckOutput">Output of the verification run (every check image, in order) at ORT_ENABLE_ALL.</param>
public sealed record ExportResult(OnnxModel Model, long Opset, IReadOnlyList<ExportedLayer> Layers, long ModelBytes, float[] CheckOutput)
{
    /// <summary>Σ accounted weight bytes.</summary>
    public long AccountedWeightBytes => Layers.Sum(l => l.AccountedBytes);

    /// <summary>Σ stored weight payload bytes.</summary>
    public long StoredWeightBytes => Layers.Sum(l => l.StoredBytes);
}

/// <summary>Options of <see cref="QdqExporter.Export"/>.</summary>
internal sealed record ExportOptions
{
    /// <summary>
    /// Input for the verification run (NCHW, batch inferred); null runs one zero image. The images run in micro-batches sized by
    /// <see cref="RuntimeOptions.MaxMemory"/> (or <see cref="RuntimeOptions.ImagesPerRun"/>), their outputs concatenated.
    /// </summary>
    public float[]? CheckInput { get; init; }

    /// <summary>Runtime for the verification run; the optimization level is always ORT_ENABLE_ALL.</summary>
    public RuntimeOptions Runtime { get; init; } = RuntimeOptions.Default;

    /// <summary>
    /// Write 3–4-bit MatMul weights as ONNX Runtime's com.microsoft.MatMulNBits (block-wise int4, native CPU kernel) instead of
    /// INT4 + DequantizeLinear; other layers stay QDQ. The model then runs only in ONNX Runtime.
    /// </summary>
    public bool MatMulNBits { get; init; }

    /// <summary>Quantizers of the attention activation × activation MatMuls: Q/DQ on both of their inputs (null: they stay float).</summary>
    public IReadOnlyList<AttentionQuantizer>? Attention { get; init; }

    /// <summary>Tests only: real Q/DQ on int2-weight layer inputs, to show the ONNX Runtime failure the emulation avoids.</summary>
    internal bool RealQdqOnInt2Inputs { get; init; }

    /// <summary>Tests only: keep sub-byte [K, N] MatMul/Gemm weights in their layout, to show the ONNX Runtime miscomputation the transposed Gemm avoids.</summary>
    internal bool KeepSubByteMatMulLayout { get; init; }
}

/// <summary>
/// Writes a real QDQ ONNX model: quantized weights stored as integers (int8 for 5–8 bits, INT4 packed two per byte for 3–4,
/// INT2 packed four per byte for 2) followed by DequantizeLinear with per-channel scales; float biases (bias-corrected ones
/// from the <see cref="QuantizedWeights"/>, added where a layer had none); activation Q/DQ on layer inputs.
/// </summary>
internal static class QdqExporter
{
    /// <summary>Builds the QDQ model and checks that ONNX Runtime loads it at ORT_ENABLE_ALL and runs one batch.</summary>
    /// <exception cref="BitBudgetException">The opset cannot be raised, calibration is missing, or ONNX Runtime rejects the result.</exception>
    public static ExportResult Export(OnnxModel prepared, IReadOnlyList<LayerInfo> layers, IReadOnlyList<LayerBits> config,
        QuantizedWeights weights, IReadOnlyDictionary<string, ActivationParams>? activations = null, ExportOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(prepared);
        ArgumentNullException.ThrowIfNull(weights);
        options ??= new ExportOptions();
        QdqGraph.CheckConfig(layers, config);
        foreach (LayerBits b in config) { QdqGraph.ActivationFor(b, activations); }   // fail before any work
        OnnxModel model = prepared.Clone();
        long opset = Math.Max(model.Opset, QdqGraph.RequiredOpset(config, storedWeights: true));
        if (options.Attention is { Count: > 0 }) { opset = Math.Max(opset, QdqGraph.BaseOpset); }
        OpsetUpgrade.Raise(model, opset);
        if (config.Any(b => b.WeightBits == 2)) { model.Proto.IrVersion = Math.Max(model.Proto.IrVersion, 13); }   // INT2 arrived with IR 13

        var exported = new List<ExportedLayer>(layers.Count);
        var dequantizeNodes = new List<NodeProto>();
        var nbits = new List<(int Index, QuantizedTensor Q)>();
        for (int i = 0; i < layers.Count; i++)
        {
            LayerInfo layer = layers[i];
            LayerBits b = config[i];
            if (b.IsFloat)
            {
                exported.Add(new ExportedLayer(layer.Name, 0, "float", layer.WeightCount, layer.WeightCount * 4, layer.WeightCount * 4, 0, b.ActivationBits));
                continue;
            }
            QuantizedTensor q = weights.Get(b);
            if (options.MatMulNBits && MatMulNBitsWriter.Applies(layer, b.WeightBits))
            {
                // Rewritten after the activation Q/DQ are in place (they find the node by its weight input).
                nbits.Add((i, q));
                exported.Add(null!);
                continue;
            }
            ReadOnlySpan<sbyte> values = q.Values.Span;
            long[] shape = [.. layer.WeightShape];
            long axis = q.Axis;
            if (b.WeightBits <= 4 && !options.KeepSubByteMatMulLayout && AsTransposedGemm(model, layer))
            {
                values = Transpose(values, (int)shape[0], (int)shape[1]);
                shape = [shape[1], shape[0]];
                if (axis >= 0) { axis = 0; }
            }
            (TensorProto.Types.DataType type, byte[] payload) = SubBytePacking.Pack(values, b.WeightBits);
            // ORT fuses a Q/DQ uint8 input and an int8 weight of a MatMul/Gemm into MatMulIntegerToFloat/QGemm; on x86 without
            // VNNI its u8·s8 kernel sums pairs of products in saturating int16 (255·127·2 > 32767) and the exported ViT lost
            // 0.5–0.7 points against the simulation. 8-bit weights there are stored as uint8 + 128 with zero point 128 (the same
            // values after DequantizeLinear), which selects the exact u8·u8 kernel. Narrower weights cannot saturate.
            bool unsignedWeight = b.WeightBits == 8 && b.ActivationBits == 8 && layer.OpType is "MatMul" or "Gemm" or "Conv";
            if (unsignedWeight)
            {
                type = TensorProto.Types.DataType.Uint8;
                for (int j = 0; j < payload.Length; j++) { payload[j] = (byte)(payload[j] ^ 0x80); }   // two's complement + 128
            }
            TensorProto original = model.FindInitializer(layer.WeightName)!;
            model.Graph.Initializer.Remove(original);
            string stored = ModelPreparer.UniqueName(model, $"{layer.WeightName}_quantized");
            model.Graph.Initializer.Add(TensorData.Raw(stored, type, shape, payload));
            string scale = ModelPreparer.UniqueName(model, $"{layer.WeightName}_scale");
            ReadOnlySpan<float> scales = q.Scales.Span;
            model.Graph.Initializer.Add(axis < 0 ? TensorData.Float(scale, [], scales) : TensorData.Float(scale, [scales.Length], scales));
            List<string> dequantizeInputs = [stored, scale];
            if (unsignedWeight)
            {
                string zeroPoint = ModelPreparer.UniqueName(model, $"{layer.WeightName}_zero_point");
                long[] zpDims = axis < 0 ? [] : [scales.Length];
                model.Graph.Initializer.Add(TensorData.Raw(zeroPoint, TensorProto.Types.DataType.Uint8, zpDims, Enumerable.Repeat((byte)128, scales.Length).ToArray()));
                dequantizeInputs.Add(zeroPoint);
            }
            dequantizeNodes.Add(QdqGraph.Node("DequantizeLinear", $"{layer.WeightName}_dequantize", dequantizeInputs, [layer.WeightName], axis < 0 ? null : axis));
            if (q.Bias is not null) { QdqGraph.SetBias(model, layer, q.Bias); }   // exactly the bias the simulation uses
            exported.Add(new ExportedLayer(layer.Name, b.WeightBits, type.ToString().ToLowerInvariant(), layer.WeightCount,
                BitConfig.WeightBytes(layer.WeightCount, b.WeightBits), payload.Length, scales.Length * 4L, b.ActivationBits, q.Bias is not null));
        }
        for (int i = dequantizeNodes.Count - 1; i >= 0; i--) { model.Graph.Node.Insert(0, dequantizeNodes[i]); }
        for (int i = 0; i < layers.Count; i++)
        {
            if (QdqGraph.ActivationFor(config[i], activations) is ActivationParams p) { QdqGraph.InsertActivationQdq(model, layers[i], p, emulate: config[i].WeightBits == 2 && !options.RealQdqOnInt2Inputs); }
        }
        AttentionMatMuls.Insert(model, options.Attention, emulate: false);
        foreach ((int i, QuantizedTensor q) in nbits)
        {
            LayerInfo layer = layers[i];
            if (q.Bias is not null) { QdqGraph.SetBias(model, layer, q.Bias); }
            model.Graph.Initializer.Remove(model.FindInitializer(layer.WeightName)!);
            (long payload, long scaleBytes) = MatMulNBitsWriter.Rewrite(model, layer, q);
            exported[i] = new ExportedLayer(layer.Name, config[i].WeightBits, "matmulnbits-int4", layer.WeightCount,
                BitConfig.WeightBytes(layer.WeightCount, config[i].WeightBits), payload, scaleBytes, config[i].ActivationBits, q.Bias is not null);
        }
        model.Proto.ProducerName = "bitbudget";
        long modelBytes = model.Proto.CalculateSize();   // the serialized size, without serializing (the check's session does)
        float[] output = Check(model, options);
        CheckAgainstSimulation(output, QuantSimulator.Build(prepared, layers, config, weights, activations, attention: options.Attention), options);
        return new ExportResult(model, opset, exported, modelBytes, output);
    }

    /// <summary>
    /// Whether the layer's sub-byte weight is stored transposed, [N, K] with per-row scales, under a Gemm with transB = 1 (done here).
    /// ONNX Runtime 1.31.1 (ORT_ENABLE_EXTENDED and above) rewrites DequantizeLinear(int2/int4 [K, N], axis 1) → MatMul (or Gemm
    /// with transB = 0 and no C) into its MatMulNBits kernel: at 2 bits that kernel reads memory it should not (mnist-8's Times212:
    /// 7.0–8.6 % top-1 changing from run to run instead of 98.7 %), at 4 bits it quantizes the activations to int8. It leaves a Gemm
    /// with transB = 1 alone. Only 2-D products can become a Gemm; other MatMuls keep their layout and the simulation check below
    /// catches a wrong result.
    /// </summary>
    static bool AsTransposedGemm(OnnxModel model, LayerInfo layer)
    {
        if (layer.ChannelAxis != 1 || layer.WeightShape.Count != 2) { return false; }
        List<NodeProto> nodes = QdqGraph.LayerNodes(model, layer);
        bool twoDimensional = layer.OutputShape.Count == 2;
        if (!nodes.All(n => n.OpType == "Gemm" || (n.OpType == "MatMul" && twoDimensional))) { return false; }
        foreach (NodeProto node in nodes)
        {
            if (node.OpType == "MatMul")
            {
                node.OpType = "Gemm";
                if (node.Name.Length == 0) { node.Name = OpsetUpgrade.NodeName(node); }
            }
            AttributeProto? transB = node.Attribute.FirstOrDefault(a => a.Name == "transB");
            if (transB is null) { node.Attribute.Add(new AttributeProto { Name = "transB", Type = AttributeProto.Types.AttributeType.Int, I = 1 }); }
            else { transB.I = 1; }
        }
        return true;
    }

    static sbyte[] Transpose(ReadOnlySpan<sbyte> values, int rows, int columns)
    {
        var transposed = new sbyte[values.Length];
        for (int r = 0; r < rows; r++)
        {
            for (int c = 0; c < columns; c++) { transposed[c * rows + r] = values[r * columns + c]; }
        }
        return transposed;
    }

    /// <summary>Largest relative RMS difference between the exported and the simulated model's outputs that counts as agreement.</summary>
    internal const double SimulationTolerance = 0.05;

    /// <summary>
    /// Runs the simulated model (float dequantized weights, the same activation quantizers) on the check input and refuses an
    /// export that is not finite, whose top-1 class differs from the simulation's on more than a quarter of the check images, or
    /// whose outputs differ from it by more than <see cref="SimulationTolerance"/> relative RMS: a model ONNX Runtime loads and runs
    /// can still compute something else (see <see cref="AsTransposedGemm"/>). Small differences are legitimate (integer kernels
    /// with int32 bias and requantized outputs where the simulation rounds in float, accumulation order): measured ≤ 1.2 % on
    /// mnist-8, ResNet-20 and the ViT at W8/W4/W2, weights only and A8, once 8-bit weights under A8 are stored as uint8
    /// (before that, ORT's saturating u8·s8 kernels put mnist-8 W8A8 at 10–14 %).
    /// </summary>
    static void CheckAgainstSimulation(float[] exported, OnnxModel simulated, ExportOptions options)
    {
        // Unoptimized, the simulation is the exact fake-quant arithmetic; ORT's rewrites of a float model with Q/DQ move it by rounding steps.
        float[] expected = RunOnce(simulated, options with { Runtime = options.Runtime with { Optimization = GraphOptimizationLevel.ORT_DISABLE_ALL } },
            "the simulated model");
        long perImage = ModelInspector.ConcreteInputShape(simulated).Skip(1).Aggregate(1L, (a, b) => a * b);
        int images = options.CheckInput is null ? 1 : (int)(options.CheckInput.Length / perImage);
        int classes = expected.Length / images, differing = 0;
        for (int i = 0; i < images && simulated.OutputShape.Count == 2; i++)   // top-1 only means something for [N, classes] outputs
        {
            ReadOnlySpan<float> e = expected.AsSpan(i * classes, classes), x = exported.AsSpan(i * classes, classes);
            if (TensorPrimitives.IndexOfMax(e) != TensorPrimitives.IndexOfMax(x)) { differing++; }
        }
        double relative = TensorPrimitives.Distance(exported, expected) / Math.Max(TensorPrimitives.Norm(expected), float.Epsilon);
        if (!TensorPrimitives.IsFiniteAll(exported) || differing * 4 > images || !(relative <= SimulationTolerance))
        {
            throw Errors.Runtime(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"The exported QDQ model disagrees with its simulation on the check images (top-1 differs on {differing} of {images}, relative RMS difference {relative:G3}); ONNX Runtime computes it differently, so it was not written."));
        }
    }

    /// <summary>Exports and writes the model to <paramref name="path"/> atomically; refuses an existing file unless <paramref name="force"/>.</summary>
    public static ExportResult ExportToFile(string path, bool force, OnnxModel prepared, IReadOnlyList<LayerInfo> layers, IReadOnlyList<LayerBits> config,
        QuantizedWeights weights, IReadOnlyDictionary<string, ActivationParams>? activations = null, ExportOptions? options = null)
    {
        if (File.Exists(path) && !force)
        {
            throw Errors.OutputExists($"Output '{path}' already exists; use --force to overwrite it.");
        }
        ExportResult result = Export(prepared, layers, config, weights, activations, options);
        AtomicFile.WriteAllBytes(path, result.Model.ToBytes());
        return result;
    }

    /// <summary>Loads the model at ORT_ENABLE_ALL (what users get) and runs the check images, so a model ONNX Runtime rejects is never reported as a success.</summary>
    static float[] Check(OnnxModel model, ExportOptions options) =>
        RunOnce(model, options with { Runtime = options.Runtime with { Optimization = GraphOptimizationLevel.ORT_ENABLE_ALL } }, "the exported QDQ model");

    /// <summary>
    /// The model's output on every check image, [images, outputs per image]. The images go through the tensor tap, in
    /// micro-batches within the memory budget (a large model's activations for all check images need not fit at once); each
    /// image's output does not depend on the batch it ran in, so the concatenation is what one run over all of them gives.
    /// </summary>
    static float[] RunOnce(OnnxModel model, ExportOptions options, string what)
    {
        long[] shape = ModelInspector.ConcreteInputShape(model);
        long perImage = shape.Skip(1).Aggregate(1L, (a, b) => a * b);
        float[] input = options.CheckInput ?? new float[perImage];
        if (input.Length == 0 || input.Length % perImage != 0)
        {
            throw new ArgumentException($"The check input has {input.Length} values, not a multiple of {perImage}.", nameof(options));
        }
        int images = checked((int)(input.Length / perImage));
        var check = Data.Dataset.FromArrays(input, new int[images], [.. shape.Skip(1).Select(d => checked((int)d))], description: "the export check images");
        float[]? output = null;
        int outputsPerImage = 0;
        new Evaluation.TensorTap(model, options.Runtime, what).Stream(check, images, [model.OutputName], images, (start, count, tensors) =>
        {
            ReadOnlySpan<float> values = tensors[model.OutputName].Values;
            if (output is null)
            {
                outputsPerImage = values.Length / count;
                output = new float[(long)images * outputsPerImage];
            }
            values.CopyTo(output.AsSpan(start * outputsPerImage));
        }, what: "the export check");
        return output!;
    }
}

using BitBudget.Graph;
using BitBudget.Graph.Onnx;

namespace BitBudget.Quantization;

/// <summary>
/// Builds the fake-quantized model that evaluation runs: each quantized layer's float weight replaced by its dequantized
/// values (from a <see cref="QuantizedWeights"/> cache, so a weight is quantized once however many configurations use it),
/// and QuantizeLinear/DequantizeLinear on the inputs of layers with activation bits.
/// </summary>
internal static class QuantSimulator
{
    /// <summary>A new simulated model; <paramref name="prepared"/> is not changed.</summary>
    /// <param name="prepared">The prepared model the layers were listed from.</param>
    /// <param name="layers">Its quantizable layers.</param>
    /// <param name="config">Resolved bits, one entry per layer (see <see cref="BitConfig.Resolve"/>).</param>
    /// <param name="weights">Quantized-weight cache for this model.</param>
    /// <param name="activations">Calibrated activation parameters by layer name; needed for every layer with activation bits.</param>
    /// <param name="emulateActivations">
    /// Write activation fake quantization with float operators (bit-identical values) instead of QuantizeLinear/DequantizeLinear,
    /// so ONNX Runtime's QDQ rewrites (which move or fuse the pairs and change rounding) cannot make a model and its
    /// slices compute different values. CLADO's measurement uses it; export never does.
    /// </param>
    /// <param name="attention">Quantizers of the attention activation × activation MatMuls (null: they stay float).</param>
    public static OnnxModel Build(OnnxModel prepared, IReadOnlyList<LayerInfo> layers, IReadOnlyList<LayerBits> config,
        QuantizedWeights weights, IReadOnlyDictionary<string, ActivationParams>? activations = null, bool emulateActivations = false,
        IReadOnlyList<AttentionQuantizer>? attention = null)
    {
        ArgumentNullException.ThrowIfNull(prepared);
        ArgumentNullException.ThrowIfNull(weights);
        QdqGraph.CheckConfig(layers, config);
        OnnxModel model = prepared.Clone();
        var initializers = model.InitializerMap();
        for (int i = 0; i < layers.Count; i++)
        {
            if (config[i].IsFloat) { continue; }
            QuantizedTensor q = weights.Get(config[i]);
            SetWeight(initializers, layers[i], q.Dequantized.Span);
            if (q.Bias is not null) { QdqGraph.SetBias(model, layers[i], q.Bias); }
        }
        long opset = QdqGraph.RequiredOpset(config, storedWeights: false);
        if (opset > model.Opset) { OpsetUpgrade.Raise(model, opset); }
        for (int i = 0; i < layers.Count; i++)
        {
            if (QdqGraph.ActivationFor(config[i], activations) is ActivationParams p) { QdqGraph.InsertActivationQdq(model, layers[i], p, emulate: emulateActivations || config[i].WeightBits == 2); }
        }
        AttentionMatMuls.Insert(model, attention, emulateActivations);
        return model;
    }

    /// <summary>
    /// Overwrites one layer's weight and bias in place, in a model built by <see cref="Build"/>, the prepared model, or a slice
    /// holding the layer's nodes and weight: the dequantized values and corrected bias of <paramref name="tensor"/> (a layer without
    /// bias gets one), or the float weight and original bias when it is null. Cheap way to flip a layer's bits.
    /// </summary>
    public static void SetLayerWeight(OnnxModel model, LayerInfo layer, QuantizedTensor? tensor, QuantizedWeights weights)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(layer);
        ArgumentNullException.ThrowIfNull(weights);
        SetWeight(model.InitializerMap(), layer, tensor is null ? weights.Original(layer.Index).Span : tensor.Dequantized.Span);
        if (tensor?.Bias is float[] bias) { QdqGraph.SetBias(model, layer, bias); }
        else { QdqGraph.RestoreBias(model, layer, weights.OriginalBias(layer.Index).Span); }
    }

    static void SetWeight(Dictionary<string, TensorProto> initializers, LayerInfo layer, ReadOnlySpan<float> values)
    {
        if (!initializers.TryGetValue(layer.WeightName, out TensorProto? tensor))
        {
            throw Errors.InvalidInput($"Layer '{layer.Name}' weight '{layer.WeightName}' is not in the model.");
        }
        TensorData.SetFloats(tensor, values);
    }
}

using BitBudget.Data;
using BitBudget.Evaluation;
using BitBudget.Graph;
using BitBudget.Graph.Onnx;

namespace BitBudget.Quantization;

/// <summary>What happens to the activation × activation MatMuls of attention (Q·Kᵀ and softmax·V), which have no weight.</summary>
public enum AttentionMatMulMode
{
    /// <summary>They stay float (the default).</summary>
    Float,
    /// <summary>Both inputs get an 8-bit asymmetric per-tensor quantizer calibrated like the layer inputs.</summary>
    A8,
}

/// <summary>The quantizers of one activation × activation MatMul's two inputs.</summary>
/// <param name="Node">The MatMul's node name (<c>OpsetUpgrade.NodeName</c>: its name, else its first output).</param>
/// <param name="Left">Quantizer of input A (queries, or the attention probabilities).</param>
/// <param name="Right">Quantizer of input B (Kᵀ, or the values).</param>
internal sealed record AttentionQuantizer(string Node, ActivationParams Left, ActivationParams Right);

/// <summary>
/// Finds, calibrates and fake-quantizes the MatMuls whose two inputs are both computed float activations: a transformer's
/// Q·Kᵀ and softmax·V. They are not layers (no weight to search), so their quantization is a fixed part of every model the
/// pipeline builds: the simulation, CLADO's base model (so Ω is measured with them quantized) and the export.
/// </summary>
internal static class AttentionMatMuls
{
    /// <summary>The default-domain MatMul nodes of <paramref name="model"/> whose inputs are both float tensors computed by the graph.</summary>
    internal static IReadOnlyList<NodeProto> Find(OnnxModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var constants = model.Graph.Initializer.Select(t => t.Name)
            .Concat(model.Graph.Node.Where(n => n.OpType == "Constant").SelectMany(n => n.Output))
            .ToHashSet(StringComparer.Ordinal);
        Dictionary<string, int> types = TensorTypes.Infer(model.Graph);
        return [.. model.Graph.Node.Where(n => n.OpType == "MatMul" && n.Domain is ("" or "ai.onnx") && n.Input.Count == 2
            && n.Input.All(i => !constants.Contains(i) && TensorTypes.IsFloat(i, types)))];
    }

    /// <summary>
    /// One full-precision pass over <paramref name="data"/> observing both inputs of every attention MatMul of the engine's model;
    /// returns one quantizer pair per MatMul in graph order (empty when the model has none).
    /// </summary>
    public static IReadOnlyList<AttentionQuantizer> Calibrate(EvaluationEngine engine, Dataset data, int bits = 8,
        ActivationCalibration method = ActivationCalibration.MinMax, int batchSize = 64, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(engine);
        ArgumentNullException.ThrowIfNull(data);
        IReadOnlyList<NodeProto> nodes = Find(engine.Model);
        if (nodes.Count == 0) { return []; }
        string[] tensors = [.. nodes.SelectMany(n => n.Input).Distinct(StringComparer.Ordinal)];
        var observers = tensors.ToDictionary(t => t, _ => new ActivationObserver(), StringComparer.Ordinal);
        engine.Capture(data, tensors, batchSize, (_, _, captured) =>
        {
            foreach ((string name, CapturedTensor tensor) in captured) { observers[name].Observe(tensor.Values); }
        }, cancel);
        return [.. nodes.Select(n => new AttentionQuantizer(OpsetUpgrade.NodeName(n),
            observers[n.Input[0]].Compute(bits, method), observers[n.Input[1]].Compute(bits, method)))];
    }

    /// <summary>
    /// Inserts Q/DQ (or, with <paramref name="emulate"/>, the bit-identical float operators of <see cref="QdqGraph.InsertActivationQdq"/>)
    /// on both inputs of every MatMul in <paramref name="quantizers"/>; raises the model to opset 13 if it is below.
    /// </summary>
    /// <exception cref="BitBudgetException">A quantizer names a MatMul the model does not have.</exception>
    public static void Insert(OnnxModel model, IReadOnlyList<AttentionQuantizer>? quantizers, bool emulate)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (quantizers is null || quantizers.Count == 0) { return; }
        if (model.Opset < QdqGraph.BaseOpset) { OpsetUpgrade.Raise(model, QdqGraph.BaseOpset); }
        var byName = new Dictionary<string, NodeProto>(StringComparer.Ordinal);
        foreach (NodeProto n in model.Graph.Node.Where(n => n.OpType == "MatMul")) { byName.TryAdd(OpsetUpgrade.NodeName(n), n); }
        foreach (AttentionQuantizer q in quantizers)
        {
            if (!byName.TryGetValue(q.Node, out NodeProto? node))
            {
                throw Errors.InvalidInput($"Attention MatMul '{q.Node}' is not in model '{model.Source}'; calibrate on the same prepared model.");
            }
            QdqGraph.InsertInputQdq(model, node, 0, q.Left, emulate, $"{q.Node}_input_a");
            QdqGraph.InsertInputQdq(model, node, 1, q.Right, emulate, $"{q.Node}_input_b");
        }
    }
}

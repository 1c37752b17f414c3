using BitBudget.Graph;
using BitBudget.Graph.Onnx;

namespace BitBudget.Quantization;

/// <summary>
/// Raises a model's default-domain opset (QDQ per-channel needs 13, INT4 21, INT2 25), rewriting the operators whose
/// signature changed in between and refusing, with a clear error, any operator whose upgrade is not known to be exact.
/// </summary>
internal static class OpsetUpgrade
{
    /// <summary>Operators whose semantics, for the attributes and types vision models use, did not change from opset 7 to 25.</summary>
    static readonly HashSet<string> s_unchanged = new(StringComparer.Ordinal)
    {
        "Conv", "ConvTranspose", "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Sigmoid", "HardSigmoid", "Tanh", "Softplus", "Softsign",
        "Add", "Sub", "Mul", "Div", "Sum", "Max", "Min", "Mean", "Pow", "Neg", "Abs", "Exp", "Log", "Sqrt", "Reciprocal", "Floor", "Ceil", "Erf",
        "GlobalAveragePool", "GlobalMaxPool", "MaxPool", "AveragePool", "LRN", "InstanceNormalization",
        "Reshape", "Flatten", "Gemm", "MatMul", "Concat", "Identity", "Transpose", "Shape", "Gather", "Constant", "Cast", "Not",
        "Equal", "Less", "Greater", "Where", "Expand", "Tile", "ConstantOfShape", "Range", "QuantizeLinear", "DequantizeLinear",
        // Transformer exports (ViT, DeiT): shape arithmetic and masks; these exist unchanged since before opset 13.
        "Size", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor", "IsNaN", "IsInf", "Mod", "Sin", "Cos", "Einsum", "Trilu", "CastLike",
        "HardSwish",
        // Introduced at opset 17 (LayerNormalization) and 20 (Gelu) and unchanged since: a model using them is already that new.
        "LayerNormalization", "Gelu",
    };

    /// <summary>Operators that are exact from the given opset on (their older form takes attributes that later became inputs).</summary>
    static readonly Dictionary<string, int> s_unchangedFrom = new(StringComparer.Ordinal)
    {
        ["Slice"] = 10, ["Pad"] = 11, ["Clip"] = 11, ["Squeeze"] = 13, ["Unsqueeze"] = 13, ["ReduceSum"] = 13, ["Softmax"] = 13,
        ["LogSoftmax"] = 13, ["ReduceMean"] = 18, ["ReduceMax"] = 18, ["ReduceMin"] = 18, ["Split"] = 18, ["BatchNormalization"] = 9,
        ["Dropout"] = 12,
    };

    /// <summary>Raises <paramref name="model"/> in place to <paramref name="target"/> (never lowers it).</summary>
    public static void Raise(OnnxModel model, long target)
    {
        long from = model.Opset;
        if (from >= target) { return; }
        GraphProto graph = model.Graph;
        var rewritten = new List<NodeProto>(graph.Node.Count);
        foreach (NodeProto node in graph.Node)
        {
            if (node.Domain is not ("" or "ai.onnx")) { rewritten.Add(node); continue; }
            if (node.Attribute.Any(a => a.Type is AttributeProto.Types.AttributeType.Graph or AttributeProto.Types.AttributeType.Graphs))
            {
                throw Unsupported(model, node, from, target, "it has a subgraph");
            }
            if (s_unchanged.Contains(node.OpType))
            {
                if (node.OpType == "Gemm" && from < 7) { throw Unsupported(model, node, from, target, "Gemm before opset 7 uses the broadcast attribute"); }
                rewritten.Add(node);
                continue;
            }
            if (s_unchangedFrom.TryGetValue(node.OpType, out int since) && from >= since) { rewritten.Add(node); continue; }
            switch (node.OpType)
            {
                case "Dropout":
                    // Inference-mode Dropout is the identity; its optional mask output must be unused.
                    if (node.Output.Count > 1 && node.Output[1].Length > 0 && graph.Node.Any(n => n.Input.Contains(node.Output[1])))
                    {
                        throw Unsupported(model, node, from, target, "its mask output is used");
                    }
                    rewritten.Add(Make("Identity", node.Name, [node.Input[0]], [node.Output[0]]));
                    break;
                case "BatchNormalization":
                    var spatial = node.Attribute.FirstOrDefault(a => a.Name == "spatial");
                    if (spatial is not null && spatial.I != 1) { throw Unsupported(model, node, from, target, "it uses spatial=0"); }
                    if (spatial is not null) { node.Attribute.Remove(spatial); }
                    rewritten.Add(node);
                    break;
                case "Softmax" or "LogSoftmax":
                    rewritten.AddRange(CoercedSoftmax(model, node));
                    break;
                case "Pad" when from >= 2:
                    rewritten.Add(AttributesToInputs(model, node, ("pads", TensorProto.Types.DataType.Int64), ("value", TensorProto.Types.DataType.Float)));
                    break;
                case "Clip" when from >= 6:
                    rewritten.Add(AttributesToInputs(model, node, ("min", TensorProto.Types.DataType.Float), ("max", TensorProto.Types.DataType.Float)));
                    break;
                case "Slice":
                    // Before opset 10 starts/ends/axes are attributes; from 10 on they are inputs in that order.
                    rewritten.Add(AttributesToInputs(model, node, ("starts", TensorProto.Types.DataType.Int64), ("ends", TensorProto.Types.DataType.Int64),
                        ("axes", TensorProto.Types.DataType.Int64)));
                    break;
                case "Squeeze" or "Unsqueeze" or "ReduceSum" or "ReduceMean" or "ReduceMax" or "ReduceMin":
                    rewritten.Add(AttributesToInputs(model, node, ("axes", TensorProto.Types.DataType.Int64)));
                    break;
                case "Split":
                    bool hasSplit = node.Attribute.Any(a => a.Name == "split") || node.Input.Count > 1;
                    NodeProto split = AttributesToInputs(model, node, ("split", TensorProto.Types.DataType.Int64));
                    if (!hasSplit && target >= 18)
                    {
                        split.Attribute.Add(new AttributeProto { Name = "num_outputs", Type = AttributeProto.Types.AttributeType.Int, I = node.Output.Count });
                    }
                    rewritten.Add(split);
                    break;
                default:
                    throw Unsupported(model, node, from, target, "BitBudget does not know that its semantics are unchanged");
            }
        }
        graph.Node.Clear();
        graph.Node.AddRange(rewritten);
        model.RaiseOpset(target);
    }

    static BitBudgetException Unsupported(OnnxModel model, NodeProto node, long from, long target, string why) => Errors.InvalidInput(
        $"Model '{model.Source}' cannot be raised from opset {from} to {target} (needed for the quantized types): operator {node.OpType} in node '{NodeName(node)}' is not supported because {why}.");

    internal static string NodeName(NodeProto node) => node.Name.Length > 0 ? node.Name : node.Output.FirstOrDefault() ?? "?";

    static NodeProto Make(string op, string name, IEnumerable<string> inputs, IEnumerable<string> outputs)
    {
        var node = new NodeProto { OpType = op, Name = name };
        node.Input.AddRange(inputs);
        node.Output.AddRange(outputs);
        return node;
    }

    /// <summary>Before opset 13 Softmax flattens the input to 2-D at 'axis' (default 1); Flatten → Softmax(axis 1) → Reshape(Shape(x)) is exact.</summary>
    static IEnumerable<NodeProto> CoercedSoftmax(OnnxModel model, NodeProto node)
    {
        long axis = node.Attribute.FirstOrDefault(a => a.Name == "axis")?.I ?? 1;
        string x = node.Input[0], name = NodeName(node);
        string shape = ModelPreparer.UniqueName(model, $"{name}_shape");
        string flat = ModelPreparer.UniqueName(model, $"{name}_flat");
        string soft = ModelPreparer.UniqueName(model, $"{name}_2d");
        NodeProto shapeNode = Make("Shape", shape, [x], [shape]);
        NodeProto flatten = Make("Flatten", flat, [x], [flat]);
        flatten.Attribute.Add(new AttributeProto { Name = "axis", Type = AttributeProto.Types.AttributeType.Int, I = axis });
        NodeProto softmax = Make(node.OpType, name, [flat], [soft]);
        softmax.Attribute.Add(new AttributeProto { Name = "axis", Type = AttributeProto.Types.AttributeType.Int, I = 1 });
        NodeProto reshape = Make("Reshape", $"{name}_reshape", [soft, shape], [node.Output[0]]);
        return [shapeNode, flatten, softmax, reshape];
    }

    /// <summary>Moves attributes that later opsets take as inputs into constant initializers, in the given input order.</summary>
    static NodeProto AttributesToInputs(OnnxModel model, NodeProto node, params (string Name, TensorProto.Types.DataType Type)[] moved)
    {
        var result = node.Clone();
        foreach ((string name, TensorProto.Types.DataType type) in moved)
        {
            AttributeProto? attribute = result.Attribute.FirstOrDefault(a => a.Name == name);
            string input = "";
            if (attribute is not null)
            {
                result.Attribute.Remove(attribute);
                input = ModelPreparer.UniqueName(model, $"{NodeName(node)}_{name}");
                TensorProto tensor = type == TensorProto.Types.DataType.Int64
                    ? TensorData.Int64(input, [attribute.Ints.Count], [.. attribute.Ints])
                    : TensorData.Float(input, [], [attribute.F]);
                model.Graph.Initializer.Add(tensor);
            }
            result.Input.Add(input);
        }
        while (result.Input.Count > 0 && result.Input[^1].Length == 0) { result.Input.RemoveAt(result.Input.Count - 1); }
        return result;
    }
}

using BitBudget.Graph.Onnx;

namespace BitBudget.Graph;

/// <summary>
/// Element types of a model's tensors, so that a tensor exposed as an extra output or fed to a slice is declared with its
/// real type (a transformer's shape arithmetic runs on int64 and bool). Declared types (graph inputs, initializers,
/// value_info) win; the rest follow each operator's type rule in node order.
/// </summary>
internal static class TensorTypes
{
    const int Float = (int)TensorProto.Types.DataType.Float;
    const int Int64 = (int)TensorProto.Types.DataType.Int64;
    const int Bool = (int)TensorProto.Types.DataType.Bool;

    /// <summary>The element type of every tensor the graph defines (ONNX <c>TensorProto.DataType</c> codes).</summary>
    public static Dictionary<string, int> Infer(GraphProto graph)
    {
        var types = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (ValueInfoProto v in graph.Input.Concat(graph.ValueInfo).Concat(graph.Output))
        {
            if (v.Type?.TensorType is { ElemType: > 0 } t) { types[v.Name] = t.ElemType; }
        }
        foreach (TensorProto t in graph.Initializer) { types[t.Name] = t.DataType; }
        foreach (NodeProto node in graph.Node)
        {
            int type = Rule(node, types);
            foreach (string output in node.Output)
            {
                if (output.Length > 0) { types.TryAdd(output, type); }
            }
        }
        return types;
    }

    /// <summary>The element type of <paramref name="node"/>'s (first) output from its inputs' types.</summary>
    static int Rule(NodeProto node, Dictionary<string, int> types)
    {
        int InputType(int i) => i < node.Input.Count && types.TryGetValue(node.Input[i], out int t) ? t : Float;
        AttributeProto? Attribute(string name) => node.Attribute.FirstOrDefault(a => a.Name == name);
        if (node.Domain is not ("" or "ai.onnx")) { return InputType(0); }
        return node.OpType switch
        {
            "Shape" or "Size" or "NonZero" or "ArgMax" or "ArgMin" => Int64,
            "Equal" or "Less" or "Greater" or "LessOrEqual" or "GreaterOrEqual" or "Not" or "And" or "Or" or "Xor" or "IsNaN" or "IsInf" => Bool,
            "Cast" => (int)(Attribute("to")?.I ?? Float),
            "CastLike" => InputType(1),
            "Constant" => Attribute("value")?.T?.DataType ?? (Attribute("value_ints") is not null || Attribute("value_int") is not null ? Int64 : Float),
            "ConstantOfShape" => Attribute("value")?.T?.DataType ?? Float,
            "Where" => InputType(1),
            "QuantizeLinear" => node.Input.Count > 2 ? InputType(2) : (int)TensorProto.Types.DataType.Uint8,
            "DequantizeLinear" => node.Input.Count > 1 ? InputType(1) : Float,
            _ => InputType(0),
        };
    }

    /// <summary>A value info declaring <paramref name="name"/> with its inferred type (float when unknown).</summary>
    public static ValueInfoProto Value(string name, IReadOnlyDictionary<string, int> types) => new()
    {
        Name = name,
        Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = types.TryGetValue(name, out int t) ? t : Float } },
    };

    /// <summary>Whether <paramref name="name"/> holds floats (tensors of unknown type count as float).</summary>
    public static bool IsFloat(string name, IReadOnlyDictionary<string, int> types) => !types.TryGetValue(name, out int t) || t == Float;
}

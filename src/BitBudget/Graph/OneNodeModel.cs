using BitBudget.Graph.Onnx;

namespace BitBudget.Graph;

/// <summary>Serialized one-node float models with symbolic dimensions (the small products other stages hand to ONNX Runtime's kernels).</summary>
internal static class OneNodeModel
{
    /// <summary>
    /// A model of one <paramref name="opType"/> node (default domain, opset 13) reading <paramref name="nodeInputs"/> (a name may repeat),
    /// with float graph inputs <paramref name="inputs"/> and output <paramref name="output"/> (dimension names), and integer attributes.
    /// </summary>
    public static byte[] Build(string opType, string[] nodeInputs, (string Name, string[] Dims)[] inputs, (string Name, string[] Dims) output,
        params (string Name, long Value)[] attributes)
    {
        var node = new NodeProto { OpType = opType, Name = opType.ToLowerInvariant() };
        node.Input.Add(nodeInputs);
        node.Output.Add(output.Name);
        foreach ((string name, long value) in attributes)
        {
            node.Attribute.Add(new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value });
        }
        var graph = new GraphProto { Name = node.Name };
        graph.Node.Add(node);
        graph.Input.Add(inputs.Select(i => Value(i.Name, i.Dims)));
        graph.Output.Add(Value(output.Name, output.Dims));
        var proto = new ModelProto { IrVersion = 8, ProducerName = "bitbudget", Graph = graph };
        proto.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 13 });
        return new OnnxModel(proto).ToBytes();
    }

    static ValueInfoProto Value(string name, string[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (string d in dims) { shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimParam = d }); }
        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float, Shape = shape } },
        };
    }
}

using BitBudget.Graph;
using BitBudget.Graph.Onnx;

namespace BitBudget.Tests.Support;

/// <summary>Builds small ONNX models in code with known answers.</summary>
internal static class TinyModels
{
    public static ValueInfoProto Value(string name, params long[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (long d in dims)
        {
            shape.Dim.Add(d < 0 ? new TensorShapeProto.Types.Dimension { DimParam = "N" } : new TensorShapeProto.Types.Dimension { DimValue = d });
        }
        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float, Shape = shape } },
        };
    }

    public static NodeProto Node(string op, string[] inputs, string[] outputs, string? name = null, params AttributeProto[] attributes)
    {
        var node = new NodeProto { OpType = op, Name = name ?? outputs[0] };
        node.Input.AddRange(inputs);
        node.Output.AddRange(outputs);
        node.Attribute.AddRange(attributes);
        return node;
    }

    public static AttributeProto Ints(string name, params long[] values)
    {
        var a = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        a.Ints.AddRange(values);
        return a;
    }

    public static AttributeProto Int(string name, long value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };

    public static AttributeProto Float(string name, float value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = value };

    public static TensorProto Tensor(string name, long[] dims, int seed, float scale = 0.5f)
    {
        long n = dims.Aggregate(1L, (a, b) => a * b);
        float[] values = OrtHelpers.Deterministic((int)n, seed);
        for (int i = 0; i < values.Length; i++) { values[i] *= scale; }
        return TensorData.Float(name, dims, values);
    }

    public static TensorProto Tensor(string name, long[] dims, float[] values) => TensorData.Float(name, dims, values);

    public static OnnxModel Model(IEnumerable<NodeProto> nodes, IEnumerable<TensorProto> initializers, ValueInfoProto input, ValueInfoProto output, long opset = 13)
    {
        var graph = new GraphProto { Name = "tiny" };
        graph.Node.AddRange(nodes);
        graph.Initializer.AddRange(initializers);
        graph.Input.Add(input);
        graph.Output.Add(output);
        var proto = new ModelProto { IrVersion = 8, ProducerName = "bitbudget-tests", Graph = graph };
        proto.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = opset });
        return new OnnxModel(proto) { Source = "tiny.onnx" };
    }

    /// <summary>x[N,3,8,8] → Conv(4, 3×3, pad 1) → BatchNormalization → Relu → y.</summary>
    public static OnnxModel ConvBatchNorm()
    {
        float[] variance = [0.5f, 1.5f, 2.0f, 0.25f];
        return Model(
            [
                Node("Conv", ["x", "w", "b"], ["c"], "conv", Ints("kernel_shape", 3, 3), Ints("pads", 1, 1, 1, 1)),
                Node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["bn"], "bn", Float("epsilon", 1e-3f)),
                Node("Relu", ["bn"], ["y"], "relu"),
            ],
            [
                Tensor("w", [4, 3, 3, 3], seed: 1), Tensor("b", [4], seed: 2),
                Tensor("gamma", [4], seed: 3, scale: 2f), Tensor("beta", [4], seed: 4),
                Tensor("mean", [4], seed: 5), Tensor("var", [4], variance),
            ],
            Value("x", -1, 3, 8, 8), Value("y", -1, 4, 8, 8));
    }

    /// <summary>x[N,3,8,8] → Conv(4) → Relu → GlobalAveragePool → Flatten → Gemm(3) → Relu → Gemm(3) → y[N,3]; <paramref name="poison"/> goes into w1[5].</summary>
    public static OnnxModel Classifier(float? poison = null, long opset = 13)
    {
        TensorProto w1 = Tensor("w1", [4, 3, 3, 3], seed: 1);
        if (poison is float p)
        {
            float[] values = TensorData.ReadFloats(w1);
            values[5] = p;
            w1 = Tensor("w1", [4, 3, 3, 3], values);
        }
        return Model(
            [
                Node("Conv", ["x", "w1", "b1"], ["c1"], "conv", Ints("kernel_shape", 3, 3), Ints("pads", 1, 1, 1, 1)),
                Node("Relu", ["c1"], ["r1"], "relu1"),
                Node("GlobalAveragePool", ["r1"], ["p"], "pool"),
                Node("Flatten", ["p"], ["f"], "flatten"),
                Node("Gemm", ["f", "w2", "b2"], ["g"], "fc1", Int("transB", 1)),
                Node("Relu", ["g"], ["r2"], "relu2"),
                Node("Gemm", ["r2", "w3", "b3"], ["y"], "fc2", Int("transB", 1)),
            ],
            [
                w1, Tensor("b1", [4], seed: 2), Tensor("w2", [3, 4], seed: 3), Tensor("b2", [3], seed: 4),
                Tensor("w3", [3, 3], seed: 5), Tensor("b3", [3], seed: 6),
            ],
            Value("x", -1, 3, 8, 8), Value("y", -1, 3), opset);
    }
}

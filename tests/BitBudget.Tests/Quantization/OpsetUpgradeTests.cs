using BitBudget.Graph;
using BitBudget.Graph.Onnx;
using BitBudget.Quantization;
using BitBudget.Tests.Support;
using static BitBudget.Tests.Support.TinyModels;

namespace BitBudget.Tests.Quantization;

/// <summary>
/// Every operator of standard ViT/DeiT exports raised to the quantized types' opsets (21 for INT4, 25 for INT2): the raised
/// model must load in ONNX Runtime and give exactly the logits of the original.
/// </summary>
public class OpsetUpgradeTests
{
    static readonly long[] s_shape = [2, 3, 4];

    static TensorProto Int64s(string name, params long[] values) => TensorData.Int64(name, [values.Length], values);

    static TensorProto Scalar(string name, float value) => TensorData.Float(name, [], [value]);

    static AttributeProto FloatTensor(string name, float value) => new()
    {
        Name = name, Type = AttributeProto.Types.AttributeType.Tensor, T = TensorData.Float("value", [1], [value]),
    };

    static AttributeProto IntAttr(string name, long value) => Int(name, value);

    /// <summary>One case: nodes from float x[2,3,4] to float y, at opset <c>From</c>.</summary>
    internal sealed record Case(string Name, long From, NodeProto[] Nodes, TensorProto[] Initializers)
    {
        public override string ToString() => $"{Name}@{From}";
    }

    static Case C(string name, long from, NodeProto[] nodes, params TensorProto[] initializers) => new(name, from, nodes, initializers);

    static readonly Case[] s_cases =
    [
        C("LayerNormalization", 17, [Node("LayerNormalization", ["x", "g", "b"], ["y"], "ln", IntAttr("axis", -1), Float("epsilon", 1e-5f))],
            Tensor("g", [4], seed: 1), Tensor("b", [4], seed: 2)),
        C("Erf", 13, [Node("Erf", ["x"], ["y"])]),
        C("Gelu", 20, [Node("Gelu", ["x"], ["y"])]),
        C("Split with sizes", 13, [Node("Split", ["x", "sizes"], ["a", "b"], "split", IntAttr("axis", 2)), Node("Concat", ["b", "a"], ["y"], "cat", IntAttr("axis", 2))],
            Int64s("sizes", 1, 3)),
        C("Split equal", 13, [Node("Split", ["x"], ["a", "b"], "split", IntAttr("axis", 2)), Node("Sub", ["a", "b"], ["y"])]),
        C("Split attribute", 11, [Node("Split", ["x"], ["a", "b"], "split", IntAttr("axis", 2), Ints("split", 3, 1)), Node("Concat", ["b", "a"], ["y"], "cat", IntAttr("axis", 2))]),
        C("Where Greater", 13, [Node("Greater", ["x", "zero"], ["m"]), Node("Mul", ["x", "tenth"], ["s"]), Node("Where", ["m", "x", "s"], ["y"])],
            Scalar("zero", 0f), Scalar("tenth", 0.1f)),
        C("Expand", 13, [Node("Expand", ["x", "shape"], ["y"])], Int64s("shape", 2, 2, 3, 4)),
        C("ConstantOfShape Shape", 13, [Node("Shape", ["x"], ["s"]), Node("ConstantOfShape", ["s"], ["c"], "c", FloatTensor("value", 1.5f)), Node("Add", ["x", "c"], ["y"])]),
        C("Equal Cast", 13, [Node("Shape", ["x"], ["s"]), Node("Equal", ["s", "ref"], ["e"]), Node("Cast", ["e"], ["y"], "cast", IntAttr("to", 1))],
            Int64s("ref", 2, 5, 4)),
        C("Cast int64", 13, [Node("Mul", ["x", "ten"], ["t"]), Node("Cast", ["t"], ["i"], "toint", IntAttr("to", 7)), Node("Cast", ["i"], ["y"], "tofloat", IntAttr("to", 1))],
            Scalar("ten", 10f)),
        C("Range Gather", 13, [Node("Shape", ["x"], ["s"]), Node("Gather", ["s", "two"], ["n"], "g", IntAttr("axis", 0)),
            Node("Range", ["zero", "n", "one"], ["r"]), Node("Cast", ["r"], ["rf"], "cast", IntAttr("to", 1)), Node("Add", ["x", "rf"], ["y"])],
            TensorData.Int64("two", [], [2]), TensorData.Int64("zero", [], [0]), TensorData.Int64("one", [], [1])),
        C("Slice", 13, [Node("Slice", ["x", "starts", "ends", "axes"], ["y"])], Int64s("starts", 1), Int64s("ends", 3), Int64s("axes", 2)),
        C("Slice attributes", 9, [Node("Slice", ["x"], ["y"], "slice", Ints("starts", 1), Ints("ends", 3), Ints("axes", 2))]),
        C("Gather", 13, [Node("Gather", ["x", "idx"], ["y"], "g", IntAttr("axis", 1))], Int64s("idx", 2, 0)),
        C("Softmax", 13, [Node("Softmax", ["x"], ["y"], "sm", IntAttr("axis", -1))]),
        C("Softmax coerced", 11, [Node("Softmax", ["x"], ["y"], "sm", IntAttr("axis", 2))]),
        C("Concat Transpose Reshape", 13, [Node("Transpose", ["x"], ["t"], "t", Ints("perm", 0, 2, 1)), Node("Reshape", ["t", "shape"], ["r"]),
            Node("Reshape", ["x", "shape"], ["r2"], "r2"), Node("Concat", ["r", "r2"], ["y"], "cat", IntAttr("axis", 1))], Int64s("shape", 2, -1)),
        C("Unsqueeze Squeeze", 13, [Node("Unsqueeze", ["x", "ax"], ["u"]), Node("Squeeze", ["u", "ax"], ["y"])], Int64s("ax", 1)),
        C("Unsqueeze Squeeze attributes", 11, [Node("Unsqueeze", ["x"], ["u"], "u", Ints("axes", 1)), Node("Squeeze", ["u"], ["y"], "s", Ints("axes", 1))]),
        C("Decomposed LayerNorm (ReduceMean Sub Pow Add Sqrt Div Mul)", 13,
            [Node("ReduceMean", ["x"], ["m"], "m", Ints("axes", -1)), Node("Sub", ["x", "m"], ["c"]), Node("Pow", ["c", "two"], ["p"]),
             Node("ReduceMean", ["p"], ["v"], "v", Ints("axes", -1)), Node("Add", ["v", "eps"], ["ve"]), Node("Sqrt", ["ve"], ["sd"]),
             Node("Div", ["c", "sd"], ["n"]), Node("Mul", ["n", "g"], ["ng"]), Node("Add", ["ng", "b"], ["y"], "bias")],
            Scalar("two", 2f), Scalar("eps", 1e-5f), Tensor("g", [4], seed: 3), Tensor("b", [4], seed: 4)),
        C("ReduceMean axes input", 18, [Node("ReduceMean", ["x", "ax"], ["y"], "m", IntAttr("keepdims", 1))], Int64s("ax", -1)),
        C("MatMul attention", 13, [Node("Transpose", ["x"], ["xt"], "t", Ints("perm", 0, 2, 1)), Node("MatMul", ["x", "xt"], ["y"])]),
        C("MatMul weight and Gemm", 13, [Node("MatMul", ["x", "w"], ["h"]), Node("Reshape", ["h", "shape"], ["f"]),
            Node("Gemm", ["f", "w2", "c"], ["y"], "gemm", IntAttr("transB", 1))],
            Tensor("w", [4, 5], seed: 5), Int64s("shape", 2, 15), Tensor("w2", [3, 15], seed: 6), Tensor("c", [3], seed: 7)),
    ];

    public static TheoryData<string> Cases() => new(s_cases.Select(c => c.ToString()));

    static OnnxModel Build(Case c)
    {
        var graph = new GraphProto { Name = "op" };
        graph.Node.AddRange(c.Nodes.Select(n => n.Clone()));
        graph.Initializer.AddRange(c.Initializers.Select(t => t.Clone()));
        graph.Input.Add(Value("x", s_shape));
        // The output's shape varies by case: declare the type only.
        graph.Output.Add(new ValueInfoProto
        {
            Name = "y", Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float } },
        });
        var proto = new ModelProto { IrVersion = 8, ProducerName = "bitbudget-tests", Graph = graph };
        proto.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = c.From });
        return new OnnxModel(proto) { Source = $"{c.Name}.onnx" };
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Raise_EveryTransformerOperator_SameOutputsAt21And25(string name)
    {
        Case c = s_cases.Single(x => x.ToString() == name);
        OnnxModel original = Build(c);
        float[] input = OrtHelpers.Deterministic(24, seed: 11);
        float[] expected = OrtHelpers.Run(original.ToBytes(), "x", input, s_shape, "y");
        Assert.NotEmpty(expected);
        foreach (long target in new long[] { 21, 25 })
        {
            OnnxModel raised = original.Clone();
            OpsetUpgrade.Raise(raised, target);
            Assert.Equal(target, raised.Opset);
            float[] actual = OrtHelpers.Run(raised.ToBytes(), "x", input, s_shape, "y");
            Assert.Equal(expected.Length, actual.Length);
            for (int i = 0; i < expected.Length; i++) { Assert.Equal(expected[i], actual[i], 6); }
        }
    }

    [Fact]
    public void Raise_UnknownOperator_NamesOperatorNodeAndOpsets()
    {
        var c = new Case("Resize", 13, [Node("Resize", ["x", "", "scales"], ["y"], "up")], [TensorData.Float("scales", [3], [1f, 1f, 2f])]);
        OnnxModel model = Build(c);
        var e = Assert.Throws<BitBudgetException>(() => OpsetUpgrade.Raise(model, 21));
        Assert.Equal(ErrorKind.InvalidInput, e.Kind);
        Assert.Contains("from opset 13 to 21", e.Message);
        Assert.Contains("operator Resize in node 'up'", e.Message);
    }

    [Fact]
    public void TensorTypes_ShapeArithmeticIsInt64AndMasksBool()
    {
        OnnxModel model = Build(s_cases.Single(x => x.Name == "Range Gather"));
        var types = TensorTypes.Infer(model.Graph);
        Assert.Equal((int)TensorProto.Types.DataType.Int64, types["s"]);
        Assert.Equal((int)TensorProto.Types.DataType.Int64, types["n"]);
        Assert.Equal((int)TensorProto.Types.DataType.Int64, types["r"]);
        Assert.Equal((int)TensorProto.Types.DataType.Float, types["rf"]);
        var masks = TensorTypes.Infer(Build(s_cases.Single(x => x.Name == "Equal Cast")).Graph);
        Assert.Equal((int)TensorProto.Types.DataType.Bool, masks["e"]);
        // Exposing a shape tensor as an extra output declares its real type, so ORT loads the model.
        OnnxModel exposed = model.WithOutputs(["s", "r"]);
        using var session = new Microsoft.ML.OnnxRuntime.InferenceSession(exposed.ToBytes());
        Assert.Equal(Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Int64, session.OutputMetadata["s"].ElementDataType);
    }
}

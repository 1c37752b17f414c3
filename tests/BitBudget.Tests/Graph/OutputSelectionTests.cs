using BitBudget.Graph;
using BitBudget.Graph.Onnx;
using BitBudget.Tests.Support;
using static BitBudget.Tests.Support.TinyModels;

namespace BitBudget.Tests.Graph;

/// <summary>One classifier output per prepared model, and what it holds.</summary>
public class OutputSelectionTests
{
    /// <summary>x → Conv → Relu → Flatten → logits, plus a second output computed from a second input only it reads.</summary>
    static OnnxModel WithSideBranch()
    {
        OnnxModel model = Model(
            [
                Node("Conv", ["x", "w", "b"], ["c"], "conv", Ints("kernel_shape", 3, 3)),
                Node("Relu", ["c"], ["r"], "relu"),
                Node("Flatten", ["r"], ["logits"], "flatten"),
                Node("Mul", ["r", "side"], ["features"], "side_mul"),
            ],
            [Tensor("w", [4, 3, 3, 3], seed: 1), Tensor("b", [4], seed: 2)],
            Value("x", -1, 3, 3, 3), Value("logits", -1, 4));
        model.Proto.Graph.Input.Add(Value("side", -1, 4, 1, 1));
        model.Proto.Graph.Output.Add(Value("features", -1, 4, 1, 1));
        return model;
    }

    [Fact]
    public void DroppedOutputsTakeTheirNodesAndInputsWithThem()
    {
        (OnnxModel prepared, PreparationReport report) = ModelPreparer.Prepare(WithSideBranch());
        Assert.Equal("logits", report.Output);
        Assert.Equal(["features"], report.DroppedOutputs);
        Assert.DoesNotContain(prepared.Proto.Graph.Node, n => n.Name == "side_mul");
        Assert.Equal(["x"], prepared.Proto.Graph.Input.Select(i => i.Name));
        float[] y = OrtHelpers.Run(prepared.ToBytes(), "x", OrtHelpers.Deterministic(2 * 27, 3), [2, 3, 3, 3]);
        Assert.Equal(8, y.Length);

        // Choosing "features" keeps the second data input it reads: a model with two data inputs is refused in one line.
        var twoInputs = Assert.Throws<BitBudgetException>(() => ModelPreparer.Prepare(WithSideBranch(), "features"));
        Assert.Equal(ErrorKind.InvalidInput, twoInputs.Kind);
        Assert.Contains("has 2 data inputs (x, side)", twoInputs.Message, StringComparison.Ordinal);
        var e = Assert.Throws<BitBudgetException>(() => ModelPreparer.Prepare(WithSideBranch(), "probs"));
        Assert.Equal(ErrorKind.InvalidInput, e.Kind);
        Assert.Contains("'logits', 'features'", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("Softmax", OutputKind.Probabilities)]
    [InlineData("LogSoftmax", OutputKind.LogProbabilities)]
    [InlineData("Relu", OutputKind.Logits)]
    public void KindIsReadThroughShapeOnlyNodes(string head, OutputKind kind)
    {
        OnnxModel model = Model(
            [
                Node("Gemm", ["x", "w"], ["g"], "fc", Int("transB", 1)),
                Node(head, ["g"], ["h"], "head"),
                Node("Identity", ["h"], ["i"], "identity"),
                Node("Reshape", ["i", "shape"], ["y"], "reshape"),
            ],
            [Tensor("w", [5, 4], seed: 1), TensorData.Int64("shape", [2], [0, -1])],
            Value("x", -1, 4), Value("y", -1, 5));
        Assert.Equal(kind, OutputKinds.Detect(model));
        Assert.Equal(kind, ModelPreparer.Prepare(model).Report.OutputKind);
        Assert.Equal(kind, OutputKinds.Parse(OutputKinds.Name(kind)));
        Assert.Throws<BitBudgetException>(() => OutputKinds.Parse("scores"));
    }
}

using BitBudget.Graph;
using BitBudget.Tests.Support;
using static BitBudget.Tests.Support.TinyModels;

namespace BitBudget.Tests.Graph;

/// <remarks>
/// Source of the inventory figures (layers, weights, weight + bias, initializer elements, MACs): an independent recount
/// with the onnx package and ONNX shape inference, <c>/usr/bin/python3 tests/scripts/layer_counts.py MODEL…</c>
/// (ResNet-20 22 layers, 270,896 / 271,690 / 271,692, 40,813,184 MACs; SqueezeNet 1.1 26 Conv, 1,235,496;
/// mnist-8 3 layers, 5,960 / 5,984 / 5,998, 786,560 MACs). Shapes and per-layer MACs are arithmetic written beside them.
/// </remarks>
public class ModelInspectorTests
{
    [Fact]
    public void Inspect_ResNet20_MatchesPublishedInventory()
    {
        (_, ModelSummary s) = ModelInspector.Inspect(OnnxModel.Load(Assets.ResNet20));
        Assert.Equal(22, s.Layers.Count);
        Assert.Equal("21 Conv + 1 Gemm", s.OpCounts);
        Assert.Equal(270_896, s.TotalWeights);
        Assert.Equal(271_690, s.TotalParameters);              // weights + biases of the 22 layers
        Assert.Equal(271_692, s.ModelInitializerElements);     // + the Reshape's 2-element shape constant
        Assert.InRange(s.TotalMacs, 40_000_000, 42_000_000);
        Assert.True(s.Layers[0].IsFirst);
        Assert.True(s.Layers[^1].IsLast);
        Assert.Equal([1L, 16, 32, 32], s.Layers[0].OutputShape);
        Assert.Equal(16 * 32 * 32 * 27, s.Layers[0].MacsPerImage);
        Assert.Equal(640, s.Layers[^1].MacsPerImage);
    }

    [Fact]
    public void Inspect_SqueezeNet_26ConvAnd1235496Parameters()
    {
        (_, ModelSummary s) = ModelInspector.Inspect(OnnxModel.Load(Assets.SqueezeNet));
        Assert.Equal(26, s.Layers.Count);
        Assert.Equal("26 Conv", s.OpCounts);
        Assert.Equal(1_235_496, s.TotalParameters);
        Assert.Equal([1L, 1000, 13, 13], s.Layers[^1].OutputShape);
    }

    [Fact]
    public void Inspect_Mnist8_ThreeLayersWithFoldedBiasesAndReshapedWeight()
    {
        (OnnxModel prepared, ModelSummary s) = ModelInspector.Inspect(OnnxModel.Load(Assets.Mnist8));
        Assert.Equal(3, s.Layers.Count);
        Assert.Equal("2 Conv + 1 MatMul", s.OpCounts);
        Assert.Equal([256L, 10], s.Layers[2].WeightShape);     // Reshape(Parameter193) folded into a plain initializer
        Assert.Equal(1, s.Layers[2].ChannelAxis);
        Assert.Equal(2, s.Preparation.FoldedBiasAdds);
        Assert.Equal(5_998, s.ModelInitializerElements);
        float[] input = OrtHelpers.Deterministic(784);
        float[] before = OrtHelpers.Run(File.ReadAllBytes(Assets.Mnist8), "Input3", input, [1, 1, 28, 28]);
        float[] after = OrtHelpers.Run(prepared.ToBytes(), "Input3", input, [1, 1, 28, 28]);
        for (int k = 0; k < 10; k++) { Assert.Equal(before[k], after[k], 1e-4f); }
    }

    [Fact]
    public void Prepare_ConvBatchNorm_FoldsExactly()
    {
        OnnxModel model = ConvBatchNorm();
        (OnnxModel prepared, PreparationReport report) = ModelPreparer.Prepare(model);
        Assert.Equal(1, report.FoldedBatchNorms);
        Assert.DoesNotContain(prepared.Graph.Node, n => n.OpType == "BatchNormalization");
        float[] input = OrtHelpers.Deterministic(2 * 3 * 8 * 8, seed: 11);
        float[] expected = OrtHelpers.Run(model.ToBytes(), "x", input, [2, 3, 8, 8]);
        float[] actual = OrtHelpers.Run(prepared.ToBytes(), "x", input, [2, 3, 8, 8]);
        for (int i = 0; i < expected.Length; i++) { Assert.Equal(expected[i], actual[i], 1e-5f); }
        ModelSummary s = ModelInspector.Summarize(prepared);
        Assert.Single(s.Layers);
        Assert.Equal(4, s.Layers[0].BiasCount);
    }

    [Fact]
    public void Inspect_TransposedAndIdentityWeights_AreLayers()
    {
        OnnxModel model = Model(
            [
                Node("Transpose", ["wt"], ["w1"], "t", Ints("perm", 1, 0)),
                Node("MatMul", ["x", "w1"], ["h"], "fc1"),
                Node("Identity", ["w2raw"], ["w2"], "id"),
                Node("Gemm", ["h", "w2", "b2"], ["y"], "fc2", Int("transB", 1)),
            ],
            [Tensor("wt", [6, 5], seed: 1), Tensor("w2raw", [3, 6], seed: 2), Tensor("b2", [3], seed: 3)],
            Value("x", -1, 5), Value("y", -1, 3));
        (OnnxModel prepared, ModelSummary s) = ModelInspector.Inspect(model);
        Assert.Equal(2, s.Layers.Count);
        Assert.Equal([5L, 6], s.Layers[0].WeightShape);
        Assert.Equal(30, s.Layers[0].MacsPerImage);
        Assert.Equal(18, s.Layers[1].MacsPerImage);
        float[] input = OrtHelpers.Deterministic(4 * 5, seed: 5);
        Assert.Equal(OrtHelpers.Run(model.ToBytes(), "x", input, [4, 5]), OrtHelpers.Run(prepared.ToBytes(), "x", input, [4, 5]));
    }

    [Fact]
    public void Inspect_SharedWeight_IsOneLayerWithSummedMacs()
    {
        OnnxModel model = Model(
            [
                Node("Conv", ["x", "w"], ["a"], "conv_a", Ints("kernel_shape", 1, 1)),
                Node("Conv", ["a", "w"], ["y"], "conv_b", Ints("kernel_shape", 1, 1)),
            ],
            [Tensor("w", [2, 2, 1, 1], seed: 1)],
            Value("x", -1, 2, 4, 4), Value("y", -1, 2, 4, 4));
        ModelSummary s = ModelInspector.Summarize(ModelPreparer.Prepare(model).Model);
        LayerInfo layer = Assert.Single(s.Layers);
        Assert.Equal(["conv_a", "conv_b"], layer.NodeNames);
        Assert.Equal(2 * (2 * 16 * 2), layer.MacsPerImage);
    }

    [Fact]
    public void Inspect_SharedWeight_KeepsEachNodesConvGeometry()
    {
        // One weight read by two Convs of different geometry: the layer description holds both, in graph order.
        OnnxModel model = Model(
            [
                Node("Conv", ["x", "w"], ["a"], "conv_a", Ints("kernel_shape", 3, 3), Ints("pads", 1, 1, 1, 1)),
                Node("Conv", ["a", "w"], ["y"], "conv_b", Ints("kernel_shape", 3, 3), Ints("strides", 2, 2), Ints("pads", 0, 0, 1, 1)),
            ],
            [Tensor("w", [2, 2, 3, 3], seed: 1)],
            Value("x", -1, 2, 6, 6), Value("y", -1, 2, 3, 3));
        LayerInfo layer = Assert.Single(ModelInspector.Summarize(model).Layers);
        Assert.Equal(
            [new ConvGeometry(3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1), new ConvGeometry(3, 3, 2, 2, 1, 1, 0, 0, 1, 1, 1)],
            layer.NodeGeometry);
        Assert.Equal(new ConvOutput(3, 3, 0, 0), layer.NodeGeometry[1]!.Output(6, 6));
        Assert.Equal(2 * 36 * 18 + 2 * 9 * 18, layer.MacsPerImage);
    }

    [Fact]
    public void Inspect_Gemm_HasNoConvGeometry()
    {
        LayerInfo fc = ModelInspector.Summarize(Rounding.LayerInputStatisticsTests.GroupedConvGemm()).Layers[1];
        Assert.Equal("Gemm", fc.OpType);
        Assert.Equal([null], fc.NodeGeometry);
    }

    [Fact]
    public void Inspect_DepthwiseConv_CountsGroups()
    {
        OnnxModel model = Model(
            [Node("Conv", ["x", "w"], ["y"], "dw", Ints("kernel_shape", 3, 3), Ints("pads", 1, 1, 1, 1), Int("group", 4))],
            [Tensor("w", [4, 1, 3, 3], seed: 1)],
            Value("x", -1, 4, 6, 6), Value("y", -1, 4, 6, 6));
        LayerInfo layer = Assert.Single(ModelInspector.Summarize(model).Layers);
        Assert.Equal(4, layer.Groups);
        Assert.Equal(4 * 36 * 9, layer.MacsPerImage);
    }
}

using BitBudget.Graph;
using BitBudget.Quantization;
using BitBudget.Rounding;
using BitBudget.Tests.Support;
using static BitBudget.Tests.Support.TinyModels;

namespace BitBudget.Tests.Rounding;

public class LayerInputStatisticsTests
{
    /// <summary>x[N,4,9,9] → Conv(6, 3×3, group 2, stride 2, pads top 1 left 0 bottom 1 right 2, dilation 2) → Flatten → Gemm(5).</summary>
    internal static OnnxModel GroupedConvGemm() => Model(
        [
            Node("Conv", ["x", "w"], ["c"], "conv", Ints("kernel_shape", 3, 3), Int("group", 2), Ints("strides", 2, 2),
                Ints("pads", 1, 0, 1, 2), Ints("dilations", 2, 2)),
            Node("Flatten", ["c"], ["f"], "flatten", Int("axis", 1)),
            Node("Gemm", ["f", "w2", "b2"], ["y"], "fc", Int("transB", 1)),
        ],
        [Tensor("w", [6, 2, 3, 3], seed: 11), Tensor("w2", [5, 96], seed: 12, scale: 0.2f), Tensor("b2", [5], seed: 13)],
        Value("x", -1, 4, 9, 9), Value("y", -1, 5));

    internal static (float[] Data, long[] Shape)[] RandomBatches(int batches, int perBatch, long[] imageShape, int seed)
    {
        var result = new (float[], long[])[batches];
        long size = imageShape.Aggregate(1L, (a, b) => a * b);
        for (int b = 0; b < batches; b++)
        {
            result[b] = (OrtHelpers.Deterministic((int)(perBatch * size), seed + b), [perBatch, .. imageShape]);
        }
        return result;
    }

    [Fact]
    public void Collect_GroupedStridedDilatedPaddedConvAndGemm_MatchesDoubleReference()
    {
        (OnnxModel prepared, ModelSummary summary) = ModelInspector.Inspect(GroupedConvGemm());
        var batches = RandomBatches(2, 3, [4, 9, 9], seed: 21);
        IReadOnlyList<LayerStatistics> stats = LayerInputStatistics.Collect(prepared, summary.Layers, batches, cancellationToken: TestContext.Current.CancellationToken);

        LayerStatistics conv = stats[0];
        Assert.Equal((2, 18, 2L * 3 * 16), (conv.Groups, conv.K, conv.Columns));
        for (int g = 0; g < 2; g++)
        {
            var refH = new double[18 * 18];
            var refSum = new double[18];
            foreach ((float[] data, long[] shape) in batches)
            {
                (double[] h, double[] sum, _) = StatisticsReference.ConvGram(data, shape, g, 2, 3, 3, 2, [1, 0, 1, 2], 2);
                for (int i = 0; i < h.Length; i++) { refH[i] += h[i]; }
                for (int i = 0; i < sum.Length; i++) { refSum[i] += sum[i]; }
            }
            Assert.True(StatisticsReference.RelativeError(conv.H(g), refH) < 1e-6, $"group {g}");
            double[] mean = conv.Mean(g);
            for (int i = 0; i < 18; i++) { Assert.Equal(refSum[i] / 96, mean[i], 1e-6); }
        }

        LayerStatistics fc = stats[1];
        Assert.Equal((1, 96, 6L), (fc.Groups, fc.K, fc.Columns));
        var fcRef = new double[96 * 96];
        foreach ((float[] data, long[] shape) in batches)
        {
            (float[] f, _) = StatisticsReference.Capture(prepared, "f", data, shape);
            double[] h = StatisticsReference.RowGram(f, 96);
            for (int i = 0; i < h.Length; i++) { fcRef[i] += h[i]; }
        }
        Assert.True(StatisticsReference.RelativeError(fc.H(0), fcRef) < 1e-6);
    }

    [Fact]
    public void Collect_ResNet20StridedLayerAndFc_MatchDoubleReferenceWithin1e5()
    {
        (OnnxModel prepared, ModelSummary summary) = ModelInspector.Inspect(OnnxModel.Load(Assets.ResNet20));
        (float[] images, _) = Assets.EranCifar(24);
        var batches = new[] { (images[..(12 * 3072)], new long[] { 12, 3, 32, 32 }), (images[(12 * 3072)..], new long[] { 12, 3, 32, 32 }) };
        // The first stride-2 3×3 conv (16 → 32 channels) and the final Gemm.
        LayerInfo strided = summary.Layers.First(l => l.OpType == "Conv" && l.WeightShape[1] == 16 && l.WeightShape[0] == 32 && l.WeightShape[2] == 3);
        LayerInfo fc = summary.Layers[^1];
        IReadOnlyList<LayerStatistics> stats = LayerInputStatistics.Collect(prepared, [strided, fc], batches, cancellationToken: TestContext.Current.CancellationToken);

        var convRef = new double[144 * 144];
        var fcRef = new double[64 * 64];
        foreach ((float[] data, long[] shape) in batches)
        {
            (float[] x, long[] xShape) = StatisticsReference.Capture(prepared, strided.InputName, data, shape);
            (double[] h, _, _) = StatisticsReference.ConvGram(x, xShape, 0, 1, 3, 3, 2, [1, 1, 1, 1], 1);
            for (int i = 0; i < h.Length; i++) { convRef[i] += h[i]; }
            (float[] f, _) = StatisticsReference.Capture(prepared, fc.InputName, data, shape);
            double[] hf = StatisticsReference.RowGram(f, 64);
            for (int i = 0; i < hf.Length; i++) { fcRef[i] += hf[i]; }
        }
        Assert.Equal(24L * 16 * 16, stats[0].Columns);
        Assert.True(StatisticsReference.RelativeError(stats[0].H(0), convRef) < 1e-5);
        Assert.True(StatisticsReference.RelativeError(stats[1].H(0), fcRef) < 1e-5);
    }

    [Fact]
    public void Collect_ReadsTheConvGeometryFromTheLayerDescription()
    {
        // The statistics take kernel/strides/pads from LayerInfo.NodeGeometry, not from the node's attributes: a layer whose
        // description says stride 1 gives 7×7 output positions per image where the node (stride 2) would give 4×4.
        (OnnxModel prepared, ModelSummary summary) = ModelInspector.Inspect(GroupedConvGemm());
        LayerInfo conv = summary.Layers[0];
        var batches = RandomBatches(2, 3, [4, 9, 9], seed: 21);
        CancellationToken ct = TestContext.Current.CancellationToken;
        Assert.Equal(6L * 4 * 4, LayerInputStatistics.Collect(prepared, [conv], batches, cancellationToken: ct)[0].Columns);
        LayerInfo unstrided = conv with { NodeGeometry = [conv.NodeGeometry[0]! with { StrideH = 1, StrideW = 1 }] };
        Assert.Equal(6L * 7 * 7, LayerInputStatistics.Collect(prepared, [unstrided], batches, cancellationToken: ct)[0].Columns);

        var e = Assert.Throws<BitBudgetException>(() => LayerInputStatistics.Collect(prepared, [conv with { NodeGeometry = [] }], batches, cancellationToken: ct));
        Assert.Contains("is read by 1 node(s)", e.Message);
    }

    [Fact]
    public void Collect_NaNInLayerInput_ThrowsNamingTheLayer()
    {
        (OnnxModel prepared, ModelSummary summary) = ModelInspector.Inspect(GroupedConvGemm());
        var batches = RandomBatches(1, 2, [4, 9, 9], seed: 3);
        // Row 1, column 0 of channel 0: with stride 2, dilation 2 and top pad 1 only odd rows and even columns are read.
        batches[0].Data[9] = float.NaN;
        var e = Assert.Throws<BitBudgetException>(() => LayerInputStatistics.Collect(prepared, summary.Layers, batches, cancellationToken: TestContext.Current.CancellationToken));
        Assert.Equal(ErrorKind.InvalidInput, e.Kind);
        Assert.Equal("Layer 'conv' receives NaN or infinite input values on the calibration images; check the images and their preprocessing.", e.Message);
    }

    [Fact]
    public void Collect_InfinityReachingOnlyTheSecondLayer_ThrowsNamingIt()
    {
        (OnnxModel prepared, ModelSummary summary) = ModelInspector.Inspect(GroupedConvGemm());
        var batches = RandomBatches(1, 2, [4, 9, 9], seed: 3);
        // Only the Gemm is measured here, so the first layer's statistics cannot be the ones that fail.
        batches[0].Data[9] = float.PositiveInfinity;
        var e = Assert.Throws<BitBudgetException>(() => LayerInputStatistics.Collect(prepared, [summary.Layers[1]], batches, cancellationToken: TestContext.Current.CancellationToken));
        Assert.Contains("'fc'", e.Message);
    }
}

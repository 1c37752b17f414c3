using BitBudget.Graph;
using BitBudget.Graph.Onnx;
using BitBudget.Quantization;
using BitBudget.Rounding;
using BitBudget.Tests.Support;
using Google.Protobuf;
using static BitBudget.Tests.Support.TinyModels;

namespace BitBudget.Tests.Rounding;

/// <summary>The shifted-product H of stride-1 convs (<see cref="ShiftedConvGram"/>) against the double-precision im2col reference and the im2col path.</summary>
public class LayerInputStatisticsShiftedTests
{
    /// <summary>One stride-1 Conv: input channels, image size, kernel, groups, pads (top, left, bottom, right), dilations, auto_pad, and whether it takes the shifted path.</summary>
    public sealed record ConvCase(int Cin, int H, int W, int Kh, int Kw, int Groups, int[] Pads, int DilationH = 1, int DilationW = 1, string? AutoPad = null,
        bool Shifted = true);

    static readonly Dictionary<string, ConvCase> s_cases = new()
    {
        ["3x3 pad 1"] = new(4, 9, 11, 3, 3, 1, [1, 1, 1, 1]),
        ["5x5 pad 2"] = new(3, 10, 9, 5, 5, 1, [2, 2, 2, 2]),
        ["3x3 pads top 0 left 2 bottom 1 right 0"] = new(4, 8, 9, 3, 3, 1, [0, 2, 1, 0]),
        ["3x3 dilation 2 pad 2"] = new(4, 9, 9, 3, 3, 1, [2, 2, 2, 2], 2, 2),
        ["3x2 dilations 2,1 pads 1,0,2,1"] = new(3, 9, 7, 3, 2, 1, [1, 0, 2, 1], 2, 1),
        ["3x3 groups 2"] = new(6, 8, 8, 3, 3, 2, [1, 1, 1, 1]),
        ["3x3 depthwise"] = new(4, 8, 7, 3, 3, 4, [1, 1, 1, 1]),
        // im2col of a 1×1 conv is already the plain channel Gram.
        ["1x1 (im2col)"] = new(6, 7, 8, 1, 1, 1, [0, 0, 0, 0], Shifted: false),
        ["1x1 pad 1 (im2col)"] = new(5, 6, 6, 1, 1, 1, [1, 1, 1, 1], Shifted: false),
        ["1x3 pad 0,1,0,1"] = new(5, 6, 7, 1, 3, 1, [0, 1, 0, 1]),
        ["3x3 pad 0 (valid)"] = new(4, 10, 9, 3, 3, 1, [0, 0, 0, 0]),
        ["3x3 outH < H (pad 0 top and bottom, 1 left and right)"] = new(3, 10, 8, 3, 3, 1, [0, 1, 0, 1]),
        ["3x3 pads 2 > (k-1)/2"] = new(3, 7, 8, 3, 3, 1, [2, 2, 2, 2]),
        ["2x2 auto_pad SAME_UPPER"] = new(4, 7, 8, 2, 2, 1, [0, 0, 1, 1], AutoPad: "SAME_UPPER"),
        ["3x3 auto_pad VALID"] = new(3, 8, 8, 3, 3, 1, [0, 0, 0, 0], AutoPad: "VALID"),
    };

    public static TheoryData<string> Cases => [.. s_cases.Keys];

    static OnnxModel SingleConv(ConvCase c)
    {
        int cout = 2 * c.Groups;
        int outH = c.H + c.Pads[0] + c.Pads[2] - c.DilationH * (c.Kh - 1);
        int outW = c.W + c.Pads[1] + c.Pads[3] - c.DilationW * (c.Kw - 1);
        var attributes = new List<AttributeProto> { Ints("kernel_shape", c.Kh, c.Kw), Int("group", c.Groups), Ints("dilations", c.DilationH, c.DilationW) };
        if (c.AutoPad is null) { attributes.Add(Ints("pads", [.. c.Pads.Select(p => (long)p)])); }
        else { attributes.Add(new AttributeProto { Name = "auto_pad", Type = AttributeProto.Types.AttributeType.String, S = ByteString.CopyFromUtf8(c.AutoPad) }); }
        return Model(
            [Node("Conv", ["x", "w"], ["y"], "conv", [.. attributes])],
            [Tensor("w", [cout, c.Cin / c.Groups, c.Kh, c.Kw], seed: 5)],
            Value("x", -1, c.Cin, c.H, c.W), Value("y", -1, cout, outH, outW));
    }

    /// <summary>Two batches of three images, off zero so the border terms the inclusion–exclusion removes are not small.</summary>
    static (float[] Data, long[] Shape)[] Batches(ConvCase c, int seed)
    {
        var batches = LayerInputStatisticsTests.RandomBatches(2, 3, [c.Cin, c.H, c.W], seed);
        foreach ((float[] data, _) in batches)
        {
            for (int i = 0; i < data.Length; i++) { data[i] += 0.4f; }
        }
        return batches;
    }

    static ConvGeometry PlanOf(ConvCase c) => new(c.Kh, c.Kw, 1, 1, c.DilationH, c.DilationW,
        c.Pads[0], c.Pads[1], c.Pads[2], c.Pads[3], c.Groups, c.AutoPad ?? "NOTSET");

    [Theory]
    [MemberData(nameof(Cases))]
    public void Collect_StrideOneConv_MatchesDoubleReference(string name)
    {
        ConvCase c = s_cases[name];
        ConvGeometry plan = PlanOf(c);
        var geometry = plan.Output(c.H, c.W);
        Assert.Equal(c.Shifted, ShiftedConvGram.TryCreate(plan, geometry, c.H, c.W, c.Cin / c.Groups) is not null);

        (OnnxModel prepared, ModelSummary summary) = ModelInspector.Inspect(SingleConv(c));
        var batches = Batches(c, seed: 31);
        LayerStatistics shifted = LayerInputStatistics.Collect(prepared, summary.Layers, batches, cancellationToken: TestContext.Current.CancellationToken)[0];
        LayerStatistics im2col = LayerInputStatistics.Collect(prepared, summary.Layers, batches, convGram: ConvGram.Im2Col,
            cancellationToken: TestContext.Current.CancellationToken)[0];

        int k = c.Cin / c.Groups * c.Kh * c.Kw;
        Assert.Equal((c.Groups, k), (shifted.Groups, shifted.K));
        Assert.Equal(2L * 3 * geometry.OutH * geometry.OutW, shifted.Columns);
        Assert.Equal(im2col.Columns, shifted.Columns);
        for (int g = 0; g < c.Groups; g++)
        {
            var refH = new double[k * k];
            var refSum = new double[k];
            foreach ((float[] data, long[] shape) in batches)
            {
                (double[] h, double[] sum, _) = StatisticsReference.ConvGram(data, shape, g, c.Groups, c.Kh, c.Kw, 1, c.Pads, c.DilationH, c.DilationW);
                for (int i = 0; i < h.Length; i++) { refH[i] += h[i]; }
                for (int i = 0; i < sum.Length; i++) { refSum[i] += sum[i]; }
            }
            Assert.True(StatisticsReference.RelativeError(shifted.H(g), refH) <= 1e-5, $"group {g}: H error {StatisticsReference.RelativeError(shifted.H(g), refH):E2}");
            Assert.True(StatisticsReference.RelativeError(shifted.Sum.AsSpan(g * k, k), refSum) <= 1e-5, $"group {g}: sum error");
            Assert.True(StatisticsReference.RelativeError(im2col.H(g), refH) <= 1e-5, $"group {g}: im2col H error");
            // H stays exactly symmetric: each block is written once with its mirror.
            Span<double> hs = shifted.H(g);
            for (int i = 0; i < k; i++)
            {
                for (int j = 0; j < i; j++) { Assert.Equal(hs[i * k + j], hs[j * k + i]); }
            }
        }
    }

    [Fact]
    public void Accumulate_BatchSplitIntoChunks_MatchesDoubleReference()
    {
        ConvCase c = s_cases["3x3 pads top 0 left 2 bottom 1 right 0"];
        ConvGeometry plan = PlanOf(c);
        ShiftedConvGram shifted = ShiftedConvGram.TryCreate(plan, plan.Output(c.H, c.W), c.H, c.W, c.Cin)!;
        var (data, shape) = LayerInputStatisticsTests.RandomBatches(1, 5, [c.Cin, c.H, c.W], seed: 8)[0];
        int k = c.Cin * 9;
        var h = new double[k * k];
        var sum = new double[k];
        using var gram = new GramSessions(Runtime.RuntimeOptions.Default);
        // Room for two images: chunks of 2, 2 and 1.
        shifted.Accumulate(data, 5, c.Cin, 0, h, sum, new float[2 * shifted.ImageFloats + 3], gram);
        (double[] refH, double[] refSum, _) = StatisticsReference.ConvGram(data, shape, 0, 1, 3, 3, 1, c.Pads, 1);
        Assert.True(StatisticsReference.RelativeError(h, refH) <= 1e-5);
        Assert.True(StatisticsReference.RelativeError(sum, refSum) <= 1e-5);
    }

    [Fact]
    public void TryCreate_StridedOrUnreadPositions_LeavesTheConvToIm2Col()
    {
        ConvCase strided = new(4, 9, 9, 3, 3, 1, [1, 1, 1, 1]);
        ConvGeometry plan = PlanOf(strided) with { StrideH = 2, StrideW = 2 };
        Assert.Null(ShiftedConvGram.TryCreate(plan, plan.Output(9, 9), 9, 9, 4));
        // 2×2 kernel, dilation 4, no pads on 5 rows: one output row reading rows 0 and 4 only.
        ConvCase gaps = new(2, 5, 5, 2, 2, 1, [0, 0, 0, 0], 4, 4);
        plan = PlanOf(gaps);
        Assert.Null(ShiftedConvGram.TryCreate(plan, plan.Output(5, 5), 5, 5, 2));
    }

    [Fact]
    public void Collect_NaNInStrideOneConvInput_ThrowsNamingTheLayer()
    {
        ConvCase c = s_cases["3x3 pad 1"];
        (OnnxModel prepared, ModelSummary summary) = ModelInspector.Inspect(SingleConv(c));
        var batches = Batches(c, seed: 3);
        batches[1].Data[5] = float.NaN;   // row 0 of an image: a border position
        var e = Assert.Throws<BitBudgetException>(() => LayerInputStatistics.Collect(prepared, summary.Layers, batches, cancellationToken: TestContext.Current.CancellationToken));
        Assert.Equal(ErrorKind.InvalidInput, e.Kind);
        Assert.Contains("'conv'", e.Message);
    }

    [Fact]
    public void Collect_ResNet20_ShiftedAndIm2ColAgreeOnEveryLayer()
    {
        (OnnxModel prepared, ModelSummary summary) = ModelInspector.Inspect(OnnxModel.Load(Assets.ResNet20));
        (float[] images, _) = Assets.EranCifar(40);
        var batches = new[] { (images[..(32 * 3072)], new long[] { 32, 3, 32, 32 }), (images[(32 * 3072)..], new long[] { 8, 3, 32, 32 }) };
        IReadOnlyList<LayerStatistics> shifted = LayerInputStatistics.Collect(prepared, summary.Layers, batches, cancellationToken: TestContext.Current.CancellationToken);
        IReadOnlyList<LayerStatistics> im2col = LayerInputStatistics.Collect(prepared, summary.Layers, batches, convGram: ConvGram.Im2Col,
            cancellationToken: TestContext.Current.CancellationToken);
        for (int i = 0; i < summary.Layers.Count; i++)
        {
            LayerStatistics a = shifted[i], b = im2col[i];
            Assert.Equal(b.Columns, a.Columns);
            double hError = StatisticsReference.RelativeError(a.Hessian, b.Hessian), sumError = StatisticsReference.RelativeError(a.Sum, b.Sum);
            Assert.True(hError <= 1e-5 && sumError <= 1e-5, $"{a.Layer.Name}: H {hError:E2}, sum {sumError:E2}");
        }

        // The first layer (3 channels, the images themselves) against the double reference, H and column sums.
        var firstH = new double[27 * 27];
        var firstSum = new double[27];
        foreach ((float[] data, long[] shape) in batches)
        {
            (double[] h, double[] sum, _) = StatisticsReference.ConvGram(data, shape, 0, 1, 3, 3, 1, [1, 1, 1, 1], 1);
            for (int i = 0; i < h.Length; i++) { firstH[i] += h[i]; }
            for (int i = 0; i < sum.Length; i++) { firstSum[i] += sum[i]; }
        }
        Assert.True(StatisticsReference.RelativeError(shifted[0].H(0), firstH) <= 1e-5);
        Assert.True(StatisticsReference.RelativeError(shifted[0].Sum, firstSum) <= 1e-5,
            $"sum: shifted {StatisticsReference.RelativeError(shifted[0].Sum, firstSum):E2}, im2col {StatisticsReference.RelativeError(im2col[0].Sum, firstSum):E2}");

        // One stride-1 3×3 layer (32 → 32 channels, 16×16) against the double reference as well.
        LayerInfo layer = summary.Layers.First(l => l.OpType == "Conv" && l.WeightShape[0] == 32 && l.WeightShape[1] == 32);
        int index = summary.Layers.ToList().IndexOf(layer);
        var refH = new double[288 * 288];
        foreach ((float[] data, long[] shape) in batches)
        {
            (float[] x, long[] xShape) = StatisticsReference.Capture(prepared, layer.InputName, data, shape);
            (double[] h, _, _) = StatisticsReference.ConvGram(x, xShape, 0, 1, 3, 3, 1, [1, 1, 1, 1], 1);
            for (int i = 0; i < h.Length; i++) { refH[i] += h[i]; }
        }
        Assert.True(StatisticsReference.RelativeError(shifted[index].H(0), refH) <= 1e-5);
    }
}

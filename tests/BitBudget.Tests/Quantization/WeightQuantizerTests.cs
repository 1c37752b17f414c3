using BitBudget.Quantization;

namespace BitBudget.Tests.Quantization;

public class WeightQuantizerTests
{
    [Fact]
    public void MinMax4Bit_SingleChannel_HandComputedLevels()
    {
        float[] w = [0.5f, -1.0f, 0.25f, 0.75f];
        var layout = new WeightLayout(1, 1, 4);
        float[] scales = WeightQuantizer.ComputeScales(w, layout, 4, perChannel: true, WeightRange.MinMax);
        Assert.Equal(1f / 7, scales[0]);   // max|w| / (2^3 − 1)
        var q = new sbyte[4];
        WeightQuantizer.Quantize(w, layout, scales, 4, q);
        Assert.Equal([3, -7, 2, 5], q.Select(v => (int)v));   // 0.5 / (1/7f) = 3.4999998 in float32 → 3; 1.75 → 2; 5.25 → 5
        var fake = new float[4];
        WeightQuantizer.FakeQuantize(w, layout, scales, 4, fake);
        Assert.Equal([3 * (1f / 7), -7 * (1f / 7), 2 * (1f / 7), 5 * (1f / 7)], fake);
    }

    [Fact]
    public void MinMax2Bit_UsesSignedGridMinusTwoToOne()
    {
        float[] w = [0.5f, -1.0f, 0.25f, 0.75f, -2.0f, 1.6f];
        var layout = new WeightLayout(1, 1, 6);
        float[] scales = WeightQuantizer.ComputeScales(w, layout, 2, perChannel: true, WeightRange.MinMax);
        Assert.Equal(2f, scales[0]);   // max|w| / 1
        var q = new sbyte[6];
        WeightQuantizer.Quantize(w, layout, scales, 2, q);
        Assert.Equal([0, 0, 0, 0, -1, 1], q.Select(v => (int)v));   // 0.25 → 0, −0.5 → 0 (ties to even), 0.8 → 1
        Assert.Equal(-2, WeightQuantizer.QMin(2));
        Assert.Equal(1, WeightQuantizer.QMax(2));
    }

    [Fact]
    public void PerChannel_ConvAxis0_OneScalePerOutputChannel()
    {
        float[] w = [1f, -0.5f, 0.2f, 0.1f];   // shape [2,1,1,2]
        var layout = WeightLayout.Of([2, 1, 1, 2], 0);
        float[] scales = WeightQuantizer.ComputeScales(w, layout, 8, perChannel: true, WeightRange.MinMax);
        Assert.Equal([1f / 127, 0.2f / 127], scales);
        var q = new sbyte[4];
        WeightQuantizer.Quantize(w, layout, scales, 8, q);
        Assert.Equal([127, -64, 127, 64], q.Select(v => (int)v));   // −63.5 → −64, 63.5 → 64 (ties to even)
    }

    [Fact]
    public void PerChannel_MatMulAxis1_ScalesRunAlongColumns()
    {
        float[] w = [1f, 2f, 3f, -4f, 0.5f, 6f];   // [K=2, N=3], output channel = column
        var layout = WeightLayout.Of([2, 3], 1);
        Assert.Equal(new WeightLayout(2, 3, 1), layout);
        float[] scales = WeightQuantizer.ComputeScales(w, layout, 4, perChannel: true, WeightRange.MinMax);
        Assert.Equal([4f / 7, 2f / 7, 6f / 7], scales);
        var q = new sbyte[6];
        WeightQuantizer.Quantize(w, layout, scales, 4, q);
        Assert.Equal([2, 7, 4, -7, 2, 7], q.Select(v => (int)v));   // 1.75 → 2, 3.5 → 4, 1.75 → 2
    }

    [Fact]
    public void PerTensor_OneScale()
    {
        float[] w = [1f, -0.5f, 0.2f, 0.1f];
        float[] scales = WeightQuantizer.ComputeScales(w, WeightLayout.Of([2, 2], 0), 8, perChannel: false, WeightRange.MinMax);
        Assert.Equal([1f / 127], scales);
    }

    [Fact]
    public void ZeroChannel_ScaleOneAndZeroIntegers()
    {
        float[] w = [0f, 0f, 1f, -1f];
        var layout = WeightLayout.Of([2, 2], 0);
        float[] scales = WeightQuantizer.ComputeScales(w, layout, 4, perChannel: true, WeightRange.Mse);
        Assert.Equal(1f, scales[0]);
        var fake = new float[4];
        WeightQuantizer.FakeQuantize(w, layout, scales, 4, fake);
        Assert.Equal(0f, fake[0]);
        Assert.Equal(0f, fake[1]);
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(6)]
    [InlineData(8)]
    public void MseClipping_NeverWorseThanMinMax(int bits)
    {
        var random = new Random(bits);
        const int channels = 16, size = 144;
        var w = new float[channels * size];
        for (int i = 0; i < w.Length; i++)
        {
            double u = random.NextDouble(), v = random.NextDouble();
            double gauss = Math.Sqrt(-2 * Math.Log(1 - u)) * Math.Cos(2 * Math.PI * v);
            w[i] = (float)(gauss * (i % 7 == 0 ? 3 : 0.3));   // heavy tails, as trained conv weights have
        }
        var layout = new WeightLayout(1, channels, size);
        float[] mse = WeightQuantizer.ComputeScales(w, layout, bits, true, WeightRange.Mse);
        float[] minmax = WeightQuantizer.ComputeScales(w, layout, bits, true, WeightRange.MinMax);
        var a = new float[w.Length];
        var b = new float[w.Length];
        WeightQuantizer.FakeQuantize(w, layout, mse, bits, a);
        WeightQuantizer.FakeQuantize(w, layout, minmax, bits, b);
        for (int c = 0; c < channels; c++)
        {
            double errMse = WeightQuantizer.SquaredError(w.AsSpan(c * size, size), a.AsSpan(c * size, size));
            double errMinMax = WeightQuantizer.SquaredError(w.AsSpan(c * size, size), b.AsSpan(c * size, size));
            Assert.True(errMse <= errMinMax * (1 + 1e-6), $"channel {c}: MSE {errMse} > minmax {errMinMax}");
        }
        double total = WeightQuantizer.SquaredError(w, a), totalMinMax = WeightQuantizer.SquaredError(w, b);
        if (bits <= 4) { Assert.True(total < 0.9 * totalMinMax, $"{bits}-bit MSE clipping should clearly beat min/max: {total} vs {totalMinMax}"); }
        Assert.True(mse.Zip(minmax).All(p => p.First <= p.Second));
    }

    [Fact]
    public void QuantizedWeights_CachesAndMatchesDirectQuantizer()
    {
        var model = Support.TinyModels.ConvBatchNorm();
        (var prepared, var summary) = BitBudget.Graph.ModelInspector.Inspect(model);
        var cache = new QuantizedWeights(prepared, summary.Layers);
        QuantizedTensor t = cache.Get(0, 4);
        Assert.Same(t, cache.Get(0, 4));
        Assert.Equal(1, cache.Count);
        float[] w = cache.Original(0).ToArray();
        var layout = WeightLayout.Of(summary.Layers[0].WeightShape, 0);
        float[] scales = WeightQuantizer.ComputeScales(w, layout, 4, true, WeightRange.Mse);
        Assert.Equal(scales, t.Scales.ToArray());
        var fake = new float[w.Length];
        WeightQuantizer.FakeQuantize(w, layout, scales, 4, fake);
        Assert.Equal(fake, t.Dequantized.ToArray());
        Assert.All(t.Values.ToArray(), v => Assert.InRange(v, -8, 7));
        Assert.Equal(WeightQuantizer.SquaredError(w, fake), t.SquaredError);
    }
}

using BitBudget.Data;
using BitBudget.Graph;
using BitBudget.Numerics;
using BitBudget.Quantization;
using BitBudget.Rounding;
using BitBudget.Runtime;
using BitBudget.Tests.Support;

namespace BitBudget.Tests.Rounding;

/// <summary>The GPTQ statistics pass within the memory budget (issue 16): micro-batches and layer groups never change H.</summary>
public class StatisticsMemoryTests
{
    const long GiB = 1L << 30;

    static double MaxRelative(ReadOnlySpan<double> a, ReadOnlySpan<double> b)
    {
        double scale = 0, diff = 0;
        for (int i = 0; i < a.Length; i++)
        {
            scale = Math.Max(scale, Math.Abs(a[i]));
            diff = Math.Max(diff, Math.Abs(a[i] - b[i]));
        }
        return scale == 0 ? diff : diff / scale;
    }

    static IReadOnlyList<LayerStatistics> Collect(OnnxModel prepared, ModelSummary summary, Dataset data, RuntimeOptions runtime, long groupBytes = 0) =>
        LayerInputStatistics.Collect(prepared, summary.Layers, data, data.Count, 64, runtime, null, TestContext.Current.CancellationToken, ConvGram.Shifted, groupBytes);

    [Fact]
    public void HIsTheSameWithMicroBatches64And16And48AndOneLayerPerPass()
    {
        (OnnxModel prepared, ModelSummary summary) = ModelInspector.Inspect(OnnxModel.Load(Assets.ResNet20));
        Dataset data = SharedData.CifarTrain(100, seed: 3);   // 100: the last micro-batch is a partial one
        RuntimeOptions unbounded = RuntimeOptions.Default with { MaxMemory = 64 * GiB };
        IReadOnlyList<LayerStatistics> whole = Collect(prepared, summary, data, unbounded);
        var variants = new (string Name, IReadOnlyList<LayerStatistics> Stats)[]
        {
            ("16 per run", Collect(prepared, summary, data, unbounded with { ImagesPerRun = 16 })),
            ("48 per run", Collect(prepared, summary, data, unbounded with { ImagesPerRun = 48 })),
            ("one layer per pass, 32 per run", Collect(prepared, summary, data, unbounded with { ImagesPerRun = 32 }, groupBytes: 1)),
        };
        // ResNet-20 has stride-1 3×3 convs (shifted products), strided ones (im2col) and the Gemm (rows).
        Assert.Contains(summary.Layers, l => l.OpType == "Gemm");
        foreach ((string name, IReadOnlyList<LayerStatistics> stats) in variants)
        {
            Assert.Equal(whole.Count, stats.Count);
            for (int i = 0; i < whole.Count; i++)
            {
                Assert.Equal(whole[i].Columns, stats[i].Columns);
                double h = MaxRelative(whole[i].Hessian, stats[i].Hessian), sum = MaxRelative(whole[i].Sum, stats[i].Sum);
                Assert.True(h <= 1e-9 && sum <= 1e-9, $"{name}, layer {summary.Layers[i].Name}: H differs by {h:e2}, sums by {sum:e2} (relative)");
            }
        }
        // And H is a real Gram matrix of the inputs, not zeros: its diagonal is positive somewhere in every layer.
        Assert.All(whole, s => Assert.Contains(Enumerable.Range(0, s.K), i => s.H(0)[i * s.K + i] > 0));
    }

    [Fact]
    public void BudgetTooSmallForTheHMatrices_SaysSoAndWhatWouldFit()
    {
        (OnnxModel prepared, ModelSummary summary) = ModelInspector.Inspect(OnnxModel.Load(Assets.ResNet20));
        Dataset data = SharedData.CifarTrain(32, seed: 3);
        // Less than the test process already holds (other tests run in parallel, so "resident + a little" is not stable):
        // not even the first layer's H fits, whatever the others allocate or free meanwhile.
        var runtime = RuntimeOptions.Default with { MaxMemory = 16L << 20 };
        var e = Assert.Throws<BitBudgetException>(() => Collect(prepared, summary, data, runtime));
        Assert.Equal(ErrorKind.InvalidInput, e.Kind);
        Assert.StartsWith("--max-memory ", e.Message);
        Assert.Contains("too small for the rounding statistics pass", e.Message);
        Assert.Contains("H matrices", e.Message);
        Assert.Contains("would fit.", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    /// <summary>
    /// Issue 16: an ungrouped layer's H reaches GPTQ without a copy, so its factor adds only U (ResNet-18's layer4: 170 MB, not
    /// 340 MB); a grouped layer's groups are still copied out of the one array and counted twice.
    /// </summary>
    [Fact]
    public void AnUngroupedLayersHIsSharedWithItsFactorNotCopied()
    {
        (OnnxModel prepared, ModelSummary summary) = ModelInspector.Inspect(LayerInputStatisticsTests.GroupedConvGemm());
        var batches = LayerInputStatisticsTests.RandomBatches(2, 3, [4, 9, 9], seed: 21);
        IReadOnlyList<LayerStatistics> stats = LayerInputStatistics.Collect(prepared, summary.Layers, batches, cancellationToken: TestContext.Current.CancellationToken);
        LayerStatistics ungrouped = stats.Single(s => s.Groups == 1), grouped = stats.Single(s => s.Groups > 1);
        long hBytes = ungrouped.Hessian.LongLength * sizeof(double);
        Assert.Equal(hBytes, ungrouped.FactorBytes);
        Assert.Equal(2 * grouped.Hessian.LongLength * sizeof(double), grouped.FactorBytes);

        long before = GC.GetAllocatedBytesForCurrentThread();
        var gram = ungrouped.Gram(0);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated < hBytes, $"Gram allocated {allocated} bytes for an H of {hBytes}: it copied");
        for (int i = 0; i < ungrouped.K; i++)
        {
            for (int j = 0; j < ungrouped.K; j++) { Assert.Equal(ungrouped.Hessian[i * ungrouped.K + j], gram[i, j]); }
        }
        // The factor built from the shared H is the one built from a copy, bit for bit.
        GptqFactor shared = Gptq.Factor(gram), copied = Gptq.Factor(SquareMatrix.Copy(ungrouped.Hessian, ungrouped.K));
        Assert.Equal(copied.U, shared.U);
    }

    [Fact]
    public void FactorCacheDropsTheLeastRecentLayerAndRecomputesItBitForBit()
    {
        (OnnxModel prepared, ModelSummary summary) = ModelInspector.Inspect(LayerInputStatisticsTests.GroupedConvGemm());
        var batches = LayerInputStatisticsTests.RandomBatches(2, 3, [4, 9, 9], seed: 21);
        IReadOnlyList<LayerStatistics> stats = LayerInputStatistics.Collect(prepared, summary.Layers, batches, cancellationToken: TestContext.Current.CancellationToken);
        long largest = stats.Max(s => s.FactorBytes);

        var capped = new GptqFactorCache(stats, new GptqOptions(), largest);
        GptqFactor[] first = capped.Get(0);
        capped.Get(1);
        Assert.Equal(1, capped.Held);
        GptqFactor[] again = capped.Get(0);
        Assert.Equal(3, capped.Computed);
        Assert.NotSame(first, again);
        for (int g = 0; g < first.Length; g++)
        {
            Assert.Equal(first[g].U, again[g].U);
            Assert.Equal(first[g].Order, again[g].Order);
        }

        var unbounded = new GptqFactorCache(stats, new GptqOptions(), long.MaxValue);
        unbounded.Get(0);
        unbounded.Get(1);
        Assert.Same(unbounded.Get(0), unbounded.Get(0));
        Assert.Equal((2, 2), (unbounded.Computed, unbounded.Held));
        // Clear (what CLADO's plan does once every tensor is rounded) holds nothing; a later Get recomputes the same factor.
        GptqFactor[] held = unbounded.Get(1);
        unbounded.Clear();
        Assert.Equal(0, unbounded.Held);
        GptqFactor[] rebuilt = unbounded.Get(1);
        Assert.Equal((3, 1), (unbounded.Computed, unbounded.Held));
        for (int g = 0; g < held.Length; g++) { Assert.Equal(held[g].U, rebuilt[g].U); }
    }
}

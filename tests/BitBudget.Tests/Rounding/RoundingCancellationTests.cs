using System.Runtime.InteropServices;
using BitBudget.Data;
using BitBudget.Graph;
using BitBudget.Numerics;
using BitBudget.Quantization;
using BitBudget.Rounding;
using BitBudget.Runtime;
using BitBudget.Tests.Support;

namespace BitBudget.Tests.Rounding;

/// <summary>Issue 16, item 2: GPTQ's factorisation and rounding observe the cancellation token (SIGTERM, Ctrl+C), and a cancelled
/// tensor is not cached; the C heap returns large blocks to the system.</summary>
public class RoundingCancellationTests
{
    static OnnxModel Model() => TinyModels.Model(
        [
            TinyModels.Node("Conv", ["x", "w1"], ["c1"], "conv", TinyModels.Ints("kernel_shape", 3, 3), TinyModels.Ints("pads", 1, 1, 1, 1)),
            TinyModels.Node("Relu", ["c1"], ["r1"], "relu1"),
            TinyModels.Node("GlobalAveragePool", ["r1"], ["p"], "pool"),
            TinyModels.Node("Flatten", ["p"], ["f"], "flatten"),
            TinyModels.Node("Gemm", ["f", "w2"], ["y"], "gemm", TinyModels.Int("transB", 1)),
        ],
        [TinyModels.Tensor("w1", [4, 3, 3, 3], seed: 21), TinyModels.Tensor("w2", [3, 4], seed: 22)],
        TinyModels.Value("x", -1, 3, 8, 8), TinyModels.Value("y", -1, 3));

    internal static (QuantizedWeights Weights, IReadOnlyList<LayerInfo> Layers) Weights()
    {
        (OnnxModel prepared, ModelSummary summary) = ModelInspector.Inspect(Model());
        Dataset data = Dataset.FromArrays(OrtHelpers.Deterministic(32 * 3 * 8 * 8, 5), new int[32], [3, 8, 8]);
        return (QuantizedWeights.Create(prepared, summary.Layers, WeightRounding.Default with { CalibrationImages = 32 }, data,
            cancellationToken: TestContext.Current.CancellationToken), summary.Layers);
    }

    static SquareMatrix RandomGram(int k, int seed)
    {
        var x = OrtHelpers.Deterministic(k * 2 * k, seed);
        var h = new double[k * k];
        for (int r = 0; r < 2 * k; r++)
        {
            for (int i = 0; i < k; i++) { for (int j = 0; j < k; j++) { h[i * k + j] += (double)x[r * k + i] * x[r * k + j]; } }
        }
        return SquareMatrix.Copy(h, k);
    }

    [Fact]
    public void GptqFactorAndRoundingStopWhenCancelled()
    {
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        SquareMatrix h = RandomGram(96, 3);
        Assert.ThrowsAny<OperationCanceledException>(() => Gptq.Factor(h, null, cancelled.Token));
        Assert.ThrowsAny<OperationCanceledException>(() => Gptq.InverseUpperFactor(h.ToRowMajorArray(), 96, cancelled.Token));
        GptqFactor factor = Gptq.Factor(h);
        float[] w = OrtHelpers.Deterministic(8 * 96, 4);
        float[] scales = [.. Enumerable.Repeat(0.05f, 8)];
        Assert.ThrowsAny<OperationCanceledException>(() => Gptq.Quantize(w, 8, scales, 4, factor, null, cancelled.Token));
        Assert.ThrowsAny<OperationCanceledException>(() => Gptq.QuantizeSearchingScales(w, 8, 4, factor, LayerRounder.SearchRatios, null, scales, cancel: cancelled.Token));
        Assert.Equal(Gptq.Quantize(w, 8, scales, 4, factor).Levels, Gptq.Quantize(w, 8, scales, 4, factor, null, CancellationToken.None).Levels);
    }

    [Fact]
    public void CancelledTensorIsNotCachedAndIsComputedAgainBitForBit()
    {
        var (weights, layers) = Weights();
        var spec = new LayerBits(0, layers[0].Name, 3, 0, true, WeightRange.Mse, true);
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        Assert.ThrowsAny<OperationCanceledException>(() => weights.Get(spec, cancelled.Token));
        Assert.Equal(0, weights.Count);   // nothing (no exception either) kept for that tensor
        Assert.Equal(0, weights.Factors!.Held);

        QuantizedTensor again = weights.Get(spec);
        QuantizedTensor fresh = Weights().Weights.Get(spec);
        Assert.Equal(fresh.Values.ToArray(), again.Values.ToArray());
        Assert.Equal(fresh.Dequantized.ToArray(), again.Dequantized.ToArray());
    }

    [Fact]
    public void TrimHandsFreedHeapPagesBackToTheSystem()
    {
        if (!OperatingSystem.IsLinux()) { return; }
        // 64 blocks of 256 KiB, allocated after a freed 8 MiB block has raised glibc's mmap threshold: they come from a heap, and
        // once freed (every other one, so the heap cannot simply shrink from its top) only a trim returns their pages.
        Marshal.FreeHGlobal(Marshal.AllocHGlobal(8 << 20));
        var blocks = Enumerable.Range(0, 64).Select(_ => Marshal.AllocHGlobal(256 << 10)).ToArray();
        byte[] ones = [.. Enumerable.Repeat((byte)1, 256 << 10)];
        foreach (IntPtr b in blocks) { Marshal.Copy(ones, 0, b, ones.Length); }   // resident
        for (int i = 0; i < blocks.Length; i += 2) { Marshal.FreeHGlobal(blocks[i]); }
        Assert.True(NativeHeap.Trim(), "malloc_trim released nothing");
        for (int i = 1; i < blocks.Length; i += 2) { Marshal.FreeHGlobal(blocks[i]); }
    }
}

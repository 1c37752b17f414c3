using BitBudget.Data;
using BitBudget.Evaluation;
using BitBudget.Graph;
using BitBudget.Quantization;
using BitBudget.Runtime;
using BitBudget.Clado;
using BitBudget.Tests.Support;

namespace BitBudget.Tests.Clado;

/// <summary>Micro-batching (the memory budget) changes how sums are accumulated, never what is measured.</summary>
public class MicroBatchTests
{
    static SensitivityInput Input(int images, int searchedCount = 5)
    {
        (OnnxModel prepared, ModelSummary summary) = ModelInspector.Inspect(OnnxModel.Load(Assets.ResNet20));
        var config = BitConfig.Uniform(8, activationBits: 8).Resolve(summary.Layers)
            .Select(c => c with { Searchable = c.LayerIndex >= 1 && c.LayerIndex < 1 + searchedCount }).ToArray();
        Dataset calib = SharedData.CifarTrain(64, seed: 11);
        using var engine = EvaluationEngine.Create(prepared);
        var activations = ActivationCalibrator.Calibrate(engine, summary.Layers, calib);
        Dataset sensitivity = SharedData.CifarTrain(images, seed: 5);
        return new SensitivityInput(prepared, summary.Layers, config, new QuantizedWeights(prepared, summary.Layers), activations, sensitivity);
    }

    static double RelativeDifference(double[] a, double[] b)
    {
        double scale = a.Max(Math.Abs);
        return Enumerable.Range(0, a.Length).Max(i => Math.Abs(a[i] - b[i])) / scale;
    }

    [Fact]
    public void OmegaIsTheSameWithMicroBatches256And16()
    {
        SensitivityInput input = Input(256, searchedCount: 3);
        var options = new SensitivityOptions { Pairs = PairSelection.All, BatchSize = 256 };
        SensitivityResult whole = CladoSensitivity.Measure(input, options with { Runtime = RuntimeOptions.Default with { ImagesPerRun = 256 } });
        SensitivityResult micro = CladoSensitivity.Measure(input, options with { Runtime = RuntimeOptions.Default with { ImagesPerRun = 16 } });
        Assert.Equal(256, whole.Cost.ImagesPerRun);
        Assert.Equal(16, micro.Cost.ImagesPerRun);
        Assert.Equal(whole.Context, micro.Context);   // the split is not part of what is measured: one store serves both
        double rel = RelativeDifference(whole.Omega.ToRowMajorArray(), micro.Omega.ToRowMajorArray());
        Assert.True(rel <= 1e-6, $"max |ΔΩ| / max |Ω| = {rel:G3}");
        Assert.Equal(whole.ReferenceLoss, micro.ReferenceLoss, 9);
        // Each layer recomputes its micro-batch's full-precision states: more MACs, never fewer.
        Assert.True(micro.Cost.ExecutedMacs > whole.Cost.ExecutedMacs);
    }

    [Fact]
    public void NaiveLoopAgreesInMicroBatchesWithTheLabelFreeLosses()
    {
        SensitivityInput input = Input(24, searchedCount: 3);
        foreach (OutputLoss loss in new[] { OutputLoss.Kl, OutputLoss.Mse })
        {
            var options = new SensitivityOptions { Pairs = PairSelection.All, BatchSize = 12, Loss = loss, Runtime = RuntimeOptions.Default with { ImagesPerRun = 5 } };
            SensitivityResult fast = CladoSensitivity.Measure(input, options);
            SensitivityResult naive = CladoSensitivity.Measure(input, options with { Naive = true, Runtime = RuntimeOptions.Default });
            Assert.Equal(0, fast.ReferenceLoss, 12);   // the float model against itself
            Assert.True(RelativeDifference(naive.Omega.ToRowMajorArray(), fast.Omega.ToRowMajorArray()) <= 1e-4, loss.ToString());
            for (int u = 0; u < 3; u++) { Assert.True(fast.DeltaSingle[u * 3] > fast.DeltaSingle[u * 3 + 2], $"{loss} layer {u}"); }
        }
    }

    [Fact]
    public void MseLossIsTheMeanSquaredOutputDifference()
    {
        float[] outputs = [1, 2, 3, 4, 5, 6];
        float[] reference = [1, 2, 4, 4, 5, 8];
        // Two images of three values: (0 + 0 + 1) / 3 + (0 + 0 + 4) / 3.
        Assert.Equal(5.0 / 3, OutputLosses.Sum(OutputLoss.Mse, BitBudget.Graph.OutputKind.Logits, outputs, 2, default, reference), 12);
        Assert.Equal(OutputLoss.Kl, OutputLosses.Parse("kl"));
        Assert.Throws<BitBudgetException>(() => OutputLosses.Parse("hinge"));
    }

    [Fact]
    public void ABudgetBelowOneImageIsRefusedWithWhatWouldFit()
    {
        SensitivityInput input = Input(12, searchedCount: 2);
        var options = new SensitivityOptions { Pairs = PairSelection.All, BatchSize = 12, Runtime = RuntimeOptions.Default with { MaxMemory = 1 << 20 } };
        var e = Assert.Throws<BitBudgetException>(() => CladoSensitivity.Measure(input, options));
        Assert.Equal(ErrorKind.InvalidInput, e.Kind);
        Assert.StartsWith("--max-memory ", e.Message);
        Assert.Contains("would fit", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void TheMemoryTraceNamesEachStageOfAMeasurement()
    {
        SensitivityInput input = Input(12, searchedCount: 2);
        using var dir = new Assets.TempDir();
        string trace = dir.File("trace.tsv");
        MemoryTrace.Path = trace;
        try
        {
            CladoSensitivity.Measure(input, new SensitivityOptions { Pairs = PairSelection.All, BatchSize = 12 });
        }
        finally
        {
            MemoryTrace.Path = null;
        }
        // Other tests may add lines while the path is set: this measurement's stages must all be there, in order.
        string[][] lines = [.. File.ReadAllLines(trace).Select(l => l.Split('\t'))];
        Assert.All(lines, f => Assert.Equal(7, f.Length));
        static long Kb(string field) => long.Parse(field, System.Globalization.CultureInfo.InvariantCulture);
        // VmRSS and VmHWM are positive; the GC's committed bytes hold at least its live heap; the fragmentation is a size.
        Assert.All(lines, f => Assert.True(Kb(f[1]) > 0 && Kb(f[2]) > 0 && Kb(f[4]) >= Kb(f[3]) && Kb(f[5]) >= 0, string.Join(" ", f)));
        List<string> what = [.. lines.Select(f => f[6])];
        int plan = what.FindIndex(w => w.StartsWith("CLADO plan", StringComparison.Ordinal));
        int sessions = what.FindIndex(w => w.StartsWith("CLADO sessions: 7 of 7", StringComparison.Ordinal));   // full + 2 layers × 3 schemes
        int ready = what.FindIndex(w => w.StartsWith("CLADO sessions ready", StringComparison.Ordinal));
        int unit = what.FindIndex(w => w.StartsWith("CLADO unit (1, 2) of 12 images", StringComparison.Ordinal));
        Assert.True(plan >= 0 && plan < sessions && sessions < ready && ready < unit, string.Join(" | ", what));
    }

    [Fact]
    public void TheBudgetSizesTheMicroBatch()
    {
        SensitivityInput input = Input(64, searchedCount: 2);
        var footprint = new TensorTap(input.Prepared).Footprint(input.Data);
        // ResNet-20's largest tensors are the first stage's 16×32×32 floats; the input is 3×32×32.
        Assert.Equal(16 * 32 * 32 * 4, footprint.Tensors.Values.Max());
        Assert.Equal(3 * 32 * 32 * 4, footprint.InputBytes);
        // The first conv's output and the ReLU's are live together.
        Assert.True(footprint.PeakLiveBytes >= 2 * 16 * 32 * 32 * 4, $"peak live {footprint.PeakLiveBytes} B per image");
        var probe = CladoSensitivity.Measure(input, new SensitivityOptions { Pairs = PairSelection.All, BatchSize = 64, Runtime = RuntimeOptions.Default with { ImagesPerRun = 64 } });
        long perImage = probe.Cost.PlannedBytesPerImage;
        Assert.True(perImage >= footprint.PeakLiveBytes, $"planned {perImage} B per image");
        Assert.Equal(probe.Cost.ResidentBytes + 64 * perImage, probe.Cost.PlannedPeakBytes);
        Assert.True(probe.Cost.UnreferencedPeakBytes >= probe.Cost.PlannedPeakBytes);
        // The arithmetic: what is free over the bytes per image, at most the batch.
        var budget = RuntimeOptions.Default with { MaxMemory = 1000 + 10 * perImage };
        Assert.Equal(10, MemoryBudget.ImagesPerRun(budget, perImage, 64, "test", residentBytes: 1000));
        Assert.Equal(7, MemoryBudget.ImagesPerRun(budget, perImage, 7, "test", residentBytes: 1000));
        // A reserve (CLADO keeps a sixteenth of the budget) lowers the count, down to one image, but never refuses what fits.
        Assert.Equal(7, MemoryBudget.ImagesPerRun(budget, perImage, 64, "test", residentBytes: 1000, reserveBytes: 3 * perImage));
        Assert.Equal(1, MemoryBudget.ImagesPerRun(budget, perImage, 64, "test", residentBytes: 1000, reserveBytes: 100 * perImage));
        Assert.Throws<BitBudgetException>(() => MemoryBudget.ImagesPerRun(budget, perImage, 64, "test", residentBytes: 1000 + 10 * perImage, reserveBytes: 0));
    }

    [Fact]
    public void TheDefaultBudgetComesFromTheEnvironmentWhenSet()
    {
        Assert.Equal(3L << 30, BitBudget.Runtime.ProcessMemory.ParseAmount("3GiB"));
        Assert.Equal(1_500_000_000L, BitBudget.Runtime.ProcessMemory.ParseAmount("1.5 GB"));
        Assert.Equal(1500L << 20, BitBudget.Runtime.ProcessMemory.ParseAmount("1500MiB"));
        Assert.Null(BitBudget.Runtime.ProcessMemory.ParseAmount("3bits"));
        Assert.Null(BitBudget.Runtime.ProcessMemory.ParseAmount("GiB"));
        // The test host sets BITBUDGET_MAX_MEMORY (Support/TestHostMemory.cs): every RuntimeOptions defaults to it.
        Assert.Equal(12L << 30, BitBudget.Runtime.ProcessMemory.DefaultBudget);
        Assert.Equal(12L << 30, new BitBudget.Runtime.RuntimeOptions().MaxMemory);
    }
}

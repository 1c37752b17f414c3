using BitBudget.Data;
using BitBudget.Evaluation;
using BitBudget.Graph;
using BitBudget.Quantization;
using BitBudget.Clado;
using BitBudget.Tests.Support;

namespace BitBudget.Tests.Clado;

public class CladoSensitivityTests
{
    /// <summary>ResNet-20 with five searched layers (the others fixed at 8 bits), A8 inputs calibrated on 64 training images.</summary>
    /// <summary>
    /// ResNet-20 at W8A8 with layers [<paramref name="searchedFrom"/>, +<paramref name="searchedCount"/>) searched, activations
    /// calibrated on <paramref name="calibImages"/> CIFAR-10 training images (seed 11), measured on <paramref name="images"/> (seed 5).
    /// Shared with <see cref="SignificantPairsTests"/>.
    /// </summary>
    internal static SensitivityInput Input(int images = 24, int searchedFrom = 1, int searchedCount = 5, int calibImages = 64)
    {
        (OnnxModel prepared, ModelSummary summary) = ModelInspector.Inspect(OnnxModel.Load(Assets.ResNet20));
        var config = BitConfig.Uniform(8, activationBits: 8).Resolve(summary.Layers)
            .Select(c => c with { Searchable = c.LayerIndex >= searchedFrom && c.LayerIndex < searchedFrom + searchedCount }).ToArray();
        Dataset calib = SharedData.CifarTrain(calibImages, seed: 11);
        using var engine = EvaluationEngine.Create(prepared);
        var activations = ActivationCalibrator.Calibrate(engine, summary.Layers, calib);
        Dataset sensitivity = SharedData.CifarTrain(images, seed: 5);
        return new SensitivityInput(prepared, summary.Layers, config, new QuantizedWeights(prepared, summary.Layers), activations, sensitivity);
    }

    [Fact]
    public void SegmentedMeasurementEqualsTheNaiveLoop()
    {
        SensitivityInput input = Input();
        var options = new SensitivityOptions { Pairs = PairSelection.All, BatchSize = 12 };
        SensitivityResult fast = CladoSensitivity.Measure(input, options);
        SensitivityResult naive = CladoSensitivity.Measure(input, options with { Naive = true });
        Assert.Equal(2, fast.Batches);
        Assert.Equal(15, fast.Size);
        Assert.NotEqual(fast.Context, naive.Context);   // never mixed in one store
        double worst = Enumerable.Range(0, fast.Omega.AsSpan().Length).Max(i => Math.Abs(naive.Omega.AsSpan()[i] - fast.Omega.AsSpan()[i]));
        double scale = naive.Omega.ToRowMajorArray().Max(Math.Abs);
        Assert.True(worst <= 1e-4 * Math.Max(1, scale), $"max |Ω fast − Ω naive| = {worst:G3} (max |Ω| {scale:G3})");
        Assert.Equal(naive.ReferenceLoss, fast.ReferenceLoss, 5);
        // 2-bit weights hurt more than 8-bit ones on every layer.
        for (int u = 0; u < 5; u++) { Assert.True(fast.DeltaSingle[u * 3] > fast.DeltaSingle[u * 3 + 2], $"layer {u}"); }
        Assert.True(fast.Cost.FlopRatio < naive.Cost.FlopRatio);
        Assert.Equal(1.0, naive.Cost.FlopRatio, 6);
    }

    [Fact]
    public void SharedWeightsGiveTheSameOmegaBitForBit()
    {
        // Every cone session reads the base's float weights from one shared copy (external data + AddInitializer); the
        // perturbed layer's own weights stay in its cone. Nothing measured may change.
        SensitivityInput input = Input(images: 12, searchedFrom: 2, searchedCount: 4);
        var options = new SensitivityOptions { Pairs = PairSelection.All, BatchSize = 12 };
        SensitivityResult shared = CladoSensitivity.Measure(input, options with { ShareWeights = true });
        SensitivityResult own = CladoSensitivity.Measure(input, options with { ShareWeights = false });
        Assert.Equal(own.Context, shared.Context);
        Assert.Equal(own.DeltaSingle, shared.DeltaSingle);
        Assert.Equal(own.Omega.ToRowMajorArray(), shared.Omega.ToRowMajorArray());
        Assert.Contains(shared.DeltaSingle, d => d > 1e-4);   // something was perturbed
    }

    [Fact]
    public void OmegaFollowsTheLinearEquations()
    {
        SensitivityInput input = Input(images: 12, searchedCount: 3);
        using var store = new Assets.TempDir();
        var options = new SensitivityOptions { Pairs = PairSelection.All, BatchSize = 12, StorePath = store.File("s.db") };
        SensitivityResult r = CladoSensitivity.Measure(input, options);
        int n = r.Size;
        Assert.Equal(9, n);
        Assert.Equal(n, r.Omega.Order);
        // The one matrix reaches the report unchanged: sensitivity --json writes it row-major, index = layer·S + scheme.
        Assert.Equal([.. Enumerable.Range(0, n * n).Select(i => r.Omega[i / n, i % n])], BitBudget.Cli.Commands.SensitivityCommand.Report(r).Omega);
        for (int u = 0; u < n; u++)
        {
            Assert.Equal(2 * r.DeltaSingle[u], r.Omega[u, u], 12);
            for (int v = 0; v < n; v++)
            {
                Assert.Equal(r.Omega[u, v], r.Omega[v, u]);
                if (u != v && u / 3 == v / 3) { Assert.Equal(0, r.Omega[u, v]); }
            }
        }
        // A second run takes everything from the store and measures nothing.
        SensitivityResult again = CladoSensitivity.Measure(input, options);
        Assert.Equal(0, again.Cost.Evaluations);
        Assert.Equal(r.Omega.ToRowMajorArray(), again.Omega.ToRowMajorArray());
    }

    [Fact]
    public void CancelledRunResumesToTheSameOmega()
    {
        SensitivityInput input = Input();
        using var dir = new Assets.TempDir();
        var options = new SensitivityOptions { Pairs = PairSelection.All, BatchSize = 12 };
        SensitivityResult whole = CladoSensitivity.Measure(input, options);

        var resumable = options with { StorePath = dir.File("resume.db") };
        using var cancel = new CancellationTokenSource();
        var progress = new SyncProgress(p => { if (p.Done >= 20) { cancel.Cancel(); } });
        Assert.ThrowsAny<OperationCanceledException>(() => CladoSensitivity.Measure(input, resumable, progress, cancel.Token));
        SensitivityResult resumed = CladoSensitivity.Measure(input, resumable);
        Assert.True(resumed.Cost.ReusedUnits > 0);
        Assert.True(resumed.Cost.Evaluations < 2 * (15 + 90));
        Assert.Equal(whole.Omega.ToRowMajorArray(), resumed.Omega.ToRowMajorArray());   // bit-identical
    }

    [Fact]
    public void ShardsMergeToTheSingleWorkerResult()
    {
        SensitivityInput input = Input();
        using var dir = new Assets.TempDir();
        var options = new SensitivityOptions { Pairs = PairSelection.All, BatchSize = 12 };
        SensitivityResult whole = CladoSensitivity.Measure(input, options);
        for (int k = 0; k < 3; k++)
        {
            SensitivityResult part = CladoSensitivity.Measure(input, options with { StorePath = dir.File($"shard{k}.db"), Shard = new Shard(k, 3) });
            Assert.False(part.Complete);
        }
        CladoSensitivity.MergeStores(dir.File("all.db"), [dir.File("shard0.db"), dir.File("shard1.db"), dir.File("shard2.db")]);
        SensitivityResult merged = CladoSensitivity.Measure(input, options with { StorePath = dir.File("all.db") });
        Assert.Equal(0, merged.Cost.Evaluations);
        Assert.True(merged.Complete);
        Assert.Equal(whole.Omega.ToRowMajorArray(), merged.Omega.ToRowMajorArray());
    }

    [Fact]
    public void BadSettingsAreRefused()
    {
        SensitivityInput input = Input(images: 12, searchedCount: 2);
        Assert.Throws<BitBudgetException>(() => CladoSensitivity.Measure(input, new SensitivityOptions { Pairs = PairSelection.All, CandidateBits = [1, 4] }));
        Assert.Throws<BitBudgetException>(() => CladoSensitivity.Measure(input, new SensitivityOptions { Pairs = PairSelection.All, Shard = new Shard(0, 2) }));
        Assert.Throws<BitBudgetException>(() => Shard.Parse("3/2"));
        Assert.Equal(new Shard(1, 4), Shard.Parse("1/4"));
    }

    sealed class SyncProgress(Action<SensitivityProgress> report) : IProgress<SensitivityProgress>
    {
        public void Report(SensitivityProgress value) => report(value);
    }
}

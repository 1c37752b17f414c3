using BitBudget.Data;
using BitBudget.Evaluation;
using BitBudget.Graph;
using BitBudget.Runtime;
using BitBudget.Tests.Support;

namespace BitBudget.Tests.Evaluation;

/// <summary>Tests that read the process's resident set run alone: a parallel test allocating or freeing hundreds of MB would move it.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ResidentSetCollection
{
    public const string Name = "resident set";
}

/// <summary>
/// Issue 16: the tensor tap sizes its micro-batches beside what the process really holds during the pass. ResNet-18's default
/// sensitivity went over its 3 GiB budget in the activation calibration pass because the images per run were planned before the
/// pass's session existed (its weights and the serialized model: 280 MB) and the session's ORT arena then grew past the plan.
/// </summary>
[Collection(ResidentSetCollection.Name)]
public class TensorTapMemoryTests
{
    const long MiB = 1L << 20;

    /// <summary>x[N,1024] → MatMul(w[1024,16384], 64 MiB of weights) → Relu → y[N,16384]: a session that costs far more than one image.</summary>
    static OnnxModel HeavyWeights() => Prepared(TinyModels.Model(
        [TinyModels.Node("MatMul", ["x", "w"], ["h"], "product"), TinyModels.Node("Relu", ["h"], ["y"], "relu")],
        [TinyModels.Tensor("w", [1024, 16384], seed: 3)],
        TinyModels.Value("x", -1, 1024), TinyModels.Value("y", -1, 16384)));

    /// <summary>x[N,16,32,32] → Conv 1×1 (128) → Relu → Conv 1×1 (16) → y: 0.5 MiB tensors per image, weights of a few KiB.</summary>
    static OnnxModel HeavyActivations() => Prepared(TinyModels.Model(
        [
            TinyModels.Node("Conv", ["x", "w1"], ["c"], "widen", TinyModels.Ints("kernel_shape", 1, 1)),
            TinyModels.Node("Relu", ["c"], ["r"], "relu"),
            TinyModels.Node("Conv", ["r", "w2"], ["y"], "narrow", TinyModels.Ints("kernel_shape", 1, 1)),
        ],
        [TinyModels.Tensor("w1", [128, 16, 1, 1], seed: 1), TinyModels.Tensor("w2", [16, 128, 1, 1], seed: 2)],
        TinyModels.Value("x", -1, 16, 32, 32), TinyModels.Value("y", -1, 16, 32, 32)));

    static OnnxModel Prepared(OnnxModel model) => ModelInspector.Inspect(model).Prepared;

    static Dataset Images(int count, int[] shape) =>
        Dataset.FromArrays(OrtHelpers.Deterministic(count * shape.Aggregate(1, (a, b) => a * b), seed: 5), new int[count], shape);

    [Fact]
    public void ImagesPerRunArePlannedBesideThePassSession()
    {
        OnnxModel model = HeavyWeights();
        Dataset data = Images(4, [1024]);
        var tap = new TensorTap(model, RuntimeOptions.Default with { MaxMemory = 64L << 30 });
        tap.Footprint(data);   // measured now, so that the pass below allocates nothing before its session
        long before = ProcessMemory.RssAfterCollecting();

        int seen = 0;
        TapPlan plan = tap.Stream(data, data.Count, ["h"], 4, (_, _, tensors) => seen += tensors["h"].Values.Length);

        Assert.Equal(4 * 16384, seen);
        Assert.Equal(4, plan.ImagesPerRun);
        // The session holds the 64 MiB weight (ORT's copy, and a prepacked one for the MatMul): a plan made before the session
        // existed would have seen the resident set of `before`, with none of it.
        Assert.True(plan.ResidentBytes - before >= 48 * MiB,
            $"the plan saw {ProcessMemory.Format(plan.ResidentBytes)} resident, {ProcessMemory.Format(plan.ResidentBytes - before)} more than before the pass: the session is not counted");
        Assert.True(plan.BytesPerImage >= 3 * 16384 * sizeof(float), $"{plan.BytesPerImage} B per image counts neither h, y nor the exposed copy");
    }

    [Fact]
    public void PassUnderATightBudget_StaysWithinIt()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "VmHWM is read from /proc");
        OnnxModel model = HeavyActivations();
        Dataset data = Images(256, [16, 32, 32]);
        var unbounded = new TensorTap(model, RuntimeOptions.Default with { MaxMemory = 64L << 30 });
        long perImage = unbounded.Footprint(data).RunBytes(["c", "r"]);
        long budget = ProcessMemory.RssAfterCollecting() + 64 * MiB;
        var tap = new TensorTap(model, RuntimeOptions.Default with { MaxMemory = budget });
        File.WriteAllText("/proc/self/clear_refs", "5");   // VmHWM := VmRSS, so the peak below is this pass's
        long started = ProcessMemory.PeakRss;

        int images = 0;
        TapPlan plan = tap.Stream(data, data.Count, ["c", "r"], data.Count, (_, n, tensors) => images += tensors["r"].Values.Length / (128 * 32 * 32));
        long peak = ProcessMemory.PeakRss;

        Assert.Equal(data.Count, images);
        // The budget binds (256 images of perImage do not fit in 64 MiB), and the pass was split to fit it.
        Assert.InRange(plan.ImagesPerRun, 1, 64 * MiB / perImage);
        Assert.True(peak <= budget,
            $"peak {ProcessMemory.Format(peak)} (from {ProcessMemory.Format(started)}) over the budget {ProcessMemory.Format(budget)}; plan {plan}");
    }
}

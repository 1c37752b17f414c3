using BitBudget.Data;
using BitBudget.Pipeline;
using BitBudget.Clado;
using BitBudget.Evaluation;
using BitBudget.Rounding;

namespace BitBudget.Bench;

/// <summary>
/// CLADO measurement cost on ResNet-20 and SqueezeNet: executed forward FLOPs against the reference loop
/// (L·S + S²·L(L−1)/2 full forwards per batch) and against the exact-reuse limit, and wall time against what those FLOPs
/// cost at the full-precision model's own ORT throughput. Args: [resnet|squeezenet|resnet18] [images]. resnet18 is ML.NET's
/// ImageNet featurizer (`dotnet restore bench/models/ResNet18Featurizer.csproj` first), measured as issue 16's target is:
/// `--loss mse`, A8, significant pairs (the default); its weights are rounded to nearest because the measurement's cost does not depend on the rounding and
/// GPTQ's statistics pass would only add minutes before it.
/// </summary>
static class CladoBench
{
    public static int Run(string[] args)
    {
        string which = args.Length > 0 ? args[0] : "both";
        if (which is "both" or "resnet")
        {
            Bench("ResNet-20", Measure.Assets("cifar10/resnet20.onnx"), Measure.Assets("cifar10/train-5k"), Preprocessing.Cifar10, "all",
                args.Length > 1 ? int.Parse(args[1]) : 128, 0.348);
        }
        if (which is "both" or "squeezenet")
        {
            Bench("SqueezeNet 1.1", Measure.Assets("imagenet/squeezenet1.1.onnx"), Measure.Assets("imagenet/samples"), Preprocessing.ImageNet, "even-classes",
                args.Length > 1 ? int.Parse(args[1]) : 16, 0.474);
        }
        if (which is "resnet18")
        {
            Bench("ResNet-18 featurizer", MemoryBench.ResNet18(), Measure.Assets("imagenet/samples"), Preprocessing.ImageNet, "even-classes",
                args.Length > 1 ? int.Parse(args[1]) : 64, double.NaN, OutputLoss.Mse, WeightRounding.RoundToNearest, PairSelection.Significant);
        }
        return 0;
    }

    static void Bench(string name, string model, string data, Preprocessing pre, string split, int images, double limit,
        OutputLoss loss = OutputLoss.CrossEntropy, WeightRounding? rounding = null, PairSelection pairs = PairSelection.All)
    {
        Console.WriteLine($"load before: {Measure.LoadAverage()}");
        Dataset source = DatasetLoader.Load(new DataOptions { Path = data, Preprocessing = pre, Split = split });
        var pipeline = MpqPipeline.Open(model, PipelineOptions.Default with
        {
            Sensitivity = new SensitivityOptions { Pairs = pairs, BatchSize = images, Loss = loss },
            Rounding = rounding ?? WeightRounding.Default,
        }).Calibrate(source.Sample(Math.Min(256, source.Count), 0));
        Dataset sens = source.Sample(images, 1);
        SensitivityResult r = pipeline.MeasureSensitivity(sens);
        MeasurementCost c = r.Cost;
        int L = r.SearchedLayers.Count, S = r.CandidateBits.Count;
        Console.WriteLine($"{name}: {L} searched layers × {S} schemes, 1 batch of {images} images, {c.Evaluations:N0} evaluations (reference: {L * S + S * S * L * (L - 1) / 2:N0} full forwards)");
        Console.WriteLine($"  executed / reference forward FLOPs   {c.FlopRatio:F3}   (goal ≤ 0.35; exact-reuse limit {limit:F3}; executed / limit {c.FlopRatio / limit:F3})");
        Console.WriteLine($"  measuring wall time                  {c.Measuring.TotalSeconds:F1} s (+{c.Setup.TotalSeconds:F1} s to build {L * S + 1} sessions)");
        Console.WriteLine($"  raw ORT time of those FLOPs          {c.RawThroughputTime?.TotalSeconds:F1} s at ORT_ENABLE_ALL, {c.RawThroughputTimeSameSettings?.TotalSeconds:F1} s at ORT_ENABLE_EXTENDED (the measurement's level)");
        Console.WriteLine($"  wall / raw                           {c.TimeRatio:F2} (ALL), {c.TimeRatioSameSettings:F2} (same settings)   (goal ≤ 1.15)");
        Console.WriteLine($"  evaluations per second               {c.Evaluations / c.Measuring.TotalSeconds:F1}");
        Console.WriteLine($"  peak RSS (VmHWM)                     {BitBudget.Runtime.ProcessMemory.PeakRss / (double)(1L << 30):F2} GiB");
        Console.WriteLine($"load after: {Measure.LoadAverage()}");
    }
}

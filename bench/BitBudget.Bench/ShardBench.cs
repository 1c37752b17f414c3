using BitBudget.Data;
using BitBudget.Pipeline;
using BitBudget.Clado;

namespace BitBudget.Bench;

/// <summary>
/// FLOP-balanced CLADO shards: per shard of n, the planned MACs (LPT by executed MACs, and the old split by unit count for
/// comparison) and the measured wall time of its measuring loop, shards run one after another on this machine, each
/// repeated and the median kept. Args: resnet|squeezenet [images] [shards] [repetitions].
/// </summary>
static class ShardBench
{
    public static int Run(string[] args)
    {
        string which = args.Length > 0 ? args[0] : "resnet";
        int shards = args.Length > 2 ? int.Parse(args[2]) : 4;
        int reps = args.Length > 3 ? int.Parse(args[3]) : 3;
        if (which == "resnet")
        {
            Bench("ResNet-20", Measure.Assets("cifar10/resnet20.onnx"), Measure.Assets("cifar10/train-5k"), Preprocessing.Cifar10, "all",
                args.Length > 1 ? int.Parse(args[1]) : 64, shards, reps);
        }
        else
        {
            Bench("SqueezeNet 1.1", Measure.Assets("imagenet/squeezenet1.1.onnx"), Measure.Assets("imagenet/samples"), Preprocessing.ImageNet, "even-classes",
                args.Length > 1 ? int.Parse(args[1]) : 8, shards, reps);
        }
        return 0;
    }

    static void Bench(string name, string model, string data, Preprocessing pre, string split, int images, int shards, int reps)
    {
        Dataset source = DatasetLoader.Load(new DataOptions { Path = data, Preprocessing = pre, Split = split });
        var pipeline = MpqPipeline.Open(model).Calibrate(source.Sample(Math.Min(256, source.Count), 0));
        var input = new SensitivityInput(pipeline.Prepared, pipeline.Summary.Layers, pipeline.Policy, pipeline.Weights, pipeline.Activations, source.Sample(images, 1));
        var options = new SensitivityOptions { Pairs = PairSelection.All, BatchSize = images, CandidateBits = pipeline.Options.CandidateBits, Runtime = pipeline.Options.Runtime };

        var plan = MeasurementPlan.Create(input, options);
        long[] costs = ShardPlan.UnitCosts(plan);
        long[] balanced = ShardPlan.Loads(costs, ShardPlan.Owners(plan, shards), shards);
        long[] byCount = ShardPlan.Loads(costs, [.. Enumerable.Range(0, costs.Length).Select(i => i % shards)], shards);
        Console.WriteLine($"{name}: {plan.L} searched layers × {plan.S} schemes, {images} images in {plan.BatchCount} batch(es), {costs.Length} units, {shards} shards, median of {reps}");
        Console.WriteLine($"  unit MACs: largest {costs.Max() / 1e9:F3} G, smallest {costs.Min() / 1e9:F3} G (ratio {(double)costs.Max() / costs.Min():F1})");
        Console.WriteLine($"  planned max/mean: FLOP-balanced {MaxOverMean(balanced):F3}, by count (unit index mod n) {MaxOverMean(byCount):F3}");

        var walls = new double[shards][];
        var executed = new double[shards];
        for (int k = 0; k < shards; k++) { walls[k] = new double[reps]; }
        string dir = Directory.CreateTempSubdirectory("bitbudget-shards-").FullName;
        try
        {
            for (int rep = 0; rep < reps; rep++)
            {
                for (int k = 0; k < shards; k++)   // interleaved, so machine load drifts over every shard alike
                {
                    string store = Path.Combine(dir, $"r{rep}-s{k}.db");
                    SensitivityResult r = CladoSensitivity.Measure(input, options with { StorePath = store, Shard = new Shard(k, shards) });
                    walls[k][rep] = r.Cost.Measuring.TotalSeconds;
                    executed[k] = r.Cost.ExecutedMacs;
                }
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
        double[] median = [.. walls.Select(w => w.Order().ElementAt(reps / 2))];
        Console.WriteLine("  shard | planned GMACs | executed GMACs (incl. the FP pass) | measuring wall, median s | every repetition, s");
        for (int k = 0; k < shards; k++)
        {
            Console.WriteLine($"  {k,5} | {balanced[k] / 1e9,13:F2} | {executed[k] / 1e9,34:F2} | {median[k],24:F2} | {string.Join(" ", walls[k].Select(w => w.ToString("F2")))}");
        }
        Console.WriteLine($"  slowest / mean: planned {MaxOverMean(balanced):F3}, executed {MaxOverMean(executed):F3}, measured wall {MaxOverMean(median):F3}   (target ≤ 1.15)");
    }

    static double MaxOverMean(IReadOnlyCollection<long> v) => v.Max() / v.Average();

    static double MaxOverMean(IReadOnlyCollection<double> v) => v.Max() / v.Average();
}

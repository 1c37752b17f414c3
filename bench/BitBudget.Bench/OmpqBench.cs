using System.Diagnostics;
using BitBudget.Cli.Commands;
using BitBudget.Graph;
using BitBudget.Ompq;
using BitBudget.Optimization;
using BitBudget.Clado;

namespace BitBudget.Bench;

/// <summary>
/// OMPQ end to end on SqueezeNet (target ≤ 5 s on 2 cores): model load + inventory, 32 images decoded, one forward pass with
/// the 24 unit features exposed, Gram/ORM/θ, LP, ILP. Each stage is timed separately, median of several cold-ish repetitions.
/// Usage: ompq [N=32] [budget=5.5bits] [repetitions=5]
/// </summary>
static class OmpqBench
{
    public static int Run(string[] args)
    {
        int n = args.Length > 0 ? int.Parse(args[0], System.Globalization.CultureInfo.InvariantCulture) : 32;
        Budget budget = Budget.Parse(args.Length > 1 ? args[1] : "5.5bits");
        int repetitions = args.Length > 2 ? int.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture) : 5;
        string model = Measure.Assets("imagenet/squeezenet1.1.onnx");
        string samples = Measure.Assets("imagenet/samples");
        string[] names = ["load+inspect", "images", "units", "forward", "gram+orm", "lp", "ilp", "total"];
        var times = names.Select(_ => new List<double>()).ToArray();
        OmpqSearchResult? last = null;
        for (int rep = 0; rep <= repetitions; rep++)   // rep 0 warms up (JIT, native libraries) and is not counted
        {
            long t0 = Stopwatch.GetTimestamp();
            (OnnxModel prepared, ModelSummary summary) = ModelInspector.Inspect(OnnxModel.Load(model));
            double load = Stopwatch.GetElapsedTime(t0).TotalSeconds;
            long t1 = Stopwatch.GetTimestamp();
            var data = BitBudget.Data.DatasetLoader.Load(new BitBudget.Data.DataOptions
            {
                Path = samples, Preprocessing = BitBudget.Data.Preprocessing.ImageNet, Limit = n, CacheDirectory = "",   // decode every time: the stage is timed
            });
            float[] images = data.Images.ToArray();
            long[] shape = [data.Count, .. data.SampleShape.Select(d => (long)d)];
            double decode = Stopwatch.GetElapsedTime(t1).TotalSeconds;
            long t2 = Stopwatch.GetTimestamp();
            OmpqUnitMap units = OmpqUnits.Build(prepared, summary);
            double unitTime = Stopwatch.GetElapsedTime(t2).TotalSeconds;
            OrthogonalityResult proxy = Orthogonality.Measure(prepared, units, images, shape);
            var input = new OmpqAllocationInput([.. units.Units.Select(u => u.WeightCount)], proxy.Theta,
                [.. units.FixedLayers.Select(l => summary.Layers[l].WeightCount)], units.FixedBits, budget);
            OmpqAllocationResult allocation = OmpqAllocation.Solve(input);
            double total = Stopwatch.GetElapsedTime(t0).TotalSeconds;
            if (rep == 0) { continue; }
            double[] values = [load, decode, unitTime, proxy.ForwardSeconds, proxy.GramSeconds, allocation.LpSeconds, allocation.IlpSeconds, total];
            for (int i = 0; i < values.Length; i++) { times[i].Add(values[i]); }
            last = new OmpqSearchResult([], summary, proxy, allocation, budget, load, total);
        }
        Console.WriteLine($"OMPQ on SqueezeNet 1.1, N = {n} ImageNet samples, budget {budget}, {Environment.ProcessorCount} cores, median of {repetitions}");
        for (int i = 0; i < names.Length; i++)
        {
            times[i].Sort();
            Console.WriteLine($"  {names[i],-14} {times[i][times[i].Count / 2],8:F3} s");
        }
        if (last is not null)
        {
            Console.WriteLine($"  units {last.Proxy.Gamma.Length}, passes {last.Proxy.Passes}, θ effect {last.Proxy.Effect}, γ {last.Proxy.Gamma.Min():F2}..{last.Proxy.Gamma.Max():F2}, " +
                $"avg bits {last.Allocation.AverageBits:F3}, LP {last.Allocation.LpStatus}, ILP {last.Allocation.IlpStatus}");
            Console.WriteLine($"  bits per unit: {string.Join(",", last.Allocation.Bits)}");
        }
        return 0;
    }
}

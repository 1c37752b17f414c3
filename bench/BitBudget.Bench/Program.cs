using System.Diagnostics;
using BitBudget.Ompq;

namespace BitBudget.Bench;

/// <summary>
/// Side-by-side benchmarks: each prints figures measured in one run and the ratios between them.
/// These machines are 2-core and noisy, so every figure is a median of several repetitions.
/// Usage: dotnet run -c Release --project bench/BitBudget.Bench -- NAME [args]   (no NAME lists them)
/// </summary>
static class Program
{
    static readonly Dictionary<string, (string Description, Func<string[], int> Run)> s_benchmarks = new(StringComparer.OrdinalIgnoreCase)
    {
        ["data-cache"] = ("Decoded-image cache: first load, cached load, and the cost of the content key (args: data path under the assets, default cifar10/test).", DataCacheBench.Run),
        ["inspect"] = ("Model load + preparation + layer inventory on the shipped models.", InspectBench.Run),
        ["ompq"] = ("OMPQ end to end on SqueezeNet (load, 32 images, features, ORM, LP, ILP), time per stage.", OmpqBench.Run),
        ["ompq-grid"] = ("OMPQ's held-out β on ResNet-20: a wide spread grid (negative, fine near 0) and candidate-bit sets judged by held-out KL per budget (args: [seed] [export] [\"2,4,8 2,4\"]).", OmpqGridBench.Run),
        ["iqp"] = ("Exact CLADO IQP on synthetic instances (19 and 52 layers), every algorithm.", IqpBench.Run),
        ["clado"] = ("CLADO measurement: executed/reference FLOPs and wall/raw-throughput time on ResNet-20 and SqueezeNet (args: resnet|squeezenet [images]).", CladoBench.Run),
        ["shards"] = ("FLOP-balanced CLADO shards: planned MACs and measured wall per shard (args: resnet|squeezenet [images] [shards] [repetitions]).", ShardBench.Run),
        ["engine"] = ("Evaluation engine vs plain ORT Run (images/s) and the cost of one weight swap by each mechanism (ResNet-20).", EngineBench.Run),
        ["results"] = ("Methods × budgets table (mean ± sd over draws) from bitbudget run folders (args: RUN_DIR …).", ResultsBench.Run),
        ["iqp-real"] = ("Exact IQP on the measured Ω of ResNet-20 / SqueezeNet at every sweep budget (args: resnet|squeezenet STORE).", IqpRealBench.Run),
        ["iqp-file"] = ("Exact IQP on a saved problem (layers + Ω, e.g. from iqp-real … PROBLEM.json): budgets × algorithms, median of repetitions (args: PROBLEM.json [budgets] [algorithms] [repetitions] [limit]).", IqpFileBench.Run),
        ["iqp-sweep"] = ("Exact CLADO IQP: 20 layers, dense PSD Ω (rank 60), 8 budgets min..max; 'tune' for the QCR B&B knobs.", IqpSweepBench.Run),
        ["vit"] = ("The shipped ViT: float vs W4 QDQ vs W4 MatMulNBits accuracy and latency (deploy), or the CLADO cone schedule's FLOPs vs the exact-reuse limit (clado), or W8/W4 with the attention MatMuls float vs A8 (attention), or CLADO cones vs the naive loop under ORT settings (cones) (args: deploy|clado|attention|cones [fused|split] [repetitions]).", VitBench.Run),
        ["ort-settings"] = ("What the CLADO sessions' settings cost against the time ratio's yardstick: arena, spinning, malloc_trim, exposed tensors, sessions taking turns (args: resnet18|squeezenet|resnet20 [images per run] [repetitions]).", OrtSettingsBench.Run),
        ["memory"] = ("Peak RSS, wall and CPU time of whole CLI commands in child processes under /usr/bin/time (args: squeezenet|resnet18|resnet20 [BUDGET …] [--timeout SECONDS] [--with \"CLI ARGS\" …]).", MemoryBench.Run),
        ["numeric"] = ("The numeric core vs the hand-written code it replaced: GPTQ inverse factor and Ω clipping times side by side, GPTQ integers that change on a real model (args: kernels | gptq resnet|squeezenet).", NumericBench.Run),
        ["rounding"] = ("Rounding through QuantizedWeights: time, top-1 of rtn / gptq / bias correction, top-1 against calibration images (args: resnet|squeezenet|gram [variants|default|calib|time|a8]).", RoundingBench.Run),
    };

    static int Main(string[] args)
    {
        if (args.Length == 0 || !s_benchmarks.TryGetValue(args[0], out var bench))
        {
            Console.WriteLine("benchmarks:");
            foreach (var (name, (description, _)) in s_benchmarks) { Console.WriteLine($"  {name,-16} {description}"); }
            return args.Length == 0 ? 0 : 1;
        }
        return bench.Run(args[1..]);
    }
}

/// <summary>Timing helpers shared by the benchmarks.</summary>
static class Measure
{
    /// <summary>Median wall time in seconds of <paramref name="repetitions"/> runs of <paramref name="action"/> after one warm-up.</summary>
    public static double Median(int repetitions, Action action)
    {
        action();
        var times = new double[repetitions];
        for (int i = 0; i < repetitions; i++)
        {
            long start = Stopwatch.GetTimestamp();
            action();
            times[i] = Stopwatch.GetElapsedTime(start).TotalSeconds;
        }
        Array.Sort(times);
        return times[repetitions / 2];
    }

    /// <summary>The 1/5/15-minute load averages (/proc/loadavg): printed beside wall times, which the shared machine's load inflates.</summary>
    public static string LoadAverage() =>
        File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "unknown";

    /// <summary>CPU time (user + system, every thread) this process has used so far; deltas around a solve are its CPU cost, which the machine's load inflates far less than wall time.</summary>
    public static TimeSpan ProcessCpu()
    {
        using var self = Process.GetCurrentProcess();
        return self.TotalProcessorTime;
    }


    /// <summary>../shared/assets beside the repository.</summary>
    public static string Assets(string relative)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "BitBudget.slnx")))
            {
                return Path.GetFullPath(Path.Combine(dir.FullName, "..", "shared", "assets", relative));
            }
        }
        throw new InvalidOperationException("BitBudget.slnx not found above the benchmark binaries.");
    }
}

using System.Diagnostics;
using System.Globalization;
using BitBudget.Optimization;

namespace BitBudget.Bench;

/// <summary>
/// (a) Budget sweep: 20 searched layers × {2,4,8} with a dense PSD Ω = F·Fᵀ, F random of rank 60 (entries scaled down with
/// the bits), 8 byte budgets from the minimum to the maximum size; time to proven optimal per budget and algorithm.
/// (b) "tune": the QCR branch-and-bound's internal knobs on the issue-6 synthetic instances.
/// Usage: iqp-sweep [seeds=2] [limit=60] [algorithms=QcrBranchAndBound,RltScip]   |   iqp-sweep tune [layers=52 (54 = ResNet-50's sizes)] [seeds=3] [limit=60] [variants;…]
/// </summary>
static class IqpSweepBench
{
    public static int Run(string[] args)
    {
        if (args.Length > 0 && args[0] == "tune") { return Tune(args[1..]); }
        int seeds = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 2;
        double limit = args.Length > 1 ? double.Parse(args[1], CultureInfo.InvariantCulture) : 60;
        IqpAlgorithm[] algorithms = args.Length > 2
            ? [.. args[2].Split(',').Select(a => Enum.Parse<IqpAlgorithm>(a, ignoreCase: true))]
            : [IqpAlgorithm.QcrBranchAndBound, IqpAlgorithm.RltScip];
        Console.WriteLine($"20 layers × {{2,4,8}}, Ω = FFᵀ (rank 60), 8 budgets min..max; limit {limit} s, gap 1e-3, {Environment.ProcessorCount} cores");
        Console.WriteLine($"{"seed",4} {"budget",6} {"algorithm",-20} {"status",-9} {"seconds",8} {"objective",12} {"gap %",8}");
        var summary = new Dictionary<IqpAlgorithm, List<(double Seconds, bool Optimal)>>();
        for (int seed = 0; seed < seeds; seed++)
        {
            for (int k = 0; k < 8; k++)
            {
                double fraction = 0.25 + 0.75 * k / 7.0;   // bytes from all-2-bit (0.25 × all-8) to all-8-bit
                SearchProblem problem = Dense(20, 60, seed, fraction);
                foreach (IqpAlgorithm algorithm in algorithms)
                {
                    var r = BitSearch.Solve(problem, SearchMethod.Clado, new SearchOptions { Algorithm = algorithm, TimeLimit = TimeSpan.FromSeconds(limit) });
                    Console.WriteLine($"{seed,4} {fraction,6:F3} {algorithm,-20} {r.Status,-9} {r.SolveTime.TotalSeconds,8:F2} {r.Objective,12:G6} {100 * r.Gap,8:F3}");
                    if (!summary.TryGetValue(algorithm, out var list)) { summary[algorithm] = list = []; }
                    list.Add((r.SolveTime.TotalSeconds, r.Status == SearchStatus.Optimal));
                }
            }
        }
        foreach (var (algorithm, list) in summary)
        {
            double[] s = [.. list.Select(l => l.Seconds).Order()];
            Console.WriteLine($"  {algorithm,-20} median {s[s.Length / 2]:F2} s, max {s[^1]:F2} s, {list.Count(l => l.Optimal)}/{list.Count} proven optimal");
        }
        return 0;
    }

    /// <summary>20-layer dense PSD instance: Ω = F·Fᵀ with F ∈ R^{3L×rank}, entries U(−0.5,0.5)·2^{−(b−2)}, sizes exp(U(0,5)).</summary>
    internal static SearchProblem Dense(int layers, int rank, int seed, double fraction)
    {
        var random = new Random(1000 + seed);
        int[] bits = [2, 4, 8];
        int n = 3 * layers;
        var list = new SearchLayer[layers];
        double allEight = 0;
        for (int i = 0; i < layers; i++)
        {
            long count = Math.Max(1, (long)Math.Round(1000 * Math.Exp(5 * random.NextDouble())));
            list[i] = new SearchLayer($"layer{i}", count, count, bits);
            allEight += count;
        }
        var f = new double[n, rank];
        for (int u = 0; u < n; u++)
        {
            double scale = Math.Pow(2, -(bits[u % 3] - 2));
            for (int k = 0; k < rank; k++) { f[u, k] = scale * (random.NextDouble() - 0.5); }
        }
        double[,] omega = SyntheticProblem.Gram(f);
        return new SearchProblem(list, omega, [new Budget(BudgetKind.Bytes, fraction * allEight)]);
    }

    static int Tune(string[] args)
    {
        int layers = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 52;
        int seeds = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 3;
        double limit = args.Length > 2 ? double.Parse(args[2], CultureInfo.InvariantCulture) : 60;
        string only = args.Length > 3 ? args[3] : "";
        var variants = new (string Name, int Rounds, int Iterations, bool Blocks, double Drop, bool Tangent, bool Pseudo, bool Strong, bool Fixing)[]
        {
            ("r30 it100 drop1e-10", 30, 100, true, 1e-10, false, false, false, false), ("r30 it100 drop1e-6", 30, 100, true, 1e-6, false, false, false, false), ("r30 it100 drop1e-4", 30, 100, true, 1e-4, false, false, false, false),
            ("r30 it100 drop1e-3", 30, 100, true, 1e-3, false, false, false, false), ("r30 it50 drop1e-4", 30, 50, true, 1e-4, false, false, false, false), ("r30 it200 drop1e-4", 30, 200, true, 1e-4, false, false, false, false),
            ("r10 it100 drop1e-4", 10, 100, true, 1e-4, false, false, false, false), ("r30 diag it100 drop1e-4", 30, 100, false, 1e-4, false, false, false, false),
            ("tangent r30 it100 drop1e-4", 30, 100, true, 1e-4, true, false, false, false), ("tangent r10 it100 drop1e-4", 10, 100, true, 1e-4, true, false, false, false),
            ("tangent r30 it100 drop1e-6", 30, 100, true, 1e-6, true, false, false, false), ("tangent r30 it50 drop1e-4", 30, 50, true, 1e-4, true, false, false, false),
            ("pseudo r30 it100 drop1e-4", 30, 100, true, 1e-4, false, true, false, false), ("pseudo tangent r30 it100 drop1e-4", 30, 100, true, 1e-4, true, true, false, false),
            ("pseudo tangent r10 it100 drop1e-4", 10, 100, true, 1e-4, true, true, false, false),
            ("strong pseudo tangent r30 it100 drop1e-4", 30, 100, true, 1e-4, true, true, true, false),
            ("rcf strong pseudo tangent r30 it100 drop1e-4", 30, 100, true, 1e-4, true, true, true, true),
            ("rcf strong pseudo tangent r10 it100 drop1e-4", 10, 100, true, 1e-4, true, true, true, true),
            ("rcf strong pseudo tangent r20 it100 drop1e-4", 20, 100, true, 1e-4, true, true, true, true),
        };
        if (only.Length > 0) { variants = [.. variants.Where(v => only.Split(';').Contains(v.Name))]; }
        Console.WriteLine($"load {Measure.LoadAverage()}; cpu = process CPU seconds");
        Console.WriteLine($"{"seed",4} {"variant",-27} {"opt",3} {"seconds",8} {"cpu s",8} {"build s",8} {"rank",4} {"nodes",8} {"FW its",9} {"root bound",11} {"objective",10} {"gap %",7} {"fixed",7}");
        foreach (int seed in Enumerable.Range(0, seeds))
        {
            SearchProblem problem = layers == 54 ? SyntheticProblem.Generate(SyntheticProblem.ResNet50WeightCounts, seed) : SyntheticProblem.Generate(layers, seed);
            foreach (var (name, rounds, iterations, blocks, drop, tangent, pseudo, strong, fixing) in variants)
            {
                TimeSpan cpu0 = Measure.ProcessCpu();
                var clock = Stopwatch.StartNew();
                var options = new SearchOptions { TimeLimit = TimeSpan.FromSeconds(limit) };
                Instance inst = Instance.Compile(problem);
                int[] start = MipModels.Independent(inst, options, "HIGHS", options.TimeLimit).Choice!;
                double upper = LocalSearch.Improve(inst, start);
                var (outcome, stats) = ConvexBranchAndBound.Solve(inst, options, start, upper, clock, CancellationToken.None, rounds, iterations, blocks, drop, tangent, pseudo, reuseRelaxation: false, strongInit: strong, reducedCostFixing: fixing);
                double cpu = (Measure.ProcessCpu() - cpu0).TotalSeconds;
                double value = inst.Quadratic(outcome.Choice!);
                Console.WriteLine($"{seed,4} {name,-27} {(outcome.Optimal ? "yes" : "no"),3} {clock.Elapsed.TotalSeconds,8:F2} {cpu,8:F2} {stats.BuildSeconds,8:F2} {stats.Rank,4} {stats.Nodes,8} {stats.Iterations,9} {stats.RootBound,11:F4} {value,10:F5} {100 * MipModels.Gap(value, outcome.Bound),7:F3} {stats.FixedOut,7}");
            }
        }
        return 0;
    }
}

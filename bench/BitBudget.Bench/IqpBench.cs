using BitBudget.Optimization;

namespace BitBudget.Bench;

/// <summary>
/// The exact CLADO IQP on the issue's synthetic instances (budget 0.4 × all-8-bit size), every algorithm side by side:
/// time to proven optimality (gap ≤ 0.1 %) or the gap at the time limit, and the objective against the best one found.
/// Layer count 54 means ResNet-50's 54 layer sizes (SyntheticProblem.ResNet50WeightCounts) instead of exp(U(0,5)).
/// Usage: iqp [layers=19,52] [seeds=3] [limit-seconds=60] [algorithms=all] [relative-gap=1e-3]
/// </summary>
static class IqpBench
{
    public static int Run(string[] args)
    {
        int[] layerCounts = args.Length > 0 ? [.. args[0].Split(',').Select(int.Parse)] : [19, 52];
        int seeds = args.Length > 1 ? int.Parse(args[1]) : 3;
        double limit = args.Length > 2 ? double.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture) : 60;
        IqpAlgorithm[] algorithms = args.Length > 3
            ? [.. args[3].Split(',').Select(a => Enum.Parse<IqpAlgorithm>(a, ignoreCase: true))]
            : [IqpAlgorithm.QcrBranchAndBound, IqpAlgorithm.RltHighs, IqpAlgorithm.RltScip, IqpAlgorithm.McCormickHighs, IqpAlgorithm.OuterApproximationScip, IqpAlgorithm.OuterApproximationHighs, IqpAlgorithm.LocalSearch];
        double gap = args.Length > 4 ? double.Parse(args[4], System.Globalization.CultureInfo.InvariantCulture) : 1e-3;
        Console.WriteLine($"time limit {limit} s, relative gap {gap:G3}, {Environment.ProcessorCount} cores");
        Console.WriteLine($"load before: {Measure.LoadAverage()}");
        Console.WriteLine($"{"layers",6} {"seed",4} {"algorithm",-24} {"status",-9} {"seconds",8} {"CPU s",7} {"objective",12} {"bound",12} {"gap %",8} {"vs best %",9}");
        foreach (int layers in layerCounts)
        {
            var summary = new Dictionary<IqpAlgorithm, List<(double Seconds, double Cpu, bool Optimal, double Gap)>>();
            for (int seed = 0; seed < seeds; seed++)
            {
                SearchProblem problem = layers == 54 ? SyntheticProblem.Generate(SyntheticProblem.ResNet50WeightCounts, seed) : SyntheticProblem.Generate(layers, seed);
                var results = new List<(IqpAlgorithm, SearchResult, double Cpu)>();
                foreach (IqpAlgorithm algorithm in algorithms)
                {
                    var options = new SearchOptions { Algorithm = algorithm, TimeLimit = TimeSpan.FromSeconds(limit), RelativeGap = gap };
                    // CPU time (user + sys of the process) beside wall: the solvers are multi-threaded and the machine is shared.
                    TimeSpan cpu0 = System.Diagnostics.Process.GetCurrentProcess().TotalProcessorTime;
                    SearchResult solved = BitSearch.Solve(problem, SearchMethod.Clado, options);
                    results.Add((algorithm, solved, (System.Diagnostics.Process.GetCurrentProcess().TotalProcessorTime - cpu0).TotalSeconds));
                }
                double best = results.Min(r => r.Item2.Objective);
                foreach (var (algorithm, r, cpu) in results)
                {
                    Console.WriteLine($"{layers,6} {seed,4} {algorithm,-24} {r.Status,-9} {r.SolveTime.TotalSeconds,8:F2} {cpu,7:F2} {r.Objective,12:G6} {r.BestBound,12:G6} {100 * r.Gap,8:F3} {100 * (r.Objective - best) / best,9:F3}");
                    if (!summary.TryGetValue(algorithm, out var list)) { summary[algorithm] = list = []; }
                    list.Add((r.SolveTime.TotalSeconds, cpu, r.Status == SearchStatus.Optimal, r.Gap));
                }
            }
            Console.WriteLine();
            Console.WriteLine($"{layers} layers × 3 schemes, {seeds} seeds: median seconds (wall, CPU), proven optimal count, median gap at stop");
            foreach (var (algorithm, list) in summary)
            {
                double[] seconds = [.. list.Select(l => l.Seconds).Order()];
                double[] cpus = [.. list.Select(l => l.Cpu).Order()];
                double[] gaps = [.. list.Select(l => l.Gap).Order()];
                Console.WriteLine($"  {algorithm,-24} {seconds[seconds.Length / 2],8:F2} s  CPU {cpus[cpus.Length / 2],7:F2} s  {list.Count(l => l.Optimal)}/{list.Count} optimal  gap {100 * gaps[gaps.Length / 2]:F3} %");
            }
            Console.WriteLine();
        }
        Console.WriteLine($"load after: {Measure.LoadAverage()}");
        return 0;
    }
}

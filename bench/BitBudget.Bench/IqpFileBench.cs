using System.Diagnostics;
using System.Globalization;
using BitBudget.Optimization;

namespace BitBudget.Bench;

/// <summary>
/// The exact CLADO IQP on a saved problem (layers + Ω, e.g. the measured ResNet-20 Ω written by `iqp-real … PROBLEM.json`):
/// every budget × algorithm side by side, median wall of several repetitions, status, objective and gap.
/// Usage: iqp-file PROBLEM.json [budgets=2.5bits,3bits,3.25bits,3.5bits,3.75bits,4bits,4.5bits,5bits,6bits] [algorithms=Portfolio,RltScip] [repetitions=3] [limit=60]
/// `iqp-file PROBLEM.json qcr [budgets] [repetitions=3] [limit=60]`: the QCR branch-and-bound alone, full-space against
/// tangent-space reformulation, most-fractional against pseudocost branching: root bound, nodes, median seconds.
/// </summary>
static class IqpFileBench
{
    public static int Run(string[] args)
    {
        if (args.Length == 0) { Console.Error.WriteLine("error: iqp-file needs a PROBLEM.json"); return 2; }
        if (args.Length > 1 && args[1] == "qcr") { return Qcr(args[0], args[2..]); }
        string[] budgets = args.Length > 1 ? args[1].Split(',') : ["2.5bits", "3bits", "3.25bits", "3.5bits", "3.75bits", "4bits", "4.5bits", "5bits", "6bits"];
        IqpAlgorithm[] algorithms = args.Length > 2
            ? [.. args[2].Split(',').Select(a => Enum.Parse<IqpAlgorithm>(a, ignoreCase: true))]
            : [IqpAlgorithm.Portfolio, IqpAlgorithm.RltScip];
        int repetitions = args.Length > 3 ? int.Parse(args[3], CultureInfo.InvariantCulture) : 3;
        double limit = args.Length > 4 ? double.Parse(args[4], CultureInfo.InvariantCulture) : 60;
        Console.WriteLine($"{args[0]}: {repetitions} sweeps (median per budget; each sweep solves every budget in order from a cold start, as the Pareto sweep does), limit {limit} s, gap 1e-3, {Environment.ProcessorCount} cores, load {Load()}");
        SearchProblem[] problems = [.. budgets.Select(b => ProblemFile.Read(args[0], [Budget.Parse(b)]))];
        var seconds = new double[algorithms.Length, budgets.Length, repetitions];
        // CPU time (user + sys of the whole process) beside wall: the solvers are multi-threaded and the machine is shared.
        var cpu = new double[algorithms.Length, budgets.Length, repetitions];
        var results = new SearchResult[algorithms.Length, budgets.Length];
        for (int rep = 0; rep < repetitions; rep++)
        {
            for (int a = 0; a < algorithms.Length; a++)
            {
                ConvexRelaxation.ClearCache();
                var options = new SearchOptions { Algorithm = algorithms[a], TimeLimit = TimeSpan.FromSeconds(limit) };
                for (int k = 0; k < budgets.Length; k++)
                {
                    TimeSpan cpu0 = Process.GetCurrentProcess().TotalProcessorTime;
                    var watch = Stopwatch.StartNew();
                    results[a, k] = BitSearch.Solve(problems[k], SearchMethod.Clado, options);
                    seconds[a, k, rep] = watch.Elapsed.TotalSeconds;
                    cpu[a, k, rep] = (Process.GetCurrentProcess().TotalProcessorTime - cpu0).TotalSeconds;
                }
            }
        }
        Console.WriteLine($"{"budget",-10} {"algorithm",-20} {"status",-9} {"median s",8} {"max s",7} {"CPU s",7} {"objective",12} {"bound",12} {"gap %",7}  solver");
        var summary = new Dictionary<IqpAlgorithm, List<double>>();
        for (int k = 0; k < budgets.Length; k++)
        {
            for (int a = 0; a < algorithms.Length; a++)
            {
                double[] s = [.. Enumerable.Range(0, repetitions).Select(i => seconds[a, k, i]).Order()];
                double[] c = [.. Enumerable.Range(0, repetitions).Select(i => cpu[a, k, i]).Order()];
                SearchResult r = results[a, k];
                if (!summary.TryGetValue(algorithms[a], out var list)) { summary[algorithms[a]] = list = []; }
                list.Add(s[repetitions / 2]);
                Console.WriteLine($"{budgets[k],-10} {algorithms[a],-20} {r.Status,-9} {s[repetitions / 2],8:F3} {s[^1],7:F2} {c[repetitions / 2],7:F2} {r.Objective,12:G7} {r.BestBound,12:G7} {100 * r.Gap,7:F3}  {r.Solver}");
            }
            double best = Enumerable.Range(0, algorithms.Length).Min(a => results[a, k].Objective);
            if (Enumerable.Range(0, algorithms.Length).Any(a => results[a, k].Objective > best * (1 + 1e-3) + 1e-12))
            {
                Console.WriteLine($"  !! objectives disagree at {budgets[k]}");
            }
        }
        Console.WriteLine();
        foreach (var (algorithm, list) in summary)
        {
            double[] s = [.. list.Order()];
            Console.WriteLine($"  {algorithm,-20} per-budget medians: median {s[s.Length / 2]:F3} s, max {s[^1]:F3} s, sum {s.Sum():F2} s");
        }
        Console.WriteLine($"load after: {Load()}");
        return 0;
    }

    static int Qcr(string path, string[] args)
    {
        string[] budgets = args.Length > 0 ? args[0].Split(',') : ["2.5bits", "3bits", "3.25bits", "3.5bits", "3.75bits", "4bits", "4.5bits", "5bits", "6bits"];
        int repetitions = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 3;
        double limit = args.Length > 2 ? double.Parse(args[2], CultureInfo.InvariantCulture) : 60;
        Console.WriteLine($"{path}: QCR B&B, full-space vs tangent-space B, most-fractional vs pseudocost (pc) branching; {repetitions} repetitions (median), limit {limit} s");
        Console.WriteLine($"{"budget",-10} {"variant",-8} {"opt",3} {"median s",8} {"build s",7} {"rank",4} {"nodes",7} {"root bound",12} {"objective",12} {"root gap %",10}");
        foreach (string b in budgets)
        {
            Instance inst = Instance.Compile(ProblemFile.Read(path, [Budget.Parse(b)]));
            var options = new SearchOptions { TimeLimit = TimeSpan.FromSeconds(limit) };
            foreach (var (variant, tangent, pseudo) in new[] { ("full", false, false), ("tangent", true, false), ("full+pc", false, true), ("tan+pc", true, true) })
            {
                var seconds = new double[repetitions];
                MipOutcome outcome = null!;
                ConvexBranchAndBound.Stats stats = null!;
                for (int i = 0; i < repetitions; i++)
                {
                    var clock = Stopwatch.StartNew();
                    int[] start = MipModels.Independent(inst, options, "HIGHS", options.TimeLimit).Choice!;
                    double upper = LocalSearch.Improve(inst, start);
                    (outcome, stats) = ConvexBranchAndBound.Solve(inst, options, start, upper, clock, CancellationToken.None, tangent: tangent, pseudocosts: pseudo, reuseRelaxation: false);
                    seconds[i] = clock.Elapsed.TotalSeconds;
                }
                Array.Sort(seconds);
                double value = inst.Quadratic(outcome.Choice!);
                Console.WriteLine($"{b,-10} {variant,-8} {(outcome.Optimal ? "yes" : "no"),3} {seconds[repetitions / 2],8:F3} {stats.BuildSeconds,7:F3} {stats.Rank,4} {stats.Nodes,7} {stats.RootBound,12:G6} {value,12:G6} {100 * MipModels.Gap(value, stats.RootBound),10:F2}");
            }
        }
        return 0;
    }

    static string Load() => File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Split(' ')[0] : "?";
}

using System.Diagnostics;
using System.Globalization;
using BitBudget.Optimization;

namespace BitBudget.Bench;

/// <summary>
/// The exact CLADO IQP on a saved problem (layers + Ω, e.g. the measured ResNet-20 Ω written by `iqp-real … PROBLEM.json`):
/// every budget × algorithm side by side, median wall of several repetitions, status, objective and gap.
/// Usage: iqp-file PROBLEM.json [budgets=2.5bits,3bits,3.25bits,3.5bits,3.75bits,4bits,4.5bits,5bits,6bits] [variants=Portfolio-cold,Portfolio] [repetitions=3] [limit=60]
/// (a variant is an IqpAlgorithm, warm-started across the sweep's budgets as BitSearch does by default, or NAME-cold: every budget from scratch);
/// wall and process CPU seconds per solve.
/// `iqp-file PROBLEM.json qcr [budgets] [repetitions=3] [limit=60] [variants=full,tangent,full+pc,tan+pc,tan+pc+si]`: the QCR
/// branch-and-bound alone, cold, full-space against tangent-space reformulation, most-fractional against pseudocost branching,
/// with or without the strong-branching pseudocost initialisation (si): root bound, nodes, median wall and CPU seconds.
/// </summary>
static class IqpFileBench
{
    public static int Run(string[] args)
    {
        if (args.Length == 0) { Console.Error.WriteLine("error: iqp-file needs a PROBLEM.json"); return 2; }
        if (args.Length > 1 && args[1] == "qcr") { return Qcr(args[0], args[2..]); }
        string[] budgets = args.Length > 1 ? args[1].Split(',') : ["2.5bits", "3bits", "3.25bits", "3.5bits", "3.75bits", "4bits", "4.5bits", "5bits", "6bits"];
        // "Name" = the algorithm as the sweep runs it (warm: each budget starts from what the earlier ones left, SweepMemory);
        // "Name-cold" = every budget from scratch (the reformulation is still built once per sweep, as before issue 21's warm starts).
        (string Label, IqpAlgorithm Algorithm, bool Warm)[] variants = args.Length > 2
            ? [.. args[2].Split(',').Select(a => a.EndsWith("-cold", StringComparison.OrdinalIgnoreCase)
                ? (a, Enum.Parse<IqpAlgorithm>(a[..^5], ignoreCase: true), false)
                : (a, Enum.Parse<IqpAlgorithm>(a, ignoreCase: true), true))]
            : [("Portfolio-cold", IqpAlgorithm.Portfolio, false), ("Portfolio", IqpAlgorithm.Portfolio, true)];
        int repetitions = args.Length > 3 ? int.Parse(args[3], CultureInfo.InvariantCulture) : 3;
        double limit = args.Length > 4 ? double.Parse(args[4], CultureInfo.InvariantCulture) : 60;
        Console.WriteLine($"{args[0]}: {repetitions} sweeps (median per budget; each sweep solves every budget in the order given, as the Pareto sweep does, " +
            $"from an empty memory), limit {limit} s, gap 1e-3, {Environment.ProcessorCount} cores, load {Measure.LoadAverage()} at start");
        SearchProblem[] problems = [.. budgets.Select(b => ProblemFile.Read(args[0], [Budget.Parse(b)]))];
        var seconds = new double[variants.Length, budgets.Length, repetitions];
        var cpu = new double[variants.Length, budgets.Length, repetitions];
        var results = new SearchResult[variants.Length, budgets.Length];
        // Warm-up (JIT, solver libraries): one cold solve of the first budget per variant, not timed.
        foreach (var v in variants)
        {
            ConvexRelaxation.ClearCache();
            _ = BitSearch.Solve(problems[0], SearchMethod.Clado, new SearchOptions { Algorithm = v.Algorithm, TimeLimit = TimeSpan.FromSeconds(limit), ReuseAcrossBudgets = false });
        }
        for (int rep = 0; rep < repetitions; rep++)
        {
            for (int a = 0; a < variants.Length; a++)
            {
                ConvexRelaxation.ClearCache();
                SweepMemory.Clear();
                var options = new SearchOptions { Algorithm = variants[a].Algorithm, TimeLimit = TimeSpan.FromSeconds(limit), ReuseAcrossBudgets = variants[a].Warm };
                for (int k = 0; k < budgets.Length; k++)
                {
                    TimeSpan cpu0 = Measure.ProcessCpu();
                    var watch = Stopwatch.StartNew();
                    results[a, k] = BitSearch.Solve(problems[k], SearchMethod.Clado, options);
                    seconds[a, k, rep] = watch.Elapsed.TotalSeconds;
                    cpu[a, k, rep] = (Measure.ProcessCpu() - cpu0).TotalSeconds;
                }
            }
        }
        Console.WriteLine($"{"budget",-10} {"variant",-24} {"status",-9} {"wall s",8} {"cpu s",7} {"max wall",8} {"objective",12} {"bound",12} {"gap %",7}  solver");
        var summary = new Dictionary<string, (List<double> Wall, List<double> Cpu, int Optimal)>();
        for (int k = 0; k < budgets.Length; k++)
        {
            for (int a = 0; a < variants.Length; a++)
            {
                double[] s = [.. Enumerable.Range(0, repetitions).Select(i => seconds[a, k, i]).Order()];
                double[] c = [.. Enumerable.Range(0, repetitions).Select(i => cpu[a, k, i]).Order()];
                SearchResult r = results[a, k];
                if (!summary.TryGetValue(variants[a].Label, out var entry)) { entry = ([], [], 0); }
                entry.Wall.Add(s[repetitions / 2]);
                entry.Cpu.Add(c[repetitions / 2]);
                summary[variants[a].Label] = entry with { Optimal = entry.Optimal + (r.Status == SearchStatus.Optimal ? 1 : 0) };
                Console.WriteLine($"{budgets[k],-10} {variants[a].Label,-24} {r.Status,-9} {s[repetitions / 2],8:F3} {c[repetitions / 2],7:F3} {s[^1],8:F2} {r.Objective,12:G7} {r.BestBound,12:G7} {100 * r.Gap,7:F3}  {r.Solver}");
            }
            double best = Enumerable.Range(0, variants.Length).Min(a => results[a, k].Objective);
            if (Enumerable.Range(0, variants.Length).Any(a => results[a, k].Objective > best * (1 + 1e-3) + 1e-12))
            {
                Console.WriteLine($"  !! objectives disagree at {budgets[k]}");
            }
        }
        Console.WriteLine();
        foreach (var (label, (wall, cpuList, optimal)) in summary)
        {
            double[] w = [.. wall.Order()], c = [.. cpuList.Order()];
            Console.WriteLine($"  {label,-24} per-budget medians: wall median {w[w.Length / 2]:F3} s, max {w[^1]:F3} s, sum {w.Sum():F2} s; " +
                $"cpu median {c[c.Length / 2]:F3} s, max {c[^1]:F3} s, sum {c.Sum():F2} s; {optimal}/{wall.Count} proven");
        }
        Console.WriteLine($"load {Measure.LoadAverage()} at end");
        return 0;
    }

    static int Qcr(string path, string[] args)
    {
        string[] budgets = args.Length > 0 ? args[0].Split(',') : ["2.5bits", "3bits", "3.25bits", "3.5bits", "3.75bits", "4bits", "4.5bits", "5bits", "6bits"];
        int repetitions = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 3;
        double limit = args.Length > 2 ? double.Parse(args[2], CultureInfo.InvariantCulture) : 60;
        string[] only = args.Length > 3 ? args[3].Split(',') : [];
        Console.WriteLine($"{path}: QCR B&B, full-space vs tangent-space B, most-fractional vs pseudocost (pc) branching, reduced-cost fixing (rcf); {repetitions} repetitions (median), limit {limit} s");
        Console.WriteLine($"load {Measure.LoadAverage()}; si = strong-branching pseudocost initialisation; cpu = process CPU seconds (median)");
        Console.WriteLine($"{"budget",-10} {"variant",-13} {"opt",3} {"median s",8} {"cpu s",7} {"build s",7} {"rank",4} {"nodes",7} {"root bound",12} {"objective",12} {"root gap %",10} {"fixed",7}");
        foreach (string b in budgets)
        {
            Instance inst = Instance.Compile(ProblemFile.Read(path, [Budget.Parse(b)]));
            var options = new SearchOptions { TimeLimit = TimeSpan.FromSeconds(limit) };
            foreach (var (variant, tangent, pseudo, strong, fixing) in new[] { ("full", false, false, false, false), ("tangent", true, false, false, false), ("full+pc", false, true, false, false), ("tan+pc", true, true, false, false), ("tan+pc+si", true, true, true, false), ("tan+pc+si+rcf", true, true, true, true) })
            {
                if (only.Length > 0 && !only.Contains(variant)) { continue; }
                var seconds = new double[repetitions];
                var cpu = new double[repetitions];
                MipOutcome outcome = null!;
                ConvexBranchAndBound.Stats stats = null!;
                for (int i = 0; i < repetitions; i++)
                {
                    TimeSpan cpu0 = Measure.ProcessCpu();
                    var clock = Stopwatch.StartNew();
                    int[] start = MipModels.Independent(inst, options, "HIGHS", options.TimeLimit).Choice!;
                    double upper = LocalSearch.Improve(inst, start);
                    (outcome, stats) = ConvexBranchAndBound.Solve(inst, options, start, upper, clock, CancellationToken.None, tangent: tangent, pseudocosts: pseudo, reuseRelaxation: false, strongInit: strong, reducedCostFixing: fixing);
                    seconds[i] = clock.Elapsed.TotalSeconds;
                    cpu[i] = (Measure.ProcessCpu() - cpu0).TotalSeconds;
                }
                Array.Sort(seconds);
                Array.Sort(cpu);
                double value = inst.Quadratic(outcome.Choice!);
                Console.WriteLine($"{b,-10} {variant,-13} {(outcome.Optimal ? "yes" : "no"),3} {seconds[repetitions / 2],8:F3} {cpu[repetitions / 2],7:F3} {stats.BuildSeconds,7:F3} {stats.Rank,4} {stats.Nodes,7} {stats.RootBound,12:G6} {value,12:G6} {100 * MipModels.Gap(value, stats.RootBound),10:F2} {stats.FixedOut,7}");
            }
        }
        return 0;
    }

}

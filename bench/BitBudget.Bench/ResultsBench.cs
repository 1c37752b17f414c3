using System.Globalization;
using BitBudget.Reporting;

namespace BitBudget.Bench;

/// <summary>
/// Combines the pareto.json of several `bitbudget run` folders (one per draw of the sensitivity set) into one
/// methods × budgets table (mean ± standard deviation), with each point's average bits and the measurement times.
/// Args: RUN_DIR [RUN_DIR …].
/// </summary>
static class ResultsBench
{
    public static int Run(string[] args)
    {
        if (args.Length == 0) { Console.Error.WriteLine("usage: results RUN_DIR [RUN_DIR …]"); return 1; }
        var fronts = args.Select(d => ParetoReport.ReadJson(Path.Combine(d, "pareto.json"))).ToList();
        var points = fronts.SelectMany((f, draw) => f.Points.Select(p => p with { Draw = draw })).ToList();
        var combined = fronts[0] with { Points = points };
        Console.WriteLine(ResultsTable.ToMarkdown(combined));
        Console.WriteLine("Average weight bits of each point (first draw):");
        Console.WriteLine();
        foreach (var group in fronts[0].Points.GroupBy(p => p.Method))
        {
            Console.WriteLine($"- {group.Key}: " + string.Join(", ", group.Select(p => $"{p.BudgetLabel} → {p.AverageBits.ToString("F3", CultureInfo.InvariantCulture)}")));
        }
        foreach (string d in args)
        {
            var manifest = ManifestReport.ReadJson(Path.Combine(d, "manifest.json"));
            Console.WriteLine($"- {Path.GetFileName(d.TrimEnd('/'))}: " + string.Join(", ", manifest.Timings.Select(t => $"{t.Stage} {t.Seconds.ToString("F0", CultureInfo.InvariantCulture)} s")));
        }
        return 0;
    }
}

using System.Globalization;
using System.Text;

namespace BitBudget.Reporting;

/// <summary>Which measured accuracy a results table shows.</summary>
internal enum Top1Source
{
    /// <summary>The exported QDQ model run in ONNX Runtime, falling back to the simulated one where nothing was exported.</summary>
    Exported,
    /// <summary>The fake-quantized (simulated) model.</summary>
    Simulated,
}

/// <summary>Methods × budgets tables of top-1 for the README and results documents.</summary>
internal static class ResultsTable
{
    /// <summary>
    /// A Markdown table with one row per (method, rounding) and one column per budget label (both in first-seen
    /// order), each cell the mean top-1 in percent over the draws of that budget, "± s" the sample standard
    /// deviation when there are several draws, "–" where nothing was measured. The first row is the float model.
    /// </summary>
    public static string ToMarkdown(ParetoFront front, Top1Source source = Top1Source.Exported)
    {
        ParetoReport.Validate(front);
        Func<ParetoPoint, double?> metric = source == Top1Source.Exported ? p => p.Top1 : p => p.Top1Simulated;
        var budgets = Distinct(front.Points.Select(p => p.BudgetLabel));
        var rows = Distinct(front.Points.Select(p => RowKey(p)));
        bool anyDraws = front.Points.Select(p => p.Draw).Distinct().Count() > 1;

        var sb = new StringBuilder();
        sb.Append("| method | ").AppendJoin(" | ", budgets.Select(Cell)).Append(" |\n");
        sb.Append("|---|").Append(string.Concat(Enumerable.Repeat("---:|", budgets.Count))).Append('\n');
        string fp = (front.FpTop1 * 100).ToString("0.00", CultureInfo.InvariantCulture);
        sb.Append("| float | ").AppendJoin(" | ", budgets.Select(_ => fp)).Append(" |\n");
        foreach (string row in rows)
        {
            sb.Append("| ").Append(Cell(row));
            foreach (string budget in budgets)
            {
                var values = front.Points.Where(p => RowKey(p) == row && p.BudgetLabel == budget)
                    .Select(metric).Where(v => v.HasValue).Select(v => v!.Value * 100).ToList();
                sb.Append(" | ").Append(Format(values));
            }
            sb.Append(" |\n");
        }
        if (anyDraws)
        {
            sb.Append('\n').Append("Top-1 (%) on ").Append(front.EvalSplit).Append(": mean ± sample standard deviation over draws of the sensitivity set.\n");
        }
        else
        {
            sb.Append('\n').Append("Top-1 (%) on ").Append(front.EvalSplit).Append(".\n");
        }
        return sb.ToString();
    }

    internal static string RowKey(ParetoPoint p) => $"{p.Method} ({p.Rounding})";

    internal static string Format(IReadOnlyList<double> values)
    {
        if (values.Count == 0)
        {
            return "–";
        }
        double mean = values.Average();
        string text = mean.ToString("0.00", CultureInfo.InvariantCulture);
        if (values.Count > 1)
        {
            double variance = values.Sum(v => (v - mean) * (v - mean)) / (values.Count - 1);
            text += " ± " + Math.Sqrt(variance).ToString("0.00", CultureInfo.InvariantCulture);
        }
        return text;
    }

    static List<string> Distinct(IEnumerable<string> items)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var list = new List<string>();
        foreach (string item in items)
        {
            if (seen.Add(item))
            {
                list.Add(item);
            }
        }
        return list;
    }

    // A '|' inside a cell would end it.
    static string Cell(string text) => text.Replace("|", "\\|", StringComparison.Ordinal);
}

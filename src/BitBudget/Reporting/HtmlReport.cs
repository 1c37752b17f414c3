using System.Globalization;
using System.Net;
using System.Text;
using BitBudget.Internals;

namespace BitBudget.Reporting;

/// <summary>What the HTML report shows; everything but the front is optional and its section is left out when null.</summary>
/// <param name="Front">The evaluated configurations (accuracy table, Pareto plot, bit chart).</param>
internal sealed record HtmlReportInput(ParetoFront Front)
{
    /// <summary>Page title; defaults to "BitBudget report: {model}".</summary>
    public string? Title { get; init; }

    /// <summary>Per-layer rows for the model summary, the sensitivity table and the bit chart's layer order.</summary>
    public IReadOnlyList<LayerReportRow>? Layers { get; init; }

    /// <summary>The measured Ω for the heat map.</summary>
    public OmegaMatrix? Omega { get; init; }

    /// <summary>The run manifest, shown as a table.</summary>
    public RunManifest? Manifest { get; init; }

    /// <summary>Budget label whose configurations the bit chart compares; defaults to the middle budget of the sweep.</summary>
    public string? BitChartBudget { get; init; }

    /// <summary>Free-text notes shown under the title (escaped, one paragraph each).</summary>
    public IReadOnlyList<string> Notes { get; init; } = [];
}

/// <summary>Writes one self-contained HTML page (inline CSS, PNG charts as data URIs, no external resource).</summary>
internal static class HtmlReport
{
    /// <summary>Writes the report for <paramref name="input"/> to <paramref name="path"/>, atomically.</summary>
    public static void Write(string path, HtmlReportInput input) => AtomicFile.WriteAllText(path, Render(input));

    /// <summary>The HTML text <see cref="Write"/> writes.</summary>
    public static string Render(HtmlReportInput input)
    {
        ArgumentNullException.ThrowIfNull(input);
        var front = input.Front;
        ParetoReport.Validate(front);
        string title = input.Title ?? $"BitBudget report: {front.ModelName}";

        var h = new StringBuilder(64 * 1024);
        h.Append("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>").Append(E(title)).Append("</title>\n");
        h.Append("<style>").Append(Css).Append("</style>\n</head>\n<body>\n");
        h.Append("<h1>").Append(E(title)).Append("</h1>\n");
        foreach (string note in input.Notes)
        {
            h.Append("<p>").Append(E(note)).Append("</p>\n");
        }

        Summary(h, input);
        Accuracy(h, front);

        h.Append("<h2>Pareto front</h2>\n");
        Image(h, ParetoReport.RenderPng(front), "Pareto plot: top-1 and predicted loss vs weight size");

        BitChart(h, input);

        if (input.Omega is { } omega)
        {
            h.Append("<h2>Cross-layer sensitivity Ω</h2>\n");
            Image(h, ReportCharts.Omega(omega, 900, 820), "Heat map of Omega");
            if (omega.Spectrum is { } s)
            {
                h.Append("<p>Eigenvalues of the measured Ω: min ").Append(N(s.MinEigenvalue)).Append(", max ").Append(N(s.MaxEigenvalue))
                 .Append(", ").Append(s.NegativeCount.ToString(CultureInfo.InvariantCulture)).Append(" negative; the PSD projection removed ")
                 .Append((s.ClippedMass * 100).ToString("0.###", CultureInfo.InvariantCulture)).Append("% of the spectral mass.</p>\n");
            }
        }

        if (input.Layers is { Count: > 0 } layers)
        {
            SensitivityTable(h, layers);
        }
        if (input.Manifest is { } manifest)
        {
            Manifest(h, manifest);
        }
        h.Append("</body>\n</html>\n");
        return h.ToString();
    }

    static void Summary(StringBuilder h, HtmlReportInput input)
    {
        var f = input.Front;
        h.Append("<h2>Model</h2>\n<table class=\"kv\">\n");
        Row(h, "model", f.ModelName);
        Row(h, "evaluation", f.EvalSplit);
        Row(h, "float top-1", Pct(f.FpTop1));
        Row(h, "float weight size", Bytes(f.FpSizeBytes));
        if (input.Layers is { Count: > 0 } layers)
        {
            Row(h, "quantizable layers", $"{layers.Count} ({layers.Count(l => l.Fixed)} fixed)");
            Row(h, "weights", layers.Sum(l => l.WeightCount).ToString("N0", CultureInfo.InvariantCulture));
            Row(h, "MACs per image", layers.Sum(l => l.MacsPerImage).ToString("N0", CultureInfo.InvariantCulture));
        }
        h.Append("</table>\n");
    }

    static void Accuracy(StringBuilder h, ParetoFront f)
    {
        h.Append("<h2>Accuracy and size</h2>\n<table>\n<tr><th>method</th><th>rounding</th><th>budget</th><th>draw</th><th>avg bits</th><th>size</th>")
         .Append("<th>compression</th><th>predicted ΔL</th><th>top-1 simulated</th><th>top-1 exported</th><th>Δ vs float</th><th>solver</th><th>gap</th></tr>\n");
        h.Append("<tr class=\"fp\"><td>float</td><td></td><td></td><td></td><td>32</td><td>").Append(E(Bytes(f.FpSizeBytes)))
         .Append("</td><td>1×</td><td></td><td>").Append(Pct(f.FpTop1)).Append("</td><td></td><td></td><td></td><td></td></tr>\n");
        foreach (var p in f.Points)
        {
            h.Append("<tr><td>").Append(E(p.Method)).Append("</td><td>").Append(E(p.Rounding)).Append("</td><td>").Append(E(p.BudgetLabel))
             .Append("</td><td>").Append(p.Draw.ToString(CultureInfo.InvariantCulture))
             .Append("</td><td>").Append(p.AverageBits.ToString("0.###", CultureInfo.InvariantCulture))
             .Append("</td><td>").Append(E(Bytes(p.SizeBytes)))
             .Append("</td><td>").Append(p.SizeBytes > 0 ? (f.FpSizeBytes / p.SizeBytes).ToString("0.0", CultureInfo.InvariantCulture) + "×" : "")
             .Append("</td><td>").Append(p.PredictedLoss is double l ? N(l) : "")
             .Append("</td><td>").Append(p.Top1Simulated is double s ? Pct(s) : "")
             .Append("</td><td>").Append(p.Top1Exported is double x ? Pct(x) : "")
             .Append("</td><td>").Append(p.Top1 is double t ? ((t - f.FpTop1) * 100).ToString("+0.00;−0.00;0.00", CultureInfo.InvariantCulture) : "")
             .Append("</td><td>").Append(E(p.SolverStatus))
             .Append("</td><td>").Append(p.Gap is double g ? (g * 100).ToString("0.###", CultureInfo.InvariantCulture) + "%" : "")
             .Append("</td></tr>\n");
        }
        h.Append("</table>\n<p class=\"small\">Top-1 on ").Append(E(f.EvalSplit)).Append(". Predicted ΔL is xᵀΩx. Size counts the weight bytes of all quantized layers.</p>\n");
        h.Append("<h3>Methods × budgets (top-1 %)</h3>\n");
        MarkdownTableAsHtml(h, f);
    }

    // The same numbers as ResultsTable.ToMarkdown, as an HTML table.
    static void MarkdownTableAsHtml(StringBuilder h, ParetoFront f)
    {
        var budgets = f.Points.Select(p => p.BudgetLabel).Distinct(StringComparer.Ordinal).ToList();
        var rows = f.Points.Select(ResultsTable.RowKey).Distinct(StringComparer.Ordinal).ToList();
        h.Append("<table>\n<tr><th>method</th>");
        foreach (string b in budgets)
        {
            h.Append("<th>").Append(E(b)).Append("</th>");
        }
        h.Append("</tr>\n");
        foreach (string r in rows)
        {
            h.Append("<tr><td>").Append(E(r)).Append("</td>");
            foreach (string b in budgets)
            {
                var values = f.Points.Where(p => ResultsTable.RowKey(p) == r && p.BudgetLabel == b && p.Top1.HasValue)
                    .Select(p => p.Top1!.Value * 100).ToList();
                h.Append("<td>").Append(E(ResultsTable.Format(values))).Append("</td>");
            }
            h.Append("</tr>\n");
        }
        h.Append("</table>\n");
    }

    static void BitChart(StringBuilder h, HtmlReportInput input)
    {
        var f = input.Front;
        string? budget = input.BitChartBudget ?? MiddleBudget(f);
        if (budget is null)
        {
            return;
        }
        var configs = f.Points.Where(p => p.BudgetLabel == budget && p.Draw == f.Points.Where(q => q.BudgetLabel == budget).Min(q => q.Draw)).ToList();
        if (configs.Count == 0)
        {
            return;
        }
        IReadOnlyList<string> layers = input.Layers is { Count: > 0 } rows
            ? [.. rows.OrderBy(r => r.Index).Select(r => r.Name)]
            : [.. configs[0].Bits.Select(b => b.Layer)];
        var series = new List<(string, IReadOnlyList<int>)>();
        foreach (var c in configs)
        {
            var byLayer = new Dictionary<string, int>(StringComparer.Ordinal);
            foreach (var lb in c.Bits)
            {
                byLayer[lb.Layer] = lb.Bits;
            }
            series.Add(($"{c.Method} ({c.Rounding})", [.. layers.Select(l => byLayer.GetValueOrDefault(l))]));
        }
        h.Append("<h2>Bits per layer at ").Append(E(budget)).Append("</h2>\n");
        Image(h, ReportCharts.LayerChoice(layers, series, $"bits per layer at {budget}", 1200, 520), "Bits per layer per method");
    }

    static string? MiddleBudget(ParetoFront f)
    {
        var budgets = f.Points.Where(p => !p.IsUniform).GroupBy(p => p.BudgetLabel)
            .Select(g => (Label: g.Key, Bits: g.Average(p => p.AverageBits))).OrderBy(g => g.Bits).ToList();
        if (budgets.Count == 0)
        {
            budgets = [.. f.Points.GroupBy(p => p.BudgetLabel).Select(g => (Label: g.Key, Bits: g.Average(p => p.AverageBits))).OrderBy(g => g.Bits)];
        }
        return budgets.Count == 0 ? null : budgets[budgets.Count / 2].Label;
    }

    static void SensitivityTable(StringBuilder h, IReadOnlyList<LayerReportRow> layers)
    {
        int[] bits = LayerReport.BitColumns(layers);
        string[] keys = LayerReport.MethodColumns(layers);
        h.Append("<h2>Per-layer sensitivity and bits</h2>\n<table>\n<tr><th>#</th><th>layer</th><th>op</th><th>weights</th><th>MACs/image</th><th>fixed</th>");
        foreach (int b in bits)
        {
            h.Append("<th>ΔL ").Append(b.ToString(CultureInfo.InvariantCulture)).Append("-bit</th>");
        }
        foreach (string k in keys)
        {
            h.Append("<th>bits ").Append(E(k)).Append("</th>");
        }
        h.Append("</tr>\n");
        foreach (var r in layers)
        {
            h.Append("<tr><td>").Append(r.Index.ToString(CultureInfo.InvariantCulture)).Append("</td><td>").Append(E(r.Name))
             .Append("</td><td>").Append(E(r.Op)).Append("</td><td>").Append(r.WeightCount.ToString("N0", CultureInfo.InvariantCulture))
             .Append("</td><td>").Append(r.MacsPerImage.ToString("N0", CultureInfo.InvariantCulture))
             .Append("</td><td>").Append(r.Fixed ? "yes" : "").Append("</td>");
            foreach (int b in bits)
            {
                h.Append("<td>").Append(r.DeltaLoss.TryGetValue(b, out double v) ? N(v) : "").Append("</td>");
            }
            foreach (string k in keys)
            {
                h.Append("<td>").Append(r.ChosenBits.TryGetValue(k, out int c) ? c.ToString(CultureInfo.InvariantCulture) : "").Append("</td>");
            }
            h.Append("</tr>\n");
        }
        h.Append("</table>\n");
    }

    static void Manifest(StringBuilder h, RunManifest m)
    {
        h.Append("<h2>Run</h2>\n<table class=\"kv\">\n");
        Row(h, "BitBudget", m.ToolVersion);
        Row(h, "ONNX Runtime", m.OrtVersion);
        Row(h, "opset", m.Opset?.ToString(CultureInfo.InvariantCulture) ?? "");
        Row(h, "execution provider", m.ExecutionProvider);
        Row(h, "model SHA-256", m.ModelSha256);
        foreach (var (role, hash) in m.DataHashes)
        {
            Row(h, $"data hash ({role})", hash);
        }
        foreach (var (purpose, seed) in m.Seeds)
        {
            Row(h, $"seed ({purpose})", seed.ToString(CultureInfo.InvariantCulture));
        }
        Row(h, "command line", string.Join(' ', m.CommandLine));
        Row(h, "finished", m.CreatedUtc.ToString("u", CultureInfo.InvariantCulture));
        h.Append("</table>\n");
        if (m.Timings.Count > 0)
        {
            h.Append("<h3>Timings</h3>\n<table>\n<tr><th>stage</th><th>seconds</th></tr>\n");
            foreach (var t in m.Timings)
            {
                h.Append("<tr><td>").Append(E(t.Stage)).Append("</td><td>").Append(t.Seconds.ToString("0.###", CultureInfo.InvariantCulture)).Append("</td></tr>\n");
            }
            h.Append("</table>\n");
        }
        if (m.SolverRuns.Count > 0)
        {
            h.Append("<h3>Solver status</h3>\n<table>\n<tr><th>method</th><th>budget</th><th>status</th><th>gap</th><th>seconds</th></tr>\n");
            foreach (var s in m.SolverRuns)
            {
                h.Append("<tr><td>").Append(E(s.Method)).Append("</td><td>").Append(E(s.Budget)).Append("</td><td>").Append(E(s.Status))
                 .Append("</td><td>").Append(s.Gap is double g ? (g * 100).ToString("0.###", CultureInfo.InvariantCulture) + "%" : "")
                 .Append("</td><td>").Append(s.Seconds.ToString("0.###", CultureInfo.InvariantCulture)).Append("</td></tr>\n");
            }
            h.Append("</table>\n");
        }
        h.Append("<details><summary>manifest.json</summary><pre>").Append(E(ManifestReport.ToJson(m))).Append("</pre></details>\n");
    }

    static void Image(StringBuilder h, byte[] png, string alt) =>
        h.Append("<p><img alt=\"").Append(E(alt)).Append("\" src=\"data:image/png;base64,").Append(Convert.ToBase64String(png)).Append("\"></p>\n");

    static void Row(StringBuilder h, string key, string value) =>
        h.Append("<tr><th>").Append(E(key)).Append("</th><td>").Append(E(value)).Append("</td></tr>\n");

    static string E(string? text) => WebUtility.HtmlEncode(text ?? "");

    static string Pct(double fraction) => (fraction * 100).ToString("0.00", CultureInfo.InvariantCulture) + "%";

    static string N(double v) => v.ToString("G4", CultureInfo.InvariantCulture);

    static string Bytes(double bytes) => bytes >= 1024 * 1024
        ? (bytes / (1024 * 1024)).ToString("0.###", CultureInfo.InvariantCulture) + " MiB"
        : (bytes / 1024).ToString("0.##", CultureInfo.InvariantCulture) + " KiB";

    const string Css = """
        body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1250px;color:#222;padding:0 1em}
        h1{font-size:1.6em}h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}
        table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
        th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
        th{background:#f3f3f3}td:nth-child(-n+3){text-align:left}
        table.kv th{text-align:left}table.kv td{text-align:left;font-family:ui-monospace,monospace}
        tr.fp td{font-weight:bold}img{max-width:100%;height:auto}
        .small{font-size:.85em;color:#555}pre{background:#f7f7f7;padding:1em;overflow:auto}
        """;
}

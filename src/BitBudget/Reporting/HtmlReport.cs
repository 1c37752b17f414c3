using System.Globalization;
using System.Text.Encodings.Web;
using System.Text.Unicode;
using Fluid;
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

/// <summary>
/// Writes one self-contained HTML page (inline CSS, PNG charts as data URIs, no external resource) through the Liquid
/// template <c>Reporting/report.liquid</c> (Fluid). Every value is HTML-encoded by the template engine; only the CSS and
/// the base64 charts are written raw.
/// </summary>
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
        Page page = new(
            input.Title ?? $"BitBudget report: {front.ModelName}",
            Css,
            input.Notes,
            Summary(input),
            AccuracyTable(front),
            ["float", "", "", "", "32", Bytes(front.FpSizeBytes), "1×", "", Pct(front.FpTop1), "", "", "", ""],
            front.EvalSplit,
            MethodsByBudget(front),
            Convert.ToBase64String(ParetoReport.RenderPng(front)),
            BitChart(input),
            input.Omega is { } omega ? OmegaSection(omega) : null,
            input.Layers is { Count: > 0 } layers ? SensitivityTable(layers) : null,
            input.Manifest is { } manifest ? ManifestSection(manifest) : null);
        var context = new TemplateContext(page, s_options);
        return s_template.Value.Render(context, s_encoder);
    }

    // The page model the template reads (property names as written in report.liquid).
    internal sealed record Page(string Title, string Css, IReadOnlyList<string> Notes, IReadOnlyList<KeyValue> Summary, Table Accuracy,
        IReadOnlyList<string> FloatRow, string EvalSplit, Table MethodsByBudget, string ParetoPng, Chart? BitChart, OmegaView? Omega,
        Table? Sensitivity, ManifestView? Manifest);

    internal sealed record KeyValue(string Key, string Value);

    internal sealed record Table(IReadOnlyList<string> Header, IReadOnlyList<IReadOnlyList<string>> Rows);

    internal sealed record Chart(string Budget, string Png);

    internal sealed record OmegaView(string Png, string? Spectrum);

    internal sealed record ManifestView(IReadOnlyList<KeyValue> Rows, Table? Timings, Table? Solvers, string Json);

    static readonly TemplateOptions s_options = CreateOptions();

    // Encodes <, >, &, quotes and '+' but keeps every other character (Δ, Ω, ×) as written.
    static readonly HtmlEncoder s_encoder = HtmlEncoder.Create(UnicodeRanges.All);

    static readonly Lazy<IFluidTemplate> s_template = new(() =>
    {
        using Stream stream = typeof(HtmlReport).Assembly.GetManifestResourceStream("BitBudget.Reporting.report.liquid")
            ?? throw new InvalidOperationException("The report template BitBudget.Reporting.report.liquid is not embedded in the assembly.");
        using var reader = new StreamReader(stream);
        string source = reader.ReadToEnd();
        return new FluidParser().TryParse(source, out IFluidTemplate? template, out string? error)
            ? template
            : throw new InvalidOperationException($"The report template does not parse: {error}");
    });

    static TemplateOptions CreateOptions()
    {
        var options = new TemplateOptions();
        options.MemberAccessStrategy.Register<Page>();
        options.MemberAccessStrategy.Register<KeyValue>();
        options.MemberAccessStrategy.Register<Table>();
        options.MemberAccessStrategy.Register<Chart>();
        options.MemberAccessStrategy.Register<OmegaView>();
        options.MemberAccessStrategy.Register<ManifestView>();
        return options;
    }

    static List<KeyValue> Summary(HtmlReportInput input)
    {
        var f = input.Front;
        var rows = new List<KeyValue>
        {
            new("model", f.ModelName),
            new("evaluation", f.EvalSplit),
            new("float top-1", Pct(f.FpTop1)),
            new("float weight size", Bytes(f.FpSizeBytes)),
        };
        if (input.Layers is { Count: > 0 } layers)
        {
            rows.Add(new("quantizable layers", $"{layers.Count} ({layers.Count(l => l.Fixed)} fixed)"));
            rows.Add(new("weights", layers.Sum(l => l.WeightCount).ToString("N0", CultureInfo.InvariantCulture)));
            rows.Add(new("MACs per image", layers.Sum(l => l.MacsPerImage).ToString("N0", CultureInfo.InvariantCulture)));
        }
        return rows;
    }

    static Table AccuracyTable(ParetoFront f) => new(
        ["method", "rounding", "budget", "draw", "avg bits", "size", "compression", "predicted ΔL", "top-1 simulated", "top-1 exported", "Δ vs float", "solver", "gap"],
        [.. f.Points.Select(p => (IReadOnlyList<string>)[
            p.Method, p.Rounding, p.BudgetLabel, p.Draw.ToString(CultureInfo.InvariantCulture),
            p.AverageBits.ToString("0.###", CultureInfo.InvariantCulture), Bytes(p.SizeBytes),
            p.SizeBytes > 0 ? (f.FpSizeBytes / p.SizeBytes).ToString("0.0", CultureInfo.InvariantCulture) + "×" : "",
            p.PredictedLoss is double l ? N(l) : "",
            p.Top1Simulated is double s ? Pct(s) : "",
            p.Top1Exported is double x ? Pct(x) : "",
            p.Top1 is double t ? ((t - f.FpTop1) * 100).ToString("+0.00;−0.00;0.00", CultureInfo.InvariantCulture) : "",
            p.SolverStatus,
            p.Gap is double g ? (g * 100).ToString("0.###", CultureInfo.InvariantCulture) + "%" : ""])]);

    // The same numbers as ResultsTable.ToMarkdown, as an HTML table.
    static Table MethodsByBudget(ParetoFront f)
    {
        var budgets = f.Points.Select(p => p.BudgetLabel).Distinct(StringComparer.Ordinal).ToList();
        var rows = f.Points.Select(ResultsTable.RowKey).Distinct(StringComparer.Ordinal).ToList();
        return new(["method", .. budgets],
            [.. rows.Select(r => (IReadOnlyList<string>)[r, .. budgets.Select(b => ResultsTable.Format(
                [.. f.Points.Where(p => ResultsTable.RowKey(p) == r && p.BudgetLabel == b && p.Top1.HasValue).Select(p => p.Top1!.Value * 100)]))])]);
    }

    static Chart? BitChart(HtmlReportInput input)
    {
        var f = input.Front;
        string? budget = input.BitChartBudget ?? MiddleBudget(f);
        if (budget is null)
        {
            return null;
        }
        var configs = f.Points.Where(p => p.BudgetLabel == budget && p.Draw == f.Points.Where(q => q.BudgetLabel == budget).Min(q => q.Draw)).ToList();
        if (configs.Count == 0)
        {
            return null;
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
        return new Chart(budget, Convert.ToBase64String(ReportCharts.LayerChoice(layers, series, $"bits per layer at {budget}", 1200, 520)));
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

    static OmegaView OmegaSection(OmegaMatrix omega) => new(
        Convert.ToBase64String(ReportCharts.Omega(omega, 900, 820)),
        omega.Spectrum is { } s
            ? $"Eigenvalues of the measured Ω: min {N(s.MinEigenvalue)}, max {N(s.MaxEigenvalue)}, {s.NegativeCount.ToString(CultureInfo.InvariantCulture)} negative; " +
              $"the PSD projection removed {(s.ClippedMass * 100).ToString("0.###", CultureInfo.InvariantCulture)}% of the spectral mass."
            : null);

    static Table SensitivityTable(IReadOnlyList<LayerReportRow> layers)
    {
        int[] bits = LayerReport.BitColumns(layers);
        string[] keys = LayerReport.MethodColumns(layers);
        return new(["#", "layer", "op", "weights", "MACs/image", "fixed", .. bits.Select(b => $"ΔL {b.ToString(CultureInfo.InvariantCulture)}-bit"), .. keys.Select(k => $"bits {k}")],
            [.. layers.Select(r => (IReadOnlyList<string>)[
                r.Index.ToString(CultureInfo.InvariantCulture), r.Name, r.Op, r.WeightCount.ToString("N0", CultureInfo.InvariantCulture),
                r.MacsPerImage.ToString("N0", CultureInfo.InvariantCulture), r.Fixed ? "yes" : "",
                .. bits.Select(b => r.DeltaLoss.TryGetValue(b, out double v) ? N(v) : ""),
                .. keys.Select(k => r.ChosenBits.TryGetValue(k, out int c) ? c.ToString(CultureInfo.InvariantCulture) : "")])]);
    }

    static ManifestView ManifestSection(RunManifest m)
    {
        var rows = new List<KeyValue>
        {
            new("BitBudget", m.ToolVersion),
            new("ONNX Runtime", m.OrtVersion),
            new("opset", m.Opset?.ToString(CultureInfo.InvariantCulture) ?? ""),
            new("execution provider", m.ExecutionProvider),
            new("model SHA-256", m.ModelSha256),
        };
        rows.AddRange(m.DataHashes.Select(d => new KeyValue($"data hash ({d.Key})", d.Value)));
        rows.AddRange(m.Seeds.Select(s => new KeyValue($"seed ({s.Key})", s.Value.ToString(CultureInfo.InvariantCulture))));
        rows.Add(new("command line", string.Join(' ', m.CommandLine)));
        rows.Add(new("finished", m.CreatedUtc.ToString("u", CultureInfo.InvariantCulture)));
        Table? timings = m.Timings.Count == 0 ? null : new(["stage", "seconds"],
            [.. m.Timings.Select(t => (IReadOnlyList<string>)[t.Stage, t.Seconds.ToString("0.###", CultureInfo.InvariantCulture)])]);
        Table? solvers = m.SolverRuns.Count == 0 ? null : new(["method", "budget", "status", "gap", "seconds"],
            [.. m.SolverRuns.Select(s => (IReadOnlyList<string>)[s.Method, s.Budget, s.Status,
                s.Gap is double g ? (g * 100).ToString("0.###", CultureInfo.InvariantCulture) + "%" : "", s.Seconds.ToString("0.###", CultureInfo.InvariantCulture)])]);
        return new ManifestView(rows, timings, solvers, ManifestReport.ToJson(m));
    }

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

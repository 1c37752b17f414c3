using BitBudget.Internals;

namespace BitBudget.Reporting;

/// <summary>Writes a Pareto front as JSON (every point with its configuration) and as a two-panel PNG plot.</summary>
internal static class ParetoReport
{
    /// <summary>Writes <paramref name="front"/> as indented snake_case JSON to <paramref name="path"/>, atomically.</summary>
    public static void WriteJson(ParetoFront front, string path)
    {
        Validate(front);
        BitBudgetJson.Write(front, path);
    }

    /// <summary>Reads a front written by <see cref="WriteJson"/>.</summary>
    public static ParetoFront ReadJson(string path)
    {
        var front = BitBudgetJson.Read<ParetoFront>(path, "Pareto front");
        Validate(front);
        return front;
    }

    /// <summary>
    /// Writes the Pareto plot as PNG: left, measured top-1 (exported, else simulated) vs weight size with one line per
    /// method and rounding (rtn dashed, gptq solid), uniform points as squares and the float accuracy as a dotted line;
    /// right, the predicted loss increase xᵀΩx vs size. Several draws of one budget are averaged, each draw a small circle.
    /// </summary>
    /// <param name="front">The evaluated configurations.</param>
    /// <param name="path">PNG file to write (atomically).</param>
    /// <param name="width">Total width in pixels (both panels).</param>
    /// <param name="height">Height in pixels.</param>
    public static void WritePng(ParetoFront front, string path, int width = 1400, int height = 560) =>
        AtomicFile.WriteAllBytes(path, RenderPng(front, width, height));

    /// <summary>The Pareto plot as PNG bytes (see <see cref="WritePng"/>).</summary>
    public static byte[] RenderPng(ParetoFront front, int width = 1400, int height = 560)
    {
        Validate(front);
        ArgumentOutOfRangeException.ThrowIfLessThan(width, 200);
        ArgumentOutOfRangeException.ThrowIfLessThan(height, 150);
        return ReportCharts.Pareto(front, width, height);
    }

    internal static void Validate(ParetoFront front)
    {
        ArgumentNullException.ThrowIfNull(front);
        if (front.Points is null || front.Points.Count == 0)
        {
            throw Errors.InvalidInput($"The Pareto front of '{front.ModelName}' has no points; expected at least one evaluated configuration.");
        }
        foreach (var p in front.Points)
        {
            if (!double.IsFinite(p.SizeBytes) || p.SizeBytes < 0)
            {
                throw Errors.InvalidInput($"Point '{p.Method}' at '{p.BudgetLabel}' has size {p.SizeBytes} bytes; expected a finite non-negative number.");
            }
            foreach (double? top1 in (ReadOnlySpan<double?>)[p.Top1Simulated, p.Top1Exported])
            {
                if (top1 is double t && !(t >= 0 && t <= 1))
                {
                    throw Errors.InvalidInput($"Point '{p.Method}' at '{p.BudgetLabel}' has top-1 {t}; expected a fraction between 0 and 1.");
                }
            }
        }
    }
}

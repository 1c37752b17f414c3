using ScottPlot;

namespace BitBudget.Reporting;

/// <summary>Every chart of the reports, rendered to PNG bytes with ScottPlot (SkiaSharp underneath, headless).</summary>
static class ReportCharts
{
    static readonly IPalette s_palette = new ScottPlot.Palettes.Category10();

    /// <summary>Two panels side by side: measured top-1 vs size, and predicted loss vs size.</summary>
    internal static byte[] Pareto(ParetoFront front, int width, int height)
    {
        using Plot accuracy = AccuracyPanel(front);
        using Plot predicted = PredictedPanel(front);
        return SideBySide(accuracy, predicted, width, height);
    }

    static Plot AccuracyPanel(ParetoFront front)
    {
        var (scale, unit) = SizeUnit(front);
        var plot = new Plot();
        plot.Title($"{front.ModelName}: measured top-1 vs weight size");
        plot.XLabel($"weight size ({unit})");
        plot.YLabel("top-1 (%)");
        var methodColors = MethodColors(front.Points);

        foreach (var group in Series(front.Points, p => p.Top1))
        {
            AddSeries(plot, group, methodColors[group.Method], scale, 100);
        }

        var fp = plot.Add.HorizontalLine(front.FpTop1 * 100, 1.5f, Colors.Gray, LinePattern.Dotted);
        fp.LegendText = $"float ({front.FpTop1 * 100:0.00}%)";
        plot.ShowLegend(Alignment.LowerRight);
        return plot;
    }

    static Plot PredictedPanel(ParetoFront front)
    {
        var (scale, unit) = SizeUnit(front);
        var plot = new Plot();
        plot.Title("predicted loss increase (x^T Ω x) vs weight size");
        plot.XLabel($"weight size ({unit})");
        plot.YLabel("predicted loss increase");
        var methodColors = MethodColors(front.Points);
        bool any = false;
        foreach (var group in Series(front.Points, p => p.PredictedLoss))
        {
            any = true;
            AddSeries(plot, group, methodColors[group.Method], scale, 1);
        }
        if (any)
        {
            plot.ShowLegend(Alignment.UpperRight);
        }
        else
        {
            plot.Add.Text("no method predicted a loss", 0, 0);
        }
        return plot;
    }

    /// <summary>A method's line (rtn dashed, anything else solid), or squares for uniform configurations, plus its single draws.</summary>
    static void AddSeries(Plot plot, PointSeries group, Color color, double xScale, double yScale)
    {
        double[] xs = [.. group.Points.Select(p => p.X / xScale)];
        double[] ys = [.. group.Points.Select(p => p.Y * yScale)];
        if (group.Uniform)
        {
            plot.Add.Markers(xs, ys, MarkerShape.FilledSquare, 9, color).LegendText = $"uniform ({group.Rounding})";
        }
        else
        {
            var line = plot.Add.Scatter(xs, ys, color);
            line.LegendText = $"{group.Method} ({group.Rounding})";
            line.LineWidth = 2;
            line.MarkerSize = 7;
            line.LinePattern = group.Rounding.Equals("rtn", StringComparison.OrdinalIgnoreCase) ? LinePattern.Dashed : LinePattern.Solid;
        }
        AddDraws(plot, group, xScale, yScale, color);
    }

    /// <summary>Every single draw as a small hollow marker when a series averages several draws.</summary>
    static void AddDraws(Plot plot, PointSeries group, double xScale, double yScale, Color color)
    {
        if (group.Draws.Count == group.Points.Count)
        {
            return;
        }
        double[] xs = [.. group.Draws.Select(p => p.X / xScale)];
        double[] ys = [.. group.Draws.Select(p => p.Y * yScale)];
        plot.Add.Markers(xs, ys, MarkerShape.OpenCircle, 5, color.WithAlpha(0.6));
    }

    /// <summary>Grouped bars: bits per layer, one colour per configuration.</summary>
    internal static byte[] LayerChoice(IReadOnlyList<string> layers, IReadOnlyList<(string Name, IReadOnlyList<int> Bits)> series, string title, int width, int height)
    {
        using var plot = new Plot();
        plot.Title(title);
        plot.YLabel("weight bits");
        int n = Math.Max(1, series.Count);
        double slot = 0.8 / n;
        for (int s = 0; s < series.Count; s++)
        {
            Color color = s_palette.GetColor(s);
            var bars = new List<Bar>(layers.Count);
            for (int i = 0; i < layers.Count; i++)
            {
                bars.Add(new Bar
                {
                    Position = i - 0.4 + slot * (s + 0.5),
                    Value = series[s].Bits[i],
                    Size = slot * 0.95,
                    FillColor = color,
                    LineWidth = 0,
                });
            }
            plot.Add.Bars(bars).LegendText = series[s].Name;
        }
        RotatedBottomTicks(plot, [.. Enumerable.Range(0, layers.Count).Select(i => (double)i)], [.. layers.Select(Shorten)], layers.Count > 30 ? 8 : 11);
        plot.Axes.Margins(bottom: 0);
        plot.ShowLegend(Edge.Right);   // outside the data area: the first and last layers are usually 8-bit and tall
        return plot.GetImageBytes(width, height, ImageFormat.Png);
    }

    /// <summary>Ω as a heat map on a symmetric log-like scale, so small entries of both signs stay visible beside the large diagonal.</summary>
    internal static byte[] Omega(OmegaMatrix omega, int width, int height)
    {
        int n = omega.Size;
        double tau = SymlogThreshold(omega.Values.AsSpan());
        var cells = new double[n, n];
        double maxAbs = 0;
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < n; j++)
            {
                double v = Symlog(omega[i, j], tau);
                cells[i, j] = v;
                maxAbs = Math.Max(maxAbs, Math.Abs(v));
            }
        }
        maxAbs = maxAbs > 0 ? maxAbs : 1;

        using var plot = new Plot();
        plot.Title($"Ω ({n} × {n}), symmetric log scale, linear within ±{tau:G2}");
        var map = plot.Add.Heatmap(cells);
        map.Colormap = new ScottPlot.Colormaps.Balance();
        map.ManualRange = new ScottPlot.Range(-maxAbs, maxAbs);   // symmetric, so 0 is the neutral middle colour
        var bar = plot.Add.ColorBar(map);
        bar.Label = "Ω entry";
        var (tickPositions, tickLabels) = ColorBarTicks(maxAbs, tau);
        bar.Axis.SetTicks(tickPositions, tickLabels);

        // Heatmap cell (row r, column c) is centred at x = c, y = n - 1 - r (row 0 at the top).
        int step = Math.Max(1, (int)Math.Ceiling(n / 40.0));
        var positions = new List<double>();
        var labels = new List<string>();
        for (int k = 0; k < n; k += step)
        {
            positions.Add(k);
            labels.Add(Shorten(omega.Labels[k]));
        }
        float fontSize = n > 24 ? 8 : 11;
        RotatedBottomTicks(plot, [.. positions], [.. labels], fontSize);
        plot.Axes.Left.SetTicks([.. positions.Select(p => n - 1 - p)], [.. labels]);
        plot.Axes.Left.TickLabelStyle.FontSize = fontSize;
        return plot.GetImageBytes(width, height, ImageFormat.Png);
    }

    /// <summary>The linear zone of the symmetric log: a tenth of the median nonzero magnitude, so typical entries land in the log part.</summary>
    internal static double SymlogThreshold(ReadOnlySpan<double> values)
    {
        var magnitudes = new List<double>(values.Length);
        foreach (double v in values)
        {
            if (v != 0 && double.IsFinite(v))
            {
                magnitudes.Add(Math.Abs(v));
            }
        }
        if (magnitudes.Count == 0)
        {
            return 1;
        }
        magnitudes.Sort();
        return magnitudes[magnitudes.Count / 2] / 10;
    }

    /// <summary>sign(v)·log10(1 + |v|/τ): linear near 0, logarithmic far from it, odd so signs survive.</summary>
    internal static double Symlog(double v, double tau) => double.IsFinite(v) ? Math.Sign(v) * Math.Log10(1 + Math.Abs(v) / tau) : double.NaN;

    static double InverseSymlog(double s, double tau) => Math.Sign(s) * tau * (Math.Pow(10, Math.Abs(s)) - 1);

    static (double[] Positions, string[] Labels) ColorBarTicks(double maxAbs, double tau)
    {
        var positions = new List<double> { 0 };
        for (int k = 1; k <= (int)Math.Floor(maxAbs); k++)
        {
            positions.Add(k);
            positions.Add(-k);
        }
        if (positions.Count == 1)
        {
            positions.Add(maxAbs);
            positions.Add(-maxAbs);
        }
        positions.Sort();
        return ([.. positions], [.. positions.Select(p => InverseSymlog(p, tau).ToString("G2", System.Globalization.CultureInfo.InvariantCulture))]);
    }

    /// <summary>Tick labels turned by 60°, with the axis made tall enough to hold them (ScottPlot does not measure rotated labels).</summary>
    static void RotatedBottomTicks(Plot plot, double[] positions, string[] labels, float fontSize)
    {
        plot.Axes.Bottom.SetTicks(positions, labels);
        plot.Axes.Bottom.TickLabelStyle.Rotation = 60;
        plot.Axes.Bottom.TickLabelStyle.Alignment = Alignment.MiddleLeft;
        plot.Axes.Bottom.TickLabelStyle.FontSize = fontSize;
        int longest = labels.Length == 0 ? 0 : labels.Max(l => l.Length);
        if (plot.Axes.Bottom is ScottPlot.AxisPanels.AxisBase axis)
        {
            axis.MinimumSize = 12 + longest * fontSize * 0.6f * MathF.Sin(MathF.PI / 3);   // ~0.6 em per glyph
        }
    }

    static string Shorten(string label) => label.Length <= 28 ? label : "…" + label[^27..];

    static (double Scale, string Unit) SizeUnit(ParetoFront front) =>
        front.FpSizeBytes >= 4 * 1024 * 1024 ? (1024.0 * 1024, "MiB") : (1024.0, "KiB");

    static Dictionary<string, Color> MethodColors(IReadOnlyList<ParetoPoint> points)
    {
        var colors = new Dictionary<string, Color>(StringComparer.Ordinal);
        foreach (var p in points)
        {
            if (!colors.ContainsKey(p.Method))
            {
                colors[p.Method] = s_palette.GetColor(colors.Count);
            }
        }
        return colors;
    }

    internal sealed record XY(double X, double Y);

    internal sealed record PointSeries(string Method, string Rounding, bool Uniform, IReadOnlyList<XY> Points, IReadOnlyList<XY> Draws);

    /// <summary>One series per (method, rounding): the mean over draws of each budget, sorted by size.</summary>
    internal static List<PointSeries> Series(IReadOnlyList<ParetoPoint> points, Func<ParetoPoint, double?> y)
    {
        var result = new List<PointSeries>();
        foreach (var group in points.Where(p => y(p) is double v && double.IsFinite(v) && double.IsFinite(p.SizeBytes))
                     .GroupBy(p => (p.Method, p.Rounding)))
        {
            var means = group.GroupBy(p => p.BudgetLabel)
                .Select(b => new XY(b.Average(p => p.SizeBytes), b.Average(p => y(p)!.Value)))
                .OrderBy(p => p.X).ToList();
            var draws = group.Select(p => new XY(p.SizeBytes, y(p)!.Value)).ToList();
            result.Add(new PointSeries(group.Key.Method, group.Key.Rounding, group.First().IsUniform, means, draws));
        }
        return result;
    }

    /// <summary>Two plots in one image, each half the width, through ScottPlot's multiplot (one render, one PNG encode).</summary>
    static byte[] SideBySide(Plot left, Plot right, int width, int height)
    {
        var multiplot = new Multiplot();
        multiplot.Reset(left);
        multiplot.AddPlot(right);
        multiplot.Layout = new ScottPlot.MultiplotLayouts.Columns();
        using Image image = multiplot.Render(width, height);
        return image.GetImageBytes(ImageFormat.Png);
    }
}

using System.Globalization;
using System.Text;
using BitBudget.Internals;

namespace BitBudget.Reporting;

/// <summary>Writes the per-layer sensitivity and bits report as JSON and CSV.</summary>
/// <remarks>
/// CSV columns: <c>index,name,op,weights,macs_per_image,fixed</c>, then <c>delta_loss_{b}bit</c> for every measured
/// bit-width (ascending), then <c>bits_{key}</c> for every chosen-bits key (first-seen order). Numbers use the invariant
/// culture and round-trip ("R"); a missing value is an empty cell; text is quoted per RFC 4180 when needed.
/// </remarks>
internal static class LayerReport
{
    /// <summary>Writes <paramref name="rows"/> as a JSON array, atomically.</summary>
    public static void WriteJson(IReadOnlyList<LayerReportRow> rows, string path)
    {
        ArgumentNullException.ThrowIfNull(rows);
        ReportJson.Write(rows, path);
    }

    /// <summary>Reads rows written by <see cref="WriteJson"/>.</summary>
    public static IReadOnlyList<LayerReportRow> ReadJson(string path) => ReportJson.Read<List<LayerReportRow>>(path, "layer report");

    /// <summary>Writes <paramref name="rows"/> as CSV, atomically.</summary>
    public static void WriteCsv(IReadOnlyList<LayerReportRow> rows, string path) => AtomicFile.WriteAllText(path, ToCsv(rows));

    /// <summary>The CSV text <see cref="WriteCsv"/> writes.</summary>
    public static string ToCsv(IReadOnlyList<LayerReportRow> rows)
    {
        ArgumentNullException.ThrowIfNull(rows);
        int[] bits = BitColumns(rows);
        string[] keys = MethodColumns(rows);
        var sb = new StringBuilder();
        sb.Append("index,name,op,weights,macs_per_image,fixed");
        foreach (int b in bits)
        {
            sb.Append(",delta_loss_").Append(b.ToString(CultureInfo.InvariantCulture)).Append("bit");
        }
        foreach (string k in keys)
        {
            sb.Append(',').Append(Quote("bits_" + k));
        }
        sb.Append('\n');
        foreach (var r in rows)
        {
            sb.Append(r.Index.ToString(CultureInfo.InvariantCulture)).Append(',')
              .Append(Quote(r.Name)).Append(',')
              .Append(Quote(r.Op)).Append(',')
              .Append(r.WeightCount.ToString(CultureInfo.InvariantCulture)).Append(',')
              .Append(r.MacsPerImage.ToString(CultureInfo.InvariantCulture)).Append(',')
              .Append(r.Fixed ? "true" : "false");
            foreach (int b in bits)
            {
                sb.Append(',');
                if (r.DeltaLoss.TryGetValue(b, out double v))
                {
                    sb.Append(v.ToString("R", CultureInfo.InvariantCulture));
                }
            }
            foreach (string k in keys)
            {
                sb.Append(',');
                if (r.ChosenBits.TryGetValue(k, out int chosen))
                {
                    sb.Append(chosen.ToString(CultureInfo.InvariantCulture));
                }
            }
            sb.Append('\n');
        }
        return sb.ToString();
    }

    internal static int[] BitColumns(IReadOnlyList<LayerReportRow> rows)
    {
        var set = new SortedSet<int>();
        foreach (var r in rows)
        {
            set.UnionWith(r.DeltaLoss.Keys);
        }
        return [.. set];
    }

    internal static string[] MethodColumns(IReadOnlyList<LayerReportRow> rows)
    {
        var keys = new List<string>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var r in rows)
        {
            foreach (string k in r.ChosenBits.Keys)
            {
                if (seen.Add(k))
                {
                    keys.Add(k);
                }
            }
        }
        return [.. keys];
    }

    static string Quote(string text) =>
        text.AsSpan().IndexOfAny(",\"\r\n") >= 0 ? "\"" + text.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"" : text;
}

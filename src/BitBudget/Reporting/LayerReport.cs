using System.Globalization;
using BitBudget.Internals;

namespace BitBudget.Reporting;

/// <summary>Writes the per-layer sensitivity and bits report as JSON and CSV.</summary>
/// <remarks>
/// CSV columns: <c>index,name,op,weights,macs_per_image,fixed</c>, then <c>delta_loss_{b}bit</c> for every measured
/// bit-width (ascending), then <c>bits_{key}</c> for every chosen-bits key (first-seen order). Written by Sep: numbers use
/// the invariant culture and round-trip (shortest exact form); a missing value is an empty cell; text is quoted per RFC 4180
/// when it holds a comma, quote or line break.
/// </remarks>
internal static class LayerReport
{
    /// <summary>Writes <paramref name="rows"/> as a JSON array, atomically.</summary>
    public static void WriteJson(IReadOnlyList<LayerReportRow> rows, string path)
    {
        ArgumentNullException.ThrowIfNull(rows);
        BitBudgetJson.Write(rows as List<LayerReportRow> ?? [.. rows], path);
    }

    /// <summary>Reads rows written by <see cref="WriteJson"/>.</summary>
    public static IReadOnlyList<LayerReportRow> ReadJson(string path) => BitBudgetJson.Read<List<LayerReportRow>>(path, "layer report");

    /// <summary>Writes <paramref name="rows"/> as CSV, atomically.</summary>
    public static void WriteCsv(IReadOnlyList<LayerReportRow> rows, string path) => AtomicFile.WriteAllText(path, ToCsv(rows));

    /// <summary>The CSV text <see cref="WriteCsv"/> writes.</summary>
    public static string ToCsv(IReadOnlyList<LayerReportRow> rows)
    {
        ArgumentNullException.ThrowIfNull(rows);
        int[] bits = BitColumns(rows);
        string[] keys = MethodColumns(rows);
        string[] header = ["index", "name", "op", "weights", "macs_per_image", "fixed",
            .. bits.Select(b => $"delta_loss_{b.ToString(CultureInfo.InvariantCulture)}bit"), .. keys.Select(k => "bits_" + k)];
        return Csv.Write(header, writer =>
        {
            foreach (LayerReportRow r in rows)
            {
                using var row = writer.NewRow();
                row["index"].Format(r.Index);
                row["name"].Set(r.Name);
                row["op"].Set(r.Op);
                row["weights"].Format(r.WeightCount);
                row["macs_per_image"].Format(r.MacsPerImage);
                row["fixed"].Set(r.Fixed ? "true" : "false");
                foreach (int b in bits)
                {
                    var cell = row[$"delta_loss_{b.ToString(CultureInfo.InvariantCulture)}bit"];
                    if (r.DeltaLoss.TryGetValue(b, out double v)) { cell.Format(v); } else { cell.Set(""); }   // Sep wants every column set
                }
                foreach (string k in keys)
                {
                    var cell = row["bits_" + k];
                    if (r.ChosenBits.TryGetValue(k, out int chosen)) { cell.Format(chosen); } else { cell.Set(""); }
                }
            }
        });
    }

    /// <summary>
    /// The single-layer sensitivities of a measurement as CSV (what <c>bitbudget sensitivity -o x.csv</c> writes): one row per
    /// searched layer, columns <c>layer,op,weights</c> and <c>delta_loss_w{b}</c> per candidate bit-width.
    /// </summary>
    /// <param name="layers">Searched layers in measurement order.</param>
    /// <param name="candidateBits">Candidate bit-widths, in the order of <paramref name="deltaSingle"/>'s columns.</param>
    /// <param name="deltaSingle">Row-major ΔL, one row per layer and one column per candidate bit-width.</param>
    public static string SensitivityCsv(IReadOnlyList<Graph.LayerInfo> layers, IReadOnlyList<int> candidateBits, IReadOnlyList<double> deltaSingle)
    {
        ArgumentNullException.ThrowIfNull(layers);
        ArgumentNullException.ThrowIfNull(candidateBits);
        ArgumentNullException.ThrowIfNull(deltaSingle);
        string[] columns = [.. candidateBits.Select(b => $"delta_loss_w{b.ToString(CultureInfo.InvariantCulture)}")];
        int s = candidateBits.Count;
        return Csv.Write(["layer", "op", "weights", .. columns], writer =>
        {
            for (int k = 0; k < layers.Count; k++)
            {
                using var row = writer.NewRow();
                row["layer"].Set(layers[k].Name);
                row["op"].Set(layers[k].OpType);
                row["weights"].Format(layers[k].WeightCount);
                for (int b = 0; b < s; b++) { row[columns[b]].Format(deltaSingle[k * s + b]); }
            }
        });
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
}

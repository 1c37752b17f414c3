using System.Globalization;
using System.Text;
using BitBudget.Reporting;
using BitBudget.Tests.Support;

namespace BitBudget.Tests.Reporting;

public class LayerReportTests
{
    [Fact]
    public void Csv_ParsesBackToTheSameNumbers()
    {
        using var dir = new Assets.TempDir();
        var rows = SyntheticReport.Layers(oddName: "block \"a\", conv\n2");
        string path = dir.File("layers.csv");

        LayerReport.WriteCsv(rows, path);
        var table = ParseCsv(File.ReadAllText(path));

        Assert.Equal(["index", "name", "op", "weights", "macs_per_image", "fixed", "delta_loss_2bit", "delta_loss_4bit", "delta_loss_8bit", "bits_clado@3bits", "bits_independent@3bits"], table[0]);
        Assert.Equal(rows.Count + 1, table.Count);
        for (int i = 0; i < rows.Count; i++)
        {
            var (r, cells) = (rows[i], table[i + 1]);
            Assert.Equal(r.Index, int.Parse(cells[0], CultureInfo.InvariantCulture));
            Assert.Equal(r.Name, cells[1]);
            Assert.Equal(r.Op, cells[2]);
            Assert.Equal(r.WeightCount, long.Parse(cells[3], CultureInfo.InvariantCulture));
            Assert.Equal(r.MacsPerImage, long.Parse(cells[4], CultureInfo.InvariantCulture));
            Assert.Equal(r.Fixed, bool.Parse(cells[5]));
            Assert.Equal(r.DeltaLoss[2], double.Parse(cells[6], CultureInfo.InvariantCulture));   // exact: written with "R"
            Assert.Equal(r.DeltaLoss[4], double.Parse(cells[7], CultureInfo.InvariantCulture));
            Assert.Equal(r.DeltaLoss[8], double.Parse(cells[8], CultureInfo.InvariantCulture));
            Assert.Equal(r.ChosenBits["clado@3bits"], int.Parse(cells[9], CultureInfo.InvariantCulture));
            Assert.Equal(r.ChosenBits["independent@3bits"], int.Parse(cells[10], CultureInfo.InvariantCulture));
        }
    }

    [Fact]
    public void Csv_MissingValues_AreEmptyCells()
    {
        var rows = new List<LayerReportRow>
        {
            new(0, "a", "Conv", 10, 100, false, new Dictionary<int, double> { [2] = 0.5 }, new Dictionary<string, int> { ["clado"] = 2 }),
            new(1, "b", "Gemm", 20, 20, true, new Dictionary<int, double> { [4] = 0.25 }, new Dictionary<string, int>()),
        };
        Assert.Equal(
            "index,name,op,weights,macs_per_image,fixed,delta_loss_2bit,delta_loss_4bit,bits_clado\n" +
            "0,a,Conv,10,100,false,0.5,,2\n" +
            "1,b,Gemm,20,20,true,,0.25,\n",
            LayerReport.ToCsv(rows));
    }

    /// <summary>The CLI's `sensitivity -o x.csv` goes through the same writer: names with a comma or quote are quoted, numbers round-trip.</summary>
    [Fact]
    public void SensitivityCsv_QuotesOddNamesAndRoundTripsNumbers()
    {
        List<BitBudget.Graph.LayerInfo> layers = BitBudget.Tests.Quantization.BitConfigTests.Layers("conv,1", "conv\"2\"", "fc");
        double[] delta = [0.1, 1.0 / 3, 2e-7, 4, 5.5, double.Epsilon, 7, 8, 9];
        string csv = LayerReport.SensitivityCsv(layers, [2, 4, 8], delta);
        var table = ParseCsv(csv);
        Assert.Equal(["layer", "op", "weights", "delta_loss_w2", "delta_loss_w4", "delta_loss_w8"], table[0]);
        Assert.Equal(["conv,1", "conv\"2\"", "fc"], table.Skip(1).Select(r => r[0]));
        Assert.StartsWith("\"conv,1\",Conv,288,", csv.Split('\n')[1], StringComparison.Ordinal);
        double[] back = [.. table.Skip(1).SelectMany(r => r.Skip(3).Select(v => double.Parse(v, System.Globalization.CultureInfo.InvariantCulture)))];
        Assert.Equal(delta, back);
    }

    [Fact]
    public void Json_RoundTrips()
    {
        using var dir = new Assets.TempDir();
        var rows = SyntheticReport.Layers(oddName: "<script>");
        string path = dir.File("layers.json");

        LayerReport.WriteJson(rows, path);
        var back = LayerReport.ReadJson(path);

        Assert.Equal(rows.Count, back.Count);
        for (int i = 0; i < rows.Count; i++)
        {
            Assert.Equal(rows[i].Name, back[i].Name);
            Assert.Equal(rows[i].WeightCount, back[i].WeightCount);
            Assert.Equal(rows[i].DeltaLoss, back[i].DeltaLoss);
            Assert.Equal(rows[i].ChosenBits, back[i].ChosenBits);
        }
    }

    /// <summary>RFC 4180 reader, written independently of the writer.</summary>
    internal static List<string[]> ParseCsv(string text)
    {
        var rows = new List<string[]>();
        var row = new List<string>();
        var cell = new StringBuilder();
        bool quoted = false;
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (quoted)
            {
                if (c == '"' && i + 1 < text.Length && text[i + 1] == '"') { cell.Append('"'); i++; }
                else if (c == '"') { quoted = false; }
                else { cell.Append(c); }
            }
            else if (c == '"') { quoted = true; }
            else if (c == ',') { row.Add(cell.ToString()); cell.Clear(); }
            else if (c == '\n') { row.Add(cell.ToString()); cell.Clear(); rows.Add([.. row]); row.Clear(); }
            else { cell.Append(c); }
        }
        Assert.False(quoted, "unterminated quote");
        Assert.Equal(0, cell.Length + row.Count);   // the file ends with a newline
        return rows;
    }
}

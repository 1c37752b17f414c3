using System.Text.Json;
using BitBudget.Quantization;
using BitBudget.Reporting;
using BitBudget.Tests.CommandLine;
using BitBudget.Tests.Quantization;
using BitBudget.Tests.Support;

namespace BitBudget.Tests.Reporting;

/// <summary>
/// Issue 20: the files the library writes share one schema (snake_case, '+' unescaped), and files written before it
/// (camelCase report files, hand-written camelCase bit configs) still read.
/// </summary>
public class JsonFilesTests
{
    [Fact]
    public void ReportFiles_AreSnakeCaseAtEveryDepth_AndKeepPlusSigns()
    {
        using var dir = new Assets.TempDir();
        var layers = SyntheticReport.Layers();
        var front = SyntheticReport.Front(layers);
        front = front with { ModelName = "resnet+se", Points = [.. front.Points.Select(p => p with { Bits = [.. p.Bits.Select(b => b with { Layer = b.Layer + "+1" })] })] };
        ParetoReport.WriteJson(front, dir.File("pareto.json"));
        LayerReport.WriteJson(layers, dir.File("layers.json"));
        ManifestReport.WriteJson(SyntheticReport.Manifest(), dir.File("manifest.json"));

        string pareto = File.ReadAllText(dir.File("pareto.json"));
        Assert.Contains("\"model_name\": \"resnet+se\"", pareto, StringComparison.Ordinal);
        Assert.DoesNotContain("\\u002B", pareto, StringComparison.Ordinal);
        using (var doc = JsonDocument.Parse(pareto)) { JsonSchemaTests.AssertSnakeCase(doc.RootElement); }
        using (var doc = JsonDocument.Parse(File.ReadAllText(dir.File("manifest.json")))) { AssertSnakeCaseExceptMaps(doc.RootElement); }
        using (var doc = JsonDocument.Parse(File.ReadAllText(dir.File("layers.json"))))
        {
            JsonElement row = doc.RootElement[0];
            Assert.Equal(["chosen_bits", "delta_loss", "fixed", "index", "macs_per_image", "name", "op", "weight_count"],
                row.EnumerateObject().Select(p => p.Name).Order(StringComparer.Ordinal));
            // Dictionary keys are data (bit-widths, method@budget labels), not field names: written as given.
            Assert.Contains(row.GetProperty("chosen_bits").EnumerateObject(), p => p.Name.Contains('@', StringComparison.Ordinal));
        }
        Assert.Equal(front.ModelName, ParetoReport.ReadJson(dir.File("pareto.json")).ModelName);
    }

    static void AssertSnakeCaseExceptMaps(JsonElement manifest)
    {
        foreach (JsonProperty p in manifest.EnumerateObject())
        {
            Assert.Matches("^[a-z][a-z0-9_]*$", p.Name);
            if (p.Name is not ("seeds" or "data_hashes")) { JsonSchemaTests.AssertSnakeCase(p.Value); }
        }
    }

    /// <summary>A pareto.json and a manifest.json exactly as the camelCase writer (before issue 20) wrote them.</summary>
    [Fact]
    public void CamelCaseReportFiles_FromEarlierVersions_StillRead()
    {
        using var dir = new Assets.TempDir();
        File.WriteAllText(dir.File("pareto.json"), """
            {
              "modelName": "resnet20",
              "fpTop1": 0.9,
              "evalSplit": "ERAN 100",
              "fpSizeBytes": 1083584,
              "points": [
                {
                  "method": "clado", "rounding": "gptq", "budgetLabel": "3bits", "averageBits": 3.01, "sizeBytes": 101920,
                  "predictedLoss": 0.25, "top1Simulated": 0.87, "top1Exported": 0.88, "solverStatus": "Optimal", "gap": "Infinity",
                  "bits": [ { "layer": "conv1", "bits": 8 } ], "draw": 0, "top1": 0.88, "isUniform": false
                }
              ]
            }
            """);
        ParetoFront front = ParetoReport.ReadJson(dir.File("pareto.json"));
        Assert.Equal("resnet20", front.ModelName);
        Assert.Equal(1083584, front.FpSizeBytes);
        ParetoPoint p = Assert.Single(front.Points);
        Assert.Equal(("3bits", 0.87, 0.88, double.PositiveInfinity), (p.BudgetLabel, p.Top1Simulated, p.Top1Exported, p.Gap));
        Assert.Equal([new LayerChoice("conv1", 8)], p.Bits);

        File.WriteAllText(dir.File("manifest.json"), """
            {"toolVersion": "0.1.0", "ortVersion": "1.31.1", "opset": 21, "executionProvider": "cpu", "seeds": {"calibration": 0},
             "modelSha256": "ab", "dataHashes": {"evaluation": "cd"}, "timings": [{"stage": "measure", "seconds": 1.5}],
             "solverRuns": [{"method": "clado", "budget": "3bits", "status": "Optimal", "gap": 0, "seconds": 0.1}],
             "commandLine": ["run"], "createdUtc": "2026-01-01T00:00:00+00:00", "memory": null}
            """);
        RunManifest m = ManifestReport.ReadJson(dir.File("manifest.json"));
        Assert.Equal(("1.31.1", 21, "ab"), (m.OrtVersion, m.Opset, m.ModelSha256));
        Assert.Equal(new SolverRun("clado", "3bits", "Optimal", 0, 0.1), Assert.Single(m.SolverRuns));
    }

    [Fact]
    public void ReportFile_WithAnUnknownField_IsInvalidInputNamingIt()
    {
        using var dir = new Assets.TempDir();
        File.WriteAllText(dir.File("manifest.json"), """{"tool_version": "0.1.0", "tool_versoin": "x"}""");
        var e = Assert.Throws<BitBudgetException>(() => ManifestReport.ReadJson(dir.File("manifest.json")));
        Assert.Equal(ErrorKind.InvalidInput, e.Kind);
        Assert.Contains("tool_versoin", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void BitConfig_CamelCaseSpelling_ReadsAsTheSnakeCaseOne()
    {
        const string snake = """
            { "version": 1, "defaults": { "weight_bits": 6, "activation_bits": 8, "per_channel": false, "weight_range": "minmax" },
              "first_layer": "search", "last_layer": 4,
              "layers": { "conv2*": { "quant_type": "QInt2", "activation_quant_type": "QUInt8" }, "conv3": { "weight_bits": 5, "search": false } } }
            """;
        const string camel = """
            { "version": 1, "defaults": { "weightBits": 6, "activationBits": 8, "perChannel": false, "weightRange": "minmax" },
              "firstLayer": "search", "lastLayer": 4,
              "layers": { "conv2*": { "quantType": "QInt2", "activationQuantType": "QUInt8" }, "conv3": { "weightBits": 5, "search": false } } }
            """;
        var layers = BitConfigTests.Layers("conv1", "conv2a", "conv2b", "conv3", "fc");
        BitConfig a = BitConfig.Parse(snake), b = BitConfig.Parse(camel);
        Assert.Equal(a.Resolve(layers), b.Resolve(layers));
        Assert.Equal(a.ToJson(), b.ToJson());
        Assert.Equal([6, 2, 2, 5, 4], b.Resolve(layers).Select(l => l.WeightBits));
        Assert.Equal([true, true, true, false, false], b.Resolve(layers).Select(l => l.Searchable));   // first layer searched, last fixed at 4
        var e = Assert.Throws<BitBudgetException>(() => BitConfig.Parse("""{ "first_layer": 8, "firstLayer": 4 }""", "x.json"));
        Assert.Contains("firstLayer", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void BitConfig_Save_WritesLayerNamesWithPlusAsWritten()
    {
        using var dir = new Assets.TempDir();
        var config = new BitConfig { Layers = [new LayerRule("/blocks.0/attn+proj/MatMul", new LayerSettings(WeightBits: 4))] };
        config.Save(dir.File("bits.json"));
        string text = File.ReadAllText(dir.File("bits.json"));
        Assert.Contains("\"/blocks.0/attn+proj/MatMul\": 4", text, StringComparison.Ordinal);
        Assert.Equal(config.Layers, BitConfig.Load(dir.File("bits.json")).Layers);
    }
}

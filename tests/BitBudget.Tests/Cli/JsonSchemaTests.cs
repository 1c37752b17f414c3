using System.Text.Json;
using BitBudget.Tests.Support;

namespace BitBudget.Tests.CommandLine;

/// <summary>
/// Issue 20: every <c>--json</c> output has one schema — snake_case field names, the same fields for every search method,
/// <c>+</c> written as itself — checked field by field (names and JSON types), not just by the exit code.
/// </summary>
[Collection(ConsoleCollection.Name)]
public class JsonSchemaTests
{
    static string Idx => Assets.Require("mnist/t10k-images-idx3-ubyte");

    /// <summary>mnist-8 has 3 layers: CLADO needs two searched ones, so the first joins the search (OMPQ always fixes it).</summary>
    static string[] Search(string method, params string[] extra) =>
        ["search", Assets.Mnist8, "--method", method, "--budget", "6.5bits", "--calib", Idx, "--calib-images", "64", "--sens-images", "64", "--quiet", "--json",
            .. method == "ompq" ? Array.Empty<string>() : ["--first-bits", "search"], .. extra];

    /// <summary>The fields of <c>search --json</c> for every method, with their JSON kinds (Null allowed where a method has no such number).</summary>
    static readonly Dictionary<string, JsonValueKind[]> s_searchFields = new()
    {
        ["method"] = [JsonValueKind.String],
        ["budgets"] = [JsonValueKind.Array],
        ["status"] = [JsonValueKind.String],
        ["solver"] = [JsonValueKind.String],
        ["objective"] = [JsonValueKind.Number, JsonValueKind.Null],
        ["best_bound"] = [JsonValueKind.Number, JsonValueKind.Null],
        ["gap"] = [JsonValueKind.Number, JsonValueKind.Null],
        ["quadratic_objective"] = [JsonValueKind.Number, JsonValueKind.Null],
        ["solve_seconds"] = [JsonValueKind.Number],
        ["size_bytes"] = [JsonValueKind.Number],
        ["average_bits"] = [JsonValueKind.Number],
        ["average_bits_searched"] = [JsonValueKind.Number, JsonValueKind.Null],
        ["bit_ops"] = [JsonValueKind.Number, JsonValueKind.Null],
        ["layers"] = [JsonValueKind.Array],
        ["theta"] = [JsonValueKind.Array, JsonValueKind.Null],
        ["notes"] = [JsonValueKind.Array, JsonValueKind.Null],
        ["ompq"] = [JsonValueKind.Object, JsonValueKind.Null],
    };

    static void AssertSearchSchema(JsonElement result, string method)
    {
        Assert.Equal(JsonValueKind.Object, result.ValueKind);
        Assert.Equal(s_searchFields.Keys.Order(StringComparer.Ordinal), result.EnumerateObject().Select(p => p.Name).Order(StringComparer.Ordinal));
        foreach (JsonProperty p in result.EnumerateObject())
        {
            Assert.True(s_searchFields[p.Name].Contains(p.Value.ValueKind), $"{method}: '{p.Name}' is {p.Value.ValueKind}");
        }
        Assert.Equal(method, result.GetProperty("method").GetString());
        // Only OMPQ says how it chose β and how spread θ is.
        JsonElement ompq = result.GetProperty("ompq");
        if (method == "ompq")
        {
            Assert.Equal(["beta", "beta_candidates", "beta_rule", "effect", "theta_entropy", "theta_entropy_normalized"],
                ompq.EnumerateObject().Select(p => p.Name).Order(StringComparer.Ordinal));
            Assert.True(ompq.GetProperty("beta").GetDouble() >= 0);
            Assert.InRange(ompq.GetProperty("theta_entropy_normalized").GetDouble(), 0, 1 + 1e-9);
        }
        else
        {
            Assert.Equal(JsonValueKind.Null, ompq.ValueKind);
        }
        Assert.Equal(["6.5 bits"], result.GetProperty("budgets").EnumerateArray().Select(b => b.GetString()));
        Assert.Matches("^[a-z_]+$", result.GetProperty("status").GetString());
        // mnist-8's three layers in model order, each {"layer", "bits"} with an integer 2–8.
        JsonElement[] layers = [.. result.GetProperty("layers").EnumerateArray()];
        Assert.Equal(3, layers.Length);
        foreach (JsonElement l in layers)
        {
            Assert.Equal(["bits", "layer"], l.EnumerateObject().Select(p => p.Name).Order(StringComparer.Ordinal));
            Assert.InRange(l.GetProperty("bits").GetInt32(), 2, 8);
        }
        Assert.True(result.GetProperty("average_bits").GetDouble() <= 6.5 + 1e-9, $"{method} exceeds the budget");
    }

    [Theory]
    [InlineData("clado")]
    [InlineData("independent")]
    [InlineData("uniform")]
    [InlineData("ompq")]
    public void SearchJson_EveryMethod_SameSnakeCaseFields(string method)
    {
        InProcessCli.Result r = InProcessCli.Run(Search(method));
        Assert.True(r.Code == 0, r.ToString());
        using var doc = JsonDocument.Parse(r.Out);
        AssertSearchSchema(doc.RootElement, method);
        JsonElement theta = doc.RootElement.GetProperty("theta");
        Assert.Equal(method == "ompq", theta.ValueKind == JsonValueKind.Array);
        if (method is "clado" or "independent")
        {
            Assert.Equal(JsonValueKind.Number, doc.RootElement.GetProperty("best_bound").ValueKind);
        }
    }

    [Fact]
    public void SearchRank3_PrintsThreeDistinctConfigurationsInObjectiveOrder()
    {
        using var dir = new Assets.TempDir();
        InProcessCli.Result r = InProcessCli.Run(Search("independent", "--rank", "3", "-o", dir.File("bits.json")));
        Assert.True(r.Code == 0, r.ToString());
        using var doc = JsonDocument.Parse(r.Out);
        JsonElement[] ranked = [.. doc.RootElement.EnumerateArray()];
        Assert.Equal(3, ranked.Length);
        foreach (JsonElement x in ranked) { AssertSearchSchema(x, "independent"); }
        string[] configs = [.. ranked.Select(x => string.Join(",", x.GetProperty("layers").EnumerateArray().Select(l => l.GetProperty("bits").GetInt32())))];
        Assert.Equal(3, configs.Distinct().Count());
        double[] objectives = [.. ranked.Select(x => x.GetProperty("objective").GetDouble())];
        Assert.Equal(objectives.Order(), objectives);   // the optimum first, then the next best
        // The file written is the first (best) configuration.
        var written = BitBudget.Quantization.BitConfig.Load(dir.File("bits.json"));
        Assert.Equal(ranked[0].GetProperty("layers").EnumerateArray().Select(l => l.GetProperty("bits").GetInt32()),
            written.Layers.Select(rule => rule.Settings.WeightBits!.Value));
        Assert.Equal(1, InProcessCli.Run([.. Search("independent"), "--rank", "0"]).Code);   // command-line usage
    }

    [Fact]
    public void InspectJson_SnakeCaseFieldsAndTypes()
    {
        InProcessCli.Result r = InProcessCli.Run("inspect", Assets.Mnist8, "--json");
        Assert.True(r.Code == 0, r.ToString());
        using var doc = JsonDocument.Parse(r.Out);
        JsonElement root = doc.RootElement;
        AssertSnakeCase(root);
        Assert.Equal(["dropped_outputs", "input_name", "input_shape", "layer_count", "layers", "model_initializer_elements", "op_counts", "opset",
            "output_kind", "output_name", "preparation", "source", "total_macs", "total_parameters", "total_weights"],
            root.EnumerateObject().Select(p => p.Name).Order(StringComparer.Ordinal));
        Assert.Equal(3, root.GetProperty("layer_count").GetInt32());
        Assert.Equal(5960, root.GetProperty("total_weights").GetInt64());   // README's table: mnist-8 5,960 weights
        Assert.Equal(786560, root.GetProperty("total_macs").GetInt64());
        JsonElement layer = root.GetProperty("layers")[0];
        Assert.Equal(JsonValueKind.Array, layer.GetProperty("weight_shape").ValueKind);
        Assert.Equal(JsonValueKind.String, layer.GetProperty("op_type").ValueKind);
        Assert.Equal(JsonValueKind.True, layer.GetProperty("is_first").ValueKind);
        Assert.Equal("logits", root.GetProperty("output_kind").GetString());
    }

    [Fact]
    public void EvalJson_SnakeCaseFieldsAndTypes()
    {
        InProcessCli.Result r = InProcessCli.Run("eval", Assets.Mnist8, "--data", Idx, "--limit", "200", "--json");
        Assert.True(r.Code == 0, r.ToString());
        using var doc = JsonDocument.Parse(r.Out);
        JsonElement root = doc.RootElement;
        Assert.Equal(["count", "cross_entropy", "data", "data_hash", "images_per_second", "label_offset", "model", "output_kind", "output_name", "top1", "top5"],
            root.EnumerateObject().Select(p => p.Name).Order(StringComparer.Ordinal));
        Assert.Equal(200, root.GetProperty("count").GetInt32());
        Assert.InRange(root.GetProperty("top1").GetDouble(), 90.0, 100.0);   // percent, as the table prints it
        Assert.Equal(JsonValueKind.String, root.GetProperty("data_hash").ValueKind);
    }

    /// <summary>Every property name at every depth is snake_case (lower case letters, digits, underscores).</summary>
    internal static void AssertSnakeCase(JsonElement e, string path = "$")
    {
        switch (e.ValueKind)
        {
            case JsonValueKind.Object:
                foreach (JsonProperty p in e.EnumerateObject())
                {
                    Assert.Matches("^[a-z][a-z0-9_]*$", p.Name);
                    AssertSnakeCase(p.Value, $"{path}.{p.Name}");
                }
                break;
            case JsonValueKind.Array:
                int i = 0;
                foreach (JsonElement item in e.EnumerateArray()) { AssertSnakeCase(item, $"{path}[{i++}]"); }
                break;
        }
    }
}

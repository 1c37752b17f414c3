using System.Text.Json;
using BitBudget.Tests.Support;

namespace BitBudget.Tests.Pipeline;

/// <summary>Issue 17: two identical runs give byte-identical bit configs and models, and the same numbers in pareto.json
/// (wall times and the date belong in manifest.json and the report only).</summary>
[Collection(ConsoleCollection.Name)]
public class DeterminismTests
{
    [Fact]
    public void TwoRunsOnMnist8GiveIdenticalResults()
    {
        string idx = Assets.Require("mnist/t10k-images-idx3-ubyte");
        using var dir = new Assets.TempDir();
        string[] Args(string output, params string[] extra) =>
        [
            "run", "-m", Assets.Mnist8, "--calib", idx, "--eval", idx, "--eval-limit", "500", "--budget", "6bits", "--pareto", "7bits",
            "--method", "all", "--calib-images", "128", "--sens-images", "128", "--first-bits", "search", "--quiet", "-o", output, .. extra,
        ];
        InProcessCli.Result first = InProcessCli.Run(Args(dir.File("a")));
        Assert.True(first.Code == 0, first.ToString());
        // The second run decodes nothing (cache) and measures again; a third resumes from a store the second filled.
        InProcessCli.Result second = InProcessCli.Run(Args(dir.File("b"), "--store", dir.File("s.db")));
        Assert.True(second.Code == 0, second.ToString());
        InProcessCli.Result third = InProcessCli.Run(Args(dir.File("c"), "--store", dir.File("s.db")));
        Assert.True(third.Code == 0, third.ToString());

        foreach (string other in (string[])["b", "c"])
        {
            string[] models = [.. Directory.GetFiles(dir.File("a/models")).Select(Path.GetFileName).Order(StringComparer.Ordinal)!];
            Assert.NotEmpty(models);
            Assert.Equal(models, Directory.GetFiles(dir.File($"{other}/models")).Select(Path.GetFileName).Order(StringComparer.Ordinal));
            foreach (string file in (string[])["bits.json", "model.onnx", "layers.json", "layers.csv", .. models.Select(m => $"models/{m}")])
            {
                Assert.True(File.ReadAllBytes(dir.File($"a/{file}")).AsSpan().SequenceEqual(File.ReadAllBytes(dir.File($"{other}/{file}"))), $"{file} differs in run {other}");
            }
            using JsonDocument pa = JsonDocument.Parse(File.ReadAllText(dir.File("a/pareto.json")));
            using JsonDocument pb = JsonDocument.Parse(File.ReadAllText(dir.File($"{other}/pareto.json")));
            AssertSameNumbers(pa.RootElement, pb.RootElement, "pareto");
        }
        // What does change between runs is recorded where it belongs.
        Assert.Contains("seconds", File.ReadAllText(dir.File("a/manifest.json")), StringComparison.Ordinal);
        Assert.DoesNotContain("seconds", File.ReadAllText(dir.File("a/pareto.json")), StringComparison.Ordinal);
    }

    /// <summary>Every number at the same path is equal (strings too, except the output folder's name).</summary>
    static void AssertSameNumbers(JsonElement a, JsonElement b, string path)
    {
        Assert.True(a.ValueKind == b.ValueKind, $"{path}: {a.ValueKind} vs {b.ValueKind}");
        switch (a.ValueKind)
        {
            case JsonValueKind.Object:
                Assert.Equal(a.EnumerateObject().Select(p => p.Name), b.EnumerateObject().Select(p => p.Name));
                foreach (JsonProperty p in a.EnumerateObject()) { AssertSameNumbers(p.Value, b.GetProperty(p.Name), $"{path}.{p.Name}"); }
                break;
            case JsonValueKind.Array:
                Assert.Equal(a.GetArrayLength(), b.GetArrayLength());
                for (int i = 0; i < a.GetArrayLength(); i++) { AssertSameNumbers(a[i], b[i], $"{path}[{i}]"); }
                break;
            case JsonValueKind.Number:
                Assert.True(a.GetRawText() == b.GetRawText(), $"{path}: {a.GetRawText()} vs {b.GetRawText()}");
                break;
            case JsonValueKind.String:
                if (!a.GetString()!.Contains(Path.DirectorySeparatorChar, StringComparison.Ordinal)) { Assert.Equal(a.GetString(), b.GetString()); }
                break;
        }
    }
}

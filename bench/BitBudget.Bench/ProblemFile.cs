using System.Text.Json;
using BitBudget.Optimization;

namespace BitBudget.Bench;

/// <summary>A search problem's layers and Ω as JSON (budgets are not stored): a measured Ω saved once, solved many times.</summary>
static class ProblemFile
{
    sealed record Layer(string Name, long WeightCount, long MacsPerImage, int[] CandidateBits, int? FixedBits);
    sealed record File(Layer[] Layers, double[][] Omega);

    static readonly JsonSerializerOptions s_json = new() { PropertyNamingPolicy = JsonNamingPolicy.CamelCase };

    public static void Write(string path, SearchProblem problem)
    {
        int n = problem.Omega.Order;
        var file = new File(
            [.. problem.Layers.Select(l => new Layer(l.Name, l.WeightCount, l.MacsPerImage, [.. l.CandidateBits], l.FixedBits))],
            [.. Enumerable.Range(0, n).Select(u => Enumerable.Range(0, n).Select(v => problem.Omega[u, v]).ToArray())]);
        System.IO.File.WriteAllText(path, JsonSerializer.Serialize(file, s_json));
    }

    public static SearchProblem Read(string path, IReadOnlyList<Budget> budgets)
    {
        File file = JsonSerializer.Deserialize<File>(System.IO.File.ReadAllText(path), s_json) ?? throw new InvalidDataException($"{path}: empty");
        int n = file.Omega.Length;
        var omega = new double[n, n];
        for (int u = 0; u < n; u++) { for (int v = 0; v < n; v++) { omega[u, v] = file.Omega[u][v]; } }
        return new SearchProblem([.. file.Layers.Select(l => new SearchLayer(l.Name, l.WeightCount, l.MacsPerImage, l.CandidateBits, l.FixedBits))], omega, budgets);
    }
}

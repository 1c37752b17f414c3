using BitBudget.Numerics;
using BitBudget.Reporting;

namespace BitBudget.Tests.Reporting;

/// <summary>A seeded, ResNet-20-shaped set of report records: 22 layers, bits {2,4,8}, three methods, two roundings, two draws.</summary>
static class SyntheticReport
{
    internal static readonly int[] CandidateBits = [2, 4, 8];

    internal static IReadOnlyList<LayerReportRow> Layers(string? oddName = null)
    {
        var rng = new Random(7);
        var rows = new List<LayerReportRow>();
        for (int i = 0; i < 22; i++)
        {
            long weights = i == 0 ? 432 : i == 21 ? 640 : 2304L << (i / 7 * 2);
            var dl = new Dictionary<int, double>();
            double s = Math.Exp(rng.NextDouble() * 3 - 6) * (i is 0 or 21 ? 8 : 1);
            foreach (int b in CandidateBits)
            {
                dl[b] = s * Math.Pow(4, -(b - 2));
            }
            var chosen = new Dictionary<string, int>
            {
                ["clado@3bits"] = i is 0 or 21 ? 8 : dl[2] > 0.004 ? 4 : 2 + 2 * (i % 2),
                ["independent@3bits"] = i is 0 or 21 ? 8 : dl[2] > 0.002 ? 4 : 2,
            };
            string name = i == 5 && oddName is not null ? oddName : $"layer{i}.conv";
            rows.Add(new LayerReportRow(i, name, i == 21 ? "Gemm" : "Conv", weights, weights * (i == 21 ? 1 : 64 >> (i / 7)), i is 0 or 21, dl, chosen));
        }
        return rows;
    }

    internal static ParetoFront Front(IReadOnlyList<LayerReportRow> layers, string model = "resnet20 (synthetic)")
    {
        long totalWeights = layers.Sum(l => l.WeightCount);
        var rng = new Random(11);
        var points = new List<ParetoPoint>();
        string[] budgets = ["2.5bits", "3bits", "3.5bits", "4bits"];
        foreach (string rounding in (string[])["rtn", "gptq"])
        {
            foreach (string method in (string[])["clado", "independent"])
            {
                for (int draw = 0; draw < 2; draw++)
                {
                    foreach (string budget in budgets)
                    {
                        double bits = double.Parse(budget[..^4], System.Globalization.CultureInfo.InvariantCulture);
                        double quality = (method == "clado" ? 1.0 : 0.8) * (rounding == "gptq" ? 1.1 : 1.0);
                        double top1 = 0.9160 - 0.35 * Math.Exp(-(bits - 2) * 1.6 * quality) + 0.002 * (rng.NextDouble() - 0.5);
                        double loss = 0.6 * Math.Exp(-(bits - 2) * 1.5 * quality);
                        points.Add(new ParetoPoint(method, rounding, budget, bits, totalWeights * bits / 8, loss, top1 + 0.001, top1,
                            "Optimal", 0, [.. layers.Select(l => new LayerChoice(l.Name, Pick(l, method, bits)))], draw));
                    }
                }
            }
            foreach (int u in (int[])[2, 4, 8])
            {
                double top1 = u == 8 ? 0.9150 : u == 4 ? 0.8700 - (rounding == "gptq" ? -0.02 : 0) : 0.12;
                points.Add(new ParetoPoint("uniform", rounding, $"uniform {u}", u, totalWeights * u / 8.0, 0.6 * Math.Pow(4, -(u - 2)), top1, top1,
                    "Optimal", null, [.. layers.Select(l => new LayerChoice(l.Name, u))]));
            }
        }
        return new ParetoFront(model, 0.9160, "CIFAR-10 test, 10,000 images", totalWeights * 4.0, points);
    }

    static int Pick(LayerReportRow layer, string method, double bits) =>
        layer.Fixed ? 8 : (layer.Index * (method == "clado" ? 7 : 5)) % 10 < (bits - 2) * 4 ? 4 : 2;

    internal static OmegaMatrix Omega(IReadOnlyList<LayerReportRow> layers)
    {
        var rng = new Random(3);
        var labels = new List<string>();
        var scale = new List<double>();
        foreach (var l in layers)
        {
            foreach (int b in CandidateBits)
            {
                labels.Add($"{l.Name}@{b}");
                scale.Add(Math.Sqrt(l.DeltaLoss[b]));
            }
        }
        int n = labels.Count;
        var values = new double[n * n];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j <= i; j++)
            {
                double v = i == j ? 2 * scale[i] * scale[i] : 0.8 * scale[i] * scale[j] * (rng.NextDouble() * 2 - 0.7);
                values[i * n + j] = v;
                values[j * n + i] = v;
            }
        }
        return new OmegaMatrix(labels, SquareMatrix.Copy(values, n), new OmegaSpectrum(-1.2e-4, 0.31, 5, 0.0021));
    }

    internal static RunManifest Manifest() => new(
        "0.1.0", "1.31.1", 21, "cpu",
        new Dictionary<string, long> { ["calibration"] = 0, ["sensitivity draw"] = 1 },
        "9f2c7e0a5b8d4c1e3f6a7b9c0d2e4f618a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d",
        new Dictionary<string, string> { ["calibration"] = "a1b2c3", ["evaluation"] = "d4e5f6" },
        [new StageTiming("measure", 61.2), new StageTiming("search", 3.4), new StageTiming("evaluate", 20.8)],
        [new SolverRun("clado", "3bits", "Optimal", 0, 0.42), new SolverRun("independent", "3bits", "Optimal", 0, 0.01)],
        ["run", "--model", "resnet20.onnx", "--budget", "3bits", "--pareto"],
        new DateTimeOffset(2025, 1, 2, 3, 4, 5, TimeSpan.Zero));
}

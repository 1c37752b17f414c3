using System.IO.Compression;
using System.Text.Json;
using BitBudget.Graph;
using BitBudget.Tests.Support;

namespace BitBudget.Tests.Demo;

/// <summary>
/// The shipped demo model (demo/model/demo-cnn.onnx, trained by demo/train.py) against the PyTorch reference
/// logits that train.py wrote beside it, before and after BitBudget's graph preparation.
/// </summary>
public class DemoModelTests
{
    static string ModelDir => Path.Combine(Assets.RepoRoot, "demo", "model");
    static string ModelPath => Path.Combine(ModelDir, "demo-cnn.onnx");
    static readonly Lazy<JsonElement> s_golden = new(() =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(ModelDir, "golden.json"))).RootElement);

    /// <summary>pixel(n,y,x) = (61n + 17y + 29x + (x·y mod 11)) mod 256, normalized as in train.py's golden_input.</summary>
    static float[] GoldenInput(int count, float mean, float std)
    {
        var values = new float[count * 784];
        for (int n = 0; n < count; n++)
        {
            for (int y = 0; y < 28; y++)
            {
                for (int x = 0; x < 28; x++)
                {
                    int pixel = (61 * n + 17 * y + 29 * x + x * y % 11) % 256;
                    values[n * 784 + y * 28 + x] = (pixel / 255f - mean) / std;
                }
            }
        }
        return values;
    }

    /// <summary>
    /// Layers, weights and MACs as recounted independently by <c>/usr/bin/python3 tests/scripts/layer_counts.py
    /// demo/model/demo-cnn.onnx</c> (9 layers, 7 Conv + 2 Gemm, 35,056 weights, 2,629,312 MACs); the six BatchNorms are
    /// the ones demo/train.py puts after six of the convolutions.
    /// </summary>
    [Fact]
    public void Inspect_DemoCnn_NineLayersWithSixBatchNormsFolded()
    {
        (_, ModelSummary s) = ModelInspector.Inspect(OnnxModel.Load(ModelPath));
        Assert.Equal(9, s.Layers.Count);
        Assert.Equal("7 Conv + 2 Gemm", s.OpCounts);
        Assert.Equal(6, s.Preparation.FoldedBatchNorms);
        Assert.Equal(35_056, s.TotalWeights);
        Assert.Equal(2_629_312, s.TotalMacs);
        Assert.Equal(32, s.Layers[2].Groups);                  // the depthwise conv
        Assert.Equal([1L, 10], s.Layers[^1].OutputShape);
    }

    [Fact]
    public void DemoCnn_MatchesPyTorchLogits_BeforeAndAfterPreparation()
    {
        JsonElement golden = s_golden.Value;
        float mean = golden.GetProperty("mean").GetSingle(), std = golden.GetProperty("std").GetSingle();
        float[][] expected = [.. golden.GetProperty("logits").EnumerateArray().Select(r => r.EnumerateArray().Select(v => v.GetSingle()).ToArray())];
        int count = expected.Length;
        float[] input = GoldenInput(count, mean, std);
        OnnxModel model = OnnxModel.Load(ModelPath);
        (OnnxModel prepared, _) = ModelInspector.Inspect(model);
        float[] original = OrtHelpers.Run(model.ToBytes(), "input", input, [count, 1, 28, 28]);
        float[] folded = OrtHelpers.Run(prepared.ToBytes(), "input", input, [count, 1, 28, 28]);
        for (int n = 0; n < count; n++)
        {
            for (int k = 0; k < 10; k++)
            {
                Assert.Equal(expected[n][k], original[n * 10 + k], 2e-3f);
                Assert.Equal(expected[n][k], folded[n * 10 + k], 2e-3f);
            }
        }
    }

    /// <summary>Needs demo/data (./demo/fetch-data.sh); the data is not in the repository, so this skips without it.</summary>
    [Fact]
    public void DemoCnn_FashionMnistTestAccuracy_MatchesTraining()
    {
        string dir = Path.Combine(Assets.RepoRoot, "demo", "data");
        string images = Path.Combine(dir, "t10k-images-idx3-ubyte.gz"), labels = Path.Combine(dir, "t10k-labels-idx1-ubyte.gz");
        if (!File.Exists(images) || !File.Exists(labels)) { Assert.Skip("demo/data not fetched (run ./demo/fetch-data.sh)."); }
        JsonElement golden = s_golden.Value;
        float mean = golden.GetProperty("mean").GetSingle(), std = golden.GetProperty("std").GetSingle();
        byte[] pixels = ReadIdxGz(images, 16), classes = ReadIdxGz(labels, 8);
        Assert.Equal(10_000, classes.Length);
        byte[] model = File.ReadAllBytes(ModelPath);
        const int Batch = 1000;
        int correct = 0;
        var input = new float[Batch * 784];
        for (int start = 0; start < classes.Length; start += Batch)
        {
            for (int i = 0; i < input.Length; i++) { input[i] = (pixels[start * 784 + i] / 255f - mean) / std; }
            float[] logits = OrtHelpers.Run(model, "input", input, [Batch, 1, 28, 28]);
            for (int n = 0; n < Batch; n++)
            {
                int best = 0;
                for (int k = 1; k < 10; k++) { if (logits[n * 10 + k] > logits[n * 10 + best]) { best = k; } }
                if (best == classes[start + n]) { correct++; }
            }
        }
        double expected = golden.GetProperty("test_accuracy").GetDouble();
        Assert.InRange(correct / 10_000.0, expected - 0.0005, expected + 0.0005);   // ORT vs PyTorch rounding may flip a few images
    }

    static byte[] ReadIdxGz(string path, int headerBytes)
    {
        using var gz = new GZipStream(File.OpenRead(path), CompressionMode.Decompress);
        using var buffer = new MemoryStream();
        gz.CopyTo(buffer);
        return buffer.ToArray()[headerBytes..];
    }
}

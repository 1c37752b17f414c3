using BitBudget.Export;
using BitBudget.Graph;
using BitBudget.Graph.Onnx;
using BitBudget.Quantization;
using BitBudget.Tests.Support;
using Microsoft.ML.OnnxRuntime;

namespace BitBudget.Tests.Export;

/// <summary>Exported QDQ ResNet-20 against the simulation on the 100 lossless ERAN CIFAR-10 images.</summary>
public class ResNet20AgreementTests(ITestOutputHelper output)
{
    const int Images = 100;

    sealed record Setup(OnnxModel Prepared, IReadOnlyList<LayerInfo> Layers, QuantizedWeights Weights, float[] Images, int[] Labels, float[] FloatLogits);

    static readonly Lazy<Setup> s_setup = new(() =>
    {
        (OnnxModel prepared, ModelSummary summary) = ModelInspector.Inspect(OnnxModel.Load(Assets.ResNet20));
        (float[] images, int[] labels) = Assets.EranCifar(Images);
        float[] logits = OrtHelpers.Run(prepared.ToBytes(), "input", images, [Images, 3, 32, 32]);
        return new Setup(prepared, summary.Layers, new QuantizedWeights(prepared, summary.Layers), images, labels, logits);
    });

    static Setup Get()
    {
        _ = Assets.ResNet20;   // skip without assets
        return s_setup.Value;
    }

    /// <summary>The 64-channel stage's Conv_5x at 2 bits, Conv_1x–Conv_3x at 4, the rest (and first/last) at 8.</summary>
    const string Mixed = """{ "layers": { "Conv_1*": 4, "Conv_2*": 4, "Conv_3*": 4, "Conv_5*": 2 } }""";

    static BitConfig Config(string name) => name switch
    {
        "w8" => BitConfig.Uniform(8),
        "w4" => BitConfig.Uniform(4),
        _ => BitConfig.Parse(Mixed),
    };

    static int Correct(float[] logits, int[] labels)
    {
        int correct = 0;
        for (int n = 0; n < labels.Length; n++)
        {
            ReadOnlySpan<float> row = logits.AsSpan(n * 10, 10);
            if (System.Numerics.Tensors.TensorPrimitives.IndexOfMax(row) == labels[n]) { correct++; }
        }
        return correct;
    }

    [Theory]
    [InlineData("w8")]
    [InlineData("w4")]
    [InlineData("mixed")]
    public void WeightsOnly_ExportedTop1AndLogitsMatchSimulation(string name)
    {
        Setup s = Get();
        IReadOnlyList<LayerBits> config = Config(name).Resolve(s.Layers);
        ExportResult result = QdqExporter.Export(s.Prepared, s.Layers, config, s.Weights, null, new ExportOptions { CheckInput = s.Images });
        float[] simulated = OrtHelpers.Run(QuantSimulator.Build(s.Prepared, s.Layers, config, s.Weights).ToBytes(), "input", s.Images, [Images, 3, 32, 32]);
        float[] exported = OrtHelpers.Run(result.Model.ToBytes(), "input", s.Images, [Images, 3, 32, 32]);
        Assert.Equal(exported, result.CheckOutput);
        float max = simulated.Max(MathF.Abs), maxDiff = simulated.Zip(exported).Max(p => MathF.Abs(p.First - p.Second));
        int simTop1 = Correct(simulated, s.Labels), expTop1 = Correct(exported, s.Labels), fpTop1 = Correct(s.FloatLogits, s.Labels);
        output.WriteLine($"{name}: bits {BitConfig.Describe(config)}; top-1 fp {fpTop1}, simulated {simTop1}, exported {expTop1} of {Images}; " +
            $"max |Δlogit| {maxDiff:G3} (max |logit| {max:G3}); file {result.ModelBytes} B, weights accounted {result.AccountedWeightBytes} B, stored {result.StoredWeightBytes} B, opset {result.Opset}");
        Assert.True(maxDiff <= 1e-3f * max, $"max |Δlogit| {maxDiff} > 1e-3 · {max}");
        Assert.InRange(expTop1 - simTop1, -1, 1);
        Assert.Equal(BitConfig.WeightBytes(config, s.Layers), result.AccountedWeightBytes);
        Assert.Equal(name == "w8" ? 13 : name == "w4" ? 21 : 25, result.Opset);
        if (name != "mixed") { Assert.Equal(result.AccountedWeightBytes, result.StoredWeightBytes); }   // 2, 4, 8 bits have exact containers
        if (name == "w8") { Assert.InRange(expTop1, fpTop1 - 1, fpTop1 + 1); }
    }

    /// <summary>Input activation parameters per layer from the float model on <paramref name="count"/> images, streamed in batches of 10.</summary>
    static Dictionary<string, ActivationParams> Calibrate(Setup s, int count, int bits)
    {
        OnnxModel probe = s.Prepared.Clone();
        string[] tensors = [.. s.Layers.Select(l => l.InputName).Distinct()];
        foreach (string t in tensors)
        {
            probe.Proto.Graph.Output.Add(new ValueInfoProto
            {
                Name = t,
                Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float } },
            });
        }
        var observers = tensors.ToDictionary(t => t, _ => new ActivationObserver());
        byte[] bytes = probe.ToBytes();
        for (int start = 0; start < count; start += 10)
        {
            float[] batch = s.Images.AsSpan(start * 3072, 10 * 3072).ToArray();
            float[][] values = OrtHelpers.RunMany(bytes, "input", batch, [10, 3, 32, 32], tensors);
            for (int i = 0; i < tensors.Length; i++) { observers[tensors[i]].Observe(values[i]); }
        }
        return s.Layers.ToDictionary(l => l.Name, l => observers[l.InputName].Compute(bits, ActivationCalibration.Percentile, 99.99));
    }

    [Fact]
    public void A8_CheckImagesOnePerRun_SameOutputsAsOneRunOfEight()
    {
        Setup s = Get();
        IReadOnlyList<LayerBits> config = [.. Config("mixed").Resolve(s.Layers).Select(b => b with { ActivationBits = 8 })];
        Dictionary<string, ActivationParams> activations = Calibrate(s, 50, 8);
        float[] eight = s.Images.AsSpan(0, 8 * 3 * 32 * 32).ToArray();
        ExportResult ExportWith(int imagesPerRun) => QdqExporter.Export(s.Prepared, s.Layers, config, s.Weights, activations,
            new ExportOptions { CheckInput = eight, Runtime = BitBudget.Runtime.RuntimeOptions.Default with { ImagesPerRun = imagesPerRun, IntraOpThreads = 1 } });

        ExportResult whole = ExportWith(8), single = ExportWith(1);

        Assert.Equal(whole.Model.ToBytes(), single.Model.ToBytes());
        // The check's output is every image's, in order: that of one plain ORT run over the eight images. ORT's kernels are not
        // bit-identical across batch sizes (measured here: the last bits of the logits move), so the eight runs of one image
        // agree with it to float rounding, and the check's verdict (top-1 of each image, relative RMS) is the same.
        float[] reference = OrtHelpers.Run(whole.Model.ToBytes(), "input", eight, [8, 3, 32, 32]);
        float max = reference.Max(MathF.Abs);
        foreach (float[] checkOutput in new[] { whole.CheckOutput, single.CheckOutput })
        {
            Assert.Equal(8 * 10, checkOutput.Length);
            Assert.All(reference.Zip(checkOutput), p => Assert.Equal(p.First, p.Second, 1e-5f * max));
            for (int i = 0; i < 8; i++)
            {
                Assert.Equal(System.Numerics.Tensors.TensorPrimitives.IndexOfMax(reference.AsSpan(i * 10, 10)),
                    System.Numerics.Tensors.TensorPrimitives.IndexOfMax(checkOutput.AsSpan(i * 10, 10)));
            }
        }
    }

    [Theory]
    [InlineData("w8")]
    [InlineData("mixed")]
    public void A8_CalibratedOnHalf_ExportRunsAtEnableAllAndAgrees(string name)
    {
        Setup s = Get();
        IReadOnlyList<LayerBits> config = [.. Config(name).Resolve(s.Layers).Select(b => b with { ActivationBits = 8 })];
        Dictionary<string, ActivationParams> activations = Calibrate(s, 50, 8);
        ExportResult result = QdqExporter.Export(s.Prepared, s.Layers, config, s.Weights, activations, new ExportOptions { CheckInput = s.Images });
        float[] simulated = OrtHelpers.Run(QuantSimulator.Build(s.Prepared, s.Layers, config, s.Weights, activations).ToBytes(), "input", s.Images,
            [Images, 3, 32, 32], level: GraphOptimizationLevel.ORT_DISABLE_ALL);
        int simTop1 = Correct(simulated, s.Labels), expTop1 = Correct(result.CheckOutput, s.Labels), fpTop1 = Correct(s.FloatLogits, s.Labels);
        float max = simulated.Max(MathF.Abs), maxDiff = simulated.Zip(result.CheckOutput).Max(p => MathF.Abs(p.First - p.Second));
        int close = simulated.Zip(result.CheckOutput).Count(p => MathF.Abs(p.First - p.Second) <= 1e-3f * max);
        output.WriteLine($"{name}+A8: top-1 fp {fpTop1}, simulated {simTop1}, exported {expTop1} of {Images}; max |Δlogit| {maxDiff:G3} (max |logit| {max:G3}), " +
            $"{close}/{simulated.Length} logits within 1e-3·max; file {result.ModelBytes} B");
        Assert.InRange(expTop1 - simTop1, -1, 1);
        Assert.True(maxDiff <= 0.05f * max, $"max |Δlogit| {maxDiff} > 0.05 · {max}");
        // W8A8 convs are fused into QLinearConv (integer accumulation, int32 bias, requantization), so single activation
        // steps differ from the float simulation and accumulate over 20 layers: logits agree to a few percent, top-1 to one image.
        if (name == "w8") { Assert.InRange(expTop1, fpTop1 - 2, fpTop1 + 2); }
    }
}

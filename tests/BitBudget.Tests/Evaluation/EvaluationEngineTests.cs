using BitBudget.Data;
using BitBudget.Evaluation;
using BitBudget.Graph;
using BitBudget.Tests.Support;

namespace BitBudget.Tests.Evaluation;

/// <summary>The full-precision numbers of ../shared/assets/README.md, reproduced through the engine.</summary>
public class EvaluationEngineTests
{
    static EvaluationEngine Engine(string model) => EvaluationEngine.Create(ModelInspector.Inspect(OnnxModel.Load(model)).Prepared);

    [Fact]
    public void SessionsRunWithoutTheArena_SoTheirMicroBatchesStayWithinThePlan()
    {
        // The arena keeps its peak and grows in doubling chunks past the planned footprint (docs/memory.md: SqueezeNet's
        // exported uniform model went 1,115,672 kB under a 1 GiB budget with it, 765,640 kB without), even when asked for.
        using var engine = EvaluationEngine.Create(ModelInspector.Inspect(OnnxModel.Load(Assets.ResNet20)).Prepared,
            BitBudget.Runtime.RuntimeOptions.Default with { MemoryArena = true });
        Assert.False(engine.Options.MemoryArena);
        using var replaced = engine.WithWeights(new Dictionary<string, float[]>());
        Assert.False(replaced.Options.MemoryArena);
    }

    [Fact]
    public void ResNet20OnEranIs90Percent()
    {
        using var engine = Engine(Assets.ResNet20);
        EvaluationResult r = engine.Evaluate(SharedData.Eran100, new EvaluationOptions { BatchSize = 32 });
        Assert.Equal(100, r.Count);
        Assert.Equal(90.0, r.Top1, 3);
    }

    [Fact]
    public void ResNet20OnTheJpegTestSetIs81Point07()
    {
        using var engine = Engine(Assets.ResNet20);
        EvaluationResult r = engine.Evaluate(SharedData.CifarTest, new EvaluationOptions { BatchSize = 256 });
        Assert.Equal(10_000, r.Count);
        Assert.Equal(81.07, r.Top1, 2);
    }

    [Fact]
    public void Mnist8Is98Point91()
    {
        using var engine = Engine(Assets.Mnist8);
        Assert.Equal(98.91, engine.Evaluate(SharedData.MnistTest, new EvaluationOptions { BatchSize = 500 }).Top1, 2);
    }

    [Fact]
    public void SqueezeNetOnTheSamplesIsNearTheReference()
    {
        // Reference 61.4 / 83.3 (PIL resize); Skia's bilinear with mipmaps measures 63.5 / 85.0, see README design notes.
        using var engine = Engine(Assets.SqueezeNet);
        EvaluationResult r = engine.Evaluate(SharedData.ImageNet(), new EvaluationOptions { BatchSize = 50 });
        Assert.Equal(1000, r.Count);
        Assert.InRange(r.Top1, 61.4 - 2.5, 61.4 + 2.5);
        Assert.InRange(r.Top5, 83.3 - 2.5, 83.3 + 2.5);
    }

    [Fact]
    public void LossesMatchAnIndependentComputation()
    {
        using var engine = Engine(Assets.ResNet20);
        Dataset data = SharedData.Eran100;
        float[] logits = engine.Logits(data, 17);
        double ce = 0;
        for (int i = 0; i < data.Count; i++)
        {
            double max = double.MinValue, sum = 0;
            for (int c = 0; c < 10; c++) { max = Math.Max(max, logits[i * 10 + c]); }
            for (int c = 0; c < 10; c++) { sum += Math.Exp(logits[i * 10 + c] - max); }
            ce -= logits[i * 10 + data.Labels[i]] - max - Math.Log(sum);
        }
        EvaluationResult r = engine.Evaluate(data, new EvaluationOptions { ReferenceLogits = logits });
        Assert.Equal(ce / data.Count, r.CrossEntropy, 4);
        Assert.Equal(0, r.KlDivergence!.Value, 6);
    }

    [Fact]
    public void WeightOverridesChangeOnlyWhatTheyReplace()
    {
        (OnnxModel prepared, ModelSummary summary) = ModelInspector.Inspect(OnnxModel.Load(Assets.ResNet20));
        using var engine = EvaluationEngine.Create(prepared);
        Dataset data = SharedData.Eran100;
        float[] reference = engine.Logits(data);
        LayerInfo layer = summary.Layers[5];
        float[] original = TensorData.ReadFloats(prepared.FindInitializer(layer.WeightName)!);

        using (var same = engine.WithWeights(new Dictionary<string, float[]> { [layer.WeightName] = original }))
        {
            Assert.Equal(reference, same.Logits(data));
        }
        float[] halved = original.Select(v => v * 0.5f).ToArray();
        using var changed = engine.WithWeights(new Dictionary<string, float[]> { [layer.WeightName] = halved });
        EvaluationResult r = changed.Evaluate(data, new EvaluationOptions { ReferenceLogits = reference });
        Assert.True(r.KlDivergence > 1e-4, $"KL {r.KlDivergence}");
        Assert.Equal(reference, engine.Logits(data));   // the original engine is untouched

        var bad = Assert.Throws<BitBudgetException>(() => engine.WithWeights(new Dictionary<string, float[]> { [layer.WeightName] = [1f] }));
        Assert.Contains(layer.WeightName, bad.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void CaptureExposesIntermediateTensors()
    {
        (OnnxModel prepared, ModelSummary summary) = ModelInspector.Inspect(OnnxModel.Load(Assets.ResNet20));
        using var engine = EvaluationEngine.Create(prepared);
        Dataset data = SharedData.Eran100;
        string tensor = summary.Layers[3].OutputName;
        var captured = new float[data.Count * 16 * 32 * 32];
        int seen = 0;
        engine.Capture(data, [tensor], 40, (start, n, tensors) =>
        {
            Assert.Equal([n, 16, 32, 32], tensors[tensor].Shape);
            tensors[tensor].Values.CopyTo(captured.AsSpan(start * 16 * 32 * 32));
            seen += n;
        });
        Assert.Equal(100, seen);
        float[] expected = OrtHelpers.Run(prepared.WithOutputs([tensor]).ToBytes(), prepared.InputName, data.Images.ToArray(), [100, 3, 32, 32], tensor);
        Assert.Equal(expected.Length, captured.Length);
        for (int i = 0; i < expected.Length; i += 97) { Assert.Equal(expected[i], captured[i], 1e-4f); }
    }

    [Fact]
    public void ImagesThatDoNotFitTheModelAreRefused()
    {
        using var engine = Engine(Assets.ResNet20);
        var e = Assert.Throws<BitBudgetException>(() => engine.Evaluate(SharedData.MnistTest));
        Assert.Contains("[1,28,28]", e.Message, StringComparison.Ordinal);
    }
}

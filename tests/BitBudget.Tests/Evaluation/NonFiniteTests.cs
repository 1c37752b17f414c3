using BitBudget.Data;
using BitBudget.Evaluation;
using BitBudget.Graph;
using BitBudget.Quantization;
using BitBudget.Clado;
using BitBudget.Rounding;
using BitBudget.Tests.Support;

namespace BitBudget.Tests.Evaluation;

/// <summary>Issue 17 items 1 and 4: NaN/Inf never counts as a result; it stops with one line naming where it comes from.</summary>
public class NonFiniteTests
{
    const int Images = 12;

    static Dataset Data(bool nanImage = false)
    {
        float[] x = OrtHelpers.Deterministic(Images * 3 * 8 * 8, seed: 9);
        if (nanImage) { x[7 * 192 + 10] = float.NaN; }   // one pixel of image 7
        return Dataset.FromArrays(x, [.. Enumerable.Range(0, Images).Select(i => i % 3)], [3, 8, 8], ["a", "b", "c"]);
    }

    [Theory]
    [InlineData(float.NaN)]
    [InlineData(float.PositiveInfinity)]
    public void NonFiniteLogits_NeverScore_ErrorNamesFirstNonFiniteNode(float poison)
    {
        (OnnxModel prepared, _) = ModelInspector.Inspect(TinyModels.Classifier(poison));
        using var engine = EvaluationEngine.Create(prepared);
        var e = Assert.Throws<BitBudgetException>(() => engine.Evaluate(Data(), new EvaluationOptions { BatchSize = 5 }));
        Assert.Equal(ErrorKind.InvalidInput, e.Kind);
        Assert.DoesNotContain('\n', e.Message);
        Assert.StartsWith("Model output 'y' is not finite (NaN or infinity) on images 0–4 of (in memory): the first non-finite tensor is 'c1', written by node 'conv' (Conv)",
            e.Message, StringComparison.Ordinal);
        Assert.Throws<BitBudgetException>(() => engine.Logits(Data()));
    }

    [Fact]
    public void FiniteModel_NonFiniteImage_NamesTheBatchAndFirstNode()
    {
        (OnnxModel prepared, _) = ModelInspector.Inspect(TinyModels.Classifier());
        using var engine = EvaluationEngine.Create(prepared);
        Assert.Equal(Images, engine.Evaluate(Data()).Count);   // the normal path is unchanged
        var e = Assert.Throws<BitBudgetException>(() => engine.Evaluate(Data(nanImage: true), new EvaluationOptions { BatchSize = 4 }));
        Assert.Contains("on images 4–7", e.Message, StringComparison.Ordinal);
        Assert.Contains("'c1', written by node 'conv' (Conv)", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(float.NaN, "NaN")]
    [InlineData(float.NegativeInfinity, "-Infinity")]
    public void NonFiniteWeight_RefusedBeforeRtnAndBeforeGptq_NamingLayerAndTensor(float poison, string shown)
    {
        (OnnxModel prepared, ModelSummary summary) = ModelInspector.Inspect(TinyModels.Classifier(poison));
        string expected = $"Layer 'conv' tensor 'w1' of model 'tiny.onnx' holds 1 non-finite value (first: {shown} at element 5); it cannot be quantized.";
        var rtn = Assert.Throws<BitBudgetException>(() => new QuantizedWeights(prepared, summary.Layers));
        Assert.Equal(expected, rtn.Message);
        var gptq = Assert.Throws<BitBudgetException>(() => QuantizedWeights.Create(prepared, summary.Layers, WeightRounding.Default with { CalibrationImages = Images }, Data(),
            cancellationToken: TestContext.Current.CancellationToken));
        Assert.Equal(expected, gptq.Message);
        Assert.Equal(ErrorKind.InvalidInput, gptq.Kind);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void NonFiniteCladoLoss_Errors_InsteadOfEnteringOmega(bool naive)
    {
        (OnnxModel prepared, ModelSummary summary) = ModelInspector.Inspect(TinyModels.Classifier());
        var config = BitConfig.Uniform(8).Resolve(summary.Layers).Select(c => c with { Searchable = true }).ToArray();
        var input = new SensitivityInput(prepared, summary.Layers, config, new QuantizedWeights(prepared, summary.Layers), null, Data(nanImage: true));
        var e = Assert.Throws<BitBudgetException>(() => CladoSensitivity.Measure(input, new SensitivityOptions { Pairs = PairSelection.All, BatchSize = 6, Naive = naive }));
        Assert.Equal("CLADO's ce loss is NaN with the model with no searched layer quantized on a sensitivity batch: the model computes NaN or infinity there; check it with `bitbudget eval`.",
            e.Message);
    }
}

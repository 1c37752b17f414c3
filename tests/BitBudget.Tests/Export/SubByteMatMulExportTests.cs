using BitBudget.Data;
using BitBudget.Evaluation;
using BitBudget.Export;
using BitBudget.Graph;
using BitBudget.Quantization;
using BitBudget.Rounding;
using BitBudget.Runtime;
using BitBudget.Tests.Support;
using Microsoft.ML.OnnxRuntime;

namespace BitBudget.Tests.Export;

/// <summary>
/// Issue 17 item 2: ONNX Runtime 1.31.1 turns DequantizeLinear(int2 [K, N], axis 1) → MatMul into MatMulNBits, whose 2-bit kernel
/// returns values that change from run to run. The exporter stores such weights transposed under a Gemm(transB = 1), and refuses
/// any export that disagrees with its simulation.
/// </summary>
public class SubByteMatMulExportTests
{
    const int K = 64, N = 10, Images = 32;

    /// <summary>x[N,64] → MatMul(w[64,10]) or Gemm(w[64,10], transB = 0, no C) → y[N,10]; no bias, so bias correction adds one.</summary>
    static OnnxModel Product(string op) => TinyModels.Model(
        [TinyModels.Node(op, ["x", "w"], ["y"], "product")],
        [TinyModels.Tensor("w", [K, N], seed: 21)],
        TinyModels.Value("x", -1, K), TinyModels.Value("y", -1, N));

    static Dataset Data()
    {
        float[] x = OrtHelpers.Deterministic(Images * K, seed: 4);
        for (int i = 0; i < x.Length; i++) { x[i] += 0.4f; }   // a non-zero mean: bias correction has work to do
        return Dataset.FromArrays(x, new int[Images], [K]);
    }

    static (OnnxModel Prepared, IReadOnlyList<LayerInfo> Layers, IReadOnlyList<LayerBits> Config, QuantizedWeights Weights) TwoBitsCorrected(OnnxModel model, Dataset data)
    {
        (OnnxModel prepared, ModelSummary summary) = ModelInspector.Inspect(model);
        IReadOnlyList<LayerBits> config = [.. summary.Layers.Select(l => new LayerBits(l.Index, l.Name, 2, 0, true, WeightRange.Mse, true))];
        QuantizedWeights weights = QuantizedWeights.Create(prepared, summary.Layers,
            WeightRounding.RoundToNearest with { BiasCorrection = true, CalibrationImages = Images }, data, cancellationToken: TestContext.Current.CancellationToken);
        return (prepared, summary.Layers, config, weights);
    }

    [Theory]
    [InlineData("MatMul")]
    [InlineData("Gemm")]
    public void TwoBitProductWithBiasCorrection_ExportEqualsSimulation_EveryRun(string op)
    {
        Dataset data = Data();
        var (prepared, layers, config, weights) = TwoBitsCorrected(Product(op), data);
        Assert.NotNull(weights.Get(config[0]).Bias);
        float[] x = data.Images.ToArray();
        ExportResult result = QdqExporter.Export(prepared, layers, config, weights, null, new ExportOptions { CheckInput = x });

        Assert.Equal(26, result.Model.Proto.Graph.Initializer.Single(t => t.Name.EndsWith("_quantized", StringComparison.Ordinal)).DataType);   // still INT2
        Assert.True(result.Layers[0].BiasCorrected);
        float[] simulated = OrtHelpers.Run(QuantSimulator.Build(prepared, layers, config, weights).ToBytes(), "x", x, [Images, K],
            level: GraphOptimizationLevel.ORT_DISABLE_ALL);
        byte[] bytes = result.Model.ToBytes();
        for (int run = 0; run < 3; run++)
        {
            // A fresh session each time, as three `eval`s of the same file would do.
            float[] exported = OrtHelpers.Run(bytes, "x", x, [Images, K]);
            float max = simulated.Max(MathF.Abs);
            Assert.All(simulated.Zip(exported), p => Assert.Equal(p.First, p.Second, 1e-4f * max));
        }
    }

    [Theory]
    [InlineData("MatMul")]
    [InlineData("Gemm")]
    public void LayoutOnnxRuntimeMiscomputes_IsRefusedByTheSimulationCheck_AlsoOneImagePerRun(string op)
    {
        Dataset data = Data();
        var (prepared, layers, config, weights) = TwoBitsCorrected(Product(op), data);
        BitBudgetException Refusal(RuntimeOptions runtime) => Assert.Throws<BitBudgetException>(() => QdqExporter.Export(prepared, layers, config, weights, null,
            new ExportOptions { CheckInput = data.Images.ToArray(), KeepSubByteMatMulLayout = true, Runtime = runtime }));
        BitBudgetException whole = Refusal(RuntimeOptions.Default), single = Refusal(RuntimeOptions.Default with { ImagesPerRun = 1 });
        // Judged on every check image, also when they run one per run (outputs concatenated). The figures themselves are not
        // compared: the 2-bit MatMulNBits kernel this layout falls into returns different values from run to run.
        foreach (BitBudgetException e in new[] { whole, single })
        {
            Assert.Equal(ErrorKind.Runtime, e.Kind);
            Assert.StartsWith("The exported QDQ model disagrees with its simulation on the check images", e.Message, StringComparison.Ordinal);
            Assert.Contains($" of {Images}, ", e.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void ExportCheckThatDoesNotFitTheBudget_OneLineSayingWhatWouldFit()
    {
        Dataset data = Data();
        var (prepared, layers, config, weights) = TwoBitsCorrected(Product("Gemm"), data);
        var e = Assert.Throws<BitBudgetException>(() => QdqExporter.Export(prepared, layers, config, weights, null,
            new ExportOptions { CheckInput = data.Images.ToArray(), Runtime = RuntimeOptions.Default with { MaxMemory = 1L << 20 } }));
        Assert.Equal(ErrorKind.InvalidInput, e.Kind);
        Assert.StartsWith("--max-memory 1 MiB is too small for the export check: ", e.Message, StringComparison.Ordinal);
        Assert.EndsWith("would fit.", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void Mnist8_Times212AtTwoBitsWithBiasCorrection_DeterministicAndAsSimulated()
    {
        OnnxModel model = OnnxModel.Load(Assets.Mnist8);
        Dataset test = SharedData.MnistTest;
        Dataset calibration = test.Subset([.. Enumerable.Range(0, 64)]);
        Dataset eval = test.Subset([.. Enumerable.Range(5000, 1000)]);
        (OnnxModel prepared, ModelSummary summary) = ModelInspector.Inspect(model);
        IReadOnlyList<LayerBits> config = [.. summary.Layers.Select(l => new LayerBits(l.Index, l.Name, l.Name == "Times212" ? 2 : 8, 0, true, WeightRange.Mse, false))];
        QuantizedWeights weights = QuantizedWeights.Create(prepared, summary.Layers,
            WeightRounding.RoundToNearest with { BiasCorrection = true, CalibrationImages = 64 }, calibration, cancellationToken: TestContext.Current.CancellationToken);
        ExportResult result = QdqExporter.Export(prepared, summary.Layers, config, weights, null,
            new ExportOptions { CheckInput = calibration.Batch(0, 8).ToArray() });

        OnnxModel simulated = QuantSimulator.Build(prepared, summary.Layers, config, weights);
        double simTop1;
        using (var engine = EvaluationEngine.Create(simulated)) { simTop1 = engine.Evaluate(eval).Top1; }
        var exportedTop1 = new List<double>();
        for (int run = 0; run < 3; run++)
        {
            using var engine = EvaluationEngine.Create(OnnxModel.Parse(result.Model.ToBytes()));
            exportedTop1.Add(engine.Evaluate(eval).Top1);
        }
        Assert.All(exportedTop1, t => Assert.Equal(exportedTop1[0], t));
        Assert.InRange(Math.Abs(exportedTop1[0] - simTop1), 0, 0.5);
        Assert.True(simTop1 > 90, $"2-bit Times212 with bias correction should keep mnist-8 above 90 %, got {simTop1}");
    }
}

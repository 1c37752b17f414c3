using System.Text.Json;
using BitBudget.Data;
using BitBudget.Evaluation;
using BitBudget.Graph;
using BitBudget.Pipeline;
using BitBudget.Quantization;
using BitBudget.Rounding;
using BitBudget.Tests.Support;

namespace BitBudget.Tests.Pipeline;

/// <summary>
/// Zoo models for issue 17's numbered items that other branches fix (two inputs, non-finite weights and outputs, opset 7–9
/// helper models, 2-bit MatMul/Gemm with bias correction). Each test states the fixed behaviour.
/// </summary>
[Collection(ConsoleCollection.Name)]
public class ZooReliabilityTests(ZooFolder zoo) : IClassFixture<ZooFolder>
{
    static void OneErrorLine(InProcessCli.Result r, int code, params string[] mentions)
    {
        Assert.True(r.Code == code, r.ToString());
        string[] errors = [.. r.ErrLines.Where(l => l.StartsWith("error: ", StringComparison.Ordinal))];
        Assert.True(errors.Length == 1, r.ToString());
        Assert.DoesNotContain(r.ErrLines, l => l.StartsWith("internal error", StringComparison.Ordinal));
        foreach (string m in mentions) { Assert.Contains(m, errors[0], StringComparison.Ordinal); }
    }

    /// <summary>Item 14: a model with two inputs gets one line naming the inputs, not ONNX Runtime's text.</summary>
    [Fact]
    public void TwoInputsGiveOneLine()
    {
        string model = zoo.Model("two-inputs"), data = zoo.Data("two-inputs");
        using var dir = new Assets.TempDir();
        OneErrorLine(InProcessCli.Run("eval", model, "--data", data), 2, "gain");
        OneErrorLine(InProcessCli.Run("quantize", model, "--bits", "8", "--rounding", "rtn", "-o", dir.File("q.onnx")), 2, "gain");
        OneErrorLine(InProcessCli.Run("run", "-m", model, "--calib", data, "--eval", data, "--budget", "7.5bits", "-o", dir.File("out"), "--quiet"), 2, "gain");
        Assert.False(File.Exists(dir.File("q.onnx")));
    }

    /// <summary>Item 4: NaN/Inf weights are refused with one line naming the layer and the tensor (RTN and GPTQ).</summary>
    [Theory]
    [InlineData("nan-weight", "rtn")]
    [InlineData("inf-weight", "rtn")]
    [InlineData("nan-weight", "gptq")]
    public void NonFiniteWeightsNameTheLayerAndTensor(string name, string rounding)
    {
        using var dir = new Assets.TempDir();
        OneErrorLine(InProcessCli.Run("quantize", zoo.Model(name), "--bits", "4", "--rounding", rounding, "--calib", zoo.Data(name), "-o", dir.File("q.onnx")),
            2, "conv2", "w2");
        Assert.False(File.Exists(dir.File("q.onnx")));
    }

    /// <summary>Item 1: non-finite outputs stop evaluation with one line naming the first layer whose output is non-finite.</summary>
    [Fact]
    public void NonFiniteOutputsAreNotCountedAsCorrect()
    {
        InProcessCli.Result r = InProcessCli.Run("eval", zoo.Model("nan-weight"), "--data", zoo.Data("nan-weight"), "--json");
        Assert.NotEqual(0, r.Code);
        OneErrorLine(r, r.Code, "conv2");
    }

    /// <summary>Item 9: opset 7–9 models with the first and last layers searched and A8 inputs (helper models need newer operators).</summary>
    [Theory]
    [InlineData("opset7")]
    [InlineData("opset8")]
    [InlineData("opset9")]
    public void OldOpsetsSearchTheFirstAndLastLayersWithA8(string name)
    {
        string data = zoo.Data(name);
        using var dir = new Assets.TempDir();
        InProcessCli.Result r = InProcessCli.Run("run", "-m", zoo.Model(name), "--calib", data, "--eval", data, "--budget", "5bits", "--method", "clado,ompq",
            "--first-bits", "search", "--last-bits", "search", "--activations", "a8", "--calib-images", "64", "--sens-images", "64", "--sens-batch", "32",
            "--rounding", "rtn", "-o", dir.File("out"), "--quiet", "--json");
        Assert.True(r.Code == 0, r.ToString());
    }

    /// <summary>
    /// Item 2: MatMul and Gemm layers at 2 bits with bias correction export a model whose result does not change between runs and
    /// agrees with the simulation (within 0.5 points).
    /// </summary>
    [Fact]
    public void TwoBitMatMulAndGemmWithBiasCorrectionExportWhatWasSimulated()
    {
        string model = zoo.Model("matmul-gemm"), data = zoo.Data("matmul-gemm");
        using var dir = new Assets.TempDir();
        File.WriteAllText(dir.File("bits.json"), """{ "first_layer": 2, "last_layer": 2, "defaults": { "weight_bits": 2 } }""");
        InProcessCli.Result q = InProcessCli.Run("quantize", model, "--config", dir.File("bits.json"), "--rounding", "rtn", "--bias-correction", "on",
            "--calib", data, "--calib-images", "64", "-o", dir.File("w2.onnx"));
        Assert.True(q.Code == 0, q.ToString());
        string[] results = [.. Enumerable.Range(0, 3).Select(_ => InProcessCli.Run("eval", dir.File("w2.onnx"), "--data", data, "--json"))
            .Select(r => { Assert.True(r.Code == 0, r.ToString()); return JsonDocument.Parse(r.Out).RootElement; })
            .Select(e => $"{e.GetProperty("top1").GetDouble()} {e.GetProperty("cross_entropy").GetDouble()}")];
        Assert.Equal(results[0], results[1]);
        Assert.Equal(results[0], results[2]);

        var options = PipelineOptions.Default with
        {
            FirstLayerBits = 2, LastLayerBits = 2, ActivationBits = 0, CalibrationImages = 64,
            Rounding = WeightRounding.RoundToNearest with { BiasCorrection = true },
        };
        Dataset images = DatasetLoader.Load(new DataOptions { Path = data, Preprocessing = Preprocessing.Cifar10, CacheDirectory = "" });
        CalibratedPipeline pipeline = MpqPipeline.Open(OnnxModel.Load(model), options).Calibrate(images.Subset([.. Enumerable.Range(0, 64)]));
        var config = pipeline.Uniform(2);
        EvaluationResult simulated = pipeline.Evaluate(pipeline.Simulate(config), images);
        EvaluationResult exported = pipeline.Evaluate(pipeline.Export(config, dir.File("lib.onnx")).Model, images);
        Assert.InRange(Math.Abs(simulated.Top1 - exported.Top1), 0, 0.5);
    }
}

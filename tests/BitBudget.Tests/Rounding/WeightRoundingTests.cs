using BitBudget.Data;
using BitBudget.Evaluation;
using BitBudget.Export;
using BitBudget.Graph;
using BitBudget.Graph.Onnx;
using BitBudget.Quantization;
using BitBudget.Rounding;
using BitBudget.Tests.Support;
using Microsoft.ML.OnnxRuntime;

namespace BitBudget.Tests.Rounding;

public class WeightRoundingTests(ITestOutputHelper output)
{
    /// <summary>x[N,3,8,8] → Conv(4, 3×3, no bias) → Relu → GlobalAveragePool → Flatten → MatMul[4,6] → Relu → Gemm(transB, no C) → y[N,3].</summary>
    static OnnxModel NoBiasModel() => TinyModels.Model(
        [
            TinyModels.Node("Conv", ["x", "w1"], ["c1"], "conv", TinyModels.Ints("kernel_shape", 3, 3), TinyModels.Ints("pads", 1, 1, 1, 1)),
            TinyModels.Node("Relu", ["c1"], ["r1"], "relu1"),
            TinyModels.Node("GlobalAveragePool", ["r1"], ["p"], "pool"),
            TinyModels.Node("Flatten", ["p"], ["f"], "flatten"),
            TinyModels.Node("MatMul", ["f", "w2"], ["m"], "matmul"),
            TinyModels.Node("Relu", ["m"], ["r2"], "relu2"),
            TinyModels.Node("Gemm", ["r2", "w3"], ["y"], "gemm", TinyModels.Int("transB", 1)),
        ],
        [TinyModels.Tensor("w1", [4, 3, 3, 3], seed: 11), TinyModels.Tensor("w2", [4, 6], seed: 12), TinyModels.Tensor("w3", [3, 6], seed: 13)],
        TinyModels.Value("x", -1, 3, 8, 8), TinyModels.Value("y", -1, 3));

    const int TinyImages = 48;

    static Dataset TinyData(int seed)
    {
        float[] images = OrtHelpers.Deterministic(TinyImages * 3 * 8 * 8, seed);
        for (int i = 0; i < images.Length; i++) { images[i] += 0.3f; }   // a non-zero input mean, so bias correction has work to do
        return Dataset.FromArrays(images, new int[TinyImages], [3, 8, 8]);
    }

    static (OnnxModel Prepared, IReadOnlyList<LayerInfo> Layers) Tiny()
    {
        (OnnxModel prepared, ModelSummary summary) = ModelInspector.Inspect(NoBiasModel());
        return (prepared, summary.Layers);
    }

    static float[] Run(OnnxModel model, float[] input, string outputName, int images = TinyImages) =>
        OrtHelpers.RunMany(model.WithOutputs([outputName]).ToBytes(), "x", input, [images, 3, 8, 8], [outputName])[0];

    static float[] ChannelMeans(float[] values, int channels, int inner)
    {
        var means = new double[channels];
        int n = values.Length / (channels * inner);
        for (int i = 0; i < values.Length; i++) { means[i / inner % channels] += values[i]; }
        return [.. means.Select(m => (float)(m / (n * inner)))];
    }

    [Fact]
    public void LayersWithoutBias_GetCorrectedBiasInSimulationAndExport()
    {
        var (prepared, layers) = Tiny();
        Assert.All(layers, l => Assert.Null(l.BiasName));
        Dataset data = TinyData(3);
        QuantizedWeights weights = QuantizedWeights.Create(prepared, layers, WeightRounding.Default with { CalibrationImages = TinyImages }, data,
            cancellationToken: TestContext.Current.CancellationToken);
        float[] x = data.Images.ToArray();
        (string Output, int Channels, int Inner)[] outputs = [("c1", 4, 64), ("m", 6, 1), ("y", 3, 1)];
        for (int i = 0; i < layers.Count; i++)
        {
            // Only layer i quantized (2 bits: a large error), so its inputs are the float ones the correction was computed on:
            // the mean output over the calibration images must be the float model's.
            IReadOnlyList<LayerBits> config = [.. layers.Select(l => new LayerBits(l.Index, l.Name, l.Index == i ? 2 : 0, 0, true, WeightRange.Mse, true))];
            QuantizedTensor q = weights.Get(config[i]);
            Assert.NotNull(q.Bias);
            Assert.Equal(layers[i].OutputChannels, q.Bias!.Length);
            OnnxModel sim = QuantSimulator.Build(prepared, layers, config, weights);
            var (name, channels, inner) = outputs[i];
            float[] fp = ChannelMeans(Run(prepared, x, name), channels, inner), quant = ChannelMeans(Run(sim, x, name), channels, inner);
            float[] withoutBias = ChannelMeans(Run(QuantSimulator.Build(prepared, layers, config, new QuantizedWeights(prepared, layers)), x, name), channels, inner);
            for (int c = 0; c < channels; c++) { Assert.Equal(fp[c], quant[c], 1e-4f); }
            Assert.True(fp.Zip(withoutBias).Max(p => MathF.Abs(p.First - p.Second)) > 1e-3f, "2-bit RTN without correction should shift the mean output");

            ExportResult exported = QdqExporter.Export(prepared, layers, config, weights, null, new ExportOptions { CheckInput = x });
            Assert.True(exported.Layers[i].BiasCorrected);
            float[] simOut = Run(sim, x, "y"), expOut = exported.CheckOutput;
            Assert.Equal(simOut.Length, expOut.Length);
            float max = simOut.Max(MathF.Abs);
            Assert.All(simOut.Zip(expOut), p => Assert.Equal(p.First, p.Second, 1e-5f * max));
            TensorProto bias = exported.Model.FindInitializer(QdqGraph.AddedBiasName(layers[i]))!;
            Assert.Equal(q.Bias, TensorData.ReadFloats(bias));
        }
        // Simulation graph: Conv and Gemm got a third input, the MatMul an Add writing its old output name.
        IReadOnlyList<LayerBits> all = BitConfig.Uniform(4).Resolve(layers);
        OnnxModel full = QuantSimulator.Build(prepared, layers, all, weights);
        Assert.Equal(QdqGraph.AddedBiasName(layers[0]), full.Graph.Node.Single(n => n.Name == "conv").Input[2]);
        Assert.Equal(QdqGraph.AddedBiasName(layers[2]), full.Graph.Node.Single(n => n.Name == "gemm").Input[2]);
        NodeProto add = full.Graph.Node.Single(n => n.OpType == "Add");
        Assert.Equal(["m"], add.Output);
        Assert.Equal(QdqGraph.AddedBiasName(layers[1]), add.Input[1]);

        // Setting the float weights back removes the added biases: the model computes exactly the float model again.
        foreach (LayerInfo l in layers) { QuantSimulator.SetLayerWeight(full, l, null, weights); }
        Assert.Equal(prepared.Graph.Node.Count, full.Graph.Node.Count);
        Assert.Equal(prepared.Graph.Initializer.Count, full.Graph.Initializer.Count);
        Assert.Equal(Run(prepared, x, "y"), Run(full, x, "y"));
    }

    [Fact]
    public void SetLayerWeight_OnModelSlice_SetsWeightAndBias()
    {
        var (prepared, layers) = Tiny();
        Dataset data = TinyData(5);
        QuantizedWeights weights = QuantizedWeights.Create(prepared, layers, WeightRounding.Default with { CalibrationImages = TinyImages }, data,
            cancellationToken: TestContext.Current.CancellationToken);
        IReadOnlyList<LayerBits> config = BitConfig.Uniform(4).Resolve(layers);
        OnnxModel sim = QuantSimulator.Build(prepared, layers, config, weights);
        float[] x = data.Images.ToArray();
        var slicer = new ModelSlicer(prepared);
        foreach (LayerInfo layer in layers)
        {
            int at = slicer.IndexOf(layer.Name);
            OnnxModel slice = slicer.Slice(at, at + 1);
            QuantizedTensor q = weights.Get(config[layer.Index]);
            QuantSimulator.SetLayerWeight(slice, layer, q, weights);
            Assert.Equal(q.Dequantized.ToArray(), TensorData.ReadFloats(slice.FindInitializer(layer.WeightName)!));
            Assert.Equal(q.Bias, TensorData.ReadFloats(slice.FindInitializer(QdqGraph.AddedBiasName(layer))!));
            // The slice on the simulated model's own input to this layer computes the simulated model's output of this layer.
            string input = layer.InputName, result = layer.OutputName;
            float[] layerInput = input == "x" ? x : Run(sim, x, input);
            long[] shape = input == "x" ? [TinyImages, 3, 8, 8] : [TinyImages, layerInput.Length / TinyImages];
            float[] sliced = OrtHelpers.RunMany(slice.ToBytes(), input, layerInput, shape, [result])[0];
            Assert.Equal(Run(sim, x, result), sliced);
            QuantSimulator.SetLayerWeight(slice, layer, null, weights);
            Assert.Null(slice.FindInitializer(QdqGraph.AddedBiasName(layer)));
            Assert.Equal(weights.Original(layer.Index).ToArray(), TensorData.ReadFloats(slice.FindInitializer(layer.WeightName)!));
        }
    }

    [Fact]
    public void Fingerprint_ChangesWithRoundingSettingsAndCalibrationData()
    {
        var (prepared, layers) = Tiny();
        Dataset a = TinyData(7), b = TinyData(8);
        CancellationToken cancel = TestContext.Current.CancellationToken;
        WeightRounding g = WeightRounding.Default with { CalibrationImages = 32 };
        string Fp(WeightRounding r, Dataset? d) => QuantizedWeights.Create(prepared, layers, r, d, cancellationToken: cancel).Fingerprint;
        string[] prints =
        [
            Fp(WeightRounding.RoundToNearest, null),
            Fp(g, a),
            Fp(g, b),
            Fp(g with { CalibrationImages = 16 }, a),
            Fp(g with { BiasCorrection = false }, a),
            Fp(g with { ScaleSearch = ScaleSearch.Mse }, a),
            Fp(g with { ActOrder = false }, a),
            Fp(g with { Dampening = 0.1 }, a),
            Fp(g with { Method = RoundingMethod.Rtn, ScaleSearch = ScaleSearch.Mse }, a),
        ];
        Assert.Equal(prints.Length, prints.Distinct().Count());
        Assert.Equal(prints[1], Fp(g, a));
        Assert.Equal(prints[0], new QuantizedWeights(prepared, layers).Fingerprint);
        QuantizedWeights w = QuantizedWeights.Create(prepared, layers, g, a, cancellationToken: cancel);
        QuantizedTensor t = w.Get(1, 4);
        w.Set(t with { Bias = [.. t.Bias!.Select(v => v + 1)] });
        Assert.NotEqual(prints[1], w.Fingerprint);

        var e = Assert.Throws<BitBudgetException>(() => QuantizedWeights.Create(prepared, layers, WeightRounding.Default, null, cancellationToken: cancel));
        Assert.Contains("calibration", e.Message, StringComparison.Ordinal);
        e = Assert.Throws<BitBudgetException>(() => QuantizedWeights.Create(prepared, layers, WeightRounding.Default with { Method = RoundingMethod.Rtn }, a, cancellationToken: cancel));
        Assert.Contains("output-error", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Gptq_UsesTheQuantizersMseScales()
    {
        var (prepared, layers) = Tiny();
        QuantizedWeights rtn = new(prepared, layers);
        QuantizedWeights gptq = QuantizedWeights.Create(prepared, layers, WeightRounding.Default with { ScaleSearch = ScaleSearch.Mse, CalibrationImages = 32 }, TinyData(9),
            cancellationToken: TestContext.Current.CancellationToken);
        foreach (LayerInfo l in layers)
        {
            foreach (int bits in new[] { 2, 4 })
            {
                Assert.Equal(rtn.Get(l.Index, bits).Scales.ToArray(), gptq.Get(l.Index, bits).Scales.ToArray());
                Assert.Same(gptq.Get(l.Index, bits), gptq.Get(l.Index, bits));   // computed once
            }
        }
    }

    static readonly Lazy<(OnnxModel Prepared, IReadOnlyList<LayerInfo> Layers, QuantizedWeights Weights)> s_resnet = new(() =>
    {
        (OnnxModel prepared, ModelSummary summary) = ModelInspector.Inspect(OnnxModel.Load(Assets.ResNet20));
        Dataset calibration = SharedData.CifarTrain(512, seed: 1);
        return (prepared, summary.Layers, QuantizedWeights.Create(prepared, summary.Layers, WeightRounding.Default, calibration));
    });

    /// <summary>Every layer (first and last at 8 bits too) rounded with the default: gptq, act-order, bias correction, output-error scales.</summary>
    [Fact]
    public void ResNet20_Gptq4Bit_Top1AtLeast80_5_AndExportMatchesSimulation()
    {
        var (prepared, layers, weights) = s_resnet.Value;
        Dataset test = SharedData.CifarTest;
        IReadOnlyList<LayerBits> config = BitConfig.Uniform(4).Resolve(layers);
        OnnxModel sim = QuantSimulator.Build(prepared, layers, config, weights);
        using EvaluationEngine simEngine = EvaluationEngine.Create(sim);
        EvaluationResult simulated = simEngine.Evaluate(test, cancel: TestContext.Current.CancellationToken);
        ExportResult exported = QdqExporter.Export(prepared, layers, config, weights);
        Assert.All(exported.Layers, l => Assert.True(l.BiasCorrected));
        using EvaluationEngine exportEngine = EvaluationEngine.Create(exported.Model, Runtime.RuntimeOptions.Default with { Optimization = GraphOptimizationLevel.ORT_ENABLE_ALL });
        EvaluationResult real = exportEngine.Evaluate(test, cancel: TestContext.Current.CancellationToken);
        output.WriteLine($"ResNet-20 W4 (first/last 8), {weights.Rounding.Fingerprint()}: simulated top-1 {simulated.Top1:F2}, exported {real.Top1:F2} on {test.Count} CIFAR-10 test images");
        Assert.Equal(10000, test.Count);
        Assert.True(simulated.Top1 >= 80.5, $"top-1 {simulated.Top1}");
        Assert.InRange(real.Top1 - simulated.Top1, -0.1, 0.1);
    }
}

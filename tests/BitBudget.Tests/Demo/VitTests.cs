using System.Text.Json;
using BitBudget.Data;
using BitBudget.Evaluation;
using BitBudget.Export;
using BitBudget.Graph;
using BitBudget.Graph.Onnx;
using BitBudget.Ompq;
using BitBudget.Methods;
using BitBudget.Optimization;
using BitBudget.Pipeline;
using BitBudget.Quantization;
using BitBudget.Clado;
using BitBudget.Tests.Support;
using BitBudget.Workflow;

namespace BitBudget.Tests.Demo;

/// <summary>
/// Every stage on the shipped vision transformer (demo/vit, trained by demo/vit/train_vit.py), in both export variants:
/// "fused" (opset 17, fused qkv, LayerNormalization) and "split" (opset 13, separate q/k/v, LayerNorm decomposed).
/// Tests that need Fashion-MNIST read demo/data (./demo/fetch-data.sh) and skip without it.
/// </summary>
public class VitTests
{
    static string Dir => Path.Combine(Assets.RepoRoot, "demo", "vit");
    static string ModelPath(string variant) => Path.Combine(Dir, $"vit-{variant}.onnx");
    static readonly Lazy<JsonElement> s_golden = new(() => JsonDocument.Parse(File.ReadAllText(Path.Combine(Dir, "golden.json"))).RootElement);
    static readonly Preprocessing s_pre = new() { Scale = 1 / 255f, Mean = [0.2860f], Std = [0.3530f], Grey = true };
    static readonly Dictionary<string, Dataset> s_data = [];

    static string DataFile(string name)
    {
        string path = Path.Combine(Assets.RepoRoot, "demo", "data", name);
        if (!File.Exists(path)) { Assert.Skip("demo/data not fetched (run ./demo/fetch-data.sh)."); }
        return path;
    }

    /// <summary>Fashion-MNIST images (split "train" or "t10k"), <paramref name="count"/> drawn with <paramref name="seed"/>, loaded once.</summary>
    static Dataset Data(string split, int? count = null, int? seed = null)
    {
        string path = DataFile($"{split}-images-idx3-ubyte.gz");
        string key = $"{split}|{count}|{seed}";
        lock (s_data)
        {
            if (!s_data.TryGetValue(key, out Dataset? data))
            {
                s_data[key] = data = DatasetLoader.Load(new DataOptions { Path = path, Preprocessing = s_pre, Limit = count, Seed = seed });
            }
            return data;
        }
    }

    static float[] GoldenInput(int count)
    {
        float mean = s_golden.Value.GetProperty("mean").GetSingle(), std = s_golden.Value.GetProperty("std").GetSingle();
        var values = new float[count * 784];
        for (int n = 0; n < count; n++)
        {
            for (int y = 0; y < 28; y++)
            {
                for (int x = 0; x < 28; x++)
                {
                    values[n * 784 + y * 28 + x] = ((61 * n + 17 * y + 29 * x + x * y % 11) % 256 / 255f - mean) / std;
                }
            }
        }
        return values;
    }

    public static TheoryData<string> Variants() => new("fused", "split");

    [Theory]
    [MemberData(nameof(Variants))]
    public void Inspect_FindsEveryLinearLayer_SkipsAttentionMatMuls_MatchesPyTorch(string variant)
    {
        OnnxModel model = OnnxModel.Load(ModelPath(variant));
        Assert.True(new FileInfo(ModelPath(variant)).Length <= 1_000_000);
        Assert.Equal(variant == "fused" ? 17 : 13, model.Opset);
        (OnnxModel prepared, ModelSummary s) = ModelInspector.Inspect(model);
        // patch embedding + per block (qkv | q,k,v) + proj + fc1 + fc2 + the Gemm head
        Assert.Equal(variant == "fused" ? "13 MatMul + 1 Gemm" : "19 MatMul + 1 Gemm", s.OpCounts);
        Assert.All(s.Layers.Where(l => l.OpType == "MatMul"), l => Assert.Equal(1, l.ChannelAxis));   // weights [in, out]
        int attentionMatMuls = prepared.Graph.Node.Count(n => n.OpType == "MatMul") - s.Layers.Count(l => l.OpType == "MatMul");
        Assert.Equal(6, attentionMatMuls);   // q·kᵀ and attn·v in each of 3 blocks, never quantizable
        Assert.Equal(variant == "fused" ? 7 : 0, prepared.Graph.Node.Count(n => n.OpType == "LayerNormalization"));

        float[][] expected = [.. s_golden.Value.GetProperty("logits").EnumerateArray().Select(r => r.EnumerateArray().Select(v => v.GetSingle()).ToArray())];
        float[] logits = OrtHelpers.Run(prepared.ToBytes(), "input", GoldenInput(expected.Length), [expected.Length, 1, 28, 28]);
        for (int n = 0; n < expected.Length; n++)
        {
            for (int k = 0; k < 10; k++) { Assert.Equal(expected[n][k], logits[n * 10 + k], 2e-3f); }
        }
    }

    [Theory]
    [MemberData(nameof(Variants))]
    public void Eval_TestAccuracy_MatchesTraining(string variant)
    {
        Dataset test = Data("t10k");
        using var engine = EvaluationEngine.Create(ModelInspector.Inspect(OnnxModel.Load(ModelPath(variant))).Prepared);
        EvaluationResult r = engine.Evaluate(test);
        double trained = s_golden.Value.GetProperty("test_accuracy").GetDouble() * 100;
        Assert.InRange(r.Top1, trained - 0.05, trained + 0.05);
        Assert.InRange(r.Top1, 80, 100);
    }

    static MpqPipeline Calibrated(string variant, int calibration = 128)
    {
        var pipeline = MpqPipeline.Open(ModelPath(variant), PipelineOptions.Default with { CalibrationImages = calibration });
        pipeline.Calibrate(Data("train", calibration, seed: 0));
        return pipeline;
    }

    /// <summary>Quantize at 8/4/2 bits (GPTQ, A8 inputs of every linear layer): the exported model runs at ORT_ENABLE_ALL and agrees with the simulation.</summary>
    [Theory]
    [MemberData(nameof(Variants))]
    public void Quantize_8_4_2Bits_ExportRunsAndMatchesSimulation(string variant)
    {
        MpqPipeline pipeline = Calibrated(variant);
        Dataset check = Data("t10k", 200, seed: 3);
        using var dir = new Assets.TempDir();
        double fp = pipeline.Evaluate(pipeline.Prepared, check).Top1;
        foreach (int bits in new[] { 8, 4, 2 })
        {
            IReadOnlyList<LayerBits> config = pipeline.Uniform(bits);
            ExportResult e = pipeline.Export(config, dir.File($"w{bits}.onnx"));
            Assert.Equal(bits switch { 2 => 25, 4 => 21, _ => variant == "fused" ? 17 : 13 }, e.Opset);
            var weightNames = pipeline.Summary.Layers.Select(l => l.WeightName).ToHashSet();
            Assert.Equal(weightNames.Count, e.Model.Graph.Node.Count(n => n.OpType == "DequantizeLinear" && weightNames.Contains(n.Output[0])));
            // Attention activation × activation MatMuls stay float: no Q/DQ on either input.
            var dequantized = e.Model.Graph.Node.Where(n => n.OpType == "DequantizeLinear").Select(n => n.Output[0]).ToHashSet();
            var attention = e.Model.Graph.Node.Where(n => n.OpType == "MatMul" && !weightNames.Contains(n.Input[1])).ToList();
            Assert.Equal(6, attention.Count);
            Assert.All(attention, n => Assert.DoesNotContain(n.Input, dequantized.Contains));
            float[] exported = Logits(e.Model, check);
            float[] simulated = Logits(pipeline.Simulate(config), check);
            double worst = exported.Zip(simulated).Max(p => Math.Abs(p.First - p.Second));
            // ORT_ENABLE_ALL fuses the export (MatMulIntegerToFloat; DQ + MatMul into MatMulNBits with int8 inputs at its default
            // accuracy level 4; BiasGelu): measured 0.035 (8 bits) to 0.17 (2 bits); the saturating u8·s8 kernel moved them by 2.08.
            Assert.True(worst < 0.25, $"{bits} bits: max |exported − simulated| logit {worst:G3}");
            double top1 = pipeline.Evaluate(e.Model, check).Top1;
            Assert.InRange(top1, pipeline.Evaluate(pipeline.Simulate(config), check).Top1 - 0.5, 100);   // at most 1 of 200 images flips
            if (bits == 8) { Assert.InRange(top1, fp - 1.5, fp + 1.5); }
        }
    }

    static float[] Logits(OnnxModel model, Dataset data)
    {
        using var engine = EvaluationEngine.Create(model);
        return engine.Logits(data).ToArray();
    }

    [Fact]
    public void MatMulNBits_Export_SameLogitsAsQdq()
    {
        MpqPipeline pipeline = Calibrated("fused");
        IReadOnlyList<LayerBits> config = pipeline.Uniform(4);
        Dataset check = Data("t10k", 100, seed: 4);
        using var dir = new Assets.TempDir();
        ExportResult qdq = pipeline.Export(config, dir.File("qdq.onnx"));
        ExportResult nbits = pipeline.Export(config, dir.File("nbits.onnx"), matMulNBits: true);
        Assert.Equal(12, nbits.Model.Graph.Node.Count(n => n.OpType == "MatMulNBits" && n.Domain == "com.microsoft"));
        Assert.Equal(12, nbits.Layers.Count(l => l.Storage == "matmulnbits-int4"));
        Assert.DoesNotContain(nbits.Model.Graph.Initializer, t => t.DataType == (int)TensorProto.Types.DataType.Int4);
        float[] a = Logits(qdq.Model, check), b = Logits(nbits.Model, check);
        double worst = a.Zip(b).Max(p => Math.Abs(p.First - p.Second));
        Assert.True(worst < 1e-3, $"max |MatMulNBits − QDQ| logit {worst:G3}");
        Assert.Equal(pipeline.Evaluate(qdq.Model, check).Top1, pipeline.Evaluate(nbits.Model, check).Top1);
    }

    [Fact]
    public void MatMulNBits_Packing_DequantizesToTheSameWeights()
    {
        // A [K=20, N=3] weight (K not a multiple of the block: zero-padded), against a float MatMul with the dequantized weight.
        int k = 20, n = 3;
        var layer = new LayerInfo(0, "mm", "MatMul", "w", [k, n], k * n, null, 0, 1, 1, "x", "y", [1, n], k * n, 0, ["mm"], true, true);
        var random = new Random(9);
        sbyte[] values = [.. Enumerable.Range(0, k * n).Select(_ => (sbyte)random.Next(-8, 8))];
        float[] scales = [0.1f, 0.02f, 0.5f];
        QuantizedTensor q = QuantizedTensor.FromIntegers(layer, 4, scales, values, []);
        OnnxModel model = TinyModels.Model([TinyModels.Node("MatMul", ["x", "w"], ["y"], "mm")], [TensorData.Float("w", [k, n], q.Dequantized.Span)],
            TinyModels.Value("x", -1, k), TinyModels.Value("y", -1, n));
        float[] x = OrtHelpers.Deterministic(4 * k, seed: 10);
        float[] expected = OrtHelpers.Run(model.ToBytes(), "x", x, [4, k]);
        model.Graph.Initializer.Clear();
        MatMulNBitsWriter.Rewrite(model, layer, q);
        Assert.Equal(16, model.Graph.Node[0].Attribute.Single(a => a.Name == "block_size").I);
        float[] actual = OrtHelpers.Run(model.ToBytes(), "x", x, [4, k]);
        for (int i = 0; i < expected.Length; i++) { Assert.Equal(expected[i], actual[i], 4); }
    }

    /// <summary>The cone schedule (shape arithmetic outside the cones) gives the naive loop's Ω on both variants.</summary>
    [Theory]
    [MemberData(nameof(Variants))]
    public void Sensitivity_ConesEqualNaiveLoop_ShapeSubgraphsNotRerun(string variant)
    {
        MpqPipeline pipeline = Calibrated(variant, 64);
        var layers = pipeline.Summary.Layers;
        var config = pipeline.Policy.Select(c => c with { Searchable = c.LayerIndex is >= 1 and <= 4 }).ToArray();
        var input = new SensitivityInput(pipeline.Prepared, layers, config, pipeline.Weights, pipeline.Activations, Data("train", 24, seed: 7));
        var options = new SensitivityOptions { BatchSize = 12 };
        SensitivityResult fast = CladoSensitivity.Measure(input, options);
        SensitivityResult naive = CladoSensitivity.Measure(input, options with { Naive = true });
        double worst = Enumerable.Range(0, fast.Omega.Length).Max(i => Math.Abs(naive.Omega[i] - fast.Omega[i]));
        double scale = naive.Omega.Max(Math.Abs);
        // Cones and whole models fuse differently at ORT_ENABLE_EXTENDED (measured 0.5 % of max |Ω| fused, 1.4 % split); a
        // stale or mistyped shape tensor would break the run or move Ω by far more.
        Assert.True(worst <= 0.03 * scale, $"max |Ω cones − Ω naive| = {worst:G3} (max |Ω| {scale:G3})");
        Assert.Equal(naive.ReferenceLoss, fast.ReferenceLoss, 4);
        Assert.True(fast.Cost.FlopRatio < 0.9, $"FLOP ratio {fast.Cost.FlopRatio}");

        var slicer = new ModelSlicer(pipeline.Prepared);
        foreach (LayerInfo l in layers.Skip(1))
        {
            int[] cone = slicer.Cone(slicer.IndexOf(l.NodeNames[0]));
            Assert.DoesNotContain(cone, i => pipeline.Prepared.Graph.Node[i].OpType is "Shape" or "ConstantOfShape" or "Range" or "Equal");
        }
    }

    [Theory]
    [MemberData(nameof(Variants))]
    public void OmpqUnits_OnePerSubLayer_ResidualStreamFeature(string variant)
    {
        (OnnxModel prepared, ModelSummary s) = ModelInspector.Inspect(OnnxModel.Load(ModelPath(variant)));
        OmpqUnitMap map = OmpqUnits.Build(prepared, s);
        Assert.Equal(6, map.Units.Count);   // attention and MLP of 3 blocks
        Assert.Equal([0, s.Layers.Count - 1], map.FixedLayers);
        for (int b = 0; b < 3; b++)
        {
            OmpqUnit attention = map.Units[2 * b], mlp = map.Units[2 * b + 1];
            string[] attentionLayers = variant == "fused" ? ["qkv", "proj"] : ["q/", "k/", "v/", "proj"];
            Assert.Equal(attentionLayers.Length, attention.Layers.Count);
            Assert.All(attentionLayers, part => Assert.Contains(attention.Layers, l => s.Layers[l].Name.Contains($"blocks.{b}/attn/{part}", StringComparison.Ordinal)));
            Assert.Equal(2, mlp.Layers.Count);
            Assert.Contains(mlp.Layers, l => s.Layers[l].Name.Contains($"blocks.{b}/fc1", StringComparison.Ordinal));
            Assert.Contains(mlp.Layers, l => s.Layers[l].Name.Contains($"blocks.{b}/fc2", StringComparison.Ordinal));
            foreach (OmpqUnit u in new[] { attention, mlp })
            {
                Assert.Equal(FeatureRule.BlockOutput, u.Rule);
                NodeProto add = prepared.Graph.Node.Single(n => n.Output.Contains(u.FeatureTensor));
                Assert.Equal("Add", add.OpType);   // the residual Add: the stream after the sub-layer
                Assert.Equal(17 * 48, u.FeatureSize);
            }
        }
    }

    /// <summary>Every search method and the whole run on the ViT: the run finishes, exported accuracy agrees with the simulation.</summary>
    [Fact]
    public void Run_EveryMethod_Fused()
    {
        using var dir = new Assets.TempDir();
        var options = PipelineOptions.Default with
        {
            CalibrationImages = 128,
            Sensitivity = new SensitivityOptions { BatchSize = 32 },
            Search = new SearchOptions { TimeLimit = TimeSpan.FromSeconds(5) },
        };
        RunSummary summary = RunWorkflow.Execute(new RunRequest
        {
            Pipeline = MpqPipeline.Open(ModelPath("fused"), options),
            Calibration = Data("train", 128, seed: 0),
            Sensitivity = Data("train", 64, seed: 1),
            HeldOut = Data("train", 128, seed: 2),
            Evaluation = Data("t10k", 300, seed: 5),
            Methods = SearchMethods.Names,
            Budgets = [[Budget.Parse("4bits")]],
            OutputDirectory = dir.File("out"),
        });
        Assert.Equal(SearchMethods.Names.Count, summary.Points.Count);
        foreach (RunPoint p in summary.Points)
        {
            Assert.True(p.AverageBits <= 4 + 1e-9, $"{p.Method}: {p.AverageBits}");
            Assert.InRange(p.Top1Exported, summary.FpTop1 - 15, 100);
            if (p.Top1Simulated is double sim) { Assert.InRange(Math.Abs(p.Top1Exported - sim), 0, 0.34); }   // ≤ 1 image of 300
        }
    }
}

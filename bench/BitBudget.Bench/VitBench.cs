using System.Diagnostics;
using BitBudget.Data;
using BitBudget.Export;
using BitBudget.Graph;
using BitBudget.Pipeline;
using BitBudget.Quantization;
using BitBudget.Runtime;
using BitBudget.Clado;
using Microsoft.ML.OnnxRuntime;

namespace BitBudget.Bench;

/// <summary>
/// The shipped ViT (demo/vit, Fashion-MNIST in demo/data). "deploy": float vs W4 QDQ vs W4 MatMulNBits (same GPTQ integers),
/// weights only and with A8 inputs: ORT top-1 on the 10k test images, file size, and latency side by side in one process
/// (medians, batch 1 and 64, ORT_ENABLE_ALL, 1 and 2 threads). "clado": the cone schedule's executed FLOPs against the
/// reference loop and against the exact-reuse limit computed here from the graph. "attention": W8/W4 with the attention
/// activation × activation MatMuls float and A8 (simulated and exported top-1, latency). "cones": CLADO cones vs the naive loop under several ORT settings.
/// Args: deploy|clado|attention|cones [fused|split] [repetitions].
/// </summary>
static class VitBench
{
    static string Root()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "BitBudget.slnx"))) { return dir.FullName; }
        }
        throw new InvalidOperationException("BitBudget.slnx not found.");
    }

    static readonly Preprocessing s_pre = new() { Scale = 1 / 255f, Mean = [0.2860f], Std = [0.3530f], Grey = true };

    static Dataset Load(string split, int? limit = null, int? seed = null) => DatasetLoader.Load(new DataOptions
    {
        Path = Path.Combine(Root(), "demo", "data", $"{split}-images-idx3-ubyte.gz"), Preprocessing = s_pre, Limit = limit, Seed = seed,
    });

    public static int Run(string[] args)
    {
        string what = args.Length > 0 ? args[0] : "deploy";
        string variant = args.Length > 1 ? args[1] : "fused";
        int repetitions = args.Length > 2 ? int.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture) : 21;
        string model = Path.Combine(Root(), "demo", "vit", $"vit-{variant}.onnx");
        return what switch
        {
            "clado" => Clado(model, variant),
            "attention" => Attention(model, variant, repetitions),
            "cones" => Cones(model, variant),
            _ => Deploy(model, variant, repetitions),
        };
    }

    static int Deploy(string model, string variant, int repetitions)
    {
        Dataset test = Load("t10k");
        var rows = new List<(string Name, byte[] Bytes, double Top1)>();
        using var dir = new TempFolder();
        foreach (bool a8 in new[] { false, true })
        {
            var pipeline = MpqPipeline.Open(model, PipelineOptions.Default with { ActivationBits = a8 ? 8 : 0 }).Calibrate(Load("train", 512, seed: 0));
            if (!a8) { rows.Add(("float", pipeline.Prepared.ToBytes(), pipeline.Evaluate(pipeline.Prepared, test).Top1)); }
            IReadOnlyList<LayerBits> config = pipeline.Uniform(4);
            string tag = a8 ? "W4A8" : "W4";
            double simulated = pipeline.Evaluate(pipeline.Simulate(config), test).Top1;
            rows.Add(($"{tag} simulated", [], simulated));
            ExportResult qdq = pipeline.Export(config, dir.File($"{tag}-qdq.onnx"));
            rows.Add(($"{tag} QDQ", File.ReadAllBytes(dir.File($"{tag}-qdq.onnx")), pipeline.Evaluate(qdq.Model, test).Top1));
            ExportResult nbits = pipeline.Export(config, dir.File($"{tag}-nbits.onnx"), matMulNBits: true);
            rows.Add(($"{tag} MatMulNBits", File.ReadAllBytes(dir.File($"{tag}-nbits.onnx")), pipeline.Evaluate(nbits.Model, test).Top1));
        }
        float[] images = test.Batch(0, 64).ToArray();
        Console.WriteLine($"ViT ({variant}), Fashion-MNIST 10k test; first/last layer 8-bit, the 12 block MatMuls 4-bit (GPTQ); ORT {OrtEnv.Instance().GetVersionString()}, ORT_ENABLE_ALL");
        Console.WriteLine($"{"model",-20} {"top-1",7} {"bytes",9} {"b=1 1t ms",10} {"b=64 1t ms",11} {"b=64 2t ms",11} {"÷ float (b=64 1t)",18}");
        double floatTime = 0;
        foreach ((string name, byte[] bytes, double top1) in rows)
        {
            if (bytes.Length == 0) { Console.WriteLine($"{name,-20} {top1,7:F2}"); continue; }
            double one = Latency(bytes, images, 1, 1, repetitions), batch = Latency(bytes, images, 64, 1, repetitions), two = Latency(bytes, images, 64, 2, repetitions);
            if (name == "float") { floatTime = batch; }
            Console.WriteLine($"{name,-20} {top1,7:F2} {bytes.Length,9:N0} {one * 1e3,10:F3} {batch * 1e3,11:F2} {two * 1e3,11:F2} {batch / floatTime,18:F2}");
        }
        Console.WriteLine($"peak RSS {Process.GetCurrentProcess().PeakWorkingSet64 / 1048576.0:F0} MiB");
        return 0;
    }

    /// <summary>
    /// W8 and W4 (GPTQ; first/last layer 8-bit; A8 inputs of every linear layer) with the attention activation × activation MatMuls
    /// float and A8: top-1 of the simulation and of the exported QDQ model on the 10k test images, the export's max |logit| difference
    /// from the simulation, and the exported model's latency (batch 64, 1 thread, median).
    /// </summary>
    static int Attention(string model, string variant, int repetitions)
    {
        Dataset test = Load("t10k"), calibration = Load("train", 512, seed: 0);
        float[] images = test.Batch(0, 64).ToArray();
        using var dir = new TempFolder();
        Console.WriteLine($"ViT ({variant}), Fashion-MNIST 10k test; GPTQ, first/last layer 8-bit, A8 inputs of every linear layer; ORT {OrtEnv.Instance().GetVersionString()}, ORT_ENABLE_ALL");
        Console.WriteLine($"{"weights",-8} {"attention",-10} {"simulated",10} {"exported",9} {"max|Δlogit|",12} {"b=64 1t ms",11}");
        foreach (AttentionMatMulMode mode in new[] { AttentionMatMulMode.Float, AttentionMatMulMode.A8 })
        {
            var pipeline = MpqPipeline.Open(model, PipelineOptions.Default with { AttentionMatMuls = mode }).Calibrate(calibration);
            if (mode == AttentionMatMulMode.Float) { Console.WriteLine($"{"float",-8} {"float",-10} {pipeline.Evaluate(pipeline.Prepared, test).Top1,10:F2}"); }
            foreach (int bits in new[] { 8, 4 })
            {
                IReadOnlyList<LayerBits> config = pipeline.Uniform(bits);
                OnnxModel simulatedModel = pipeline.Simulate(config);
                string path = dir.File($"w{bits}-{mode}.onnx");
                ExportResult e = pipeline.Export(config, path);
                float[] simulated = pipeline.Logits(simulatedModel, test), exported = pipeline.Logits(e.Model, test);
                double worst = simulated.Zip(exported).Max(p => Math.Abs(p.First - p.Second));
                double time = Latency(File.ReadAllBytes(path), images, 64, 1, repetitions);
                Console.WriteLine($"{"W" + bits,-8} {mode.ToString().ToLowerInvariant(),-10} {Top1(simulated, test),10:F2} {Top1(exported, test),9:F2} {worst,12:F3} {time * 1e3,11:F2}");
            }
        }
        Console.WriteLine($"peak RSS {Process.GetCurrentProcess().PeakWorkingSet64 / 1048576.0:F0} MiB");
        return 0;
    }

    /// <summary>
    /// Where CLADO's cone evaluator and the naive whole-model loop disagree on the ViT: the same measurement (layers 1–4 searched,
    /// 24 images in batches of 12, as VitTests) under several ONNX Runtime settings, each cones vs naive: max |ΔΩ| ÷ max |Ω| and
    /// the reference losses. Graph optimizations and thread count change the float summation order; a wrong tensor would not care.
    /// </summary>
    static int Cones(string model, string variant)
    {
        var settings = new (string Name, GraphOptimizationLevel Level, int Threads)[]
        {
            ("EXTENDED, 2 threads (default)", GraphOptimizationLevel.ORT_ENABLE_EXTENDED, 0),
            ("EXTENDED, 1 thread", GraphOptimizationLevel.ORT_ENABLE_EXTENDED, 1),
            ("BASIC, 1 thread", GraphOptimizationLevel.ORT_ENABLE_BASIC, 1),
            ("DISABLE_ALL, 2 threads", GraphOptimizationLevel.ORT_DISABLE_ALL, 0),
            ("DISABLE_ALL, 1 thread", GraphOptimizationLevel.ORT_DISABLE_ALL, 1),
        };
        Dataset calibration = Load("train", 64, seed: 0), data = Load("train", 24, seed: 7);
        Console.WriteLine($"ViT ({variant}): cones vs naive, layers 1–4 searched × {{2,4,8}}, 24 images in batches of 12, 12 images per run");
        Console.WriteLine($"{"ORT settings",-30} {"max|Ω|",10} {"max|ΔΩ|",10} {"÷ max|Ω|",9} {"median |ΔΩ|",12} {"ref loss cones",15} {"ref loss naive",15}");
        foreach (var (name, level, threads) in settings)
        {
            var runtime = RuntimeOptions.Default with { Optimization = level, IntraOpThreads = threads, ImagesPerRun = 12 };
            var pipeline = MpqPipeline.Open(model, PipelineOptions.Default with { CalibrationImages = 64, Runtime = runtime }).Calibrate(calibration);
            var config = pipeline.Policy.Select(c => c with { Searchable = c.LayerIndex is >= 1 and <= 4 }).ToArray();
            var input = new SensitivityInput(pipeline.Prepared, pipeline.Summary.Layers, config, pipeline.Weights, pipeline.Activations, data);
            var options = new SensitivityOptions { Pairs = PairSelection.All, BatchSize = 12, Runtime = runtime };
            SensitivityResult cones = CladoSensitivity.Measure(input, options), naive = CladoSensitivity.Measure(input, options with { Naive = true });
            double[] diff = [.. cones.Omega.ToRowMajorArray().Zip(naive.Omega.ToRowMajorArray(), (a, b) => Math.Abs(a - b)).Where((_, i) => naive.Omega.AsSpan()[i] != 0 || cones.Omega.AsSpan()[i] != 0)];
            double scale = naive.Omega.ToRowMajorArray().Max(Math.Abs), worst = diff.Max();
            Array.Sort(diff);
            Console.WriteLine($"{name,-30} {scale,10:G3} {worst,10:G3} {worst / scale,9:P3} {diff[diff.Length / 2],12:G3} {cones.ReferenceLoss,15:F9} {naive.ReferenceLoss,15:F9}");
        }
        return 0;
    }

    static double Top1(float[] logits, Dataset data)
    {
        int classes = logits.Length / data.Count, correct = 0;
        for (int i = 0; i < data.Count; i++)
        {
            if (System.Numerics.Tensors.TensorPrimitives.IndexOfMax(logits.AsSpan(i * classes, classes)) == data.Labels[i]) { correct++; }
        }
        return 100.0 * correct / data.Count;
    }

    static double Latency(byte[] model, float[] images, int batch, int threads, int repetitions)
    {
        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL, IntraOpNumThreads = threads, InterOpNumThreads = 1 };
        using var session = new InferenceSession(model, options);
        using var value = OrtValue.CreateTensorValueFromMemory(images[..(batch * 784)], [batch, 1, 28, 28]);
        using var runOptions = new RunOptions();
        string input = session.InputNames[0], output = session.OutputNames[0];
        return Measure.Median(repetitions, () =>
        {
            // Several runs per sample so one sample is well above the timer's resolution.
            for (int i = 0; i < 10; i++) { using var outputs = session.Run(runOptions, [input], [value], [output]); }
        }) / 10;
    }

    static int Clado(string model, string variant)
    {
        var pipeline = MpqPipeline.Open(model, PipelineOptions.Default with { Sensitivity = new SensitivityOptions { BatchSize = 64 } }).Calibrate(Load("train", 256, seed: 0));
        SensitivityResult r = pipeline.MeasureSensitivity(Load("train", 64, seed: 1));
        MeasurementCost c = r.Cost;
        int L = r.SearchedLayers.Count, S = r.CandidateBits.Count;
        double limit = ExactReuseLimit(pipeline.Prepared, pipeline.Summary, [.. r.SearchedLayers], S);
        var types = TensorTypes.Infer(pipeline.Prepared.Graph);
        int shapeNodes = pipeline.Prepared.Graph.Node.Count(n => n.Output.All(o => !TensorTypes.IsFloat(o, types)));
        Console.WriteLine($"ViT ({variant}): {L} searched layers × {S} schemes, 1 batch of 64 images, {c.Evaluations:N0} evaluations");
        Console.WriteLine($"  executed / reference forward FLOPs   {c.FlopRatio:F3}   (exact-reuse limit {limit:F3}; executed / limit {c.FlopRatio / limit:F3})");
        Console.WriteLine($"  measuring wall time                  {c.Measuring.TotalSeconds:F1} s (+{c.Setup.TotalSeconds:F1} s setup)");
        Console.WriteLine($"  wall / raw                           {c.TimeRatio:F2} (ALL), {c.TimeRatioSameSettings:F2} (same settings)");
        Console.WriteLine($"  non-float (shape arithmetic) nodes   {shapeNodes} (run once per batch in the full-precision pass, in no cone)");
        return 0;
    }

    /// <summary>
    /// §1.4 of algorithms.md from the graph alone: a layer's cone holds every layer reachable from its output along value
    /// edges (Shape/Size cut them: they read shapes only). Σ over singles (u) of cone(u) MACs and pairs (u,v) of cone(v) MACs,
    /// ÷ (L·S + S²·L(L−1)/2) whole-model forwards. Counts linear-layer MACs only, as the measurement does.
    /// </summary>
    static double ExactReuseLimit(OnnxModel prepared, ModelSummary summary, List<LayerInfo> searched, int s)
    {
        var layerOf = summary.Layers.SelectMany(l => l.NodeNames.Select(n => (n, l))).ToDictionary(p => p.n, p => p.l);
        double full = summary.TotalMacs;
        double Cone(LayerInfo u)
        {
            var reached = new HashSet<string>(StringComparer.Ordinal) { u.OutputName };
            double macs = u.MacsPerImage;
            foreach (var node in prepared.Graph.Node)
            {
                if (node.OpType is "Shape" or "Size" || !node.Input.Any(reached.Contains)) { continue; }
                foreach (string o in node.Output) { reached.Add(o); }
                string name = node.Name.Length > 0 ? node.Name : node.Output[0];
                if (layerOf.TryGetValue(name, out LayerInfo? l) && l != u) { macs += l.MacsPerImage; }
            }
            return macs;
        }
        double[] cone = [.. searched.Select(Cone)];
        int count = searched.Count;
        double executed = 0;
        for (int u = 0; u < count; u++)
        {
            executed += s * cone[u];
            for (int v = u + 1; v < count; v++) { executed += s * s * cone[v]; }
        }
        return executed / ((count * s + s * s * count * (count - 1) / 2.0) * full);
    }

    sealed class TempFolder : IDisposable
    {
        readonly string _path = Directory.CreateTempSubdirectory("bitbudget-vit-").FullName;
        public string File(string name) => Path.Combine(_path, name);
        public void Dispose() => Directory.Delete(_path, recursive: true);
    }
}

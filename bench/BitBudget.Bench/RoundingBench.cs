using System.Diagnostics;
using System.Numerics.Tensors;
using BitBudget.Graph;
using BitBudget.Quantization;
using BitBudget.Runtime;
using Microsoft.ML.OnnxRuntime;
using SkiaSharp;

namespace BitBudget.Bench;

/// <summary>
/// Statistics + rounding time and weights-only top-1 of rtn / gptq / bias correction on ResNet-20 and SqueezeNet.
/// Args: [resnet|squeezenet|gram] (default: both models).
/// </summary>
static class RoundingBench
{
    static readonly string[] s_cifarClasses = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

    public static int Run(string[] args)
    {
        string which = args.Length > 0 ? args[0] : "both";
        if (which is "gram") { return GramBench(); }
        if (which is "both" or "resnet") { ResNet(); }
        if (which is "both" or "squeezenet") { SqueezeNet(); }
        return 0;
    }

    sealed record Setup(string Name, OnnxModel Prepared, ModelSummary Summary, IReadOnlyList<LayerStatistics> Stats, double StatsSeconds,
        (float[] Data, long[] Shape)[] Eval, int[] EvalLabels);

    static void ResNet()
    {
        string root = Measure.Assets("cifar10");
        // 512 calibration images spread over train-5k (every 9th file in class-major order: all ten classes).
        var trainFiles = s_cifarClasses.SelectMany(c => Directory.GetFiles(Path.Combine(root, "train-5k", c)).Order(StringComparer.Ordinal)).ToList();
        var calibFiles = Enumerable.Range(0, 512).Select(i => trainFiles[i * trainFiles.Count / 512]).ToList();
        float[] mean = [0.4914f, 0.4822f, 0.4465f], std = [0.2023f, 0.1994f, 0.2010f];
        var calib = Batches(calibFiles.Select(f => Cifar(f, mean, std)).ToList(), 3 * 32 * 32, [3, 32, 32], 64);
        var testFiles = new List<(string, int)>();
        for (int c = 0; c < 10; c++) { testFiles.AddRange(Directory.GetFiles(Path.Combine(root, "test", s_cifarClasses[c])).Order(StringComparer.Ordinal).Select(f => (f, c))); }
        var eval = Batches(testFiles.Select(t => Cifar(t.Item1, mean, std)).ToList(), 3 * 32 * 32, [3, 32, 32], 250);
        Evaluate(Prepare("ResNet-20", Path.Combine(root, "resnet20.onnx"), calib, eval, [.. testFiles.Select(t => t.Item2)]));
    }

    static void SqueezeNet()
    {
        string root = Measure.Assets("imagenet");
        var files = Directory.GetFiles(Path.Combine(root, "samples")).Order(StringComparer.Ordinal).ToList();
        var wnids = files.Select(f => Path.GetFileName(f).Split('_')[0]).Order(StringComparer.Ordinal).ToList();
        int Label(string f) => wnids.IndexOf(Path.GetFileName(f).Split('_')[0]);
        var even = files.Where(f => Label(f) % 2 == 0).ToList();
        var odd = files.Where(f => Label(f) % 2 == 1).ToList();
        // Calibration: the 500 even-class samples (plus the first 12 odd ones only in the 512-image timing run); evaluation: the 500 odd-class samples.
        var timing = Batches([.. even.Concat(odd.Take(12)).Select(ImageNet)], 3 * 224 * 224, [3, 224, 224], 32);
        var calib = Batches([.. even.Select(ImageNet)], 3 * 224 * 224, [3, 224, 224], 32);
        var eval = Batches([.. odd.Select(ImageNet)], 3 * 224 * 224, [3, 224, 224], 50);
        string model = Path.Combine(root, "squeezenet1.1.onnx");
        Prepare("SqueezeNet 1.1 (512 images, timing only)", model, timing, eval, [.. odd.Select(Label)]);
        Evaluate(Prepare("SqueezeNet 1.1 (500 even-class calibration, 500 odd-class evaluation)", model, calib, eval, [.. odd.Select(Label)]));
    }

    static Setup Prepare(string name, string modelPath, (float[], long[])[] calib, (float[], long[])[] eval, int[] labels)
    {
        (OnnxModel prepared, ModelSummary summary) = ModelInspector.Inspect(OnnxModel.Load(modelPath));
        long start = Stopwatch.GetTimestamp();
        TimeSpan cpu0 = Process.GetCurrentProcess().TotalProcessorTime;
        IReadOnlyList<LayerStatistics> stats = LayerInputStatistics.Collect(prepared, summary.Layers, calib);
        double statsSeconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        double statsCpu = (Process.GetCurrentProcess().TotalProcessorTime - cpu0).TotalSeconds;
        int images = calib.Sum(b => (int)b.Item2[0]);
        // Rounding cost: factor each layer once, then gptq at 2/4/8 bits with MSE scales (scale search included).
        start = Stopwatch.GetTimestamp();
        cpu0 = Process.GetCurrentProcess().TotalProcessorTime;
        double factorSeconds = 0;
        foreach (LayerInfo layer in summary.Layers)
        {
            long f0 = Stopwatch.GetTimestamp();
            GptqFactor[] factors = LayerRounder.Factors(stats[layer.Index]);
            factorSeconds += Stopwatch.GetElapsedTime(f0).TotalSeconds;
            foreach (int bits in new[] { 2, 4, 8 })
            {
                LayerRounder.Round(prepared, layer, bits, RoundingMethod.Gptq, biasCorrection: true, stats[layer.Index], factors: factors);
            }
        }
        double roundSeconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        double roundCpu = (Process.GetCurrentProcess().TotalProcessorTime - cpu0).TotalSeconds;
        Console.WriteLine($"{name}: statistics over {images} images {statsSeconds:F2} s; rounding all {summary.Layers.Count} layers at 2/4/8 bits " +
            $"(gptq + bias correction, MSE scales) {roundSeconds:F2} s, of which factoring {factorSeconds:F2} s; total {statsSeconds + roundSeconds:F2} s wall, " +
            $"{statsCpu + roundCpu:F1} s CPU (statistics {statsCpu:F1}, rounding {roundCpu:F1}); load average {File.ReadAllText("/proc/loadavg").Split(' ')[0]}");
        return new Setup(name, prepared, summary, stats, statsSeconds, eval, labels);
    }

    sealed record Variant(string Name, RoundingMethod Method, bool BiasCorrection, bool ActOrder = true, bool SearchScales = false);

    static void Evaluate(Setup s)
    {
        Variant[] variants =
        [
            new("rtn", RoundingMethod.Rtn, false),
            new("rtn + bias correction", RoundingMethod.Rtn, true),
            new("gptq natural order", RoundingMethod.Gptq, false, ActOrder: false),
            new("gptq act-order", RoundingMethod.Gptq, false),
            new("gptq natural + bias corr.", RoundingMethod.Gptq, true, ActOrder: false),
            new("gptq act-order + bias corr.", RoundingMethod.Gptq, true),
            new("gptq act + bc + ef-scales", RoundingMethod.Gptq, true, SearchScales: true),
        ];
        Console.WriteLine($"{s.Name}: FP top-1 {TopOne(s.Prepared, s)}");
        float[] ratios = [.. Enumerable.Range(0, 40).Select(i => 1f - 0.02f * i)];
        foreach (int bits in new[] { 4, 2 })
        {
            foreach (Variant v in variants)
            {
                OnnxModel fake = s.Prepared.Clone();
                long start = Stopwatch.GetTimestamp();
                foreach (LayerInfo layer in s.Summary.Layers)
                {
                    bool edge = layer.IsFirst || layer.IsLast;
                    RoundedLayer r;
                    if (edge)
                    {
                        r = LayerRounder.Round(s.Prepared, layer, 8, RoundingMethod.Rtn, false, null);
                    }
                    else if (v.SearchScales)
                    {
                        r = SearchedScales(s, layer, bits, ratios);
                    }
                    else
                    {
                        r = LayerRounder.Round(s.Prepared, layer, bits, v.Method, v.BiasCorrection, s.Stats[layer.Index], options: new GptqOptions { ActOrder = v.ActOrder });
                    }
                    Apply(fake, layer, r);
                }
                double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
                Console.WriteLine($"  searched {bits}-bit, {v.Name,-30} top-1 {TopOne(fake, s),6:F2}   (rounding {seconds:F1} s)");
            }
        }
    }

    static RoundedLayer SearchedScales(Setup s, LayerInfo layer, int bits, float[] ratios)
    {
        LayerStatistics st = s.Stats[layer.Index];
        float[] rows = LayerRounder.WeightRows(s.Prepared, layer);
        int outputs = (int)layer.OutputChannels, k = st.K, perGroup = outputs / st.Groups;
        var dq = new float[rows.Length];
        var scales = new float[outputs];
        for (int g = 0; g < st.Groups; g++)
        {
            RoundedWeights r = Gptq.QuantizeSearchingScales(rows.AsSpan(g * perGroup * k, perGroup * k), perGroup, bits, Gptq.Factor(st.H(g), k), ratios);
            r.Dequantized.CopyTo(dq, g * perGroup * k);
            r.Scales.CopyTo(scales, g * perGroup);
        }
        // Bias correction with the searched result: reuse LayerRounder's path by handing it these scales would re-run GPTQ, so correct here.
        float[]? bias = layer.BiasName is null ? null : TensorData.ReadFloats(s.Prepared.FindInitializer(layer.BiasName)!);
        bias = BiasCorrection.Apply(rows, dq, bias, outputs, k, [.. Enumerable.Range(0, st.Groups).Select(st.Mean)]);
        if (layer.ChannelAxis != 0) { dq = LayerRounder.Transpose(dq, outputs, k); }
        return new RoundedLayer([], dq, scales, bias);
    }

    static void Apply(OnnxModel fake, LayerInfo layer, RoundedLayer r)
    {
        TensorData.SetFloats(fake.FindInitializer(layer.WeightName)!, r.Dequantized);
        if (r.Bias is null) { return; }
        if (layer.BiasName is not null)
        {
            TensorData.SetFloats(fake.FindInitializer(layer.BiasName)!, r.Bias);
            return;
        }
        string name = layer.WeightName + "_corrected_bias";
        fake.Graph.Initializer.Add(TensorData.Float(name, [r.Bias.Length], r.Bias));
        foreach (var node in fake.Graph.Node.Where(n => n.Input.Count == 2 && n.Input[1] == layer.WeightName && n.OpType is "Conv" or "Gemm"))
        {
            node.Input.Add(name);
        }
    }

    static double TopOne(OnnxModel model, Setup s)
    {
        using InferenceSession session = OrtSessions.Create(model.ToBytes(), RuntimeOptions.Default, "fake-quant model");
        using var runOptions = new RunOptions();
        int correct = 0, seen = 0;
        foreach ((float[] data, long[] shape) in s.Eval)
        {
            using var input = OrtValue.CreateTensorValueFromMemory(data, shape);
            using var outputs = session.Run(runOptions, [model.InputName], [input], [model.OutputName]);
            ReadOnlySpan<float> logits = outputs[0].GetTensorDataAsSpan<float>();
            int classes = logits.Length / (int)shape[0];
            for (int n = 0; n < shape[0]; n++, seen++)
            {
                if (TensorPrimitives.IndexOfMax(logits.Slice(n * classes, classes)) == s.EvalLabels[seen]) { correct++; }
            }
        }
        return 100.0 * correct / seen;
    }

    static (float[] Data, long[] Shape)[] Batches(List<float[]> images, int size, long[] imageShape, int batch)
    {
        var result = new List<(float[], long[])>();
        for (int i = 0; i < images.Count; i += batch)
        {
            int n = Math.Min(batch, images.Count - i);
            var data = new float[n * size];
            for (int j = 0; j < n; j++) { images[i + j].CopyTo(data, j * size); }
            result.Add((data, [n, .. imageShape]));
        }
        return [.. result];
    }

    static float[] Cifar(string path, float[] mean, float[] std)
    {
        using SKBitmap decoded = SKBitmap.Decode(path);
        using SKBitmap rgba = decoded.Copy(SKColorType.Rgba8888);
        return Planar(rgba.GetPixelSpan(), 32, 32, 0, 0, 32, 32, mean, std);
    }

    static float[] ImageNet(string path)
    {
        using SKBitmap decoded = SKBitmap.Decode(path);
        int w = decoded.Width, h = decoded.Height;
        (int nw, int nh) = w < h ? (256, (int)Math.Round(h * 256.0 / w)) : ((int)Math.Round(w * 256.0 / h), 256);
        using SKBitmap resized = decoded.Resize(new SKImageInfo(nw, nh, SKColorType.Rgba8888, SKAlphaType.Premul),
            new SKSamplingOptions(SKFilterMode.Linear, SKMipmapMode.None));
        int left = (int)Math.Round((nw - 224) / 2.0), top = (int)Math.Round((nh - 224) / 2.0);
        return Planar(resized.GetPixelSpan(), nw, nh, left, top, 224, 224, [0.485f, 0.456f, 0.406f], [0.229f, 0.224f, 0.225f]);
    }

    static float[] Planar(ReadOnlySpan<byte> rgba, int width, int height, int left, int top, int cw, int ch, float[] mean, float[] std)
    {
        _ = height;
        var result = new float[3 * cw * ch];
        for (int y = 0; y < ch; y++)
        {
            for (int x = 0; x < cw; x++)
            {
                int p = ((top + y) * width + left + x) * 4;
                for (int c = 0; c < 3; c++) { result[(c * ch + y) * cw + x] = (rgba[p + c] / 255f - mean[c]) / std[c]; }
            }
        }
        return result;
    }

    /// <summary>X·Xᵀ for one K × M im2col chunk three ways: ORT Gemm (MLAS), TensorPrimitives dot products, MathNet.</summary>
    static int GramBench()
    {
        Console.WriteLine($"{"K",5} {"M",7} {"ORT Gemm s",11} {"TP dots s",10} {"MathNet s",10} {"GFLOP/s ORT",12}");
        foreach ((int k, int m) in new[] { (144, 8192), (576, 4096), (27, 65536) })
        {
            float[] x = new float[k * m];
            var random = new Random(1);
            for (int i = 0; i < x.Length; i++) { x[i] = (float)random.NextDouble(); }
            var h = new double[k * k];
            var sum = new double[k];
            using var gram = new LayerInputStatistics.GramSessions(RuntimeOptions.Default);
            double ort = Measure.Median(5, () => gram.AccumulateColumns(x, k, m, h, sum));
            double dots = Measure.Median(3, () =>
            {
                for (int i = 0; i < k; i++)
                {
                    for (int j = 0; j <= i; j++) { h[i * k + j] += TensorPrimitives.Dot(x.AsSpan(i * m, m), x.AsSpan(j * m, m)); }
                }
            });
            var matrix = MathNet.Numerics.LinearAlgebra.Matrix<float>.Build.Dense(m, k, x);   // column-major m × k = our K × M rows
            double mathnet = Measure.Median(3, () => matrix.TransposeThisAndMultiply(matrix));
            Console.WriteLine($"{k,5} {m,7} {ort,11:F4} {dots,10:F4} {mathnet,10:F4} {2.0 * k * k * m / ort / 1e9,12:F1}");
        }
        return 0;
    }
}

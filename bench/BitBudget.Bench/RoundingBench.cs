using System.Diagnostics;
using System.Numerics.Tensors;
using BitBudget.Data;
using BitBudget.Evaluation;
using BitBudget.Graph;
using BitBudget.Quantization;
using BitBudget.Rounding;
using BitBudget.Runtime;
using Microsoft.ML.OnnxRuntime;

namespace BitBudget.Bench;

/// <summary>
/// Weights-only top-1 of the rounding settings through the public API (QuantizedWeights.Create → QuantSimulator → EvaluationEngine),
/// statistics + rounding time, the statistics pass by shifted products against im2col, and top-1 against the number of calibration images.
/// Args: [resnet|squeezenet|gram] [variants|default|calib|time|stats|a8] (default: both models, all parts; time includes stats).
/// </summary>
static class RoundingBench
{
    public static int Run(string[] args)
    {
        string which = args.Length > 0 ? args[0] : "both";
        string part = args.Length > 1 ? args[1] : "all";
        if (which is "gram") { return GramBench(); }
        if (which is "both" or "resnet")
        {
            // Calibration: 512 images drawn with seed 1 from train-5k (N < 512 takes the first N of them); evaluation: the 10k test set.
            var pre = Preprocessing.Cifar10;
            Dataset calib = DatasetLoader.Load(new DataOptions { Path = Measure.Assets("cifar10/train-5k"), Preprocessing = pre, Limit = 512, Seed = 1 });
            Dataset test = DatasetLoader.Load(new DataOptions { Path = Measure.Assets("cifar10/test"), Preprocessing = pre });
            RunModel("ResNet-20", Measure.Assets("cifar10/resnet20.onnx"), calib, test, part);
        }
        if (which is "both" or "squeezenet")
        {
            // Calibration: the 500 even-class samples; evaluation: the 500 odd-class samples.
            var pre = Preprocessing.ImageNet;
            string root = Measure.Assets("imagenet/samples");
            Dataset calib = DatasetLoader.Load(new DataOptions { Path = root, Preprocessing = pre, Split = "even-classes" });
            Dataset test = DatasetLoader.Load(new DataOptions { Path = root, Preprocessing = pre, Split = "odd-classes" });
            RunModel("SqueezeNet 1.1", Measure.Assets("imagenet/squeezenet1.1.onnx"), calib, test, part);
        }
        return 0;
    }

    static void RunModel(string name, string path, Dataset calib, Dataset test, string part)
    {
        (OnnxModel prepared, ModelSummary summary) = ModelInspector.Inspect(OnnxModel.Load(path));
        IReadOnlyList<LayerInfo> layers = summary.Layers;
        double Top1(QuantizedWeights weights, int bits)
        {
            IReadOnlyList<LayerBits> config = bits == 0
                ? [.. layers.Select(l => new LayerBits(l.Index, l.Name, 0, 0, true, WeightRange.Mse, true))]
                : BitConfig.Uniform(bits).Resolve(layers);
            using EvaluationEngine engine = EvaluationEngine.Create(QuantSimulator.Build(prepared, layers, config, weights));
            return engine.Evaluate(test, new EvaluationOptions { BatchSize = 50 }).Top1;
        }
        var rtn = new QuantizedWeights(prepared, layers);
        Console.WriteLine($"{name}: calibration {calib.Description}; evaluation {test.Description}; FP top-1 {Top1(rtn, 0):F2}");
        Console.WriteLine("  every layer rounded with the setting; searched layers at the bits shown, first and last at 8 bits");
        if (part is "all" or "time")
        {
            var rounding = WeightRounding.Default;
            long start = Stopwatch.GetTimestamp();
            TimeSpan cpu0 = Measure.ProcessCpu();
            QuantizedWeights w = QuantizedWeights.Create(prepared, layers, rounding, calib);
            double stats = Stopwatch.GetElapsedTime(start).TotalSeconds;
            foreach (var (search, label) in new[] { (ScaleSearch.Mse, "mse scales"), (ScaleSearch.OutputError, "output-error scales") })
            {
                QuantizedWeights ws = search == rounding.ScaleSearch ? w : QuantizedWeights.Create(prepared, layers, rounding with { ScaleSearch = search }, calib);
                long r0 = Stopwatch.GetTimestamp();
                foreach (LayerInfo l in layers) { foreach (int b in new[] { 2, 4, 8 }) { ws.Get(l.Index, b); } }
                double round = Stopwatch.GetElapsedTime(r0).TotalSeconds;
                Console.WriteLine($"  time: statistics over {Math.Min(calib.Count, rounding.CalibrationImages)} images {stats:F2} s; gptq + bias correction ({label}) of all {layers.Count} layers at 2/4/8 bits {round:F2} s; " +
                    $"process CPU so far {(Measure.ProcessCpu() - cpu0).TotalSeconds:F1} s; load average {Measure.LoadAverage()}");
            }
        }
        if (part is "all" or "time" or "stats") { StatisticsPaths(prepared, layers, calib); }
        if (part is "all" or "variants" or "default")
        {
            (string Label, WeightRounding Rounding)[] variants =
            [
                ("rtn", WeightRounding.RoundToNearest),
                ("rtn + bias correction", WeightRounding.RoundToNearest with { BiasCorrection = true }),
                ("gptq natural order", WeightRounding.Default with { BiasCorrection = false, ActOrder = false, ScaleSearch = ScaleSearch.Mse }),
                ("gptq act-order", WeightRounding.Default with { BiasCorrection = false, ScaleSearch = ScaleSearch.Mse }),
                ("gptq act-order + bc", WeightRounding.Default with { ScaleSearch = ScaleSearch.Mse }),
                ("gptq act-order + bc + output-error scales (default)", WeightRounding.Default),
            ];
            foreach ((string label, WeightRounding r) in part == "default" ? variants[^1..] : variants)
            {
                QuantizedWeights w = QuantizedWeights.Create(prepared, layers, r, calib);
                Console.WriteLine($"  {label,-52} top-1 4-bit {Top1(w, 4),6:F2}   2-bit {Top1(w, 2),6:F2}");
            }
        }
        if (part is "all" or "a8")
        {
            // What `quantize --activations a8` writes: default rounding, 8-bit percentile-calibrated inputs on the calibration images.
            QuantizedWeights w = QuantizedWeights.Create(prepared, layers, WeightRounding.Default, calib);
            IReadOnlyDictionary<string, ActivationParams> act;
            using (EvaluationEngine fp = EvaluationEngine.Create(prepared)) { act = ActivationCalibrator.Calibrate(fp, layers, calib, 8, ActivationCalibration.Percentile); }
            foreach (int bits in new[] { 8, 4 })
            {
                IReadOnlyList<LayerBits> config = BitConfig.Uniform(bits, activationBits: 8).Resolve(layers);
                double sim, real;
                using (EvaluationEngine e = EvaluationEngine.Create(QuantSimulator.Build(prepared, layers, config, w, act))) { sim = e.Evaluate(test).Top1; }
                var exported = BitBudget.Export.QdqExporter.Export(prepared, layers, config, w, act);
                using (EvaluationEngine e = EvaluationEngine.Create(exported.Model, RuntimeOptions.Default with { Optimization = GraphOptimizationLevel.ORT_ENABLE_ALL })) { real = e.Evaluate(test).Top1; }
                Console.WriteLine($"  W{bits}A8 (default rounding): simulated top-1 {sim:F2}, exported QDQ in ORT {real:F2}");
            }
        }
        if (part is "all" or "calib")
        {
            Console.WriteLine($"  {"N calibration images",-22} {"rtn 4",7} {"rtn+bc 4",9} {"gptq 4",7} {"rtn 2",7} {"rtn+bc 2",9} {"gptq 2",7}   (gptq = the default: act-order + bc + output-error scales)");
            double rtn4 = Top1(rtn, 4), rtn2 = Top1(rtn, 2);
            foreach (int n in new[] { 64, 128, 256, 512 })
            {
                QuantizedWeights bc = QuantizedWeights.Create(prepared, layers, WeightRounding.RoundToNearest with { BiasCorrection = true, CalibrationImages = n }, calib);
                QuantizedWeights g = QuantizedWeights.Create(prepared, layers, WeightRounding.Default with { CalibrationImages = n }, calib);
                Console.WriteLine($"  {Math.Min(n, calib.Count),-22} {rtn4,7:F2} {Top1(bc, 4),9:F2} {Top1(g, 4),7:F2} {rtn2,7:F2} {Top1(bc, 2),9:F2} {Top1(g, 2),7:F2}");
            }
        }
    }

    /// <summary>
    /// The statistics pass as QuantizedWeights.Create runs it, with stride-1 convs by shifted products (the default) and by im2col,
    /// alternated so both see the same machine load: median of 3 runs each, their ratio, and the largest per-layer difference of H.
    /// </summary>
    static void StatisticsPaths(OnnxModel prepared, IReadOnlyList<LayerInfo> layers, Dataset calib)
    {
        int count = Math.Min(WeightRounding.Default.CalibrationImages, calib.Count);
        int batch = Math.Clamp((1 << 22) / Math.Max(1, calib.SampleSize), 1, 64);   // as QuantizedWeights.Create
        IReadOnlyList<LayerStatistics> Collect(ConvGram path) => LayerInputStatistics.Collect(prepared, layers, calib, count, batch, convGram: path);
        IReadOnlyList<LayerStatistics> shifted = Collect(ConvGram.Shifted), im2col = Collect(ConvGram.Im2Col);   // warm-up, and the H compared
        var times = new Dictionary<ConvGram, List<double>> { [ConvGram.Shifted] = [], [ConvGram.Im2Col] = [] };
        var cpu = new Dictionary<ConvGram, double> { [ConvGram.Shifted] = 0, [ConvGram.Im2Col] = 0 };
        for (int run = 0; run < 3; run++)
        {
            foreach (ConvGram path in new[] { ConvGram.Im2Col, ConvGram.Shifted })
            {
                TimeSpan cpu0 = Measure.ProcessCpu();
                long start = Stopwatch.GetTimestamp();
                Collect(path);
                times[path].Add(Stopwatch.GetElapsedTime(start).TotalSeconds);
                cpu[path] += (Measure.ProcessCpu() - cpu0).TotalSeconds / 3;
            }
        }
        double Median(ConvGram path) => times[path].Order().ElementAt(1);
        double maxH = 0, maxSum = 0;
        string worst = "";
        for (int i = 0; i < layers.Count; i++)
        {
            double h = RelativeDifference(shifted[i].Hessian, im2col[i].Hessian), sum = RelativeDifference(shifted[i].Sum, im2col[i].Sum);
            if (h > maxH) { (maxH, worst) = (h, layers[i].Name); }
            maxSum = Math.Max(maxSum, sum);
        }
        Console.WriteLine($"  statistics pass over {count} images (batches of {batch}), median of 3: im2col {Median(ConvGram.Im2Col):F2} s (CPU {cpu[ConvGram.Im2Col]:F1} s), " +
            $"shifted {Median(ConvGram.Shifted):F2} s (CPU {cpu[ConvGram.Shifted]:F1} s), ratio {Median(ConvGram.Im2Col) / Median(ConvGram.Shifted):F2}; " +
            $"runs im2col [{string.Join(", ", times[ConvGram.Im2Col].Select(t => t.ToString("F2")))}], shifted [{string.Join(", ", times[ConvGram.Shifted].Select(t => t.ToString("F2")))}]; " +
            $"load average {Measure.LoadAverage()}");
        Console.WriteLine($"  largest relative Frobenius difference shifted vs im2col over the {layers.Count} layers: H {maxH:E2} ({worst}), column sums {maxSum:E2}");
    }

    static double RelativeDifference(double[] a, double[] b)
    {
        double num = 0, den = 0;
        for (int i = 0; i < a.Length; i++) { num += (a[i] - b[i]) * (a[i] - b[i]); den += b[i] * b[i]; }
        return den == 0 ? Math.Sqrt(num) : Math.Sqrt(num / den);
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
            using var gram = new GramSessions(RuntimeOptions.Default);
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

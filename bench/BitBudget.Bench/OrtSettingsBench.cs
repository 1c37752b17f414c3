using System.Diagnostics;
using BitBudget.Graph;
using BitBudget.Runtime;
using Microsoft.ML.OnnxRuntime;

namespace BitBudget.Bench;

/// <summary>
/// What the CLADO measurement's session settings cost against the yardstick of its time ratio (the whole model at
/// ORT_ENABLE_EXTENDED with ORT's defaults): arena off, spinning off, a malloc_trim per run, every intermediate tensor exposed,
/// and several sessions taking turns (each with its own intra-op pool). Median per run on one micro-batch of random images.
/// Args: [resnet18|squeezenet|resnet20] [images per run] [repetitions].
/// </summary>
static class OrtSettingsBench
{
    public static int Run(string[] args)
    {
        string which = args.Length > 0 ? args[0] : "resnet18";
        int images = args.Length > 1 ? int.Parse(args[1]) : 8;
        int repetitions = args.Length > 2 ? int.Parse(args[2]) : 9;
        string path = which switch
        {
            "resnet18" => MemoryBench.ResNet18(),
            "squeezenet" => Measure.Assets("imagenet/squeezenet1.1.onnx"),
            _ => Measure.Assets("cifar10/resnet20.onnx"),
        };
        OnnxModel model = ModelPreparer.Prepare(OnnxModel.Load(path)).Model;   // BN folded, batch freed, as the measurement sees it
        var slicer = new ModelSlicer(model);
        // Every node output but the model's: what the measurement's full-precision pass exposes (its cones read nearly all of them).
        string[] intermediates = [.. model.Graph.Node.Take(slicer.NodeCount - 1).SelectMany(n => n.Output).Where(o => o.Length > 0 && o != model.OutputName)];
        byte[] plain = model.ToBytes();
        byte[] exposed = slicer.Slice(0, slicer.NodeCount, intermediates).ToBytes();
        long[] shape = [images, .. model.InputShape.Skip(1).Select(d => d > 0 ? d : 224)];
        var random = new Random(0);
        float[] data = new float[shape.Aggregate(1L, (a, b) => a * b)];
        for (int i = 0; i < data.Length; i++) { data[i] = (float)random.NextDouble(); }
        using var input = OrtValue.CreateTensorValueFromMemory(data, shape);
        using var runOptions = new RunOptions();
        var yardstick = RuntimeOptions.Default with { Optimization = GraphOptimizationLevel.ORT_ENABLE_EXTENDED };
        Console.WriteLine($"{which}: {images} images per run, median of {repetitions} runs, {intermediates.Length} intermediate tensors; load before: {Measure.LoadAverage()}");

        // Every configuration's sessions are loaded first and the configurations take turns, one run each per round: on a
        // shared 2-core machine a drifting load would otherwise favour whichever configuration ran in a quiet minute.
        var configurations = new (string What, byte[] Model, RuntimeOptions Options, string[] Outputs, bool Trim, int Sessions)[]
        {
            ("yardstick: EXTENDED, arena, spinning", plain, yardstick, [model.OutputName], false, 1),
            ("arena off", plain, yardstick with { MemoryArena = false }, [model.OutputName], false, 1),
            ("spinning off", plain, yardstick with { AllowSpinning = false }, [model.OutputName], false, 1),
            ("arena off, spinning off (the cones)", plain, yardstick with { MemoryArena = false, AllowSpinning = false }, [model.OutputName], false, 1),
            ("  + malloc_trim per run", plain, yardstick with { MemoryArena = false, AllowSpinning = false }, [model.OutputName], true, 1),
            ("  + every intermediate exposed", exposed, yardstick with { MemoryArena = false, AllowSpinning = false }, [model.OutputName, .. intermediates], false, 1),
            ("  4 sessions taking turns", plain, yardstick with { MemoryArena = false, AllowSpinning = false }, [model.OutputName], false, 4),
            ("yardstick, every intermediate exposed", exposed, yardstick, [model.OutputName, .. intermediates], false, 1),
            ("arena off, spinning on, 4 sessions taking turns", plain, yardstick with { MemoryArena = false }, [model.OutputName], false, 4),
        };
        var sessions = configurations.Select(c => Enumerable.Range(0, c.Sessions).Select(_ => OrtSessions.Create(c.Model, c.Options, "bench")).ToArray()).ToArray();
        var times = configurations.Select(_ => new List<double>()).ToArray();
        try
        {
            for (int round = -1; round < repetitions; round++)   // round −1 warms every session up
            {
                for (int c = 0; c < configurations.Length; c++)
                {
                    long start = Stopwatch.GetTimestamp();
                    foreach (var s in sessions[c])
                    {
                        using var r = s.Run(runOptions, [model.InputName], [input], configurations[c].Outputs);
                        if (configurations[c].Trim) { NativeHeap.Trim(); }
                    }
                    if (round >= 0) { times[c].Add(Stopwatch.GetElapsedTime(start).TotalSeconds / configurations[c].Sessions); }
                }
            }
        }
        finally
        {
            foreach (var s in sessions.SelectMany(x => x)) { s.Dispose(); }
        }
        static double Median(List<double> t) { t.Sort(); return t[t.Count / 2]; }
        double baseline = Median(times[0]);
        for (int c = 0; c < configurations.Length; c++)
        {
            double m = Median(times[c]);
            Console.WriteLine($"  {configurations[c].What,-56} {m * 1000,8:F1} ms   {m / baseline,5:F2}×");
        }
        Console.WriteLine($"load after: {Measure.LoadAverage()}; peak RSS {ProcessMemory.PeakRss / (double)(1L << 20):F0} MiB");
        return 0;
    }
}

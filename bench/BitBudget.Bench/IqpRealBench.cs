using System.Diagnostics;
using BitBudget.Data;
using BitBudget.Optimization;
using BitBudget.Pipeline;
using BitBudget.Clado;

namespace BitBudget.Bench;

/// <summary>
/// The exact IQP on a real measured Ω: the sensitivities of `bitbudget run` (same draws, read back from its store, or
/// measured when absent), solved at every budget of a sweep by the default solver and by the RLT MILP, with time, status
/// and gap. Args: resnet|squeezenet STORE [PROBLEM.json [--dump-only]].
/// </summary>
static class IqpRealBench
{
    public static int Run(string[] args)
    {
        string which = args.Length > 0 ? args[0] : "resnet";
        string? store = args.Length > 1 ? args[1] : null;
        bool resnet = which == "resnet";
        var options = PipelineOptions.Default with
        {
            CalibrationImages = resnet ? 512 : 256,
            Sensitivity = new SensitivityOptions { Pairs = PairSelection.All, BatchSize = resnet ? 256 : 32, StorePath = store },
        };
        MpqPipeline opened = MpqPipeline.Open(Measure.Assets(resnet ? "cifar10/resnet20.onnx" : "imagenet/squeezenet1.1.onnx"), options);
        Dataset source = DatasetLoader.Load(new DataOptions
        {
            Path = Measure.Assets(resnet ? "cifar10/train-5k" : "imagenet/samples"),
            Preprocessing = resnet ? Preprocessing.Cifar10 : Preprocessing.ImageNet,
            Split = resnet ? "all" : "even-classes",
        });
        CalibratedPipeline pipeline = opened.Calibrate(source.Sample(options.CalibrationImages, 0));
        SensitivityResult s = pipeline.MeasureSensitivity(source.Sample(resnet ? 256 : 32, 1));
        Console.WriteLine($"{which}: Ω {s.Size}×{s.Size} ({(s.Cost.Evaluations == 0 ? "from the store" : "measured now")}), PSD by eigenvalue clipping");
        if (args.Length > 2)
        {
            // The problem (layers + projected Ω) as JSON, e.g. the test fixture of the exact search.
            ProblemFile.Write(args[2], pipeline.Problem([Budget.Parse("4bits")], s));
            Console.WriteLine($"problem written to {args[2]}");
            if (args.Length > 3 && args[3] == "--dump-only") { return 0; }
        }
        string[] budgets = resnet
            ? ["2.5bits", "3bits", "3.25bits", "3.5bits", "3.75bits", "4bits", "4.5bits", "5bits", "6bits"]
            : ["4.75bits", "5bits", "5.5bits", "6bits", "6.5bits", "7bits", "2.5bits-searched", "3bits-searched", "4bits-searched"];
        Console.WriteLine($"{"budget",-18} {"algorithm",-20} {"status",-10} {"objective",12} {"gap",9} {"seconds",8}");
        foreach (string b in budgets)
        {
            foreach (IqpAlgorithm algorithm in new[] { IqpAlgorithm.Portfolio, IqpAlgorithm.QcrBranchAndBound, IqpAlgorithm.RltScip })
            {
                var watch = Stopwatch.StartNew();
                SearchResult r = BitSearch.Solve(pipeline.Problem([Budget.Parse(b)], s), SearchMethod.Clado,
                    new SearchOptions { TimeLimit = TimeSpan.FromSeconds(60), Algorithm = algorithm });
                Console.WriteLine($"{b,-18} {algorithm,-20} {r.Status,-10} {r.Objective,12:G6} {r.Gap,9:P3} {watch.Elapsed.TotalSeconds,8:F2}");
            }
        }
        return 0;
    }
}

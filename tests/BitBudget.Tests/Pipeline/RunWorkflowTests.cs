using BitBudget.BestOf;
using BitBudget.Data;
using BitBudget.Evaluation;
using BitBudget.Export;
using BitBudget.Methods;
using BitBudget.Ompq;
using BitBudget.Optimization;
using BitBudget.Quantization;
using BitBudget.Pipeline;
using BitBudget.Clado;
using BitBudget.Tests.Support;
using BitBudget.Workflow;

namespace BitBudget.Tests.Pipeline;

/// <summary>The whole pipeline on mnist-8 (first layer searched too, so CLADO has two layers), fast enough for every CI run.</summary>
public class RunWorkflowTests
{
    static readonly PipelineOptions s_options = PipelineOptions.Default with
    {
        FirstLayerBits = null,
        Sensitivity = new SensitivityOptions { BatchSize = 64 },
        Search = new SearchOptions { TimeLimit = TimeSpan.FromSeconds(10) },
    };

    static Dataset Calibration => SharedData.MnistTest.Subset(Enumerable.Range(0, 256).ToArray(), "mnist calibration");
    static Dataset Sensitivity => SharedData.MnistTest.Subset(Enumerable.Range(256, 128).ToArray(), "mnist sensitivity");
    static Dataset Evaluation => SharedData.MnistTest.Subset(Enumerable.Range(2000, 2000).ToArray(), "mnist evaluation");

    static RunRequest Request(string output, params string[] budgets) => new()
    {
        Pipeline = MpqPipeline.Open(Assets.Mnist8, s_options),
        Calibration = Calibration,
        Sensitivity = Sensitivity,
        Evaluation = Evaluation,
        HeldOut = SharedData.MnistTest.Subset(Enumerable.Range(1000, 256).ToArray(), "mnist held out"),
        Methods = SearchMethods.Names,
        Budgets = [.. budgets.Select(b => (IReadOnlyList<Budget>)[Budget.Parse(b)])],
        OutputDirectory = output,
    };

    [Fact]
    public void LibraryApiRunsEveryStep()
    {
        MpqPipeline opened = MpqPipeline.Open(Assets.Mnist8, s_options);
        Assert.Equal(2, opened.Policy.Count(p => p.Searchable));
        Dataset calibration = Calibration;
        CalibratedPipeline pipeline = opened.Calibrate(calibration);
        Assert.NotNull(pipeline.Activations);
        SensitivityResult s = pipeline.MeasureSensitivity(Sensitivity);
        Assert.Equal(6, s.Size);
        // The measurement rounded every (layer, bits) with GPTQ and then let the factors go, and moved H and the calibration
        // images to files: its sessions get that memory.
        Assert.True(pipeline.Weights.Factors!.Computed >= 2);
        Assert.Equal(0, pipeline.Weights.Factors.Held);
        Assert.All(pipeline.Weights.Layers, l => Assert.True(pipeline.Weights.InputStatistics(l.Index)!.IsSpilled, l.Name));
        Assert.True(calibration.IsSpilled);
        SearchResult r = pipeline.Search(SearchMethod.Clado, [Budget.Parse("5.5bits")], s);
        Assert.Equal(SearchStatus.Optimal, r.Status);
        Assert.True(r.AverageBits <= 5.5 + 1e-9);
        using var dir = new Assets.TempDir();
        ExportResult e = pipeline.Export(pipeline.Configuration(r.Bits), dir.File("m.onnx"));
        Assert.True(File.Exists(dir.File("m.onnx")));
        EvaluationResult exported = pipeline.Evaluate(e.Model, Evaluation);
        EvaluationResult simulated = pipeline.Evaluate(pipeline.Simulate(pipeline.Configuration(r.Bits)), Evaluation);
        Assert.InRange(exported.Top1, 95, 100);
        Assert.InRange(Math.Abs(exported.Top1 - simulated.Top1), 0, 0.5);
        // Sequential final rounding read the images back: the export's weights are those of a pipeline that never spilled.
        Assert.False(calibration.IsSpilled);
        CalibratedPipeline unspilled = MpqPipeline.Open(Assets.Mnist8, s_options).Calibrate(Calibration);
        var config = pipeline.Configuration(r.Bits);
        QuantizedWeights final = pipeline.FinalWeights(config), expected = unspilled.FinalWeights(config);
        foreach (LayerBits b in config)
        {
            Assert.Equal(expected.Get(b).Dequantized.ToArray(), final.Get(b).Dequantized.ToArray());
        }
    }

    [Fact]
    public void RunWritesEveryOutput()
    {
        using var dir = new Assets.TempDir();
        string output = dir.File("out");
        RunSummary summary = RunWorkflow.Execute(Request(output, "5bits", "6.5bits"));
        foreach (string file in new[] { "bits.json", "model.onnx", "layers.csv", "layers.json", "pareto.json", "pareto.png", "manifest.json", "report.html" })
        {
            Assert.True(File.Exists(Path.Combine(output, file)), file);
        }
        // 4 methods × 2 budgets: OMPQ cannot search the first layer (s_options searches it), so it is skipped and said so.
        Assert.Equal(8, summary.Points.Count);
        Assert.DoesNotContain(summary.Points, p => p.Method == "ompq");
        Assert.Contains(summary.Warnings, w => w.Contains("ompq skipped", StringComparison.Ordinal));
        // best compares the ranked solutions of both searches (optimum + next best) and returns the one with the least held-out loss.
        Assert.True(File.Exists(Path.Combine(output, "best-candidates.json")));
        foreach (RunPoint best in summary.Points.Where(p => p.Method == "best"))
        {
            Assert.Contains("held-out KL", best.Status, StringComparison.Ordinal);
            var considered = summary.BestCandidates.Where(c => c.Budget == best.Budget).ToList();
            Assert.True(considered.Count >= 3, $"{best.Budget}: {considered.Count} candidates");
            Assert.Contains(considered, c => c.Sources.Contains("clado #1"));
            Assert.Contains(considered, c => c.Sources.Contains("independent #2"));
            Assert.Contains(considered, c => c.Sources.Contains("uniform"));   // feasible at both budgets, so it competes
            BestCandidate chosen = Assert.Single(considered, c => c.Chosen);
            Assert.Equal(considered.Min(c => c.HeldOutKlDivergence), chosen.HeldOutKlDivergence);
            Assert.All(considered, c => Assert.True(c.HeldOutKlDivergence >= 0 && c.HeldOutCrossEntropy > 0));
            Assert.Equal(chosen.AverageBits, best.AverageBits, 9);
            Assert.All(considered, c => Assert.True(c.AverageBits <= 6.5 + 1e-9));
        }
        Assert.All(summary.Points, p => Assert.True(p.AverageBits <= 6.5 + 1e-9));
        Assert.All(summary.Points.Where(p => p.Budget == "5 bits"), p => Assert.True(p.AverageBits <= 5 + 1e-9, $"{p.Method} {p.AverageBits}"));
        Assert.InRange(summary.FpTop1, 98, 100);
        string html = File.ReadAllText(Path.Combine(output, "report.html"));
        Assert.Contains("data:image/png;base64,", html, StringComparison.Ordinal);
        Assert.DoesNotContain("http://", html, StringComparison.Ordinal);
        string manifest = File.ReadAllText(Path.Combine(output, "manifest.json"));
        Assert.Contains(summary.Sensitivity!.Context, manifest, StringComparison.Ordinal);
    }

    [Fact]
    public void BestJudgedByCrossEntropy_PicksTheLowestHeldOutCrossEntropy()
    {
        using var dir = new Assets.TempDir();
        RunSummary summary = RunWorkflow.Execute(Request(dir.File("out"), "5bits") with
        {
            Methods = ["best"],
            BestJudge = BestJudge.CrossEntropy,
            BestCandidates = 2,
        });
        RunPoint best = Assert.Single(summary.Points);
        Assert.Contains("held-out CE", best.Status, StringComparison.Ordinal);
        BestCandidate chosen = Assert.Single(summary.BestCandidates, c => c.Chosen);
        Assert.Equal(summary.BestCandidates.Min(c => c.HeldOutCrossEntropy), chosen.HeldOutCrossEntropy);
        Assert.DoesNotContain(summary.BestCandidates, c => c.Sources.Any(s => s.EndsWith("#3", StringComparison.Ordinal)));
    }

    [Fact]
    public void BestJudgedWithFinalWeights_ScoresEachCandidateAsItsExportComputes()
    {
        // Sequential final rounding (the default): the judge must see the re-rounded weights, not the measured ones.
        CalibratedPipeline pipeline = MpqPipeline.Open(Assets.Mnist8, s_options).Calibrate(Calibration);
        Assert.Equal(FinalRounding.Sequential, pipeline.Options.FinalRounding);
        SensitivityResult s = pipeline.MeasureSensitivity(Sensitivity);
        Dataset heldOut = SharedData.MnistTest.Subset(Enumerable.Range(1000, 256).ToArray(), "mnist held out");
        float[] floatLogits = pipeline.Logits(pipeline.Original, heldOut);
        BestOfResult r = BestOfSearch.Run(pipeline, [Budget.Parse("5bits")], "5 bits", s, heldOut, floatLogits, candidates: 2, BestJudge.KlDivergence,
            finalWeights: true, report: null, CancellationToken.None);
        Assert.Contains("with final weights", r.Verdict, StringComparison.Ordinal);
        Assert.True(r.Considered.Count >= 2, $"{r.Considered.Count} candidates");
        BestCandidate chosen = Assert.Single(r.Considered, c => c.Chosen);
        Assert.Equal(r.Considered.Min(c => c.HeldOutKlDivergence), chosen.HeldOutKlDivergence);
        // Only the winner's re-rounded weights are kept (for its export); the losers' were dropped.
        Assert.Equal(1, pipeline.FinalWeightsHeld);
        // Independent check: the winner's score is the KL of its sequentially rounded simulation, not of the measured weights.
        var config = pipeline.Configuration(r.Winner.Bits);
        double final = pipeline.EvaluateAgainst(pipeline.Simulate(config, finalRounding: true), heldOut, floatLogits).KlDivergence!.Value;
        double measured = pipeline.EvaluateAgainst(pipeline.Simulate(config, finalRounding: false), heldOut, floatLogits).KlDivergence!.Value;
        Assert.Equal(final, chosen.HeldOutKlDivergence, 12);
        Assert.NotEqual(measured, chosen.HeldOutKlDivergence, 6);
    }

    [Fact]
    public void BadRunsAreRefusedClearly()
    {
        using var dir = new Assets.TempDir();
        // Below the all-2-bit size: infeasible, naming the minimum, before anything is measured or written.
        var infeasible = Assert.Throws<BitBudgetException>(() => RunWorkflow.Execute(Request(dir.File("a"), "1bits")));
        Assert.Equal(ErrorKind.Infeasible, infeasible.Kind);
        Assert.Contains("minimum", infeasible.Message, StringComparison.Ordinal);
        Assert.False(Directory.Exists(dir.File("a")));

        // An existing, non-empty output folder needs Force.
        Directory.CreateDirectory(dir.File("b"));
        File.WriteAllText(dir.File("b/keep.txt"), "x");
        Assert.Equal(ErrorKind.OutputExists, Assert.Throws<BitBudgetException>(() => RunWorkflow.Execute(Request(dir.File("b"), "6bits"))).Kind);

        // A budget above the float size is not an error, but it is reported as not binding; overlapping data warns loudly.
        RunSummary loose = RunWorkflow.Execute(Request(dir.File("c"), "40bits") with { Evaluation = Calibration, Methods = ["uniform"] });
        Assert.Contains(loose.Warnings, w => w.Contains("not binding", StringComparison.Ordinal));
        Assert.Contains(loose.Warnings, w => w.Contains("WARNING", StringComparison.Ordinal) && w.Contains("evaluation images", StringComparison.Ordinal));
    }

    [Fact]
    public void CancelledRunLeavesAResumableStore()
    {
        using var dir = new Assets.TempDir();
        var options = s_options with { Sensitivity = s_options.Sensitivity with { StorePath = dir.File("store.db"), BatchSize = 32 } };
        RunRequest request = Request(dir.File("out"), "6bits") with { Pipeline = MpqPipeline.Open(Assets.Mnist8, options), Methods = ["clado"] };
        using var cancel = new CancellationTokenSource();
        var progress = new SyncProgress(p => { if (p.Stage == "measure" && p.Done >= 4) { cancel.Cancel(); } });
        Assert.ThrowsAny<OperationCanceledException>(() => RunWorkflow.Execute(request, progress, cancel.Token));
        Assert.True(File.Exists(dir.File("store.db")));
        RunSummary resumed = RunWorkflow.Execute(request with { Pipeline = MpqPipeline.Open(Assets.Mnist8, options), Force = true });
        Assert.True(resumed.Sensitivity!.Cost.ReusedUnits > 0);
        Assert.True(resumed.Sensitivity.Complete);
    }

    [Fact]
    public void CommandLineErrorsHaveTheirExitCodes()
    {
        using var dir = new Assets.TempDir();
        string mnist = Assets.Mnist8, idx = Assets.Require("mnist/t10k-images-idx3-ubyte");
        string[] common = ["--calib", idx, "--eval", idx, "--eval-limit", "200", "--calib-images", "64", "--quiet"];
        Assert.Equal(3, Cli.Program.Run(["run", "-m", mnist, "--budget", "1bits", "-o", dir.File("x"), "--first-bits", "search", .. common]));
        Assert.Equal(2, Cli.Program.Run(["run", "-m", Assets.ResNet20, "--budget", "4bits", "-o", dir.File("y"), "--preset", "mnist", .. common]));
        Assert.Equal(2, Cli.Program.Run(["run", "-m", mnist, "--budget", "four", "-o", dir.File("z"), .. common]));
        Assert.Equal(10, Cli.Program.Run(["eval", dir.File("missing.onnx"), "--data", idx]));
    }

    sealed class SyncProgress(Action<RunProgress> report) : IProgress<RunProgress>
    {
        public void Report(RunProgress value) => report(value);
    }
}

/// <summary>OMPQ's held-out β rule inside a calibrated pipeline.</summary>
public class OmpqHeldOutJudgeTests
{
    [Fact]
    public void HeldOutBetaJudgesTheMeasuredWeights_NoSequentialRoundingPerBeta()
    {
        // Sequential final rounding is the default: re-rounding every β's configuration would cost one sequential rounding each.
        CalibratedPipeline pipeline = MpqPipeline.Open(Assets.ResNet20).Calibrate(SharedData.CifarTrain(128, seed: 0));
        Assert.Equal(FinalRounding.Sequential, pipeline.Options.FinalRounding);
        Dataset images = SharedData.CifarTrain(32, seed: 1);
        Dataset heldOut = SharedData.CifarTrain(64, seed: 2);
        OmpqSearchResult r = pipeline.SearchOmpq(images, Budget.Parse("3bits"), TestContext.Current.CancellationToken, heldOut);
        Assert.True(r.BetaCandidates.Select(c => c.Score).Distinct().Count() >= 2, "the grid should give several configurations");
        Assert.Equal(0, pipeline.FinalWeightsHeld);
        // Independent check: the winner's score is the held-out KL of its simulation with the measured weights.
        float[] floatLogits = pipeline.Logits(pipeline.Original, heldOut);
        var config = pipeline.Configuration(r.LayerBits);
        double kl = pipeline.EvaluateAgainst(pipeline.Simulate(config, finalRounding: false), heldOut, floatLogits).KlDivergence!.Value;
        Assert.Equal(r.BetaCandidates.Min(c => c.Score), kl, 9);
        Assert.Equal(0, pipeline.FinalWeightsHeld);
    }
}

/// <summary>Issue 4's bar: W8A8 ResNet-20, exported and run in ORT, within 0.5 points of full precision on the 10k test set.</summary>
public class W8A8AccuracyTests
{
    [Fact]
    public void ResNet20W8A8StaysWithinHalfAPoint()
    {
        CalibratedPipeline pipeline = MpqPipeline.Open(Assets.ResNet20).Calibrate(SharedData.CifarTrain(512, seed: 0));
        using var dir = new Assets.TempDir();
        ExportResult exported = pipeline.Export(pipeline.Uniform(8), dir.File("w8a8.onnx"));
        EvaluationResult result = pipeline.Evaluate(exported.Model, SharedData.CifarTest);
        Assert.InRange(result.Top1, 81.07 - 0.5, 100);
        Assert.Contains(exported.Layers, l => l.ActivationBits == 8);
    }
}

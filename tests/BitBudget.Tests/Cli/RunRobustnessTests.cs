using System.Diagnostics;
using BitBudget.Data;
using BitBudget.Graph;
using BitBudget.Ompq;
using BitBudget.Optimization;
using BitBudget.Pipeline;
using BitBudget.Clado;
using BitBudget.Tests.Support;
using BitBudget.Workflow;
using static BitBudget.Tests.Support.TinyModels;

namespace BitBudget.Tests.CommandLine;

/// <summary>Issue 17, items 5 and 14: a stopped run never blocks its rerun; SIGTERM cleans up like Ctrl+C; small CLI mistakes and
/// limits are said in one line.</summary>
public class RunRobustnessTests
{
    static string Idx => Assets.Require("mnist/t10k-images-idx3-ubyte");

    static readonly PipelineOptions s_options = PipelineOptions.Default with
    {
        FirstLayerBits = null,
        Sensitivity = new SensitivityOptions { BatchSize = 32 },
        Search = new SearchOptions { TimeLimit = TimeSpan.FromSeconds(10) },
    };

    static RunRequest Request(string output, PipelineOptions options) => new()
    {
        Pipeline = MpqPipeline.Open(Assets.Mnist8, options),
        Calibration = SharedData.MnistTest.Subset(Enumerable.Range(0, 256).ToArray(), "mnist calibration"),
        Sensitivity = SharedData.MnistTest.Subset(Enumerable.Range(256, 128).ToArray(), "mnist sensitivity"),
        Evaluation = SharedData.MnistTest.Subset(Enumerable.Range(2000, 500).ToArray(), "mnist evaluation"),
        Methods = ["clado", "uniform"],
        Budgets = [[Budget.Parse("6bits")]],
        OutputDirectory = output,
    };

    [Fact]
    public void CancelledRunDoesNotBlockItsRerun()
    {
        using var dir = new Assets.TempDir();
        // The store inside the output folder is the run's own state: it must not count as an earlier run's output either.
        Directory.CreateDirectory(dir.File("out"));
        var options = s_options with { Sensitivity = s_options.Sensitivity with { StorePath = dir.File("out/store.db") } };
        using var cancel = new CancellationTokenSource();
        var progress = new SyncProgress(p => { if (p.Stage == "measure" && p.Done >= 4) { cancel.Cancel(); } });
        Assert.ThrowsAny<OperationCanceledException>(() => RunWorkflow.Execute(Request(dir.File("out"), options), progress, cancel.Token));
        string[] left = [.. Directory.GetFileSystemEntries(dir.File("out")).Select(f => Path.GetFileName(f)).Where(f => !f.StartsWith("store.db-", StringComparison.Ordinal))];
        Assert.Equal(new[] { "store.db" }, left);
        Assert.Equal(new[] { dir.File("out") }, Directory.GetDirectories(dir.Path));   // no staging folder left beside it

        // The same request again, without Force: it resumes from the store and writes every output.
        RunSummary resumed = RunWorkflow.Execute(Request(dir.File("out"), options));
        Assert.True(resumed.Sensitivity!.Cost.ReusedUnits > 0);
        Assert.Equal(dir.File("out"), resumed.OutputDirectory);
        foreach (string file in new[] { "bits.json", "model.onnx", "pareto.json", "manifest.json", "report.html", "models/clado-6_bits.onnx" })
        {
            Assert.True(File.Exists(Path.Combine(dir.File("out"), file)), file);
        }
        Assert.Equal(new[] { dir.File("out") }, Directory.GetDirectories(dir.Path));

        // A failed run (here: no output folder yet, run fails in the search) leaves nothing either.
        var failing = Request(dir.File("failed"), s_options) with { Methods = ["best"] };   // best needs held-out images
        Assert.Throws<BitBudgetException>(() => RunWorkflow.Execute(failing));
        Assert.False(Directory.Exists(dir.File("failed")));
        Assert.Equal(new[] { dir.File("out") }, Directory.GetDirectories(dir.Path));
    }

    [Fact]
    public void SigtermCleansUpLikeCtrlCAndTheRerunResumes()
    {
        using var dir = new Assets.TempDir();
        string[] args = ["run", "-m", Assets.Mnist8, "--calib", Idx, "--eval", Idx, "--eval-limit", "200", "--calib-images", "64", "--sens-images", "512",
            "--sens-batch", "8", "--first-bits", "search", "--budget", "6bits", "--method", "clado,uniform", "--pairs", "all", "--store", dir.File("store.db"), "-o", dir.File("out")];   // all: the unit counts below
        using (Process run = CliRunner.Start(args))
        {
            Task<string> stdout = run.StandardOutput.ReadToEndAsync(), stderr = run.StandardError.ReadToEndAsync();
            var watch = Stopwatch.StartNew();
            while (StoreProbe.Units(dir.File("store.db")) < 4 && !run.HasExited && watch.Elapsed < TimeSpan.FromMinutes(5)) { Thread.Sleep(50); }
            Assert.False(run.HasExited, "the run finished before it could be terminated");
            CliRunner.Terminate(run);
            CliRunner.Result r = CliRunner.Finish(run, stdout, stderr);
            Assert.True(r.ExitCode == 143, r.ToString());
            Assert.StartsWith("error: terminated (SIGTERM)", r.ErrorLine, StringComparison.Ordinal);
        }
        Assert.False(Directory.Exists(dir.File("out")));
        Assert.Empty(Directory.GetDirectories(dir.Path));   // no staging folder left
        long measured = StoreProbe.Units(dir.File("store.db"));
        Assert.InRange(measured, 4, 64 * 7 - 1);   // 64 batches × (6 units + reference) when complete

        CliRunner.Result rerun = CliRunner.Run([.. args, "--json"]);
        Assert.True(rerun.ExitCode == 0, rerun.ToString());
        Assert.True(File.Exists(dir.File("out/bits.json")));
        Assert.Equal(64 * 7, StoreProbe.Units(dir.File("store.db")));
    }

    [Fact]
    public void BudgetListWithAnEmptyEntryIsRefused()
    {
        var e = Assert.Throws<BitBudgetException>(() => Budget.ParseList("3bits,"));
        Assert.Equal(ErrorKind.InvalidInput, e.Kind);
        Assert.Contains("empty entry", e.Message, StringComparison.Ordinal);
        Assert.Equal(2, Budget.ParseList("4bits, 1.2MB").Count);
        CliRunner.Result r = CliRunner.Run("search", Assets.Mnist8, "--method", "uniform", "--budget", "3bits,", "--calib", Idx);
        Assert.True(r.ExitCode == 2, r.ToString());
        Assert.Contains("'3bits,'", r.ErrorLine, StringComparison.Ordinal);
    }

    [Fact]
    public void SearchSaysWhenTheBudgetIsNotBinding()
    {
        using var dir = new Assets.TempDir();
        CliRunner.Result r = CliRunner.Run("search", Assets.Mnist8, "--method", "uniform", "--budget", "40bits", "--calib", Idx, "--calib-images", "64",
            "--quiet", "-o", dir.File("bits.json"));
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("not binding", r.Stderr, StringComparison.Ordinal);
        CliRunner.Result binding = CliRunner.Run("search", Assets.Mnist8, "--method", "uniform", "--budget", "5bits", "--calib", Idx, "--calib-images", "64", "--quiet");
        Assert.True(binding.ExitCode == 0, binding.ToString());
        Assert.DoesNotContain("not binding", binding.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void OmpqThatCannotSearchTheFirstLayerIsSkippedWithAWarning()
    {
        using var dir = new Assets.TempDir();
        RunRequest request = Request(dir.File("out"), s_options) with { Methods = ["ompq", "uniform"] };
        RunSummary summary = RunWorkflow.Execute(request);
        Assert.Contains(summary.Warnings, w => w.Contains("--first-bits search", StringComparison.Ordinal) && w.Contains("ompq skipped", StringComparison.Ordinal));
        Assert.Equal(new[] { "uniform" }, summary.Points.Select(p => p.Method).ToArray());
        // Alone, it is an error; search --method ompq says the same in one line.
        var e = Assert.Throws<BitBudgetException>(() => RunWorkflow.Execute(request with { Methods = ["ompq"], OutputDirectory = dir.File("out2") }));
        Assert.Equal(ErrorKind.InvalidInput, e.Kind);
        Assert.False(Directory.Exists(dir.File("out2")));
        CliRunner.Result search = CliRunner.Run("search", Assets.Mnist8, "--method", "ompq", "--budget", "6bits", "--first-bits", "search", "--calib", Idx);
        Assert.True(search.ExitCode == 2, search.ToString());
        Assert.Contains("--first-bits search", search.ErrorLine, StringComparison.Ordinal);
    }

    [Fact]
    public void ModelWithTwoInputsGetsOneLine()
    {
        using var dir = new Assets.TempDir();
        OnnxModel model = Model([Node("Add", ["x", "y"], ["s"]), Node("Conv", ["s", "w"], ["out"])], [Tensor("w", [4, 3, 3, 3], seed: 1)],
            Value("x", -1, 3, 8, 8), Value("out", -1, 4, 6, 6));
        model.Graph.Input.Add(Value("y", -1, 3, 8, 8));
        model.Save(dir.File("two.onnx"));
        foreach (string[] args in new[] { new[] { "inspect", dir.File("two.onnx") }, ["eval", dir.File("two.onnx"), "--data", Assets.EranCsv] })
        {
            CliRunner.Result r = CliRunner.Run(args);
            Assert.True(r.ExitCode == 2, r.ToString());
            Assert.Contains("2 data inputs (x, y)", r.ErrorLine, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void DecodingReportsItsTotalAndItsProgress()
    {
        var reports = new List<(long Done, long Total)>();
        Dataset data = BitBudget.Cli.Ui.LoadData(new DataOptions { Path = Idx, Preprocessing = Preprocessing.Mnist, CacheDirectory = "" }, (done, total, _) => reports.Add((done, total)));
        Assert.Equal(10_000, data.Count);
        Assert.All(reports, r => Assert.Equal(10_000, r.Total));
        Assert.True(reports.Count > 10, $"{reports.Count} reports");
        Assert.Equal(10_000, reports[^1].Done);
    }

    sealed class SyncProgress(Action<RunProgress> report) : IProgress<RunProgress>
    {
        public void Report(RunProgress value) => report(value);
    }
}

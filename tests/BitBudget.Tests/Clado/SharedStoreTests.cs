using System.Diagnostics;
using BitBudget.Data;
using BitBudget.Evaluation;
using BitBudget.Graph;
using BitBudget.Quantization;
using BitBudget.Clado;
using BitBudget.Tests.Support;

namespace BitBudget.Tests.Clado;

/// <summary>Issue 17, items 11 and 13: workers on one store share the units; merge changes its target only when every source merged.</summary>
public class SharedStoreTests
{
    /// <summary>ResNet-20 with four searched layers (the others fixed at 8 bits), A8 inputs calibrated on 64 training images.</summary>
    static SensitivityInput Input(int images = 48)
    {
        (OnnxModel prepared, ModelSummary summary) = ModelInspector.Inspect(OnnxModel.Load(Assets.ResNet20));
        var config = BitConfig.Uniform(8, activationBits: 8).Resolve(summary.Layers)
            .Select(c => c with { Searchable = c.LayerIndex is >= 1 and < 5 }).ToArray();
        Dataset calib = SharedData.CifarTrain(64, seed: 11);
        using var engine = EvaluationEngine.Create(prepared);
        var activations = ActivationCalibrator.Calibrate(engine, summary.Layers, calib);
        return new SensitivityInput(prepared, summary.Layers, config, new QuantizedWeights(prepared, summary.Layers), activations, SharedData.CifarTrain(images, seed: 5));
    }

    static readonly SensitivityOptions s_options = new() { BatchSize = 8, Pairs = PairSelection.All };   // 6 batches × (12 units + reference)

    [Fact]
    public async Task TwoWorkersOnOneStoreShareTheWorkAndAgreeWithOne()
    {
        using var dir = new Assets.TempDir();
        SensitivityResult alone = CladoSensitivity.Measure(Input(), s_options with { StorePath = dir.File("alone.db") });
        long all = alone.Cost.Evaluations;

        // Worker A pauses after its first unit until B has measured one, so both surely work at the same time.
        var options = s_options with { StorePath = dir.File("shared.db") };
        using var bStarted = new ManualResetEventSlim();
        var a = Task.Run(() => CladoSensitivity.Measure(Input(), options, new SyncProgress(_ => bStarted.Wait(TimeSpan.FromMinutes(2)))));
        var b = Task.Run(() => CladoSensitivity.Measure(Input(), options, new SyncProgress(_ => bStarted.Set())));
        SensitivityResult ra = await a, rb = await b;
        Assert.True(bStarted.IsSet);
        Assert.True(ra.Complete && rb.Complete);
        Assert.Equal(alone.Omega.ToRowMajorArray(), ra.Omega.ToRowMajorArray());   // bit-identical to one worker
        Assert.Equal(alone.Omega.ToRowMajorArray(), rb.Omega.ToRowMajorArray());
        Assert.InRange(ra.Cost.Evaluations, 1, all - 1);   // each did part of the work …
        Assert.InRange(rb.Cost.Evaluations, 1, all - 1);
        Assert.Equal(all, ra.Cost.Evaluations + rb.Cost.Evaluations);   // … and together all of it: no unit measured twice
    }

    [Fact]
    public void TwoProcessesOnOneStoreShareTheWork()
    {
        using var dir = new Assets.TempDir();
        string[] Args(string store, string output) =>
        [
            "sensitivity", Assets.ResNet20, "--calib", Assets.Require("cifar10/train-5k"), "--calib-images", "64", "--sens-images", "32", "--sens-batch", "16",
            "--rounding", "rtn", "--store", store, "-o", output, "--quiet",
        ];
        CliRunner.Result alone = CliRunner.Run(Args(dir.File("alone.db"), dir.File("alone.json")));
        Assert.True(alone.ExitCode == 0, alone.ToString());

        // Two `bitbudget sensitivity` processes started together on one store.
        using Process a = CliRunner.Start(Args(dir.File("shared.db"), dir.File("a.json")));
        using Process b = CliRunner.Start(Args(dir.File("shared.db"), dir.File("b.json")));
        Task<string> aOut = a.StandardOutput.ReadToEndAsync(), aErr = a.StandardError.ReadToEndAsync();
        Task<string> bOut = b.StandardOutput.ReadToEndAsync(), bErr = b.StandardError.ReadToEndAsync();
        CliRunner.Result ra = CliRunner.Finish(a, aOut, aErr), rb = CliRunner.Finish(b, bOut, bErr);
        Assert.True(ra.ExitCode == 0, ra.ToString());
        Assert.True(rb.ExitCode == 0, rb.ToString());

        using var reference = System.Text.Json.JsonDocument.Parse(File.ReadAllText(dir.File("alone.json")));
        using var ja = System.Text.Json.JsonDocument.Parse(File.ReadAllText(dir.File("a.json")));
        using var jb = System.Text.Json.JsonDocument.Parse(File.ReadAllText(dir.File("b.json")));
        double[] Omega(System.Text.Json.JsonDocument d) => [.. d.RootElement.GetProperty("omega").EnumerateArray().Select(e => e.GetDouble())];
        long Evaluations(System.Text.Json.JsonDocument d) => d.RootElement.GetProperty("evaluations").GetInt64();
        Assert.Equal(Omega(reference), Omega(ja));   // bit-identical to one worker
        Assert.Equal(Omega(reference), Omega(jb));
        long all = Evaluations(reference);
        Assert.InRange(Evaluations(ja), 1, all - 1);
        Assert.InRange(Evaluations(jb), 1, all - 1);
        Assert.Equal(all, Evaluations(ja) + Evaluations(jb));   // no unit measured twice
    }

    [Fact]
    public void ClaimsOfDeadOrExpiredWorkersAreTakenOver()
    {
        using var dir = new Assets.TempDir();
        SensitivityInput input = Input(images: 16);
        var options = s_options with { StorePath = dir.File("s.db"), ClaimLease = TimeSpan.FromSeconds(3) };
        SensitivityResult reference = CladoSensitivity.Measure(input, s_options);

        // A process of this machine that has exited, and a worker elsewhere whose 2-second lease will run out.
        using var gone = Process.Start(new ProcessStartInfo("true") { UseShellExecute = false })!;
        gone.WaitForExit();
        using (var store = new MeasurementStore(dir.File("s.db")))
        {
            Assert.Equal(ClaimResult.Claimed, store.TryClaim(reference.Context, 0, 0, 0, $"{Environment.MachineName}/{gone.Id}/dead", TimeSpan.FromHours(1)));
            Assert.Equal(ClaimResult.Claimed, store.TryClaim(reference.Context, 1, 2, 1, "other-host/1/alive", TimeSpan.FromSeconds(2)));
            Assert.Equal(ClaimResult.Taken, store.TryClaim(reference.Context, 1, 2, 1, "third-host/1/x", TimeSpan.FromSeconds(2)));
        }
        SensitivityResult result = CladoSensitivity.Measure(input, options);
        Assert.True(result.Complete);
        Assert.Equal(reference.Omega.ToRowMajorArray(), result.Omega.ToRowMajorArray());
        Assert.Equal(reference.Cost.Evaluations, result.Cost.Evaluations);   // both claimed units were measured here in the end
        using (var store = new MeasurementStore(dir.File("s.db")))
        {
            Assert.Equal(ClaimResult.Done, store.TryClaim(reference.Context, 1, 2, 1, "third-host/1/x", TimeSpan.FromSeconds(2)));
            // A live claim blocks others until its lease runs out, and a worker's own claim is its own.
            Assert.Equal(ClaimResult.Claimed, store.TryClaim("other", 0, 0, 0, "x-host/1/a", TimeSpan.FromSeconds(1)));
            Assert.Equal(ClaimResult.Taken, store.TryClaim("other", 0, 0, 0, "y-host/1/b", TimeSpan.FromSeconds(1)));
            Assert.Equal(ClaimResult.Claimed, store.TryClaim("other", 0, 0, 0, "x-host/1/a", TimeSpan.FromSeconds(1)));
            Thread.Sleep(1500);
            Assert.Equal(ClaimResult.Claimed, store.TryClaim("other", 0, 0, 0, "y-host/1/b", TimeSpan.FromSeconds(1)));
            store.Release("y-host/1/b");
            Assert.Equal(ClaimResult.Claimed, store.TryClaim("other", 0, 0, 0, "z-host/1/c", TimeSpan.FromSeconds(1)));
        }
    }

    [Fact]
    public void MergeIsAtomic()
    {
        using var dir = new Assets.TempDir();
        Fill(dir.File("t.db"), "ctx-t", 3);
        Fill(dir.File("good.db"), "ctx-good", 5);
        var random = new byte[8192];
        new Random(1).NextBytes(random);
        File.WriteAllBytes(dir.File("random.db"), random);
        string before = CliRunner.Hash(dir.File("t.db"));

        var e = Assert.Throws<BitBudgetException>(() => CladoSensitivity.MergeStores(dir.File("t.db"), [dir.File("good.db"), dir.File("random.db")]));
        Assert.Equal(ErrorKind.InvalidInput, e.Kind);
        Assert.Contains("random.db", e.Message, StringComparison.Ordinal);
        Assert.Equal(before, CliRunner.Hash(dir.File("t.db")));
        Assert.Equal(3, Losses(dir.File("t.db")));

        // The CLI: exit 2, one line, the target unchanged, a missing target not created, no temporary file left.
        CliRunner.Result r = CliRunner.Run("merge", dir.File("t.db"), dir.File("good.db"), dir.File("random.db"));
        Assert.True(r.ExitCode == 2, r.ToString());
        Assert.Contains("random.db", r.ErrorLine, StringComparison.Ordinal);
        Assert.Equal(before, CliRunner.Hash(dir.File("t.db")));
        CliRunner.Result missing = CliRunner.Run("merge", dir.File("new.db"), dir.File("good.db"), dir.File("random.db"));
        Assert.True(missing.ExitCode == 2, missing.ToString());
        Assert.False(File.Exists(dir.File("new.db")));
        Assert.DoesNotContain(Directory.GetFiles(dir.Path), f => Path.GetFileName(f).StartsWith('.') || Path.GetFileName(f).StartsWith("new.db", StringComparison.Ordinal));

        // An SQLite file of another program is refused and left as it was (validated read-only).
        using (var other = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={dir.File("other.db")};Pooling=False"))
        {
            other.Open();
            using var cmd = other.CreateCommand();
            cmd.CommandText = "CREATE TABLE notes (x TEXT)";
            cmd.ExecuteNonQuery();
        }
        string otherHash = CliRunner.Hash(dir.File("other.db"));
        Assert.Equal(ErrorKind.InvalidInput, Assert.Throws<BitBudgetException>(() => CladoSensitivity.MergeStores(dir.File("t.db"), [dir.File("other.db")])).Kind);
        Assert.Equal(otherHash, CliRunner.Hash(dir.File("other.db")));

        // Good sources merge.
        Assert.Equal(5, CladoSensitivity.MergeStores(dir.File("t.db"), [dir.File("good.db")]));
        Assert.Equal(8, Losses(dir.File("t.db")));
        Assert.Equal(5, CladoSensitivity.MergeStores(dir.File("fresh.db"), [dir.File("good.db")]));
        Assert.Equal(5, Losses(dir.File("fresh.db")));
    }

    static void Fill(string path, string context, int units)
    {
        using var store = new MeasurementStore(path);
        store.Register(context, "test");
        for (int u = 0; u < units; u++) { store.CommitUnit(context, 0, u, 0, [(u, 0, -1, 0, 0.5 + u)]); }
    }

    static long Losses(string path)
    {
        using var c = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={path};Mode=ReadOnly;Pooling=False");
        c.Open();
        using var cmd = c.CreateCommand();
        cmd.CommandText = "SELECT COUNT(*) FROM losses";
        return (long)cmd.ExecuteScalar()!;
    }

    sealed class SyncProgress(Action<SensitivityProgress> report) : IProgress<SensitivityProgress>
    {
        public void Report(SensitivityProgress value) => report(value);
    }
}

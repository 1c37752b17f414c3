using BitBudget.Data;
using BitBudget.Evaluation;
using BitBudget.Graph;
using BitBudget.Pipeline;
using BitBudget.Quantization;
using BitBudget.Clado;
using BitBudget.Tests.Support;

namespace BitBudget.Tests.Clado;

public class ShardTests
{
    static Func<string, string?> Env(string? slurm, string? kubernetes) =>
        name => name == Shard.SlurmVariable ? slurm : name == Shard.KubernetesVariable ? kubernetes : null;

    [Fact]
    public void AutoShardReadsSlurmOrKubernetesIndex()
    {
        Assert.Equal(new Shard(2, 4), Shard.Parse("auto/4", Env("2", null)));
        Assert.Equal(new Shard(3, 4), Shard.Parse("auto/4", Env(null, "3")));
        Assert.Equal(new Shard(1, 4), Shard.Parse("auto/4", Env("1", "1")));
        Assert.Equal(new Shard(0, 4), Shard.Parse("0/4", Env("3", null)));   // an explicit index wins over the environment

        Assert.Contains("neither is set", Assert.Throws<BitBudgetException>(() => Shard.Parse("auto/4", Env(null, ""))).Message, StringComparison.Ordinal);
        Assert.Contains("disagree", Assert.Throws<BitBudgetException>(() => Shard.Parse("auto/4", Env("1", "2"))).Message, StringComparison.Ordinal);
        var outside = Assert.Throws<BitBudgetException>(() => Shard.Parse("auto/4", Env("4", null)));
        Assert.Contains("SLURM_ARRAY_TASK_ID=4 is not a shard index 0–3", outside.Message, StringComparison.Ordinal);
        Assert.Throws<BitBudgetException>(() => Shard.Parse("auto/4", Env(null, "-1")));
        Assert.Throws<BitBudgetException>(() => Shard.Parse("auto/4", Env("x", null)));
        Assert.Throws<BitBudgetException>(() => Shard.Parse("auto/0", Env("0", null)));
        Assert.Throws<BitBudgetException>(() => Shard.Parse("auto", Env("0", null)));
    }

    [Fact]
    public void CliAutoShardWithoutEitherVariable_ExitCode2()
    {
        if (Environment.GetEnvironmentVariable(Shard.SlurmVariable) is not null || Environment.GetEnvironmentVariable(Shard.KubernetesVariable) is not null)
        {
            Assert.Skip("running inside a Slurm array task or an Indexed Job");
        }
        using var dir = new Assets.TempDir();
        int code = BitBudget.Cli.Program.Run(["sensitivity", Assets.ResNet20, "--calib", Assets.Require("cifar10/train-5k"),
            "--store", dir.File("s.db"), "--shard", "auto/4", "-o", dir.File("s.csv")]);
        Assert.Equal(2, code);
        Assert.False(File.Exists(dir.File("s.csv")));
    }

    [Fact]
    public void LptBalancesUnevenUnits_WhereACountSplitDoesNot()
    {
        // Cone-like costs: unit u of 20 layers × 3 schemes costs cone(u) + 3·Σ_{v>u} cone(v) with cone(v) ∝ 20 − v.
        long[] cone = [.. Enumerable.Range(0, 20).Select(v => 20L - v)];
        long[] costs = [.. Enumerable.Range(0, 60).Select(i => cone[i / 3] + 3 * cone.Skip(i / 3 + 1).Sum())];
        int[] owners = ShardPlan.Assign(costs, 4);
        long[] loads = ShardPlan.Loads(costs, owners, 4);
        Assert.Equal(costs.Sum(), loads.Sum());
        Assert.All(owners, o => Assert.InRange(o, 0, 3));
        Assert.True(loads.Max() <= 1.02 * loads.Average(), $"LPT loads {string.Join(", ", loads)}");
        // Brute-force check of the bound on a small instance: LPT is within 4/3 of the optimal makespan.
        long[] small = [9, 7, 6, 5, 5, 4, 3, 2];
        long lpt = ShardPlan.Loads(small, ShardPlan.Assign(small, 3), 3).Max();
        long best = long.MaxValue;
        for (int code = 0; code < (int)Math.Pow(3, small.Length); code++)
        {
            var load = new long[3];
            for (int i = 0, c = code; i < small.Length; i++, c /= 3) { load[c % 3] += small[i]; }
            best = Math.Min(best, load.Max());
        }
        Assert.True(lpt * 3 <= best * 4, $"LPT {lpt} vs optimum {best}");
        // Deterministic: every worker computes the same plan.
        Assert.Equal(owners, ShardPlan.Assign(costs, 4));
    }

    public static TheoryData<string> Models => ["resnet20", "squeezenet"];

    /// <summary>Planned executed MACs of 4 shards on the real models (default policy, weights only): ≤ 1.05 × the mean.</summary>
    [Theory]
    [MemberData(nameof(Models))]
    public void RealModelShardsArePlannedWithinFivePercent(string model)
    {
        string path = model == "resnet20" ? Assets.ResNet20 : Assets.SqueezeNet;
        Dataset data = model == "resnet20" ? SharedData.CifarTrain(8, seed: 3) : SharedData.ImageNet("even-classes", 8);
        var pipeline = MpqPipeline.Open(path);
        var input = new SensitivityInput(pipeline.Prepared, pipeline.Summary.Layers, [.. pipeline.Policy.Select(p => p with { ActivationBits = 0 })],
            new QuantizedWeights(pipeline.Prepared, pipeline.Summary.Layers), null, data);
        var plan = MeasurementPlan.Create(input, new SensitivityOptions { Pairs = PairSelection.All, BatchSize = 8 });
        long[] costs = ShardPlan.UnitCosts(plan);
        Assert.Equal(plan.L * plan.S, costs.Length);
        Assert.True(costs.Max() >= 10 * costs.Min(), $"units differ only {costs.Max() / (double)costs.Min():F1}×");   // why a count split is not enough
        long[] loads = ShardPlan.Loads(costs, ShardPlan.Owners(plan, 4), 4);
        Assert.True(loads.Max() <= 1.05 * loads.Average(), $"planned loads {string.Join(", ", loads)}");
        long[] byCount = ShardPlan.Loads(costs, [.. Enumerable.Range(0, costs.Length).Select(i => i % 4)], 4);
        Assert.True(loads.Max() < byCount.Max());
    }

    /// <summary>Shard 1 of 3 dies mid-run; rerun alone on its store, it measures only what it lacks, and the merge equals one worker.</summary>
    [Fact]
    public void DeadShardRerunAloneCompletesTheMerge()
    {
        (OnnxModel prepared, ModelSummary summary) = ModelInspector.Inspect(OnnxModel.Load(Assets.ResNet20));
        var config = BitConfig.Uniform(8, activationBits: 8).Resolve(summary.Layers)
            .Select(c => c with { Searchable = c.LayerIndex is >= 1 and < 6 }).ToArray();
        using var engine = EvaluationEngine.Create(prepared);
        var activations = ActivationCalibrator.Calibrate(engine, summary.Layers, SharedData.CifarTrain(32, seed: 11));
        var input = new SensitivityInput(prepared, summary.Layers, config, new QuantizedWeights(prepared, summary.Layers), activations, SharedData.CifarTrain(16, seed: 5));
        var options = new SensitivityOptions { Pairs = PairSelection.All, BatchSize = 8 };
        SensitivityResult whole = CladoSensitivity.Measure(input, options);

        using var dir = new Assets.TempDir();
        string[] stores = [.. Enumerable.Range(0, 3).Select(k => dir.File($"shard{k}.db"))];
        var full = new long[3];
        for (int k = 0; k < 3; k += 2)
        {
            full[k] = CladoSensitivity.Measure(input, options with { StorePath = stores[k], Shard = new Shard(k, 3) }).Cost.Evaluations;
        }
        using (var cancel = new CancellationTokenSource())
        {
            var progress = new SyncProgress(p => { if (p.Done >= 10) { cancel.Cancel(); } });
            Assert.ThrowsAny<OperationCanceledException>(() =>
                CladoSensitivity.Measure(input, options with { StorePath = stores[1], Shard = new Shard(1, 3) }, progress, cancel.Token));
        }
        SensitivityResult rerun = CladoSensitivity.Measure(input, options with { StorePath = stores[1], Shard = new Shard(1, 3) });
        Assert.True(rerun.Cost.ReusedUnits > 0, "the rerun resumed nothing");
        Assert.False(rerun.Complete);
        // Shard 1 alone on a fresh store: what the whole shard measures; the rerun measured strictly less.
        SensitivityResult fresh = CladoSensitivity.Measure(input, options with { StorePath = dir.File("fresh1.db"), Shard = new Shard(1, 3) });
        Assert.True(rerun.Cost.Evaluations < fresh.Cost.Evaluations);
        Assert.Equal(whole.Cost.Evaluations, full[0] + fresh.Cost.Evaluations + full[2]);   // the shards partition the work
        // The plan's MACs are what the fast path executes for singles and pairs (plus one full-precision pass per batch).
        var plan = MeasurementPlan.Create(input, options);
        long[] costs = ShardPlan.UnitCosts(plan);
        Assert.Equal(whole.Cost.ExecutedMacs, costs.Sum() + 16.0 * plan.FullMacs);
        Assert.Equal(fresh.Cost.ExecutedMacs, ShardPlan.Loads(costs, ShardPlan.Owners(plan, 3), 3)[1] + 16.0 * plan.FullMacs);

        CladoSensitivity.MergeStores(dir.File("all.db"), stores);
        SensitivityResult merged = CladoSensitivity.Measure(input, options with { StorePath = dir.File("all.db") });
        Assert.Equal(0, merged.Cost.Evaluations);
        Assert.True(merged.Complete);
        Assert.Equal(whole.Omega.ToRowMajorArray(), merged.Omega.ToRowMajorArray());   // bit-identical
        // The CLI's report of a run that measured nothing (what the Slurm merge job writes) is valid JSON, not a NaN crash.
        string json = BitBudget.Cli.Ui.ToJson(BitBudget.Cli.Commands.SensitivityCommand.Report(merged));
        Assert.Contains("\"evaluations\": 0", json, StringComparison.Ordinal);
        Assert.Contains("\"flop_ratio\": null", json, StringComparison.Ordinal);
    }

    sealed class SyncProgress(Action<SensitivityProgress> report) : IProgress<SensitivityProgress>
    {
        public void Report(SensitivityProgress value) => report(value);
    }
}

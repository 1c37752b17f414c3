using System.CommandLine;
using System.Text.Json;
using BitBudget.Clado;
using BitBudget.Cli;
using BitBudget.Tests.Support;

namespace BitBudget.Tests.Clado;

/// <summary>
/// `--pairs significant` is the default (library and CLI); a shard without an explicit choice measures all pairs (it lacks the
/// other shards' singles) and says so; merged shards and an old `--pairs all` store give the default their exact Ω.
/// </summary>
[Collection(ConsoleCollection.Name)]
public class PairsDefaultTests
{
    [Fact]
    public void LibraryDefaultIsSignificantAndAShardMeasuresAllUnlessToldOtherwise()
    {
        var options = new SensitivityOptions();
        Assert.Equal(PairSelection.Significant, options.Pairs);
        Assert.Equal(0.01, options.PairThreshold);
        Assert.False(options.PairsFollowShard);

        SensitivityOptions shard = options with { Shard = new Shard(0, 2) };
        Assert.Equal(PairSelection.All, shard.Pairs);
        Assert.True(shard.PairsFollowShard);
        Assert.Equal(PairSelection.Significant, (shard with { Shard = null }).Pairs);   // the default follows the shard, both ways

        // An explicit choice stays what it is, shard or not (explicit significant + shard is then refused by the measurement).
        Assert.Equal(PairSelection.Significant, new SensitivityOptions { Pairs = PairSelection.Significant, Shard = new Shard(0, 2) }.Pairs);
        Assert.False(new SensitivityOptions { Pairs = PairSelection.Significant, Shard = new Shard(0, 2) }.PairsFollowShard);
        Assert.Equal(PairSelection.All, new SensitivityOptions { Pairs = PairSelection.All }.Pairs);
        Assert.Equal(PairSelection.All, (new SensitivityOptions { Pairs = PairSelection.All } with { Shard = null }).Pairs);
    }

    static SensitivityOptions Parse(params string[] args)
    {
        var arguments = new PipelineArguments();
        var command = new Command("sensitivity");
        arguments.AddTo(command);
        ParseResult parse = command.Parse(["--calib", "unused", "--quiet", .. args]);
        Assert.Empty(parse.Errors);
        return arguments.Options(parse).Sensitivity;
    }

    [Fact]
    public void CliDefaultIsSignificantAndAShardWithoutPairsMeasuresAll()
    {
        Assert.Equal(PairSelection.Significant, Parse().Pairs);
        Assert.Equal(SensitivityOptions.DefaultPairThreshold, Parse().PairThreshold);
        Assert.Equal(PairSelection.All, Parse("--pairs", "all").Pairs);
        Assert.Equal(PairSelection.Significant, Parse("--pairs", "significant").Pairs);
        Assert.Equal(PairSelection.All, Parse("--shard", "0/2").Pairs);
        Assert.True(Parse("--shard", "0/2").PairsFollowShard);
        Assert.Equal(PairSelection.Significant, Parse("--shard", "0/2", "--pairs", "significant").Pairs);   // refused when measured
        Assert.False(Parse("--shard", "0/2", "--pairs", "all").PairsFollowShard);
        string help = new PipelineArguments().Pairs.Description!;
        Assert.StartsWith("CLADO pairs to measure: significant (default", help, StringComparison.Ordinal);
        Assert.Contains("With --shard the default is all", help, StringComparison.Ordinal);
    }

    /// <summary>
    /// The cluster jobs rely on the auto-switch: the Kubernetes shard job's own arguments parse to all pairs (following the
    /// shard), the Slurm shard command gives no --pairs, and the Slurm test's one-worker reference measures --pairs all (what
    /// the shards measure; it compares Ω and context with the merge).
    /// </summary>
    [Fact]
    public void ClusterShardJobsMeasureAllPairsAndTheSlurmReferenceToo()
    {
        string deploy = Path.Combine(Assets.RepoRoot, "deploy");
        string[] yaml = File.ReadAllLines(Path.Combine(deploy, "k8s", "clado-shards.yaml"));
        int start = Array.FindIndex(yaml, l => l.Trim() == "- sensitivity");
        Assert.True(start > 0, "no sensitivity command in clado-shards.yaml");
        string[] args = [.. yaml.Skip(start + 2).TakeWhile(l => l.TrimStart().StartsWith("- ", StringComparison.Ordinal))
            .Select(l => l.Trim()[2..].Trim('"'))];
        Assert.Contains("--shard", args);
        Assert.DoesNotContain("--pairs", args);
        // auto/4 reads JOB_COMPLETION_INDEX (tested in ShardTests); a fixed index parses without touching the environment.
        SensitivityOptions k8s = Parse([.. args.Select(a => a == "auto/4" ? "0/4" : a).Where(a => a != "--calib" && a != "/data/train-5k" && a != "--quiet")]);
        Assert.Equal(PairSelection.All, k8s.Pairs);
        Assert.True(k8s.PairsFollowShard);

        static string[] Commands(string file) => [.. File.ReadAllText(file).Replace("\\\n", " ", StringComparison.Ordinal).Split('\n')
            .Where(l => !l.TrimStart().StartsWith('#') && l.Contains(" sensitivity ", StringComparison.Ordinal))];
        string shard = Assert.Single(Commands(Path.Combine(deploy, "slurm", "clado-shard.sbatch")));
        Assert.Contains("--shard", shard, StringComparison.Ordinal);
        Assert.DoesNotContain("--pairs", shard, StringComparison.Ordinal);
        string reference = Commands(Path.Combine(deploy, "slurm", "test-slurm.sh")).First(l => l.Contains("$single/store.db", StringComparison.Ordinal));
        Assert.Contains("--pairs all", reference, StringComparison.Ordinal);
    }

    static JsonElement Field(JsonElement element, string name) =>
        element.EnumerateObject().First(p => p.Name.Equals(name, StringComparison.OrdinalIgnoreCase)).Value;

    static (long Evaluations, double[] Omega, string Context, string Selection) Report(string file)
    {
        using var json = JsonDocument.Parse(File.ReadAllText(file));
        JsonElement root = json.RootElement;
        return (Field(root, "evaluations").GetInt64(), Field(root, "omega").EnumerateArray().Select(v => v.GetDouble()).ToArray(),
            Field(root, "context").GetString()!, Field(Field(root, "pairs"), "selection").GetString()!);
    }

    /// <summary>
    /// mnist-8 with both layers searched: shards without --pairs measure all pairs (one note line each), their merge gives the
    /// default exactly one worker's `--pairs all` Ω with nothing measured, and so does the store of that old `--pairs all` run.
    /// </summary>
    [Fact]
    public void ShardsWithTheDefaultMeasureAllAndTheirMergeGivesTheExactOmega()
    {
        string idx = Assets.Require("mnist/t10k-images-idx3-ubyte");
        string[] common = ["sensitivity", Assets.Mnist8, "--calib", idx, "--calib-images", "32", "--sens-images", "32", "--sens-batch", "16",
            "--first-bits", "search", "--rounding", "rtn"];
        using var dir = new Assets.TempDir();

        InProcessCli.Result one = InProcessCli.Run([.. common, "--pairs", "all", "--store", dir.File("one.db"), "-o", dir.File("one.json")]);
        Assert.True(one.Code == 0, one.ToString());
        Assert.DoesNotContain(one.ErrLines, l => l.StartsWith("note: --shard", StringComparison.Ordinal));
        var all = Report(dir.File("one.json"));
        Assert.Equal("all", all.Selection);
        Assert.True(all.Evaluations > 0);

        // The default on the store of an old --pairs all run: that exact Ω, nothing measured.
        InProcessCli.Result reuse = InProcessCli.Run([.. common, "--store", dir.File("one.db"), "-o", dir.File("reuse.json")]);
        Assert.True(reuse.Code == 0, reuse.ToString());
        var reused = Report(dir.File("reuse.json"));
        Assert.Equal(0, reused.Evaluations);
        Assert.Equal(all.Omega, reused.Omega);
        Assert.Equal(all.Context, reused.Context);
        Assert.Equal("all", reused.Selection);

        // Shards without --pairs: all pairs of their share, and one note line saying so (none with --quiet).
        InProcessCli.Result shard0 = InProcessCli.Run([.. common, "--store", dir.File("shard0.db"), "--shard", "0/2", "-o", dir.File("shard0.json")]);
        Assert.True(shard0.Code == 0, shard0.ToString());
        Assert.Equal(PipelineArguments.ShardPairsNote, Assert.Single(shard0.ErrLines, l => l.Contains("--shard measures", StringComparison.Ordinal)));
        Assert.DoesNotContain(shard0.ErrLines, l => l.StartsWith("error:", StringComparison.Ordinal));
        Assert.Equal("all", Report(dir.File("shard0.json")).Selection);
        InProcessCli.Result shard1 = InProcessCli.Run([.. common, "--store", dir.File("shard1.db"), "--shard", "1/2", "--quiet"]);
        Assert.True(shard1.Code == 0, shard1.ToString());
        Assert.DoesNotContain(shard1.ErrLines, l => l.Contains("--shard measures", StringComparison.Ordinal));

        InProcessCli.Result merge = InProcessCli.Run("merge", dir.File("merged.db"), dir.File("shard0.db"), dir.File("shard1.db"));
        Assert.True(merge.Code == 0, merge.ToString());
        InProcessCli.Result merged = InProcessCli.Run([.. common, "--store", dir.File("merged.db"), "-o", dir.File("merged.json")]);
        Assert.True(merged.Code == 0, merged.ToString());
        var fromShards = Report(dir.File("merged.json"));
        Assert.Equal(0, fromShards.Evaluations);
        Assert.Equal(all.Omega, fromShards.Omega);   // bit for bit
        Assert.Equal(all.Context, fromShards.Context);
        Assert.Equal("all", fromShards.Selection);

        // Without a store the default measures the significant selection.
        InProcessCli.Result fresh = InProcessCli.Run([.. common, "-o", dir.File("fresh.json")]);
        Assert.True(fresh.Code == 0, fresh.ToString());
        Assert.Equal("significant", Report(dir.File("fresh.json")).Selection);
    }
}

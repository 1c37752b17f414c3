using System.Diagnostics;
using BitBudget.Tests.Support;

namespace BitBudget.Tests.Deploy;

/// <summary>
/// The cluster and GPU deployment files, checked by their own scripts. Each runs under CI=true (which installs what it needs:
/// slurm-wlm + munge, the npm validator, the GPU package) or when its variable is 1, and is skipped otherwise (or when the
/// variable is 0): BITBUDGET_SLURM_TEST, BITBUDGET_K8S_TEST, BITBUDGET_GPU_BUILD_TEST.
/// </summary>
public class DeployTests
{
    static void RequireEnabled(string variable, string what)
    {
        string? value = Environment.GetEnvironmentVariable(variable);
        bool ci = string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase);
        if (value == "1" || (ci && value != "0")) { return; }
        Assert.Skip($"not run: {what} runs under CI=true or with {variable}=1.");
    }

    static (int Code, string Output) Run(string file, params string[] args)
    {
        var start = new ProcessStartInfo(file, args)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            WorkingDirectory = Assets.RepoRoot,
        };
        using var process = Process.Start(start)!;
        process.StandardInput.Close();
        var stderr = process.StandardError.ReadToEndAsync(TestContext.Current.CancellationToken);
        string output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, output + stderr.Result);
    }

    /// <summary>deploy/slurm/test-slurm.sh: a 4-task array + dependent merge/search on a localhost Slurm equals one worker bit for bit.</summary>
    [Fact]
    public void SlurmArrayAndMergeJobEqualOneWorker()
    {
        RequireEnabled("BITBUDGET_SLURM_TEST", "the Slurm test (deploy/slurm/test-slurm.sh, a few minutes)");
        _ = Assets.ResNet20;
        var (code, output) = Run("bash", Path.Combine("deploy", "slurm", "test-slurm.sh"));
        Assert.True(code == 0, output);
        Assert.Contains("slurm test: passed", output, StringComparison.Ordinal);
        Assert.Contains("bit-identical", output, StringComparison.Ordinal);
    }

    /// <summary>deploy/k8s manifests against the Kubernetes API schemas (kubernetes-models), and the validator rejects a bad one.</summary>
    [Fact]
    public void KubernetesManifestsMatchTheApiSchema()
    {
        RequireEnabled("BITBUDGET_K8S_TEST", "the Kubernetes manifest schema check (node + npm ci --prefix deploy/k8s/validate)");
        string validator = Path.Combine(Assets.RepoRoot, "deploy", "k8s", "validate");
        if (!Directory.Exists(Path.Combine(validator, "node_modules", "kubernetes-models")))
        {
            var (npm, log) = Run("npm", "ci", "--prefix", validator, "--no-audit", "--no-fund");
            Assert.True(npm == 0, log);
        }
        string[] manifests = [.. Directory.GetFiles(Path.Combine(Assets.RepoRoot, "deploy", "k8s"), "*.yaml").Order(StringComparer.Ordinal)];
        Assert.Equal(3, manifests.Length);
        var (code, output) = Run("node", [Path.Combine(validator, "validate.mjs"), .. manifests]);
        Assert.True(code == 0, output);
        Assert.Contains("clado-shards.yaml: Job bitbudget-clado-shards", output, StringComparison.Ordinal);
        Assert.Contains("clado-merge.yaml: Job bitbudget-clado-merge", output, StringComparison.Ordinal);
        Assert.Equal(5, output.Split('\n').Count(l => l.StartsWith("ok ", StringComparison.Ordinal)));

        using var dir = new Assets.TempDir();
        string bad = File.ReadAllText(manifests.Single(m => m.EndsWith("clado-shards.yaml", StringComparison.Ordinal)))
            .Replace("completions: 4", "completions: four", StringComparison.Ordinal);
        File.WriteAllText(dir.File("bad.yaml"), bad);
        var (badCode, badOutput) = Run("node", Path.Combine(validator, "validate.mjs"), dir.File("bad.yaml"));
        Assert.Equal(1, badCode);
        Assert.Contains("error: ", badOutput, StringComparison.Ordinal);
        Assert.Contains("/spec/completions must be integer", badOutput, StringComparison.Ordinal);
    }

    /// <summary>deploy/gpu/check-build.sh: the -p:OrtPackage=gpu build compiles, carries the CUDA provider, and --device cuda reaches it.</summary>
    [Fact]
    public void GpuBuildCompilesAndReachesTheCudaProvider()
    {
        RequireEnabled("BITBUDGET_GPU_BUILD_TEST", "the GPU build check (deploy/gpu/check-build.sh)");
        _ = Assets.ResNet20;
        var (code, output) = Run("bash", Path.Combine("deploy", "gpu", "check-build.sh"));
        Assert.True(code == 0, output);
        Assert.Contains("gpu build: passed", output, StringComparison.Ordinal);
    }
}

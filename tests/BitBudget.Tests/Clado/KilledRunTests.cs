using System.Diagnostics;
using System.Text.Json;
using BitBudget.Tests.Support;

namespace BitBudget.Tests.Clado;

/// <summary>A real `bitbudget sensitivity` process killed mid-measurement, restarted, ends with a bit-identical Ω.</summary>
public class KilledRunTests
{
    static string[] Arguments(string store, string output) =>
    [
        "sensitivity", Assets.ResNet20, "--calib", Assets.Require("cifar10/train-5k"), "--calib-images", "64", "--sens-images", "32", "--sens-batch", "16",
        "--pairs", "all", "--store", store, "-o", output, "--quiet",
    ];

    static Process Start(string[] args)
    {
        string cli = Path.Combine(AppContext.BaseDirectory, "bitbudget.dll");
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(cli);
        foreach (string a in args) { info.ArgumentList.Add(a); }
        return Process.Start(info)!;
    }

    [Fact]
    public void KilledAndRestartedRunGivesTheSameOmega()
    {
        using var dir = new Assets.TempDir();
        // Uninterrupted reference.
        using (Process reference = Start(Arguments(dir.File("ref.db"), dir.File("ref.json"))))
        {
            reference.WaitForExit();
            Assert.True(reference.ExitCode == 0, reference.StandardError.ReadToEnd());
        }

        // Killed once a few units are committed, then restarted with the same arguments.
        using (Process killed = Start(Arguments(dir.File("run.db"), dir.File("run.json"))))
        {
            var watch = Stopwatch.StartNew();
            while (StoreProbe.Units(dir.File("run.db")) < 8 && !killed.HasExited && watch.Elapsed < TimeSpan.FromMinutes(3)) { Thread.Sleep(100); }
            Assert.False(killed.HasExited, "the run finished before it could be killed");
            killed.Kill(entireProcessTree: true);
            killed.WaitForExit();
        }
        long stored = StoreProbe.Units(dir.File("run.db"));
        Assert.InRange(stored, 8, 121);   // 2 batches × (60 units + 1 reference) = 122 when complete
        Assert.False(File.Exists(dir.File("run.json")));
        using (Process resumed = Start(Arguments(dir.File("run.db"), dir.File("run.json"))))
        {
            resumed.WaitForExit();
            Assert.True(resumed.ExitCode == 0, resumed.StandardError.ReadToEnd());
        }

        using var a = JsonDocument.Parse(File.ReadAllText(dir.File("ref.json")));
        using var b = JsonDocument.Parse(File.ReadAllText(dir.File("run.json")));
        double[] omegaA = a.RootElement.GetProperty("omega").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        double[] omegaB = b.RootElement.GetProperty("omega").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        Assert.Equal(3600, omegaA.Length);
        Assert.Equal(omegaA, omegaB);   // bit-identical
        Assert.Equal(a.RootElement.GetProperty("context").GetString(), b.RootElement.GetProperty("context").GetString());
        Assert.True(b.RootElement.GetProperty("evaluations").GetInt64() < a.RootElement.GetProperty("evaluations").GetInt64());
    }
}

using System.Diagnostics;
using BitBudget.Tests.Support;

namespace BitBudget.Tests.CommandLine;

/// <summary>
/// Issue 16, item 2: SIGTERM during the GPTQ stage (statistics pass, factorisation, rounding) ends the command as promptly as
/// during CLADO's measurement: exit 143, one error line, no output file. (ResNet-18's `sensitivity` once ran on for more than
/// 25 s in that stage and was killed by SIGKILL.)
/// </summary>
public class GptqSigtermTests
{
    [Fact]
    public void SigtermDuringGptqStatisticsAndRoundingStopsPromptly()
    {
        string model = Assets.SqueezeNet;
        string samples = Assets.Require("imagenet/samples");
        using var dir = new Assets.TempDir();
        string output = dir.File("sens.json");
        // Weights only: after the data are decoded ("calibration: …") the command goes straight to GPTQ's statistics pass over
        // 256 images, then rounds 26 layers × 3 bit-widths, before the first CLADO session exists.
        using Process run = CliRunner.Start("sensitivity", model, "--preset", "imagenet", "--calib", samples, "--calib-images", "256",
            "--activations", "none", "--sens-images", "8", "-o", output);
        var lines = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var calibrating = new ManualResetEventSlim();
        run.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null) { return; }
            lines.Enqueue(e.Data);
            if (e.Data.StartsWith("calibration:", StringComparison.Ordinal)) { calibrating.Set(); }
        };
        run.OutputDataReceived += (_, e) => { if (e.Data is not null) { lines.Enqueue("stdout: " + e.Data); } };
        run.BeginErrorReadLine();
        run.BeginOutputReadLine();
        Assert.True(calibrating.Wait(TimeSpan.FromMinutes(5), TestContext.Current.CancellationToken), "no 'calibration:' line: " + string.Join('\n', lines));
        Thread.Sleep(1500);   // inside the statistics pass (SqueezeNet, 256 images: many seconds of work)
        Assert.False(run.HasExited, "the command ended before it could be terminated: " + string.Join('\n', lines));
        var watch = Stopwatch.StartNew();
        CliRunner.Terminate(run);
        bool exited = run.WaitForExit(TimeSpan.FromSeconds(30));
        if (!exited) { run.Kill(entireProcessTree: true); }
        Assert.True(exited, "still running 30 s after SIGTERM");
        run.WaitForExit();   // flushes the stderr events
        TimeSpan stopped = watch.Elapsed;
        string stderr = string.Join('\n', lines);
        Assert.True(run.ExitCode == 143, $"exit {run.ExitCode} after {stopped.TotalSeconds:F1} s\n{stderr}");
        Assert.Single(lines, l => l.StartsWith("error: terminated (SIGTERM)", StringComparison.Ordinal));
        Assert.DoesNotContain(lines, l => l.StartsWith("sensitivities:", StringComparison.Ordinal));   // it stopped before measuring
        // A few seconds on a quiet machine; the bound leaves room for a loaded CI runner, far below the minutes the stage takes.
        Assert.True(stopped < TimeSpan.FromSeconds(20), $"took {stopped.TotalSeconds:F1} s to stop");
        Assert.Empty(Directory.GetFileSystemEntries(dir.Path));   // no report, no temp file
    }
}

using System.Diagnostics;

namespace BitBudget.Tests.Support;

/// <summary>Runs the real `bitbudget` CLI (the bitbudget.dll beside the tests) as its own process: exit code, stdout and stderr.</summary>
internal static class CliRunner
{
    public sealed record Result(int ExitCode, string Stdout, string Stderr)
    {
        /// <summary>The stderr lines that report a failure ("error: …" or "internal error: …").</summary>
        public string[] ErrorLines => [.. Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Where(l => l.StartsWith("error:", StringComparison.Ordinal) || l.StartsWith("internal error", StringComparison.Ordinal))];

        /// <summary>The single error line (fails the test unless there is exactly one).</summary>
        public string ErrorLine => Assert.Single(ErrorLines);

        public override string ToString() => $"exit {ExitCode}\nstdout: {Stdout}\nstderr: {Stderr}";
    }

    public static Process Start(params string[] args)
    {
        string cli = Path.Combine(AppContext.BaseDirectory, "bitbudget.dll");
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(cli);
        foreach (string a in args) { info.ArgumentList.Add(a); }
        info.Environment["NO_COLOR"] = "1";
        return Process.Start(info)!;
    }

    /// <summary>Runs to the end (at most 10 minutes) and returns what it printed.</summary>
    public static Result Run(params string[] args)
    {
        using Process process = Start(args);
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(10)))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"bitbudget {string.Join(' ', args)} did not finish in 10 minutes");
        }
        process.WaitForExit();
        return new Result(process.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>Waits for a started process and returns what it printed.</summary>
    public static Result Finish(Process process, Task<string> stdout, Task<string> stderr)
    {
        Assert.True(process.WaitForExit(TimeSpan.FromMinutes(10)), "the process did not finish in 10 minutes");
        process.WaitForExit();
        return new Result(process.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>Sends SIGTERM, as `kill PID` does.</summary>
    public static void Terminate(Process process)
    {
        using var kill = Process.Start(new ProcessStartInfo("kill", ["-TERM", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]) { UseShellExecute = false })!;
        kill.WaitForExit();
        Assert.Equal(0, kill.ExitCode);
    }

    /// <summary>SHA-256 of a file, to show that a command left it as it was.</summary>
    public static string Hash(string path) => Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(path)));
}

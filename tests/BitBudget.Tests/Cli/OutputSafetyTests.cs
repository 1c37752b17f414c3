using System.Diagnostics;
using BitBudget.Tests.Support;
using RuntimeOptions = BitBudget.Runtime.RuntimeOptions;

namespace BitBudget.Tests.CommandLine;

/// <summary>Issue 17, items 3, 7 and 10: no command writes over an input, replaces an output without --force, or reports a user's
/// mistake as an internal error. Each case checks the exit code, the one error line, and the files left behind.</summary>
public class OutputSafetyTests
{
    static string Idx => Assets.Require("mnist/t10k-images-idx3-ubyte");

    /// <summary>A private copy of mnist-8 (never the shared asset), with its hash.</summary>
    static (string Path, string Hash) CopyModel(Assets.TempDir dir, string name = "in.onnx")
    {
        string path = dir.File(name);
        File.Copy(Assets.Mnist8, path);
        return (path, CliRunner.Hash(path));
    }

    [Fact]
    public void QuantizeNeverWritesOverItsInputModel()
    {
        using var dir = new Assets.TempDir();
        var (model, hash) = CopyModel(dir);
        CliRunner.Result same = CliRunner.Run("quantize", model, "--bits", "8", "--rounding", "rtn", "-o", model, "--force");
        Assert.True(same.ExitCode == 2, same.ToString());
        Assert.Contains("never writes over an input", same.ErrorLine, StringComparison.Ordinal);
        Assert.Equal(hash, CliRunner.Hash(model));

        // The same file under another name: a symbolic link, a relative path and a hard link.
        File.CreateSymbolicLink(dir.File("link.onnx"), model);
        using (var ln = Process.Start("ln", [model, dir.File("hard.onnx")])) { ln.WaitForExit(); }
        foreach (string alias in new[] { dir.File("link.onnx"), Path.Combine(dir.Path, ".", "in.onnx"), dir.File("hard.onnx") })
        {
            CliRunner.Result r = CliRunner.Run("quantize", model, "--bits", "8", "--rounding", "rtn", "-o", alias, "--force");
            Assert.True(r.ExitCode == 2, alias + ": " + r);
            Assert.Contains("never writes over an input", r.ErrorLine, StringComparison.Ordinal);
        }
        Assert.Equal(hash, CliRunner.Hash(model));

        // Nor over the bit config it reads.
        File.WriteAllText(dir.File("bits.json"), """{ "version": 1, "defaults": { "bits": 8 } }""");
        string configHash = CliRunner.Hash(dir.File("bits.json"));
        CliRunner.Result config = CliRunner.Run("quantize", model, "--config", dir.File("bits.json"), "--rounding", "rtn", "-o", dir.File("bits.json"), "--force");
        Assert.True(config.ExitCode == 2, config.ToString());
        Assert.Equal(configHash, CliRunner.Hash(dir.File("bits.json")));

        // A different output still works.
        CliRunner.Result ok = CliRunner.Run("quantize", model, "--bits", "8", "--rounding", "rtn", "-o", dir.File("out.onnx"));
        Assert.True(ok.ExitCode == 0, ok.ToString());
        Assert.True(File.Exists(dir.File("out.onnx")));
    }

    [Fact]
    public void SearchAndSensitivityNeverWriteOverTheirInputs()
    {
        using var dir = new Assets.TempDir();
        var (model, hash) = CopyModel(dir);
        CliRunner.Result search = CliRunner.Run("search", model, "--method", "uniform", "--budget", "6bits", "--calib", Idx, "-o", model, "--force");
        Assert.True(search.ExitCode == 2, search.ToString());
        Assert.Contains("never writes over an input", search.ErrorLine, StringComparison.Ordinal);
        CliRunner.Result sens = CliRunner.Run("sensitivity", model, "--calib", Idx, "--first-bits", "search", "-o", model, "--force");
        Assert.True(sens.ExitCode == 2, sens.ToString());
        Assert.Equal(hash, CliRunner.Hash(model));

        // The measurement store is an input too.
        File.WriteAllText(dir.File("store.db"), "");
        CliRunner.Result store = CliRunner.Run("sensitivity", model, "--calib", Idx, "--first-bits", "search", "--store", dir.File("store.db"), "-o", dir.File("store.db"), "--force");
        Assert.True(store.ExitCode == 2, store.ToString());
        Assert.Equal(0, new FileInfo(dir.File("store.db")).Length);
    }

    [Fact]
    public void RunNeverWritesOverItsInputModel()
    {
        using var dir = new Assets.TempDir();
        Directory.CreateDirectory(dir.File("out"));
        var (model, hash) = CopyModel(dir, "out/model.onnx");   // run -o out writes out/model.onnx
        CliRunner.Result r = CliRunner.Run("run", "-m", model, "--calib", Idx, "--eval", Idx, "--eval-limit", "100", "--calib-images", "64",
            "--sens-images", "64", "--budget", "6bits", "--method", "uniform", "--quiet", "-o", dir.File("out"), "--force");
        Assert.True(r.ExitCode == 2, r.ToString());
        Assert.Contains("never writes over an input", r.ErrorLine, StringComparison.Ordinal);
        Assert.Equal(hash, CliRunner.Hash(model));
        Assert.Equal(new[] { model }, Directory.GetFileSystemEntries(dir.File("out")));
    }

    [Fact]
    public void SensitivityOutputNeedsForce()
    {
        using var dir = new Assets.TempDir();
        File.WriteAllText(dir.File("r.json"), "keep");
        CliRunner.Result r = CliRunner.Run("sensitivity", Assets.Mnist8, "--calib", Idx, "--calib-images", "64", "--sens-images", "64",
            "--first-bits", "search", "--quiet", "-o", dir.File("r.json"));
        Assert.True(r.ExitCode == 15, r.ToString());
        Assert.Contains("--force", r.ErrorLine, StringComparison.Ordinal);
        Assert.Equal("keep", File.ReadAllText(dir.File("r.json")));
    }

    [Fact]
    public void UserMistakesAreUserErrorsNotInternalErrors()
    {
        using var dir = new Assets.TempDir();
        // A folder the user cannot write: chmod 555, or /sys where even root cannot create files.
        string readOnly = dir.File("ro");
        Directory.CreateDirectory(readOnly);
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(readOnly, UnixFileMode.UserRead | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute);
        }
        try
        {
            using (File.Create(Path.Combine(readOnly, "probe"), 1, FileOptions.DeleteOnClose)) { }
            readOnly = "/sys";   // root ignores the mode bits
        }
        catch (UnauthorizedAccessException) { }
        CliRunner.Result ro = CliRunner.Run("quantize", Assets.Mnist8, "--bits", "8", "--rounding", "rtn", "-o", Path.Combine(readOnly, "out.onnx"));
        Assert.True(ro.ExitCode == 2, ro.ToString());
        Assert.Contains("cannot be written", ro.ErrorLine, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(readOnly, "out.onnx")));
        CliRunner.Result roRun = CliRunner.Run("run", "-m", Assets.Mnist8, "--calib", Idx, "--eval", Idx, "--eval-limit", "100", "--calib-images", "64",
            "--sens-images", "64", "--budget", "6bits", "--method", "uniform", "--quiet", "-o", Path.Combine(readOnly, "out"));
        Assert.True(roRun.ExitCode == 2, roRun.ToString());
        Assert.Contains("cannot be written", roRun.ErrorLine, StringComparison.Ordinal);

        // run -o an existing file.
        File.WriteAllText(dir.File("file"), "keep");
        CliRunner.Result file = CliRunner.Run("run", "-m", Assets.Mnist8, "--calib", Idx, "--eval", Idx, "--budget", "6bits", "-o", dir.File("file"), "--force");
        Assert.True(file.ExitCode == 2, file.ToString());
        Assert.Contains("is a file", file.ErrorLine, StringComparison.Ordinal);
        Assert.Equal("keep", File.ReadAllText(dir.File("file")));

        // quantize -o an existing folder.
        CliRunner.Result folder = CliRunner.Run("quantize", Assets.Mnist8, "--bits", "8", "--rounding", "rtn", "-o", dir.Path, "--force");
        Assert.True(folder.ExitCode == 2, folder.ToString());
        Assert.Contains("is a folder", folder.ErrorLine, StringComparison.Ordinal);

        // A bit config with a duplicate key, at the top level and inside "layers".
        File.WriteAllText(dir.File("dup.json"), """{ "version": 1, "layers": { "Convolution28": 4, "Convolution28": 2 } }""");
        CliRunner.Result dup = CliRunner.Run("quantize", Assets.Mnist8, "--config", dir.File("dup.json"), "--rounding", "rtn", "-o", dir.File("q.onnx"));
        Assert.True(dup.ExitCode == 2, dup.ToString());
        Assert.Contains("Convolution28", dup.ErrorLine, StringComparison.Ordinal);
        Assert.False(File.Exists(dir.File("q.onnx")));
        var e = Assert.Throws<BitBudgetException>(() => global::BitBudget.Quantization.BitConfig.Parse("""{ "version": 1, "version": 1 }"""));
        Assert.Equal(ErrorKind.InvalidInput, e.Kind);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void ThreadsAreValidated()
    {
        foreach (string threads in new[] { "99999", "-1" })
        {
            CliRunner.Result r = CliRunner.Run("eval", Assets.Mnist8, "--data", Idx, "--limit", "10", "--threads", threads);
            Assert.True(r.ExitCode == 2, threads + ": " + r);
            Assert.Contains($"--threads {threads}", r.ErrorLine, StringComparison.Ordinal);
            Assert.Contains($"{RuntimeOptions.MaxThreads}", r.ErrorLine, StringComparison.Ordinal);
        }
        Assert.Equal(4 * Environment.ProcessorCount, RuntimeOptions.MaxThreads);
        Assert.Throws<BitBudgetException>(() => new RuntimeOptions { IntraOpThreads = -1 }.Validated());
        CliRunner.Result help = CliRunner.Run("eval", "--help");
        Assert.Contains($"at most {RuntimeOptions.MaxThreads}", help.Stdout, StringComparison.Ordinal);
        CliRunner.Result ok = CliRunner.Run("eval", Assets.Mnist8, "--data", Idx, "--limit", "10", "--threads", "2");
        Assert.True(ok.ExitCode == 0, ok.ToString());
    }
}

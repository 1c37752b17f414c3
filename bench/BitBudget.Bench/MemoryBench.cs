using System.Diagnostics;
using System.Globalization;

namespace BitBudget.Bench;

/// <summary>
/// Peak resident memory and wall time of whole CLI commands, side by side: each target runs the built `bitbudget` in a child
/// process under /usr/bin/time (the kernel's maxrss, what an out-of-memory kill looks at). Args: squeezenet|resnet18|resnet20
/// [budgets…, e.g. 3GiB 1GiB] [--timeout SECONDS] [--with "CLI ARGS"…: each budget also runs with those arguments added,
/// e.g. --with "--pairs all"]. ResNet-18 is ML.NET's ImageNet featurizer from the NuGet cache: run
/// `dotnet restore bench/models/ResNet18Featurizer.csproj` once.
/// </summary>
static class MemoryBench
{
    public static int Run(string[] args)
    {
        if (args.Length == 0) { Console.Error.WriteLine("usage: memory squeezenet|resnet18|resnet20 [BUDGET …] [--timeout SECONDS] [--with \"CLI ARGS\" …]"); return 1; }
        int timeout = 0;
        var budgets = new List<string>();
        var variants = new List<string[]> { Array.Empty<string>() };
        for (int i = 1; i < args.Length; i++)
        {
            if (args[i] == "--timeout" && i + 1 < args.Length) { timeout = int.Parse(args[++i], CultureInfo.InvariantCulture); continue; }
            // --with "ARGS": also run every budget with these CLI arguments added, side by side (e.g. --with "--pairs all": the default is significant).
            if (args[i] == "--with" && i + 1 < args.Length) { variants.Add(args[++i].Split(' ', StringSplitOptions.RemoveEmptyEntries)); continue; }
            budgets.Add(args[i]);
        }
        if (budgets.Count == 0) { budgets.Add(""); }
        string samples = Measure.Assets("imagenet/samples");
        string[] command = args[0].ToLowerInvariant() switch
        {
            "squeezenet" => ["run", "-m", Measure.Assets("imagenet/squeezenet1.1.onnx"), "--preset", "imagenet", "--calib", samples, "--calib-split", "even-classes",
                "--eval", samples, "--eval-split", "odd-classes", "--sens-images", "256", "--budget", "5.5bits", "--force", "-o", Path.Combine(Path.GetTempPath(), "bb-mem-sq")],
            "resnet18" => ["sensitivity", ResNet18(), "--preset", "imagenet", "--calib", samples, "--calib-split", "even-classes", "--sens-images", "64", "--loss", "mse"],
            "resnet20" => ["run", "-m", Measure.Assets("cifar10/resnet20.onnx"), "--calib", Measure.Assets("cifar10/train-5k"), "--eval", Measure.Assets("cifar10/test"),
                "--sens-images", "512", "--budget", "3.5bits", "--force", "-o", Path.Combine(Path.GetTempPath(), "bb-mem-r20")],
            _ => throw new ArgumentException($"unknown target '{args[0]}'"),
        };
        Console.WriteLine($"{args[0]}: bitbudget {string.Join(' ', command)}{(timeout > 0 ? $" (stopped after {timeout} s)" : "")}");
        Console.WriteLine($"load before: {Measure.LoadAverage()}");
        Console.WriteLine("| --max-memory | extra arguments | peak RSS | wall | CPU (user+sys) | exit | last line | log |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|");
        foreach (string budget in budgets)
        {
            foreach (string[] extra in variants)
            {
                string[] full = budget.Length > 0 ? [.. command, .. extra, "--max-memory", budget] : [.. command, .. extra];
                (long kb, double wall, double cpu, int exit, string last, string log) = Child(full, timeout);
                Console.WriteLine($"| {(budget.Length > 0 ? budget : "default")} | {string.Join(' ', extra)} | {kb / 1024.0 / 1024.0:F2} GiB | {wall:F0} s | {cpu:F0} s | {exit} | {last} | {log} |");
            }
        }
        Console.WriteLine($"load after: {Measure.LoadAverage()}");
        return 0;
    }

    internal static string ResNet18()
    {
        string home = Environment.GetEnvironmentVariable("NUGET_PACKAGES") ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        string path = Path.Combine(home, "microsoft.ml.dnnimagefeaturizer.resnet18", "0.24.0", "tools", "DnnImageModels", "ResNet18Onnx", "ResNet18.onnx");
        return File.Exists(path) ? path : throw new FileNotFoundException($"{path} is missing; run `dotnet restore bench/models/ResNet18Featurizer.csproj` first.");
    }

    /// <summary>
    /// Runs the CLI under /usr/bin/time; returns maxrss (kB), wall seconds, CPU seconds (user + sys, less sensitive to the
    /// machine's load than wall), exit code, the last stderr line before time's own, and a file holding the whole stderr.
    /// </summary>
    static (long Kb, double Wall, double Cpu, int Exit, string Last, string Log) Child(string[] cli, int timeout)
    {
        // The checkout's own wrapper (it builds the CLI in Release when a source is newer).
        var root = new DirectoryInfo(AppContext.BaseDirectory);
        while (root is not null && !File.Exists(Path.Combine(root.FullName, "BitBudget.slnx"))) { root = root.Parent; }
        string bitbudget = Path.Combine(root?.FullName ?? throw new InvalidOperationException("BitBudget.slnx not found"), "bitbudget");
        var start = new ProcessStartInfo("/usr/bin/time") { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (string a in (string[])["-f", "BBMEM %M %e %x %U %S", .. timeout > 0 ? ["timeout", timeout.ToString(CultureInfo.InvariantCulture)] : Array.Empty<string>(), bitbudget, .. cli, "--quiet"])
        {
            start.ArgumentList.Add(a);
        }
        using var process = Process.Start(start)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        string stderr = process.StandardError.ReadToEnd();
        process.WaitForExit();
        string log = Path.Combine(Path.GetTempPath(), $"bb-mem-{DateTime.UtcNow:yyyyMMdd-HHmmss}.log");
        File.WriteAllText(log, stdout.Result + stderr);
        string[] lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        string mem = lines.LastOrDefault(l => l.StartsWith("BBMEM ", StringComparison.Ordinal)) ?? "BBMEM 0 0 -1 0 0";
        string[] f = mem.Split(' ');
        string last = lines.LastOrDefault(l => !l.StartsWith("BBMEM ", StringComparison.Ordinal) && !l.StartsWith("Command ", StringComparison.Ordinal)) ?? "";
        return (long.Parse(f[1], CultureInfo.InvariantCulture), double.Parse(f[2], CultureInfo.InvariantCulture),
            double.Parse(f[4], CultureInfo.InvariantCulture) + double.Parse(f[5], CultureInfo.InvariantCulture), int.Parse(f[3], CultureInfo.InvariantCulture),
            last.Length > 120 ? last[..120] : last, log);
    }
}

using System.CommandLine;
using System.Diagnostics;
using BitBudget.Data;
using BitBudget.Methods;
using BitBudget.Optimization;
using BitBudget.Pipeline;
using BitBudget.Clado;
using BitBudget.Workflow;
using Spectre.Console;

namespace BitBudget.Cli.Commands;

/// <summary>The whole pipeline on the CNN this project trains and ships (demo/model), with Fashion-MNIST fetched on first use.</summary>
static class DemoCommand
{
    public static Command Create()
    {
        var output = new Option<DirectoryInfo>("--output", "-o") { Description = "Output folder (overwritten).", DefaultValueFactory = _ => new DirectoryInfo("demo-out") };
        var json = new Option<bool>("--json") { Description = "Print the summary as JSON on stdout." };
        var quiet = new Option<bool>("--quiet") { Description = "No progress bars." };
        var command = new Command("demo", "Run every method at three budgets on the shipped demo CNN (Fashion-MNIST) and print the table.") { output, json, quiet };
        command.SetAction(parse =>
        {
            Ui.Quiet = parse.GetValue(quiet);
            string root = FindDemo();
            string data = Path.Combine(root, "data");
            if (!File.Exists(Path.Combine(data, "t10k-images-idx3-ubyte.gz"))) { Fetch(root); }
            Preprocessing pre = Preprocessing.Load(Path.Combine(root, "model", "preprocessing.json"));
            var pipeline = MpqPipeline.Open(Path.Combine(root, "model", "demo-cnn.onnx"), PipelineOptions.Default with
            {
                Sensitivity = new SensitivityOptions { BatchSize = 256 },
                Search = new SearchOptions { TimeLimit = TimeSpan.FromSeconds(20) },
            });
            Dataset train = Ui.LoadData(new DataOptions { Path = Path.Combine(data, "train-images-idx3-ubyte.gz"), Preprocessing = pre, Limit = 2000, Seed = 0 });
            Dataset test = Ui.LoadData(new DataOptions { Path = Path.Combine(data, "t10k-images-idx3-ubyte.gz"), Preprocessing = pre });
            Dataset sensitivity = train.Sample(512, 1);
            var sensitivityIds = sensitivity.Ids.ToHashSet(StringComparer.Ordinal);
            Dataset heldOut = train.Subset([.. Enumerable.Range(0, train.Count).Where(i => !sensitivityIds.Contains(train.Ids[i]))]).Sample(512, 2);
            var request = new RunRequest
            {
                Pipeline = pipeline,
                Calibration = train.Sample(512, 0),
                Sensitivity = sensitivity,
                Evaluation = test,
                HeldOut = heldOut,
                Methods = SearchMethods.Names,
                Budgets = [[Budget.Parse("2.25bits")], [Budget.Parse("2.5bits")], [Budget.Parse("3bits")]],
                OutputDirectory = parse.GetRequiredValue(output).FullName,
                Force = true,
                Seeds = new Dictionary<string, long> { ["calibration"] = 0, ["sensitivity"] = 1 },
                CommandLine = Environment.GetCommandLineArgs(),
            };
            return RunCommand.Print(RunCommand.Execute(request), parse.GetValue(json));
        });
        return command;
    }

    static string FindDemo()
    {
        foreach (string start in new[] { Environment.CurrentDirectory, AppContext.BaseDirectory })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                string candidate = Path.Combine(dir.FullName, "demo");
                if (File.Exists(Path.Combine(candidate, "model", "demo-cnn.onnx"))) { return candidate; }
            }
        }
        throw Errors.FileNotFound("The demo model (demo/model/demo-cnn.onnx) was not found above the current folder or the tool; run from a BitBudget checkout.");
    }

    static void Fetch(string root)
    {
        string script = Path.Combine(root, "fetch-data.sh");
        Ui.Err.WriteLine($"fetching the demo data with {script} …");
        using var process = Process.Start(new ProcessStartInfo("bash", [script]) { UseShellExecute = false })
            ?? throw Errors.Runtime($"Cannot start {script}.");
        process.WaitForExit();
        if (process.ExitCode != 0) { throw Errors.Runtime($"Fetching the demo data failed ({script} exited with {process.ExitCode})."); }
    }
}

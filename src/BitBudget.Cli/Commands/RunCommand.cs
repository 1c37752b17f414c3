using System.CommandLine;
using System.Globalization;
using BitBudget.BestOf;
using BitBudget.Data;
using BitBudget.Methods;
using BitBudget.Optimization;
using BitBudget.Pipeline;
using BitBudget.Workflow;
using Spectre.Console;

namespace BitBudget.Cli.Commands;

static class RunCommand
{
    public static Command Create()
    {
        var model = new Option<FileInfo>("--model", "-m") { Description = "ONNX model file.", Required = true };
        var eval = new Option<string>("--eval") { Description = "Evaluation images (disjoint from --calib).", Required = true };
        var evalSplit = new Option<string>("--eval-split") { Description = "Split of --eval: all, even-classes, odd-classes.", DefaultValueFactory = _ => "all" };
        var evalLimit = new Option<int?>("--eval-limit") { Description = "Evaluate at most this many images (first of every class)." };
        var budget = new Option<string[]>("--budget") { Description = "Budget (3.5bits, 3bits-searched, 120KB, 2GBitOPs; combine kinds with commas); repeat for a sweep.", Required = true, AllowMultipleArgumentsPerToken = false };
        var pareto = new Option<string?>("--pareto") { Description = "Extra sweep points, e.g. \"3bits 3.5bits 4bits\"." };
        var method = new Option<string>("--method") { Description = "clado, ompq, independent, uniform, best (ranked clado and independent solutions judged on held-out images) or all (comma-separated list allowed).", DefaultValueFactory = _ => "all" };
        var output = new Option<DirectoryInfo>("--output", "-o") { Description = "Output folder.", Required = true };
        var force = new Option<bool>("--force") { Description = "Write into an existing, non-empty output folder." };
        var json = new Option<bool>("--json") { Description = "Print the summary as JSON on stdout." };
        var checkSim = new Option<bool>("--check-simulation") { Description = "Also evaluate the simulated model of every point (the exported one always is)." };
        var bestCandidates = new Option<int>("--best-candidates")
        {
            Description = "Method best: ranked solutions per search method it compares on the held-out images (1 = each optimum only).",
            DefaultValueFactory = _ => 3,
        };
        bestCandidates.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<int>() < 1) { r.AddError("--best-candidates must be at least 1."); }
        });
        var bestJudge = new Option<string>("--best-judge")
        {
            Description = "Method best: held-out measure it ranks candidates by: kl (divergence from the float model, default) or ce (cross-entropy against the labels).",
            DefaultValueFactory = _ => "kl",
        };
        bestJudge.AcceptOnlyFromAmong("kl", "ce");
        var bestJudgeWeights = new Option<string>("--best-judge-weights")
        {
            Description = "Method best: weights it judges candidates with: measured (independently rounded, as measured; default) or final (as exported: with --final-rounding sequential one re-rounding per candidate).",
            DefaultValueFactory = _ => "measured",
        };
        bestJudgeWeights.AcceptOnlyFromAmong("measured", "final");
        var args = new PipelineArguments();
        var command = new Command("run", "The whole pipeline: calibrate → measure → search → export → evaluate the exported model → reports.")
        {
            model, eval, evalSplit, evalLimit, budget, pareto, method, output, force, json, checkSim, bestCandidates, bestJudge, bestJudgeWeights,
        };
        args.AddTo(command);
        args.Rounding.AddFinalTo(command);
        command.SetAction(parse =>
        {
            var budgets = parse.GetRequiredValue(budget).Concat((parse.GetValue(pareto) ?? "").Split([' ', ';'], StringSplitOptions.RemoveEmptyEntries))
                .Select(Budget.ParseList).ToList();
            var methods = Methods(parse.GetRequiredValue(method));
            string outDir = parse.GetRequiredValue(output).FullName;
            if (File.Exists(outDir))   // also checked by RunWorkflow; here it fails before any data is decoded
            {
                throw Errors.InvalidInput($"Output '{outDir}' is a file; `run -o` takes a folder.");
            }
            MpqPipeline pipeline = MpqPipeline.Open(parse.GetRequiredValue(model).FullName, args.Options(parse));
            var (calibration, sensitivity, heldOut) = args.LoadCalibrationWithHeldOut(parse, pipeline);
            Dataset evaluation = Ui.LoadData(args.Data.Options(parse, parse.GetRequiredValue(eval), pipeline.Prepared.InputShape, parse.GetRequiredValue(evalSplit), parse.GetValue(evalLimit)), pipeline.Prepared);
            var request = new RunRequest
            {
                Pipeline = pipeline,
                Calibration = calibration,
                Sensitivity = sensitivity,
                Evaluation = evaluation,
                HeldOut = heldOut,
                Methods = methods,
                BestCandidates = parse.GetValue(bestCandidates),
                BestJudge = parse.GetValue(bestJudge) == "ce" ? BestJudge.CrossEntropy : BestJudge.KlDivergence,
                BestJudgesFinalWeights = parse.GetValue(bestJudgeWeights) == "final",
                Budgets = budgets,
                OutputDirectory = outDir,
                Force = parse.GetValue(force),
                EvaluateSimulation = parse.GetValue(checkSim),
                Seeds = new Dictionary<string, long> { ["calibration"] = parse.GetValue(args.Seed), ["sensitivity"] = parse.GetValue(args.Seed) + 1 },
                CommandLine = Environment.GetCommandLineArgs(),
            };
            RunSummary summary = Execute(request);
            return Print(summary, parse.GetValue(json));
        });
        return command;
    }

    internal static IReadOnlyList<string> Methods(string text)
    {
        var list = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();
        if (list.Contains("all")) { return SearchMethods.Names; }
        foreach (string m in list) { _ = SearchMethods.Get(m); }
        return list;
    }

    internal static RunSummary Execute(RunRequest request) =>
        Ui.WithDynamicProgress("run", report => RunWorkflow.Execute(request, new StageProgress(report), Ui.Cancellation));

    sealed class StageProgress(Action<long, long, string?> report) : IProgress<RunProgress>
    {
        public void Report(RunProgress value) => report(value.Done, value.Total, $"{value.Stage} {value.Detail}");
    }

    internal static int Print(RunSummary summary, bool json)
    {
        if (json)
        {
            Ui.WriteJson(new RunJson(summary.OutputDirectory, summary.FpTop1, summary.FpTop5,
                [.. summary.Points.Select(p => new RunPointJson(p.Method, p.Budget, p.AverageBits, p.SizeBytes, p.PredictedLoss, p.Top1Simulated, p.Top1Exported, p.Top5Exported, p.Status, p.Gap, p.ModelFile))],
                summary.Warnings, summary.Timings, summary.Ompq));
            return ExitCodes.Ok;
        }
        foreach (string w in summary.Warnings) { Ui.Err.MarkupLine($"[yellow]{Markup.Escape(w)}[/]"); }
        var budgets = summary.Points.Select(p => p.Budget).Distinct().ToList();
        var table = new Table().Border(TableBorder.Rounded)
            .Title($"top-1 of the exported models (%), full precision {summary.FpTop1:F2}");
        table.AddColumn("method");
        foreach (string b in budgets) { table.AddColumn(new TableColumn(Markup.Escape(b)).RightAligned()); }
        foreach (var group in summary.Points.GroupBy(p => p.Method))
        {
            table.AddRow([group.Key, .. budgets.Select(b => group.FirstOrDefault(p => p.Budget == b) is RunPoint p
                ? $"{p.Top1Exported:F2} [grey]({p.AverageBits.ToString("F2", CultureInfo.InvariantCulture)} b)[/]" : "–")]);
        }
        Ui.Out.Write(table);
        foreach (var o in summary.Ompq)
        {
            Ui.Out.MarkupLine(Markup.Escape(FormattableString.Invariant(
                $"ompq @ {o.Budget}: β = {o.Beta:G4} ({o.BetaRule}), bits {{{string.Join(",", o.CandidateBits ?? [])}}}, θ entropy {o.ThetaEntropy:F3} nats = {o.ThetaEntropyNormalized:F3} of uniform ({o.Effect})")));
        }
        Ui.Out.MarkupLine($"wrote {Markup.Escape(summary.OutputDirectory)}: bits.json, model.onnx, models/, layers.csv/json, pareto.json/png, manifest.json, report.html " +
            $"({summary.Timings.Sum(t => t.Seconds):F0} s: {string.Join(", ", summary.Timings.Select(t => $"{t.Stage} {t.Seconds:F1} s"))})");
        return ExitCodes.Ok;
    }
}

using System.CommandLine;
using BitBudget.Methods;
using BitBudget.Ompq;
using BitBudget.Optimization;
using BitBudget.Pipeline;
using BitBudget.Quantization;
using BitBudget.Clado;
using Spectre.Console;

namespace BitBudget.Cli.Commands;

static class SearchCommand
{
    public static Command Create()
    {
        var model = new Argument<FileInfo>("model") { Description = "ONNX model file." };
        var method = new Option<string>("--method") { Description = "clado, independent, uniform or ompq.", DefaultValueFactory = _ => "clado" };
        // Every registered method that needs no held-out images (best is a run method: it judges on held-out images).
        method.AcceptOnlyFromAmong([.. SearchMethods.All.Where(m => !m.NeedsHeldOut).Select(m => m.Name)]);
        var budget = new Option<string>("--budget") { Description = "Budget(s): 3.5bits, 3bits-searched, 120KB, 1.5MiB, 2GBitOPs; combine with commas.", Required = true };
        var output = new Option<FileInfo?>("--output", "-o") { Description = "Bit configuration JSON to write (quantize --config reads it)." };
        var force = new Option<bool>("--force") { Description = "Overwrite an existing output file." };
        var json = new Option<bool>("--json") { Description = "Print the search result as JSON on stdout." };
        var rank = new Option<int>("--rank")
        {
            Description = "clado/independent: list the N best distinct configurations by the method's objective (the first is written to --output).",
            DefaultValueFactory = _ => 1,
        };
        rank.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<int>() < 1) { r.AddError("--rank must be at least 1."); }
        });
        var args = new PipelineArguments();
        var command = new Command("search", "Choose per-layer bits for a budget with CLADO (exact IQP), the independent ILP, uniform bits or OMPQ.") { model, method, budget, output, force, json, rank };
        args.AddTo(command);
        command.SetAction(parse =>
        {
            var budgets = Budget.ParseList(parse.GetRequiredValue(budget));
            FileInfo? outFile = parse.GetValue(output);
            if (outFile is not null)
            {
                OutputGuard.CheckFile(outFile.FullName, parse.GetValue(force), [parse.GetRequiredValue(model).FullName, .. args.InputFiles(parse)]);
            }
            MpqPipeline opened = MpqPipeline.Open(parse.GetRequiredValue(model).FullName, args.Options(parse));
            string name = parse.GetRequiredValue(method);
            ISearchMethod searchMethod = SearchMethods.Get(name);
            if (searchMethod.Limitation(opened) is string limitation)
            {
                throw Errors.InvalidInput($"{limitation}; use another method or fix the first and last layers' bits.");
            }
            // An infeasible budget fails before any data is read; a budget every configuration meets is said so.
            if (opened.CheckBudget(budgets) is string note) { Ui.Err.MarkupLine($"[yellow]warning:[/] {Markup.Escape(note)}"); }
            var (calibration, sensitivity, heldOut) = args.LoadCalibrationWithHeldOut(parse, opened);
            SensitivityResult? s = null;
            // OMPQ's held-out β judges simulated configurations (on images in neither draw), so it needs calibration too;
            // uniform bits and OMPQ with a fixed β search the opened pipeline.
            bool heldOutOmpq = name == "ompq" && opened.Options.Ompq.BetaRule == OmpqBetaRule.HeldOut;
            MpqPipeline pipeline = opened;
            if (searchMethod.NeedsSensitivity || heldOutOmpq)
            {
                CalibratedPipeline calibrated = opened.Calibrate(calibration, Ui.Cancellation);
                if (searchMethod.NeedsSensitivity) { s = PipelineArguments.Measure(calibrated, sensitivity); }
                pipeline = calibrated;
            }
            var context = new SearchContext
            {
                Pipeline = pipeline, Images = sensitivity, Sensitivity = s, HeldOut = heldOut, Psd = parse.GetValue(args.Psd), Rank = parse.GetValue(rank),
            };
            MethodOutcome outcome = searchMethod.Search(context, budgets, Ui.Cancellation);
            IReadOnlyList<LayerBits> config = outcome.Config;
            string[] budgetLabels = [.. budgets.Select(b => b.ToString())];
            IReadOnlyList<SearchJson> report;
            if (outcome.Ompq is OmpqSearchResult o)
            {
                if (!Ui.Quiet)
                {
                    Ui.Err.WriteLine(o.Units.Format());
                    Ui.Err.WriteLine(o.Describe());
                }
                (long ompqBytes, double ompqAverage) = pipeline.Size(config);
                report = [SearchJson.From(o, config, budgetLabels, ompqBytes, ompqAverage)];
            }
            else
            {
                IReadOnlyList<SearchResult> ranked = outcome.Ranked;
                SearchResult r = ranked[0];
                report = [.. ranked.Select(x => SearchJson.From(x, budgetLabels))];
                if (!Ui.Quiet)
                {
                    Ui.Err.MarkupLine($"[grey]{r.Method}: {r.Status}, objective {r.Objective:G6}, bound {r.BestBound:G6}, gap {r.Gap:P2}, {r.SolveTime.TotalSeconds:F2} s ({Markup.Escape(r.Solver)})[/]");
                }
                if (ranked.Count > 1 && !parse.GetValue(json))
                {
                    var table = new Table().Border(TableBorder.Rounded).Title($"{ranked.Count} best configurations by the {name} objective");
                    foreach (string c in new[] { "#", "objective", "avg bits", "status", "differs from #1" }) { table.AddColumn(c); }
                    for (int i = 0; i < ranked.Count; i++)
                    {
                        SearchResult x = ranked[i];
                        string diff = string.Join(", ", x.Bits.Where(b => r.Bits[b.Key] != b.Value).Select(b => $"{b.Key} {r.Bits[b.Key]}→{b.Value}"));
                        table.AddRow($"{i + 1}", $"{x.Objective:G6}", $"{x.AverageBits:F3}", x.Status.ToString(), Markup.Escape(i == 0 ? "" : diff));
                    }
                    Ui.Out.Write(table);
                }
            }
            if (outFile is not null) { BitConfig.FromResolved(config).Save(outFile.FullName); }
            if (parse.GetValue(json))
            {
                // One object per search; --rank N asks for a list, so it prints an array even when fewer were found.
                if (parse.GetValue(rank) > 1 && outcome.Ompq is null) { Ui.WriteJson(report.ToList()); }
                else { Ui.WriteJson(report[0]); }
                return ExitCodes.Ok;
            }
            (long bytes, double avg) = pipeline.Size(config);
            Ui.Out.MarkupLine($"[bold]{name}[/] @ {Markup.Escape(string.Join("+", budgets))}: {avg:F3} avg bits, {bytes:N0} weight bytes");
            Ui.Out.WriteLine(BitConfig.Describe(config));
            return ExitCodes.Ok;
        });
        return command;
    }
}

using System.CommandLine;
using BitBudget.Data;
using BitBudget.Evaluation;
using BitBudget.Graph;
using BitBudget.Runtime;
using Spectre.Console;

namespace BitBudget.Cli.Commands;

static class EvalCommand
{
    public static Command Create()
    {
        var model = new Argument<FileInfo>("model") { Description = "ONNX model file (full precision or quantized)." };
        var data = new Option<string>("--data") { Description = "Images: class folders, flat <class>_*.JPEG folder, IDX file or ERAN CSV.", Required = true };
        var split = new Option<string>("--split") { Description = "all, even-classes or odd-classes.", DefaultValueFactory = _ => "all" };
        var limit = new Option<int?>("--limit") { Description = "Evaluate at most this many images." };
        var seed = new Option<int?>("--seed") { Description = "Draw the --limit images at random with this seed (default: first of every class)." };
        var batch = new Option<int>("--batch") { Description = "Images per ONNX Runtime run.", DefaultValueFactory = _ => 64 };
        var json = new Option<bool>("--json") { Description = "Print the result as JSON on stdout." };
        var dataArgs = new DataArguments();
        var runtime = new RuntimeArguments();
        var modelArgs = new ModelArguments();
        var command = new Command("eval", "Measure top-1/top-5 accuracy and cross-entropy of a model on labeled images.") { model, data, split, limit, seed, batch, json };
        dataArgs.AddTo(command);
        runtime.AddTo(command);
        modelArgs.AddTo(command);
        command.SetAction(parse =>
        {
            RuntimeOptions runtimeOptions = runtime.Options(parse);   // a bad --threads fails before any image is decoded
            OnnxModel loaded = OnnxModel.Load(parse.GetRequiredValue(model).FullName);
            // Only the exact rewrites (dynamic batch …): a QDQ model has no float weights to list.
            (OnnxModel prepared, PreparationReport report) = ModelPreparer.Prepare(loaded, modelArgs.OutputName(parse));
            DataOptions options = dataArgs.Options(parse, parse.GetRequiredValue(data), prepared.InputShape, parse.GetRequiredValue(split), parse.GetValue(limit), parse.GetValue(seed));
            OutputKind? kind = modelArgs.OutputKind(parse);
            Ui.Note(ModelArguments.Describe(report, kind ?? report.OutputKind, kind is not null));
            Dataset dataset = Ui.LoadData(options, prepared);
            using var engine = EvaluationEngine.Create(prepared, runtimeOptions, kind);
            engine.CheckInput(dataset);
            EvaluationResult result = Ui.WithProgress($"evaluating {dataset.Count:N0} images", dataset.Count,
                progress => engine.Evaluate(dataset, new EvaluationOptions { BatchSize = parse.GetValue(batch) }, progress, Ui.Cancellation));
            if (parse.GetValue(json))
            {
                Ui.WriteJson(new EvalJson(loaded.Source, dataset.Description, dataset.Hash, result.Count, result.Top1, result.Top5, result.CrossEntropy, result.ImagesPerSecond, report.Output, OutputKinds.Name(engine.OutputKind), dataset.LabelOffset));
                return ExitCodes.Ok;
            }
            Ui.Out.MarkupLine($"[bold]{Markup.Escape(Path.GetFileName(loaded.Source))}[/] on {Markup.Escape(dataset.Description)}");
            Ui.Out.MarkupLine($"top-1 [green]{result.Top1:F2} %[/]  top-5 {result.Top5:F2} %  cross-entropy {result.CrossEntropy:F4}  ({result.Count:N0} images, {result.ImagesPerSecond:N0} images/s)");
            return ExitCodes.Ok;
        });
        return command;
    }
}

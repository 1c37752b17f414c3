using System.CommandLine;
using BitBudget.Export;
using BitBudget.Graph;
using BitBudget.Quantization;
using Spectre.Console;

namespace BitBudget.Cli.Commands;

static class QuantizeCommand
{
    public static Command Create()
    {
        var model = new Argument<FileInfo>("model") { Description = "ONNX model file." };
        var config = new Option<FileInfo?>("--config", "-c") { Description = "Bit configuration JSON (docs/quantization.md)." };
        var bits = new Option<int?>("--bits") { Description = "Uniform weight bits 2–8 instead of --config (first and last layer stay at 8)." };
        var output = new Option<FileInfo>("--output", "-o") { Description = "Output QDQ ONNX file.", Required = true };
        var activations = new Option<string>("--activations") { Description = "Activation quantization: none (weights only) or a8 (8-bit inputs of quantized layers).", DefaultValueFactory = _ => "none" };
        activations.AcceptOnlyFromAmong("none", "a8");
        var calib = new Option<DirectoryInfo?>("--calib") { Description = "Calibration images for --activations a8." };
        var force = new Option<bool>("--force") { Description = "Overwrite an existing output file." };
        var json = new Option<bool>("--json") { Description = "Print the per-layer storage report as JSON on stdout." };
        var command = new Command("quantize", "Quantize a model with a bit configuration and write a runnable QDQ ONNX model.")
        {
            model, config, bits, output, activations, calib, force, json,
        };
        command.SetAction(parse =>
        {
            FileInfo? configFile = parse.GetValue(config);
            int? uniform = parse.GetValue(bits);
            if ((configFile is null) == (uniform is null))
            {
                throw new BitBudgetException(ErrorKind.InvalidInput, "Give exactly one of --config FILE or --bits N.");
            }
            if (uniform is int u && u is < 2 or > 8)
            {
                throw new BitBudgetException(ErrorKind.InvalidInput, $"--bits {u} is not supported; expected 2–8.");
            }
            string outPath = parse.GetRequiredValue(output).FullName;
            if (File.Exists(outPath) && !parse.GetValue(force))
            {
                throw new BitBudgetException(ErrorKind.OutputExists, $"Output '{outPath}' already exists; use --force to overwrite it.");
            }
            BitConfig bitConfig = configFile is null ? BitConfig.Uniform(uniform!.Value) : BitConfig.Load(configFile.FullName);
            bool a8 = parse.GetValue(activations) == "a8";
            if (a8 && parse.GetValue(calib) is null)
            {
                throw new BitBudgetException(ErrorKind.InvalidInput, "--activations a8 needs calibration images (--calib DIR).");
            }
            if (a8)
            {
                // The calibration loader (BitBudget.Data) feeds ActivationObserver; until it is wired here, refuse rather than guess ranges.
                throw new BitBudgetException(ErrorKind.InvalidInput, "--activations a8 is not available in this build yet; use --activations none.");
            }
            OnnxModel loaded = OnnxModel.Load(parse.GetRequiredValue(model).FullName);
            (OnnxModel prepared, ModelSummary summary) = ModelInspector.Inspect(loaded);
            IReadOnlyList<LayerBits> resolved = bitConfig.Resolve(summary.Layers);
            // --activations none: weights only, whatever activation bits the config names.
            resolved = [.. resolved.Select(b => b with { ActivationBits = 0 })];
            var weights = new QuantizedWeights(prepared, summary.Layers);
            ExportResult result = QdqExporter.ExportToFile(outPath, parse.GetValue(force), prepared, summary.Layers, resolved, weights);
            long floatBytes = summary.Layers.Sum(l => l.WeightCount) * 4;
            if (parse.GetValue(json))
            {
                Ui.WriteJson(new
                {
                    Output = outPath,
                    result.Opset,
                    FileBytes = result.ModelBytes,
                    result.AccountedWeightBytes,
                    result.StoredWeightBytes,
                    FloatWeightBytes = floatBytes,
                    result.Layers,
                });
                return ExitCodes.Ok;
            }
            var table = new Table().Border(TableBorder.Rounded).Title($"[bold]{Markup.Escape(Path.GetFileName(outPath))}[/]: opset {result.Opset}");
            table.AddColumns("layer", "bits", "storage", "weights", "accounted B", "stored B", "scales B", "act bits");
            foreach (var c in table.Columns.Skip(1)) { c.RightAligned(); }
            foreach (ExportedLayer l in result.Layers)
            {
                table.AddRow(Markup.Escape(l.Layer), l.WeightBits == 0 ? "float" : l.WeightBits.ToString(System.Globalization.CultureInfo.InvariantCulture), l.Storage,
                    Ui.Count(l.Elements), Ui.Count(l.AccountedBytes), Ui.Count(l.StoredBytes), Ui.Count(l.ScaleBytes), l.ActivationBits == 0 ? "-" : l.ActivationBits.ToString(System.Globalization.CultureInfo.InvariantCulture));
            }
            table.AddEmptyRow();
            table.AddRow("[bold]total[/]", "", "", Ui.Count(result.Layers.Sum(l => l.Elements)), Ui.Count(result.AccountedWeightBytes), Ui.Count(result.StoredWeightBytes),
                Ui.Count(result.Layers.Sum(l => l.ScaleBytes)), "");
            Ui.Err.Write(table);
            Ui.Err.MarkupLine($"wrote [blue]{Markup.Escape(outPath)}[/]: {Ui.Count(result.ModelBytes)} bytes (float weights {Ui.Count(floatBytes)} B → {Ui.Count(result.StoredWeightBytes)} B stored); " +
                "checked in ONNX Runtime at ORT_ENABLE_ALL.");
            return ExitCodes.Ok;
        });
        return command;
    }
}

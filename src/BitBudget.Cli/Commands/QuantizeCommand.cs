using System.CommandLine;
using BitBudget.Data;
using BitBudget.Evaluation;
using BitBudget.Export;
using BitBudget.Graph;
using BitBudget.Quantization;
using BitBudget.Rounding;
using BitBudget.Runtime;
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
        var calib = new Option<string?>("--calib")
        {
            Description = "Calibration images (class folders, flat <class>_*.JPEG folder, IDX file or ERAN CSV) for gptq / bias correction and --activations a8; keep them apart from the evaluation set.",
        };
        var calibSplit = new Option<string>("--calib-split") { Description = "Split of --calib: all, even-classes, odd-classes.", DefaultValueFactory = _ => "all" };
        var calibSeed = new Option<int>("--calib-seed") { Description = "Seed of the random draw of the --calib-images calibration images (spread over all classes).", DefaultValueFactory = _ => 0 };
        // The same default as run/search/sensitivity (PipelineOptions.Default), so a quantized model and a run's export agree (issue 21).
        var actMethod = new Option<ActivationCalibration>("--act-calibration")
        {
            Description = $"Activation range for a8: minmax, percentile (99.99 %) or mse (default {Pipeline.PipelineOptions.Default.ActivationCalibration.ToString().ToLowerInvariant()}, as run).",
            DefaultValueFactory = _ => Pipeline.PipelineOptions.Default.ActivationCalibration,
        };
        var force = new Option<bool>("--force") { Description = "Overwrite an existing output file." };
        var json = new Option<bool>("--json") { Description = "Print the per-layer storage report as JSON on stdout." };
        var nbits = new Option<bool>("--matmul-nbits")
        {
            Description = "Write 3–4-bit MatMul weights as ONNX Runtime's com.microsoft.MatMulNBits (block-wise int4, native CPU kernel; runs in ONNX Runtime only) instead of QDQ.",
        };
        var attention = PipelineArguments.CreateAttentionOption();
        var command = new Command("quantize", "Quantize a model with a bit configuration and write a runnable QDQ ONNX model.")
        {
            model, config, bits, output, activations, attention, calib, calibSplit, calibSeed, actMethod, force, json, nbits,
        };
        var rounding = new RoundingArguments();
        rounding.AddTo(command);
        rounding.AddFinalTo(command);
        var dataArgs = new DataArguments();
        dataArgs.AddTo(command);
        var runtime = new RuntimeArguments();
        runtime.AddTo(command);
        var modelArgs = new ModelArguments();
        modelArgs.AddTo(command);
        command.SetAction(parse =>
        {
            FileInfo? configFile = parse.GetValue(config);
            int? uniform = parse.GetValue(bits);
            if ((configFile is null) == (uniform is null))
            {
                throw Errors.InvalidInput("Give exactly one of --config FILE or --bits N.");
            }
            if (uniform is int u && u is < 2 or > 8)
            {
                throw Errors.InvalidInput($"--bits {u} is not supported; expected 2–8.");
            }
            string? calibInput = parse.GetValue(calib);
            string outPath = OutputGuard.CheckFile(parse.GetRequiredValue(output).FullName, parse.GetValue(force),
                [parse.GetRequiredValue(model).FullName, configFile?.FullName, .. OutputGuard.DataFiles(calibInput), .. dataArgs.InputFiles(parse)]);
            BitConfig bitConfig = configFile is null ? BitConfig.Uniform(uniform!.Value) : BitConfig.Load(configFile.FullName);
            WeightRounding weightRounding = rounding.Rounding(parse);
            bool a8 = parse.GetValue(activations) == "a8";
            bool attentionA8 = PipelineArguments.AttentionMode(parse.GetRequiredValue(attention)) == AttentionMatMulMode.A8;
            string? calibPath = parse.GetValue(calib);
            if (calibPath is null && (a8 || attentionA8 || weightRounding.NeedsCalibration))
            {
                throw Errors.InvalidInput(a8 || attentionA8
                    ? $"{(a8 ? "--activations a8" : "--attention-matmuls a8")} needs calibration images (--calib DATA)."
                    : weightRounding.Method == RoundingMethod.Gptq
                        ? "--rounding gptq (the default) needs calibration images: give --calib DATA, or use --rounding rtn."
                        : "--bias-correction on needs calibration images: give --calib DATA, or use --bias-correction off.");
            }
            OnnxModel loaded = OnnxModel.Load(parse.GetRequiredValue(model).FullName);
            (OnnxModel prepared, ModelSummary summary) = ModelInspector.Inspect(loaded, modelArgs.OutputName(parse));
            OutputKind? kind = modelArgs.OutputKind(parse);
            IReadOnlyList<LayerBits> resolved = bitConfig.Resolve(summary.Layers);
            // --activations none: weights only, whatever activation bits the config names; a8: 8-bit inputs of every quantized layer.
            resolved = [.. resolved.Select(b => b with { ActivationBits = a8 && !b.IsFloat ? 8 : 0 })];
            RuntimeOptions runtimeOptions = runtime.Options(parse);
            Dataset? calibration = null;
            if (calibPath is not null)
            {
                DataOptions calibOptions = dataArgs.Options(parse, calibPath, prepared.InputShape, parse.GetRequiredValue(calibSplit), weightRounding.CalibrationImages, parse.GetValue(calibSeed));
                Ui.Note(ModelArguments.Describe(summary.Preparation, kind ?? summary.Preparation.OutputKind, kind is not null));
                calibration = Ui.LoadData(calibOptions, prepared);
            }
            else
            {
                Ui.Note(ModelArguments.Describe(summary.Preparation, kind ?? summary.Preparation.OutputKind, kind is not null));
            }
            QuantizedWeights weights = weightRounding.NeedsCalibration
                ? Ui.WithProgress("layer input statistics", Math.Min(weightRounding.CalibrationImages, calibration!.Count),
                    progress => QuantizedWeights.Create(prepared, summary.Layers, weightRounding, calibration, runtimeOptions, progress, Ui.Cancellation))
                : QuantizedWeights.Create(prepared, summary.Layers, weightRounding);
            IReadOnlyDictionary<string, ActivationParams>? actParams = null;
            IReadOnlyList<AttentionQuantizer>? attentionParams = null;
            if (a8 || attentionA8)
            {
                using EvaluationEngine engine = EvaluationEngine.Create(prepared, runtimeOptions, kind);
                if (a8) { actParams = ActivationCalibrator.Calibrate(engine, [.. summary.Layers.Where(l => !resolved[l.Index].IsFloat)], calibration!, 8, parse.GetValue(actMethod), cancel: Ui.Cancellation); }
                if (attentionA8)
                {
                    attentionParams = AttentionMatMuls.Calibrate(engine, calibration!, 8, parse.GetValue(actMethod), cancel: Ui.Cancellation);
                    if (attentionParams.Count == 0) { Ui.Note("--attention-matmuls a8: the model has no activation × activation MatMul; nothing to quantize there."); }
                }
            }
            if (rounding.FinalRounding(parse) == FinalRounding.Sequential && weightRounding.NeedsCalibration)
            {
                QuantizedWeights independent = weights;
                int waves = SequentialRounding.WaveCount(prepared, summary.Layers, resolved);
                weights = Ui.WithProgress("sequential rounding (waves of layers)", waves,
                    progress => SequentialRounding.Round(independent, resolved, actParams, calibration, runtimeOptions, progress, Ui.Cancellation));
            }
            float[]? check = calibration is null ? null : calibration.Batch(0, Math.Min(8, calibration.Count)).ToArray();
            var exportOptions = new ExportOptions { CheckInput = check, Runtime = runtimeOptions, MatMulNBits = parse.GetValue(nbits), Attention = attentionParams };
            ExportResult result = Ui.WithProgress("rounding and export", 1,
                _ => QdqExporter.ExportToFile(outPath, parse.GetValue(force), prepared, summary.Layers, resolved, weights, actParams, exportOptions));
            long floatBytes = summary.Layers.Sum(l => l.WeightCount) * 4;
            if (parse.GetValue(json))
            {
                Ui.WriteJson(new QuantizeJson(outPath, weights.Rounding, weights.Fingerprint, calibration?.Description, result.Opset, result.ModelBytes,
                    result.AccountedWeightBytes, result.StoredWeightBytes, floatBytes, attentionParams?.Count ?? 0, result.Layers));
                return ExitCodes.Ok;
            }
            var table = new Table().Border(TableBorder.Rounded).Title($"[bold]{Markup.Escape(Path.GetFileName(outPath))}[/]: opset {result.Opset}");
            table.AddColumns("layer", "bits", "storage", "weights", "accounted B", "stored B", "scales B", "act bits", "bias");
            foreach (var c in table.Columns.Skip(1)) { c.RightAligned(); }
            foreach (ExportedLayer l in result.Layers)
            {
                table.AddRow(Markup.Escape(l.Layer), l.WeightBits == 0 ? "float" : l.WeightBits.ToString(System.Globalization.CultureInfo.InvariantCulture), l.Storage,
                    Ui.Count(l.Elements), Ui.Count(l.AccountedBytes), Ui.Count(l.StoredBytes), Ui.Count(l.ScaleBytes), l.ActivationBits == 0 ? "-" : l.ActivationBits.ToString(System.Globalization.CultureInfo.InvariantCulture),
                    l.BiasCorrected ? "corrected" : "-");
            }
            table.AddEmptyRow();
            table.AddRow("[bold]total[/]", "", "", Ui.Count(result.Layers.Sum(l => l.Elements)), Ui.Count(result.AccountedWeightBytes), Ui.Count(result.StoredWeightBytes),
                Ui.Count(result.Layers.Sum(l => l.ScaleBytes)), "", "");
            Ui.Err.Write(table);
            Ui.Err.MarkupLine($"wrote [blue]{Markup.Escape(outPath)}[/]: {Ui.Count(result.ModelBytes)} bytes (float weights {Ui.Count(floatBytes)} B → {Ui.Count(result.StoredWeightBytes)} B stored); " +
                "checked in ONNX Runtime at ORT_ENABLE_ALL.");
            Ui.Err.MarkupLine($"weights: {Markup.Escape(RoundingArguments.Describe(weights.Rounding))}{(a8 ? "; activations: 8-bit inputs of quantized layers" : "")}" +
                (attentionParams is { Count: > 0 } ? $"; attention: 8-bit inputs of {attentionParams.Count} activation × activation MatMuls" : "") +
                (calibration is null ? "" : $"; calibration: {Markup.Escape(calibration.Description)}"));
            return ExitCodes.Ok;
        });
        return command;
    }
}

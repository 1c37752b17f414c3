using System.CommandLine;
using System.Globalization;
using BitBudget.Pipeline;
using BitBudget.Clado;
using Spectre.Console;

namespace BitBudget.Cli.Commands;

static class SensitivityCommand
{
    public static Command Create()
    {
        var model = new Argument<FileInfo>("model") { Description = "ONNX model file." };
        var output = new Option<FileInfo?>("--output", "-o") { Description = "Sensitivity report: .json (ΔL per layer and bits, Ω and its eigenvalue summary) or .csv (ΔL per layer and bits)." };
        var json = new Option<bool>("--json") { Description = "Print the report as JSON on stdout." };
        var force = new Option<bool>("--force") { Description = "Overwrite an existing --output file." };
        var args = new PipelineArguments();
        var command = new Command("sensitivity", "Measure CLADO's single-layer and pairwise loss changes into a store (resumable, shardable).") { model, output, json, force };
        args.AddTo(command);
        command.SetAction(parse =>
        {
            if (parse.GetValue(output) is FileInfo target)
            {
                OutputGuard.CheckFile(target.FullName, parse.GetValue(force), [parse.GetRequiredValue(model).FullName, .. args.InputFiles(parse)]);
            }
            MpqPipeline pipeline = MpqPipeline.Open(parse.GetRequiredValue(model).FullName, args.Options(parse));
            var (calibration, sensitivity) = args.LoadCalibration(parse, pipeline);
            SensitivityResult result = PipelineArguments.Measure(pipeline.Calibrate(calibration, Ui.Cancellation), sensitivity);
            var report = Report(result);
            if (parse.GetValue(output) is FileInfo file)
            {
                string text = file.Extension.Equals(".csv", StringComparison.OrdinalIgnoreCase) ? Reporting.LayerReport.SensitivityCsv(result.SearchedLayers, result.CandidateBits, result.DeltaSingle) : Ui.ToJson(report);
                Internals.AtomicFile.WriteAllText(file.FullName, text);
            }
            if (parse.GetValue(json)) { Ui.WriteJson(report); return ExitCodes.Ok; }
            if (!result.Complete)
            {
                Ui.Out.MarkupLine($"[yellow]shard measured into {Markup.Escape(pipeline.Options.Sensitivity.StorePath ?? "")}; merge all shards (bitbudget merge) before searching.[/]");
                return ExitCodes.Ok;
            }
            var table = new Table().Border(TableBorder.Rounded).Title($"ΔL per searched layer ({result.Images} images, {result.Batches} batch(es), reference loss {result.ReferenceLoss:F4})");
            table.AddColumn("layer");
            foreach (int b in result.CandidateBits) { table.AddColumn(new TableColumn($"W{b}").RightAligned()); }
            int S = result.CandidateBits.Count;
            for (int k = 0; k < result.SearchedLayers.Count; k++)
            {
                table.AddRow([Markup.Escape(result.SearchedLayers[k].Name), .. Enumerable.Range(0, S).Select(s => result.DeltaSingle[k * S + s].ToString("G4", CultureInfo.InvariantCulture))]);
            }
            Ui.Out.Write(table);
            Ui.Out.MarkupLine($"Ω {result.Size}×{result.Size}: λmin {report.Spectrum.Min:G4}, λmax {report.Spectrum.Max:G4}, {report.Spectrum.Negative} negative eigenvalues; context {result.Context}");
            return ExitCodes.Ok;
        });
        return command;
    }

    internal static SensitivityJson Report(SensitivityResult r)
    {
        int S = r.CandidateBits.Count, n = r.Size;
        double[] eig = [];
        if (r.Complete && n > 0)
        {
            eig = BitBudget.Optimization.PsdProjection.Eigen(r.Omega).Lambda;
        }
        SensitivityLayerJson[] layers = [.. r.SearchedLayers.Select((l, k) => new SensitivityLayerJson(l.Name, l.OpType, l.WeightCount,
            [.. r.CandidateBits.Select((b, s) => new DeltaLossJson(b, r.DeltaSingle[k * S + s]))]))];
        return new SensitivityJson(r.Context, r.Images, r.Batches, r.ReferenceLoss, r.CandidateBits, layers,
            new SpectrumJson(eig.DefaultIfEmpty().Min(), eig.DefaultIfEmpty().Max(), eig.Count(v => v < 0)),
            // Nothing measured in this run (every unit from the store, e.g. after a merge): no ratio, and JSON has no NaN.
            double.IsFinite(r.Cost.FlopRatio) ? r.Cost.FlopRatio : null, r.Cost.TimeRatio is double t && double.IsFinite(t) ? t : null, r.Cost.Evaluations, r.Cost.Measuring.TotalSeconds, r.Omega.ToRowMajorArray(),
            new Reporting.PairsMeasured(r.PairThreshold is null ? "all" : "significant", r.PairThreshold, r.SkippedPairs, r.TotalPairs));
    }
}

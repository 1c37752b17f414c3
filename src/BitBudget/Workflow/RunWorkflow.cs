using System.Diagnostics;
using BitBudget.BestOf;
using BitBudget.Data;
using BitBudget.Evaluation;
using BitBudget.Export;
using BitBudget.Graph;
using BitBudget.Internals;
using BitBudget.Methods;
using BitBudget.Ompq;
using BitBudget.Optimization;
using BitBudget.Pipeline;
using BitBudget.Quantization;
using BitBudget.Reporting;
using BitBudget.Clado;
using BitBudget.Rounding;
using BitBudget.Runtime;

namespace BitBudget.Workflow;

/// <summary>
/// The whole product in one call: calibrate → measure (reusing the store) → search every method × budget → export →
/// evaluate the exported models in ORT → write bits JSON, models, per-layer report, Pareto JSON/PNG, manifest and report.html.
/// </summary>
public static class RunWorkflow
{
    /// <summary>Runs everything; see the type summary.</summary>
    public static RunSummary Execute(RunRequest request, IProgress<RunProgress>? progress = null, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        MpqPipeline p = request.Pipeline;
        foreach (string m in request.Methods) { _ = SearchMethods.Get(m); }
        if (request.Budgets.Count == 0) { throw Errors.InvalidInput("No budget given."); }
        string outDir = Path.GetFullPath(request.OutputDirectory);
        if (File.Exists(outDir))
        {
            throw Errors.InvalidInput($"Output '{outDir}' is a file; `run -o` takes a folder.");
        }
        CheckInputsOutsideOutputs(request, outDir);
        // The store may live in the output folder; it is the run's own state, not an earlier run's output.
        string? store = request.Pipeline.Options.Sensitivity.StorePath is string sp ? Path.GetFullPath(sp) : null;
        if (Directory.Exists(outDir) && !request.Force
            && Directory.EnumerateFileSystemEntries(outDir).Any(e => store is null || !(e == store || e.StartsWith(store + "-", StringComparison.Ordinal))))
        {
            throw Errors.OutputExists($"Output folder '{outDir}' exists and is not empty; use --force to overwrite its files.");
        }
        var warnings = new List<string>();
        var methods = request.Methods.ToList();
        foreach (string m in request.Methods)
        {
            if (SearchMethods.Get(m).Limitation(p) is not string limitation) { continue; }
            if (methods.Count == 1) { throw Errors.InvalidInput(limitation + "."); }
            methods.Remove(m);
            warnings.Add($"{limitation}; {m} skipped, running {string.Join(", ", methods)}.");
        }
        request = request with { Methods = methods };
        int overlap = request.Evaluation.OverlapWith(request.Calibration) + request.Evaluation.OverlapWith(request.Sensitivity)
            + (request.HeldOut is null ? 0 : request.Evaluation.OverlapWith(request.HeldOut));
        if (overlap > 0)
        {
            warnings.Add($"WARNING: {overlap} evaluation images are also calibration/sensitivity images; the accuracy is optimistic.");
        }
        // Fail fast on infeasible budgets, before any measurement.
        foreach (var budgets in request.Budgets) { CheckBudget(p, budgets, warnings); }

        // Everything is written into a staging folder beside the output and moved there at the end, so a cancelled or
        // failed run leaves no half-written output folder that would block its own rerun.
        string staging = OutputStaging.Create(outDir);
        try
        {
            RunSummary summary = Run(request, p, staging, warnings, progress, cancel);
            OutputStaging.Publish(staging, outDir);
            return summary with { OutputDirectory = outDir };
        }
        finally
        {
            OutputStaging.Discard(staging);
        }
    }

    static RunSummary Run(RunRequest request, MpqPipeline opened, string outDir, List<string> warnings, IProgress<RunProgress>? progress, CancellationToken cancel)
    {
        Directory.CreateDirectory(Path.Combine(outDir, "models"));
        var timings = new List<StageTiming>();
        var solverRuns = new List<SolverRun>();
        var watch = Stopwatch.StartNew();
        void Stage(string name) { timings.Add(new StageTiming(name, watch.Elapsed.TotalSeconds)); watch.Restart(); MemoryTrace.Mark($"run: {name} done"); }

        request.Evaluation.RequireLabels("The evaluation stage (top-1/top-5)");   // before calibrating, not after
        if (request.BestJudge == BestJudge.CrossEntropy && request.HeldOut is { } heldOut && request.Methods.Select(SearchMethods.Get).Any(m => m.NeedsHeldOut))
        {
            heldOut.RequireLabels(BestOfSearch.CeJudgeNeeds, BestOfSearch.CeJudgeAlternative);   // not after the measurement
        }
        progress?.Report(new RunProgress("calibrate", 0, 1, null));
        CalibratedPipeline p = opened.Calibrate(request.Calibration, cancel);
        Stage("calibrate");

        progress?.Report(new RunProgress("evaluate float", 0, request.Evaluation.Count, null));
        EvaluationResult fp = p.Evaluate(p.Original, request.Evaluation, Forward(progress, "evaluate float", request.Evaluation.Count), cancel);
        Stage("evaluate float");

        SensitivityResult? sensitivity = null;
        var methods = request.Methods.Select(SearchMethods.Get).ToList();
        if (methods.FirstOrDefault(m => m.NeedsHeldOut) is ISearchMethod judging && request.HeldOut is null)
        {
            throw Errors.InvalidInput($"Method {judging.Name} needs held-out calibration images to compare its candidates on.");
        }
        if (methods.Any(m => m.NeedsSensitivity))
        {
            sensitivity = p.MeasureSensitivity(request.Sensitivity, new SyncProgress<SensitivityProgress>(s => progress?.Report(new RunProgress("measure", s.Done, s.Total, $"{s.EvaluationsPerSecond:F1} eval/s"))), cancel);
            Stage("measure");
        }

        var points = new List<RunPoint>();
        var bestCandidates = new List<BestCandidate>();
        var ompqChoices = new List<OmpqChoice>();
        var context = new SearchContext
        {
            Pipeline = p,
            Images = request.Sensitivity,
            Sensitivity = sensitivity,
            HeldOut = request.HeldOut,
            BestCandidates = request.BestCandidates,
            BestJudge = request.BestJudge,
            BestJudgesFinalWeights = request.BestJudgesFinalWeights,
            Progress = progress is null ? null : new SyncProgress<SearchProgress>(s => progress.Report(new RunProgress("search", s.Done, s.Total, s.Detail))),
        };
        var searched = new List<(string Method, string Budget, IReadOnlyList<LayerBits> Config, double? Loss, string Status, double? Gap)>();
        foreach (var budgets in request.Budgets)
        {
            string label = string.Join("+", budgets.Select(b => b.ToString()));
            foreach (ISearchMethod method in methods)
            {
                cancel.ThrowIfCancellationRequested();
                progress?.Report(new RunProgress("search", searched.Count, request.Methods.Count * request.Budgets.Count, $"{method.Name} @ {label}"));
                MemoryTrace.Mark($"run: search {method.Name} @ {label}");
                MethodOutcome o = method.Search(context, budgets, cancel);
                bestCandidates.AddRange(o.BestCandidates);
                if (o.Ompq is OmpqSearchResult ompq)
                {
                    ompqChoices.Add(new OmpqChoice(label, ompq.BetaRule == OmpqBetaRule.HeldOut ? "held-out" : "fixed", ompq.Proxy.Beta, ompq.Proxy.ThetaEntropy,
                        ompq.Proxy.ThetaEntropyNormalized, ompq.Proxy.Effect.ToString(), [.. ompq.BetaCandidates.Select(c => c.Beta)], [.. ompq.BetaCandidates.Select(c => c.Score)],
                        CandidateBits: ompq.CandidateBits, TriedMaxBits: [.. ompq.BetaCandidates.Select(c => c.MaxBits)]));
                }
                searched.Add((method.Name, label, o.Config, o.PredictedLoss, o.Status, o.Gap));
                solverRuns.Add(new SolverRun(method.Name, label, o.Status, o.Gap, o.Seconds));
            }
        }
        Stage("search");

        // Export and evaluate each distinct configuration once.
        var evaluated = new Dictionary<string, (double Top1, double Top5, double? Sim, string File)>();
        int done = 0;
        foreach (var s in searched)
        {
            cancel.ThrowIfCancellationRequested();
            string key = BitConfig.Describe(s.Config);
            if (!evaluated.TryGetValue(key, out var result))
            {
                string file = Path.Combine("models", $"{s.Method}-{Safe(s.Budget)}.onnx");
                progress?.Report(new RunProgress("export + evaluate", done, searched.Count, $"{s.Method} @ {s.Budget}"));
                MemoryTrace.Mark($"run: export {s.Method} @ {s.Budget}");
                ExportResult exported = p.Export(s.Config, Path.Combine(outDir, file), force: true);
                MemoryTrace.Mark($"run: evaluate {s.Method} @ {s.Budget}");
                EvaluationResult e = p.Evaluate(exported.Model, request.Evaluation, null, cancel);
                double? sim = request.EvaluateSimulation ? p.Evaluate(p.Simulate(s.Config), request.Evaluation, null, cancel).Top1 : null;
                if (sim is double simulated) { CheckSimulationGap($"{s.Method} @ {s.Budget}", e.Top1, simulated, Path.Combine(outDir, file)); }
                result = (e.Top1, e.Top5, sim, file);
                evaluated[key] = result;
            }
            done++;
            (long bytes, double avg) = p.Size(s.Config);
            points.Add(new RunPoint(s.Method, s.Budget, s.Config, avg, bytes, s.Loss, result.Sim, result.Top1, result.Top5, s.Status, s.Gap, result.File));
        }
        Stage("export + evaluate");

        WriteReports(request, outDir, fp, points, sensitivity, timings, solverRuns, warnings, ompqChoices);
        if (bestCandidates.Count > 0)
        {
            BitBudgetJson.Write(bestCandidates, Path.Combine(outDir, "best-candidates.json"));
        }
        Stage("report");
        return new RunSummary(outDir, fp.Top1, fp.Top5, points, sensitivity, timings, warnings) { BestCandidates = bestCandidates, Ompq = ompqChoices };
    }

    /// <summary>Throws (naming the minimum) when no configuration fits; warns when every configuration fits.</summary>
    /// <summary>
    /// Fails the run when an exported model and its simulation score more than <see cref="RunRequest.MaxSimulationGap"/> top-1
    /// points apart (a miscomputing export once scored 5.1 % against 98.9 % simulated without a word), deleting the model file.
    /// </summary>
    internal static void CheckSimulationGap(string point, double exportedTop1, double simulatedTop1, string modelPath)
    {
        if (Math.Abs(simulatedTop1 - exportedTop1) <= RunRequest.MaxSimulationGap) { return; }
        File.Delete(modelPath);
        throw Errors.Runtime(string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"{point}: the exported model scores {exportedTop1:F2} % top-1 but its simulation {simulatedTop1:F2} % (more than {RunRequest.MaxSimulationGap} points apart); the exported model was deleted."));
    }

    static void CheckBudget(MpqPipeline p, IReadOnlyList<Budget> budgets, List<string> warnings)
    {
        if (p.CheckBudget(budgets) is string note) { warnings.Add(note); }
    }

    /// <summary>The files a run writes into its output folder; no input may be one of them, whatever --force says.</summary>
    static readonly string[] s_outputNames = ["bits.json", "model.onnx", "layers.csv", "layers.json", "pareto.json", "pareto.png", "manifest.json", "report.html", "best-candidates.json"];

    static void CheckInputsOutsideOutputs(RunRequest request, string outDir)
    {
        string models = Path.Combine(outDir, "models");
        var inputs = new[] { request.Pipeline.Original.Source, request.Pipeline.Options.Sensitivity.StorePath };
        foreach (string input in inputs.OfType<string>().Where(File.Exists))
        {
            string resolved = FileIdentity.Resolve(input);
            bool clash = s_outputNames.Any(n => FileIdentity.SameFile(Path.Combine(outDir, n), input) || FileIdentity.Resolve(Path.Combine(outDir, n)) == resolved)
                || resolved.StartsWith(FileIdentity.Resolve(models) + Path.DirectorySeparatorChar, StringComparison.Ordinal);
            if (clash)
            {
                throw Errors.InvalidInput(
                    $"Input '{input}' is one of the files a run writes into '{outDir}'; BitBudget never writes over an input, even with --force. Choose another output folder.");
            }
        }
    }

    static IProgress<int>? Forward(IProgress<RunProgress>? progress, string stage, long total) =>
        progress is null ? null : new SyncProgress<int>(n => progress.Report(new RunProgress(stage, n, total, null)));

    /// <summary>Reports on the caller's thread, in order (Progress&lt;T&gt; posts to the thread pool, so reports could arrive after the work).</summary>
    sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }

    static string Safe(string label) => string.Concat(label.Select(c => char.IsLetterOrDigit(c) || c is '.' or '-' ? c : '_'));

    static void WriteReports(RunRequest request, string outDir, EvaluationResult fp, List<RunPoint> points, SensitivityResult? sensitivity,
        List<StageTiming> timings, List<SolverRun> solverRuns, List<string> warnings, List<OmpqChoice> ompqChoices)
    {
        MpqPipeline p = request.Pipeline;
        var layers = p.Summary.Layers;
        string modelName = Path.GetFileName(p.Original.Source);

        // The bit configuration of the first method at the first budget is "the" answer of a single-budget run.
        RunPoint main = points[0];
        BitConfig.FromResolved(main.Config).Save(Path.Combine(outDir, "bits.json"));
        File.Copy(Path.Combine(outDir, main.ModelFile), Path.Combine(outDir, "model.onnx"), overwrite: true);

        var front = new ParetoFront(modelName, fp.Top1 / 100, request.Evaluation.Description, layers.Sum(l => l.WeightCount) * 4.0,
            [.. points.Select(pt => new ParetoPoint(pt.Method, p.Options.Rounding.Method == RoundingMethod.Gptq ? "gptq" : "rtn", pt.Budget, pt.AverageBits, pt.SizeBytes, pt.PredictedLoss,
                pt.Top1Simulated / 100, pt.Top1Exported / 100, pt.Status, pt.Gap,
                [.. pt.Config.Select(c => new LayerChoice(c.Layer, c.IsFloat ? 32 : c.WeightBits))]))]);
        ParetoReport.WriteJson(front, Path.Combine(outDir, "pareto.json"));
        ParetoReport.WritePng(front, Path.Combine(outDir, "pareto.png"));

        var searchedIndex = sensitivity?.SearchedLayers.Select((l, i) => (l.Index, i)).ToDictionary(t => t.Index, t => t.i) ?? [];
        var rows = layers.Select(l =>
        {
            var delta = new Dictionary<int, double>();
            if (sensitivity is not null && searchedIndex.TryGetValue(l.Index, out int k))
            {
                for (int s = 0; s < sensitivity.CandidateBits.Count; s++) { delta[sensitivity.CandidateBits[s]] = sensitivity.DeltaSingle[k * sensitivity.CandidateBits.Count + s]; }
            }
            var chosen = points.ToDictionary(pt => $"{pt.Method}@{pt.Budget}", pt => pt.Config[l.Index].IsFloat ? 32 : pt.Config[l.Index].WeightBits);
            return new LayerReportRow(l.Index, l.Name, l.OpType, l.WeightCount, l.MacsPerImage, !p.Policy[l.Index].Searchable, delta, chosen);
        }).ToList();
        LayerReport.WriteJson(rows, Path.Combine(outDir, "layers.json"));
        LayerReport.WriteCsv(rows, Path.Combine(outDir, "layers.csv"));

        OmegaMatrix? omega = null;
        if (sensitivity is not null)
        {
            var labels = sensitivity.SearchedLayers.SelectMany(l => sensitivity.CandidateBits.Select(b => $"{l.Name}@{b}")).ToArray();
            double[] eig = Optimization.PsdProjection.Eigen(sensitivity.Omega).Lambda;
            omega = new OmegaMatrix(labels, sensitivity.Omega,
                new OmegaSpectrum(eig.Min(), eig.Max(), eig.Count(v => v < 0), eig.Where(v => v < 0).Sum(v => -v)));
        }

        var manifest = new RunManifest(
            ToolVersion: typeof(RunWorkflow).Assembly.GetName().Version?.ToString() ?? "0",
            OrtVersion: typeof(Microsoft.ML.OnnxRuntime.InferenceSession).Assembly.GetName().Version?.ToString() ?? "?",
            Opset: (int)p.Prepared.Opset,
            ExecutionProvider: p.Options.Runtime.Device.ToString(),
            Seeds: request.Seeds,
            ModelSha256: p.Original.ComputeHash(),
            DataHashes: new Dictionary<string, string>
            {
                ["calibration"] = request.Calibration.Hash,
                ["sensitivity"] = request.Sensitivity.Hash,
                ["evaluation"] = request.Evaluation.Hash,
                ["held_out"] = request.HeldOut?.Hash ?? "",
                ["measurement_context"] = sensitivity?.Context ?? "",
            },
            Timings: timings,
            SolverRuns: solverRuns,
            CommandLine: request.CommandLine,
            CreatedUtc: DateTimeOffset.UtcNow,
            Memory: new MemoryUsage(p.Options.Runtime.MaxMemory, BitBudget.Runtime.ProcessMemory.PeakRss,
                sensitivity is { Cost.ImagesPerRun: > 0 } ? sensitivity.Cost.ImagesPerRun : null,
                sensitivity is { Cost.ImagesPerRun: > 0 } ? sensitivity.Cost.PlannedPeakBytes : null,
                sensitivity is { Cost.ImagesPerRun: > 0 } ? sensitivity.Cost.UnreferencedPeakBytes : null,
                sensitivity is { Cost.Evaluations: > 0 } ? sensitivity.Cost.EvaluationsPerSecond : null),
            Pairs: sensitivity is null ? null
                : new PairsMeasured(sensitivity.PairThreshold is null ? "all" : "significant", sensitivity.PairThreshold, sensitivity.SkippedPairs, sensitivity.TotalPairs)) { Ompq = ompqChoices };
        ManifestReport.WriteJson(manifest, Path.Combine(outDir, "manifest.json"));

        var notes = new List<string>(warnings)
        {
            $"Preset {p.Options.Preset}: {p.Options.Fingerprint()}.",
            $"Evaluation: {request.Evaluation.Description}. Full precision top-1 {fp.Top1:F2} %, top-5 {fp.Top5:F2} %.",
        };
        if (sensitivity is not null)
        {
            notes.Add($"CLADO sensitivities: {sensitivity.Images} images in {sensitivity.Batches} batch(es), {sensitivity.Cost.Evaluations:N0} evaluations this run " +
                $"({sensitivity.Cost.FlopRatio:F3}× the reference loop's FLOPs, wall time {sensitivity.Cost.TimeRatio:F2}× what those FLOPs cost at the float model's ORT throughput), " +
                $"{sensitivity.Cost.Measuring.TotalSeconds:F0} s ({sensitivity.Cost.EvaluationsPerSecond:F1} evaluations/s), {sensitivity.Cost.ReusedUnits} units from the store; {sensitivity.PairsSummary}.");
        }
        foreach (OmpqChoice o in ompqChoices)
        {
            notes.Add(FormattableString.Invariant($"OMPQ @ {o.Budget}: β = {o.Beta:G4}, bits {{{string.Join(",", o.CandidateBits ?? [])}}} ({o.BetaRule}") +
                (o.TriedBetas.Count > 0 ? FormattableString.Invariant($", lowest held-out KL {o.TriedScores.Min():G4} of {o.TriedBetas.Count} β") : "") +
                FormattableString.Invariant($"); θ entropy {o.ThetaEntropy:F3} nats = {o.ThetaEntropyNormalized:F3} of uniform ({o.Effect})."));
        }
        notes.Add($"Memory: peak resident set {BitBudget.Runtime.ProcessMemory.Format(BitBudget.Runtime.ProcessMemory.PeakRss)} of a {BitBudget.Runtime.ProcessMemory.Format(p.Options.Runtime.MaxMemory)} budget" +
            (sensitivity is { Cost.ImagesPerRun: > 0 } c
                ? $"; CLADO ran {c.Cost.ImagesPerRun} image(s) per run, planned peak {BitBudget.Runtime.ProcessMemory.Format(c.Cost.PlannedPeakBytes)} ({BitBudget.Runtime.ProcessMemory.Format(c.Cost.UnreferencedPeakBytes)} without reference counting)."
                : "."));
        HtmlReport.Write(Path.Combine(outDir, "report.html"), new HtmlReportInput(front) { Layers = rows, Omega = omega, Manifest = manifest, Notes = notes });
    }
}

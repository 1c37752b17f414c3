using System.CommandLine;
using System.Globalization;
using BitBudget.Data;
using BitBudget.Ompq;
using BitBudget.Optimization;
using BitBudget.Pipeline;
using BitBudget.Quantization;
using BitBudget.Clado;
using Spectre.Console;

namespace BitBudget.Cli;

/// <summary>Options shared by sensitivity, search and run: data sets, quantization policy, measurement, solver.</summary>
sealed class PipelineArguments
{
    public DataArguments Data { get; } = new();
    public RuntimeArguments Runtime { get; } = new();
    public RoundingArguments Rounding { get; } = new();
    public ModelArguments Model { get; } = new();
    public Option<string> Calib { get; } = new("--calib") { Description = "Calibration/sensitivity images (never the evaluation set).", Required = true };
    public Option<string> CalibSplit { get; } = new("--calib-split") { Description = "Split of --calib: all, even-classes, odd-classes.", DefaultValueFactory = _ => "all" };
    public Option<int> SensImages { get; } = new("--sens-images") { Description = "Images for the CLADO sensitivities (drawn from --calib).", DefaultValueFactory = _ => 512 };
    public Option<int> SensBatch { get; } = new("--sens-batch") { Description = "Images per sensitivity batch (Ω is the mean over batches).", DefaultValueFactory = _ => 256 };
    public Option<int> Seed { get; } = new("--seed") { Description = "Seed of the calibration and sensitivity draws.", DefaultValueFactory = _ => 0 };
    public Option<string> Bits { get; } = new("--bits-candidates") { Description = "Candidate weight bits of searched layers.", DefaultValueFactory = _ => "2,4,8" };
    public Option<string> Activations { get; } = new("--activations") { Description = "none (weights only) or aN (N-bit inputs of quantized layers, e.g. a8).", DefaultValueFactory = _ => "a8" };
    public Option<string> AttentionMatMuls { get; } = CreateAttentionOption();
    public Option<ActivationCalibration?> ActCalibration { get; } = new("--act-calibration") { Description = "Activation range of a8 inputs: minmax (default), percentile (99.99 %) or mse." };
    public Option<string?> FirstBits { get; } = new("--first-bits") { Description = "Bits of the first layer (outside the search), 'float', or 'search'." };
    public Option<string?> LastBits { get; } = new("--last-bits") { Description = "Bits of the last layer (outside the search), 'float', or 'search'." };
    public Option<string> Loss { get; } = new("--loss") { Description = "Loss whose change CLADO measures: ce (cross-entropy vs labels), kl (vs the float model's softmax, no labels) or mse (vs the float model's raw output: any model, feature extractors included).", DefaultValueFactory = _ => "ce" };
    public Option<string> Pairs { get; } = new("--pairs") { Description = "CLADO pairs to measure: significant (default: only pairs whose two singles move the loss by at least --pair-threshold × the largest single |ΔL|; the others are 0 in Ω; a --store that already holds all pairs is used as it is) or all. With --shard the default is all (a shard lacks the other shards' singles).", DefaultValueFactory = _ => "significant" };
    public Option<double> PairThreshold { get; } = new("--pair-threshold") { Description = "With --pairs significant: the fraction of the largest single |ΔL| below which a scheme's pairs are skipped (0 < x < 1).", DefaultValueFactory = _ => SensitivityOptions.DefaultPairThreshold };
    public Option<FileInfo?> Store { get; } = new("--store") { Description = "SQLite measurement store (resumable; reused when settings match)." };
    public Option<bool> Naive { get; } = new("--naive") { Description = "Measure with the reference loop (one full forward per single/pair), for verification." };
    public Option<string?> ShardOption { get; } = new("--shard") { Description = "Measure only share k/n of the work (into --store; shares balanced by executed FLOPs); combine with `bitbudget merge`. auto/n takes k from SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX." };
    public Option<PsdMethod> Psd { get; } = new("--psd") { Description = "Make Ω PSD by clip-eigenvalues (paper) or shift-diagonal (exact).", DefaultValueFactory = _ => PsdMethod.ClipEigenvalues };
    public Option<double> TimeLimit { get; } = new("--time-limit") { Description = "Solver time limit per budget, seconds.", DefaultValueFactory = _ => 30 };
    public Option<bool> Quiet { get; } = new("--quiet") { Description = "No progress bars or informational output." };
    public Option<string> OmpqBeta { get; } = new("--ompq-beta")
    {
        Description = "OMPQ's β in θ = exp(−βγ): held-out (default: the β of a grid, set from the ORM's scale, whose configuration has the lowest KL from the float model on held-out images), paper (β = 10: θ one-hot on the shipped CNNs) or a number ≥ 0.",
        DefaultValueFactory = _ => "held-out",
    };

    public void AddTo(Command command, bool measurement = true)
    {
        Data.AddTo(command);
        Runtime.AddTo(command);
        Rounding.AddTo(command);
        Model.AddTo(command);
        foreach (Option o in new Option[] { Calib, CalibSplit, Seed, Bits, Activations, AttentionMatMuls, ActCalibration, FirstBits, LastBits, Quiet, OmpqBeta })
        {
            command.Options.Add(o);
        }
        if (!measurement) { return; }
        foreach (Option o in new Option[] { SensImages, SensBatch, Loss, Pairs, PairThreshold, Store, Naive, ShardOption, Psd, TimeLimit })
        {
            command.Options.Add(o);
        }
    }

    /// <summary>Every file these options read (calibration data, store, preprocessing, class list), which no output may replace.</summary>
    public IEnumerable<string?> InputFiles(ParseResult parse) =>
        [.. OutputGuard.DataFiles(parse.GetValue(Calib)), parse.CommandResult.Command.Options.Contains(Store) ? parse.GetValue(Store)?.FullName : null, .. Data.InputFiles(parse)];

    public PipelineOptions Options(ParseResult parse)
    {
        PipelineOptions baseOptions = PipelineOptions.FromPreset(Data.QuantizationPreset(parse));
        string act = parse.GetRequiredValue(Activations).ToLowerInvariant();
        int actBits = act == "none" ? 0
            : act.StartsWith('a') && int.TryParse(act[1..], NumberStyles.None, CultureInfo.InvariantCulture, out int a) && a is >= 4 and <= 16 ? a
            : throw Errors.InvalidInput($"--activations '{act}' is not none or a4…a16.");
        int[] candidates = ParseBits(parse.GetRequiredValue(Bits));
        var options = baseOptions with
        {
            Runtime = Runtime.Options(parse),
            Output = Model.OutputName(parse),
            OutputKind = Model.OutputKind(parse),
            CandidateBits = candidates,
            ActivationBits = actBits,
            AttentionMatMuls = AttentionMode(parse.GetRequiredValue(AttentionMatMuls)),
            ActivationCalibration = parse.GetValue(ActCalibration) ?? baseOptions.ActivationCalibration,
            FirstLayerBits = parse.GetValue(FirstBits) is string f ? Fixed(f, "--first-bits") : baseOptions.FirstLayerBits,
            LastLayerBits = parse.GetValue(LastBits) is string l ? Fixed(l, "--last-bits") : baseOptions.LastLayerBits,
            CalibrationImages = Positive(parse.GetValue(Rounding.CalibImages), "--calib-images"),
            // The paper preset rounds to nearest unless --rounding says otherwise.
            Rounding = baseOptions.Preset == "clado-paper" && parse.GetResult(Rounding.Method) is null ? baseOptions.Rounding : Rounding.Rounding(parse),
            FinalRounding = parse.CommandResult.Command.Options.Contains(Rounding.Final) ? Rounding.FinalRounding(parse) : baseOptions.FinalRounding,
            Ompq = OmpqOptions(baseOptions.Ompq, parse.GetRequiredValue(OmpqBeta)),
        };
        if (parse.GetResult(SensBatch) is null && parse.GetResult(Store) is null && !parse.CommandResult.Command.Options.Contains(SensBatch)) { return options; }
        var sensitivity = new SensitivityOptions
        {
            BatchSize = Positive(parse.GetValue(SensBatch), "--sens-batch"),
            Loss = Evaluation.OutputLosses.Parse(parse.GetRequiredValue(Loss)),
            Naive = parse.GetValue(Naive),
            StorePath = parse.GetValue(Store)?.FullName,
            Shard = parse.GetValue(ShardOption) is string s ? Shard.Parse(s) : null,
            PairThreshold = parse.GetValue(PairThreshold) is double t && t > 0 && t < 1 ? t
                : throw Errors.InvalidInput($"--pair-threshold must be between 0 and 1 (a fraction of the largest single |ΔL|), got {parse.GetValue(PairThreshold)}."),
        };
        // Without an explicit --pairs the library's default applies: significant, or all for a shard (which lacks the other shards'
        // singles); an explicit --pairs significant with --shard is refused by the measurement.
        if (parse.GetResult(Pairs) is { Implicit: false })
        {
            sensitivity = sensitivity with
            {
                Pairs = parse.GetRequiredValue(Pairs).ToLowerInvariant() switch
                {
                    "all" => PairSelection.All,
                    "significant" => PairSelection.Significant,
                    string other => throw Errors.InvalidInput($"--pairs '{other}' is not all or significant."),
                },
            };
        }
        else if (sensitivity.PairsFollowShard && !parse.GetValue(Quiet))
        {
            Ui.Err.MarkupLine($"[grey]{Markup.Escape(ShardPairsNote)}[/]");
        }
        return options with
        {
            Sensitivity = sensitivity,
            Search = options.Search with { TimeLimit = TimeSpan.FromSeconds(Math.Max(0.1, parse.GetValue(TimeLimit))) },
        };
    }

    /// <summary>The note --shard prints without an explicit --pairs.</summary>
    internal const string ShardPairsNote = "note: --shard measures --pairs all (a shard lacks the other shards' singles); after merge, --pairs significant reads the merged store's exact Ω";

    /// <summary>The --attention-matmuls option (quantize, sensitivity, search, run).</summary>
    public static Option<string> CreateAttentionOption()
    {
        var option = new Option<string>("--attention-matmuls")
        {
            Description = "Attention's activation × activation MatMuls (Q·Kᵀ, softmax·V): float (default) or a8 (8-bit Q/DQ on both inputs, calibrated like the layer inputs).",
            DefaultValueFactory = _ => "float",
        };
        option.AcceptOnlyFromAmong("float", "a8");
        return option;
    }

    public static AttentionMatMulMode AttentionMode(string text) => text == "a8" ? AttentionMatMulMode.A8 : AttentionMatMulMode.Float;

    /// <summary>--ompq-beta: held-out, paper (the fixed β = 10) or a number ≥ 0 (fixed).</summary>
    internal static OmpqOptions OmpqOptions(OmpqOptions baseOptions, string text) => text.Trim().ToLowerInvariant() switch
    {
        "held-out" => baseOptions with { BetaRule = OmpqBetaRule.HeldOut },
        "paper" => baseOptions with { BetaRule = OmpqBetaRule.Fixed, Proxy = baseOptions.Proxy with { Beta = new OrthogonalityOptions().Beta } },
        string t when double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out double beta) && beta >= 0 && double.IsFinite(beta) =>
            baseOptions with { BetaRule = OmpqBetaRule.Fixed, Proxy = baseOptions.Proxy with { Beta = beta } },
        _ => throw Errors.InvalidInput($"--ompq-beta '{text}' is not held-out, paper or a number ≥ 0."),
    };

    static int Positive(int value, string name) =>
        value > 0 ? value : throw Errors.InvalidInput($"{name} must be positive, got {value}.");

    static int? Fixed(string text, string name) => text.ToLowerInvariant() switch
    {
        "search" => null,
        "float" => 0,
        _ when int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int b) && b is >= 2 and <= 8 => b,
        _ => throw Errors.InvalidInput($"{name} '{text}' is not 2–8, float or search."),
    };

    public static int[] ParseBits(string text)
    {
        var bits = new List<int>();
        foreach (string part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out int b) || b is < 2 or > 8 || bits.Contains(b))
            {
                throw Errors.InvalidInput($"Candidate bits '{text}' must be distinct values in 2–8, e.g. 2,4,8.");
            }
            bits.Add(b);
        }
        if (bits.Count == 0) { throw Errors.InvalidInput("No candidate bits given."); }
        bits.Sort();
        return [.. bits];
    }

    /// <summary>The calibration source and the two draws from it: activation calibration and sensitivity images.</summary>
    public (Dataset Calibration, Dataset Sensitivity) LoadCalibration(ParseResult parse, MpqPipeline pipeline)
    {
        var (calibration, sensitivity, _) = LoadCalibrationWithHeldOut(parse, pipeline);
        return (calibration, sensitivity);
    }

    /// <summary>As <see cref="LoadCalibration"/>, plus up to 512 held-out images of the same source that are neither sensitivity nor calibration images
    /// (all non-sensitivity images if the calibration draw leaves none).</summary>
    public (Dataset Calibration, Dataset Sensitivity, Dataset? HeldOut) LoadCalibrationWithHeldOut(ParseResult parse, MpqPipeline pipeline)
    {
        Ui.Quiet = parse.GetValue(Quiet);
        DataOptions options = Data.Options(parse, parse.GetRequiredValue(Calib), pipeline.Prepared.InputShape, parse.GetRequiredValue(CalibSplit));
        Ui.Note(ModelArguments.Describe(pipeline.Summary.Preparation, pipeline.OutputKind, pipeline.Options.OutputKind is not null));
        Dataset source = Ui.LoadData(options, pipeline.Prepared);
        int seed = parse.GetValue(Seed);
        Dataset calibration = source.Sample(pipeline.Options.CalibrationImages, seed);
        int sensImages = parse.CommandResult.Command.Options.Contains(SensImages) ? Positive(parse.GetValue(SensImages), "--sens-images") : 0;
        Dataset sensitivity = sensImages > 0 ? source.Sample(sensImages, seed + 1) : calibration;
        var sensitivityIds = sensitivity.Ids.ToHashSet(StringComparer.Ordinal);
        var usedIds = sensitivity.Ids.Concat(calibration.Ids).ToHashSet(StringComparer.Ordinal);
        int[] unused = [.. Enumerable.Range(0, source.Count).Where(i => !usedIds.Contains(source.Ids[i]))];
        int[] rest = unused.Length > 0 ? unused : [.. Enumerable.Range(0, source.Count).Where(i => !sensitivityIds.Contains(source.Ids[i]))];
        string what = unused.Length > 0 ? "in neither the calibration nor the sensitivity draw" : "not in the sensitivity draw";
        Dataset? heldOut = rest.Length == 0 ? null : source.Subset(rest, $"{source.Description}, {what}").Sample(512, seed + 2);
        if (!Ui.Quiet)
        {
            Ui.Err.MarkupLine($"[grey]calibration: {calibration.Count} images (seed {seed}); sensitivity: {sensitivity.Count} images (seed {seed + 1}); held out: {heldOut?.Count ?? 0} (seed {seed + 2})[/]");
        }
        return (calibration, sensitivity, heldOut);
    }

    /// <summary>Measures CLADO sensitivities with a progress bar (evaluations/s and ETA).</summary>
    public static SensitivityResult Measure(CalibratedPipeline pipeline, Dataset sensitivity)
    {
        SensitivityResult result = Ui.WithDynamicProgress("CLADO singles + pairs", report =>
            pipeline.MeasureSensitivity(sensitivity, new ProgressAdapter(report), Ui.Cancellation));
        if (!Ui.Quiet)
        {
            MeasurementCost c = result.Cost;
            string time = c.TimeRatio is double r ? $", {r:F2}× the raw ORT time of those FLOPs ({c.TimeRatioSameSettings:F2}× at the same session settings)" : "";
            Ui.Err.MarkupLine(c.Evaluations == 0
                ? $"[grey]sensitivities: all {result.Batches} batch(es) taken from the store ({c.ReusedUnits} units)[/]"
                : $"[grey]sensitivities: {c.Evaluations:N0} evaluations in {c.Measuring.TotalSeconds:F1} s (+{c.Setup.TotalSeconds:F1} s setup), " +
                  $"{c.FlopRatio:F3}× the reference loop's FLOPs{time}; {c.ReusedUnits} units reused; {c.EvaluationsPerSecond:F1} eval/s; " +
                  $"{c.ImagesPerRun} image(s) per run, planned peak {BitBudget.Runtime.ProcessMemory.Format(c.PlannedPeakBytes)} ({BitBudget.Runtime.ProcessMemory.Format(c.UnreferencedPeakBytes)} without reference counting), " +
                  $"measured peak RSS {BitBudget.Runtime.ProcessMemory.Format(c.MeasuredPeakBytes)} of {BitBudget.Runtime.ProcessMemory.Format(c.MemoryBudgetBytes)}[/]");
            Ui.Err.MarkupLine($"[grey]{Spectre.Console.Markup.Escape(result.PairsSummary)}[/]");
        }
        return result;
    }

    sealed class ProgressAdapter(Action<long, long, string?> report) : IProgress<SensitivityProgress>
    {
        public void Report(SensitivityProgress value) =>
            report(value.Done, value.Total, $"({value.Done:N0}/{value.Total:N0}, {value.EvaluationsPerSecond:F1} eval/s, peak RSS {BitBudget.Runtime.ProcessMemory.Format(value.PeakRssBytes)})");
    }

    public static IReadOnlyList<Budget> Budgets(string text) => Budget.ParseList(text);
}

using System.Text.Json;
using System.Text.Json.Serialization;
using BitBudget.Export;
using BitBudget.Graph;
using BitBudget.Ompq;
using BitBudget.Optimization;
using BitBudget.Quantization;
using BitBudget.Reporting;
using BitBudget.Rounding;

namespace BitBudget.Cli;

/// <summary>
/// What the CLI prints with <c>--json</c> (and <c>sensitivity -o x.json</c>): the library's one schema (snake_case names and
/// enum values, indented, the relaxed encoder so <c>+</c> stays <c>+</c>), with one difference for scripts: JSON has no NaN
/// or infinity, so a non-finite number is written as null and stderr says how many (<see cref="Ui.ToJson"/>).
/// </summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, WriteIndented = true)]
[JsonSerializable(typeof(InspectJson))]
[JsonSerializable(typeof(EvalJson))]
[JsonSerializable(typeof(QuantizeJson))]
[JsonSerializable(typeof(SensitivityJson))]
[JsonSerializable(typeof(SearchJson))]
[JsonSerializable(typeof(List<SearchJson>))]
[JsonSerializable(typeof(RunJson))]
sealed partial class CliJson : JsonSerializerContext
{
    /// <summary>The context every command prints through: the library's options (<see cref="BitBudgetJson.CreateOptions"/>) plus non-finite numbers as null.</summary>
    public static CliJson Stdout { get; } = new(StdoutOptions());

    static JsonSerializerOptions StdoutOptions()
    {
        JsonSerializerOptions options = BitBudgetJson.CreateOptions(JsonNamingPolicy.SnakeCaseLower);
        options.Converters.Add(new Ui.FiniteOrNull<double>());
        options.Converters.Add(new Ui.FiniteOrNull<float>());
        return options;
    }
}

/// <summary><c>inspect --json</c>.</summary>
sealed record InspectJson(string Source, string InputName, IReadOnlyList<long> InputShape, string OutputName, string OutputKind,
    IReadOnlyList<string> DroppedOutputs, long Opset, int LayerCount, string OpCounts, long TotalWeights, long TotalParameters, long TotalMacs,
    long ModelInitializerElements, PreparationReport Preparation, IReadOnlyList<LayerInfo> Layers);

/// <summary><c>eval --json</c>.</summary>
sealed record EvalJson(string Model, string Data, string DataHash, int Count, double Top1, double Top5, double CrossEntropy, double ImagesPerSecond,
    string OutputName, string OutputKind, int LabelOffset);

/// <summary><c>quantize --json</c>.</summary>
sealed record QuantizeJson(string Output, WeightRounding Rounding, string RoundingFingerprint, string? Calibration, long Opset, long FileBytes,
    long AccountedWeightBytes, long StoredWeightBytes, long FloatWeightBytes, int AttentionMatmulsA8, IReadOnlyList<ExportedLayer> Layers);

/// <summary><c>sensitivity --json</c> and <c>sensitivity -o x.json</c>.</summary>
sealed record SensitivityJson(string Context, int Images, int Batches, double ReferenceLoss, IReadOnlyList<int> CandidateBits,
    IReadOnlyList<SensitivityLayerJson> Layers, SpectrumJson Spectrum, double? FlopRatio, double? TimeRatio, long Evaluations, double MeasuringSeconds, double[] Omega,
    PairsMeasured Pairs);

/// <summary>One searched layer's single-layer loss changes.</summary>
sealed record SensitivityLayerJson(string Name, string OpType, long WeightCount, IReadOnlyList<DeltaLossJson> DeltaLoss);

/// <summary>ΔL with one layer at <paramref name="Bits"/>.</summary>
sealed record DeltaLossJson(int Bits, double Delta);

/// <summary>Eigenvalue summary of the measured Ω.</summary>
sealed record SpectrumJson(double Min, double Max, int Negative);

/// <summary>
/// <c>search --json</c>, the same fields for every method (one object; an array of them with <c>--rank N</c>). Fields a
/// method does not have are null: OMPQ has no Ω objective or bound, only CLADO/independent/uniform have a solver gap, and
/// only OMPQ has <c>theta</c> and <c>notes</c>.
/// </summary>
sealed record SearchJson(string Method, IReadOnlyList<string> Budgets, string Status, string Solver, double? Objective, double? BestBound, double? Gap,
    double? QuadraticObjective, double SolveSeconds, double SizeBytes, double AverageBits, double? AverageBitsSearched, double? BitOps,
    IReadOnlyList<LayerChoice> Layers, IReadOnlyList<double>? Theta, IReadOnlyList<string>? Notes, OmpqBetaJson? Ompq = null)
{
    public static SearchJson From(SearchResult r, IReadOnlyList<string> budgets) => new(
        r.Method.ToString().ToLowerInvariant(), budgets, JsonNamingPolicy.SnakeCaseLower.ConvertName(r.Status.ToString()), r.Solver,
        r.Objective, r.BestBound, r.Gap, r.QuadraticObjective, Math.Round(r.SolveTime.TotalSeconds, 4), r.SizeBytes, r.AverageBits,
        r.AverageBitsSearched, r.BitOps, [.. r.Bits.Select(b => new LayerChoice(b.Key, b.Value))], null, null);

    public static SearchJson From(OmpqSearchResult o, IReadOnlyList<LayerBits> config, IReadOnlyList<string> budgets, long bytes, double averageBits) => new(
        "ompq", budgets, o.Allocation.IlpStatus.ToLowerInvariant(), "OMPQ: GLOP LP + SCIP ILP", null, null, null, null, Math.Round(o.TotalSeconds, 4),
        bytes, averageBits, null, null, [.. config.Select(c => new LayerChoice(c.Layer, c.WeightBits))], o.Proxy.Theta, o.Proxy.Notes,
        new OmpqBetaJson(o.BetaRule, o.Proxy.Beta, o.Proxy.ThetaEntropy, o.Proxy.ThetaEntropyNormalized, o.Proxy.Effect, o.BetaCandidates));
}

/// <summary>How OMPQ chose β at this budget (<c>--ompq-beta</c>) and how spread θ is.</summary>
sealed record OmpqBetaJson(OmpqBetaRule BetaRule, double Beta, double ThetaEntropy, double ThetaEntropyNormalized, ThetaEffect Effect,
    IReadOnlyList<OmpqBetaCandidate> BetaCandidates);

/// <summary><c>run --json</c>.</summary>
sealed record RunJson(string OutputDirectory, double FpTop1, double FpTop5, IReadOnlyList<RunPointJson> Points, IReadOnlyList<string> Warnings,
    IReadOnlyList<StageTiming> Timings, IReadOnlyList<OmpqChoice> Ompq);

/// <summary>One evaluated configuration of <c>run --json</c>.</summary>
sealed record RunPointJson(string Method, string Budget, double AverageBits, long SizeBytes, double? PredictedLoss, double? Top1Simulated, double Top1Exported,
    double Top5Exported, string Status, double? Gap, string ModelFile);

using BitBudget.Data;
using BitBudget.Evaluation;
using BitBudget.Graph;
using BitBudget.Numerics;
using BitBudget.Quantization;
using BitBudget.Runtime;

namespace BitBudget.Clado;

/// <summary>
/// Share <see cref="Index"/> of <see cref="Count"/> of the work. Work units go to shards balanced by their executed FLOPs,
/// the same way in every worker (see ShardPlan), so <c>n</c> stores of shards 0…n−1 merge to the single-worker result.
/// </summary>
public readonly record struct Shard(int Index, int Count)
{
    /// <summary>Environment variable a Slurm array task carries its index in.</summary>
    public const string SlurmVariable = "SLURM_ARRAY_TASK_ID";

    /// <summary>Environment variable a pod of a Kubernetes Indexed Job carries its index in.</summary>
    public const string KubernetesVariable = "JOB_COMPLETION_INDEX";

    /// <summary>
    /// Parses <c>k/n</c> with 0 ≤ k &lt; n, or <c>auto/n</c>, which takes k from <see cref="SlurmVariable"/> or
    /// <see cref="KubernetesVariable"/> (read through <paramref name="environment"/>, the process environment by default).
    /// </summary>
    public static Shard Parse(string text, Func<string, string?>? environment = null)
    {
        string[] parts = (text ?? "").Split('/');
        if (parts.Length == 2 && parts[0] == "auto" && TryCount(parts[1], out int count))
        {
            environment ??= Environment.GetEnvironmentVariable;
            string? slurm = NullIfEmpty(environment(SlurmVariable)), kubernetes = NullIfEmpty(environment(KubernetesVariable));
            if (slurm is null && kubernetes is null)
            {
                throw Errors.InvalidInput(
                    $"--shard auto/{count} needs {SlurmVariable} (a Slurm array task) or {KubernetesVariable} (a Kubernetes Indexed Job); neither is set.");
            }
            if (slurm is not null && kubernetes is not null && slurm != kubernetes)
            {
                throw Errors.InvalidInput(
                    $"--shard auto/{count}: {SlurmVariable}={slurm} and {KubernetesVariable}={kubernetes} disagree; unset one.");
            }
            string variable = slurm is not null ? SlurmVariable : KubernetesVariable, value = (slurm ?? kubernetes)!;
            if (!int.TryParse(value, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int index) || index >= count)
            {
                throw Errors.InvalidInput(
                    $"--shard auto/{count}: {variable}={value} is not a shard index 0–{count - 1} (submit the array as 0-{count - 1}).");
            }
            return new Shard(index, count);
        }
        if (parts.Length == 2 && int.TryParse(parts[0], out int k) && TryCount(parts[1], out int n) && k >= 0 && k < n)
        {
            return new Shard(k, n);
        }
        throw Errors.InvalidInput($"Shard '{text}' is not k/n with 0 ≤ k < n (e.g. 0/4) or auto/n.");

        static bool TryCount(string text, out int n) => int.TryParse(text, out n) && n > 0;
        static string? NullIfEmpty(string? value) => string.IsNullOrWhiteSpace(value) ? null : value.Trim();
    }
}

/// <summary>How the CLADO measurement runs.</summary>
public sealed record SensitivityOptions
{
    /// <summary>Candidate weight bit-widths of every searched layer (the schemes).</summary>
    public IReadOnlyList<int> CandidateBits { get; init; } = [2, 4, 8];

    /// <summary>Images per sensitivity batch; Ω is the mean of the per-batch matrices.</summary>
    public int BatchSize { get; init; } = 256;

    /// <summary>The loss whose change is measured.</summary>
    public OutputLoss Loss { get; init; } = OutputLoss.CrossEntropy;

    /// <summary>Run the reference loop instead: one full forward of a fully rebuilt model per single and pair.</summary>
    public bool Naive { get; init; }

    /// <summary>SQLite store that keeps every measured loss (resume, shards); null keeps nothing.</summary>
    public string? StorePath { get; init; }

    /// <summary>Measure only this share of the work (needs a store).</summary>
    public Shard? Shard { get; init; }

    /// <summary>
    /// How long a worker's claim on a unit of a shared store lasts before another worker may take the unit over (a worker that
    /// was killed never finishes it). Workers on one store split the units; a unit that outlasts its lease is at worst measured
    /// twice, to the same values. Default 10 minutes.
    /// </summary>
    public TimeSpan ClaimLease { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>ONNX Runtime settings.</summary>
    public RuntimeOptions Runtime { get; init; } = RuntimeOptions.Default;

    /// <summary>What the model's output holds (losses are computed from the log-probabilities it stands for).</summary>
    public OutputKind OutputKind { get; init; } = OutputKind.Logits;

    /// <summary>Extra text identifying settings that change the measured values but are invisible in the tensors (e.g. a preset name).</summary>
    public string SettingsNote { get; init; } = "";

    /// <summary>
    /// The cone sessions share the unchanged float weights (one copy per process) instead of each holding its own; the values
    /// measured are identical either way. Off only to measure the difference (BITBUDGET_CLADO_SHARED_WEIGHTS=off).
    /// </summary>
    internal bool ShareWeights { get; init; } = SegmentEvaluator.ShareWeightsByDefault;

    /// <summary>
    /// Which pairs are measured: <see cref="PairSelection.Significant"/> (the default: only those whose two singles are significant,
    /// see <see cref="PairThreshold"/>) or <see cref="PairSelection.All"/>. A <see cref="Shard"/> needs every pair of its share (it
    /// lacks the other shards' singles), so with a shard and no explicit choice this is <see cref="PairSelection.All"/>; an explicit
    /// <see cref="PairSelection.Significant"/> with a shard is refused. With <see cref="PairSelection.Significant"/>, a store that
    /// already holds every pair of the measurement (a finished <see cref="PairSelection.All"/> run, merged shards) is used as it is:
    /// the exact Ω, nothing measured.
    /// </summary>
    public PairSelection Pairs
    {
        get => _pairs ?? (Shard is null ? PairSelection.Significant : PairSelection.All);
        init => _pairs = value;
    }

    // Null until set: the default then follows Shard (significant alone, all for a shard).
    readonly PairSelection? _pairs;

    /// <summary>Whether <see cref="Pairs"/> is the default <see cref="PairSelection.All"/> of a shard rather than a choice (the CLI says so).</summary>
    internal bool PairsFollowShard => _pairs is null && Shard is not null;

    /// <summary>With <see cref="PairSelection.Significant"/>: a scheme's pairs are measured only if its single |ΔL| is at least this fraction of the largest.</summary>
    public double PairThreshold { get; init; } = DefaultPairThreshold;

    /// <summary>Default <see cref="PairThreshold"/>.</summary>
    public const double DefaultPairThreshold = 0.01;
}

/// <summary>Which pairs CLADO measures.</summary>
public enum PairSelection
{
    /// <summary>Every pair of schemes of different layers.</summary>
    All,

    /// <summary>
    /// Only pairs whose two singles both move the loss by at least <see cref="SensitivityOptions.PairThreshold"/> × the largest single
    /// |ΔL| (measured, whatever the bit-width); the others are 0 in Ω.
    /// </summary>
    Significant,
}

/// <summary>What the measurement runs on: the prepared model, its layers, the resolved configuration, the quantized weights.</summary>
/// <param name="Prepared">The prepared model.</param>
/// <param name="Layers">Its quantizable layers.</param>
/// <param name="Config">One entry per layer: searchable layers are searched (their activation bits apply when quantized); the others keep their bits.</param>
/// <param name="Weights">Quantized tensors of every (layer, bits), computed once (RTN or GPTQ).</param>
/// <param name="Activations">Input-activation parameters by layer name, for every layer with activation bits.</param>
/// <param name="Data">The sensitivity images.</param>
/// <param name="Attention">Quantizers of the attention activation × activation MatMuls, part of every measured model (null: they stay float).</param>
internal sealed record SensitivityInput(OnnxModel Prepared, IReadOnlyList<LayerInfo> Layers, IReadOnlyList<LayerBits> Config,
    QuantizedWeights Weights, IReadOnlyDictionary<string, ActivationParams>? Activations, Dataset Data, IReadOnlyList<AttentionQuantizer>? Attention = null);

/// <summary>Progress of a measurement: forward evaluations (singles and pairs) done and in total, for this run.</summary>
public readonly record struct SensitivityProgress(long Done, long Total, double EvaluationsPerSecond, long PeakRssBytes = 0);

/// <summary>What the measurement cost, against the reference loop (L·S + S²·L(L−1)/2 full forwards per batch).</summary>
public sealed record MeasurementCost
{
    /// <summary>Forward MACs executed per batch image (all batches summed, divided by the images).</summary>
    public double ExecutedMacs { get; init; }

    /// <summary>MACs the reference loop executes for the same batches.</summary>
    public double ReferenceMacs { get; init; }

    /// <summary>Executed ÷ reference.</summary>
    public double FlopRatio => ReferenceMacs > 0 ? ExecutedMacs / ReferenceMacs : double.NaN;

    /// <summary>Singles and pairs evaluated in this run (stored ones excluded).</summary>
    public long Evaluations { get; init; }

    /// <summary>Units (one batch's single + its pairs) taken from the store instead of measured.</summary>
    public long ReusedUnits { get; init; }

    /// <summary>Wall time of the measurement loop.</summary>
    public TimeSpan Measuring { get; init; }

    /// <summary>Wall time to build and load the sub-model sessions.</summary>
    public TimeSpan Setup { get; init; }

    /// <summary>Time the executed MACs cost at the full-precision model's own ORT throughput on the same batch (null if not measured).</summary>
    public TimeSpan? RawThroughputTime { get; init; }

    /// <summary>The same yardstick at the measurement's own session settings (ORT_ENABLE_EXTENDED, see <see cref="CladoSensitivity"/>).</summary>
    public TimeSpan? RawThroughputTimeSameSettings { get; init; }

    /// <summary>Images per ONNX Runtime run (the micro-batch the memory budget allows; 0 when nothing was measured).</summary>
    public int ImagesPerRun { get; init; }

    /// <summary>Planned peak resident bytes: resident once the sessions were loaded plus the micro-batch's planned tensors (reference-counted).</summary>
    public long PlannedPeakBytes { get; init; }

    /// <summary>Planned bytes per image of a micro-batch (reference-counted states, trunk and the largest cone's live tensors, with slack).</summary>
    public long PlannedBytesPerImage { get; init; }

    /// <summary>Resident bytes once the measurement's sessions were loaded (the base the micro-batch was sized on).</summary>
    public long ResidentBytes { get; init; }

    /// <summary>What the plan would be without reference counting (every state kept for the whole micro-batch).</summary>
    public long UnreferencedPeakBytes { get; init; }

    /// <summary>Measured peak resident set of the process at the end of the measurement (VmHWM: every earlier pass included).</summary>
    public long MeasuredPeakBytes { get; init; }

    /// <summary>The memory budget the micro-batches were sized for.</summary>
    public long MemoryBudgetBytes { get; init; }

    /// <summary>Evaluations per second of the measurement loop.</summary>
    public double EvaluationsPerSecond => Measuring > TimeSpan.Zero ? Evaluations / Measuring.TotalSeconds : 0;

    /// <summary>Measuring ÷ raw-throughput time at the measurement's own session settings.</summary>
    public double? TimeRatioSameSettings => RawThroughputTimeSameSettings is TimeSpan t && t > TimeSpan.Zero ? Measuring / t : null;

    /// <summary>Measuring ÷ raw-throughput time.</summary>
    public double? TimeRatio => RawThroughputTime is TimeSpan t && t > TimeSpan.Zero ? Measuring / t : null;
}

/// <summary>The measured CLADO sensitivities and the cross-layer matrix Ω.</summary>
public sealed record SensitivityResult
{
    /// <summary>The searched layers, in Ω's order.</summary>
    public required IReadOnlyList<LayerInfo> SearchedLayers { get; init; }

    /// <summary>Candidate bits (schemes), in Ω's order within a layer.</summary>
    public required IReadOnlyList<int> CandidateBits { get; init; }

    /// <summary>Mean loss of the unperturbed model (searched layers in float, fixed layers quantized) over the batches.</summary>
    public double ReferenceLoss { get; init; }

    /// <summary>Mean single-layer loss change ΔL_u, index = layer·S + scheme.</summary>
    public required double[] DeltaSingle { get; init; }

    /// <summary>Ω (n × n, n = L·S, index = layer·S + scheme): diagonal 2·ΔL_u, different layers ΔL_uv − ΔL_u − ΔL_v, same layer 0. Not projected.</summary>
    public required SquareMatrix Omega { get; init; }

    /// <summary>Number of batches averaged.</summary>
    public int Batches { get; init; }

    /// <summary>Images measured.</summary>
    public int Images { get; init; }

    /// <summary>Hash of everything that determines the values (model, data, settings, quantized tensors).</summary>
    public required string Context { get; init; }

    /// <summary>Cost of this run.</summary>
    public required MeasurementCost Cost { get; init; }

    /// <summary>Whether every unit was available (false for a shard that measured only its share).</summary>
    public bool Complete { get; init; } = true;

    /// <summary>Ω's side.</summary>
    public int Size => SearchedLayers.Count * CandidateBits.Count;

    /// <summary>With <see cref="PairSelection.Significant"/>: the threshold used (fraction of the largest single |ΔL|); null when every pair was measured.</summary>
    public double? PairThreshold { get; init; }

    /// <summary>Pairs of different layers not measured (their Ω entries are 0): with <see cref="PairSelection.Significant"/>, those with a single below the threshold.</summary>
    public int SkippedPairs { get; init; }

    /// <summary>One line on which pairs were measured, for the console and the reports.</summary>
    public string PairsSummary => PairThreshold is double t
        ? $"pairs: significant (single |ΔL| ≥ {t:R} × the largest), {SkippedPairs:N0} of {TotalPairs:N0} pairs skipped (Ω entries 0)"
        : $"pairs: all {TotalPairs:N0} measured";

    /// <summary>Pairs of different layers in Ω (S²·L(L−1)/2).</summary>
    public int TotalPairs => CandidateBits.Count * CandidateBits.Count * SearchedLayers.Count * (SearchedLayers.Count - 1) / 2;
}

using BitBudget.BestOf;
using BitBudget.Clado;
using BitBudget.Data;
using BitBudget.Optimization;
using BitBudget.Pipeline;
using BitBudget.Quantization;
using BitBudget.Reporting;

namespace BitBudget.Workflow;

/// <summary>What <see cref="RunWorkflow.Execute"/> does: one model, its data, the methods and budgets, the output folder.</summary>
public sealed record RunRequest
{
    /// <summary>The opened model and its settings.</summary>
    public required MpqPipeline Pipeline { get; init; }

    /// <summary>Activation-calibration images.</summary>
    public required Dataset Calibration { get; init; }

    /// <summary>CLADO sensitivity images (and OMPQ's feature batch).</summary>
    public required Dataset Sensitivity { get; init; }

    /// <summary>Held-out calibration-source images (not sensitivity, not evaluation) on which <c>best</c> compares its candidates.</summary>
    public Dataset? HeldOut { get; init; }

    /// <summary>Evaluation images (disjoint from the two above unless the user insists).</summary>
    public required Dataset Evaluation { get; init; }

    /// <summary>Methods: clado, independent, uniform, ompq, best (of the ranked clado/independent solutions and uniform, the lowest held-out loss).</summary>
    public required IReadOnlyList<string> Methods { get; init; }

    /// <summary>Ranked solutions per search method (clado and independent) that <c>best</c> compares: 1 = each method's optimum
    /// only; k adds the next-best k − 1 configurations of each (<see cref="BitSearch.SolveRanked"/>). Default 3.</summary>
    public int BestCandidates { get; init; } = 3;

    /// <summary>What <c>best</c> ranks its candidates by on the held-out images. Default <see cref="BestJudge.KlDivergence"/>.</summary>
    public BestJudge BestJudge { get; init; } = BestJudge.KlDivergence;

    /// <summary>
    /// Whether <c>best</c> judges its candidates with the weights they would be exported with (sequentially re-rounded under
    /// <see cref="PipelineOptions.FinalRounding"/> = sequential: one re-rounding per candidate) rather than the measured ones. Default false.
    /// </summary>
    public bool BestJudgesFinalWeights { get; init; }

    /// <summary>One budget per point of the sweep (one entry for a single search); each entry may combine budgets.</summary>
    public required IReadOnlyList<IReadOnlyList<Budget>> Budgets { get; init; }

    /// <summary>Output folder (created; must not exist unless <see cref="Force"/>).</summary>
    public required string OutputDirectory { get; init; }

    /// <summary>Overwrite an existing output folder's files.</summary>
    public bool Force { get; init; }

    /// <summary>Top-1 points by which an exported model and its simulation may differ under <see cref="EvaluateSimulation"/> before the run fails.</summary>
    public const double MaxSimulationGap = 0.5;

    /// <summary>Also evaluate the simulated model of every point (the exported one is always evaluated); a gap above <see cref="MaxSimulationGap"/> fails the run.</summary>
    public bool EvaluateSimulation { get; init; }

    /// <summary>Seeds used for the data draws, recorded in the manifest.</summary>
    public IReadOnlyDictionary<string, long> Seeds { get; init; } = new Dictionary<string, long>();

    /// <summary>The command line, recorded in the manifest.</summary>
    public IReadOnlyList<string> CommandLine { get; init; } = [];
}

/// <summary>One evaluated configuration of a run.</summary>
public sealed record RunPoint(string Method, string Budget, IReadOnlyList<LayerBits> Config, double AverageBits, long SizeBytes,
    double? PredictedLoss, double? Top1Simulated, double Top1Exported, double Top5Exported, string Status, double? Gap, string ModelFile);

/// <summary>The outcome of a run: the points, the full-precision reference, where everything was written.</summary>
public sealed record RunSummary(string OutputDirectory, double FpTop1, double FpTop5, IReadOnlyList<RunPoint> Points,
    SensitivityResult? Sensitivity, IReadOnlyList<StageTiming> Timings, IReadOnlyList<string> Warnings)
{
    /// <summary>Every configuration <c>best</c> compared, per budget (empty without method best); also in best-candidates.json.</summary>
    public IReadOnlyList<BestCandidate> BestCandidates { get; init; } = [];

    /// <summary>OMPQ's β and θ entropy per budget (empty without method ompq); also in manifest.json.</summary>
    public IReadOnlyList<OmpqChoice> Ompq { get; init; } = [];
}

/// <summary>Progress of a run: the stage and, within it, done/total.</summary>
public readonly record struct RunProgress(string Stage, long Done, long Total, string? Detail);

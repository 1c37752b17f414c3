using BitBudget.BestOf;
using BitBudget.Clado;
using BitBudget.Data;
using BitBudget.Ompq;
using BitBudget.Optimization;
using BitBudget.Pipeline;
using BitBudget.Quantization;

namespace BitBudget.Methods;

/// <summary>
/// A way of choosing per-layer bits for a budget (CLADO, the independent ILP, uniform bits, OMPQ, best-of). The CLI's
/// <c>search</c> and <c>run</c> commands and <c>RunWorkflow</c> reach every method through <see cref="SearchMethods"/>.
/// </summary>
public interface ISearchMethod
{
    /// <summary>The name users type (<c>--method clado</c>).</summary>
    string Name { get; }

    /// <summary>Whether the method needs CLADO's measured sensitivities (<see cref="SearchContext.Sensitivity"/>), hence calibration first.</summary>
    bool NeedsSensitivity { get; }

    /// <summary>Whether the method needs held-out images (<see cref="SearchContext.HeldOut"/>) to judge candidates on.</summary>
    bool NeedsHeldOut { get; }

    /// <summary>Why the method cannot follow <paramref name="pipeline"/>'s layer policy, or null when it can.</summary>
    string? Limitation(MpqPipeline pipeline);

    /// <summary>Chooses a configuration meeting <paramref name="budgets"/>.</summary>
    /// <exception cref="BitBudgetException">Invalid input, an infeasible budget or a solver failure.</exception>
    MethodOutcome Search(SearchContext context, IReadOnlyList<Budget> budgets, CancellationToken cancel = default);
}

/// <summary>What a method searches with: the pipeline, its images and measurements, and the methods' settings.</summary>
public sealed class SearchContext
{
    float[]? _heldOutLogits;

    /// <summary>
    /// The pipeline: a <see cref="CalibratedPipeline"/> when a method <see cref="ISearchMethod.NeedsSensitivity"/> or OMPQ judges β
    /// on held-out images (both simulate); an opened one suffices for uniform bits and OMPQ with a fixed β.
    /// </summary>
    public required MpqPipeline Pipeline { get; init; }

    /// <summary>Sensitivity images: CLADO measured on them, OMPQ takes its feature batch from them.</summary>
    public required Dataset Images { get; init; }

    /// <summary>CLADO's measurement, shared by every method that needs it; null when none does.</summary>
    public SensitivityResult? Sensitivity { get; init; }

    /// <summary>Held-out images (neither sensitivity nor evaluation) on which best-of judges its candidates.</summary>
    public Dataset? HeldOut { get; init; }

    /// <summary>How Ω is made PSD before the CLADO search.</summary>
    public PsdMethod Psd { get; init; } = PsdMethod.ClipEigenvalues;

    /// <summary>CLADO and independent: the number of best distinct configurations to return (1 = the optimum only).</summary>
    public int Rank { get; init; } = 1;

    /// <summary>Best-of: ranked solutions per search method to compare (<see cref="BestOfSearch"/>).</summary>
    public int BestCandidates { get; init; } = 3;

    /// <summary>Best-of: what ranks the candidates on the held-out images.</summary>
    public BestJudge BestJudge { get; init; } = BestJudge.KlDivergence;

    /// <summary>
    /// Best-of: judge each candidate with the weights it would be exported with (<see cref="PipelineOptions.FinalRounding"/>;
    /// sequential rounding costs one re-rounding per candidate) instead of the measured, independently rounded ones (default).
    /// </summary>
    public bool BestJudgesFinalWeights { get; init; }

    /// <summary>Progress within a search (best-of reports each candidate it judges).</summary>
    public IProgress<SearchProgress>? Progress { get; init; }

    /// <summary>The float model's logits on <see cref="HeldOut"/>, computed once per context on first use.</summary>
    internal float[] HeldOutLogits(CancellationToken cancel) =>
        _heldOutLogits ??= Pipeline.Logits(Pipeline.Original, HeldOut ?? throw new InvalidOperationException("No held-out images."), cancel);
}

/// <summary>Progress within one search: done/total and what is being done.</summary>
public readonly record struct SearchProgress(long Done, long Total, string Detail);

/// <summary>What a method chose.</summary>
/// <param name="Config">The full per-layer configuration (fixed layers included).</param>
/// <param name="PredictedLoss">xᵀΩx / 2, CLADO's predicted loss increase, when sensitivities were measured (null for OMPQ).</param>
/// <param name="Status">The solver's status, or best-of's verdict.</param>
/// <param name="Gap">The solver's relative optimality gap when finite.</param>
/// <param name="Seconds">Wall time of the search.</param>
public sealed record MethodOutcome(IReadOnlyList<LayerBits> Config, double? PredictedLoss, string Status, double? Gap, double Seconds)
{
    /// <summary>CLADO, independent, uniform: the ranked solutions, best first (one unless <see cref="SearchContext.Rank"/> &gt; 1).</summary>
    public IReadOnlyList<SearchResult> Ranked { get; init; } = [];

    /// <summary>OMPQ: the full result (proxy, allocation, units).</summary>
    public OmpqSearchResult? Ompq { get; init; }

    /// <summary>Best-of: every configuration it compared.</summary>
    public IReadOnlyList<BestCandidate> BestCandidates { get; init; } = [];
}

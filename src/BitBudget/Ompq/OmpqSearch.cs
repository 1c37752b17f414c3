using System.Diagnostics;
using BitBudget.Graph;
using BitBudget.Optimization;

namespace BitBudget.Ompq;

/// <summary>Settings of a whole OMPQ search.</summary>
public sealed record OmpqOptions
{
    /// <summary>How layers become decision units (first/last fixed at 8 bits, shortcut grouping).</summary>
    public OmpqUnitOptions Units { get; init; } = new();

    /// <summary>Proxy settings (β, centering, memory cap, runtime).</summary>
    public OrthogonalityOptions Proxy { get; init; } = new();

    /// <summary>Candidate bit-widths; default {2, 4, 8}, the same as CLADO's so results compare.</summary>
    public IReadOnlyList<int> CandidateBits { get; init; } = [2, 4, 8];

    /// <summary>How β is chosen: <see cref="OmpqBetaRule.Fixed"/> (<see cref="OrthogonalityOptions.Beta"/>, the paper's 10) by default here;
    /// <see cref="OmpqBetaRule.HeldOut"/> needs a judge (the pipeline passes the held-out KL of each configuration).</summary>
    public OmpqBetaRule BetaRule { get; init; } = OmpqBetaRule.Fixed;

    /// <summary>
    /// The spreads s of the <see cref="OmpqBetaRule.HeldOut"/> grid: β = s / (max γ − min γ), so θ spans [e^−s, 1] whatever the
    /// ORM's scale (s = 0 is uniform θ). The fixed <see cref="OrthogonalityOptions.Beta"/> is always tried as well.
    /// </summary>
    public IReadOnlyList<double> BetaSpreads { get; init; } = [0, 0.5, 1, 2, 4, 8];

    /// <summary>
    /// <see cref="OmpqBetaRule.HeldOut"/> also tries the grid with the candidate bits capped below their largest (e.g. {2, 4} besides
    /// {2, 4, 8}), judged by the same score. Why: OMPQ's LP values every bit of a unit alike, so its cheapest bits are those of the
    /// smallest units, which it fills up to the largest candidate; on ResNet-20 that is 8 bits for the small early layers while the
    /// large late ones stay at 2, whatever θ (docs/results.md, "Issue 21: OMPQ with a data-driven β").
    /// </summary>
    public bool TryBitCaps { get; init; } = true;
}

/// <summary>How OMPQ's β in θ = exp(−β γ) is chosen.</summary>
public enum OmpqBetaRule
{
    /// <summary>The fixed β of <see cref="OrthogonalityOptions.Beta"/> (default 10, the published example: θ is one-hot on the shipped CNNs).</summary>
    Fixed,
    /// <summary>
    /// Data-driven: one allocation per β of a grid set from the ORM's scale (<see cref="OmpqOptions.BetaSpreads"/>) plus the fixed β;
    /// the configuration the judge scores lowest (the pipeline: KL divergence from the float model on held-out images) wins.
    /// </summary>
    HeldOut,
}

/// <summary>One β that <see cref="OmpqBetaRule.HeldOut"/> tried.</summary>
/// <param name="Beta">β.</param>
/// <param name="Spread">β · (max γ − min γ): θ spans [e^−Spread, 1].</param>
/// <param name="ThetaEntropy">Entropy (nats) of θ normalized to sum 1.</param>
/// <param name="ThetaEntropyNormalized">The entropy over ln L (0 one-hot, 1 uniform).</param>
/// <param name="AverageBits">Average bits (all quantized layers) of its allocation.</param>
/// <param name="Score">The judge's score of its configuration (lower is better); equal configurations share one score.</param>
/// <param name="Chosen">Whether its configuration won.</param>
public sealed record OmpqBetaCandidate(double Beta, double Spread, double ThetaEntropy, double ThetaEntropyNormalized, double AverageBits, double Score, bool Chosen)
{
    /// <summary>The largest candidate bit-width its allocation could use (below the largest candidate when <see cref="OmpqOptions.TryBitCaps"/> capped it).</summary>
    public int MaxBits { get; init; }
}

/// <summary>Outcome of an OMPQ search.</summary>
/// <param name="LayerBits">Bit-width of every quantizable layer, in <see cref="ModelSummary.Layers"/> order (fixed layers included).</param>
/// <param name="Summary">The layer inventory.</param>
/// <param name="Proxy">ORM, γ, θ, unit map and degeneracy notes.</param>
/// <param name="Allocation">LP and ILP solutions per unit, statuses, sizes.</param>
/// <param name="Budget">The budget asked for.</param>
/// <param name="InspectSeconds">Wall time of model preparation and inventory.</param>
/// <param name="TotalSeconds">Wall time of the whole search.</param>
public sealed record OmpqSearchResult(
    IReadOnlyList<int> LayerBits,
    ModelSummary Summary,
    OrthogonalityResult Proxy,
    OmpqAllocationResult Allocation,
    Budget Budget,
    double InspectSeconds,
    double TotalSeconds)
{
    /// <summary>The decision units.</summary>
    public OmpqUnitMap Units => Proxy.Units;

    /// <summary>How β was chosen.</summary>
    public OmpqBetaRule BetaRule { get; init; } = OmpqBetaRule.Fixed;

    /// <summary>Every β tried under <see cref="OmpqBetaRule.HeldOut"/>, in grid order, the uncapped candidate bits first and then each
    /// lower cap (empty for a fixed β).</summary>
    public IReadOnlyList<OmpqBetaCandidate> BetaCandidates { get; init; } = [];

    /// <summary>The candidate bits the allocation used: <see cref="OmpqOptions.CandidateBits"/>, or a capped subset chosen by the held-out rule.</summary>
    public IReadOnlyList<int> CandidateBits { get; init; } = [];

    /// <summary>One line: β, how it was chosen, θ's entropy and effect, e.g. for a console or a report.</summary>
    public string Describe()
    {
        int caps = BetaCandidates.Select(c => c.MaxBits).Distinct().Count();
        string how = BetaRule == OmpqBetaRule.Fixed ? "fixed"
            : FormattableString.Invariant($"held-out: lowest score of {BetaCandidates.Count} β{(caps > 1 ? $" over {caps} bit caps" : "")}, {BetaCandidates.Select(c => c.Score).Distinct().Count()} distinct configurations");
        return FormattableString.Invariant(
            $"β = {Proxy.Beta:G4} ({how}); bits {{{string.Join(",", CandidateBits)}}}; θ entropy {Proxy.ThetaEntropy:F3} nats = {Proxy.ThetaEntropyNormalized:F3} of uniform ({Proxy.Effect})");
    }
}

/// <summary>OMPQ end to end: units from the graph, the orthogonality proxy on one batch, then the LP and the ILP.</summary>
public static class OmpqSearch
{
    /// <summary>Runs OMPQ on a model file.</summary>
    public static OmpqSearchResult Run(string modelPath, float[] images, IReadOnlyList<long> shape, Budget budget,
        OmpqOptions? options = null, CancellationToken cancellationToken = default, Func<IReadOnlyList<int>, double>? judge = null) =>
        Run(OnnxModel.Load(modelPath), images, shape, budget, options, cancellationToken, judge);

    /// <summary>Runs OMPQ on a loaded model (prepared here; the original is not changed).</summary>
    /// <param name="model">The model as loaded.</param>
    /// <param name="images">N preprocessed images, NCHW.</param>
    /// <param name="shape">Shape of <paramref name="images"/>, [N, C, H, W].</param>
    /// <param name="budget">Size budget (average bits or bytes, <see cref="OmpqAllocation.RequireSizeBudget"/>).</param>
    /// <param name="options">Settings; defaults when null.</param>
    /// <param name="cancellationToken">Checked between forward passes.</param>
    /// <param name="judge">Scores a configuration (bits per layer, <see cref="ModelSummary.Layers"/> order; lower is better); needed by
    /// <see cref="OmpqBetaRule.HeldOut"/>, ignored otherwise.</param>
    public static OmpqSearchResult Run(OnnxModel model, float[] images, IReadOnlyList<long> shape, Budget budget,
        OmpqOptions? options = null, CancellationToken cancellationToken = default, Func<IReadOnlyList<int>, double>? judge = null)
    {
        options ??= new OmpqOptions();
        if (options.BetaRule == OmpqBetaRule.HeldOut && judge is null)
        {
            throw Errors.InvalidInput("OMPQ's held-out β needs a judge of configurations (held-out images); use the paper's fixed β otherwise.");
        }
        long start = Stopwatch.GetTimestamp();
        (OnnxModel prepared, ModelSummary summary) = ModelInspector.Inspect(model);
        OmpqUnitMap units = OmpqUnits.Build(prepared, summary, options.Units);
        double inspect = Stopwatch.GetElapsedTime(start).TotalSeconds;

        // Check the budget before the forward pass: an infeasible budget should fail fast.
        var input = new OmpqAllocationInput(
            [.. units.Units.Select(u => u.WeightCount)],
            [.. units.Units.Select(_ => 1.0)],
            [.. units.FixedLayers.Select(l => summary.Layers[l].WeightCount)],
            units.FixedBits,
            budget) { CandidateBits = options.CandidateBits };
        OmpqAllocation.CheckFeasible(input);

        OrthogonalityResult proxy = Orthogonality.Measure(prepared, units, images, shape, options.Proxy, cancellationToken);
        if (options.BetaRule == OmpqBetaRule.Fixed)
        {
            OmpqAllocationResult allocation = OmpqAllocation.Solve(input with { Theta = proxy.Theta });
            return new OmpqSearchResult(LayerBits(units, summary, allocation), summary, proxy, allocation, budget, inspect, Stopwatch.GetElapsedTime(start).TotalSeconds)
            {
                CandidateBits = [.. options.CandidateBits.Distinct().Order()],
            };
        }

        // Held-out β: ORM and γ do not depend on β, so every β of the grid costs one allocation (milliseconds); each distinct
        // configuration is judged once. The uncapped candidate bits come first, so that among equal scores the original grid wins.
        double range = proxy.Gamma.Max() - proxy.Gamma.Min();
        var betas = options.BetaSpreads.Select(s => range > 0 ? s / range : 0).Append(options.Proxy.Beta).Distinct().ToList();
        var tried = new List<(OrthogonalityResult Proxy, OmpqAllocationResult Allocation, int[] Bits, string Key, int[] Candidates)>();
        var scores = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (int[] candidates in BitCaps(options))
        {
            foreach (double beta in betas)
            {
                cancellationToken.ThrowIfCancellationRequested();
                OrthogonalityResult weighed = Orthogonality.WithBeta(proxy, beta);
                OmpqAllocationResult allocation = OmpqAllocation.Solve(input with { Theta = weighed.Theta, CandidateBits = candidates });
                int[] bits = LayerBits(units, summary, allocation);
                string key = string.Join(",", bits);
                if (!scores.ContainsKey(key)) { scores[key] = judge!(bits); }
                tried.Add((weighed, allocation, bits, key, candidates));
            }
        }
        // The lowest score wins; among β giving that configuration, the first of the grid (the least peaked θ, the widest bits).
        var winner = tried.MinBy(t => scores[t.Key]);
        var candidateList = tried.Select(t => new OmpqBetaCandidate(t.Proxy.Beta, t.Proxy.Beta * range, t.Proxy.ThetaEntropy, t.Proxy.ThetaEntropyNormalized,
            t.Allocation.AverageBits, scores[t.Key], t == winner) { MaxBits = t.Candidates[^1] }).ToList();
        return new OmpqSearchResult(winner.Bits, summary, winner.Proxy, winner.Allocation, budget, inspect, Stopwatch.GetElapsedTime(start).TotalSeconds)
        {
            BetaRule = OmpqBetaRule.HeldOut,
            BetaCandidates = candidateList,
            CandidateBits = winner.Candidates,
        };
    }

    /// <summary>The candidate sets the held-out rule tries: all candidates, then (with <see cref="OmpqOptions.TryBitCaps"/>) each set
    /// without its largest widths, down to the two smallest. The all-minimum configuration is the same in every set, so each is feasible.</summary>
    internal static List<int[]> BitCaps(OmpqOptions options)
    {
        int[] sorted = [.. options.CandidateBits.Distinct().Order()];
        var sets = new List<int[]> { sorted };
        if (options.TryBitCaps)
        {
            for (int k = sorted.Length - 1; k >= 2; k--) { sets.Add(sorted[..k]); }
        }
        return sets;
    }

    static int[] LayerBits(OmpqUnitMap units, ModelSummary summary, OmpqAllocationResult allocation)
    {
        var layerBits = new int[summary.Layers.Count];
        foreach (int l in units.FixedLayers) { layerBits[l] = units.FixedBits; }
        foreach (OmpqUnit u in units.Units)
        {
            foreach (int l in u.Layers) { layerBits[l] = allocation.Bits[u.Index]; }
        }
        return layerBits;
    }
}

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
}

/// <summary>OMPQ end to end: units from the graph, the orthogonality proxy on one batch, then the LP and the ILP.</summary>
public static class OmpqSearch
{
    /// <summary>Runs OMPQ on a model file.</summary>
    public static OmpqSearchResult Run(string modelPath, float[] images, IReadOnlyList<long> shape, Budget budget,
        OmpqOptions? options = null, CancellationToken cancellationToken = default) =>
        Run(OnnxModel.Load(modelPath), images, shape, budget, options, cancellationToken);

    /// <summary>Runs OMPQ on a loaded model (prepared here; the original is not changed).</summary>
    /// <param name="model">The model as loaded.</param>
    /// <param name="images">N preprocessed images, NCHW.</param>
    /// <param name="shape">Shape of <paramref name="images"/>, [N, C, H, W].</param>
    /// <param name="budget">Size budget (average bits or bytes, <see cref="OmpqAllocation.RequireSizeBudget"/>).</param>
    /// <param name="options">Settings; defaults when null.</param>
    /// <param name="cancellationToken">Checked between forward passes.</param>
    public static OmpqSearchResult Run(OnnxModel model, float[] images, IReadOnlyList<long> shape, Budget budget,
        OmpqOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new OmpqOptions();
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
        OmpqAllocationResult allocation = OmpqAllocation.Solve(input with { Theta = proxy.Theta });

        var layerBits = new int[summary.Layers.Count];
        foreach (int l in units.FixedLayers) { layerBits[l] = units.FixedBits; }
        foreach (OmpqUnit u in units.Units)
        {
            foreach (int l in u.Layers) { layerBits[l] = allocation.Bits[u.Index]; }
        }
        return new OmpqSearchResult(layerBits, summary, proxy, allocation, budget, inspect, Stopwatch.GetElapsedTime(start).TotalSeconds);
    }
}

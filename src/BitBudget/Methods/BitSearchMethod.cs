using BitBudget.Clado;
using BitBudget.Optimization;
using BitBudget.Pipeline;

namespace BitBudget.Methods;

/// <summary>
/// CLADO (the exact IQP over measured Ω), the independent ILP (Ω's diagonal only) and uniform bits: one problem built by
/// <see cref="MpqPipeline.Problem"/>, solved by <see cref="BitSearch"/>.
/// </summary>
sealed class BitSearchMethod(string name, SearchMethod kind) : ISearchMethod
{
    public string Name => name;

    public bool NeedsSensitivity => kind != SearchMethod.Uniform;

    public bool NeedsHeldOut => false;

    public string? Limitation(MpqPipeline pipeline) => null;

    public MethodOutcome Search(SearchContext context, IReadOnlyList<Budget> budgets, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(context);
        MpqPipeline p = context.Pipeline;
        SensitivityResult? s = context.Sensitivity;
        IReadOnlyList<SearchResult> ranked = context.Rank > 1 && s is not null
            ? p.SearchRanked(kind, budgets, s, context.Rank, context.Psd, cancel)
            : [p.Search(kind, budgets, s, context.Psd, cancel)];
        SearchResult r = ranked[0];
        double? gap = double.IsFinite(r.Gap) ? r.Gap : null;
        return new MethodOutcome(p.Configuration(r.Bits), s is null ? null : r.QuadraticObjective / 2, r.Status.ToString(), gap, r.SolveTime.TotalSeconds)
        {
            Ranked = ranked,
        };
    }
}

using BitBudget.Ompq;
using BitBudget.Optimization;
using BitBudget.Pipeline;

namespace BitBudget.Methods;

/// <summary>OMPQ (<see cref="OmpqSearch"/>): the orthogonality proxy on one batch of <see cref="SearchContext.Images"/>, then its LP and ILP.</summary>
sealed class OmpqMethod : ISearchMethod
{
    public string Name => "ompq";

    public bool NeedsSensitivity => false;

    public bool NeedsHeldOut => false;

    public string? Limitation(MpqPipeline pipeline) => pipeline.OmpqLimitation;

    // OMPQ optimizes one size budget: the first of a combination.
    public MethodOutcome Search(SearchContext context, IReadOnlyList<Budget> budgets, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(budgets);
        // The held-out β (the default) judges its candidates on the held-out images; the pipeline says so when there are none.
        OmpqSearchResult o = context.Pipeline.SearchOmpq(context.Images, budgets[0], cancel, context.HeldOut);
        return new MethodOutcome(context.Pipeline.Configuration(o.LayerBits), null, $"{o.Allocation.IlpStatus}; {o.Describe()}", null, o.TotalSeconds) { Ompq = o };
    }
}

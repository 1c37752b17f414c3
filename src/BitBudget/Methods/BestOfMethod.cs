using BitBudget.BestOf;
using BitBudget.Optimization;
using BitBudget.Pipeline;

namespace BitBudget.Methods;

/// <summary>Best-of (<see cref="BestOfSearch"/>): the ranked CLADO and independent solutions and uniform, judged on held-out images.</summary>
sealed class BestOfMethod : ISearchMethod
{
    public string Name => "best";

    public bool NeedsSensitivity => true;

    public bool NeedsHeldOut => true;

    public string? Limitation(MpqPipeline pipeline) => null;

    public MethodOutcome Search(SearchContext context, IReadOnlyList<Budget> budgets, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(budgets);
        if (context.HeldOut is null)
        {
            throw Errors.InvalidInput("Method best needs held-out calibration images to compare its candidates on.");
        }
        if (context.Sensitivity is null) { throw Errors.InvalidInput("Method best needs measured sensitivities."); }
        // Sensitivities come from a calibrated pipeline; best-of simulates its candidates with that calibration.
        CalibratedPipeline p = context.Pipeline as CalibratedPipeline
            ?? throw new InvalidOperationException("Method best simulates its candidates: pass the CalibratedPipeline that Calibrate returns.");
        string label = string.Join("+", budgets.Select(b => b.ToString()));
        float[] floatLogits = context.HeldOutLogits(cancel);
        BestOfResult r = BestOfSearch.Run(p, budgets, label, context.Sensitivity, context.HeldOut, floatLogits, context.BestCandidates, context.BestJudge,
            context.BestJudgesFinalWeights,
            context.Progress is null ? null : (done, total, detail) => context.Progress.Report(new SearchProgress(done, total, detail)), cancel);
        return new MethodOutcome(p.Configuration(r.Winner.Bits), r.Winner.QuadraticObjective / 2, r.Verdict, null, r.Seconds) { BestCandidates = r.Considered };
    }
}

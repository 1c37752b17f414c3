using BitBudget.Clado;
using BitBudget.Data;
using BitBudget.Evaluation;
using BitBudget.Optimization;
using BitBudget.Pipeline;
using BitBudget.Quantization;

namespace BitBudget.BestOf;

/// <summary>The held-out measure by which <c>best</c> picks its configuration (lower is better).</summary>
public enum BestJudge
{
    /// <summary>Mean KL(float ‖ quantized) of the softmax outputs: how far quantization moves the model, without labels.</summary>
    KlDivergence,
    /// <summary>Mean cross-entropy against the labels.</summary>
    CrossEntropy,
}

/// <summary>One configuration <c>best</c> considered at one budget.</summary>
/// <param name="Budget">The budget label.</param>
/// <param name="Sources">Where it came from, e.g. "clado #1" (the optimum) or "independent #2" (the next best); several when methods agree.</param>
/// <param name="AverageBits">Average weight bits over all quantized layers.</param>
/// <param name="PredictedLoss">xᵀΩx / 2, CLADO's predicted loss increase.</param>
/// <param name="HeldOutKlDivergence">Mean KL(float ‖ simulated model) on the held-out images (what decides by default).</param>
/// <param name="HeldOutCrossEntropy">Mean cross-entropy of the simulated model on the held-out images against their labels.</param>
/// <param name="HeldOutTop1">Top-1 (%) on the held-out images, for information.</param>
/// <param name="Chosen">Whether <c>best</c> returned it.</param>
public sealed record BestCandidate(string Budget, IReadOnlyList<string> Sources, double AverageBits, double PredictedLoss,
    double HeldOutKlDivergence, double HeldOutCrossEntropy, double HeldOutTop1, bool Chosen);

/// <summary>What <see cref="BestOfSearch.Run"/> chose: the winning search result, its verdict, the solvers' time and every candidate.</summary>
internal sealed record BestOfResult(SearchResult Winner, string Verdict, double Seconds, IReadOnlyList<BestCandidate> Considered);

/// <summary>Method best: the lowest held-out loss among the ranked CLADO and independent solutions and uniform bits.</summary>
internal static class BestOfSearch
{
    /// <summary>What needs labels with <see cref="BestJudge.CrossEntropy"/>, and its label-free alternative (for the one-line error).</summary>
    internal const string CeJudgeNeeds = "Judging 'best' candidates by held-out CE (--best-judge ce)",
        CeJudgeAlternative = "judging them by held-out KL (--best-judge kl)";

    /// <summary>
    /// Method best at one budget: the ranked solutions of CLADO and of the independent ILP (each optimum and its next-best
    /// configurations) and the best feasible uniform configuration, each distinct configuration judged by its simulated model on
    /// the held-out images (neither the sensitivity set nor the evaluation set) — by default the KL divergence from the float
    /// model's outputs, else the cross-entropy against the labels; the lowest wins.
    /// </summary>
    /// <remarks>
    /// KL by default: the held-out images come from the calibration source, usually training images the float model fits
    /// better than unseen ones, and label cross-entropy there rewarded configurations that fit those labels even better
    /// than the float model rather than ones that stay close to it (docs/results.md has the measurement).
    /// </remarks>
    /// <param name="p">The calibrated pipeline.</param>
    /// <param name="budgets">The budgets every candidate meets.</param>
    /// <param name="label">The budget label recorded with each candidate.</param>
    /// <param name="sensitivity">CLADO's measurement.</param>
    /// <param name="heldOut">The held-out images.</param>
    /// <param name="floatLogits">The float model's logits on <paramref name="heldOut"/>.</param>
    /// <param name="candidates">Ranked solutions per search method: 1 = each method's optimum only (<see cref="BitSearch.SolveRanked"/>).</param>
    /// <param name="judge">What ranks the candidates.</param>
    /// <param name="finalWeights">
    /// Judge each candidate with its final weights (<see cref="CalibratedPipeline.FinalWeights"/>: what its export computes) instead
    /// of the measured ones; the losers' re-rounded weights are dropped after judging, the winner's are kept for its export.
    /// </param>
    /// <param name="report">Progress: candidates judged, distinct candidates, what is being judged.</param>
    /// <param name="cancel">Checked between candidates.</param>
    public static BestOfResult Run(CalibratedPipeline p, IReadOnlyList<Budget> budgets, string label, SensitivityResult sensitivity, Dataset heldOut,
        float[] floatLogits, int candidates, BestJudge judge, bool finalWeights, Action<long, long, string>? report, CancellationToken cancel)
    {
        ArgumentNullException.ThrowIfNull(p);
        if (judge == BestJudge.CrossEntropy) { heldOut.RequireLabels(CeJudgeNeeds, CeJudgeAlternative); }
        int count = Math.Max(1, candidates);
        var ranked = new[] { SearchMethod.Clado, SearchMethod.Independent }
            .SelectMany(m => p.SearchRanked(m, budgets, sensitivity, count, cancel: cancel)
                .Select((r, i) => (Source: $"{m.ToString().ToLowerInvariant()} #{i + 1}", Result: r)))
            .ToList();
        // The best feasible uniform configuration competes too, so best is never worse on held-out images than the plain baseline.
        try { ranked.Add(("uniform", p.Search(SearchMethod.Uniform, budgets, sensitivity, cancel: cancel))); }
        catch (BitBudgetException e) when (e.Kind == ErrorKind.Infeasible) { }
        var distinct = ranked.GroupBy(c => BitConfig.Describe(p.Configuration(c.Result.Bits))).ToList();
        var judged = new List<(IReadOnlyList<string> Sources, SearchResult Result, EvaluationResult HeldOut)>();
        foreach (var group in distinct)
        {
            cancel.ThrowIfCancellationRequested();
            report?.Invoke(judged.Count, distinct.Count, $"best @ {label}: held-out loss of candidate {judged.Count + 1} of {distinct.Count}");
            SearchResult result = group.First().Result;
            EvaluationResult evaluated = p.EvaluateAgainst(p.Simulate(p.Configuration(result.Bits), finalRounding: finalWeights), heldOut, floatLogits, cancel);
            judged.Add(([.. group.Select(c => c.Source)], result, evaluated));
        }
        bool kl = judge == BestJudge.KlDivergence;
        double Score(EvaluationResult e) => kl ? e.KlDivergence!.Value : e.CrossEntropy;
        var winner = judged.MinBy(j => Score(j.HeldOut));
        if (finalWeights)
        {
            // Each re-rounded candidate holds a copy of every layer's weights: only the winner's is needed again (its export).
            foreach (var j in judged.Where(j => j != winner)) { p.ForgetFinalWeights(p.Configuration(j.Result.Bits)); }
        }
        var runnerUp = judged.Where(j => j != winner).OrderBy(j => Score(j.HeldOut)).FirstOrDefault();
        string measure = (kl ? "held-out KL" : "held-out CE") + (finalWeights ? " with final weights" : "");
        string verdict = FormattableString.Invariant($"{string.Join(" = ", winner.Sources)} of {judged.Count} candidates ({measure} {Score(winner.HeldOut):G4}")
            + (runnerUp.Result is null ? ")" : FormattableString.Invariant($"; next {string.Join(" = ", runnerUp.Sources)} {Score(runnerUp.HeldOut):G4})"));
        var considered = judged.Select(j => new BestCandidate(label, j.Sources, j.Result.AverageBits, j.Result.QuadraticObjective / 2,
            j.HeldOut.KlDivergence!.Value, j.HeldOut.CrossEntropy, j.HeldOut.Top1, j == winner)).ToList();
        return new BestOfResult(winner.Result, verdict, ranked.Sum(c => c.Result.SolveTime.TotalSeconds), considered);
    }
}

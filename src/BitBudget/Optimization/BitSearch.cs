using System.Diagnostics;

namespace BitBudget.Optimization;

/// <summary>How the bit-widths are chosen.</summary>
public enum SearchMethod
{
    /// <summary>Exact minimisation of xᵀΩx (cross-layer interactions included) under the budgets.</summary>
    Clado,
    /// <summary>ILP on the diagonal of Ω only (layers assumed independent), same budgets.</summary>
    Independent,
    /// <summary>The largest bit-width that every searched layer offers and that meets the budgets.</summary>
    Uniform,
}

/// <summary>Algorithm for the CLADO IQP. docs/optimization.md compares them on the same instances.</summary>
public enum IqpAlgorithm
{
    /// <summary>MILP with the one-hot (RLT) linearization of the products, solved by SCIP, warm-started. The default's fallback for several budget rows.</summary>
    RltScip,
    /// <summary>The same RLT MILP solved by HiGHS (no warm-start hint: OR-Tools' HiGHS hint crashes).</summary>
    RltHighs,
    /// <summary>MILP with plain McCormick inequalities for the products (the weak textbook form), HiGHS.</summary>
    McCormickHighs,
    /// <summary>Outer approximation over the eigen-directions of Ω with tangent cuts, re-solved by SCIP each round.</summary>
    OuterApproximationScip,
    /// <summary>Outer approximation as above, HiGHS.</summary>
    OuterApproximationHighs,
    /// <summary>Independent-ILP start plus 1-swap/2-swap descent only: fast, no optimality proof.</summary>
    LocalSearch,
    /// <summary>Own branch-and-bound over the convex QCR relaxation (Ω − B ⪰ 0 with B block-diagonal, solved by away-step
    /// Frank–Wolfe); any symmetric Ω (PSD not needed); one budget row (with several it falls back to <see cref="RltScip"/>).
    /// Fastest measured by far (docs/optimization.md).</summary>
    QcrBranchAndBound,
    /// <summary>Enumerates every configuration (only up to about a million configurations).</summary>
    BruteForce,
    /// <summary>
    /// The default: QCR branch-and-bound for two thirds of the time limit (since the tangent-space QCR and pseudocost
    /// branching it proves every measured instance, the measured ResNet-20 Ω at 2.5–6 bits included, where the MILPs time
    /// out), then, if not yet proven, the RLT MILP in SCIP warm-started with its incumbent. The bound is the better of the two.
    /// </summary>
    Portfolio,
}

/// <summary>Options of <see cref="BitSearch.Solve"/>.</summary>
public sealed record SearchOptions
{
    /// <summary>Wall-time limit of the whole search; the best configuration so far is returned with status TimeLimit. Default 60 s.</summary>
    public TimeSpan TimeLimit { get; init; } = TimeSpan.FromSeconds(60);
    /// <summary>Relative gap at which a solution counts as optimal. Default 1e-3 (0.1 %).</summary>
    public double RelativeGap { get; init; } = 1e-3;
    /// <summary>Solver threads; 0 leaves the solver's default.</summary>
    public int Threads { get; init; }
    /// <summary>Algorithm for <see cref="SearchMethod.Clado"/>.</summary>
    public IqpAlgorithm Algorithm { get; init; } = IqpAlgorithm.Portfolio;
    /// <summary>
    /// Whether a CLADO solve starts from what earlier solves over the same Ω and budget rows left (<see cref="SweepMemory"/>:
    /// incumbents, the bounds of looser budgets, pseudocosts). Default true; false solves every budget cold (benchmarks, tests).
    /// </summary>
    internal bool ReuseAcrossBudgets { get; init; } = true;
}

/// <summary>The search stage: chooses one bit-width per searched layer under the budgets.</summary>
public static class BitSearch
{
    /// <summary>Solves <paramref name="problem"/> with <paramref name="method"/>.</summary>
    /// <exception cref="BitBudgetException"><see cref="ErrorKind.Infeasible"/> when no configuration meets the budgets (the message names the minimum feasible value);
    /// <see cref="ErrorKind.InvalidInput"/> for an inconsistent problem.</exception>
    public static SearchResult Solve(SearchProblem problem, SearchMethod method, SearchOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new SearchOptions();
        ArgumentOutOfRangeException.ThrowIfNegative(options.RelativeGap);
        var clock = Stopwatch.StartNew();
        Instance inst = Instance.Compile(problem);
        return method switch
        {
            SearchMethod.Uniform => Uniform(inst, clock),
            SearchMethod.Independent => Independent(inst, options, clock),
            _ => Clado(inst, options, clock, cancellationToken),
        };
    }

    /// <summary>
    /// The <paramref name="count"/> best distinct configurations by <paramref name="method"/>'s own objective, best first. The
    /// first is <see cref="Solve"/>'s answer; each next one solves the method's integer program again with a no-good cut per
    /// configuration found so far (the independent ILP in HiGHS, CLADO's one-hot RLT MILP in SCIP warm-started with the best
    /// unexcluded 1-swap neighbour), so the k-th is optimal, within <see cref="SearchOptions.RelativeGap"/>, over every
    /// configuration but the k − 1 before it. Fewer come back when fewer configurations meet the budgets; uniform has one.
    /// Each solve gets the full <see cref="SearchOptions.TimeLimit"/>.
    /// </summary>
    /// <exception cref="BitBudgetException">As <see cref="Solve"/>.</exception>
    public static IReadOnlyList<SearchResult> SolveRanked(SearchProblem problem, SearchMethod method, int count, SearchOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        options ??= new SearchOptions();
        var results = new List<SearchResult> { Solve(problem, method, options, cancellationToken) };
        if (method == SearchMethod.Uniform) { return results; }
        Instance inst = Instance.Compile(problem);
        var found = new List<int[]> { inst.ChoiceOf(results[0].Bits) };
        while (results.Count < count)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var clock = Stopwatch.StartNew();
            SearchResult? next = method == SearchMethod.Independent ? NextIndependent(inst, options, found, clock) : NextClado(inst, options, found, clock);
            if (next is null) { break; }
            results.Add(next);
            found.Add(inst.ChoiceOf(next.Bits));
        }
        return results;
    }

    static SearchResult? NextIndependent(Instance inst, SearchOptions options, List<int[]> excluded, Stopwatch clock)
    {
        MipOutcome outcome = MipModels.Independent(inst, options, "HIGHS", options.TimeLimit, excluded);
        if (outcome.Infeasible || outcome.Choice is null) { return null; }
        double value = inst.Diagonal(outcome.Choice);
        return Result(inst, SearchMethod.Independent, outcome.Choice, value, outcome.Bound,
            outcome.Optimal ? SearchStatus.Optimal : SearchStatus.TimeLimit, clock, $"{outcome.Solver}, excluding {excluded.Count} better");
    }

    static SearchResult? NextClado(Instance inst, SearchOptions options, List<int[]> excluded, Stopwatch clock)
    {
        int[]? hint = BestNeighbour(inst, excluded);
        MipOutcome outcome = MipModels.Linearized(inst, options, "SCIP", rlt: true, hint, options.TimeLimit, excluded);
        if (outcome.Infeasible) { return null; }
        int[]? best = hint;
        double upper = hint is null ? double.PositiveInfinity : inst.Quadratic(hint);
        if (outcome.Choice is { } c && inst.Feasible(c) && !excluded.Any(e => e.AsSpan().SequenceEqual(c)) && inst.Quadratic(c) < upper)
        {
            (best, upper) = (c, inst.Quadratic(c));
        }
        if (best is null) { return null; }
        double bound = Math.Min(outcome.Bound, upper);
        SearchStatus status = outcome.Optimal || MipModels.Gap(upper, bound) <= options.RelativeGap ? SearchStatus.Optimal : SearchStatus.TimeLimit;
        return Result(inst, SearchMethod.Clado, best, upper, bound, status, clock, $"{outcome.Solver}, excluding {excluded.Count} better");
    }

    /// <summary>The feasible configuration with the least xᵀΩx that differs from an excluded one in one layer and is not excluded itself.</summary>
    static int[]? BestNeighbour(Instance inst, List<int[]> excluded)
    {
        int[]? best = null;
        double bestValue = double.PositiveInfinity;
        foreach (int[] from in excluded)
        {
            var choice = (int[])from.Clone();
            for (int i = 0; i < inst.L; i++)
            {
                for (int t = 0; t < inst.Offsets[i + 1] - inst.Offsets[i]; t++)
                {
                    if (t == from[i]) { continue; }
                    choice[i] = t;
                    if (inst.Feasible(choice) && !excluded.Any(e => e.AsSpan().SequenceEqual(choice)))
                    {
                        double value = inst.Quadratic(choice);
                        if (value < bestValue) { (best, bestValue) = ((int[])choice.Clone(), value); }
                    }
                }
                choice[i] = from[i];
            }
        }
        return best;
    }

    static SearchResult Uniform(Instance inst, Stopwatch clock)
    {
        IEnumerable<int> common = inst.Problem.Layers[inst.Searched[0]].CandidateBits;
        foreach (int l in inst.Searched) { common = common.Intersect(inst.Problem.Layers[l].CandidateBits); }
        int[] widths = [.. common.OrderDescending()];
        if (widths.Length == 0)
        {
            throw Errors.InvalidInput("No bit-width is a candidate of every searched layer, so there is no uniform configuration.");
        }
        var choice = new int[inst.L];
        foreach (int b in widths)
        {
            for (int i = 0; i < inst.L; i++) { choice[i] = IndexOf(inst.Problem.Layers[inst.Searched[i]].CandidateBits, b); }
            if (inst.Feasible(choice))
            {
                double value = inst.Quadratic(choice);
                return Result(inst, SearchMethod.Uniform, choice, value, value, SearchStatus.Optimal, clock, $"uniform {b}-bit");
            }
        }
        int lowest = widths[^1];
        var lowestBits = inst.BitsOfChoice(choice);
        string needs = string.Join(", ", inst.Problem.Budgets.Select(b => $"{b.Describe(b.Measure(inst.Problem, lowestBits))} against {b}"));
        throw Errors.Infeasible($"No uniform bit-width meets the budget: the lowest, {lowest} bits, needs {needs}.");
    }

    static int IndexOf(IReadOnlyList<int> list, int value)
    {
        for (int i = 0; i < list.Count; i++) { if (list[i] == value) { return i; } }
        return -1;
    }

    static SearchResult Independent(Instance inst, SearchOptions options, Stopwatch clock)
    {
        MipOutcome outcome = MipModels.Independent(inst, options, "HIGHS", options.TimeLimit);
        int[] choice = outcome.Choice ?? throw NoSolution(outcome);
        double value = inst.Diagonal(choice);
        SearchStatus status = outcome.Optimal ? SearchStatus.Optimal : SearchStatus.TimeLimit;
        return Result(inst, SearchMethod.Independent, choice, value, outcome.Bound, status, clock, outcome.Solver);
    }

    static BitBudgetException NoSolution(MipOutcome outcome) => outcome.Infeasible
        ? Errors.Infeasible("The budgets together admit no configuration, although each alone is feasible.")
        : Errors.Runtime($"{outcome.Solver} returned no solution within the time limit.");

    static SearchResult Clado(Instance inst, SearchOptions options, Stopwatch clock, CancellationToken cancellationToken)
    {
        if (options.Algorithm == IqpAlgorithm.BruteForce)
        {
            if (Enumerable.Range(0, inst.L).Aggregate(1.0, (p, i) => p * (inst.Offsets[i + 1] - inst.Offsets[i])) > 5e6)
            {
                throw Errors.InvalidInput($"Brute force over {inst.L} searched layers is too large; use an exact MILP algorithm.");
            }
            var found = LocalSearch.BruteForce(inst) ?? throw Errors.Infeasible("The budgets together admit no configuration, although each alone is feasible.");
            return Result(inst, SearchMethod.Clado, found.Choice, found.Objective, found.Objective, SearchStatus.Optimal, clock, "brute force");
        }

        // Warm start: the independent ILP's configuration improved by swaps; every exact algorithm gets it as hint or incumbent.
        MipOutcome start = MipModels.Independent(inst, options, "HIGHS", Remaining(options, clock));
        int[] incumbent = start.Choice ?? throw NoSolution(start);
        double upper = LocalSearch.Improve(inst, incumbent, cancellationToken);
        if (options.Algorithm == IqpAlgorithm.LocalSearch)
        {
            return Result(inst, SearchMethod.Clado, incumbent, upper, double.NegativeInfinity, SearchStatus.Feasible, clock, "independent ILP + 1/2-swap local search");
        }

        // Warm start from the earlier budgets of the same sweep: a better incumbent, and the bound of a looser budget, which may
        // already close the gap (e.g. when a looser budget's optimum also fits this one).
        SweepMemory? memory = options.ReuseAcrossBudgets ? SweepMemory.For(inst, options.Algorithm) : null;
        double floor = double.NegativeInfinity;
        string warm = "";
        if (memory is not null)
        {
            (int[]? known, double knownValue, floor) = memory.Lookup(inst);
            if (known is not null && knownValue < upper)
            {
                (incumbent, upper) = (known, LocalSearch.Improve(inst, known, cancellationToken));
                warm = "; incumbent from an earlier budget";
            }
            if (MipModels.Gap(upper, floor) <= options.RelativeGap)
            {
                memory.Record(inst, incumbent, upper, floor);
                return Result(inst, SearchMethod.Clado, incumbent, upper, Math.Min(floor, upper), SearchStatus.Optimal, clock,
                    "proven by the lower bound of a looser budget of the same sweep" + warm);
            }
        }

        MipOutcome outcome = options.Algorithm == IqpAlgorithm.Portfolio ? Portfolio(inst, options, ref incumbent, ref upper, clock, memory, cancellationToken) : options.Algorithm switch
        {
            IqpAlgorithm.QcrBranchAndBound when inst.Rows.Length == 1 => ConvexBranchAndBound.Solve(inst, options, incumbent, upper, clock, cancellationToken, memory: memory).Outcome,
            IqpAlgorithm.RltHighs => MipModels.Linearized(inst, options, "HIGHS", rlt: true, incumbent, Remaining(options, clock)),
            IqpAlgorithm.McCormickHighs => MipModels.Linearized(inst, options, "HIGHS", rlt: false, incumbent, Remaining(options, clock)),
            IqpAlgorithm.OuterApproximationScip => MipModels.OuterApproximation(inst, options, "SCIP", incumbent, upper, clock, cancellationToken).Outcome,
            IqpAlgorithm.OuterApproximationHighs => MipModels.OuterApproximation(inst, options, "HIGHS", incumbent, upper, clock, cancellationToken).Outcome,
            _ => MipModels.Linearized(inst, options, "SCIP", rlt: true, incumbent, Remaining(options, clock)),
        };
        if (outcome.Infeasible) { throw NoSolution(outcome); }
        int[] best = incumbent;
        if (outcome.Choice is { } choice && inst.Feasible(choice) && inst.Quadratic(choice) < upper)
        {
            (best, upper) = (choice, inst.Quadratic(choice));
        }
        if (floor > outcome.Bound) { warm += "; bound from a looser budget"; }
        double bound = Math.Min(Math.Max(outcome.Bound, floor), upper);
        SearchStatus status = outcome.Optimal || MipModels.Gap(upper, bound) <= options.RelativeGap ? SearchStatus.Optimal : SearchStatus.TimeLimit;
        string solver = (outcome.Choice is null ? $"{outcome.Solver}; configuration from the local search" : outcome.Solver) + warm;
        memory?.Record(inst, best, upper, bound);
        return Result(inst, SearchMethod.Clado, best, upper, bound, status, clock, solver);
    }

    static MipOutcome Portfolio(Instance inst, SearchOptions options, ref int[] incumbent, ref double upper, Stopwatch clock, SweepMemory? memory, CancellationToken cancellationToken)
    {
        double lower = double.NegativeInfinity;
        if (inst.Rows.Length == 1)
        {
            // Two thirds of the limit: since the tangent QCR and pseudocost branching (issue 21) the B&B proved every measured
            // instance (ResNet-20 Ω at 2.5–6 bits, synthetic 52 and 54 layers) where the MILPs timed out; SCIP is the fallback.
            TimeSpan slice = TimeSpan.FromTicks(options.TimeLimit.Ticks * 2 / 3);
            MipOutcome first = ConvexBranchAndBound.Solve(inst, options with { TimeLimit = clock.Elapsed + slice }, incumbent, upper, clock, cancellationToken, memory: memory).Outcome;
            if (first.Infeasible || first.Optimal) { return first with { Solver = $"portfolio: {first.Solver}" }; }
            if (first.Choice is { } c && inst.Feasible(c) && inst.Quadratic(c) < upper) { (incumbent, upper) = (c, inst.Quadratic(c)); }
            lower = first.Bound;
            if (MipModels.Gap(upper, lower) <= options.RelativeGap) { return first with { Choice = incumbent, Optimal = true, Solver = $"portfolio: {first.Solver}" }; }
        }
        MipOutcome second = MipModels.Linearized(inst, options, "SCIP", rlt: true, incumbent, Remaining(options, clock));
        return second with { Bound = Math.Max(second.Bound, lower), Solver = $"portfolio: {(inst.Rows.Length == 1 ? "QCR B&B, then " : "")}{second.Solver}" };
    }

    static TimeSpan Remaining(SearchOptions options, Stopwatch clock)
    {
        TimeSpan left = options.TimeLimit - clock.Elapsed;
        return left > TimeSpan.FromMilliseconds(100) ? left : TimeSpan.FromMilliseconds(100);
    }

    static SearchResult Result(Instance inst, SearchMethod method, int[] choice, double objective, double bound, SearchStatus status, Stopwatch clock, string solver)
    {
        var bits = inst.BitsOfChoice(choice);
        SearchProblem p = inst.Problem;
        return new SearchResult(method, bits, objective, bound, MipModels.Gap(objective, bound), inst.Quadratic(choice), status, clock.Elapsed,
            p.SizeBytes(bits), p.AverageBits(bits), Budget.Measure(p, BudgetKind.AvgBits, BudgetScope.SearchedOnly, bits), p.BitOps(bits), solver);
    }
}

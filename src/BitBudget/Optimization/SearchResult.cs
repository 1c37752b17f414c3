namespace BitBudget.Optimization;

/// <summary>How a search ended.</summary>
public enum SearchStatus
{
    /// <summary>Proven optimal within the relative gap asked for (<see cref="SearchOptions.RelativeGap"/>).</summary>
    Optimal,
    /// <summary>A feasible configuration without a proof of optimality (a heuristic or a stopped solver).</summary>
    Feasible,
    /// <summary>No configuration meets the budgets.</summary>
    Infeasible,
    /// <summary>The time limit stopped the solver; the result is its best configuration, with the bound reached so far.</summary>
    TimeLimit,
}

/// <summary>The chosen bit-width per layer and what the solver proved about it.</summary>
/// <param name="Method">Search method.</param>
/// <param name="Bits">Bit-width of every layer (fixed ones included), in the problem's layer order.</param>
/// <param name="Objective">Value of the method's own objective at <paramref name="Bits"/>: xᵀΩx for CLADO and uniform, diag(Ω)ᵀx for the independent ILP.</param>
/// <param name="BestBound">Proven lower bound on the method's objective (−∞ when none was proven).</param>
/// <param name="Gap">(Objective − BestBound) / max(|Objective|, |BestBound|); 0 when proven optimal exactly.</param>
/// <param name="QuadraticObjective">xᵀΩx at <paramref name="Bits"/> (twice the predicted loss increase), comparable across methods.</param>
/// <param name="Status">How the search ended.</param>
/// <param name="SolveTime">Wall time of the search.</param>
/// <param name="SizeBytes">Weight bytes of all quantized layers.</param>
/// <param name="AverageBits">Average weight bits over all quantized layers.</param>
/// <param name="AverageBitsSearched">Average weight bits over the searched layers only.</param>
/// <param name="BitOps">Bit operations per image over all quantized layers.</param>
/// <param name="Solver">What produced the result, e.g. "HiGHS MILP (one-hot linearization)".</param>
public sealed record SearchResult(
    SearchMethod Method,
    IReadOnlyDictionary<string, int> Bits,
    double Objective,
    double BestBound,
    double Gap,
    double QuadraticObjective,
    SearchStatus Status,
    TimeSpan SolveTime,
    double SizeBytes,
    double AverageBits,
    double AverageBitsSearched,
    double BitOps,
    string Solver)
{
    /// <summary>
    /// JSON with every field in the one snake_case schema, layers as an ordered array of {"layer","bits"}; non-finite numbers
    /// are written as null. Shape: {"method","status","solver","objective","best_bound","gap","quadratic_objective",
    /// "solve_seconds","size_bytes","average_bits","average_bits_searched","bit_ops","layers":[{"layer","bits"}]} — the
    /// layer entries are those of pareto.json.
    /// </summary>
    public string ToJson() => BitBudgetJson.Serialize(SearchResultJson.From(this));
}

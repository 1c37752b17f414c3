using System.Diagnostics;
using System.Globalization;
using BitBudget.Optimization;
using Google.OrTools.LinearSolver;

namespace BitBudget.Ompq;

/// <summary>The allocation problem of OMPQ, self-contained: unit sizes, importance factors, candidate bits, fixed layers, budget.</summary>
/// <param name="UnitWeights">Weight elements of each decision unit, in unit order (the LP's "deeper" means a larger index).</param>
/// <param name="Theta">Importance factor θ of each unit (any positive scale).</param>
/// <param name="FixedWeights">Weight elements of each layer outside the search.</param>
/// <param name="FixedBits">Bit-width of the fixed layers.</param>
/// <param name="Budget">The size budget: average bits (all or searched layers) or bytes over all layers.</param>
internal sealed record OmpqAllocationInput(
    IReadOnlyList<long> UnitWeights,
    IReadOnlyList<double> Theta,
    IReadOnlyList<long> FixedWeights,
    int FixedBits,
    Budget Budget)
{
    /// <summary>Bit-widths a unit may take; default {2, 4, 8}. The LP relaxes them to the interval [min, max].</summary>
    public IReadOnlyList<int> CandidateBits { get; init; } = [2, 4, 8];
}

/// <summary>Result of OMPQ's allocation: the exact LP relaxation and the exact integer solution over the candidate bits.</summary>
/// <param name="Coefficients">c_i = mean of θ_j over j ≥ i (θ normalized to max 1): the objective is Σ c_i b_i.</param>
/// <param name="LpBits">LP solution: continuous bits per unit in [min, max] candidate.</param>
/// <param name="LpObjective">Σ c_i b_i at the LP optimum (an upper bound of the ILP objective).</param>
/// <param name="LpStatus">GLOP's status ("OPTIMAL").</param>
/// <param name="Bits">Integer bits per unit, each a candidate.</param>
/// <param name="IlpObjective">Σ c_i b_i at the integer solution.</param>
/// <param name="IlpStatus">SCIP's status for the objective stage ("OPTIMAL" = proven optimal with zero gap).</param>
/// <param name="CapacityBits">Weight bits the budget allows over all quantized layers.</param>
/// <param name="FixedBitsTotal">Weight bits of the fixed layers.</param>
/// <param name="UsedBits">Weight bits of the integer solution, fixed layers included (never above <paramref name="CapacityBits"/>).</param>
/// <param name="AverageBits">UsedBits over all quantized weights.</param>
/// <param name="AverageBitsSearched">Average bits of the searched units alone.</param>
/// <param name="LpSeconds">Wall time of the LP.</param>
/// <param name="IlpSeconds">Wall time of both ILP stages.</param>
public sealed record OmpqAllocationResult(
    double[] Coefficients,
    double[] LpBits,
    double LpObjective,
    string LpStatus,
    int[] Bits,
    double IlpObjective,
    string IlpStatus,
    long CapacityBits,
    long FixedBitsTotal,
    long UsedBits,
    double AverageBits,
    double AverageBitsSearched,
    double LpSeconds,
    double IlpSeconds);

/// <summary>
/// OMPQ's bit allocation: maximize Σ_i b_i · mean(θ_j, j ≥ i) subject to Σ_i w_i b_i ≤ budget − fixed, solved exactly
/// as an LP (GLOP, b_i continuous in [min, max] candidate), then as an ILP over the candidate set (SCIP, zero gap).
/// </summary>
/// <remarks>
/// ILP objective, precisely: stage 1 maximizes the same linear objective Σ c_i b_i with b_i restricted to the candidate bits;
/// stage 2 keeps stage 1's optimum (within 1e-9 relative) and maximizes the weight bits used, so ties (frequent when θ is
/// degenerate) are broken toward filling the budget instead of arbitrarily. Neither stage looks at the LP solution.
/// </remarks>
internal static class OmpqAllocation
{
    /// <summary>Solves the LP and the ILP.</summary>
    /// <exception cref="BitBudgetException">Invalid input, a budget below the all-minimum configuration (Infeasible), or a solver failure.</exception>
    public static OmpqAllocationResult Solve(OmpqAllocationInput input)
    {
        int l = input.UnitWeights.Count;
        (long capacity, long fixedBits, int[] candidates) = CheckFeasible(input);
        int bMin = candidates[0], bMax = candidates[^1];
        long searchedWeights = input.UnitWeights.Sum();
        long fixedWeights = input.FixedWeights.Sum();
        long searchedCapacity = capacity - fixedBits;

        double[] c = Coefficients(input.Theta);
        long start = Stopwatch.GetTimestamp();
        (double[] lpBits, double lpObjective, string lpStatus) = SolveLp(input.UnitWeights, c, bMin, bMax, searchedCapacity);
        double lpSeconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        start = Stopwatch.GetTimestamp();
        (int[] bits, string ilpStatus) = SolveIlp(input.UnitWeights, c, candidates, searchedCapacity);
        double ilpSeconds = Stopwatch.GetElapsedTime(start).TotalSeconds;

        long used = fixedBits;
        double objective = 0;
        for (int i = 0; i < l; i++)
        {
            used += input.UnitWeights[i] * bits[i];
            objective += c[i] * bits[i];
        }
        if (used > capacity)
        {
            throw Errors.Runtime($"The ILP solver returned {used} weight bits for a capacity of {capacity}; this is a solver failure.");
        }
        return new OmpqAllocationResult(c, lpBits, lpObjective, lpStatus, bits, objective, ilpStatus, capacity, fixedBits, used,
            (double)used / (searchedWeights + fixedWeights), (double)(used - fixedBits) / searchedWeights, lpSeconds, ilpSeconds);
    }

    /// <summary>Validates the input and checks that the all-minimum configuration fits (θ is not needed for this).</summary>
    /// <returns>The capacity and the fixed layers' weight bits, and the sorted distinct candidate bits.</returns>
    /// <exception cref="BitBudgetException">Invalid input, or <see cref="ErrorKind.Infeasible"/> with the minimum feasible budget.</exception>
    public static (long CapacityBits, long FixedBitsTotal, int[] Candidates) CheckFeasible(OmpqAllocationInput input)
    {
        Validate(input, input.UnitWeights.Count);
        int[] candidates = [.. input.CandidateBits.Distinct().Order()];
        long searchedWeights = input.UnitWeights.Sum();
        long fixedWeights = input.FixedWeights.Sum();
        long fixedBits = fixedWeights * input.FixedBits;
        long capacity = Capacity(input.Budget, searchedWeights, fixedWeights, fixedBits);
        long minimum = fixedBits + searchedWeights * candidates[0];
        if (capacity < minimum)
        {
            throw Errors.Infeasible(
                $"Budget {Label(input.Budget)} is infeasible: the smallest configuration (searched layers at {candidates[0]} bits, fixed layers at {input.FixedBits}) needs {Describe(input.Budget, minimum, searchedWeights, fixedWeights, fixedBits)}.");
        }
        return (capacity, fixedBits, candidates);
    }

    /// <summary>c_i = (1/(L−i)) Σ_{j=i}^{L−1} θ_j, with θ first divided by its maximum.</summary>
    internal static double[] Coefficients(IReadOnlyList<double> theta)
    {
        int l = theta.Count;
        double max = theta.Max();
        var c = new double[l];
        double suffix = 0;
        for (int i = l - 1; i >= 0; i--)
        {
            suffix += theta[i] / max;
            c[i] = suffix / (l - i);
        }
        return c;
    }

    /// <summary>Weight bits the budget allows over all quantized layers (rounded down, with a 1e-9 relative slack for decimal input).</summary>
    internal static long Capacity(Budget budget, long searchedWeights, long fixedWeights, long fixedBits)
    {
        RequireSizeBudget(budget);
        double bits = budget switch
        {
            { Kind: BudgetKind.AvgBits, Scope: BudgetScope.AllLayers } => budget.Value * (searchedWeights + fixedWeights),
            { Kind: BudgetKind.AvgBits } => budget.Value * searchedWeights + fixedBits,
            _ => budget.Value * 8,
        };
        return (long)Math.Floor(bits * (1 + 1e-12));
    }

    /// <summary>
    /// OMPQ's objective ranks bit-widths by size alone, so it takes a size budget: average bits (all or searched layers) or
    /// bytes over all layers; BitOPs and searched-only bytes are refused.
    /// </summary>
    /// <exception cref="BitBudgetException">Any other budget (<see cref="ErrorKind.InvalidInput"/>).</exception>
    public static void RequireSizeBudget(Budget budget)
    {
        ArgumentNullException.ThrowIfNull(budget);
        if (budget is not ({ Kind: BudgetKind.AvgBits } or { Kind: BudgetKind.Bytes, Scope: BudgetScope.AllLayers }))
        {
            throw Errors.InvalidInput($"OMPQ takes a size budget (average bits or bytes), not {budget}.");
        }
    }

    // OMPQ's messages name the scope of average bits explicitly ("avg bits (all layers)").
    static string Label(Budget budget) => budget switch
    {
        { Kind: BudgetKind.AvgBits, Scope: BudgetScope.AllLayers } => $"{budget.Value.ToString("0.###", CultureInfo.InvariantCulture)} avg bits (all layers)",
        { Kind: BudgetKind.AvgBits } => $"{budget.Value.ToString("0.###", CultureInfo.InvariantCulture)} avg bits (searched layers)",
        _ => $"{budget.Value.ToString("N0", CultureInfo.InvariantCulture)} bytes",
    };

    static string Describe(Budget budget, long bits, long searchedWeights, long fixedWeights, long fixedBits) => budget switch
    {
        { Kind: BudgetKind.AvgBits, Scope: BudgetScope.AllLayers } => $"{((double)bits / (searchedWeights + fixedWeights)).ToString("0.####", CultureInfo.InvariantCulture)} avg bits (all layers)",
        { Kind: BudgetKind.AvgBits } => $"{((double)(bits - fixedBits) / searchedWeights).ToString("0.####", CultureInfo.InvariantCulture)} avg bits (searched layers)",
        _ => $"{Math.Ceiling(bits / 8.0).ToString("N0", CultureInfo.InvariantCulture)} bytes",
    };

    static void Validate(OmpqAllocationInput input, int l)
    {
        if (l == 0) { throw Errors.InvalidInput("OMPQ allocation needs at least one decision unit, got 0."); }
        if (input.Theta.Count != l)
        {
            throw Errors.InvalidInput($"OMPQ allocation got {input.Theta.Count} importance factors for {l} units; one per unit was expected.");
        }
        if (input.CandidateBits.Count == 0 || input.CandidateBits.Any(b => b is < 1 or > 32))
        {
            throw Errors.InvalidInput(
                $"Candidate bits [{string.Join(",", input.CandidateBits)}] are invalid; expected a non-empty set of integers between 1 and 32.");
        }
        if (input.UnitWeights.Any(w => w <= 0) || input.FixedWeights.Any(w => w <= 0))
        {
            throw Errors.InvalidInput("Every unit and fixed layer must have a positive weight count.");
        }
        if (input.Theta.Any(t => !(t >= 0) || double.IsInfinity(t)) || !(input.Theta.Max() > 0))
        {
            throw Errors.InvalidInput(
                $"Importance factors must be finite, ≥ 0 and not all 0; got [{string.Join(",", input.Theta.Select(t => t.ToString("G4", CultureInfo.InvariantCulture)))}].");
        }
        if (!(input.Budget.Value > 0) || !double.IsFinite(input.Budget.Value))
        {
            throw Errors.InvalidInput($"Budget value must be a positive finite number, got {input.Budget.Value.ToString(CultureInfo.InvariantCulture)}.");
        }
    }

    static (double[] Bits, double Objective, string Status) SolveLp(IReadOnlyList<long> weights, double[] c, int bMin, int bMax, long capacity)
    {
        (double[] bits, double objective, Solver.ResultStatus status) = SolveLpWith("GLOP", weights, c, bMin, bMax, capacity);
        if (status == Solver.ResultStatus.ABNORMAL)
        {
            // GLOP reports ABNORMAL on some well-posed instances (ResNet-20, θ from β = 0.48, bits in [2, 4]); OR-Tools' CLP solves them.
            (bits, objective, Solver.ResultStatus clp) = SolveLpWith("CLP", weights, c, bMin, bMax, capacity);
            if (clp != Solver.ResultStatus.OPTIMAL) { throw Errors.Runtime($"Neither GLOP (ABNORMAL) nor CLP ({clp}) solved the OMPQ linear program."); }
            return (bits, objective, "OPTIMAL (CLP; GLOP: ABNORMAL)");
        }
        if (status != Solver.ResultStatus.OPTIMAL)
        {
            throw Errors.Runtime($"GLOP did not solve the OMPQ linear program: status {status}.");
        }
        return (bits, objective, status.ToString());
    }

    static (double[] Bits, double Objective, Solver.ResultStatus Status) SolveLpWith(string solverId, IReadOnlyList<long> weights, double[] c, int bMin, int bMax, long capacity)
    {
        using Solver solver = Solver.CreateSolver(solverId)
            ?? throw Errors.Runtime($"OR-Tools has no {solverId} solver in this build.");
        var b = new Variable[weights.Count];
        Constraint size = solver.MakeConstraint(double.NegativeInfinity, capacity, "size");
        Objective objective = solver.Objective();
        for (int i = 0; i < weights.Count; i++)
        {
            b[i] = solver.MakeNumVar(bMin, bMax, $"b{i}");
            size.SetCoefficient(b[i], weights[i]);
            objective.SetCoefficient(b[i], c[i]);
        }
        objective.SetMaximization();
        Solver.ResultStatus status = solver.Solve();
        return status == Solver.ResultStatus.OPTIMAL ? ([.. b.Select(v => v.SolutionValue())], objective.Value(), status) : ([], double.NaN, status);
    }

    static (int[] Bits, string Status) SolveIlp(IReadOnlyList<long> weights, double[] c, int[] candidates, long capacity)
    {
        int l = weights.Count, k = candidates.Length;
        using Solver solver = Solver.CreateSolver("SCIP") ?? Solver.CreateSolver("CBC")
            ?? throw Errors.Runtime("OR-Tools has neither SCIP nor CBC in this build.");
        var x = new Variable[l, k];
        Constraint size = solver.MakeConstraint(double.NegativeInfinity, capacity, "size");
        Objective objective = solver.Objective();
        for (int i = 0; i < l; i++)
        {
            Constraint one = solver.MakeConstraint(1, 1, $"one{i}");
            for (int j = 0; j < k; j++)
            {
                x[i, j] = solver.MakeBoolVar($"x{i}_{j}");
                one.SetCoefficient(x[i, j], 1);
                size.SetCoefficient(x[i, j], (double)weights[i] * Graph.WeightStorage.StoredBits(candidates[j]));   // stored bits: 3-bit in int4
                objective.SetCoefficient(x[i, j], c[i] * candidates[j]);
            }
        }
        objective.SetMaximization();
        using var parameters = new MPSolverParameters();
        parameters.SetDoubleParam(MPSolverParameters.DoubleParam.RELATIVE_MIP_GAP, 0.0);
        Solver.ResultStatus status = solver.Solve(parameters);
        if (status != Solver.ResultStatus.OPTIMAL)
        {
            throw Errors.Runtime($"{solver.SolverVersion()} did not solve the OMPQ integer program: status {status}.");
        }
        double best = objective.Value();
        string stage1 = status.ToString();

        // Stage 2: among configurations within 1e-9 (relative) of the optimum, use the most of the budget.
        Constraint keep = solver.MakeConstraint(best - 1e-9 * Math.Max(1, Math.Abs(best)), double.PositiveInfinity, "keep");
        for (int i = 0; i < l; i++)
        {
            for (int j = 0; j < k; j++)
            {
                keep.SetCoefficient(x[i, j], c[i] * candidates[j]);
                objective.SetCoefficient(x[i, j], (double)weights[i] * candidates[j] / capacity);
            }
        }
        status = solver.Solve(parameters);
        if (status != Solver.ResultStatus.OPTIMAL)
        {
            throw Errors.Runtime($"{solver.SolverVersion()} did not solve the OMPQ tie-break program: status {status}.");
        }
        var bits = new int[l];
        for (int i = 0; i < l; i++)
        {
            for (int j = 0; j < k; j++)
            {
                if (x[i, j].SolutionValue() > 0.5) { bits[i] = candidates[j]; }
            }
        }
        return (bits, stage1);
    }
}

using System.Globalization;
using System.Numerics.Tensors;
using BitBudget.Numerics;

namespace BitBudget.Optimization;

/// <summary>
/// A search problem compiled to arrays: n binary variables (searched layer, scheme) in Ω's order,
/// the quadratic matrix Q (Ω with same-layer off-diagonal entries zeroed, which changes nothing on one-hot points),
/// and one linear row Σ_u a_u·x_u ≤ rhs per budget.
/// </summary>
internal sealed class Instance
{
    public SearchProblem Problem { get; }
    /// <summary>Indices into <see cref="SearchProblem.Layers"/> of the searched layers.</summary>
    public int[] Searched { get; }
    /// <summary>First variable of searched layer i; Offsets[L] = n.</summary>
    public int[] Offsets { get; }
    /// <summary>Searched layer of variable u.</summary>
    public int[] LayerOf { get; }
    /// <summary>Weight bits of variable u.</summary>
    public int[] BitsOf { get; }
    /// <summary>Row-major n×n matrix.</summary>
    public double[] Q { get; }
    public double[][] Rows { get; }
    public double[] Rhs { get; }
    public int L => Searched.Length;
    public int N => LayerOf.Length;

    Instance(SearchProblem problem, int[] searched, int[] offsets, int[] layerOf, int[] bitsOf, double[] q, double[][] rows, double[] rhs)
    {
        (Problem, Searched, Offsets, LayerOf, BitsOf, Q, Rows, Rhs) = (problem, searched, offsets, layerOf, bitsOf, q, rows, rhs);
    }

    /// <summary>Validates the problem and compiles it; throws <see cref="ErrorKind.Infeasible"/> naming the minimum feasible budget.</summary>
    public static Instance Compile(SearchProblem problem)
    {
        ArgumentNullException.ThrowIfNull(problem);
        Validate(problem);
        var searched = new List<int>();
        var offsets = new List<int> { 0 };
        var layerOf = new List<int>();
        var bitsOf = new List<int>();
        for (int l = 0; l < problem.Layers.Count; l++)
        {
            SearchLayer layer = problem.Layers[l];
            if (!layer.IsSearched) { continue; }
            foreach (int b in layer.CandidateBits)
            {
                layerOf.Add(searched.Count);
                bitsOf.Add(b);
            }
            searched.Add(l);
            offsets.Add(layerOf.Count);
        }
        int n = layerOf.Count;
        SquareMatrix omega = problem.Omega;
        if (omega.Order != n)
        {
            throw Errors.InvalidInput(FormattableString.Invariant(
                $"Ω is {omega.Order}×{omega.Order} but the searched layers have {n} (layer, scheme) pairs in total."));
        }
        // Q is the branch-and-bound's flat kernel array: Ω is converted once, here at the solvers' boundary.
        var q = new double[n * n];
        double scale = n == 0 ? 0 : Math.Abs(TensorPrimitives.MaxMagnitude(omega.AsSpan()));
        for (int u = 0; u < n; u++)
        {
            for (int v = 0; v < n; v++)
            {
                double a = omega[u, v], b = omega[v, u];
                if (!double.IsFinite(a) || Math.Abs(a - b) > 1e-9 * Math.Max(scale, 1e-300))
                {
                    throw Errors.InvalidInput(FormattableString.Invariant(
                        $"Ω must be finite and symmetric, but Ω[{u},{v}] = {a:G6} and Ω[{v},{u}] = {b:G6}."));
                }
                q[u * n + v] = u != v && layerOf[u] == layerOf[v] ? 0 : 0.5 * (a + b);
            }
        }

        var rows = new double[problem.Budgets.Count][];
        var rhs = new double[problem.Budgets.Count];
        for (int k = 0; k < problem.Budgets.Count; k++)
        {
            Budget budget = problem.Budgets[k];
            rows[k] = new double[n];
            double fixedSum = 0, count = 0, minSum = 0;
            foreach (SearchLayer layer in problem.Layers)
            {
                if (budget.Scope == BudgetScope.SearchedOnly && !layer.IsSearched) { continue; }
                count += layer.WeightCount;
                if (layer.FixedBits is int fb) { fixedSum += Budget.Coefficient(budget.Kind, layer, fb, problem.ActivationBits); }
            }
            for (int u = 0; u < n; u++)
            {
                rows[k][u] = Budget.Coefficient(budget.Kind, problem.Layers[searched[layerOf[u]]], bitsOf[u], problem.ActivationBits);
            }
            for (int i = 0; i < searched.Count; i++)
            {
                double min = double.PositiveInfinity;
                for (int u = offsets[i]; u < offsets[i + 1]; u++) { min = Math.Min(min, rows[k][u]); }
                minSum += min;
            }
            double limit = budget.Kind == BudgetKind.AvgBits ? budget.Value * count : budget.Value;
            rhs[k] = limit - fixedSum;
            // Relative slack so that a budget equal to a configuration's exact value (e.g. "4bits" at all-4) is feasible.
            rhs[k] += 1e-9 * Math.Max(1.0, Math.Abs(limit));
            if (minSum > rhs[k])
            {
                double minValue = budget.Kind == BudgetKind.AvgBits ? (minSum + fixedSum) / count : minSum + fixedSum;
                throw Errors.Infeasible(string.Create(CultureInfo.InvariantCulture,
                    $"Budget {budget} is infeasible: the minimum feasible is {budget.Describe(RoundUp(minValue))} (every searched layer at its lowest bit-width)."));
            }
        }
        return new Instance(problem, [.. searched], [.. offsets], [.. layerOf], [.. bitsOf], q, rows, rhs);
    }

    // The minimum is printed rounded up in its last shown digit so that the printed value itself is feasible.
    static double RoundUp(double value)
    {
        if (value <= 0) { return value; }
        double unit = Math.Pow(10, Math.Floor(Math.Log10(value)) - 3);
        return Math.Ceiling(value / unit - 1e-9) * unit;
    }

    static void Validate(SearchProblem problem)
    {
        ArgumentNullException.ThrowIfNull(problem.Layers);
        ArgumentNullException.ThrowIfNull(problem.Omega);
        ArgumentNullException.ThrowIfNull(problem.Budgets);
        if (problem.Budgets.Count == 0)
        {
            throw Errors.InvalidInput("The search needs at least one budget (average bits, bytes or BitOPs).");
        }
        if (problem.ActivationBits <= 0)
        {
            throw Errors.InvalidInput($"Activation bits {problem.ActivationBits} must be positive.");
        }
        var names = new HashSet<string>(StringComparer.Ordinal);
        bool anySearched = false;
        foreach (SearchLayer layer in problem.Layers)
        {
            if (!names.Add(layer.Name))
            {
                throw Errors.InvalidInput($"Layer name '{layer.Name}' appears twice in the search problem.");
            }
            if (layer.WeightCount <= 0 || layer.MacsPerImage < 0)
            {
                throw Errors.InvalidInput($"Layer '{layer.Name}' has {layer.WeightCount} weights and {layer.MacsPerImage} MACs; expected a positive weight count and non-negative MACs.");
            }
            if (layer.FixedBits is int fixedBits)
            {
                if (fixedBits <= 0) { throw Errors.InvalidInput($"Layer '{layer.Name}' is fixed at {fixedBits} bits; expected a positive bit-width."); }
                continue;
            }
            anySearched = true;
            if (layer.CandidateBits is null || layer.CandidateBits.Count == 0 || layer.CandidateBits.Any(b => b <= 0) || layer.CandidateBits.Distinct().Count() != layer.CandidateBits.Count)
            {
                string list = layer.CandidateBits is null ? "none" : string.Join(", ", layer.CandidateBits);
                throw Errors.InvalidInput($"Layer '{layer.Name}' has candidate bits [{list}]; expected distinct positive bit-widths.");
            }
        }
        if (!anySearched)
        {
            throw Errors.InvalidInput("The search problem has no searched layer (every layer has fixed bits).");
        }
    }

    /// <summary>xᵀQx for a one-hot configuration given as the chosen scheme index per searched layer.</summary>
    public double Quadratic(ReadOnlySpan<int> choice)
    {
        double sum = 0;
        int n = N;
        for (int i = 0; i < choice.Length; i++)
        {
            int u = Offsets[i] + choice[i];
            for (int j = 0; j < choice.Length; j++) { sum += Q[u * n + Offsets[j] + choice[j]]; }
        }
        return sum;
    }

    /// <summary>diag(Q)ᵀx.</summary>
    public double Diagonal(ReadOnlySpan<int> choice)
    {
        double sum = 0;
        for (int i = 0; i < choice.Length; i++) { int u = Offsets[i] + choice[i]; sum += Q[u * N + u]; }
        return sum;
    }

    public bool Feasible(ReadOnlySpan<int> choice)
    {
        for (int k = 0; k < Rows.Length; k++)
        {
            double sum = 0;
            for (int i = 0; i < choice.Length; i++) { sum += Rows[k][Offsets[i] + choice[i]]; }
            if (sum > Rhs[k]) { return false; }
        }
        return true;
    }

    /// <summary>The scheme index per searched layer from a (near-)binary solution vector.</summary>
    public int[] ChoiceFromVector(ReadOnlySpan<double> x)
    {
        var choice = new int[L];
        for (int i = 0; i < L; i++)
        {
            int best = 0;
            for (int s = 1; s < Offsets[i + 1] - Offsets[i]; s++)
            {
                if (x[Offsets[i] + s] > x[Offsets[i] + best]) { best = s; }
            }
            choice[i] = best;
        }
        return choice;
    }

    /// <summary>The scheme index per searched layer of a configuration given as bits per layer name (the inverse of <see cref="BitsOfChoice"/>).</summary>
    public int[] ChoiceOf(IReadOnlyDictionary<string, int> bits)
    {
        var choice = new int[L];
        for (int i = 0; i < L; i++)
        {
            SearchLayer layer = Problem.Layers[Searched[i]];
            int index = -1;
            for (int s = 0; s < layer.CandidateBits.Count; s++) { if (layer.CandidateBits[s] == bits[layer.Name]) { index = s; } }
            choice[i] = index >= 0 ? index : throw new ArgumentException($"Layer '{layer.Name}' has no {bits[layer.Name]}-bit candidate.", nameof(bits));
        }
        return choice;
    }

    public OrderedDictionary<string, int> BitsOfChoice(ReadOnlySpan<int> choice)
    {
        var bits = new OrderedDictionary<string, int>(StringComparer.Ordinal);
        int i = 0;
        foreach (SearchLayer layer in Problem.Layers)
        {
            if (layer.FixedBits is int fb) { bits.Add(layer.Name, fb); }
            else { bits.Add(layer.Name, BitsOf[Offsets[i] + choice[i++]]); }
        }
        return bits;
    }
}

namespace BitBudget.Optimization;

/// <summary>
/// What one budget's solve leaves for the next budgets of a sweep over the same Ω (the Pareto sweep of <c>run</c>, the budgets of
/// <c>search</c>, <see cref="BitSearch.SolveRanked"/>): the configurations found, each with its objective, and the proven lower bound
/// of each budget. Both stay valid across budgets because the budget rows are the same and only their right-hand sides move:
/// <list type="bullet">
/// <item>a configuration found at any budget is an incumbent (an upper bound) at every budget where it is feasible (checked
/// directly, so the optimum at b serves every looser budget);</item>
/// <item>the lower bound proven at a budget b holds at every tighter budget b' ≤ b (row by row): its feasible set is a subset,
/// so its minimum can only be larger.</item>
/// </list>
/// Branching statistics (the B&amp;B's pseudocosts) are also kept: they only steer the search, never its proof. Keyed by the full
/// content of Ω, the layer structure, the budget rows (callers build fresh arrays per problem) and the algorithm; the last
/// <see cref="KeyCount"/> keys are kept.
/// </summary>
internal sealed class SweepMemory
{
    const int KeyCount = 8;
    const int RecordCount = 256;

    static readonly List<SweepMemory> s_memories = [];

    readonly double[] _q;
    readonly int[] _offsets;
    readonly double[][] _rows;
    readonly IqpAlgorithm _algorithm;
    readonly List<(double[] Rhs, int[] Choice, double Value, double Bound)> _records = [];

    double[] _gainSum;
    int[] _gainCount;

    SweepMemory(Instance inst, IqpAlgorithm algorithm)
    {
        (_q, _offsets, _rows, _algorithm) = (inst.Q, inst.Offsets, inst.Rows, algorithm);
        _gainSum = new double[inst.L];
        _gainCount = new int[inst.L];
    }

    /// <summary>Copies of the pseudocost sums and counts per searched layer (bound gain per unit of moved mass) of the budgets solved so far.</summary>
    public (double[] GainSum, int[] GainCount) Pseudocosts()
    {
        lock (_records) { return ((double[])_gainSum.Clone(), (int[])_gainCount.Clone()); }
    }

    /// <summary>Keeps a finished search's pseudocosts (which include the ones it started from) for the next budget.</summary>
    public void KeepPseudocosts(double[] gainSum, int[] gainCount)
    {
        lock (_records) { (_gainSum, _gainCount) = ((double[])gainSum.Clone(), (int[])gainCount.Clone()); }
    }

    /// <summary>
    /// The memory of <paramref name="inst"/>'s Ω, layers and budget rows solved by <paramref name="algorithm"/> (a new, empty one the
    /// first time). Per algorithm, so that comparing algorithms on one Ω compares them, not the first one's proof.
    /// </summary>
    public static SweepMemory For(Instance inst, IqpAlgorithm algorithm)
    {
        lock (s_memories)
        {
            for (int k = 0; k < s_memories.Count; k++)
            {
                SweepMemory m = s_memories[k];
                if (m._algorithm == algorithm && m.Matches(inst))
                {
                    s_memories.RemoveAt(k);
                    s_memories.Add(m);   // most recently used last
                    return m;
                }
            }
            var created = new SweepMemory(inst, algorithm);
            if (s_memories.Count == KeyCount) { s_memories.RemoveAt(0); }
            s_memories.Add(created);
            return created;
        }
    }

    /// <summary>Forgets every sweep (benchmarks that time cold solves, tests).</summary>
    public static void Clear()
    {
        lock (s_memories) { s_memories.Clear(); }
    }

    bool Matches(Instance inst)
    {
        if (!_offsets.AsSpan().SequenceEqual(inst.Offsets) || _rows.Length != inst.Rows.Length) { return false; }
        for (int k = 0; k < _rows.Length; k++)
        {
            if (!_rows[k].AsSpan().SequenceEqual(inst.Rows[k])) { return false; }
        }
        return _q.AsSpan().SequenceEqual(inst.Q);
    }

    /// <summary>
    /// The best recorded configuration feasible at <paramref name="inst"/>'s budgets (null when none is) with its objective, and the
    /// largest lower bound recorded at a budget at least as loose in every row (−∞ when none).
    /// </summary>
    public (int[]? Choice, double Value, double Floor) Lookup(Instance inst)
    {
        int[]? best = null;
        double value = double.PositiveInfinity, floor = double.NegativeInfinity;
        lock (_records)
        {
            foreach (var (rhs, choice, v, bound) in _records)
            {
                if (v < value && inst.Feasible(choice)) { (best, value) = (choice, v); }
                if (bound > floor && Looser(rhs, inst.Rhs)) { floor = bound; }
            }
        }
        return (best is null ? null : (int[])best.Clone(), value, floor);
    }

    /// <summary>Records the outcome of one budget: the configuration returned, its objective and the proven lower bound (−∞ when none).</summary>
    public void Record(Instance inst, int[] choice, double value, double bound)
    {
        lock (_records)
        {
            if (_records.Count == RecordCount) { _records.RemoveAt(0); }
            _records.Add(((double[])inst.Rhs.Clone(), (int[])choice.Clone(), value, bound));
        }
    }

    static bool Looser(double[] recorded, double[] now)
    {
        for (int k = 0; k < now.Length; k++)
        {
            if (recorded[k] < now[k]) { return false; }
        }
        return true;
    }
}

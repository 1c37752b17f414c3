namespace BitBudget.Optimization;

/// <summary>Exhaustive enumeration (tests, tiny problems) and 1-swap / 2-swap descent on xᵀQx under the budget rows.</summary>
internal static class LocalSearch
{
    /// <summary>Best feasible configuration by enumerating every one (only for tiny problems), or null when none is feasible.</summary>
    public static (int[] Choice, double Objective)? BruteForce(Instance inst, bool diagonalOnly = false)
    {
        int l = inst.L;
        var choice = new int[l];
        int[]? best = null;
        double bestValue = double.PositiveInfinity;
        while (true)
        {
            if (inst.Feasible(choice))
            {
                double value = diagonalOnly ? inst.Diagonal(choice) : inst.Quadratic(choice);
                if (value < bestValue) { (bestValue, best) = (value, (int[])choice.Clone()); }
            }
            int i = 0;
            while (i < l && ++choice[i] == inst.Offsets[i + 1] - inst.Offsets[i]) { choice[i++] = 0; }
            if (i == l) { break; }
        }
        return best is null ? null : (best, bestValue);
    }

    /// <summary>Improves a feasible configuration in place by best-improvement 1-swaps, then 2-swaps, until neither helps; returns xᵀQx.</summary>
    public static double Improve(Instance inst, int[] choice, CancellationToken cancellationToken = default)
    {
        int n = inst.N, l = inst.L, rowCount = inst.Rows.Length;
        double[] q = inst.Q;
        var g = new double[n];          // g = Q·x
        var use = new double[rowCount]; // budget row usage
        for (int i = 0; i < l; i++)
        {
            int u = inst.Offsets[i] + choice[i];
            for (int v = 0; v < n; v++) { g[v] += q[v * n + u]; }
            for (int k = 0; k < rowCount; k++) { use[k] += inst.Rows[k][u]; }
        }
        double value = inst.Quadratic(choice);
        const double Tolerance = 1e-12;
        while (!cancellationToken.IsCancellationRequested)
        {
            // Best 1-swap: x' = x − e_s + e_t changes xᵀQx by 2(g_t − g_s) + Q_ss + Q_tt (Q_st = 0 inside a layer).
            double bestDelta = -Tolerance * Math.Max(1, Math.Abs(value));
            int bestLayer = -1, bestTo = -1, bestLayer2 = -1, bestTo2 = -1;
            for (int i = 0; i < l; i++)
            {
                int s = inst.Offsets[i] + choice[i];
                for (int t = inst.Offsets[i]; t < inst.Offsets[i + 1]; t++)
                {
                    if (t == s || !Fits(inst, use, s, t, -1, -1)) { continue; }
                    double delta = 2 * (g[t] - g[s]) + q[s * n + s] + q[t * n + t];
                    if (delta < bestDelta) { (bestDelta, bestLayer, bestTo) = (delta, i, t); }
                }
            }
            if (bestLayer < 0)
            {
                // Best 2-swap: moves that trade budget between two layers, which a single swap cannot do.
                for (int i = 0; i < l; i++)
                {
                    int s = inst.Offsets[i] + choice[i];
                    for (int t = inst.Offsets[i]; t < inst.Offsets[i + 1]; t++)
                    {
                        if (t == s) { continue; }
                        double d1 = 2 * (g[t] - g[s]) + q[s * n + s] + q[t * n + t];
                        for (int j = i + 1; j < l; j++)
                        {
                            int s2 = inst.Offsets[j] + choice[j];
                            for (int t2 = inst.Offsets[j]; t2 < inst.Offsets[j + 1]; t2++)
                            {
                                if (t2 == s2) { continue; }
                                double d2 = 2 * (g[t2] - g[s2]) + q[s2 * n + s2] + q[t2 * n + t2];
                                double delta = d1 + d2 + 2 * (q[t * n + t2] - q[t * n + s2] - q[s * n + t2] + q[s * n + s2]);
                                if (delta < bestDelta && Fits(inst, use, s, t, s2, t2))
                                {
                                    (bestDelta, bestLayer, bestTo, bestLayer2, bestTo2) = (delta, i, t, j, t2);
                                }
                            }
                        }
                    }
                }
            }
            if (bestLayer < 0) { break; }
            Move(inst, choice, g, use, bestLayer, bestTo);
            if (bestLayer2 >= 0) { Move(inst, choice, g, use, bestLayer2, bestTo2); }
            value = inst.Quadratic(choice);   // recomputed rather than accumulated, so rounding never drifts
        }
        return value;
    }

    static bool Fits(Instance inst, double[] use, int s, int t, int s2, int t2)
    {
        for (int k = 0; k < use.Length; k++)
        {
            double[] row = inst.Rows[k];
            double next = use[k] - row[s] + row[t];
            if (s2 >= 0) { next += row[t2] - row[s2]; }
            if (next > inst.Rhs[k]) { return false; }
        }
        return true;
    }

    static void Move(Instance inst, int[] choice, double[] g, double[] use, int layer, int to)
    {
        int n = inst.N, from = inst.Offsets[layer] + choice[layer];
        for (int v = 0; v < n; v++) { g[v] += inst.Q[v * n + to] - inst.Q[v * n + from]; }
        for (int k = 0; k < use.Length; k++) { use[k] += inst.Rows[k][to] - inst.Rows[k][from]; }
        choice[layer] = to - inst.Offsets[layer];
    }
}

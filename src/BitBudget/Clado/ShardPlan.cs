using BitBudget.Graph;

namespace BitBudget.Clado;

/// <summary>
/// Which shard measures which work unit. A unit (batch, u, s) runs u's cone once and every later searched layer's cone once
/// per scheme, so a unit of an early layer executes ~10× the FLOPs of a late one and a split by count leaves one shard with
/// far more work. Units are dealt longest first, each to the least-loaded shard (LPT), by executed MACs. The plan depends
/// only on the model, the searched layers and the batches — never on a store — so every worker computes the same plan, and a
/// shard rerun alone (after it died) measures exactly its own units again.
/// </summary>
internal static class ShardPlan
{
    /// <summary>Owner shard of every work unit, indexed (batch · L + u) · S + s.</summary>
    public static int[] Owners(MeasurementPlan plan, int shards) => Assign(UnitCosts(plan), shards);

    /// <summary>Executed MACs of every work unit over the images of its batch, indexed as <see cref="Owners"/>.</summary>
    public static long[] UnitCosts(MeasurementPlan plan)
    {
        long[] perImage = UnitMacsPerImage(plan);
        var costs = new long[plan.BatchCount * plan.L * plan.S];
        int i = 0;
        for (int b = 0; b < plan.BatchCount; b++)
        {
            int images = plan.BatchRange(b).Count;
            for (int u = 0; u < plan.L; u++)
            {
                for (int s = 0; s < plan.S; s++) { costs[i++] = perImage[u] * images; }
            }
        }
        return costs;
    }

    /// <summary>MACs per image of one unit of each searched layer: its own cone, then every later cone once per scheme.</summary>
    static long[] UnitMacsPerImage(MeasurementPlan plan)
    {
        long[] cone;
        if (plan.Options.Naive)
        {
            cone = [.. Enumerable.Repeat(plan.FullMacs, plan.L)];   // the reference loop runs the whole model every time
        }
        else
        {
            var slicer = new ModelSlicer(plan.Base);
            cone = [.. plan.Searched.Select(l => plan.MacsOf(slicer, slicer.Cone(slicer.IndexOf(l.NodeNames[0]))))];
        }
        var unit = new long[plan.L];
        long later = 0;
        for (int u = plan.L - 1; u >= 0; u--)
        {
            unit[u] = cone[u] + plan.S * later;
            later += cone[u];
        }
        return unit;
    }

    /// <summary>Longest processing time first: within 4/3 of the best possible makespan, far closer with many small units.</summary>
    public static int[] Assign(IReadOnlyList<long> costs, int shards)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(shards, 1);
        var owner = new int[costs.Count];
        var load = new long[shards];
        foreach (int i in Enumerable.Range(0, costs.Count).OrderByDescending(i => costs[i]).ThenBy(i => i))
        {
            int k = 0;
            for (int j = 1; j < shards; j++) { if (load[j] < load[k]) { k = j; } }
            owner[i] = k;
            load[k] += costs[i];
        }
        return owner;
    }

    /// <summary>Planned MACs of each shard.</summary>
    public static long[] Loads(IReadOnlyList<long> costs, int[] owners, int shards)
    {
        var load = new long[shards];
        for (int i = 0; i < costs.Count; i++) { load[owners[i]] += costs[i]; }
        return load;
    }
}

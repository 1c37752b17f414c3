namespace BitBudget.Optimization;

/// <summary>The seeded synthetic IQP instances of issue 6, used to benchmark and test the exact search.</summary>
internal static class SyntheticProblem
{
    /// <summary>
    /// <paramref name="layers"/> searched layers with bits {2,4,8}; layer size s = exp(U(0,5)); F ∈ R^{3L×8} with entries
    /// U(−0.5,0.5), row (layer, b) scaled by sqrt(4^{−(b−2)}·U(0.5,1.5)); Ω = F·Fᵀ + diag(4^{−(b−2)}·U(0,1)); size of
    /// (layer, b) = s·b. Weight counts are round(1000·s) so that sizes are integers (the problem is otherwise unchanged).
    /// The budget is <paramref name="budgetFraction"/> × the all-8-bit size in bytes.
    /// </summary>
    public static SearchProblem Generate(int layers, int seed, double budgetFraction = 0.4)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(layers);
        var random = new Random(seed);
        var counts = new long[layers];
        for (int i = 0; i < layers; i++) { counts[i] = Math.Max(1, (long)Math.Round(1000 * Math.Exp(5 * random.NextDouble()))); }
        return Generate(counts, random, budgetFraction);
    }

    /// <summary>
    /// The same generator with given layer sizes (weight counts) instead of exp(U(0,5)): Ω and the budget are drawn as in
    /// <see cref="Generate(int, int, double)"/>, from <c>System.Random(seed)</c>.
    /// </summary>
    public static SearchProblem Generate(IReadOnlyList<long> weightCounts, int seed, double budgetFraction = 0.4)
    {
        ArgumentNullException.ThrowIfNull(weightCounts);
        ArgumentOutOfRangeException.ThrowIfZero(weightCounts.Count);
        return Generate(weightCounts, new Random(seed), budgetFraction);
    }

    /// <summary>
    /// The weight counts of ResNet-50's 54 quantizable layers in model order (torchvision: the 7×7 stem, 16 bottlenecks of
    /// 1×1, 3×3, 1×1 convolutions with 4 downsample 1×1 convolutions, and the 2048×1000 classifier): 9,408 to 2,359,296.
    /// </summary>
    public static IReadOnlyList<long> ResNet50WeightCounts { get; } = ResNet50();

    static long[] ResNet50()
    {
        var counts = new List<long> { 64 * 3 * 7 * 7 };
        int inputs = 64;
        foreach (var (width, blocks) in new[] { (64, 3), (128, 4), (256, 6), (512, 3) })
        {
            for (int b = 0; b < blocks; b++)
            {
                counts.Add((long)width * inputs);          // 1×1 reduce
                counts.Add((long)width * width * 9);       // 3×3
                counts.Add((long)4 * width * width);       // 1×1 expand
                if (b == 0) { counts.Add((long)4 * width * inputs); }   // downsample
                inputs = 4 * width;
            }
        }
        counts.Add(2048L * 1000);
        return [.. counts];
    }

    static SearchProblem Generate(IReadOnlyList<long> weightCounts, Random random, double budgetFraction)
    {
        int[] bits = [2, 4, 8];
        const int Rank = 8;
        int layers = weightCounts.Count;
        int n = 3 * layers;
        var list = new SearchLayer[layers];
        double allEight = 0;
        for (int i = 0; i < layers; i++)
        {
            long count = weightCounts[i];
            list[i] = new SearchLayer($"layer{i}", count, count, bits);
            allEight += count;   // bytes at 8 bits = count
        }
        var f = new double[n, Rank];
        for (int u = 0; u < n; u++)
        {
            for (int k = 0; k < Rank; k++) { f[u, k] = random.NextDouble() - 0.5; }
        }
        for (int u = 0; u < n; u++)
        {
            int b = bits[u % 3];
            double scale = Math.Sqrt(Math.Pow(4, -(b - 2)) * (0.5 + random.NextDouble()));
            for (int k = 0; k < Rank; k++) { f[u, k] *= scale; }
        }
        double[,] omega = Gram(f);
        for (int u = 0; u < n; u++) { omega[u, u] += Math.Pow(4, -(bits[u % 3] - 2)) * random.NextDouble(); }
        return new SearchProblem(list, omega, [new Budget(BudgetKind.Bytes, budgetFraction * allEight)]);
    }

    /// <summary>
    /// F·Fᵀ for F of n rows × r columns: the lower triangle computed row by row and mirrored, so Ω is exactly symmetric.
    /// Plain loops in this summation order keep the synthetic and benchmark instances bit-identical to the ones their
    /// published figures were measured on (a vectorized dot product sums in another order).
    /// </summary>
    internal static double[,] Gram(double[,] f)
    {
        int n = f.GetLength(0), r = f.GetLength(1);
        var omega = new double[n, n];
        for (int u = 0; u < n; u++)
        {
            for (int v = 0; v <= u; v++)
            {
                double dot = 0;
                for (int k = 0; k < r; k++) { dot += f[u, k] * f[v, k]; }
                omega[u, v] = omega[v, u] = dot;
            }
        }
        return omega;
    }
}

using System.Globalization;

namespace BitBudget.Optimization;

/// <summary>What a budget limits.</summary>
public enum BudgetKind
{
    /// <summary>Average weight bits, Σ numel·bits / Σ numel (biases not counted).</summary>
    AvgBits,
    /// <summary>Weight bytes, Σ numel·bits / 8.</summary>
    Bytes,
    /// <summary>Bit operations per image, Σ MACs·weight bits·activation bits.</summary>
    BitOps,
}

/// <summary>Which layers a budget counts.</summary>
public enum BudgetScope
{
    /// <summary>Every quantized layer, the fixed ones included (budgets.md's definition).</summary>
    AllLayers,
    /// <summary>Only the searched layers.</summary>
    SearchedOnly,
}

/// <summary>An upper limit on a configuration's size, average bits or BitOPs.</summary>
/// <param name="Kind">What is limited.</param>
/// <param name="Value">The limit: bits for <see cref="BudgetKind.AvgBits"/>, bytes for <see cref="BudgetKind.Bytes"/>, bit operations for <see cref="BudgetKind.BitOps"/>.</param>
/// <param name="Scope">Which layers are counted.</param>
public sealed record Budget(BudgetKind Kind, double Value, BudgetScope Scope = BudgetScope.AllLayers)
{
    /// <summary>
    /// Parses "3.5bits", "3.5bits-searched", "120KB", "1.5MB", "2MiB", "2.1GBitOPs" (case-insensitive).
    /// KB/MB/GB are powers of 1000 and KiB/MiB/GiB powers of 1024; BitOPs take K/M/G/T (powers of 1000).
    /// A "-searched" suffix counts only the searched layers.
    /// </summary>
    /// <exception cref="BitBudgetException">The text is not a budget (<see cref="ErrorKind.InvalidInput"/>).</exception>
    public static Budget Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        string s = text.Trim();
        var scope = BudgetScope.AllLayers;
        if (s.EndsWith("-searched", StringComparison.OrdinalIgnoreCase))
        {
            scope = BudgetScope.SearchedOnly;
            s = s[..^"-searched".Length];
        }
        int split = 0;
        while (split < s.Length && (char.IsAsciiDigit(s[split]) || s[split] is '.' or 'e' or 'E' or '+' or '-'))
        {
            split++;
        }
        string number = s[..split], unit = s[split..].Trim();
        if (!double.TryParse(number, NumberStyles.Float, CultureInfo.InvariantCulture, out double value) || !double.IsFinite(value) || value <= 0)
        {
            throw Invalid(text);
        }
        (BudgetKind kind, double scale) = unit.ToLowerInvariant() switch
        {
            "bits" or "bit" => (BudgetKind.AvgBits, 1.0),
            "b" or "bytes" => (BudgetKind.Bytes, 1.0),
            "kb" => (BudgetKind.Bytes, 1e3),
            "mb" => (BudgetKind.Bytes, 1e6),
            "gb" => (BudgetKind.Bytes, 1e9),
            "kib" => (BudgetKind.Bytes, 1024.0),
            "mib" => (BudgetKind.Bytes, 1024.0 * 1024),
            "gib" => (BudgetKind.Bytes, 1024.0 * 1024 * 1024),
            "bitops" => (BudgetKind.BitOps, 1.0),
            "kbitops" => (BudgetKind.BitOps, 1e3),
            "mbitops" => (BudgetKind.BitOps, 1e6),
            "gbitops" => (BudgetKind.BitOps, 1e9),
            "tbitops" => (BudgetKind.BitOps, 1e12),
            _ => throw Invalid(text),
        };
        return new Budget(kind, value * scale, scope);
    }

    /// <summary>Parses a comma-separated list of budgets that must all hold, e.g. "4bits,1.2MB".</summary>
    public static IReadOnlyList<Budget> ParseList(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        string[] parts = text.Split(',', StringSplitOptions.TrimEntries);
        if (parts.Any(p => p.Length == 0))
        {
            // "3bits," is a typo (a budget lost after the comma), not a list of one.
            throw Errors.InvalidInput($"Budget list '{text}' has an empty entry; separate budgets with single commas, e.g. '4bits,1.2MB'.");
        }
        Budget[] budgets = [.. parts.Select(Parse)];
        // Two budgets of one kind and scope cannot both matter (the tighter one wins), so "2.5bits,3bits" is a sweep
        // typed as a list: refuse it rather than silently search the tighter budget only.
        var repeated = budgets.GroupBy(b => (b.Kind, b.Scope)).FirstOrDefault(g => g.Count() > 1);
        if (repeated is not null)
        {
            throw Errors.InvalidInput(
                $"Budget list '{text}' has {repeated.Count()} budgets of one kind ({string.Join(", ", repeated)}); every budget of a list must hold at once, so only the tightest would count. To compare budgets, give one with --budget and the others with --pareto.");
        }
        return budgets;
    }

    static BitBudgetException Invalid(string text) => Errors.InvalidInput(
        $"Budget '{text}' is not understood; expected a positive number with a unit such as '3.5bits', '3.5bits-searched', '120KB', '1.5MiB' or '2.1GBitOPs'.");

    /// <summary>The budget in the units it was given, e.g. "3.5 bits (searched layers)", "1.5 MB", "2.1 GBitOPs".</summary>
    public override string ToString() => Describe(Value);

    /// <summary>Formats a value of this budget's kind and scope in readable units.</summary>
    public string Describe(double value)
    {
        string core = Kind switch
        {
            BudgetKind.AvgBits => FormattableString.Invariant($"{value:0.####} bits"),
            BudgetKind.Bytes => value >= 1e6 ? FormattableString.Invariant($"{value / 1e6:0.####} MB")
                : value >= 1e3 ? FormattableString.Invariant($"{value / 1e3:0.####} KB") : FormattableString.Invariant($"{value:0.##} B"),
            _ => value >= 1e9 ? FormattableString.Invariant($"{value / 1e9:0.####} GBitOPs")
                : value >= 1e6 ? FormattableString.Invariant($"{value / 1e6:0.####} MBitOPs") : FormattableString.Invariant($"{value:0} BitOPs"),
        };
        return Scope == BudgetScope.SearchedOnly ? core + " (searched layers only)" : core;
    }

    /// <summary>This budget's measure (average bits, bytes or BitOPs in its scope) of a configuration.</summary>
    public double Measure(SearchProblem problem, IReadOnlyDictionary<string, int> bits) => Measure(problem, Kind, Scope, bits);

    internal static double Measure(SearchProblem problem, BudgetKind kind, BudgetScope scope, IReadOnlyDictionary<string, int> bits)
    {
        double sum = 0, count = 0;
        foreach (SearchLayer layer in problem.Layers)
        {
            if (scope == BudgetScope.SearchedOnly && !layer.IsSearched) { continue; }
            int b = layer.FixedBits ?? bits[layer.Name];
            sum += Coefficient(kind, layer, b, problem.ActivationBits);
            count += layer.WeightCount;
        }
        return kind == BudgetKind.AvgBits ? sum / count : sum;
    }

    /// <summary>
    /// A layer's contribution to the sum behind a budget (for average bits: numel·bits, divided by Σ numel later). Sizes count the
    /// bits stored (<see cref="Graph.WeightStorage.StoredBits"/>: a 3-bit weight sits in an int4 container); BitOPs the nominal bits.
    /// </summary>
    internal static double Coefficient(BudgetKind kind, SearchLayer layer, int bits, int activationBits) => kind switch
    {
        BudgetKind.AvgBits => (double)layer.WeightCount * Graph.WeightStorage.StoredBits(bits),
        BudgetKind.Bytes => (double)layer.WeightCount * Graph.WeightStorage.StoredBits(bits) / 8.0,
        _ => (double)layer.MacsPerImage * bits * activationBits,
    };
}

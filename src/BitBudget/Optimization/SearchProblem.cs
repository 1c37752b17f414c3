using BitBudget.Numerics;

namespace BitBudget.Optimization;

/// <summary>One quantized layer of a search problem.</summary>
/// <param name="Name">Layer name (unique within the problem).</param>
/// <param name="WeightCount">Weight elements (biases are not counted in any budget).</param>
/// <param name="MacsPerImage">Multiply-accumulates per image, already divided by the conv groups.</param>
/// <param name="CandidateBits">Weight bit-widths the search may choose, in the order of this layer's block of Ω; ignored when <paramref name="FixedBits"/> is set.</param>
/// <param name="FixedBits">The layer's bit-width when it is not searched (e.g. the first and last layer at 8); such a layer has no rows in Ω but counts in every all-layer budget.</param>
public sealed record SearchLayer(string Name, long WeightCount, long MacsPerImage, IReadOnlyList<int> CandidateBits, int? FixedBits = null)
{
    /// <summary>Whether the search chooses this layer's bit-width.</summary>
    public bool IsSearched => FixedBits is null;
}

/// <summary>
/// The search input: layers, the quadratic loss model Ω, and one or several budgets that must all hold.
/// </summary>
/// <param name="Layers">Every quantized layer, fixed ones included, in model order.</param>
/// <param name="Omega">Symmetric matrix over the flattened (searched layer, scheme) index in layer-major order:
/// searched layer i's candidate s is row <c>offset(i) + s</c>, where offset sums the candidate counts of the searched layers before i.
/// The predicted loss increase of a configuration x (one-hot per layer) is ½·xᵀΩx (algorithms.md §1.2).
/// Entries between two schemes of the same layer never contribute (x_is·x_it = 0).</param>
/// <param name="Budgets">Constraints that must all hold; at least one.</param>
/// <param name="ActivationBits">Activation bit-width used for BitOPs (MACs × weight bits × activation bits).</param>
public sealed record SearchProblem(IReadOnlyList<SearchLayer> Layers, SquareMatrix Omega, IReadOnlyList<Budget> Budgets, int ActivationBits = 8)
{
    /// <summary>The layers whose bit-width is searched, in order.</summary>
    public IEnumerable<SearchLayer> SearchedLayers => Layers.Where(l => l.IsSearched);

    /// <summary>Weight size in bytes of a configuration: Σ weights·bits/8 over all layers, fixed ones included.</summary>
    public double SizeBytes(IReadOnlyDictionary<string, int> bits) => Budget.Measure(this, BudgetKind.Bytes, BudgetScope.AllLayers, bits);

    /// <summary>Average weight bits of a configuration over all layers (Σ numel·bits / Σ numel), fixed ones included.</summary>
    public double AverageBits(IReadOnlyDictionary<string, int> bits) => Budget.Measure(this, BudgetKind.AvgBits, BudgetScope.AllLayers, bits);

    /// <summary>Bit operations per image of a configuration: Σ MACs·weight bits·activation bits over all layers.</summary>
    public double BitOps(IReadOnlyDictionary<string, int> bits) => Budget.Measure(this, BudgetKind.BitOps, BudgetScope.AllLayers, bits);
}

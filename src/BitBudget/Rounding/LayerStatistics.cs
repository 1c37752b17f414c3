using BitBudget.Graph;
using BitBudget.Numerics;
using BitBudget.Runtime;

namespace BitBudget.Rounding;

/// <summary>
/// Second-moment statistics of one layer's full-precision input columns: H = Σ x xᵀ and the mean column,
/// per group (a Conv column is one im2col patch of one group: K = Cin/groups·kh·kw; a Gemm/MatMul column is one input row).
/// </summary>
internal sealed class LayerStatistics(LayerInfo layer, int groups, int k)
{
    public LayerInfo Layer { get; } = layer;
    public int Groups { get; } = groups;
    /// <summary>Inputs per column (the width of one weight row).</summary>
    public int K { get; } = k;
    /// <summary>Groups × K × K, row-major per group; the sum (not the mean) over <see cref="Columns"/> columns.</summary>
    public double[] Hessian => _hessian.Value;
    readonly SpillableArray<double> _hessian = new(new double[(long)groups * k * k]);
    /// <summary>Groups × K sums of the columns (divide by <see cref="Columns"/> for the mean).</summary>
    public double[] Sum { get; } = new double[(long)groups * k];
    /// <summary>Columns accumulated per group.</summary>
    public long Columns { get; internal set; }

    public Span<double> H(int group) => Hessian.AsSpan(group * K * K, K * K);

    /// <summary>
    /// <paramref name="group"/>'s H in the read-only form the rounding takes. An ungrouped layer's H is shared, not copied: the
    /// statistics are final once collected, and ResNet-18's 4,608-wide layers would otherwise hold 170 MB twice (in H and in every
    /// GPTQ factor), which was the copy that put the default command over its budget while it rounded layer4.
    /// </summary>
    public SquareMatrix Gram(int group) => Groups == 1 && group == 0 ? SquareMatrix.Own(Hessian, K) : SquareMatrix.Copy(H(group), K);

    /// <summary>Bytes a GPTQ factor of this layer adds beside its H: U for every group, plus a copy of H per group when grouped (<see cref="Gram"/>).</summary>
    internal long FactorBytes => (Groups == 1 ? 1 : 2) * _hessian.Bytes;

    /// <summary>
    /// Moves H to a temporary file until it is next read (<see cref="SpillableArray{T}"/>): for a stage that has rounded every
    /// tensor it needs and wants the memory. Returns the bytes freed (0 when it stayed in memory).
    /// </summary>
    internal long Spill() => _hessian.Spill();

    /// <summary>True while H is in its temporary file (tests).</summary>
    internal bool IsSpilled => _hessian.IsSpilled;

    /// <summary>Bytes of H and the sums of a layer with <paramref name="groups"/> groups of <paramref name="k"/> inputs.</summary>
    public static long BytesFor(int groups, int k) => (long)groups * ((long)k * k + k) * sizeof(double);

    /// <summary>
    /// Writes the (zero) arrays once, so their pages are resident before a pass sizes its micro-batches from the resident set
    /// (a fresh array is not: the kernel maps its pages on first write).
    /// </summary>
    internal LayerStatistics Resident()
    {
        Hessian.AsSpan().Clear();
        Sum.AsSpan().Clear();
        return this;
    }

    /// <summary>The mean input column of <paramref name="group"/>.</summary>
    public double[] Mean(int group)
    {
        var mean = new double[K];
        ReadOnlySpan<double> sum = Sum.AsSpan(group * K, K);
        for (int i = 0; i < K; i++) { mean[i] = Columns == 0 ? 0 : sum[i] / Columns; }
        return mean;
    }
}

/// <summary>How a Conv's H is computed (Gemm/MatMul always use their input rows).</summary>
internal enum ConvGram
{
    /// <summary>Shifted channel products (<see cref="ShiftedConvGram"/>) for stride-1 convs where they apply and cost fewer multiply-adds; im2col elsewhere.</summary>
    Shifted,
    /// <summary>im2col for every Conv: the path the shifted one is checked and benchmarked against.</summary>
    Im2Col,
}

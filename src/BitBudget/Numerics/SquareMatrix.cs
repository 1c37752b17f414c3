using MathNet.Numerics.LinearAlgebra;

namespace BitBudget.Numerics;

/// <summary>
/// A read-only n × n matrix of doubles stored row-major: the one type in which Ω (CLADO's measurement → the search) and H
/// (layer-input statistics → GPTQ) travel between stages. Factorisations convert it to MathNet once (<see cref="ToMathNet"/>);
/// kernels read its rows as spans.
/// </summary>
public sealed class SquareMatrix
{
    readonly double[] _values;

    SquareMatrix(double[] values, int order) => (_values, Order) = (values, order);

    /// <summary>Rows (= columns).</summary>
    public int Order { get; }

    /// <summary>The entry in <paramref name="row"/>, <paramref name="column"/>.</summary>
    public double this[int row, int column] => _values[row * Order + column];

    /// <summary>A copy of <paramref name="rowMajor"/> (<paramref name="order"/>² values).</summary>
    public static SquareMatrix Copy(ReadOnlySpan<double> rowMajor, int order)
    {
        CheckLength(rowMajor.Length, order);
        return new SquareMatrix(rowMajor.ToArray(), order);
    }

    /// <summary>A copy of a square two-dimensional array.</summary>
    public static SquareMatrix Copy(double[,] values)
    {
        ArgumentNullException.ThrowIfNull(values);
        int n = values.GetLength(0);
        if (values.GetLength(1) != n) { throw new ArgumentException($"The matrix is {n}×{values.GetLength(1)}; expected a square matrix.", nameof(values)); }
        var copy = new double[n * n];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < n; j++) { copy[i * n + j] = values[i, j]; }
        }
        return new SquareMatrix(copy, n);
    }

    /// <summary>A copy of a square two-dimensional array (so a <c>double[,]</c> can be passed wherever a matrix is taken).</summary>
    public static implicit operator SquareMatrix(double[,] values) => Copy(values);

    /// <summary>A row-major copy of a square MathNet matrix.</summary>
    internal static SquareMatrix Copy(Matrix<double> values)
    {
        ArgumentNullException.ThrowIfNull(values);
        if (values.RowCount != values.ColumnCount) { throw new ArgumentException($"The matrix is {values.RowCount}×{values.ColumnCount}; expected a square matrix.", nameof(values)); }
        return new SquareMatrix(values.ToRowMajorArray(), values.RowCount);
    }

    /// <summary>Takes <paramref name="rowMajor"/> without copying; the caller gives up writing to it.</summary>
    internal static SquareMatrix Own(double[] rowMajor, int order)
    {
        ArgumentNullException.ThrowIfNull(rowMajor);
        CheckLength(rowMajor.Length, order);
        return new SquareMatrix(rowMajor, order);
    }

    /// <summary>Row <paramref name="row"/>.</summary>
    public ReadOnlySpan<double> Row(int row) => _values.AsSpan(row * Order, Order);

    /// <summary>All entries, row-major.</summary>
    public ReadOnlySpan<double> AsSpan() => _values;

    /// <summary>A row-major copy.</summary>
    public double[] ToRowMajorArray() => (double[])_values.Clone();

    /// <summary>A two-dimensional copy.</summary>
    public double[,] ToArray()
    {
        int n = Order;
        var result = new double[n, n];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < n; j++) { result[i, j] = _values[i * n + j]; }
        }
        return result;
    }

    /// <summary>A MathNet copy (dense, column-major), for factorisations.</summary>
    internal Matrix<double> ToMathNet() => Matrix<double>.Build.DenseOfRowMajor(Order, Order, _values);

    /// <summary>A MathNet copy of the symmetric part (A + Aᵀ)/2, for symmetric eigendecompositions.</summary>
    internal Matrix<double> SymmetricPart()
    {
        Matrix<double> m = ToMathNet();
        return (m + m.Transpose()).Multiply(0.5);
    }

    static void CheckLength(int length, int order)
    {
        if (order < 0 || (long)order * order != length)
        {
            throw new ArgumentException($"{length} values do not form a {order}×{order} matrix.");
        }
    }
}

using System.Numerics.Tensors;
using BitBudget.Graph;
using BitBudget.Runtime;
using Microsoft.ML.OnnxRuntime;

namespace BitBudget.Rounding;

/// <summary>
/// One-node ORT sessions (MLAS): X·Xᵀ (columns layout, K × M), XᵀX (rows layout, M × K), AᵀB of two M × C views
/// (the shifted products) and the batched A·B of the border pieces ([P, C, T] · [P, T, C]).
/// </summary>
internal sealed class GramSessions : IDisposable
{
    readonly InferenceSession _columns, _rows, _cross, _pieces, _pair;
    readonly RunOptions _runOptions = new();

    public GramSessions(RuntimeOptions runtime)
    {
        Parallelism = runtime.IntraOpThreads > 0 ? runtime.IntraOpThreads : Environment.ProcessorCount;
        // The shifted products run one per core from managed threads, each session on one thread.
        RuntimeOptions single = runtime with { IntraOpThreads = 1 };
        var created = new List<InferenceSession>(4);
        try
        {
            foreach ((byte[] model, RuntimeOptions options) in new[] { (GramModel(transA: false), runtime), (GramModel(transA: true), runtime), (CrossModel(), single), (PiecesModel(), single), (PairModel(), runtime) })
            {
                created.Add(OrtSessions.Create(model, options, "the Gram-matrix model"));
            }
        }
        catch
        {
            foreach (InferenceSession session in created) { session.Dispose(); }
            _runOptions.Dispose();
            throw;
        }
        (_columns, _rows, _cross, _pieces, _pair) = (created[0], created[1], created[2], created[3], created[4]);
    }

    /// <summary>How many <see cref="Cross"/> products may run at once (the runtime's intra-op threads; 0 = one per core).</summary>
    public int Parallelism { get; }

    /// <summary><paramref name="result"/> (C × C) = AᵀB for the M × C matrices at float offsets <paramref name="a"/> and <paramref name="b"/> of <paramref name="x"/>.</summary>
    public void Cross(float[] x, int a, int b, int m, int c, Span<float> result)
    {
        using var left = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, x.AsMemory(a, m * c), [m, c]);
        using var right = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, x.AsMemory(b, m * c), [m, c]);
        using var outputs = _cross.Run(_runOptions, ["a", "b"], [left, right], ["h"]);
        outputs[0].GetTensorDataAsSpan<float>().CopyTo(result);
    }

    /// <summary><paramref name="result"/> (P × C × C) = A_p·B_p for A = <paramref name="a"/> as P × C × T and B = <paramref name="b"/> as P × T × C.</summary>
    public void CrossPieces(float[] a, float[] b, int pieces, int c, int t, Span<float> result)
    {
        using var left = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, a.AsMemory(0, pieces * c * t), [pieces, c, t]);
        using var right = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, b.AsMemory(0, pieces * t * c), [pieces, t, c]);
        using var outputs = _pieces.Run(_runOptions, ["a", "b"], [left, right], ["h"]);
        outputs[0].GetTensorDataAsSpan<float>().CopyTo(result);
    }

    /// <summary><paramref name="c"/> += A·Bᵀ for A = <paramref name="a"/>[0 .. k·m) and B = <paramref name="b"/>[0 .. k·m), both K × M.</summary>
    public void AccumulatePair(float[] a, float[] b, int k, int m, Span<double> c)
    {
        using var left = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, a.AsMemory(0, k * m), [k, m]);
        using var right = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, b.AsMemory(0, k * m), [k, m]);
        using var outputs = _pair.Run(_runOptions, ["a", "b"], [left, right], ["h"]);
        AddWidened(outputs[0].GetTensorDataAsSpan<float>()[..(k * k)], c);
    }

    /// <summary>H += X·Xᵀ and sum += row sums of X, for X = <paramref name="x"/>[0 .. k·m) as K × M.</summary>
    public void AccumulateColumns(float[] x, int k, int m, Span<double> h, Span<double> sum)
    {
        Run(_columns, x, [k, m], k, h);
        for (int r = 0; r < k; r++) { sum[r] += TensorPrimitives.Sum(x.AsSpan(r * m, m)); }
    }

    /// <summary>H += XᵀX and sum += column sums of X, for X = <paramref name="x"/>[0 .. m·k) as M × K.</summary>
    public void AccumulateRows(float[] x, int m, int k, Span<double> h, Span<double> sum)
    {
        Run(_rows, x, [m, k], k, h);
        for (int r = 0; r < m; r++) { AddWidened(x.AsSpan(r * k, k), sum[..k]); }
    }

    void Run(InferenceSession session, float[] x, long[] shape, int k, Span<double> h)
    {
        using var input = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, x.AsMemory(0, (int)(shape[0] * shape[1])), shape);
        using var outputs = session.Run(_runOptions, ["x"], [input], ["h"]);
        AddWidened(outputs[0].GetTensorDataAsSpan<float>()[..(k * k)], h);
    }

    // X·Xᵀ / XᵀX (one input used twice), AᵀB, A·Bᵀ and a batched MatMul: one-node models from the graph layer's one builder.
    static byte[] GramModel(bool transA) =>
        OneNodeModel.Build("Gemm", ["x", "x"], [("x", ["A", "B"])], ("h", ["K", "K"]), (transA ? "transA" : "transB", 1));

    static byte[] CrossModel() =>
        OneNodeModel.Build("Gemm", ["a", "b"], [("a", ["M", "C"]), ("b", ["M", "C"])], ("h", ["C", "C"]), ("transA", 1));

    static byte[] PairModel() =>
        OneNodeModel.Build("Gemm", ["a", "b"], [("a", ["K", "M"]), ("b", ["K", "M"])], ("h", ["K", "K"]), ("transB", 1));

    static byte[] PiecesModel() =>
        OneNodeModel.Build("MatMul", ["a", "b"], [("a", ["P", "C", "T"]), ("b", ["P", "T", "C"])], ("h", ["P", "C", "C"]));

    /// <summary><paramref name="target"/> += <paramref name="source"/>, each float widened to double exactly (vectorized, in stack-sized pieces).</summary>
    internal static void AddWidened(ReadOnlySpan<float> source, Span<double> target)
    {
        Span<double> wide = stackalloc double[256];
        for (int i = 0; i < source.Length; i += wide.Length)
        {
            int n = Math.Min(wide.Length, source.Length - i);
            TensorPrimitives.ConvertChecked(source.Slice(i, n), wide[..n]);
            TensorPrimitives.Add(target.Slice(i, n), wide[..n], target.Slice(i, n));
        }
    }

    public void Dispose()
    {
        _columns.Dispose();
        _rows.Dispose();
        _cross.Dispose();
        _pieces.Dispose();
        _pair.Dispose();
        _runOptions.Dispose();
    }
}

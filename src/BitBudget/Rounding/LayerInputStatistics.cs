using BitBudget.Numerics;
using System.Buffers;
using System.Numerics.Tensors;
using BitBudget.Evaluation;
using BitBudget.Graph;
using BitBudget.Graph.Onnx;
using BitBudget.Runtime;
using Microsoft.ML.OnnxRuntime;

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
    public double[] Hessian { get; } = new double[(long)groups * k * k];
    /// <summary>Groups × K sums of the columns (divide by <see cref="Columns"/> for the mean).</summary>
    public double[] Sum { get; } = new double[(long)groups * k];
    /// <summary>Columns accumulated per group.</summary>
    public long Columns { get; internal set; }

    public Span<double> H(int group) => Hessian.AsSpan(group * K * K, K * K);

    /// <summary>A read-only copy of <paramref name="group"/>'s H, the form it is handed to the rounding in.</summary>
    public SquareMatrix Gram(int group) => SquareMatrix.Copy(H(group), K);

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

/// <summary>
/// The statistics pass: one ORT run per calibration batch with every quantized layer's input exposed as an extra output,
/// then, per layer, shifted channel products (stride-1 Conv, <see cref="ShiftedConvGram"/>) or im2col (other Conv) into a pooled
/// buffer and X·Xᵀ, all by ORT's own Gemm (MLAS) in one-node sessions.
/// </summary>
/// <remarks>
/// Each chunk's Gemm accumulates in float over at most <see cref="ChunkFloats"/>/K columns (MLAS, FMA); chunks are summed in
/// double, so the error does not grow with the number of images (docs/rounding.md has the benchmark of the alternatives).
/// </remarks>
internal static class LayerInputStatistics
{
    /// <summary>Largest im2col buffer (floats) handed to one Gemm; bigger chunks mean fewer ORT calls, smaller ones less memory.</summary>
    internal const int ChunkFloats = 1 << 22;

    /// <summary>Accumulates the statistics of <paramref name="layers"/> over <paramref name="batches"/> (NCHW floats and their shape, all of one image shape).</summary>
    /// <remarks>The batches are gathered into one in-memory set first; stream a <see cref="Data.Dataset"/> to avoid the copy.</remarks>
    /// <exception cref="BitBudgetException">A layer's input holds NaN or infinite values, or a Conv is not 2-D.</exception>
    public static IReadOnlyList<LayerStatistics> Collect(OnnxModel prepared, IReadOnlyList<LayerInfo> layers,
        IEnumerable<(float[] Data, long[] Shape)> batches, RuntimeOptions? runtime = null, CancellationToken cancellationToken = default,
        ConvGram convGram = ConvGram.Shifted)
    {
        ArgumentNullException.ThrowIfNull(batches);
        var list = batches.ToList();
        if (list.Count == 0) { throw new BitBudgetException(ErrorKind.InvalidInput, "The statistics pass got no calibration batch."); }
        int[] sample = [.. list[0].Shape.Skip(1).Select(d => checked((int)d))];
        if (list.Any(b => !b.Shape.Skip(1).SequenceEqual(list[0].Shape.Skip(1))))
        {
            throw new BitBudgetException(ErrorKind.InvalidInput, "The calibration batches have different image shapes.");
        }
        int images = list.Sum(b => checked((int)b.Shape[0]));
        var data = Data.Dataset.FromArrays([.. list.SelectMany(b => b.Data)], new int[images], sample, [], "calibration batches");
        return Collect(prepared, layers, data, images, checked((int)list[0].Shape[0]), runtime, null, cancellationToken, convGram);
    }

    /// <summary>
    /// Accumulates the statistics over the first <paramref name="count"/> images of <paramref name="data"/>, at most
    /// <paramref name="batchSize"/> images per run (fewer when the memory budget says so), streamed by the <see cref="TensorTap"/>.
    /// </summary>
    public static IReadOnlyList<LayerStatistics> Collect(OnnxModel prepared, IReadOnlyList<LayerInfo> layers, Data.Dataset data, int count, int batchSize,
        RuntimeOptions? runtime = null, IProgress<int>? progress = null, CancellationToken cancellationToken = default, ConvGram convGram = ConvGram.Shifted)
    {
        ArgumentNullException.ThrowIfNull(prepared);
        ArgumentNullException.ThrowIfNull(layers);
        ArgumentNullException.ThrowIfNull(data);
        runtime ??= RuntimeOptions.Default;
        var plans = new List<Plan>(layers.Count);
        for (int i = 0; i < layers.Count; i++) { plans.AddRange(PlanLayer(prepared, layers[i], i)); }
        var stats = new LayerStatistics[layers.Count];
        for (int i = 0; i < layers.Count; i++)
        {
            LayerInfo layer = layers[i];
            int k = layer.OpType == "Conv" ? (int)(layer.WeightCount / layer.WeightShape[0]) : (int)layer.WeightShape[layer.ChannelAxis == 0 ? 1 : 0];
            stats[i] = new LayerStatistics(layer, layer.Groups, k);
        }

        using var gram = new GramSessions(runtime);
        float[] buffer = ArrayPool<float>.Shared.Rent(ChunkFloats);
        try
        {
            string[] inputs = [.. plans.Select(p => p.InputName).Distinct(StringComparer.Ordinal)];
            new TensorTap(prepared, runtime).Stream(data, count, inputs, batchSize, (_, _, tensors) =>
            {
                foreach (Plan plan in plans)
                {
                    CapturedTensor x = tensors[plan.InputName];
                    Accumulate(stats[plan.LayerIndex], plan, x.Values, x.Shape, buffer, gram, convGram);
                }
            }, progress, cancellationToken, "the rounding statistics pass");
        }
        finally
        {
            ArrayPool<float>.Shared.Return(buffer);
        }
        foreach (LayerStatistics s in stats)
        {
            s.Columns /= s.Groups;
            CheckFinite(s);
        }
        return stats;
    }

    /// <summary>
    /// Statistics of the inputs a layer sees in <paramref name="model"/> (H = Σ x̂ x̂ᵀ, Σ x̂) plus, per group, the cross moments
    /// C = Σ x x̂ᵀ (K × K, row-major) with its float inputs x, which <paramref name="model"/> computes beside the quantized path
    /// under the tensor names <paramref name="floatName"/> gives (one pass, so x and x̂ come from the same images).
    /// </summary>
    internal static IReadOnlyList<(LayerStatistics Seen, double[] Cross)> CollectPaired(OnnxModel model, OnnxModel floatModel, Func<string, string> floatName,
        IReadOnlyList<LayerInfo> layers, Data.Dataset data, int count, int batchSize, RuntimeOptions? runtime = null, CancellationToken cancellationToken = default)
    {
        runtime ??= RuntimeOptions.Default;
        var plans = new List<Plan>(layers.Count);
        var floatInputs = new List<string>(layers.Count);
        for (int i = 0; i < layers.Count; i++)
        {
            plans.AddRange(PlanLayer(model, layers[i], i));
            floatInputs.AddRange(PlanLayer(floatModel, layers[i], i).Select(p => floatName(p.InputName)));
        }
        if (floatInputs.Count != plans.Count) { throw new InvalidOperationException("The quantized and float models read a layer's weight from different numbers of nodes."); }
        var stats = new LayerStatistics[layers.Count];
        var cross = new double[layers.Count][];
        for (int i = 0; i < layers.Count; i++)
        {
            LayerInfo layer = layers[i];
            int k = layer.OpType == "Conv" ? (int)(layer.WeightCount / layer.WeightShape[0]) : (int)layer.WeightShape[layer.ChannelAxis == 0 ? 1 : 0];
            stats[i] = new LayerStatistics(layer, layer.Groups, k);
            cross[i] = new double[(long)layer.Groups * k * k];
        }
        using var gram = new GramSessions(runtime);
        float[] buffer = ArrayPool<float>.Shared.Rent(ChunkFloats), pairA = ArrayPool<float>.Shared.Rent(ChunkFloats), pairB = ArrayPool<float>.Shared.Rent(ChunkFloats);
        try
        {
            string[] inputs = [.. plans.Select(p => p.InputName).Concat(floatInputs).Distinct(StringComparer.Ordinal)];
            new TensorTap(model, runtime).Stream(data, count, inputs, batchSize, (_, _, tensors) =>
            {
                for (int p = 0; p < plans.Count; p++)
                {
                    Plan plan = plans[p];
                    CapturedTensor q = tensors[plan.InputName], f = tensors[floatInputs[p]];
                    Accumulate(stats[plan.LayerIndex], plan, q.Values, q.Shape, buffer, gram, ConvGram.Shifted);
                    AccumulateCross(stats[plan.LayerIndex].K, cross[plan.LayerIndex], plan, f.Values, q.Values, q.Shape, pairA, pairB, gram);
                }
            }, null, cancellationToken, "the sequential rounding pass");
        }
        finally
        {
            ArrayPool<float>.Shared.Return(buffer);
            ArrayPool<float>.Shared.Return(pairA);
            ArrayPool<float>.Shared.Return(pairB);
        }
        foreach (LayerStatistics st in stats)
        {
            st.Columns /= st.Groups;
            CheckFinite(st);
        }
        return [.. stats.Select((st, i) => (st, cross[i]))];
    }

    /// <summary>C += Σ x x̂ᵀ over the columns of one batch (im2col for every Conv: the shifted products are for symmetric H only).</summary>
    static void AccumulateCross(int k, double[] cross, Plan plan, ReadOnlySpan<float> xf, ReadOnlySpan<float> xq, long[] shape, float[] a, float[] b, GramSessions gram)
    {
        if (!plan.IsConv)
        {
            long rows = xq.Length / k;
            int rowsPerChunk = Math.Max(1, ChunkFloats / k);
            for (long r0 = 0; r0 < rows; r0 += rowsPerChunk)
            {
                int m = (int)Math.Min(rowsPerChunk, rows - r0);
                // Rows layout M × K; transposed into K × M for the A·Bᵀ session.
                for (int r = 0; r < m; r++)
                {
                    for (int j = 0; j < k; j++)
                    {
                        a[j * m + r] = xf[(int)((r0 + r) * k + j)];
                        b[j * m + r] = xq[(int)((r0 + r) * k + j)];
                    }
                }
                gram.AccumulatePair(a, b, k, m, cross.AsSpan(0, k * k));
            }
            return;
        }
        int n = (int)shape[0], c = (int)shape[1], h = (int)shape[2], w = (int)shape[3];
        var g = Geometry.For(plan, h, w);
        int cPerGroup = c / plan.Groups, positions = g.OutH * g.OutW;
        int imagesPerChunk = Math.Max(1, ChunkFloats / (k * positions));
        for (int group = 0; group < plan.Groups; group++)
        {
            for (int n0 = 0; n0 < n; n0 += imagesPerChunk)
            {
                int images = Math.Min(imagesPerChunk, n - n0), m = images * positions;
                for (int image = 0; image < images; image++)
                {
                    int offset = ((n0 + image) * c + group * cPerGroup) * h * w;
                    Im2Col(xf.Slice(offset, cPerGroup * h * w), cPerGroup, h, w, plan, g, a, m, image * positions);
                    Im2Col(xq.Slice(offset, cPerGroup * h * w), cPerGroup, h, w, plan, g, b, m, image * positions);
                }
                gram.AccumulatePair(a, b, k, m, cross.AsSpan(group * k * k, k * k));
            }
        }
    }

    /// <summary>One node that reads a layer's weight (a shared weight has several) and how its input becomes columns.</summary>
    internal sealed record Plan(int LayerIndex, string InputName, bool IsConv, int Groups, int Kh, int Kw,
        int StrideH, int StrideW, int DilationH, int DilationW, int PadTop, int PadLeft, int PadBottom, int PadRight, string AutoPad);

    static IEnumerable<Plan> PlanLayer(OnnxModel prepared, LayerInfo layer, int position)
    {
        foreach (NodeProto node in prepared.Graph.Node)
        {
            if (node.Input.Count < 2 || node.Input[1] != layer.WeightName || node.OpType != layer.OpType) { continue; }
            if (node.OpType != "Conv")
            {
                yield return new Plan(position, node.Input[0], false, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, "NOTSET");
                continue;
            }
            if (layer.WeightShape.Count != 4)
            {
                throw new BitBudgetException(ErrorKind.InvalidInput,
                    $"Layer '{layer.Name}' is a {layer.WeightShape.Count - 2}-D Conv; the rounding statistics support 2-D Conv only.");
            }
            long[] Ints(string name, long fallback, int count)
            {
                AttributeProto? a = node.Attribute.FirstOrDefault(x => x.Name == name);
                return a is null || a.Ints.Count == 0 ? Enumerable.Repeat(fallback, count).ToArray() : [.. a.Ints];
            }
            long[] strides = Ints("strides", 1, 2), dilations = Ints("dilations", 1, 2), pads = Ints("pads", 0, 4);
            string autoPad = node.Attribute.FirstOrDefault(x => x.Name == "auto_pad")?.S.ToStringUtf8() ?? "NOTSET";
            if (autoPad is "VALID") { pads = [0, 0, 0, 0]; }
            yield return new Plan(position, node.Input[0], true, layer.Groups, (int)layer.WeightShape[2], (int)layer.WeightShape[3],
                (int)strides[0], (int)strides[1], (int)dilations[0], (int)dilations[1], (int)pads[0], (int)pads[1], (int)pads[2], (int)pads[3],
                autoPad is "" ? "NOTSET" : autoPad);
        }
    }

    static void Accumulate(LayerStatistics s, Plan plan, ReadOnlySpan<float> x, long[] shape, float[] buffer, GramSessions gram, ConvGram convGram)
    {
        int k = s.K;
        if (!plan.IsConv)
        {
            long rows = x.Length / k;
            int rowsPerChunk = Math.Max(1, ChunkFloats / k);
            for (long r0 = 0; r0 < rows; r0 += rowsPerChunk)
            {
                int m = (int)Math.Min(rowsPerChunk, rows - r0);
                Span<float> chunk = buffer.AsSpan(0, m * k);
                x.Slice((int)(r0 * k), m * k).CopyTo(chunk);
                gram.AccumulateRows(buffer, m, k, s.H(0), s.Sum.AsSpan(0, k));
            }
            s.Columns += rows;
            return;
        }
        int n = (int)shape[0], c = (int)shape[1], h = (int)shape[2], w = (int)shape[3];
        var g = Geometry.For(plan, h, w);
        int cPerGroup = c / plan.Groups;
        int positions = g.OutH * g.OutW;
        if (convGram == ConvGram.Shifted && ShiftedConvGram.TryCreate(plan, g, h, w, cPerGroup) is { } shifted)
        {
            for (int group = 0; group < plan.Groups; group++)
            {
                shifted.Accumulate(x, n, c, group, s.H(group), s.Sum.AsSpan(group * k, k), buffer, gram);
            }
            s.Columns += (long)n * positions * plan.Groups;
            return;
        }
        int imagesPerChunk = Math.Max(1, ChunkFloats / (k * positions));
        if ((long)k * positions > ChunkFloats)
        {
            throw new BitBudgetException(ErrorKind.InvalidInput,
                $"Layer '{s.Layer.Name}' has {k}×{positions} im2col values per image, more than the {ChunkFloats} the statistics buffer holds.");
        }
        for (int group = 0; group < plan.Groups; group++)
        {
            for (int n0 = 0; n0 < n; n0 += imagesPerChunk)
            {
                int images = Math.Min(imagesPerChunk, n - n0);
                int m = images * positions;
                for (int image = 0; image < images; image++)
                {
                    ReadOnlySpan<float> source = x.Slice(((n0 + image) * c + group * cPerGroup) * h * w, cPerGroup * h * w);
                    Im2Col(source, cPerGroup, h, w, plan, g, buffer, m, image * positions);
                }
                gram.AccumulateColumns(buffer, k, m, s.H(group), s.Sum.AsSpan(group * k, k));
            }
        }
        s.Columns += (long)n * positions * plan.Groups;
    }

    internal readonly record struct Geometry(int OutH, int OutW, int PadTop, int PadLeft)
    {
        public static Geometry For(Plan p, int h, int w)
        {
            (int top, int bottom) = Pads(p.AutoPad, h, p.Kh, p.StrideH, p.DilationH, p.PadTop, p.PadBottom);
            (int left, int right) = Pads(p.AutoPad, w, p.Kw, p.StrideW, p.DilationW, p.PadLeft, p.PadRight);
            int outH = (h + top + bottom - p.DilationH * (p.Kh - 1) - 1) / p.StrideH + 1;
            int outW = (w + left + right - p.DilationW * (p.Kw - 1) - 1) / p.StrideW + 1;
            return new Geometry(outH, outW, top, left);
        }

        static (int Begin, int End) Pads(string autoPad, int size, int kernel, int stride, int dilation, int begin, int end)
        {
            if (autoPad is not ("SAME_UPPER" or "SAME_LOWER")) { return (begin, end); }
            int total = Math.Max(0, ((size + stride - 1) / stride - 1) * stride + (kernel - 1) * dilation + 1 - size);
            return autoPad == "SAME_UPPER" ? (total / 2, total - total / 2) : (total - total / 2, total / 2);
        }
    }

    /// <summary>Writes one image's patches of one group as rows k = (c, i, j) of a K × <paramref name="m"/> matrix, from column <paramref name="column0"/>; padding is zeros.</summary>
    internal static void Im2Col(ReadOnlySpan<float> image, int channels, int h, int w, Plan p, Geometry g, Span<float> destination, int m, int column0)
    {
        int row = 0;
        for (int ch = 0; ch < channels; ch++)
        {
            ReadOnlySpan<float> plane = image.Slice(ch * h * w, h * w);
            for (int i = 0; i < p.Kh; i++)
            {
                for (int j = 0; j < p.Kw; j++, row++)
                {
                    Span<float> target = destination.Slice(row * m + column0, g.OutH * g.OutW);
                    int dx = j * p.DilationW - g.PadLeft;
                    // Output columns whose input x = ox·stride + dx lies inside the image.
                    int oxLo = dx >= 0 ? 0 : (-dx + p.StrideW - 1) / p.StrideW;
                    int oxHi = Math.Min(g.OutW, w - dx <= 0 ? 0 : (w - dx - 1) / p.StrideW + 1);
                    for (int oy = 0; oy < g.OutH; oy++)
                    {
                        Span<float> outRow = target.Slice(oy * g.OutW, g.OutW);
                        int iy = oy * p.StrideH + i * p.DilationH - g.PadTop;
                        if (iy < 0 || iy >= h || oxLo >= oxHi)
                        {
                            outRow.Clear();
                            continue;
                        }
                        outRow[..oxLo].Clear();
                        outRow[oxHi..].Clear();
                        ReadOnlySpan<float> inRow = plane.Slice(iy * w, w);
                        if (p.StrideW == 1)
                        {
                            inRow.Slice(oxLo + dx, oxHi - oxLo).CopyTo(outRow[oxLo..oxHi]);
                        }
                        else
                        {
                            for (int ox = oxLo, ix = oxLo * p.StrideW + dx; ox < oxHi; ox++, ix += p.StrideW) { outRow[ox] = inRow[ix]; }
                        }
                    }
                }
            }
        }
    }

    static void CheckFinite(LayerStatistics s)
    {
        for (int g = 0; g < s.Groups; g++)
        {
            Span<double> h = s.H(g);
            for (int i = 0; i < s.K; i++)
            {
                if (!double.IsFinite(h[i * s.K + i]))
                {
                    throw new BitBudgetException(ErrorKind.InvalidInput,
                        $"Layer '{s.Layer.Name}' receives NaN or infinite input values on the calibration images; check the images and their preprocessing.");
                }
            }
        }
    }

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
            ReadOnlySpan<float> product = outputs[0].GetTensorDataAsSpan<float>();
            for (int i = 0; i < k * k; i++) { c[i] += product[i]; }
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
            for (int r = 0; r < m; r++)
            {
                ReadOnlySpan<float> row = x.AsSpan(r * k, k);
                for (int j = 0; j < k; j++) { sum[j] += row[j]; }
            }
        }

        void Run(InferenceSession session, float[] x, long[] shape, int k, Span<double> h)
        {
            using var input = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, x.AsMemory(0, (int)(shape[0] * shape[1])), shape);
            using var outputs = session.Run(_runOptions, ["x"], [input], ["h"]);
            ReadOnlySpan<float> gram = outputs[0].GetTensorDataAsSpan<float>();
            for (int i = 0; i < k * k; i++) { h[i] += gram[i]; }
        }

        static byte[] GramModel(bool transA)
        {
            var node = new NodeProto { OpType = "Gemm", Name = "gram" };
            node.Input.Add("x");
            node.Input.Add("x");
            node.Output.Add("h");
            node.Attribute.Add(new AttributeProto { Name = transA ? "transA" : "transB", Type = AttributeProto.Types.AttributeType.Int, I = 1 });
            return Model(node, [Value("x", "A", "B")], Value("h", "K", "K"));
        }

        static byte[] CrossModel()
        {
            var node = new NodeProto { OpType = "Gemm", Name = "cross" };
            node.Input.Add("a");
            node.Input.Add("b");
            node.Output.Add("h");
            node.Attribute.Add(new AttributeProto { Name = "transA", Type = AttributeProto.Types.AttributeType.Int, I = 1 });
            return Model(node, [Value("a", "M", "C"), Value("b", "M", "C")], Value("h", "C", "C"));
        }

        static byte[] PairModel()
        {
            var node = new NodeProto { OpType = "Gemm", Name = "pair" };
            node.Input.Add("a");
            node.Input.Add("b");
            node.Output.Add("h");
            node.Attribute.Add(new AttributeProto { Name = "transB", Type = AttributeProto.Types.AttributeType.Int, I = 1 });
            return Model(node, [Value("a", "K", "M"), Value("b", "K", "M")], Value("h", "K", "K"));
        }

        static byte[] PiecesModel()
        {
            var node = new NodeProto { OpType = "MatMul", Name = "pieces" };
            node.Input.Add("a");
            node.Input.Add("b");
            node.Output.Add("h");
            return Model(node, [Value("a", "P", "C", "T"), Value("b", "P", "T", "C")], Value("h", "P", "C", "C"));
        }

        static byte[] Model(NodeProto node, ValueInfoProto[] inputs, ValueInfoProto output)
        {
            var graph = new GraphProto { Name = node.Name };
            graph.Node.Add(node);
            graph.Input.Add(inputs);
            graph.Output.Add(output);
            var proto = new ModelProto { IrVersion = 8, ProducerName = "bitbudget", Graph = graph };
            proto.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 13 });
            return new OnnxModel(proto).ToBytes();
        }

        static ValueInfoProto Value(string name, params string[] dims)
        {
            var shape = new TensorShapeProto();
            foreach (string d in dims) { shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimParam = d }); }
            return new ValueInfoProto
            {
                Name = name,
                Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float, Shape = shape } },
            };
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
}

using System.Buffers;
using System.Numerics.Tensors;
using BitBudget.Evaluation;
using BitBudget.Graph;
using BitBudget.Runtime;
using Microsoft.ML.OnnxRuntime;

namespace BitBudget.Rounding;

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

    /// <summary>Most images one chunk's float products sum over; micro-batches are multiples of it, so chunks never depend on them.</summary>
    internal const int MaxChunkImages = 16;

    /// <summary>Images per chunk for <paramref name="floatsPerImage"/> buffer floats per image: a power of two ≤ <see cref="MaxChunkImages"/>.</summary>
    internal static int ChunkImages(long floatsPerImage)
    {
        long fit = Math.Clamp(ChunkFloats / Math.Max(1, floatsPerImage), 1, MaxChunkImages);
        return 1 << System.Numerics.BitOperations.Log2((uint)fit);
    }

    /// <summary>
    /// Row chunks [Start, Start + Rows) of an M × K rows layout holding <paramref name="images"/> images: whole images,
    /// <see cref="ChunkImages"/> of them (split further only when one image alone exceeds <see cref="ChunkFloats"/>).
    /// </summary>
    static IEnumerable<(long Start, int Rows)> RowChunks(long rows, int images, int k)
    {
        long perImage = Math.Max(1, rows / Math.Max(1, images));
        long chunk = ChunkImages(perImage * k) * perImage;
        int maxRows = Math.Max(1, ChunkFloats / k);
        for (long c0 = 0; c0 < rows; c0 += chunk)
        {
            long end = Math.Min(rows, c0 + chunk);
            for (long r0 = c0; r0 < end; r0 += maxRows) { yield return (r0, (int)Math.Min(maxRows, end - r0)); }
        }
    }

    /// <summary>Accumulates the statistics of <paramref name="layers"/> over <paramref name="batches"/> (NCHW floats and their shape, all of one image shape).</summary>
    /// <remarks>The batches are gathered into one in-memory set first; stream a <see cref="Data.Dataset"/> to avoid the copy.</remarks>
    /// <exception cref="BitBudgetException">A layer's input holds NaN or infinite values, or a Conv is not 2-D.</exception>
    public static IReadOnlyList<LayerStatistics> Collect(OnnxModel prepared, IReadOnlyList<LayerInfo> layers,
        IEnumerable<(float[] Data, long[] Shape)> batches, RuntimeOptions? runtime = null, CancellationToken cancellationToken = default,
        ConvGram convGram = ConvGram.Shifted)
    {
        ArgumentNullException.ThrowIfNull(batches);
        var list = batches.ToList();
        if (list.Count == 0) { throw Errors.InvalidInput("The statistics pass got no calibration batch."); }
        int[] sample = [.. list[0].Shape.Skip(1).Select(d => checked((int)d))];
        if (list.Any(b => !b.Shape.Skip(1).SequenceEqual(list[0].Shape.Skip(1))))
        {
            throw Errors.InvalidInput("The calibration batches have different image shapes.");
        }
        int images = list.Sum(b => checked((int)b.Shape[0]));
        var data = Data.Dataset.FromArrays([.. list.SelectMany(b => b.Data)], new int[images], sample, [], "calibration batches");
        return Collect(prepared, layers, data, images, checked((int)list[0].Shape[0]), runtime, null, cancellationToken, convGram);
    }

    /// <summary>
    /// Accumulates the statistics over the first <paramref name="count"/> images of <paramref name="data"/>, at most
    /// <paramref name="batchSize"/> images per run (fewer when the memory budget says so), streamed by the <see cref="TensorTap"/>.
    /// </summary>
    /// <remarks>
    /// H of every layer stays resident (GPTQ needs it), so the pass reserves it beside the micro-batches: when all of it and one
    /// micro-batch of every exposed input do not fit <see cref="RuntimeOptions.MaxMemory"/>, the layers go in groups, one pass over
    /// the images per group, each exposing only its own inputs. Chunks of images are fixed per layer (<see cref="ChunkImages"/>) and
    /// micro-batches are multiples of <see cref="MaxChunkImages"/>, so H is the same whatever the budget allows.
    /// </remarks>
    /// <exception cref="BitBudgetException">NaN or infinite inputs, or the H matrices do not fit the memory budget.</exception>
    public static IReadOnlyList<LayerStatistics> Collect(OnnxModel prepared, IReadOnlyList<LayerInfo> layers, Data.Dataset data, int count, int batchSize,
        RuntimeOptions? runtime = null, IProgress<int>? progress = null, CancellationToken cancellationToken = default, ConvGram convGram = ConvGram.Shifted) =>
        Collect(prepared, layers, data, count, batchSize, runtime, progress, cancellationToken, convGram, groupBytes: 0);

    // groupBytes: bytes of H per group of layers (tests); 0 plans the groups from the memory budget.
    internal static IReadOnlyList<LayerStatistics> Collect(OnnxModel prepared, IReadOnlyList<LayerInfo> layers, Data.Dataset data, int count, int batchSize,
        RuntimeOptions? runtime, IProgress<int>? progress, CancellationToken cancellationToken, ConvGram convGram, long groupBytes)
    {
        ArgumentNullException.ThrowIfNull(prepared);
        ArgumentNullException.ThrowIfNull(layers);
        ArgumentNullException.ThrowIfNull(data);
        runtime ??= RuntimeOptions.Default;
        count = Math.Min(count, data.Count);
        var plans = new List<Plan>(layers.Count);
        for (int i = 0; i < layers.Count; i++) { plans.AddRange(PlanLayer(prepared, layers[i], i)); }
        var tap = new TensorTap(prepared, runtime);
        IReadOnlyList<int[]> groups = groupBytes > 0 ? Groups(layers, groupBytes) : PlanGroups(tap, data, count, layers, plans);
        var stats = new LayerStatistics[layers.Count];
        using var gram = new GramSessions(runtime);
        float[] buffer = ArrayPool<float>.Shared.Rent(ChunkFloats);
        try
        {
            for (int g = 0; g < groups.Count; g++)
            {
                var members = new HashSet<int>(groups[g]);
                foreach (int i in groups[g]) { stats[i] = new LayerStatistics(layers[i], layers[i].Groups, InputsPerColumn(layers[i])).Resident(); }
                Plan[] group = [.. plans.Where(p => members.Contains(p.LayerIndex))];
                string[] inputs = [.. group.Select(p => p.InputName).Distinct(StringComparer.Ordinal)];
                int offset = g * count;
                IProgress<int>? passProgress = progress is null ? null : new Progress<int>(done => progress.Report((offset + done) / groups.Count));
                tap.Stream(data, count, inputs, batchSize, (_, _, tensors) =>
                {
                    foreach (Plan plan in group)
                    {
                        // One micro-batch's Gram updates of every layer can take minutes on a large model; stop between layers.
                        cancellationToken.ThrowIfCancellationRequested();
                        CapturedTensor x = tensors[plan.InputName];
                        Accumulate(stats[plan.LayerIndex], plan, x.Values, x.Shape, buffer, gram, convGram);
                    }
                }, groups.Count == 1 ? progress : passProgress, cancellationToken, "the rounding statistics pass", MaxChunkImages);
            }
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

    /// <summary>Inputs per column of a layer's H: a Conv's patch (Cin/groups·kh·kw), a Gemm/MatMul's input row.</summary>
    static int InputsPerColumn(LayerInfo layer) =>
        layer.OpType == "Conv" ? (int)(layer.WeightCount / layer.WeightShape[0]) : (int)layer.WeightShape[layer.ChannelAxis == 0 ? 1 : 0];

    static long HBytes(LayerInfo layer) => LayerStatistics.BytesFor(layer.Groups, InputsPerColumn(layer));

    /// <summary>Consecutive layers, as many per group as fit <paramref name="groupBytes"/> of H (at least one).</summary>
    static List<int[]> Groups(IReadOnlyList<LayerInfo> layers, long groupBytes)
    {
        var groups = new List<int[]>();
        var current = new List<int>();
        long bytes = 0;
        for (int i = 0; i < layers.Count; i++)
        {
            long h = HBytes(layers[i]);
            if (current.Count > 0 && bytes + h > groupBytes) { groups.Add([.. current]); current.Clear(); bytes = 0; }
            current.Add(i);
            bytes += h;
        }
        if (current.Count > 0) { groups.Add([.. current]); }
        return groups;
    }

    /// <summary>
    /// Groups of consecutive layers such that, with the H of every earlier group kept, a group's H and one micro-batch of
    /// <see cref="MaxChunkImages"/> images with its inputs exposed fit beside what the process holds now; one group when all fit.
    /// </summary>
    static List<int[]> PlanGroups(TensorTap tap, Data.Dataset data, int count, IReadOnlyList<LayerInfo> layers, List<Plan> plans)
    {
        var all = new List<int[]> { Enumerable.Range(0, layers.Count).ToArray() };
        if (tap.Runtime.ImagesPerRun > 0 || layers.Count == 0 || count == 0) { return all; }   // images per run fixed by the caller
        TensorFootprint footprint = tap.Footprint(data);
        int images = Math.Min(count, MaxChunkImages);
        long Run(IEnumerable<int> members) =>
            images * footprint.RunBytes(plans.Where(p => members.Contains(p.LayerIndex)).Select(p => p.InputName));
        long resident = ProcessMemory.RssAfterCollecting();
        long free = tap.Runtime.MaxMemory - resident;
        long total = layers.Sum(HBytes);
        if (total + Run(all[0]) <= free) { return all; }
        var groups = new List<int[]>();
        var current = new List<int>();
        long kept = 0, bytes = 0;   // H of the closed groups (still resident) and of the current one
        for (int i = 0; i < layers.Count; i++)
        {
            long h = HBytes(layers[i]);
            if (kept + bytes + h + Run([.. current, i]) <= free) { current.Add(i); bytes += h; continue; }
            if (current.Count > 0) { groups.Add([.. current]); kept += bytes; current.Clear(); bytes = 0; }
            if (kept + h + Run([i]) > free)
            {
                long oneImage = layers.Select((_, j) => Run([j]) / images).Max();
                throw Errors.InvalidInput(
                    $"--max-memory {ProcessMemory.Format(tap.Runtime.MaxMemory)} is too small for the rounding statistics pass: {ProcessMemory.Format(resident)} is already in use " +
                    $"(model, images) and the H matrices (Σxxᵀ) of the {layers.Count} layers need {ProcessMemory.Format(total)} beside one image's tensors; " +
                    $"at least {ProcessMemory.Format(resident + total + oneImage)} would fit.");
            }
            current.Add(i);
            bytes = h;
        }
        groups.Add([.. current]);
        return groups;
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
            int k = InputsPerColumn(layer);
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
            foreach ((long r0, int m) in RowChunks(rows, (int)shape[0], k))
            {
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
        ConvOutput g = plan.Conv!.Output(h, w);
        int cPerGroup = c / plan.Groups, positions = g.OutH * g.OutW;
        int imagesPerChunk = ChunkImages((long)k * positions);
        for (int group = 0; group < plan.Groups; group++)
        {
            for (int n0 = 0; n0 < n; n0 += imagesPerChunk)
            {
                int images = Math.Min(imagesPerChunk, n - n0), m = images * positions;
                for (int image = 0; image < images; image++)
                {
                    int offset = ((n0 + image) * c + group * cPerGroup) * h * w;
                    Im2Col.Write(xf.Slice(offset, cPerGroup * h * w), cPerGroup, h, w, plan.Conv!, g, a, m, image * positions);
                    Im2Col.Write(xq.Slice(offset, cPerGroup * h * w), cPerGroup, h, w, plan.Conv!, g, b, m, image * positions);
                }
                gram.AccumulatePair(a, b, k, m, cross.AsSpan(group * k * k, k * k));
            }
        }
    }

    /// <summary>One node that reads a layer's weight (a shared weight has several): where its input is and, for a Conv, its geometry.</summary>
    sealed record Plan(int LayerIndex, string InputName, ConvGeometry? Conv)
    {
        public bool IsConv => Conv is not null;
        public int Groups => Conv?.Groups ?? 1;
    }

    static IEnumerable<Plan> PlanLayer(OnnxModel model, LayerInfo layer, int position)
    {
        foreach (WeightReader reader in WeightReader.Of(model, layer))
        {
            if (reader.OpType == "Conv" && reader.Conv is null)
            {
                throw Errors.InvalidInput(
                    $"Layer '{layer.Name}' is a {layer.WeightShape.Count - 2}-D Conv; the rounding statistics support 2-D Conv only.");
            }
            yield return new Plan(position, reader.InputName, reader.Conv);
        }
    }

    static void Accumulate(LayerStatistics s, Plan plan, ReadOnlySpan<float> x, long[] shape, float[] buffer, GramSessions gram, ConvGram convGram)
    {
        int k = s.K;
        if (!plan.IsConv)
        {
            long rows = x.Length / k;
            foreach ((long r0, int m) in RowChunks(rows, (int)shape[0], k))
            {
                Span<float> chunk = buffer.AsSpan(0, m * k);
                x.Slice((int)(r0 * k), m * k).CopyTo(chunk);
                gram.AccumulateRows(buffer, m, k, s.H(0), s.Sum.AsSpan(0, k));
            }
            s.Columns += rows;
            return;
        }
        int n = (int)shape[0], c = (int)shape[1], h = (int)shape[2], w = (int)shape[3];
        ConvOutput g = plan.Conv!.Output(h, w);
        int cPerGroup = c / plan.Groups;
        int positions = g.OutH * g.OutW;
        if (convGram == ConvGram.Shifted && ShiftedConvGram.TryCreate(plan.Conv!, g, h, w, cPerGroup) is { } shifted)
        {
            for (int group = 0; group < plan.Groups; group++)
            {
                shifted.Accumulate(x, n, c, group, s.H(group), s.Sum.AsSpan(group * k, k), buffer, gram);
            }
            s.Columns += (long)n * positions * plan.Groups;
            return;
        }
        int imagesPerChunk = ChunkImages((long)k * positions);
        if ((long)k * positions > ChunkFloats)
        {
            throw Errors.InvalidInput(
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
                    Im2Col.Write(source, cPerGroup, h, w, plan.Conv!, g, buffer, m, image * positions);
                }
                gram.AccumulateColumns(buffer, k, m, s.H(group), s.Sum.AsSpan(group * k, k));
            }
        }
        s.Columns += (long)n * positions * plan.Groups;
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
                    throw Errors.InvalidInput(
                        $"Layer '{s.Layer.Name}' receives NaN or infinite input values on the calibration images; check the images and their preprocessing.");
                }
            }
        }
    }
}

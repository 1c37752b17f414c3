using System.Diagnostics;
using BitBudget.Evaluation;
using BitBudget.Graph;
using BitBudget.Runtime;
using Microsoft.ML.OnnxRuntime;

namespace BitBudget.Clado;

/// <summary>
/// The fast path. For every searched layer k, its cone — the layer's node and every node that depends on it — is a sub-model
/// baked with k's quantized weights (one per scheme). Per batch, one full-precision run exposes every tensor a cone reads.
/// A single (u, s) runs only u's cone, and that run also exposes the perturbed tensors later cones read: it is the trunk from
/// which each pair (u, s; v, t) runs only v's cone, reading u's perturbed tensors where u's cone made them and the
/// full-precision ones elsewhere. Executed FLOPs are the exact-reuse limit: nothing that does not depend on a perturbed
/// layer is recomputed, and nothing is run twice.
/// </summary>
internal sealed class SegmentEvaluator : IEvaluator
{
    readonly MeasurementPlan _plan;
    readonly InferenceSession _full;                // whole model, FP, exposing every tensor a cone reads
    readonly InferenceSession[][] _cone;            // [k][s]: cone of layer k at scheme s, exposing what later cones read from it
    readonly int[][] _coneNodes;
    readonly string[][] _coneInputs;                // [k]: tensors cone k reads from outside itself
    readonly string[] _fullOutputs;
    readonly string[][] _coneOutputs;               // [k]: logits, then tensors of cone k that later cones read
    readonly Dictionary<string, int>[] _coneIndex;
    readonly Dictionary<string, int> _fullIndex;
    readonly double _fullMacs;
    readonly double[] _coneMacs;
    readonly int[] _fpLastReader;                   // [i of _fullOutputs]: the last cone that reads it (-1: the logits)
    readonly int[][] _trunkLastReader;              // [k][i of _coneOutputs[k]]: the last later cone that reads it
    readonly RunOptions _runOptions = new();
    readonly SharedWeights? _weights;               // the float weights every session reads unchanged, held once
    int _count;

    /// <summary>
    /// Benchmark switch: BITBUDGET_CLADO_SHARED_WEIGHTS=off gives every session its own copy of the weights (the behaviour
    /// before sharing), so `bench memory` can measure both side by side. Results are identical either way.
    /// </summary>
    internal static bool ShareWeightsByDefault => !string.Equals(Environment.GetEnvironmentVariable("BITBUDGET_CLADO_SHARED_WEIGHTS"), "off", StringComparison.OrdinalIgnoreCase);

    /// <summary>Float weights smaller than this stay in each session's model (sharing them saves nothing worth an OrtValue each).</summary>
    const long MinSharedElements = 1024;

    public SegmentEvaluator(MeasurementPlan plan)
    {
        _plan = plan;
        // Many sessions run one after another: idle pools must not spin against the next one.
        RuntimeOptions runtime = plan.Runtime with { AllowSpinning = false, MemoryArena = false };
        var slicer = new ModelSlicer(plan.Base);
        int L = plan.L, end = slicer.NodeCount;
        int[] at = plan.Searched.Select(l => slicer.IndexOf(l.NodeNames[0])).ToArray();
        for (int k = 1; k < L; k++)
        {
            if (at[k] <= at[k - 1]) { throw Errors.InvalidInput($"Searched layers '{plan.Searched[k - 1].Name}' and '{plan.Searched[k].Name}' are not in node order."); }
        }
        _coneNodes = at.Select(slicer.Cone).ToArray();
        _coneInputs = _coneNodes.Select(slicer.ExternalInputs).ToArray();
        string output = plan.Base.OutputName;
        string input = plan.Base.InputName;

        _fullMacs = plan.MacsOf(slicer, [.. Enumerable.Range(0, end)]);
        _coneMacs = _coneNodes.Select(nodes => (double)plan.MacsOf(slicer, nodes)).ToArray();

        _fullOutputs = [output, .. _coneInputs.SelectMany(t => t).Where(t => t != input).Distinct()];
        _fullIndex = Index(_fullOutputs);
        _coneOutputs = new string[L][];
        _coneIndex = new Dictionary<string, int>[L];
        for (int k = 0; k < L; k++)
        {
            _coneOutputs[k] = [output, .. _coneInputs.Skip(k + 1).SelectMany(t => t).Where(t => slicer.ProducedBy(t, _coneNodes[k])).Distinct()];
            _coneIndex[k] = Index(_coneOutputs[k]);
        }

        var sessions = new List<IDisposable>();
        // Every cone carries the base model's float weights of all its layers but the perturbed one: without sharing, 60 cone
        // sessions of ResNet-18 hold ~60 copies of up to 45 MB each.
        _weights = plan.Options.ShareWeights ? new SharedWeights(plan.Base.FloatInitializers(MinSharedElements)) : null;
        try
        {
            int total = 1 + L * plan.S;
            // What the sessions cost is measured, not assumed equal: the resident set before the first, after it (the full pass
            // holds the whole model's states plan), and then per cone (its perturbed layer and buffers; shared weights excluded).
            // Collected first: what the stage before left behind (GPTQ's released factors) is garbage the sessions would sit on.
            long beforeSessions = ProcessMemory.RssAfterCollecting(), afterFirst = 0;
            long liveAfterCollect = GC.GetTotalMemory(false);
            MemoryTrace.Mark("CLADO sessions: start");
            // The weights a slice shares: the base's, unchanged, except those of the layer about to be perturbed. They leave the
            // slice before it is copied per scheme, so neither the copies nor ORT's graph hold them.
            string[] Share(OnnxModel slice, LayerInfo? perturbed)
            {
                if (_weights is null) { return []; }
                string[] names = [.. slice.FloatInitializersSameAs(plan.Base, MinSharedElements)
                    .Where(n => _weights.Contains(n) && n != perturbed?.WeightName && n != perturbed?.BiasName)];
                slice.MoveToExternalData(names, SharedWeights.FileName, _weights.Location);
                return names;
            }
            InferenceSession Open(OnnxModel model, string[] shared, string what)
            {
                var s = OrtSessions.Create(model.ToBytes(), runtime, what, _weights, shared);
                sessions.Add(s);
                // Every session holds what it does not share (its perturbed layer, kernels' buffers): on large models that can
                // exceed the budget, and loading the rest would only end in a kernel kill. Garbage (the sliced models) is collected
                // once it takes an eighth of the budget or the process is within a sixteenth of it (ResNet-18 after GPTQ went from
                // 2.57 to 3.17 GB while loading its 61 sessions, on garbage), and before giving up.
                long resident = ProcessMemory.CurrentRss;
                if (GC.GetTotalMemory(false) - liveAfterCollect > plan.Runtime.MaxMemory / 8 || resident > plan.Runtime.MaxMemory - ProcessMemory.Headroom(plan.Runtime.MaxMemory))
                {
                    resident = ProcessMemory.RssAfterCollecting();
                    liveAfterCollect = GC.GetTotalMemory(false);
                }
                if (sessions.Count == 1) { afterFirst = resident; }
                MemoryTrace.Mark($"CLADO sessions: {sessions.Count} of {total} ({what})");
                if (plan.Runtime.ImagesPerRun <= 0 && resident > plan.Runtime.MaxMemory)
                {
                    long perCone = PerSessionCost(beforeSessions, afterFirst, resident, sessions.Count);
                    throw Errors.InvalidInput(
                        $"--max-memory {ProcessMemory.Format(plan.Runtime.MaxMemory)} is too small for the CLADO measurement: after {sessions.Count} of its {total} sessions " +
                        $"{ProcessMemory.Format(resident)} is in use (measured: {ProcessMemory.Format(Math.Max(0, afterFirst - beforeSessions))} for the first, " +
                        $"{ProcessMemory.Format(perCone)} per cone session beyond the weights they share); " +
                        $"at least about {ProcessMemory.Format(WouldFit(resident, perCone, sessions.Count, total))} would fit.");
                }
                return s;
            }
            OnnxModel full = slicer.Slice(0, end, _fullOutputs.Skip(1));
            _full = Open(full, Share(full, null), "CLADO full-precision states");
            _cone = new InferenceSession[L][];
            for (int k = 0; k < L; k++)
            {
                LayerInfo layer = plan.Searched[k];
                OnnxModel cone = slicer.SliceNodes(_coneNodes[k], _coneOutputs[k].Skip(1));
                string[] shared = Share(cone, layer);
                _cone[k] = plan.Bits.Select(b => Open(plan.Perturb(cone, layer, b), shared, $"CLADO cone of {layer.Name} at {b} bits")).ToArray();
            }
            _weights?.SessionsBuilt();
        }
        catch
        {
            foreach (var s in sessions) { s.Dispose(); }
            _weights?.Dispose();
            _runOptions.Dispose();
            throw;
        }

        // Reference counts: a full-precision state lives until the last cone reading it has run for every unit that needs it,
        // a perturbed (trunk) tensor until the last cone of its unit's pairs that reads it.
        _fpLastReader = _fullOutputs.Select(t => t == output ? -1 : Enumerable.Range(0, L).Last(k => _coneInputs[k].Contains(t))).ToArray();
        _trunkLastReader = new int[L][];
        for (int k = 0; k < L; k++)
        {
            _trunkLastReader[k] = _coneOutputs[k].Select(t => t == output ? k : Enumerable.Range(k + 1, L - k - 1).Last(v => _coneInputs[v].Contains(t))).ToArray();
        }

        // The per-image plan: what one image costs at the worst moment of each unit, from the measured tensor sizes. The probe
        // opens the whole model once more: the sliced models loading left behind are collected first (ResNet-18: 0.38 GB of
        // garbage, on which the probe set the command's peak).
        ProcessMemory.RssAfterCollecting();
        TensorFootprint footprint = new TensorTap(plan.Base, runtime).Footprint(plan.Input.Data);
        long Bytes(string t) => footprint.Of(t);
        long fullPeak = slicer.PeakLive(Bytes, null, _fullOutputs.ToHashSet(StringComparer.Ordinal));
        long[] conePeak = Enumerable.Range(0, L).Select(k => slicer.PeakLive(Bytes, _coneNodes[k], _coneOutputs[k].ToHashSet(StringComparer.Ordinal))).ToArray();
        long worst = fullPeak, worstNoRefcount = fullPeak;
        long allFp = _fullOutputs.Sum(Bytes);
        for (int u = 0; u < L; u++)
        {
            long fp = _fullOutputs.Where((t, i) => _fpLastReader[i] >= u || i == 0).Sum(Bytes);
            long trunk = _coneOutputs[u].Sum(Bytes);
            long cones = conePeak.Skip(u).Max();
            worst = Math.Max(worst, fp + trunk + cones);
            worstNoRefcount = Math.Max(worstNoRefcount, allFp + trunk + cones);
        }
        PlannedBytesPerImage = (long)(TensorFootprint.Slack * (footprint.InputBytes + worst));
        UnreferencedBytesPerImage = (long)(TensorFootprint.Slack * (footprint.InputBytes + worstNoRefcount));
        MemoryTrace.Mark("CLADO footprint probed");
        // What is left to size the micro-batches from, less a sixteenth of the budget: ResNet-18's pairs of its first layer took
        // 0.68 GB beside 2.51 GB resident at 21 images per run where the plan (footprint × 1.25) said 0.63 GB, and peaked at
        // 3,193,004 kB of a 3 GiB budget (allocator slack and ORT's own buffers, which the tensor footprint does not count).
        ResidentBeforeMeasuring = ProcessMemory.RssAfterCollecting();
        MemoryTrace.Mark("CLADO sessions ready, collected");
        ImagesPerRun = plan.Runtime.ImagesPerRun > 0 ? Math.Min(plan.Runtime.ImagesPerRun, plan.Options.BatchSize)
            : MemoryBudget.ImagesPerRun(plan.Runtime, PlannedBytesPerImage, plan.Options.BatchSize, "the CLADO measurement", ResidentBeforeMeasuring,
                reserveBytes: ProcessMemory.Headroom(plan.Runtime.MaxMemory));

        static Dictionary<string, int> Index(string[] names) => names.Select((n, i) => (n, i)).ToDictionary(t => t.n, t => t.i, StringComparer.Ordinal);
    }

    public double ExecutedMacs { get; private set; }

    public int ImagesPerRun { get; }

    public long PlannedBytesPerImage { get; }

    public long UnreferencedBytesPerImage { get; }

    public long ResidentBeforeMeasuring { get; }

    /// <summary>
    /// One batch, micro-batch by micro-batch. When the whole batch fits one run, one full-precision pass serves every unit;
    /// otherwise the units go in groups of one layer and each group recomputes the full-precision states of its micro-batch
    /// (one forward per layer and micro-batch: a few percent of the work, and it keeps per-layer resume points).
    /// </summary>
    public void MeasureBatch(int batch, IReadOnlyList<(int U, int S)> units, bool needReference, bool[]? kept, UnitSink sink, CancellationToken cancel)
    {
        (int start, int count) = _plan.BatchRange(batch);
        int micro = Math.Min(ImagesPerRun, count);
        var groups = micro >= count || units.Count == 0 ? [units] : units.GroupBy(x => x.U).Select(g => (IReadOnlyList<(int U, int S)>)[.. g]).ToList();
        foreach (var group in groups)
        {
            int first = group.Count > 0 ? group.Min(x => x.U) : _plan.L;
            var sums = group.Select(x => new double[1 + _plan.S * (_plan.L - 1 - x.U)]).ToArray();
            void Commit(int g)
            {
                (int u, int s) = group[g];
                var rows = new List<(int, int, int, int, double)>(sums[g].Length) { (u, s, -1, 0, sums[g][0] / count) };
                int r = 1;
                for (int v = u + 1; v < _plan.L; v++)
                {
                    for (int t = 0; t < _plan.S; t++, r++) { if (Runs(kept, u, s, v, t)) { rows.Add((u, s, v, t, sums[g][r] / count)); } }
                }
                sink.Unit(u, s, rows);
            }
            void Reference(double sum)
            {
                if (!needReference) { return; }
                sink.Reference(sum / count);
                needReference = false;
            }
            if (micro >= count)
            {
                // One run holds the whole batch: every loss is final as soon as it is measured, so each unit is stored at once.
                RunMicroBatch(start, count, group, first, kept, sums, sink, Reference, Commit, cancel);
                continue;
            }
            double referenceSum = 0;
            for (int m = 0; m < count; m += micro)
            {
                cancel.ThrowIfCancellationRequested();
                referenceSum += RunMicroBatch(start + m, Math.Min(micro, count - m), group, first, kept, sums, sink, null, null, cancel);
            }
            Reference(referenceSum);
            for (int g = 0; g < group.Count; g++) { Commit(g); }
        }
    }

    /// <summary>Whether unit (u, s) runs its pair with (v, t).</summary>
    bool Runs(bool[]? kept, int u, int s, int v, int t) => kept is null || (kept[u * _plan.S + s] && kept[v * _plan.S + t]);

    double RunMicroBatch(int start, int count, IReadOnlyList<(int U, int S)> group, int first, bool[]? kept, double[][] sums, UnitSink sink,
        Action<double>? referenceDone, Action<int>? unitDone, CancellationToken cancel)
    {
        _count = count;
        var data = _plan.Input.Data;
        long[] shape = [count, .. data.SampleShape.Select(d => (long)d)];
        using var input = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance,
            System.Runtime.InteropServices.MemoryMarshal.AsMemory(data.Batch(start, count)), shape);
        // Only the states cones ≥ first read (and the logits).
        string[] wanted = [.. _fullOutputs.Where((t, i) => i == 0 || _fpLastReader[i] >= first)];
        using var fpRun = Run(_full, [_plan.Base.InputName], [input], wanted, _fullMacs);
        var fp = new Dictionary<string, OrtValue>(wanted.Length, StringComparer.Ordinal);
        for (int i = 0; i < wanted.Length; i++) { fp[wanted[i]] = fpRun[i]; }
        OrtValue Fp(string tensor) => fp.TryGetValue(tensor, out OrtValue? v) ? v : input;
        ReadOnlySpan<int> labels = _plan.Labels(start, count);
        float[] reference = fpRun[0].GetTensorDataAsSpan<float>().ToArray();
        double referenceSum = _plan.LossSum(reference, count, labels, reference);
        MemoryTrace.Mark($"CLADO full-precision states of {count} images");
        fpRun[0].Dispose();
        referenceDone?.Invoke(referenceSum);

        for (int g = 0; g < group.Count; g++)
        {
            (int u, int s) = group[g];
            double[] sum = sums[g];
            using var trunkRun = Run(_cone[u][s], _coneInputs[u], [.. _coneInputs[u].Select(Fp)], _coneOutputs[u], _coneMacs[u]);
            sum[0] += _plan.LossSum(trunkRun[0].GetTensorDataAsSpan<float>(), count, labels, reference);
            trunkRun[0].Dispose();
            int r = 1;
            long evaluations = 1;
            for (int v = u + 1; v < _plan.L; v++)
            {
                cancel.ThrowIfCancellationRequested();
                // What u's cone made carries u's perturbation; everything else is the full-precision value.
                OrtValue[]? inputs = null;
                for (int t = 0; t < _plan.S; t++, r++)
                {
                    if (!Runs(kept, u, s, v, t)) { continue; }
                    inputs ??= [.. _coneInputs[v].Select(x => _coneIndex[u].TryGetValue(x, out int i) ? trunkRun[i] : Fp(x))];
                    using var logits = Run(_cone[v][t], _coneInputs[v], inputs, [_plan.Base.OutputName], _coneMacs[v]);
                    sum[r] += _plan.LossSum(logits[0].GetTensorDataAsSpan<float>(), count, labels, reference);
                    evaluations++;
                }
                // Perturbed tensors no later cone reads are freed now (disposing twice is a no-op for the collection).
                for (int i = 1; i < _coneOutputs[u].Length; i++) { if (_trunkLastReader[u][i] == v) { trunkRun[i].Dispose(); } }
            }
            unitDone?.Invoke(g);
            sink.Progress(evaluations, count);
            MemoryTrace.Mark($"CLADO unit ({u}, {s}) of {count} images: {evaluations} evaluations");
            // The unit's trunk and cone tensors are freed: without the arena they went to malloc, whose heap would keep them
            // resident (see NativeHeap); hand the free pages back once per unit, not once per tensor.
            NativeHeap.Trim();
            // The same for the managed side: the measurement is planned up to the budget, so garbage must not push it over.
            ProcessMemory.CollectWhenNear(_plan.Runtime.MaxMemory);
            // Full-precision states whose last reader was u's cone are dead once every unit of layer u has run.
            if (g + 1 == group.Count || group[g + 1].U != u)
            {
                for (int i = 1; i < wanted.Length; i++) { if (_fpLastReader[Array.IndexOf(_fullOutputs, wanted[i])] <= u) { fpRun[i].Dispose(); } }
            }
        }
        return referenceSum;
    }

    IDisposableReadOnlyCollection<OrtValue> Run(InferenceSession session, string[] inputs, OrtValue[] values, string[] outputs, double macs)
    {
        ExecutedMacs += macs * _count;
        try
        {
            return session.Run(_runOptions, inputs, values, outputs);
        }
        catch (OnnxRuntimeException e)
        {
            throw Errors.Runtime($"ONNX Runtime failed in a CLADO cone: {OrtSessions.OneLine(e.Message)}", e);
        }
    }

    public void Dispose()
    {
        _full.Dispose();
        foreach (var row in _cone) { if (row is not null) { foreach (var s in row) { s.Dispose(); } } }
        _weights?.Dispose();   // after the sessions that read them
        _runOptions.Dispose();
        NativeHeap.Trim();
    }

    /// <summary>
    /// Bytes one more cone session costs, from what the cones loaded so far added to the resident set after the first (full-precision)
    /// session; with only the first loaded, what it added.
    /// </summary>
    internal static long PerSessionCost(long beforeSessions, long afterFirst, long resident, int loaded) =>
        loaded > 1 ? Math.Max(0, resident - afterFirst) / (loaded - 1) : Math.Max(0, resident - beforeSessions);

    /// <summary>The budget loading every one of <paramref name="total"/> sessions would need: what is resident now and the measured cost of each one still to load.</summary>
    internal static long WouldFit(long resident, long perSession, int loaded, int total) => resident + perSession * Math.Max(0, total - loaded);
}

/// <summary>What MACs cost when the whole base model runs on one batch in ORT: the yardstick of the time ratio.</summary>
internal static class RawThroughput
{
    const int ProbeRuns = 9;

    public static TimeSpan TimeFor(MeasurementPlan plan, RuntimeOptions runtime, double macs, int imagesPerRun)
    {
        (int start, int count) = plan.BatchRange(0);
        count = Math.Max(1, Math.Min(count, imagesPerRun));   // the probe's batch is one micro-batch, as the measurement ran
        var data = plan.Input.Data;
        using var session = OrtSessions.Create(plan.Base.ToBytes(), runtime, "CLADO throughput probe");
        using var input = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance,
            System.Runtime.InteropServices.MemoryMarshal.AsMemory(data.Batch(start, count)), [count, .. data.SampleShape.Select(d => (long)d)]);
        using var runOptions = new RunOptions();
        var times = new List<double>();
        // The median of nine runs, not three: on a shared 2-core machine single runs of one session differ by ±15 %
        // (`bench ort-settings`), and one slow run of three moved the ratio it divides by as much as the target's margin.
        for (int i = 0; i < 1 + ProbeRuns; i++)
        {
            var watch = Stopwatch.StartNew();
            using var outputs = session.Run(runOptions, [plan.Base.InputName], [input], [plan.Base.OutputName]);
            if (i > 0) { times.Add(watch.Elapsed.TotalSeconds); }   // the first run warms up
        }
        times.Sort();
        double perMac = times[times.Count / 2] / (count * (double)plan.FullMacs);
        return TimeSpan.FromSeconds(macs * perMac);
    }
}

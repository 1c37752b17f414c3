using System.Diagnostics;
using BitBudget.Graph;
using BitBudget.Runtime;
using Microsoft.ML.OnnxRuntime;

namespace BitBudget.Sensitivity;

/// <summary>
/// The fast path. The model is cut before every searched layer. Per batch, one full-precision run exposes the state (the
/// live tensors) at every cut. A single (u, s) runs only the suffix from u with u quantized, and that same run exposes the
/// perturbed state at every later cut: it is the trunk from which each pair (u, s; v, t) runs only the suffix from v.
/// Executed FLOPs are the exact-reuse limit: nothing before a perturbed layer is recomputed, nothing is run twice.
/// </summary>
internal sealed class SegmentEvaluator : IEvaluator
{
    readonly MeasurementPlan _plan;
    readonly InferenceSession _full;                // whole model, FP, exposing every cut's state
    readonly InferenceSession[][] _suffix;          // [k][s]: cut k → logits with layer k at scheme s, exposing later cuts' states
    readonly string[][] _live;                      // tensors live at cut k (the suffix inputs)
    readonly string[] _fullOutputs;
    readonly string[][] _suffixOutputs;             // [k]: logits, then the later cuts' tensors produced inside the suffix
    readonly Dictionary<string, int>[] _suffixIndex;
    readonly Dictionary<string, int> _fullIndex;
    readonly int[] _cut;
    readonly ModelSlicer _slicer;
    readonly double _fullMacs;
    readonly double[] _suffixMacs;
    readonly RunOptions _runOptions = new();
    IDisposableReadOnlyCollection<OrtValue>? _fpOutputs;
    OrtValue? _input;
    float[]? _referenceLogits;
    int _start, _count;

    public SegmentEvaluator(MeasurementPlan plan)
    {
        _plan = plan;
        // Many sessions run one after another: idle pools must not spin against the next one.
        RuntimeOptions runtime = plan.Runtime with { AllowSpinning = false };
        _slicer = new ModelSlicer(plan.Base);
        int L = plan.L, S = plan.S, end = _slicer.NodeCount;
        _cut = plan.Searched.Select(l => _slicer.IndexOf(l.NodeNames[0])).ToArray();
        for (int k = 1; k < L; k++)
        {
            if (_cut[k] <= _cut[k - 1]) { throw new BitBudgetException(ErrorKind.InvalidInput, $"Searched layers '{plan.Searched[k - 1].Name}' and '{plan.Searched[k].Name}' are not in node order."); }
        }
        _live = _cut.Select(_slicer.LiveAt).ToArray();
        string output = plan.Base.OutputName;

        // MACs of a node range: the quantizable layers whose node lies in it (other operators are negligible).
        int[] layerAt = plan.Input.Layers.Select(l => _slicer.IndexOf(l.NodeNames[0])).ToArray();
        double Macs(int from) => plan.Input.Layers.Where((l, i) => layerAt[i] >= from).Sum(l => (double)l.MacsPerImage);
        _fullMacs = Macs(0);
        _suffixMacs = _cut.Select(Macs).ToArray();

        _fullOutputs = [output, .. _live.SelectMany(t => t).Where(t => _slicer.ProducedIn(t, 0, end)).Distinct()];
        _fullIndex = Index(_fullOutputs);
        _suffixOutputs = new string[L][];
        _suffixIndex = new Dictionary<string, int>[L];
        for (int k = 0; k < L; k++)
        {
            _suffixOutputs[k] = [output, .. _live.Skip(k + 1).SelectMany(t => t).Where(t => _slicer.ProducedIn(t, _cut[k], end)).Distinct()];
            _suffixIndex[k] = Index(_suffixOutputs[k]);
        }

        var sessions = new List<IDisposable>();
        try
        {
            InferenceSession Open(OnnxModel model, string what)
            {
                var s = OrtSessions.Create(model.ToBytes(), runtime, what);
                sessions.Add(s);
                return s;
            }
            _full = Open(_slicer.Slice(0, end, _fullOutputs.Skip(1)), "CLADO full-precision states");
            _suffix = new InferenceSession[L][];
            for (int k = 0; k < L; k++)
            {
                LayerInfo layer = plan.Searched[k];
                OnnxModel suffix = _slicer.Slice(_cut[k], end, _suffixOutputs[k].Skip(1));
                _suffix[k] = plan.Bits.Select(b => Open(plan.Perturb(suffix, layer, b), $"CLADO suffix of {layer.Name} at {b} bits")).ToArray();
            }
        }
        catch
        {
            foreach (var s in sessions) { s.Dispose(); }
            _runOptions.Dispose();
            throw;
        }

        static Dictionary<string, int> Index(string[] names) => names.Select((n, i) => (n, i)).ToDictionary(t => t.n, t => t.i, StringComparer.Ordinal);
    }

    public double ExecutedMacs { get; private set; }

    public double ReferenceLoss { get; private set; }

    public void BeginBatch(int batch)
    {
        (_start, _count) = _plan.BatchRange(batch);
        var data = _plan.Input.Data;
        long[] shape = [_count, .. data.SampleShape.Select(d => (long)d)];
        _input = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance,
            System.Runtime.InteropServices.MemoryMarshal.AsMemory(data.Batch(_start, _count)), shape);
        _fpOutputs = Run(_full, [_plan.Base.InputName], [_input], _fullOutputs, _fullMacs);
        _referenceLogits = _fpOutputs[0].GetTensorDataAsSpan<float>().ToArray();
        ReferenceLoss = _plan.Loss(_referenceLogits, _plan.Input.Data.BatchLabels(_start, _count), _referenceLogits);
    }

    /// <summary>The full-precision state at cut <paramref name="k"/>.</summary>
    OrtValue[] FpState(int k) => [.. _live[k].Select(t => _fullIndex.TryGetValue(t, out int i) ? _fpOutputs![i] : _input!)];

    public List<(int U, int Su, int V, int Sv, double Loss)> MeasureUnit(int u, int s, CancellationToken cancel)
    {
        var rows = new List<(int, int, int, int, double)>(1 + _plan.S * (_plan.L - 1 - u));
        OrtValue[] stateU = FpState(u);
        using var trunk = Run(_suffix[u][s], _live[u], stateU, _suffixOutputs[u], _suffixMacs[u]);
        rows.Add((u, s, -1, 0, Loss(trunk[0])));
        for (int v = u + 1; v < _plan.L; v++)
        {
            cancel.ThrowIfCancellationRequested();
            // Tensors of cut v made after u carry u's perturbation; older ones (e.g. a skip from before u) are unperturbed.
            OrtValue[] stateV = [.. _live[v].Select(t => _suffixIndex[u].TryGetValue(t, out int i) ? trunk[i] : stateU[Array.IndexOf(_live[u], t)])];
            for (int t = 0; t < _plan.S; t++)
            {
                using var logits = Run(_suffix[v][t], _live[v], stateV, [_plan.Base.OutputName], _suffixMacs[v]);
                rows.Add((u, s, v, t, Loss(logits[0])));
            }
        }
        return rows;
    }

    double Loss(OrtValue logits) => _plan.Loss(logits.GetTensorDataAsSpan<float>(), _plan.Input.Data.BatchLabels(_start, _count), _referenceLogits);

    IDisposableReadOnlyCollection<OrtValue> Run(InferenceSession session, string[] inputs, OrtValue[] values, string[] outputs, double macs)
    {
        ExecutedMacs += macs * _count;
        try
        {
            return session.Run(_runOptions, inputs, values, outputs);
        }
        catch (OnnxRuntimeException e)
        {
            throw new BitBudgetException(ErrorKind.Runtime, $"ONNX Runtime failed in a CLADO suffix: {OrtSessions.OneLine(e.Message)}", e);
        }
    }

    public void EndBatch()
    {
        _fpOutputs?.Dispose();
        _fpOutputs = null;
        _input?.Dispose();
        _input = null;
    }

    public void Dispose()
    {
        EndBatch();
        _full.Dispose();
        foreach (var row in _suffix) { if (row is not null) { foreach (var s in row) { s.Dispose(); } } }
        _runOptions.Dispose();
    }
}

/// <summary>What MACs cost when the whole base model runs on one batch in ORT: the yardstick of the time ratio.</summary>
internal static class RawThroughput
{
    public static TimeSpan TimeFor(MeasurementPlan plan, RuntimeOptions runtime, double macs)
    {
        (int start, int count) = plan.BatchRange(0);
        var data = plan.Input.Data;
        using var session = OrtSessions.Create(plan.Base.ToBytes(), runtime, "CLADO throughput probe");
        using var input = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance,
            System.Runtime.InteropServices.MemoryMarshal.AsMemory(data.Batch(start, count)), [count, .. data.SampleShape.Select(d => (long)d)]);
        using var runOptions = new RunOptions();
        var times = new List<double>();
        for (int i = 0; i < 4; i++)
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

using System.Diagnostics;
using BitBudget.Graph;
using BitBudget.Runtime;
using Microsoft.ML.OnnxRuntime;

namespace BitBudget.Sensitivity;

/// <summary>
/// The fast path: sessions for the model cut before every searched layer. Per batch, the full-precision states at every cut
/// are computed once; singles run one suffix; a pair's trunk (state after the earlier layer's perturbed segment, advanced
/// segment by segment in full precision) serves every later layer.
/// </summary>
internal sealed class SegmentEvaluator : IEvaluator
{
    readonly MeasurementPlan _plan;
    readonly RuntimeOptions _runtime;
    readonly InferenceSession? _prefix;
    readonly InferenceSession[] _segmentFp;          // [k] for k < L−1: cut k → cut k+1, all float
    readonly InferenceSession[][] _segmentQ;         // [k][s]: same range, layer k quantized at scheme s
    readonly InferenceSession[][] _suffix;           // [k][s]: cut k → logits, layer k quantized at scheme s
    readonly InferenceSession _suffixFp;             // last cut → logits, all float
    readonly string[][] _live;                       // tensors live at cut k
    readonly string[] _inputName;
    readonly string[] _outputName;
    readonly double[] _segmentMacs, _suffixMacs;
    readonly double _prefixMacs;
    readonly RunOptions _runOptions = new();
    IDisposableReadOnlyCollection<OrtValue>?[] _states;
    OrtValue? _input;
    float[]? _referenceLogits;
    int _start, _count;

    public SegmentEvaluator(MeasurementPlan plan)
    {
        _plan = plan;
        // Many small sessions run one after another: idle pools must not spin against the next one.
        _runtime = plan.Runtime with { AllowSpinning = false };
        var slicer = new ModelSlicer(plan.Base);
        int L = plan.L, S = plan.S;
        int[] cut = plan.Searched.Select(l => slicer.IndexOf(l.NodeNames[0])).ToArray();
        for (int k = 1; k < L; k++)
        {
            if (cut[k] <= cut[k - 1]) { throw new BitBudgetException(ErrorKind.InvalidInput, $"Searched layers '{plan.Searched[k - 1].Name}' and '{plan.Searched[k].Name}' are not in node order."); }
        }
        _live = cut.Select(slicer.LiveAt).ToArray();
        _inputName = [plan.Base.InputName];
        _outputName = [plan.Base.OutputName];

        // MACs of a node range: the quantizable layers whose node lies in it (other operators are negligible).
        int[] layerAt = plan.Input.Layers.Select(l => slicer.IndexOf(l.NodeNames[0])).ToArray();
        double Macs(int from, int to) => plan.Input.Layers.Where((l, i) => layerAt[i] >= from && layerAt[i] < to).Sum(l => (double)l.MacsPerImage);
        int end = slicer.NodeCount;
        _prefixMacs = Macs(0, cut[0]);
        _segmentMacs = Enumerable.Range(0, L).Select(k => k < L - 1 ? Macs(cut[k], cut[k + 1]) : 0).ToArray();
        _suffixMacs = Enumerable.Range(0, L).Select(k => Macs(cut[k], end)).ToArray();

        var sessions = new List<IDisposable>();
        try
        {
            InferenceSession Open(OnnxModel model, string what)
            {
                var s = OrtSessions.Create(model.ToBytes(), _runtime, what);
                sessions.Add(s);
                return s;
            }
            _prefix = cut[0] > 0 ? Open(slicer.Slice(0, cut[0]), "CLADO prefix") : null;
            _segmentFp = new InferenceSession[L];
            _segmentQ = new InferenceSession[L][];
            _suffix = new InferenceSession[L][];
            for (int k = 0; k < L; k++)
            {
                LayerInfo layer = plan.Searched[k];
                OnnxModel suffix = slicer.Slice(cut[k], end);
                _suffix[k] = plan.Bits.Select(b => Open(plan.Perturb(suffix, layer, b), $"CLADO suffix of {layer.Name} at {b} bits")).ToArray();
                if (k < L - 1)
                {
                    OnnxModel segment = slicer.Slice(cut[k], cut[k + 1]);
                    _segmentFp[k] = Open(segment, $"CLADO segment of {layer.Name}");
                    _segmentQ[k] = plan.Bits.Select(b => Open(plan.Perturb(segment, layer, b), $"CLADO segment of {layer.Name} at {b} bits")).ToArray();
                }
            }
            _suffixFp = Open(slicer.Slice(cut[L - 1], end), "CLADO float suffix");
        }
        catch
        {
            foreach (var s in sessions) { s.Dispose(); }
            _runOptions.Dispose();
            throw;
        }
        _states = new IDisposableReadOnlyCollection<OrtValue>?[L];
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
        if (_prefix is not null)
        {
            _states[0] = Run(_prefix, _inputName, [_input], _live[0], _prefixMacs);
        }
        for (int k = 0; k + 1 < _plan.L; k++)
        {
            _states[k + 1] = Run(_segmentFp[k], _live[k], State(k), _live[k + 1], _segmentMacs[k]);
        }
        using var logits = Run(_suffixFp, _live[^1], State(_plan.L - 1), _outputName, _suffixMacs[^1]);
        _referenceLogits = logits[0].GetTensorDataAsSpan<float>().ToArray();
        ReferenceLoss = _plan.Loss(_referenceLogits, _plan.Input.Data.BatchLabels(_start, _count), _referenceLogits);
    }

    public List<(int U, int Su, int V, int Sv, double Loss)> MeasureUnit(int u, int s, CancellationToken cancel)
    {
        var rows = new List<(int, int, int, int, double)>(1 + _plan.S * (_plan.L - 1 - u)) { (u, s, -1, 0, Suffix(u, s, State(u))) };
        if (u == _plan.L - 1) { return rows; }
        IDisposableReadOnlyCollection<OrtValue> trunk = Run(_segmentQ[u][s], _live[u], State(u), _live[u + 1], _segmentMacs[u]);
        try
        {
            for (int v = u + 1; v < _plan.L; v++)
            {
                cancel.ThrowIfCancellationRequested();
                for (int t = 0; t < _plan.S; t++) { rows.Add((u, s, v, t, Suffix(v, t, trunk))); }
                if (v == _plan.L - 1) { break; }
                var next = Run(_segmentFp[v], _live[v], trunk, _live[v + 1], _segmentMacs[v]);
                trunk.Dispose();
                trunk = next;
            }
        }
        finally
        {
            trunk.Dispose();
        }
        return rows;
    }

    double Suffix(int k, int s, IReadOnlyList<OrtValue> state)
    {
        using var logits = Run(_suffix[k][s], _live[k], state, _outputName, _suffixMacs[k]);
        return _plan.Loss(logits[0].GetTensorDataAsSpan<float>(), _plan.Input.Data.BatchLabels(_start, _count), _referenceLogits);
    }

    IReadOnlyList<OrtValue> State(int k) => k == 0 && _prefix is null ? [_input!] : _states[k]!;

    IDisposableReadOnlyCollection<OrtValue> Run(InferenceSession session, string[] inputs, IReadOnlyList<OrtValue> values, string[] outputs, double macs)
    {
        ExecutedMacs += macs * _count;
        try
        {
            return session.Run(_runOptions, inputs, [.. values], outputs);
        }
        catch (OnnxRuntimeException e)
        {
            throw new BitBudgetException(ErrorKind.Runtime, $"ONNX Runtime failed in a CLADO segment: {OrtSessions.OneLine(e.Message)}", e);
        }
    }

    public void EndBatch()
    {
        for (int k = 0; k < _states.Length; k++) { _states[k]?.Dispose(); _states[k] = null; }
        _input?.Dispose();
        _input = null;
    }

    public TimeSpan? RawThroughputTime(double macs) => RawThroughput.TimeFor(_plan, _plan.Options.Runtime, macs);

    public void Dispose()
    {
        EndBatch();
        _prefix?.Dispose();
        foreach (var s in _segmentFp) { s?.Dispose(); }
        foreach (var row in _segmentQ) { if (row is not null) { foreach (var s in row) { s.Dispose(); } } }
        foreach (var row in _suffix) { if (row is not null) { foreach (var s in row) { s.Dispose(); } } }
        _suffixFp.Dispose();
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

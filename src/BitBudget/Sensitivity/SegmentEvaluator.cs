using System.Diagnostics;
using BitBudget.Graph;
using BitBudget.Runtime;
using Microsoft.ML.OnnxRuntime;

namespace BitBudget.Sensitivity;

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
        var slicer = new ModelSlicer(plan.Base);
        int L = plan.L, end = slicer.NodeCount;
        int[] at = plan.Searched.Select(l => slicer.IndexOf(l.NodeNames[0])).ToArray();
        for (int k = 1; k < L; k++)
        {
            if (at[k] <= at[k - 1]) { throw new BitBudgetException(ErrorKind.InvalidInput, $"Searched layers '{plan.Searched[k - 1].Name}' and '{plan.Searched[k].Name}' are not in node order."); }
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
        try
        {
            InferenceSession Open(OnnxModel model, string what)
            {
                var s = OrtSessions.Create(model.ToBytes(), runtime, what);
                sessions.Add(s);
                return s;
            }
            _full = Open(slicer.Slice(0, end, _fullOutputs.Skip(1)), "CLADO full-precision states");
            _cone = new InferenceSession[L][];
            for (int k = 0; k < L; k++)
            {
                LayerInfo layer = plan.Searched[k];
                OnnxModel cone = slicer.SliceNodes(_coneNodes[k], _coneOutputs[k].Skip(1));
                _cone[k] = plan.Bits.Select(b => Open(plan.Perturb(cone, layer, b), $"CLADO cone of {layer.Name} at {b} bits")).ToArray();
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
        ReferenceLoss = _plan.Loss(_referenceLogits, _plan.Input.Data.BatchLabels(_start, _count), _referenceLogits, (-1, 0, -1, 0));
    }

    OrtValue Fp(string tensor) => _fullIndex.TryGetValue(tensor, out int i) ? _fpOutputs![i] : _input!;

    public List<(int U, int Su, int V, int Sv, double Loss)> MeasureUnit(int u, int s, CancellationToken cancel)
    {
        var rows = new List<(int, int, int, int, double)>(1 + _plan.S * (_plan.L - 1 - u));
        using var trunk = Run(_cone[u][s], _coneInputs[u], [.. _coneInputs[u].Select(Fp)], _coneOutputs[u], _coneMacs[u]);
        rows.Add((u, s, -1, 0, Loss(trunk[0], (u, s, -1, 0))));
        for (int v = u + 1; v < _plan.L; v++)
        {
            cancel.ThrowIfCancellationRequested();
            // What u's cone made carries u's perturbation; everything else is the full-precision value.
            OrtValue[] inputs = [.. _coneInputs[v].Select(t => _coneIndex[u].TryGetValue(t, out int i) ? trunk[i] : Fp(t))];
            for (int t = 0; t < _plan.S; t++)
            {
                using var logits = Run(_cone[v][t], _coneInputs[v], inputs, [_plan.Base.OutputName], _coneMacs[v]);
                rows.Add((u, s, v, t, Loss(logits[0], (u, s, v, t))));
            }
        }
        return rows;
    }

    double Loss(OrtValue logits, (int, int, int, int) at) => _plan.Loss(logits.GetTensorDataAsSpan<float>(), _plan.Input.Data.BatchLabels(_start, _count), _referenceLogits, at);

    IDisposableReadOnlyCollection<OrtValue> Run(InferenceSession session, string[] inputs, OrtValue[] values, string[] outputs, double macs)
    {
        ExecutedMacs += macs * _count;
        try
        {
            return session.Run(_runOptions, inputs, values, outputs);
        }
        catch (OnnxRuntimeException e)
        {
            throw new BitBudgetException(ErrorKind.Runtime, $"ONNX Runtime failed in a CLADO cone: {OrtSessions.OneLine(e.Message)}", e);
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
        foreach (var row in _cone) { if (row is not null) { foreach (var s in row) { s.Dispose(); } } }
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

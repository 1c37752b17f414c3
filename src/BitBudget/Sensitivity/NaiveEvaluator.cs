using BitBudget.Graph;
using BitBudget.Runtime;
using Microsoft.ML.OnnxRuntime;

namespace BitBudget.Sensitivity;

/// <summary>
/// The reference loop of the paper's code: for every single and every pair, a fresh copy of the whole model with those
/// layers quantized, run on the whole batch. Kept for verification (<c>--naive</c>) and as the benchmark's baseline.
/// </summary>
internal sealed class NaiveEvaluator(MeasurementPlan plan) : IEvaluator
{
    readonly RunOptions _runOptions = new();
    OrtValue? _input;
    float[]? _referenceLogits;
    int _start, _count;

    public double ExecutedMacs { get; private set; }

    public double ReferenceLoss { get; private set; }

    public void BeginBatch(int batch)
    {
        (_start, _count) = plan.BatchRange(batch);
        var data = plan.Input.Data;
        _input = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance,
            System.Runtime.InteropServices.MemoryMarshal.AsMemory(data.Batch(_start, _count)), [_count, .. data.SampleShape.Select(d => (long)d)]);
        _referenceLogits = Logits(plan.Base);
        ReferenceLoss = plan.Loss(_referenceLogits, data.BatchLabels(_start, _count), _referenceLogits, (-1, 0, -1, 0));
    }

    public List<(int U, int Su, int V, int Sv, double Loss)> MeasureUnit(int u, int s, CancellationToken cancel)
    {
        OnnxModel single = plan.Perturb(plan.Base, plan.Searched[u], plan.Bits[s]);
        var rows = new List<(int, int, int, int, double)> { (u, s, -1, 0, Loss(single, (u, s, -1, 0))) };
        for (int v = u + 1; v < plan.L; v++)
        {
            for (int t = 0; t < plan.S; t++)
            {
                cancel.ThrowIfCancellationRequested();
                rows.Add((u, s, v, t, Loss(plan.Perturb(single, plan.Searched[v], plan.Bits[t]), (u, s, v, t))));
            }
        }
        return rows;
    }

    double Loss(OnnxModel model, (int, int, int, int) at) => plan.Loss(Logits(model), plan.Input.Data.BatchLabels(_start, _count), _referenceLogits, at);

    float[] Logits(OnnxModel model)
    {
        using var session = OrtSessions.Create(model.ToBytes(), plan.Runtime, "CLADO reference model");
        ExecutedMacs += (double)plan.FullMacs * _count;
        using var outputs = session.Run(_runOptions, [plan.Base.InputName], [_input!], [plan.Base.OutputName]);
        return outputs[0].GetTensorDataAsSpan<float>().ToArray();
    }

    public void EndBatch()
    {
        _input?.Dispose();
        _input = null;
    }

    public void Dispose()
    {
        EndBatch();
        _runOptions.Dispose();
    }
}

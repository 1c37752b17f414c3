using BitBudget.Graph;
using BitBudget.Runtime;
using Microsoft.ML.OnnxRuntime;

namespace BitBudget.Clado;

/// <summary>
/// The reference loop of the paper's code: for every single and every pair, a fresh copy of the whole model with those
/// layers quantized, run on the whole batch (in micro-batches that fit the memory budget). Kept for verification
/// (<c>--naive</c>) and as the benchmark's baseline.
/// </summary>
internal sealed class NaiveEvaluator : IEvaluator
{
    readonly MeasurementPlan _plan;
    readonly RunOptions _runOptions = new();

    public NaiveEvaluator(MeasurementPlan plan)
    {
        _plan = plan;
        var footprint = new Evaluation.TensorTap(plan.Base, plan.Runtime).Footprint(plan.Input.Data);
        PlannedBytesPerImage = UnreferencedBytesPerImage = footprint.RunBytes([plan.Base.OutputName]);
        ResidentBeforeMeasuring = ProcessMemory.CurrentRss;
        ImagesPerRun = plan.Runtime.ImagesPerRun > 0 ? Math.Min(plan.Runtime.ImagesPerRun, plan.Options.BatchSize)
            : MemoryBudget.ImagesPerRun(plan.Runtime, PlannedBytesPerImage, plan.Options.BatchSize, "the CLADO measurement", ResidentBeforeMeasuring);
    }

    public double ExecutedMacs { get; private set; }

    public int ImagesPerRun { get; }

    public long PlannedBytesPerImage { get; }

    public long UnreferencedBytesPerImage { get; }

    public long ResidentBeforeMeasuring { get; }

    public void MeasureBatch(int batch, IReadOnlyList<(int U, int S)> units, bool needReference, UnitSink sink, CancellationToken cancel)
    {
        (int start, int count) = _plan.BatchRange(batch);
        float[] reference = Logits(_plan.Base, start, count);
        if (needReference) { sink.Reference(Loss(reference, start, count, reference)); }
        foreach ((int u, int s) in units)
        {
            OnnxModel single = _plan.Perturb(_plan.Base, _plan.Searched[u], _plan.Bits[s]);
            var rows = new List<(int, int, int, int, double)> { (u, s, -1, 0, Loss(Logits(single, start, count), start, count, reference)) };
            for (int v = u + 1; v < _plan.L; v++)
            {
                for (int t = 0; t < _plan.S; t++)
                {
                    cancel.ThrowIfCancellationRequested();
                    rows.Add((u, s, v, t, Loss(Logits(_plan.Perturb(single, _plan.Searched[v], _plan.Bits[t]), start, count), start, count, reference)));
                }
            }
            sink.Progress(rows.Count, count);
            sink.Unit(u, s, rows);
        }
    }

    double Loss(float[] outputs, int start, int count, float[] reference) =>
        _plan.LossSum(outputs, count, _plan.Labels(start, count), reference) / count;

    /// <summary>The outputs of the whole batch (small: images × classes), computed micro-batch by micro-batch.</summary>
    float[] Logits(OnnxModel model, int start, int count)
    {
        using var session = OrtSessions.Create(model.ToBytes(), _plan.Runtime, "CLADO reference model");
        var data = _plan.Input.Data;
        float[]? all = null;
        for (int m = 0; m < count; m += ImagesPerRun)
        {
            int n = Math.Min(ImagesPerRun, count - m);
            ExecutedMacs += (double)_plan.FullMacs * n;
            using var input = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance,
                System.Runtime.InteropServices.MemoryMarshal.AsMemory(data.Batch(start + m, n)), [n, .. data.SampleShape.Select(d => (long)d)]);
            using var outputs = session.Run(_runOptions, [_plan.Base.InputName], [input], [_plan.Base.OutputName]);
            ReadOnlySpan<float> values = outputs[0].GetTensorDataAsSpan<float>();
            int k = values.Length / n;
            all ??= new float[(long)count * k];
            values.CopyTo(all.AsSpan(m * k));
        }
        return all!;
    }

    public void Dispose() => _runOptions.Dispose();
}

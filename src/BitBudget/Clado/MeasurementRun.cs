using System.Diagnostics;
using BitBudget.Runtime;

namespace BitBudget.Clado;

/// <summary>
/// Measures units into a store context with one evaluator (its sessions are loaded once, on first need, for every phase of a
/// measurement) and adds up what that cost.
/// </summary>
internal sealed class MeasurementRun(MeasurementPlan plan, MeasurementStore? store, IProgress<SensitivityProgress>? progress, CancellationToken cancel) : IDisposable
{
    IEvaluator? _evaluator;
    MeasurementCost? _cost;   // set by Cost(), which ends the sessions; a later Measure starts a new account
    TimeSpan _setup, _measuring;
    long _done, _reused;
    readonly List<int> _batches = [];

    /// <summary>
    /// Measures (or takes from the store) the units of <paramref name="context"/> that <paramref name="wanted"/> accepts (all by
    /// default): each (u, s) measures its single and, with <paramref name="kept"/> null, all its pairs; otherwise pairs only if
    /// (u, s) is kept, and then those with kept (v, t). Returns every loss of the context.
    /// </summary>
    public Dictionary<(int Batch, int U, int Su, int V, int Sv), double> Measure(string context, string description, bool[]? kept, Func<int, int, bool>? wanted = null)
    {
        var options = plan.Options;
        store?.Register(context, description);
        var completed = store?.CompletedUnits(context) ?? [];
        var losses = store?.Losses(context) ?? [];
        long Evaluations(int u, int s) => u < 0 ? 0 : 1 + plan.PairsRun(u, s, kept);

        // Which units of which batches still need measuring in this run.
        int[]? owners = options.Shard is Shard shard ? ShardPlan.Owners(plan, shard.Count) : null;
        var todo = new List<(int Batch, List<(int U, int S)> Units)>();
        long totalEvaluations = 0, unitIndex = 0;
        for (int b = 0; b < plan.BatchCount; b++)
        {
            var units = new List<(int, int)>();
            for (int u = 0; u < plan.L; u++)
            {
                for (int s = 0; s < plan.S; s++, unitIndex++)
                {
                    if (owners is not null && owners[unitIndex] != options.Shard!.Value.Index) { continue; }
                    if (wanted is not null && !wanted(u, s)) { continue; }
                    if (completed.Contains((b, u, s))) { _reused++; continue; }
                    units.Add((u, s));
                    totalEvaluations += Evaluations(u, s);
                }
            }
            bool needReference = !completed.Contains((b, -1, 0));
            if (units.Count > 0 || needReference) { todo.Add((b, units)); }
        }
        if (todo.Count == 0) { return losses; }

        _cost = null;
        if (_evaluator is null)
        {
            var setup = Stopwatch.StartNew();
            _evaluator = options.Naive ? new NaiveEvaluator(plan) : new SegmentEvaluator(plan);
            _setup += setup.Elapsed;
        }
        IEvaluator evaluator = _evaluator;
        _batches.AddRange(todo.Select(t => t.Batch).Where(b => !_batches.Contains(b)));
        // Workers sharing the store claim each unit before measuring it; units another worker holds wait for the end.
        using var claims = store is null ? null : new UnitClaims(store, context, options.ClaimLease);
        long doneElsewhere = 0, done = 0;
        double progressDone = 0;
        var loop = Stopwatch.StartNew();
        void Measure(int batch, List<(int U, int S)> units, List<(int Batch, int U, int S)> heldElsewhere)
        {
            cancel.ThrowIfCancellationRequested();
            bool needReference = false;
            var mine = new List<(int U, int S)>(units.Count);
            foreach ((int u, int s) in units)
            {
                switch (claims?.TryClaim(batch, u, s) ?? ClaimResult.Claimed)
                {
                    case ClaimResult.Done:
                        doneElsewhere += Evaluations(u, s);
                        continue;
                    case ClaimResult.Taken:
                        heldElsewhere.Add((batch, u, s));
                        continue;
                }
                if (u < 0) { needReference = true; } else { mine.Add((u, s)); }
            }
            if (!needReference && mine.Count == 0) { return; }
            int images = plan.BatchRange(batch).Count;
            var sink = new UnitSink
            {
                Reference = reference =>
                {
                    plan.RequireFinite(reference, (-1, 0, -1, 0));
                    store?.CommitUnit(context, batch, -1, 0, [(-1, 0, -1, 0, reference)]);
                    losses[(batch, -1, 0, -1, 0)] = reference;
                },
                Unit = (u, s, rows) =>
                {
                    foreach (var r in rows) { plan.RequireFinite(r.Loss, (r.U, r.Su, r.V, r.Sv)); }
                    store?.CommitUnit(context, batch, u, s, rows);
                    foreach (var r in rows) { losses[(batch, r.U, r.Su, r.V, r.Sv)] = r.Loss; }
                    done += rows.Count;
                },
                Progress = (evaluations, microImages) =>
                {
                    progressDone += (double)evaluations * microImages / images;
                    progress?.Report(new SensitivityProgress((long)progressDone + doneElsewhere, totalEvaluations,
                        progressDone / Math.Max(1e-9, loop.Elapsed.TotalSeconds), ProcessMemory.PeakRss));
                },
            };
            evaluator.MeasureBatch(batch, mine, needReference, kept, sink, cancel);
        }
        var pending = new List<(int Batch, int U, int S)>();
        foreach ((int batch, var units) in todo)
        {
            // u = −1 is the batch's reference loss.
            Measure(batch, [.. completed.Contains((batch, -1, 0)) ? [] : new[] { (-1, 0) }, .. units], pending);
        }
        // Units another worker held: wait until they are stored, or take them over when that worker's lease runs out.
        while (pending.Count > 0)
        {
            if (cancel.WaitHandle.WaitOne(UnitClaims.PollInterval)) { cancel.ThrowIfCancellationRequested(); }
            var still = new List<(int Batch, int U, int S)>();
            foreach (var group in pending.GroupBy(p => p.Batch))
            {
                Measure(group.Key, [.. group.Select(p => (p.U, p.S))], still);
            }
            pending = still;
        }
        _measuring += loop.Elapsed;
        _done += done;
        if (doneElsewhere > 0 || claims?.SawOtherWorkers == true) { losses = store!.Losses(context); }
        return losses;
    }

    /// <summary>
    /// What every phase so far cost together. Ends the measurement's sessions: the raw-ORT throughput probes open the whole model
    /// with ONNX Runtime's defaults (arena included) and run a micro-batch, which beside the measurement's 61 sessions took
    /// ResNet-18's default command from 2,930,452 to 3,087,856 kB (2.94 GiB) at its very end. A later <see cref="Measure"/> opens them again.
    /// </summary>
    public MeasurementCost Cost()
    {
        if (_cost is not null) { return _cost; }
        if (_evaluator is not IEvaluator evaluator)
        {
            return new MeasurementCost { ReusedUnits = _reused, MeasuredPeakBytes = ProcessMemory.PeakRss, MemoryBudgetBytes = plan.Runtime.MaxMemory };
        }
        int imagesPerRun = evaluator.ImagesPerRun;
        int inRun = Math.Min(imagesPerRun, plan.Options.BatchSize);
        (double executedMacs, long resident, long perImage, long unreferenced) =
            (evaluator.ExecutedMacs, evaluator.ResidentBeforeMeasuring, evaluator.PlannedBytesPerImage, evaluator.UnreferencedBytesPerImage);
        evaluator.Dispose();
        _evaluator = null;
        ProcessMemory.RssAfterCollecting();
        return _cost = new MeasurementCost
        {
            ExecutedMacs = executedMacs,
            ReferenceMacs = plan.ReferenceMacs(_batches),
            Evaluations = _done,
            ReusedUnits = _reused,
            Measuring = _measuring,
            Setup = _setup,
            RawThroughputTime = RawThroughput.TimeFor(plan, plan.Options.Runtime, executedMacs, imagesPerRun),
            RawThroughputTimeSameSettings = RawThroughput.TimeFor(plan, plan.Runtime, executedMacs, imagesPerRun),
            ImagesPerRun = imagesPerRun,
            PlannedPeakBytes = resident + (long)inRun * perImage,
            UnreferencedPeakBytes = resident + (long)inRun * unreferenced,
            PlannedBytesPerImage = perImage,
            ResidentBytes = resident,
            MeasuredPeakBytes = ProcessMemory.PeakRss,
            MemoryBudgetBytes = plan.Runtime.MaxMemory,
        };
    }

    public void Dispose() => _evaluator?.Dispose();
}

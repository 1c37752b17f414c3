using System.Diagnostics;
using System.Runtime.InteropServices;
using BitBudget.Evaluation;
using BitBudget.Graph;
using BitBudget.Numerics;
using BitBudget.Quantization;
using BitBudget.Runtime;
using Microsoft.ML.OnnxRuntime;

namespace BitBudget.Clado;

/// <summary>
/// CLADO's measurement: the loss change of quantizing every searched layer alone (ΔL_u) and every pair of layers
/// (ΔL_uv), forward passes only, averaged over batches, assembled into Ω.
/// <para>
/// The fast path cuts the model before every searched layer into segments and suffixes baked with each layer's
/// quantized weights. Per batch, the unperturbed states at every cut are computed once; a single (u, s) runs only the
/// suffix from u; a pair (u, s; v, t) reuses the state after u's perturbed segment, advanced in full precision, and runs
/// only the suffix from v. The reference loop (<see cref="SensitivityOptions.Naive"/>) rebuilds and runs the whole model
/// for every evaluation, as the paper's code does.
/// </para>
/// </summary>
internal static class CladoSensitivity
{
    /// <summary>Measures (or completes from the store) the sensitivities of <paramref name="input"/>.</summary>
    public static SensitivityResult Measure(SensitivityInput input, SensitivityOptions? options = null,
        IProgress<SensitivityProgress>? progress = null, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(input);
        options ??= new SensitivityOptions();
        if (options.Pairs == PairSelection.Significant)
        {
            if (options.Shard is not null)
            {
                throw Errors.InvalidInput("--pairs significant chooses pairs from every single's measured ΔL, which one shard does not have; shards measure --pairs all (SensitivityOptions.Pairs = PairSelection.All), which is what --shard does without an explicit --pairs.");
            }
            if (!(options.PairThreshold > 0 && options.PairThreshold < 1))
            {
                throw Errors.InvalidInput($"--pair-threshold must be between 0 and 1 (a fraction of the largest single ΔL), got {options.PairThreshold}.");
            }
        }
        var plan = MeasurementPlan.Create(input, options, cancel);
        using var store = options.StorePath is null ? null : new MeasurementStore(options.StorePath);
        if (options.Shard is not null && store is null)
        {
            throw Errors.InvalidInput("A shard needs a measurement store (--store) to write its share into.");
        }
        using var run = new MeasurementRun(plan, store, progress, cancel);
        if (options.Pairs == PairSelection.All)
        {
            var losses = run.Measure(plan.Context, plan.Description, kept: null);
            return plan.Assemble(losses, run.Cost());
        }

        // A store that already holds every pair of this measurement (e.g. merged shards, which measure all pairs) gives the
        // exact Ω at no cost: use it rather than measure the significant subset again.
        if (store is not null && store.CompletedUnits(plan.Context).Count == plan.BatchCount * (plan.L * plan.S + 1))
        {
            return plan.Assemble(run.Measure(plan.Context, plan.Description, kept: null), run.Cost());
        }

        // Significant pairs: every single first, in a store context of its own (a unit of the `all` context stands for its
        // pairs too), then only the pairs whose two singles both move the loss; the other entries of Ω are 0.
        var singles = run.Measure(plan.Context + "/singles", plan.Description + "; singles only", kept: new bool[plan.L * plan.S]);
        bool[] kept = plan.SignificantSchemes(singles, options.PairThreshold);
        // Only units with a pair to run: the others' singles are already in hand.
        var pairs = run.Measure(plan.SignificantContext, $"{plan.Description}; pairs whose singles are ≥ {options.PairThreshold:R} × the largest |ΔL|", kept,
            wanted: (u, s) => plan.PairsRun(u, s, kept) > 0);
        foreach (var (key, loss) in singles) { pairs.TryAdd(key, loss); }
        return plan.Assemble(pairs, run.Cost(), kept);
    }

    /// <summary>
    /// Combines measurement stores (e.g. from <see cref="Shard"/> workers) into <paramref name="target"/>; returns the losses added.
    /// Atomic: the merge goes into a copy of the target that replaces it only when every source merged, so a bad source leaves the
    /// target as it was.
    /// </summary>
    public static long MergeStores(string target, IEnumerable<string> sources)
    {
        ArgumentNullException.ThrowIfNull(target);
        ArgumentNullException.ThrowIfNull(sources);
        string full = Path.GetFullPath(target);
        string[] from = [.. sources.Select(Path.GetFullPath).Where(s => s != full && !Internals.FileIdentity.SameFile(s, full))];
        foreach (string source in from) { MeasurementStore.Validate(source); }   // every source checked before anything is written
        long added = 0;
        Internals.AtomicFile.Write(full, temp =>
        {
            if (File.Exists(full) && new FileInfo(full).Length > 0) { MeasurementStore.CopyTo(full, temp); }
            using var store = new MeasurementStore(temp);
            foreach (string source in from) { added += store.MergeFrom(source); }
        });
        return added;
    }
}

/// <summary>This worker's claims on the units of one measurement context in a shared store.</summary>
internal sealed class UnitClaims(MeasurementStore store, string context, TimeSpan lease) : IDisposable
{
    /// <summary>How often a worker looks again at units another worker holds.</summary>
    public static TimeSpan PollInterval { get; } = TimeSpan.FromMilliseconds(250);

    readonly string _owner = WorkerId.New();

    /// <summary>Whether another worker held or finished a unit this one wanted.</summary>
    public bool SawOtherWorkers { get; private set; }

    public ClaimResult TryClaim(int batch, int u, int su)
    {
        ClaimResult result = store.TryClaim(context, batch, u, su, _owner, lease);
        SawOtherWorkers |= result != ClaimResult.Claimed;
        return result;
    }

    /// <summary>Hands unfinished units back at once (cancelled, failed or done), instead of after the lease.</summary>
    public void Dispose()
    {
        try { store.Release(_owner); }
        catch (Microsoft.Data.Sqlite.SqliteException) { }   // the lease expires anyway
    }
}

/// <summary>Runs singles and pairs for one batch at a time, in micro-batches that fit the memory budget.</summary>
internal interface IEvaluator : IDisposable
{
    /// <summary>
    /// Measures the reference loss (if asked) and <paramref name="units"/> of one batch; losses are means over the batch's images.
    /// With <paramref name="kept"/> (index layer·S + scheme) a unit runs its pairs only if it is kept, and then only those with kept schemes.
    /// </summary>
    void MeasureBatch(int batch, IReadOnlyList<(int U, int S)> units, bool needReference, bool[]? kept, UnitSink sink, CancellationToken cancel);
    double ExecutedMacs { get; }
    /// <summary>Images per ONNX Runtime run.</summary>
    int ImagesPerRun { get; }
    /// <summary>Planned bytes per image at the worst moment (with reference counting).</summary>
    long PlannedBytesPerImage { get; }
    /// <summary>The same without reference counting (every state kept for the whole micro-batch), for the report.</summary>
    long UnreferencedBytesPerImage { get; }
    /// <summary>Resident bytes once the sessions are loaded.</summary>
    long ResidentBeforeMeasuring { get; }
}

/// <summary>Where an evaluator delivers a batch's results: the reference loss, each unit's rows, and progress (evaluations × images of a micro-batch).</summary>
internal sealed class UnitSink
{
    public required Action<double> Reference { get; init; }
    public required Action<int, int, List<(int U, int Su, int V, int Sv, double Loss)>> Unit { get; init; }
    public required Action<long, int> Progress { get; init; }
}

/// <summary>The searched layers, schemes, batches and the unperturbed base model, shared by both evaluators.</summary>
internal sealed class MeasurementPlan
{
    public required SensitivityInput Input { get; init; }
    public required SensitivityOptions Options { get; init; }
    public required LayerInfo[] Searched { get; init; }
    public required int[] Bits { get; init; }
    public required OnnxModel Base { get; init; }
    public required string Context { get; init; }
    public required string Description { get; init; }
    public int L => Searched.Length;

    /// <summary>
    /// Session settings of both evaluators. ORT_ENABLE_ALL adds the NCHWc layout rewrite, whose kernels accumulate
    /// differently depending on where a slice starts, so slices and the whole model would disagree by more than float
    /// noise (measured: 0.9 % of max |Ω| on ResNet-20); up to ORT_ENABLE_EXTENDED they agree.
    /// </summary>
    public RuntimeOptions Runtime => Options.Runtime with
    {
        Optimization = (Microsoft.ML.OnnxRuntime.GraphOptimizationLevel)Math.Min((int)Options.Runtime.Optimization, (int)Microsoft.ML.OnnxRuntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED),
    };
    public int S => Bits.Length;
    public int BatchCount => (Input.Data.Count + Options.BatchSize - 1) / Options.BatchSize;
    public long FullMacs => Input.Layers.Sum(l => l.MacsPerImage);

    /// <summary>MACs per image of a node set of <see cref="Base"/>: the quantizable layers whose node is in it (other operators are negligible).</summary>
    public long MacsOf(ModelSlicer slicer, int[] sortedNodes) =>
        Input.Layers.Where(l => Array.BinarySearch(sortedNodes, slicer.IndexOf(l.NodeNames[0])) >= 0).Sum(l => l.MacsPerImage);

    /// <remarks><paramref name="cancel"/> stops the rounding of every searched layer's tensors (GPTQ: minutes on ResNet-18) between and inside tensors.</remarks>
    public static MeasurementPlan Create(SensitivityInput input, SensitivityOptions options, CancellationToken cancel = default)
    {
        if (options.BatchSize <= 0) { throw Errors.InvalidInput($"Sensitivity batch size must be positive, got {options.BatchSize}."); }
        if (options.CandidateBits.Count == 0 || options.CandidateBits.Any(b => b is < 2 or > 8) || options.CandidateBits.Distinct().Count() != options.CandidateBits.Count)
        {
            throw Errors.InvalidInput($"Candidate bits {string.Join(",", options.CandidateBits)} must be distinct values in 2–8.");
        }
        if (input.Data.Count == 0) { throw Errors.InvalidInput("The sensitivity set is empty."); }
        if (options.Loss.NeedsLabels()) { input.Data.RequireLabels("CLADO sensitivity with --loss ce", "a label-free loss (--loss kl|mse)"); }
        var searched = input.Layers.Where(l => input.Config[l.Index].Searchable).ToArray();
        if (searched.Length < 2) { throw Errors.InvalidInput($"CLADO needs at least two searched layers; the configuration searches {searched.Length}."); }
        int[] bits = [.. options.CandidateBits];

        // The base: fixed layers quantized as configured, searched layers in float with float inputs.
        var baseConfig = input.Config.Select(c => c.Searchable ? c with { WeightBits = 0, ActivationBits = 0 } : c).ToArray();
        OnnxModel baseModel = QuantSimulator.Build(input.Prepared, input.Layers, baseConfig, input.Weights, input.Activations, emulateActivations: true, input.Attention);
        // The cones add what the searched layers need (the float fake quantization's Round, Clip with inputs…) to slices of this
        // base, so it carries their opset even when nothing in it is quantized yet (an opset-8 model with every layer searched).
        long needed = QdqGraph.RequiredOpset(input.Config, storedWeights: false);
        if (needed > baseModel.Opset) { OpsetUpgrade.Raise(baseModel, needed); }

        // Everything that determines a measured value goes into the context hash, including every quantized tensor.
        var text = new System.Text.StringBuilder();
        text.AppendLine("bitbudget-clado-v1").AppendLine(input.Prepared.ComputeHash()).AppendLine(input.Data.Hash)
            .AppendLine($"batch={options.BatchSize} images={input.Data.Count} loss={options.Loss} naive={options.Naive} bits={string.Join(",", bits)}" +
                (options.OutputKind == OutputKind.Logits ? "" : $" output={options.OutputKind}"))
            .AppendLine(options.SettingsNote).AppendLine(input.Weights.Fingerprint);
        foreach (LayerBits c in input.Config) { text.AppendLine(c.ToString()); }
        if (input.Activations is not null)
        {
            foreach (var (name, p) in input.Activations.OrderBy(p => p.Key, StringComparer.Ordinal)) { text.AppendLine($"{name}:{p}"); }
        }
        foreach (AttentionQuantizer q in input.Attention ?? []) { text.AppendLine(q.ToString()); }
        using var sha = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        sha.AppendData(System.Text.Encoding.UTF8.GetBytes(text.ToString()));
        foreach (LayerInfo layer in searched)
        {
            foreach (int b in bits)
            {
                cancel.ThrowIfCancellationRequested();
                QuantizedTensor tensor = input.Weights.Get(input.Config[layer.Index] with { WeightBits = b }, cancel);
                sha.AppendData(MemoryMarshal.AsBytes(tensor.Dequantized.Span));
                if (tensor.Bias is { } bias) { sha.AppendData(MemoryMarshal.AsBytes(bias.AsSpan())); }
            }
        }
        // Every tensor the measurement perturbs with is rounded now: GPTQ's factors and H would only sit in the memory its
        // sessions and micro-batches are planned into (ResNet-18: up to 0.38 GB of factors and 1.05 GB of H).
        long spilled = input.Weights.ReleaseRoundingState();
        MemoryTrace.Mark($"CLADO plan: every tensor rounded, GPTQ factors released, {spilled >> 10} kB of H spilled");
        sha.AppendData(System.Text.Encoding.UTF8.GetBytes(baseModel.ComputeHash()));
        string context = Convert.ToHexStringLower(sha.GetHashAndReset())[..32];
        string description = $"{Path.GetFileName(input.Prepared.Source)}; {input.Data.Description}; {searched.Length} searched layers × bits {string.Join(",", bits)}; " +
            $"batch {options.BatchSize}; loss {options.Loss}{(options.Naive ? "; naive" : "")}{(options.SettingsNote.Length > 0 ? "; " + options.SettingsNote : "")}";
        return new MeasurementPlan { Input = input, Options = options, Searched = searched, Bits = bits, Base = baseModel, Context = context, Description = description };
    }

    public (int Start, int Count) BatchRange(int batch)
    {
        int start = batch * Options.BatchSize;
        return (start, Math.Min(Options.BatchSize, Input.Data.Count - start));
    }

    /// <summary>A segment or suffix model with searched layer <paramref name="layer"/> quantized at <paramref name="bits"/> (its input activation too, if configured).</summary>
    public OnnxModel Perturb(OnnxModel model, LayerInfo layer, int bits)
    {
        OnnxModel copy = model.Clone();
        LayerBits spec = Input.Config[layer.Index] with { WeightBits = bits };
        QuantSimulator.SetLayerWeight(copy, layer, Input.Weights.Get(spec), Input.Weights);
        if (QdqGraph.ActivationFor(spec, Input.Activations) is ActivationParams p)
        {
            QdqGraph.InsertActivationQdq(copy, layer, p, emulate: true);   // see QuantSimulator.Build: slices must compute what the whole model does
        }
        return copy;
    }

    /// <summary>
    /// Refuses a non-finite loss: <paramref name="at"/> names what was quantized (U = -1: nothing, V = -1: only layer U at bits
    /// index Su) for the error, since a NaN stored in Ω would make every search silently wrong.
    /// </summary>
    public void RequireFinite(double loss, (int U, int Su, int V, int Sv) at)
    {
        if (double.IsFinite(loss)) { return; }
        string quantized = at.U < 0 ? "the model with no searched layer quantized"
            : at.V < 0 ? $"layer '{Searched[at.U].Name}' at {Bits[at.Su]} bits"
            : $"layer '{Searched[at.U].Name}' at {Bits[at.Su]} bits and layer '{Searched[at.V].Name}' at {Bits[at.Sv]} bits";
        throw Errors.InvalidInput(
            $"CLADO's {Options.Loss.Name()} loss is {loss} with {quantized} on a sensitivity batch: the model computes NaN or infinity there; check it with `bitbudget eval`.");
    }

    /// <summary>Σ over <paramref name="images"/> images of the configured loss (see <see cref="OutputLosses"/>).</summary>
    public double LossSum(ReadOnlySpan<float> outputs, int images, ReadOnlySpan<int> labels, ReadOnlySpan<float> reference) =>
        OutputLosses.Sum(Options.Loss, Options.OutputKind, outputs, images, labels, reference);

    /// <summary>Labels of a range of the sensitivity images (empty when the loss needs none).</summary>
    public ReadOnlySpan<int> Labels(int start, int count) => Options.Loss.NeedsLabels() ? Input.Data.BatchLabels(start, count) : default;

    /// <summary>Store context of the pairs measured with <see cref="PairSelection.Significant"/> (and of its Ω: never mixed with `all`'s).</summary>
    public string SignificantContext => $"{Context}/significant {Options.PairThreshold.ToString("R", System.Globalization.CultureInfo.InvariantCulture)}";

    /// <summary>Pairs unit (u, s) runs: all later layers' schemes, or with <paramref name="kept"/> only kept ones, and none if (u, s) is not kept.</summary>
    public long PairsRun(int u, int s, bool[]? kept)
    {
        if (kept is null) { return (long)S * (L - 1 - u); }
        if (!kept[u * S + s]) { return 0; }
        long n = 0;
        for (int i = (u + 1) * S; i < L * S; i++) { if (kept[i]) { n++; } }
        return n;
    }

    /// <summary>
    /// The schemes whose mean single |ΔL| over the complete batches is at least <paramref name="threshold"/> × the largest: the
    /// measured loss change decides, not the bit-width (with A8 inputs an 8-bit scheme's ΔL is not small).
    /// </summary>
    public bool[] SignificantSchemes(Dictionary<(int Batch, int U, int Su, int V, int Sv), double> losses, double threshold)
    {
        int n = L * S;
        var sum = new double[n];
        int batches = 0;
        for (int b = 0; b < BatchCount; b++)
        {
            if (!losses.TryGetValue((b, -1, 0, -1, 0), out double l0)) { continue; }
            var row = new double[n];
            bool ok = true;
            for (int i = 0; i < n && ok; i++)
            {
                ok = losses.TryGetValue((b, i / S, i % S, -1, 0), out double l);
                row[i] = l - l0;
            }
            if (!ok) { continue; }
            batches++;
            for (int i = 0; i < n; i++) { sum[i] += row[i]; }
        }
        if (batches == 0) { throw new InvalidOperationException("No batch has every single measured."); }
        double largest = sum.Max(Math.Abs);
        return [.. sum.Select(d => Math.Abs(d) >= threshold * largest && largest > 0)];
    }

    public double ReferenceMacs(IEnumerable<int> batches)
    {
        double forwards = 1 + (double)L * S + (double)S * S * L * (L - 1) / 2;
        return batches.Sum(b => BatchRange(b).Count) * forwards * FullMacs;
    }

    /// <summary>Ω from the losses; with <paramref name="kept"/>, pairs of a scheme that is not kept were skipped and are 0.</summary>
    public SensitivityResult Assemble(Dictionary<(int Batch, int U, int Su, int V, int Sv), double> losses, MeasurementCost cost, bool[]? kept = null)
    {
        bool Skipped(int i, int j) => kept is not null && !(kept[i] && kept[j]);
        int n = L * S;
        var single = new double[n];
        var pair = new double[n * n];
        double reference = 0;
        int batches = 0;
        bool complete = true;
        for (int b = 0; b < BatchCount; b++)
        {
            if (!losses.TryGetValue((b, -1, 0, -1, 0), out double l0)) { complete = false; continue; }
            bool ok = true;
            var bs = new double[n];
            var bp = new double[n * n];
            for (int u = 0; u < L && ok; u++)
            {
                for (int s = 0; s < S && ok; s++)
                {
                    if (!losses.TryGetValue((b, u, s, -1, 0), out double lu)) { ok = false; break; }
                    bs[u * S + s] = lu - l0;
                    for (int v = u + 1; v < L && ok; v++)
                    {
                        for (int t = 0; t < S; t++)
                        {
                            if (Skipped(u * S + s, v * S + t)) { continue; }
                            if (!losses.TryGetValue((b, u, s, v, t), out double luv)) { ok = false; break; }
                            bp[(u * S + s) * n + v * S + t] = luv - l0;
                        }
                    }
                }
            }
            if (!ok) { complete = false; continue; }
            batches++;
            reference += l0;
            for (int i = 0; i < n; i++) { single[i] += bs[i]; }
            for (int i = 0; i < n * n; i++) { pair[i] += bp[i]; }
        }
        var omega = new double[n * n];
        if (batches > 0)
        {
            for (int i = 0; i < n; i++) { single[i] /= batches; }
            for (int i = 0; i < n * n; i++) { pair[i] /= batches; }
            for (int u = 0; u < n; u++)
            {
                omega[u * n + u] = 2 * single[u];
                for (int v = u + 1; v < n; v++)
                {
                    if (u / S == v / S || Skipped(u, v)) { continue; }   // same layer, other scheme: never both chosen; skipped: 0
                    double value = pair[u * n + v] - single[u] - single[v];
                    omega[u * n + v] = value;
                    omega[v * n + u] = value;
                }
            }
        }
        int images = Enumerable.Range(0, BatchCount).Sum(b => BatchRange(b).Count);
        return new SensitivityResult
        {
            SearchedLayers = Searched,
            CandidateBits = Bits,
            ReferenceLoss = batches > 0 ? reference / batches : double.NaN,
            DeltaSingle = single,
            Omega = SquareMatrix.Own(omega, n),
            Batches = batches,
            Images = images,
            Context = kept is null ? Context : SignificantContext,
            Cost = cost,
            Complete = complete,
            PairThreshold = kept is null ? null : Options.PairThreshold,
            SkippedPairs = kept is null ? 0 : Enumerable.Range(0, n).Sum(i => Enumerable.Range(i + 1, n - i - 1).Count(j => i / S != j / S && Skipped(i, j))),
        };
    }
}

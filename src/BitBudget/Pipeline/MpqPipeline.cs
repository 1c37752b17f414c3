using BitBudget.Data;
using BitBudget.Evaluation;
using BitBudget.Export;
using BitBudget.Graph;
using BitBudget.Ompq;
using BitBudget.Optimization;
using BitBudget.Quantization;
using BitBudget.Clado;
using BitBudget.Numerics;

namespace BitBudget.Pipeline;

/// <summary>How Ω is made positive semidefinite before the CLADO search.</summary>
public enum PsdMethod
{
    /// <summary>Negative eigenvalues set to 0, as the CLADO paper and code do (changes the objective).</summary>
    ClipEigenvalues,
    /// <summary>Ω + δI with δ = max(0, −λmin): exact, the same optimum on one-hot points.</summary>
    ShiftDiagonal,
}

/// <summary>
/// BitBudget from C#, one step per pipeline stage: open a model, calibrate, measure CLADO sensitivities, search a bit
/// configuration (CLADO, independent, uniform, OMPQ), simulate, export a QDQ model and evaluate it. Each step returns an
/// immutable result; the CLI's <c>run</c> command is these calls in order.
/// </summary>
/// <remarks>
/// The stages are types: an opened pipeline offers what needs no data (the layer policy, budgets, searches, configurations,
/// evaluation); <see cref="Calibrate"/> returns a <see cref="CalibratedPipeline"/>, and only that offers what needs calibrated
/// activation ranges and rounded weights (<see cref="CalibratedPipeline.MeasureSensitivity"/>, <see cref="CalibratedPipeline.Simulate"/>,
/// <see cref="CalibratedPipeline.Export"/>), so measuring or exporting before calibrating does not compile.
/// </remarks>
/// <example>
/// <code>
/// var pipeline = MpqPipeline.Open("resnet20.onnx");
/// Dataset calib = DatasetLoader.Load(new DataOptions { Path = "train-5k", Preprocessing = Preprocessing.Cifar10, Limit = 512, Seed = 0 });
/// CalibratedPipeline calibrated = pipeline.Calibrate(calib);
/// SensitivityResult s = calibrated.MeasureSensitivity(calib.Sample(256, 1));
/// SearchResult r = calibrated.Search(SearchMethod.Clado, [Budget.Parse("4bits")], s);
/// ExportResult e = calibrated.Export(calibrated.Configuration(r.Bits), "resnet20-4bits.onnx");
/// </code>
/// </example>
public class MpqPipeline
{
    /// <summary>The stages after calibration share the opened pipeline's model, inventory, options and policy.</summary>
    private protected MpqPipeline(MpqPipeline opened)
    {
        ArgumentNullException.ThrowIfNull(opened);
        Original = opened.Original;
        Prepared = opened.Prepared;
        Summary = opened.Summary;
        Options = opened.Options;
        OutputKind = opened.OutputKind;
        Policy = opened.Policy;
    }

    MpqPipeline(OnnxModel original, OnnxModel prepared, ModelSummary summary, PipelineOptions options)
    {
        OutputKind = options.OutputKind ?? summary.Preparation.OutputKind;
        Original = original;
        Prepared = prepared;
        Summary = summary;
        Options = options;
        var config = new BitConfig
        {
            Defaults = new LayerSettings(8, options.ActivationBits, options.PerChannel, options.WeightRange, true),
            FirstLayerBits = options.FirstLayerBits,
            LastLayerBits = options.LastLayerBits,
        };
        // A layer kept in float has no quantized input either.
        Policy = [.. config.Resolve(summary.Layers).Select(p => p.IsFloat ? p with { ActivationBits = 0 } : p)];
    }

    /// <summary>Loads and prepares a model.</summary>
    public static MpqPipeline Open(string modelPath, PipelineOptions? options = null) => Open(OnnxModel.Load(modelPath), options);

    /// <summary>Prepares a loaded model (the original is not changed).</summary>
    public static MpqPipeline Open(OnnxModel model, PipelineOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        options ??= PipelineOptions.Default;
        if (options.ActivationBits is not 0 and (< 4 or > 16))
        {
            throw Errors.InvalidInput($"Activation bits {options.ActivationBits} are not supported; expected 0 (weights only) or 4–16.");
        }
        (OnnxModel prepared, ModelSummary summary) = ModelInspector.Inspect(model, options.Output);
        var pipeline = new MpqPipeline(model, prepared, summary, options);
        if (pipeline.Policy.Count(p => p.Searchable) == 0)
        {
            throw Errors.InvalidInput($"Model '{model.Source}' has no layer left to search once the first and last layers are fixed.");
        }
        return pipeline;
    }

    /// <summary>The model as loaded.</summary>
    public OnnxModel Original { get; }

    /// <summary>The prepared model every stage works on.</summary>
    public OnnxModel Prepared { get; }

    /// <summary>What the classifier output holds (the override of <see cref="PipelineOptions.OutputKind"/>, else detected); every loss uses it.</summary>
    public OutputKind OutputKind { get; }

    /// <summary>Layer inventory.</summary>
    public ModelSummary Summary { get; }

    /// <summary>The settings.</summary>
    public PipelineOptions Options { get; }

    /// <summary>Per-layer policy: which layers are searched, fixed bits, activation bits, granularity.</summary>
    public IReadOnlyList<LayerBits> Policy { get; }

    /// <summary>
    /// Calibrates on the first <see cref="PipelineOptions.CalibrationImages"/> images of <paramref name="calibration"/>: input-activation
    /// ranges, and the layer-input statistics the rounding needs (GPTQ, bias correction); every quantized tensor is then
    /// rounded once, on first use, and shared by measurement, search, simulation and export. Weights only with
    /// round-to-nearest needs no statistics: the images then only check the model runs on them and check every export.
    /// This pipeline is not changed; calibrating again (other images) returns another <see cref="CalibratedPipeline"/>.
    /// </summary>
    public CalibratedPipeline Calibrate(Dataset calibration, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(calibration);
        Dataset used = calibration.Count > Options.CalibrationImages ? calibration.Subset(Enumerable.Range(0, Options.CalibrationImages).ToArray()) : calibration;
        IReadOnlyDictionary<string, ActivationParams>? activations = null;
        IReadOnlyList<AttentionQuantizer>? attention = null;
        using (var engine = EvaluationEngine.Create(Prepared, Options.Runtime, OutputKind))
        {
            engine.CheckInput(used);
            if (Options.ActivationBits > 0)
            {
                activations = ActivationCalibrator.Calibrate(engine, Summary.Layers, used, Options.ActivationBits, Options.ActivationCalibration, 64, cancel);
            }
            if (Options.AttentionMatMuls == AttentionMatMulMode.A8)
            {
                attention = AttentionMatMuls.Calibrate(engine, used, 8, Options.ActivationCalibration, 64, cancel);
            }
        }
        QuantizedWeights weights = QuantizedWeights.Create(Prepared, Summary.Layers, Options.Rounding with { CalibrationImages = used.Count }, used, Options.Runtime, null, cancel);
        return new CalibratedPipeline(this, used, weights, activations, attention);
    }

    /// <summary>The search problem for <paramref name="budgets"/>, with Ω from <paramref name="sensitivity"/> made PSD (zeros without it).</summary>
    public SearchProblem Problem(IReadOnlyList<Budget> budgets, SensitivityResult? sensitivity, PsdMethod psd = PsdMethod.ClipEigenvalues)
    {
        ArgumentNullException.ThrowIfNull(budgets);
        var layers = Summary.Layers.Select(l => Policy[l.Index] is { Searchable: true }
            ? new SearchLayer(l.Name, l.WeightCount, l.MacsPerImage, Options.CandidateBits)
            : new SearchLayer(l.Name, l.WeightCount, l.MacsPerImage, [FixedBits(l.Index)], FixedBits(l.Index))).ToArray();
        int n = Policy.Count(p => p.Searchable) * Options.CandidateBits.Count;
        SquareMatrix omega = SquareMatrix.Own(new double[n * n], n);
        if (sensitivity is not null)
        {
            if (sensitivity.Size != n || !sensitivity.CandidateBits.SequenceEqual(Options.CandidateBits))
            {
                throw Errors.InvalidInput($"The sensitivity result has {sensitivity.Size} schemes; this pipeline searches {n}.");
            }
            if (!sensitivity.Complete)
            {
                throw Errors.InvalidInput("The sensitivity store is incomplete (a shard?); merge every shard before searching.");
            }
            omega = psd == PsdMethod.ClipEigenvalues ? PsdProjection.ClipEigenvalues(sensitivity.Omega) : PsdProjection.ShiftDiagonal(sensitivity.Omega);
        }
        return new SearchProblem(layers, omega, budgets, Options.ActivationBits == 0 ? 32 : Options.ActivationBits);
    }

    /// <summary>Searches a configuration with CLADO, the independent ILP or uniform bits.</summary>
    public SearchResult Search(SearchMethod method, IReadOnlyList<Budget> budgets, SensitivityResult? sensitivity,
        PsdMethod psd = PsdMethod.ClipEigenvalues, CancellationToken cancel = default)
    {
        if (method != SearchMethod.Uniform && sensitivity is null)
        {
            throw Errors.InvalidInput($"Method {method} needs measured sensitivities.");
        }
        return BitSearch.Solve(Problem(budgets, sensitivity, psd), method, Options.Search, cancel);
    }

    /// <summary>The <paramref name="count"/> best distinct configurations of CLADO or the independent ILP, best first (<see cref="BitSearch.SolveRanked"/>).</summary>
    public IReadOnlyList<SearchResult> SearchRanked(SearchMethod method, IReadOnlyList<Budget> budgets, SensitivityResult sensitivity, int count,
        PsdMethod psd = PsdMethod.ClipEigenvalues, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(sensitivity);
        return BitSearch.SolveRanked(Problem(budgets, sensitivity, psd), method, count, Options.Search, cancel);
    }

    /// <summary>
    /// Throws (naming the minimum) when no configuration meets <paramref name="budgets"/>; returns a note when every configuration
    /// does, so the budget does not bind the search; otherwise null.
    /// </summary>
    public string? CheckBudget(IReadOnlyList<Budget> budgets)
    {
        SearchProblem problem = Problem(budgets, null);
        _ = BitSearch.Solve(problem, SearchMethod.Independent, Options.Search with { TimeLimit = TimeSpan.FromSeconds(10) });
        var widest = problem.Layers.ToDictionary(l => l.Name, l => l.FixedBits ?? l.CandidateBits.Max());
        return budgets.All(b => b.Measure(problem, widest) <= b.Value)
            ? $"Budget {string.Join("+", budgets)} is not binding: every searched layer fits at {Options.CandidateBits.Max()} bits " +
              $"({Budget.Measure(problem, BudgetKind.AvgBits, BudgetScope.AllLayers, widest):F3} avg bits)."
            : null;
    }

    /// <summary>Why OMPQ cannot follow this pipeline's layer policy (it keeps the first and last layers out of its search), or null when it can.</summary>
    public string? OmpqLimitation =>
        Options.Ompq.Units.FixFirstAndLast && (Options.FirstLayerBits is null || Options.LastLayerBits is null)
            ? $"OMPQ keeps the first and last layers out of its search (at {Options.Ompq.Units.FixedBits} bits), so it cannot honour " +
              $"{(Options.FirstLayerBits is null ? "--first-bits search" : "--last-bits search")}"
            : null;

    /// <summary>
    /// OMPQ on the first <see cref="PipelineOptions.OmpqImages"/> images of <paramref name="images"/> for one size budget. With
    /// <see cref="OmpqBetaRule.HeldOut"/> (the default) every β of the grid is judged by the KL divergence of its simulated model from
    /// the float model on <paramref name="heldOut"/> (on a <see cref="CalibratedPipeline"/>; <paramref name="heldOutFloatLogits"/> = <see cref="Logits"/> of
    /// the original on it, computed when null).
    /// </summary>
    public OmpqSearchResult SearchOmpq(Dataset images, Budget budget, CancellationToken cancel = default, Dataset? heldOut = null, float[]? heldOutFloatLogits = null)
    {
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(budget);
        if (OmpqLimitation is string limitation) { throw Errors.InvalidInput(limitation + "."); }
        Func<IReadOnlyList<int>, double>? judge = null;
        if (Options.Ompq.BetaRule == OmpqBetaRule.HeldOut)
        {
            if (heldOut is null || heldOut.Count == 0)
            {
                throw Errors.InvalidInput("OMPQ's held-out β needs held-out images (neither calibration nor sensitivity images); none are left, so use --ompq-beta paper or a number.");
            }
            judge = HeldOutJudge(heldOut, heldOutFloatLogits, cancel);
        }
        OmpqAllocation.RequireSizeBudget(budget);
        int n = Math.Min(Options.OmpqImages, images.Count);
        float[] batch = images.Batch(0, n).ToArray();
        long[] shape = [n, .. images.SampleShape.Select(d => (long)d)];
        var options = Options.Ompq with
        {
            CandidateBits = Options.CandidateBits,
            Proxy = Options.Ompq.Proxy with { Runtime = Options.Runtime },
        };
        // The prepared model: it has only the chosen output (preparing it again changes nothing).
        return OmpqSearch.Run(Prepared, batch, shape, budget, options, cancel, judge);
    }

    /// <summary>The full per-layer configuration for chosen bits (fixed layers and activation bits from the policy).</summary>
    public IReadOnlyList<LayerBits> Configuration(IReadOnlyDictionary<string, int> bits)
    {
        ArgumentNullException.ThrowIfNull(bits);
        return [.. Policy.Select(p => p.Searchable
            ? p with { WeightBits = bits.TryGetValue(p.Layer, out int b) ? b : throw Errors.InvalidInput($"No bits chosen for searched layer '{p.Layer}'.") }
            : p)];
    }

    /// <summary>The same configuration keyed by layer index order (e.g. from OMPQ).</summary>
    public IReadOnlyList<LayerBits> Configuration(IReadOnlyList<int> bitsByLayer)
    {
        ArgumentNullException.ThrowIfNull(bitsByLayer);
        return Configuration(Summary.Layers.ToDictionary(l => l.Name, l => bitsByLayer[l.Index]));
    }

    /// <summary>Every searched layer at <paramref name="bits"/>.</summary>
    public IReadOnlyList<LayerBits> Uniform(int bits) => Configuration(Summary.Layers.ToDictionary(l => l.Name, _ => bits));

    /// <summary>
    /// How OMPQ's held-out β rule scores a configuration (KL divergence of its simulated model from the float model on
    /// <paramref name="heldOut"/>); simulating needs calibration, so only <see cref="CalibratedPipeline"/> can.
    /// </summary>
    private protected virtual Func<IReadOnlyList<int>, double> HeldOutJudge(Dataset heldOut, float[]? heldOutFloatLogits, CancellationToken cancel) =>
        throw new InvalidOperationException("OMPQ's held-out β judges simulated configurations: call SearchOmpq on the CalibratedPipeline that Calibrate returns.");

    /// <summary>Top-1/top-5/loss of <paramref name="model"/> (a simulated or exported model, or the original) on <paramref name="data"/>.</summary>
    public EvaluationResult Evaluate(OnnxModel model, Dataset data, IProgress<int>? progress = null, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        using var engine = EvaluationEngine.Create(Runnable(model), Options.Runtime, OutputKind);
        return engine.Evaluate(data, new EvaluationOptions { BatchSize = 100, BytesPerImage = BytesPerImage(model, data) }, progress, cancel);
    }

    /// <summary>As <see cref="Evaluate(OnnxModel, Dataset, IProgress{int}?, CancellationToken)"/>, plus the KL divergence from
    /// <paramref name="referenceLogits"/> (e.g. the float model's <see cref="Logits"/> on the same images).</summary>
    public EvaluationResult EvaluateAgainst(OnnxModel model, Dataset data, float[] referenceLogits, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        using var engine = EvaluationEngine.Create(Runnable(model), Options.Runtime, OutputKind);
        return engine.Evaluate(data, new EvaluationOptions { BatchSize = 100, ReferenceLogits = referenceLogits, BytesPerImage = BytesPerImage(model, data) }, null, cancel);
    }

    /// <summary>The logits of <paramref name="model"/> on every image of <paramref name="data"/>, [count, classes].</summary>
    public float[] Logits(OnnxModel model, Dataset data, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        using var engine = EvaluationEngine.Create(Runnable(model), Options.Runtime, OutputKind);
        engine.Evaluate(data, new EvaluationOptions { BatchSize = 100, KeepLogits = true, BytesPerImage = BytesPerImage(model, data) }, null, cancel);
        return engine.LastLogits!;
    }

    /// <summary>
    /// Per-image bytes of a simulated or exported model, from the prepared model's measured footprint (measured once): their
    /// extra quantize/dequantize tensors are at most one more copy of a layer input at a time, hence the margin.
    /// </summary>
    long? BytesPerImage(OnnxModel model, Dataset data) => ReferenceEquals(Runnable(model), Prepared) ? null
        : (long)(1.5 * new TensorTap(Prepared, Options.Runtime).Footprint(data).RunBytes([Prepared.OutputName]));

    // Loaded models (exported files) need the same preparation (dynamic batch) as the original.
    OnnxModel Runnable(OnnxModel model) => ReferenceEquals(model, Original) ? Prepared : model;

    /// <summary>Weight bytes and average bits of a configuration, as the budgets count them: stored bits (a 3-bit weight in an int4 container counts 4), float layers at 32.</summary>
    public (long Bytes, double AverageBits) Size(IReadOnlyList<LayerBits> config)
    {
        ArgumentNullException.ThrowIfNull(config);
        double bits = 0;
        long weights = 0, bytes = 0;
        for (int i = 0; i < config.Count; i++)
        {
            long n = Summary.Layers[i].WeightCount;
            int b = config[i].IsFloat ? 32 : WeightStorage.StoredBits(config[i].WeightBits);
            bits += (double)n * b;
            weights += n;
            bytes += BitConfig.WeightBytes(n, config[i].WeightBits);
        }
        return (bytes, bits / weights);
    }

    int FixedBits(int layer) => Policy[layer].IsFloat ? 32 : Policy[layer].WeightBits;

    private protected IReadOnlyList<LayerBits> WithActivations(IReadOnlyList<LayerBits> config) =>
        Options.ActivationBits == 0 ? [.. config.Select(c => c with { ActivationBits = 0 })] : config;
}

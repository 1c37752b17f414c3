using System.Diagnostics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using BitBudget.Data;
using BitBudget.Graph;
using BitBudget.Runtime;
using Microsoft.ML.OnnxRuntime;

namespace BitBudget.Evaluation;

/// <summary>
/// Runs one model over datasets in ONNX Runtime: accuracy, loss, logits and intermediate tensors.
/// Holds one native session; dispose it. Different weights for some layers come from
/// <see cref="WithWeights"/>, which reuses the serialized model instead of reading it from disk again.
/// </summary>
internal sealed class EvaluationEngine : IDisposable
{
    readonly byte[] _modelBytes;
    readonly InferenceSession _session;
    readonly List<OrtValue> _overrides;
    readonly RuntimeOptions _options;

    EvaluationEngine(byte[] modelBytes, OnnxModel model, RuntimeOptions options, InferenceSession session, List<OrtValue> overrides, OutputKind outputKind)
    {
        OutputKind = outputKind;
        _modelBytes = modelBytes;
        Model = model;
        _options = options;
        _session = session;
        _overrides = overrides;
        InputName = model.InputName;
        OutputName = model.OutputName;
    }

    /// <summary>Opens a session for <paramref name="model"/> (use a prepared model so batches can vary).</summary>
    /// <param name="model">The model; its first output is the classifier output.</param>
    /// <param name="options">ONNX Runtime settings.</param>
    /// <param name="outputKind">What the output holds; null detects it from the graph (<see cref="OutputKinds.Detect"/>).</param>
    public static EvaluationEngine Create(OnnxModel model, RuntimeOptions? options = null, OutputKind? outputKind = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        // Without ORT's arena: the micro-batches are planned from the tensors' footprint, and the arena keeps its peak and grows
        // in doubling chunks past it. Measured: SqueezeNet's exported uniform model under `eval --max-memory 1GiB` peaked at
        // 1,115,672 kB with the arena and 765,640 kB without; its clado model cost 10.1 → 10.7 s CPU, ResNet-20's none (13.2 / 12.3).
        options = (options ?? RuntimeOptions.Default) with { MemoryArena = false };
        byte[] bytes = model.ToBytes();
        var session = OrtSessions.Create(bytes, options, model.Source);
        return new EvaluationEngine(bytes, model, options, session, [], outputKind ?? OutputKinds.Detect(model));
    }

    /// <summary>The runtime settings its session was opened with (tests).</summary>
    internal RuntimeOptions Options => _options;

    /// <summary>What the output holds: losses and KL are computed from log-probabilities derived accordingly.</summary>
    public OutputKind OutputKind { get; }

    /// <summary>The model this engine runs (without weight overrides).</summary>
    public OnnxModel Model { get; }

    /// <summary>Name of the image input.</summary>
    public string InputName { get; }

    /// <summary>Name of the logits output.</summary>
    public string OutputName { get; }

    /// <summary>Logits kept by the last <see cref="Evaluate"/> with <see cref="EvaluationOptions.KeepLogits"/>.</summary>
    public float[]? LastLogits { get; private set; }

    /// <summary>
    /// A new engine over the same model with the named initializers replaced (e.g. quantize-dequantized weights).
    /// The model is not read from disk again: the parsed graph is copied with the new values and handed to ONNX Runtime
    /// (measured against the alternatives in the README's design notes).
    /// </summary>
    public EvaluationEngine WithWeights(IReadOnlyDictionary<string, float[]> weights)
    {
        ArgumentNullException.ThrowIfNull(weights);
        OnnxModel replaced = Model.WithInitializers(weights);
        byte[] bytes = replaced.ToBytes();
        var session = OrtSessions.Create(bytes, _options, $"{Model.Source} with replaced weights");
        return new EvaluationEngine(bytes, replaced, _options, session, [], OutputKind);
    }

    /// <summary>Top-1, top-5, cross-entropy (and KL to reference logits) of the model on <paramref name="data"/>.</summary>
    public EvaluationResult Evaluate(Dataset data, EvaluationOptions? options = null, IProgress<int>? progress = null, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(data);
        options ??= new EvaluationOptions();
        CheckInput(data);
        if (options.ReferenceLogits is null && !options.KeepLogits) { data.RequireLabels("Top-1/top-5 evaluation"); }
        var watch = Stopwatch.StartNew();
        Metrics? metrics = null;
        float[]? kept = null;
        // Micro-batches within the memory budget; metrics are sums over images, so the split does not change them.
        int batch = Math.Max(1, options.BatchSize);
        var tap = new TensorTap(Model, _options);
        batch = _options.ImagesPerRun > 0 ? Math.Min(batch, _options.ImagesPerRun)
            : options.BytesPerImage is long perImage ? MemoryBudget.ImagesPerRun(_options, perImage, batch, "the evaluation")
            : tap.ImagesPerRun(data, [OutputName], batch, "the evaluation");
        for (int start = 0; start < data.Count; start += batch)
        {
            cancel.ThrowIfCancellationRequested();
            int n = Math.Min(batch, data.Count - start);
            using var outputs = Run(_session, data, start, n, [OutputName]);
            ReadOnlySpan<float> logits = outputs[0].GetTensorDataAsSpan<float>();
            int classes = logits.Length / n;
            metrics ??= new Metrics(classes, OutputKind);
            if (classes != metrics.Classes || classes < data.ClassCount)
            {
                throw Errors.InvalidInput(
                    $"Model output '{OutputName}' has {classes} values per image but the data has {data.ClassNames.Count} classes" +
                    (data.LabelOffset > 0 ? $" shifted by {data.LabelOffset} (needs {data.ClassCount})." : "."));
            }
            if (!TensorPrimitives.IsFiniteAll(logits)) { throw NonFinite(data, start, n); }
            ReadOnlySpan<float> reference = options.ReferenceLogits is ReadOnlyMemory<float> r ? r.Span.Slice(start * classes, n * classes) : default;
            // Unlabeled data (only for logits or KL against a reference): no labels, so top-1/top-5/CE come out NaN.
            metrics.Add(logits, data.IsLabeled ? data.BatchLabels(start, n) : default, reference);
            if (options.KeepLogits)
            {
                kept ??= new float[(long)data.Count * classes];
                logits.CopyTo(kept.AsSpan(start * classes));
            }
            progress?.Report(start + n);
        }
        LastLogits = kept;
        return metrics!.Result(watch.Elapsed);
    }

    /// <summary>
    /// The error for a batch whose logits hold NaN or ±Inf (every comparison with NaN is false, so it would rank the label first
    /// and count as correct). Only now, off the normal path, the batch runs again with every node output exposed, to name the
    /// first node, in graph order, whose output is not finite.
    /// </summary>
    BitBudgetException NonFinite(Dataset data, int start, int count)
    {
        string where;
        try { where = FirstNonFiniteNode(data, start, count); }
        catch (BitBudgetException e) { where = $"the intermediate tensors could not be inspected ({e.Message})"; }
        return Errors.InvalidInput(
            $"Model output '{OutputName}' is not finite (NaN or infinity) on images {start}–{start + count - 1} of {data.Description}: {where}.");
    }

    string FirstNonFiniteNode(Dataset data, int start, int count)
    {
        var graph = Model.Proto.Graph;
        var produced = graph.Node.SelectMany(n => n.Output).Where(o => o.Length > 0).ToArray();
        using var session = OrtSessions.Create(Model.WithOutputs(produced, typed: false).ToBytes(), _options, $"{Model.Source} with every tensor exposed");
        string[] floats = [.. session.OutputMetadata.Where(m => m.Value.IsTensor && m.Value.ElementDataType == Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Float).Select(m => m.Key)];
        using var outputs = Run(session, data, start, count, floats);
        var finite = new Dictionary<string, bool>(floats.Length, StringComparer.Ordinal);
        for (int i = 0; i < floats.Length; i++) { finite[floats[i]] = TensorPrimitives.IsFiniteAll(outputs[i].GetTensorDataAsSpan<float>()); }
        foreach (var node in graph.Node)
        {
            foreach (string output in node.Output)
            {
                if (finite.TryGetValue(output, out bool ok) && !ok)
                {
                    return $"the first non-finite tensor is '{output}', written by node '{(node.Name.Length > 0 ? node.Name : output)}' ({node.OpType})";
                }
            }
        }
        return "no intermediate tensor is non-finite when run node by node, so an optimized kernel produced it";
    }

    /// <summary>The logits of every image, [count, classes].</summary>
    public float[] Logits(Dataset data, int batchSize = 64, CancellationToken cancel = default)
    {
        Evaluate(data, new EvaluationOptions { BatchSize = batchSize, KeepLogits = true }, null, cancel);
        return LastLogits!;
    }

    /// <summary>
    /// Runs <paramref name="data"/> once with the named intermediate tensors exposed and hands each batch's values to
    /// <paramref name="onBatch"/> (start index, image count, tensors by name); nothing is kept after the callback returns.
    /// </summary>
    public void Capture(Dataset data, IReadOnlyList<string> tensors, int batchSize, Action<int, int, IReadOnlyDictionary<string, CapturedTensor>> onBatch,
        CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(data);
        CheckInput(data);
        new TensorTap(Model, _options).Stream(data, data.Count, tensors, batchSize, onBatch, null, cancel, "the activation calibration pass");
    }

    /// <summary>Throws when the dataset's images do not fit the model input.</summary>
    public void CheckInput(Dataset data)
    {
        ArgumentNullException.ThrowIfNull(data);
        IReadOnlyList<long> shape = Model.InputShape;
        bool fits = shape.Count == data.SampleShape.Count + 1;
        for (int i = 1; fits && i < shape.Count; i++) { fits = shape[i] <= 0 || shape[i] == data.SampleShape[i - 1]; }
        if (!fits)
        {
            throw Errors.InvalidInput(
                $"Model input '{InputName}' has shape [{string.Join(",", shape.Select(d => d <= 0 ? "N" : d.ToString(System.Globalization.CultureInfo.InvariantCulture)))}] but the preprocessed images are [{string.Join(",", data.SampleShape)}]; check the preset (resize/crop/grey/layout).");
        }
    }

    internal IDisposableReadOnlyCollection<OrtValue> Run(InferenceSession session, Dataset data, int start, int count, IReadOnlyList<string> outputs)
    {
        long[] shape = [count, .. data.SampleShape.Select(d => (long)d)];
        Memory<float> batch = MemoryMarshal.AsMemory(data.Batch(start, count));
        using var input = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, batch, shape);
        try
        {
            using var runOptions = new RunOptions();
            return session.Run(runOptions, [InputName], [input], outputs);
        }
        catch (OnnxRuntimeException e)
        {
            throw Errors.Runtime($"ONNX Runtime failed on {Model.Source}: {OrtSessions.OneLine(e.Message)}", e);
        }
    }

    /// <summary>Releases the native session and the replaced weights.</summary>
    public void Dispose()
    {
        _session.Dispose();
        foreach (var v in _overrides) { v.Dispose(); }
    }
}

/// <summary>An intermediate tensor of one batch, valid only inside the capture callback.</summary>
internal readonly struct CapturedTensor
{
    readonly OrtValue _value;

    internal CapturedTensor(OrtValue value) => _value = value;

    /// <summary>The values, row-major.</summary>
    public ReadOnlySpan<float> Values => _value.GetTensorDataAsSpan<float>();

    /// <summary>The shape, batch first.</summary>
    public long[] Shape => _value.GetTensorTypeAndShape().Shape;
}

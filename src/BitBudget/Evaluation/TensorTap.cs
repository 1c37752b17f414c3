using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using BitBudget.Data;
using BitBudget.Graph;
using BitBudget.Runtime;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace BitBudget.Evaluation;

/// <summary>
/// Bytes one image costs in a model: every tensor's size (measured by running one image with every node output exposed) and
/// the most bytes live at once when the nodes run in order and each tensor is freed after its last reader.
/// </summary>
/// <param name="Tensors">Bytes per image of every tensor the probe saw (the data input included).</param>
/// <param name="InputBytes">Bytes per image of the data input.</param>
/// <param name="PeakLiveBytes">Most bytes live at once in one forward pass, per image, with only the graph outputs kept.</param>
internal sealed record TensorFootprint(IReadOnlyDictionary<string, long> Tensors, long InputBytes, long PeakLiveBytes)
{
    /// <summary>Allocator slack over the planned bytes (fragmentation, ORT's own buffers); the measured peaks stay below it.</summary>
    public const double Slack = 1.25;

    /// <summary>Bytes per image of <paramref name="tensor"/> (0 if the probe did not see it).</summary>
    public long Of(string tensor) => Tensors.TryGetValue(tensor, out long b) ? b : 0;

    /// <summary>Bytes per image of a run that also hands <paramref name="exposed"/> to the caller: the input, the pass's live peak, the exposed tensors.</summary>
    public long RunBytes(IEnumerable<string> exposed) =>
        (long)(Slack * (InputBytes + PeakLiveBytes + exposed.Distinct(StringComparer.Ordinal).Sum(Of)));
}

/// <summary>How a tensor pass was sized.</summary>
/// <param name="ResidentBytes">The resident set the images per run were fitted beside, read once the pass's session existed.</param>
/// <param name="BytesPerImage">Planned bytes per image (0 when <see cref="RuntimeOptions.ImagesPerRun"/> fixed the images per run).</param>
/// <param name="ImagesPerRun">Images per ONNX Runtime run.</param>
internal sealed record TapPlan(long ResidentBytes, long BytesPerImage, int ImagesPerRun);

/// <summary>
/// The one streaming tensor tap: every pass that needs intermediate tensors of the full-precision model (activation ranges,
/// the GPTQ statistics H = Σxxᵀ, OMPQ features, CLADO's exposed states) asks here. The tap adds the tensors as outputs of one
/// session and runs the images in micro-batches sized so that the tensors of one micro-batch fit the memory budget
/// (<see cref="RuntimeOptions.MaxMemory"/>); each micro-batch's tensors live only during the caller's callback.
/// </summary>
internal sealed class TensorTap
{
    static readonly ConditionalWeakTable<OnnxModel, TensorFootprint> Footprints = new();

    /// <summary>A tap on <paramref name="model"/> (a prepared model: batch dimension symbolic), called <paramref name="name"/> in messages (default: its source).</summary>
    public TensorTap(OnnxModel model, RuntimeOptions? runtime = null, string? name = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        Model = model;
        Runtime = runtime ?? RuntimeOptions.Default;
        Name = name ?? model.Source;
    }

    /// <summary>What messages call the tapped model.</summary>
    public string Name { get; }

    /// <summary>The tapped model.</summary>
    public OnnxModel Model { get; }

    /// <summary>Session settings and the memory budget.</summary>
    public RuntimeOptions Runtime { get; }

    /// <summary>The model's per-image footprint, measured once per model object on one image of <paramref name="data"/>.</summary>
    public TensorFootprint Footprint(Dataset data)
    {
        ArgumentNullException.ThrowIfNull(data);
        if (Footprints.TryGetValue(Model, out TensorFootprint? known)) { return known; }
        var footprint = Measure(data);
        Footprints.AddOrUpdate(Model, footprint);
        return footprint;
    }

    TensorFootprint Measure(Dataset data)
    {
        string[] tensors = [.. Model.NodeOutputs];
        OnnxModel exposed = Model.WithUntypedOutputs(tensors);
        using var session = OrtSessions.Create(exposed.ToBytes(), Runtime with { MemoryArena = false }, $"{Name} with every tensor exposed (footprint probe)");
        long[] shape = [1, .. data.SampleShape.Select(d => (long)d)];
        using var input = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, MemoryMarshal.AsMemory(data.Batch(0, 1)), shape);
        using var runOptions = new RunOptions();
        IDisposableReadOnlyCollection<OrtValue> outputs;
        try
        {
            outputs = session.Run(runOptions, [Model.InputName], [input], tensors);
        }
        catch (OnnxRuntimeException e)
        {
            throw Errors.Runtime($"ONNX Runtime failed on {Name} (footprint probe): {OrtSessions.OneLine(e.Message)}", e);
        }
        var bytes = new Dictionary<string, long>(StringComparer.Ordinal);
        long inputBytes = (long)data.SampleSize * sizeof(float);
        bytes[Model.InputName] = inputBytes;
        using (outputs)
        {
            for (int i = 0; i < tensors.Length; i++)
            {
                if (!outputs[i].IsTensor) { continue; }
                var info = outputs[i].GetTensorTypeAndShape();
                bytes[tensors[i]] = info.ElementCount * ElementBytes(info.ElementDataType);
            }
        }
        long peak = Model.PeakLiveBytes(t => bytes.TryGetValue(t, out long b) ? b : 0);
        NativeHeap.Trim();   // the probe's session and tensors are gone; their pages must not count as resident in the plan that follows
        return new TensorFootprint(bytes, inputBytes, peak);
    }

    static long ElementBytes(TensorElementType type) => type switch
    {
        TensorElementType.Double or TensorElementType.Int64 or TensorElementType.UInt64 => 8,
        TensorElementType.Float16 or TensorElementType.BFloat16 or TensorElementType.Int16 or TensorElementType.UInt16 => 2,
        TensorElementType.Int8 or TensorElementType.UInt8 or TensorElementType.Bool => 1,
        _ => 4,
    };

    /// <summary>
    /// Images per run of a pass exposing <paramref name="tensors"/>: at most <paramref name="wanted"/>, fewer if the budget says so
    /// (<see cref="RuntimeOptions.ImagesPerRun"/> overrides).
    /// </summary>
    /// <exception cref="BitBudgetException">Not even one image fits the budget.</exception>
    public int ImagesPerRun(Dataset data, IEnumerable<string> tensors, int wanted, string what, long extraBytesPerImage = 0) =>
        Plan(data, tensors, wanted, what, extraBytesPerImage).ImagesPerRun;

    /// <summary>
    /// As <see cref="ImagesPerRun"/>, with the resident set and bytes per image it was sized from. Call it once the session that
    /// will run the images exists: the resident set must include it.
    /// </summary>
    internal TapPlan Plan(Dataset data, IEnumerable<string> tensors, int wanted, string what, long extraBytesPerImage = 0)
    {
        if (Runtime.ImagesPerRun > 0) { return new TapPlan(ProcessMemory.CurrentRss, 0, Math.Min(Runtime.ImagesPerRun, Math.Max(1, wanted))); }
        long perImage = Footprint(data).RunBytes(tensors) + extraBytesPerImage;
        // Garbage the GC has not collected yet would shrink the micro-batches (or stop the pass) for nothing: collect first when
        // the wanted images do not fit beside the resident set as it is. (ResNet-18's default sensitivity held 1 GB of garbage
        // from loading and splitting the images when its calibration pass started.)
        long resident = ProcessMemory.CurrentRss;
        if (resident + perImage * Math.Max(1, wanted) > Runtime.MaxMemory) { resident = ProcessMemory.RssAfterCollecting(); }
        return new TapPlan(resident, perImage, MemoryBudget.ImagesPerRun(Runtime, perImage, wanted, what, resident));
    }

    /// <summary>
    /// The session that runs a pass with <paramref name="fetched"/> exposed: without ORT's arena and memory patterns, like the
    /// footprint probe, so that a run allocates what the probe measured and gives it back when its outputs are disposed. An
    /// arena keeps the largest run's blocks for the session's lifetime. Measured on ResNet-18's calibration pass (64 images per
    /// run, planned 1,064 MiB per run with the slack): with the arena the resident set grew by 1,006 MiB and stayed there,
    /// without it the pass peaked 430 MiB above its start, at 24 % more CPU time (page faults; docs/memory.md).
    /// </summary>
    InferenceSession CreateSession(string[] fetched)
    {
        // A pass that only reads the model's outputs (the export check) runs the model as it is: no copy of it to serialize.
        bool asIs = fetched.All(t => Model.Graph.Output.Any(o => o.Name == t));
        return OrtSessions.Create(asIs ? Model.ToBytes() : Model.WithOutputs(fetched).ToBytes(), Runtime with { MemoryArena = false },
            asIs ? Name : $"{Name} with {fetched.Length} exposed tensors");
    }

    /// <summary><paramref name="images"/> rounded down to a multiple of <paramref name="align"/>, or to a power of two below it.</summary>
    internal static int Align(int images, int align)
    {
        if (align <= 1 || images <= 1) { return Math.Max(1, images); }
        return images >= align ? images - images % align : 1 << System.Numerics.BitOperations.Log2((uint)images);
    }

    /// <summary>
    /// Runs the first <paramref name="count"/> images of <paramref name="data"/> with <paramref name="tensors"/> exposed (the data
    /// input's name gives the input itself), at most <paramref name="maxImagesPerRun"/> images per run and fewer if the budget
    /// says so, and hands each micro-batch's tensors to <paramref name="onBatch"/> (start, images, tensors by name). Nothing is
    /// kept after the callback returns. The images per run are planned once the pass's session is built, so the resident set
    /// they are fitted beside includes it (its weights, prepacked copies, the serialized model). When
    /// <paramref name="alignImages"/> is above 1 (a power of two), every micro-batch but the last holds a multiple of this many images (or, if fewer fit, a power of two): a pass that sums in fixed chunks of images
    /// then gets the same chunks, so the same sums, whatever the budget.
    /// </summary>
    /// <returns>The plan the pass ran with (images per run after alignment).</returns>
    public TapPlan Stream(Dataset data, int count, IReadOnlyList<string> tensors, int maxImagesPerRun,
        Action<int, int, IReadOnlyDictionary<string, CapturedTensor>> onBatch, IProgress<int>? progress = null, CancellationToken cancel = default,
        string what = "the tensor pass", int alignImages = 1)
    {
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentNullException.ThrowIfNull(onBatch);
        count = Math.Min(count, data.Count);
        if (count == 0) { return new TapPlan(ProcessMemory.CurrentRss, 0, 0); }
        string inputName = Model.InputName;
        string[] fetched = [.. tensors.Where(t => t != inputName).Distinct(StringComparer.Ordinal)];
        // ORT needs one output even when the caller only wants the input.
        string[] run = fetched.Length > 0 ? fetched : [Model.OutputName];
        // The probe first, so that its own session and one image's every tensor do not come on top of this pass's session.
        if (Runtime.ImagesPerRun <= 0) { _ = Footprint(data); }
        // Then the session, then the plan: planned before the session existed, ResNet-18's calibration pass left out its 257 MiB
        // (weights, prepacked weights, the serialized model) and, fitting on paper, did not collect the 1 GB of garbage either.
        using var session = CreateSession(fetched);
        TapPlan plan = Plan(data, run, Math.Min(count, Math.Max(1, maxImagesPerRun)), what);
        int micro = Align(plan.ImagesPerRun, alignImages);
        using var runOptions = new RunOptions();
        for (int start = 0; start < count; start += micro)
        {
            cancel.ThrowIfCancellationRequested();
            int n = Math.Min(micro, count - start);
            long[] shape = [n, .. data.SampleShape.Select(d => (long)d)];
            using var input = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, MemoryMarshal.AsMemory(data.Batch(start, n)), shape);
            IDisposableReadOnlyCollection<OrtValue> outputs;
            try
            {
                outputs = session.Run(runOptions, [inputName], [input], run);
            }
            catch (OnnxRuntimeException e)
            {
                throw Errors.Runtime(
                    $"ONNX Runtime cannot run {Name} on a batch of shape [{string.Join(",", shape)}]: {OrtSessions.OneLine(e.Message)}", e);
            }
            using (outputs)
            {
                var map = new Dictionary<string, CapturedTensor>(tensors.Count, StringComparer.Ordinal);
                for (int i = 0; i < fetched.Length; i++) { map[fetched[i]] = new CapturedTensor(outputs[i]); }
                if (tensors.Contains(inputName)) { map[inputName] = new CapturedTensor(input); }
                onBatch(start, n, map);
            }
            // Without the arena the run's tensors went back to malloc; the ones glibc kept in its main heap go back to the system
            // here, so the next micro-batch starts from the planned resident set (see NativeHeap).
            NativeHeap.Trim();
            progress?.Report(start + n);
        }
        return plan with { ImagesPerRun = micro };
    }
}

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

/// <summary>
/// The one streaming tensor tap: every pass that needs intermediate tensors of the full-precision model (activation ranges,
/// the GPTQ statistics H = Σxxᵀ, OMPQ features, CLADO's exposed states) asks here. The tap adds the tensors as outputs of one
/// session and runs the images in micro-batches sized so that the tensors of one micro-batch fit the memory budget
/// (<see cref="RuntimeOptions.MaxMemory"/>); each micro-batch's tensors live only during the caller's callback.
/// </summary>
internal sealed class TensorTap
{
    static readonly ConditionalWeakTable<OnnxModel, TensorFootprint> Footprints = new();

    /// <summary>A tap on <paramref name="model"/> (a prepared model: batch dimension symbolic).</summary>
    public TensorTap(OnnxModel model, RuntimeOptions? runtime = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        Model = model;
        Runtime = runtime ?? RuntimeOptions.Default;
    }

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
        using var session = OrtSessions.Create(exposed.ToBytes(), Runtime with { MemoryArena = false }, $"{Model.Source} with every tensor exposed (footprint probe)");
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
            throw Errors.Runtime($"ONNX Runtime failed on {Model.Source} (footprint probe): {OrtSessions.OneLine(e.Message)}", e);
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
    public int ImagesPerRun(Dataset data, IEnumerable<string> tensors, int wanted, string what, long extraBytesPerImage = 0)
    {
        if (Runtime.ImagesPerRun > 0) { return Math.Min(Runtime.ImagesPerRun, Math.Max(1, wanted)); }
        long perImage = Footprint(data).RunBytes(tensors) + extraBytesPerImage;
        // Garbage the GC has not collected yet would shrink the micro-batches (or stop the pass) for nothing: collect first when
        // the wanted images do not fit beside the resident set as it is.
        long? resident = ProcessMemory.CurrentRss + perImage * Math.Max(1, wanted) > Runtime.MaxMemory ? ProcessMemory.RssAfterCollecting() : null;
        return MemoryBudget.ImagesPerRun(Runtime, perImage, wanted, what, resident);
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
    /// kept after the callback returns. When <paramref name="alignImages"/> is above 1 (a power of two), every micro-batch but the
    /// last holds a multiple of this many images (or, if fewer fit, a power of two): a pass that sums in fixed chunks of images
    /// then gets the same chunks, so the same sums, whatever the budget.
    /// </summary>
    public void Stream(Dataset data, int count, IReadOnlyList<string> tensors, int maxImagesPerRun,
        Action<int, int, IReadOnlyDictionary<string, CapturedTensor>> onBatch, IProgress<int>? progress = null, CancellationToken cancel = default,
        string what = "the tensor pass", int alignImages = 1)
    {
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentNullException.ThrowIfNull(onBatch);
        count = Math.Min(count, data.Count);
        if (count == 0) { return; }
        string inputName = Model.InputName;
        string[] fetched = [.. tensors.Where(t => t != inputName).Distinct(StringComparer.Ordinal)];
        // ORT needs one output even when the caller only wants the input.
        string[] run = fetched.Length > 0 ? fetched : [Model.OutputName];
        int micro = Align(ImagesPerRun(data, run, Math.Min(count, Math.Max(1, maxImagesPerRun)), what), alignImages);
        OnnxModel exposed = Model.WithOutputs(fetched);
        using var session = OrtSessions.Create(exposed.ToBytes(), Runtime, $"{Model.Source} with {fetched.Length} exposed tensors");
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
                    $"ONNX Runtime cannot run {Model.Source} on a batch of shape [{string.Join(",", shape)}]: {OrtSessions.OneLine(e.Message)}", e);
            }
            using (outputs)
            {
                var map = new Dictionary<string, CapturedTensor>(tensors.Count, StringComparer.Ordinal);
                for (int i = 0; i < fetched.Length; i++) { map[fetched[i]] = new CapturedTensor(outputs[i]); }
                if (tensors.Contains(inputName)) { map[inputName] = new CapturedTensor(input); }
                onBatch(start, n, map);
            }
            progress?.Report(start + n);
        }
    }
}

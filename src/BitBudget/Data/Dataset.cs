using BitBudget.Runtime;

namespace BitBudget.Data;

/// <summary>
/// Decoded, normalized images with labels, held contiguously so batches are slices without copies.
/// Immutable; <see cref="Subset"/> makes new instances.
/// </summary>
public sealed class Dataset
{
    readonly SpillableArray<float> _images;
    readonly int[] _labels;
    readonly string[] _ids;

    internal Dataset(float[] images, int[] labels, string[] ids, int[] sampleShape, IReadOnlyList<string> classNames, string description, string hash,
        int labelOffset = 0)
        : this(new SpillableArray<float>(images), labels, ids, sampleShape, classNames, description, hash, labelOffset)
    {
    }

    Dataset(SpillableArray<float> images, int[] labels, string[] ids, int[] sampleShape, IReadOnlyList<string> classNames, string description, string hash,
        int labelOffset)
    {
        LabelOffset = labelOffset;
        _images = images;
        _labels = labels;
        _ids = ids;
        SampleShape = sampleShape;
        SampleSize = sampleShape.Aggregate(1, (a, b) => a * b);
        ClassNames = classNames;
        Description = description;
        Hash = hash;
        if (images.Length != (long)labels.Length * SampleSize) { throw new ArgumentException("Image buffer does not match the labels and the sample shape."); }
    }

    /// <summary>Wraps arrays that are already normalized (e.g. for library users and tests); the hash covers the values.</summary>
    public static Dataset FromArrays(float[] images, int[] labels, int[] sampleShape, IReadOnlyList<string>? classNames = null, string description = "(in memory)")
    {
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(labels);
        string hash = Internals.Hashing.Sha256Hex(System.Runtime.InteropServices.MemoryMarshal.AsBytes(images.AsSpan()).ToArray())[..16];
        var ids = Enumerable.Range(0, labels.Length).Select(i => $"{hash}#{i}").ToArray();
        classNames ??= Enumerable.Range(0, labels.Length == 0 ? 0 : labels.Max() + 1).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        return new Dataset(images, labels, ids, sampleShape, classNames, description, hash);
    }

    /// <summary>Number of images.</summary>
    public int Count => _labels.Length;

    /// <summary>Shape of one image as the model sees it without the batch dimension ([C,H,W] or [H,W,C]).</summary>
    public IReadOnlyList<int> SampleShape { get; }

    /// <summary>Values per image.</summary>
    public int SampleSize { get; }

    /// <summary>Class names in label order.</summary>
    public IReadOnlyList<string> ClassNames { get; }

    /// <summary>
    /// False for unlabeled data (an unlabeled flat folder: every label -1, no class names). Such data serves where no label
    /// is read (calibration, KL/MSE losses, held-out KL); <see cref="RequireLabels(string)"/> guards the rest.
    /// </summary>
    public bool IsLabeled => LabelRule.Present(ClassNames);

    /// <summary>Throws a one-line <see cref="ErrorKind.InvalidInput"/> error when this data has no labels and <paramref name="why"/> needs them.</summary>
    /// <param name="why">What needs the labels, e.g. "Top-1/top-5 evaluation".</param>
    public void RequireLabels(string why) => RequireLabels(why, null);

    /// <summary>As <see cref="RequireLabels(string)"/>, naming a label-free way to do the same (e.g. "a label-free loss (--loss kl|mse)").</summary>
    internal void RequireLabels(string why, string? alternative)
    {
        if (!IsLabeled) { throw LabelRule.Missing($"the data {Description}", why, alternative); }
    }

    /// <summary>Added to the source's labels to get the model's class indices (e.g. 1 when the model's class 0 is a background class).</summary>
    public int LabelOffset { get; }

    /// <summary>Model class indices this data needs: its classes plus <see cref="LabelOffset"/>.</summary>
    public int ClassCount => ClassNames.Count + LabelOffset;

    /// <summary>Labels (model class indices, <see cref="LabelOffset"/> included), one per image.</summary>
    public ReadOnlySpan<int> Labels => _labels;

    /// <summary>All images, contiguous.</summary>
    public ReadOnlyMemory<float> Images => _images.Value;

    /// <summary>Identity of every image (file path, or container path and row), to detect overlapping datasets.</summary>
    public IReadOnlyList<string> Ids => _ids;

    /// <summary>Source, kind, split and selection, in one line.</summary>
    public string Description { get; }

    /// <summary>Hash of the selected files and the preprocessing; keys caches and measurement stores.</summary>
    public string Hash { get; }

    /// <summary>Images <paramref name="start"/> … <paramref name="start"/>+<paramref name="count"/>−1, contiguous.</summary>
    public ReadOnlyMemory<float> Batch(int start, int count) => _images.Value.AsMemory(start * SampleSize, count * SampleSize);

    /// <summary>
    /// Moves the images to a temporary file until they are next read (<see cref="SpillableArray{T}"/>), for a stage that will not
    /// read them for a while and wants the memory: CLADO's measurement spills the calibration set. Returns the bytes freed.
    /// </summary>
    internal long Spill() => _images.Spill();

    /// <summary>True while the images are in their temporary file (tests).</summary>
    internal bool IsSpilled => _images.IsSpilled;

    /// <summary>Labels of the same range as <see cref="Batch"/>.</summary>
    public ReadOnlySpan<int> BatchLabels(int start, int count) => _labels.AsSpan(start, count);

    /// <summary>The images at <paramref name="indices"/>, in that order.</summary>
    public Dataset Subset(IReadOnlyList<int> indices, string? description = null)
    {
        ArgumentNullException.ThrowIfNull(indices);
        var images = new float[indices.Count * SampleSize];
        var labels = new int[indices.Count];
        var ids = new string[indices.Count];
        ReadOnlySpan<float> source = _images.Value;
        for (int i = 0; i < indices.Count; i++)
        {
            int k = indices[i];
            source.Slice(k * SampleSize, SampleSize).CopyTo(images.AsSpan(i * SampleSize));
            labels[i] = _labels[k];
            ids[i] = _ids[k];
        }
        string hash = Internals.Hashing.Sha256Hex(System.Text.Encoding.UTF8.GetBytes(Hash + ":" + string.Join(',', indices)))[..16];
        return new Dataset(images, labels, ids, [.. SampleShape], ClassNames, description ?? $"{Description}, subset of {indices.Count}", hash, LabelOffset);
    }

    /// <summary>The same images with <paramref name="offset"/> added to every label (on top of the current offset); splits made
    /// before stay defined on the source's own labels.</summary>
    public Dataset WithLabelOffset(int offset)
    {
        if (offset < 0) { throw Errors.InvalidInput($"The label offset must be 0 or more, got {offset}."); }
        if (offset == 0) { return this; }
        int[] labels = [.. _labels.Select(l => l < 0 ? l : l + offset)];   // unlabeled (-1) stays unlabeled
        string hash = Internals.Hashing.Sha256Hex(System.Text.Encoding.UTF8.GetBytes($"{Hash}:label-offset={offset}"))[..Hash.Length];
        return new Dataset(_images, labels, _ids, [.. SampleShape], ClassNames, $"{Description}, labels +{LabelOffset + offset}", hash, LabelOffset + offset);
    }

    /// <summary>A deterministic random draw of <paramref name="count"/> images (all if fewer), in ascending index order.</summary>
    public Dataset Sample(int count, int seed)
    {
        int[] order = Enumerable.Range(0, Count).ToArray();
        new Random(seed).Shuffle(order);
        int[] chosen = order[..Math.Min(count, Count)];
        Array.Sort(chosen);
        return Subset(chosen, $"{Description}, {chosen.Length} drawn with seed {seed}");
    }

    /// <summary>How many images this dataset shares with <paramref name="other"/>.</summary>
    public int OverlapWith(Dataset other)
    {
        ArgumentNullException.ThrowIfNull(other);
        var set = new HashSet<string>(_ids, StringComparer.Ordinal);
        return other._ids.Count(set.Contains);
    }
}

using System.Runtime.InteropServices;

namespace BitBudget.Data;

/// <summary>Loads a labeled image source into a <see cref="Dataset"/>: enumerate, split, subset, decode in parallel, cache.</summary>
public static class DatasetLoader
{
    /// <summary>Names accepted by <see cref="DataOptions.Split"/>.</summary>
    public static IReadOnlyList<string> SplitNames { get; } = ["all", "even-classes", "odd-classes"];

    /// <summary>Loads the images <paramref name="options"/> select; decoded tensors come from the cache when present.</summary>
    /// <param name="options">Source, preprocessing and selection.</param>
    /// <param name="progress">Receives the number of images decoded so far (not called on a cache hit).</param>
    /// <param name="warnings">Receives one line per skipped image.</param>
    /// <param name="total">Receives the number of images selected, before any is decoded (a progress bar's total).</param>
    public static Dataset Load(DataOptions options, IProgress<int>? progress = null, Action<string>? warnings = null, Action<int>? total = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.LabelOffset != 0)
        {
            // The split and the cache see the source's own labels; only the loaded labels move.
            return Load(options with { LabelOffset = 0 }, progress, warnings).WithLabelOffset(options.LabelOffset);
        }
        Preprocessing pre = options.Preprocessing.Validated();
        if (options.Limit is <= 0) { throw Errors.InvalidInput($"--limit must be positive, got {options.Limit}."); }
        DataSource source = DataSource.Open(options.Path, options.ClassList);
        DataItem[] items = Select(source, options);
        if (items.Length == 0)
        {
            throw Errors.InvalidInput($"Split '{options.Split}' of '{options.Path}' selects no images.");
        }

        string selection = $"{options.Split}" + (options.Limit is int n ? $", {Math.Min(n, items.Length)} of them" + (options.Seed is int s ? $" drawn with seed {s}" : " (first in order)") : "");
        string classes = source.IsLabeled ? $", {source.ClassNames.Count} classes" : "";
        string description = $"{source.Path} ({source.Kind}{classes}, split {selection}: {items.Length} images)";
        total?.Invoke(items.Length);
        // Keyed on content, not on path/size/mtime (a file rewritten with its mtime restored must not return stale tensors),
        // and on every option that changes the result.
        string key = Internals.Hashing.Sha256Hex(System.Text.Encoding.UTF8.GetBytes(
            string.Join('\n', "bitbudget-data-v2", ContentHash(source, items, options.Threads), pre.Fingerprint(), $"skip-bad-images={options.SkipBadImages}",
                string.Join(',', source.ClassNames), string.Join(',', items.Select(i => $"{i.Id}:{i.Label}")))))[..24];

        string? cacheDir = CacheFolder(options.CacheDirectory);
        string? cacheFile = cacheDir is null ? null : Path.Combine(cacheDir, $"{key}.bin");
        if (cacheFile is not null && DataCache.TryRead(cacheFile, items, out float[]? cachedImages, out int[]? shape, out bool[]? kept))
        {
            return Build(items, kept!, cachedImages!, shape!, source, description, key);
        }

        var decoder = new ImageDecoder(source, pre);
        (float[] images, int[] sampleShape, bool[] ok) = Decode(items, decoder, pre, options, progress, warnings);
        if (cacheFile is not null)
        {
            DataCache.Write(cacheFile, images, sampleShape, ok);
        }
        return Build(items, ok, images, sampleShape, source, description, key);
    }

    /// <summary>
    /// XxHash128 of what the selected images are made of: every image file's bytes (hashed in parallel), or a container's pixels.
    /// On the 10k CIFAR-10 test JPEGs this is what a cached load costs beyond reading the cache (bench data-cache).
    /// </summary>
    static string ContentHash(DataSource source, DataItem[] items, int threads)
    {
        var hash = new System.IO.Hashing.XxHash128();
        if (source.RawPixels is byte[] pixels)
        {
            hash.Append(pixels);
        }
        else
        {
            var files = new UInt128[items.Length];
            Parallel.For(0, items.Length, new ParallelOptions { MaxDegreeOfParallelism = threads > 0 ? threads : Environment.ProcessorCount }, i =>
            {
                try
                {
                    files[i] = System.IO.Hashing.XxHash128.HashToUInt128(File.ReadAllBytes(items[i].Id));
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    files[i] = UInt128.MaxValue;   // unreadable: the decoder reports (or skips) it
                }
            });
            hash.Append(MemoryMarshal.AsBytes(files.AsSpan()));
        }
        return Convert.ToHexStringLower(hash.GetCurrentHash());
    }

    static DataItem[] Select(DataSource source, DataOptions options)
    {
        if (options.Split != "all") { source.RequireLabels($"Split '{options.Split}' (it selects by class)", "the plain split 'all'"); }
        IEnumerable<DataItem> items = options.Split switch
        {
            "all" => source.Items,
            "even-classes" => source.Items.Where(i => i.Label % 2 == 0),
            "odd-classes" => source.Items.Where(i => i.Label % 2 == 1),
            _ => throw Errors.InvalidInput($"Unknown split '{options.Split}'; expected one of {string.Join(", ", SplitNames)}."),
        };
        DataItem[] selected = [.. items];
        if (options.Limit is int limit && limit < selected.Length)
        {
            if (options.Seed is int seed)
            {
                int[] order = Enumerable.Range(0, selected.Length).ToArray();
                new Random(seed).Shuffle(order);
                int[] chosen = order[..limit];
                Array.Sort(chosen);
                selected = chosen.Select(i => selected[i]).ToArray();
            }
            else
            {
                // First images of every class in turn, so a small limit still covers the classes (unlabeled: one
                // group of label -1, i.e. simply the first images in order).
                selected = selected.Select((item, i) => (item, i)).GroupBy(t => t.item.Label)
                    .SelectMany(g => g.Select((t, rank) => (t.item, t.i, rank)))
                    .OrderBy(t => t.rank).ThenBy(t => t.i).Take(limit).OrderBy(t => t.i).Select(t => t.item).ToArray();
            }
        }
        return selected;
    }

    static (float[] Images, int[] Shape, bool[] Ok) Decode(DataItem[] items, ImageDecoder decoder, Preprocessing pre, DataOptions options,
        IProgress<int>? progress, Action<string>? warnings)
    {
        // The first readable image fixes the size every other image must have.
        int first = 0;
        (byte[] Rgba, int Height, int Width)? probe = null;
        var ok = new bool[items.Length];
        for (; first < items.Length && probe is null; first++)
        {
            probe = decoder.Decode(items[first]);
            if (probe is null) { BadImage(items[first], options, warnings); }
        }
        if (probe is not (var rgba0, int height, int width))
        {
            throw Errors.InvalidInput($"No image of '{options.Path}' could be decoded.");
        }
        first--;
        int channels = pre.Channels;
        int[] shape = pre.Layout == TensorLayout.Nchw ? [channels, height, width] : [height, width, channels];
        int sampleSize = channels * height * width;
        var images = new float[(long)items.Length * sampleSize];
        decoder.Normalize(rgba0, height, width, images.AsSpan(first * sampleSize, sampleSize));
        ok[first] = true;

        int done = first + 1;
        var parallel = new ParallelOptions { MaxDegreeOfParallelism = options.Threads > 0 ? options.Threads : Environment.ProcessorCount };
        try
        {
            Parallel.For(first + 1, items.Length, parallel, i =>
            {
                var decoded = decoder.Decode(items[i]);
                if (decoded is (var rgba, int h, int w))
                {
                    if (h != height || w != width)
                    {
                        throw Errors.InvalidInput(
                            $"Image '{items[i].Id}' is {w}×{h} but '{items[first].Id}' is {width}×{height}; mixed sizes need a resize and crop (e.g. --resize {Math.Max(height, width)} --crop {Math.Min(height, width)}).");
                    }
                    decoder.Normalize(rgba, h, w, images.AsSpan(i * sampleSize, sampleSize));
                    ok[i] = true;
                }
                else
                {
                    BadImage(items[i], options, warnings);
                }
                int now = Interlocked.Increment(ref done);
                if (now % 64 == 0) { progress?.Report(now); }
            });
        }
        catch (AggregateException e) when (e.InnerExceptions.FirstOrDefault(x => x is BitBudgetException) is BitBudgetException inner)
        {
            throw new BitBudgetException(inner.Kind, inner.Message, e);   // the user sees one line, not a parallel-loop wrapper
        }
        progress?.Report(items.Length);
        return (images, shape, ok);
    }

    static void BadImage(DataItem item, DataOptions options, Action<string>? warnings)
    {
        if (!options.SkipBadImages)
        {
            throw Errors.InvalidInput($"Image '{item.Id}' cannot be decoded (corrupt or not an image); pass --skip-bad-images to skip it.");
        }
        warnings?.Invoke($"skipped unreadable image '{item.Id}'");
    }

    static Dataset Build(DataItem[] items, bool[] ok, float[] images, int[] shape, DataSource source, string description, string key)
    {
        int sampleSize = shape.Aggregate(1, (a, b) => a * b);
        int count = ok.Count(k => k);
        if (count != items.Length)
        {
            // Compact the decoded images over the skipped slots.
            int w = 0;
            for (int i = 0; i < items.Length; i++)
            {
                if (!ok[i]) { continue; }
                if (w != i) { images.AsSpan(i * sampleSize, sampleSize).CopyTo(images.AsSpan(w * sampleSize)); }
                w++;
            }
            Array.Resize(ref images, count * sampleSize);
            description += $", {items.Length - count} unreadable skipped";
        }
        var labels = new int[count];
        var ids = new string[count];
        for (int i = 0, w = 0; i < items.Length; i++)
        {
            if (!ok[i]) { continue; }
            labels[w] = items[i].Label;
            ids[w++] = items[i].Id;
        }
        return new Dataset(images, labels, ids, shape, source.ClassNames, description, key);
    }

    static string? CacheFolder(string? configured)
    {
        if (configured is "") { return null; }
        string dir = configured
            ?? Environment.GetEnvironmentVariable("BITBUDGET_CACHE")
            ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "bitbudget", "data");
        try
        {
            Directory.CreateDirectory(dir);
            return dir;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;   // a read-only home must not stop evaluation; it only costs the decode
        }
    }
}

/// <summary>On-disk cache of decoded tensors: a small header, the kept flags and the raw floats.</summary>
internal static class DataCache
{
    const int Magic = 0x43444242;   // "BBDC"

    public static bool TryRead(string path, DataItem[] items, out float[]? images, out int[]? shape, out bool[]? kept)
    {
        images = null; shape = null; kept = null;
        if (!File.Exists(path)) { return false; }
        try
        {
            using var stream = File.OpenRead(path);
            using var reader = new BinaryReader(stream);
            if (reader.ReadInt32() != Magic || reader.ReadInt32() != items.Length) { return false; }
            shape = [reader.ReadInt32(), reader.ReadInt32(), reader.ReadInt32()];
            kept = new bool[items.Length];
            for (int i = 0; i < kept.Length; i++) { kept[i] = reader.ReadBoolean(); }
            int sampleSize = shape[0] * shape[1] * shape[2];
            images = new float[(long)items.Length * sampleSize];
            stream.ReadExactly(MemoryMarshal.AsBytes(images.AsSpan()));
            return stream.Position == stream.Length;
        }
        catch (Exception e) when (e is IOException or EndOfStreamException)
        {
            return false;   // a damaged cache entry is decoded again and rewritten
        }
    }

    public static void Write(string path, float[] images, int[] shape, bool[] kept)
    {
        try
        {
            Internals.AtomicFile.Write(path, temp =>
            {
                using var stream = File.Create(temp);
                using var writer = new BinaryWriter(stream);
                writer.Write(Magic);
                writer.Write(kept.Length);
                foreach (int d in shape) { writer.Write(d); }
                foreach (bool k in kept) { writer.Write(k); }
                writer.Flush();
                stream.Write(MemoryMarshal.AsBytes(images.AsSpan()));
            });
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The cache is an optimization; a full disk must not fail the run.
        }
    }
}

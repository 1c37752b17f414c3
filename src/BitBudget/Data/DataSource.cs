using System.IO.Compression;

namespace BitBudget.Data;

/// <summary>One labeled image of a source, before decoding.</summary>
/// <param name="Id">Identity used for overlap checks: the file path, or the container path with a <c>#row</c>.</param>
/// <param name="Label">Class index, or -1 in an unlabeled source.</param>
/// <param name="Row">Row inside a container file (CSV/IDX), or -1 for an image file.</param>
internal readonly record struct DataItem(string Id, int Label, int Row);

/// <summary>What kind of source a path is, and its items and class names in label order.</summary>
internal sealed class DataSource
{
    public required string Kind { get; init; }
    public required string Path { get; init; }
    public required IReadOnlyList<string> ClassNames { get; init; }
    public required DataItem[] Items { get; init; }

    /// <summary>Kind of a flat folder whose file names carry no <c>&lt;class&gt;_</c> prefix: every label is -1, no class names.</summary>
    public const string UnlabeledKind = "unlabeled flat folder";

    /// <summary>False for an unlabeled flat folder (labels -1): usable where no label is read (calibration, KL/MSE losses).</summary>
    public bool IsLabeled => LabelRule.Present(ClassNames);

    /// <summary>Throws the one-line error for using an unlabeled source where <paramref name="why"/> needs labels.</summary>
    /// <param name="why">What needs the labels.</param>
    /// <param name="alternative">A label-free way to do the same, when there is one (e.g. "a plain split (--calib-split all)").</param>
    public void RequireLabels(string why, string? alternative = null)
    {
        if (!IsLabeled) { throw LabelRule.Missing($"'{Path}'", why, alternative); }
    }

    /// <summary>Raw pixels of container sources (CSV/IDX): per row, H·W·channels bytes.</summary>
    public byte[]? RawPixels { get; init; }
    public int RawHeight { get; init; }
    public int RawWidth { get; init; }
    public int RawChannels { get; init; }

    static readonly string[] s_imageExtensions = [".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif"];

    public static DataSource Open(string path, string? classList)
    {
        if (Directory.Exists(path)) { return OpenFolder(System.IO.Path.GetFullPath(path), classList); }
        if (!File.Exists(path)) { throw Errors.FileNotFound($"Data source '{path}' does not exist."); }
        string full = System.IO.Path.GetFullPath(path);
        string name = System.IO.Path.GetFileName(full).ToLowerInvariant();
        if (name.EndsWith(".csv", StringComparison.Ordinal)) { return OpenCsv(full); }
        if (name.Contains("idx3", StringComparison.Ordinal)) { return OpenIdx(full); }
        throw Errors.InvalidInput(
            $"Data source '{path}' is neither a folder, an IDX images file (*-images-idx3-ubyte[.gz]) nor an ERAN-style .csv.");
    }

    static DataSource OpenFolder(string root, string? classListPath)
    {
        string[] subfolders = Directory.GetDirectories(root).Select(System.IO.Path.GetFileName).OfType<string>()
            .Where(d => !d.StartsWith('.')).Order(StringComparer.Ordinal).ToArray();
        string[]? classList = classListPath is null ? null : ReadClassList(classListPath);
        var items = new List<DataItem>();
        string kind;
        IReadOnlyList<string> classes;
        if (subfolders.Length > 0)
        {
            kind = "class folders";
            classes = classList ?? subfolders;
            var index = IndexOf(classes);
            foreach (string folder in subfolders)
            {
                if (!index.TryGetValue(folder, out int label))
                {
                    throw Errors.InvalidInput(
                        $"Class folder '{folder}' in '{root}' is not in the class list '{classListPath}'.");
                }
                foreach (string file in ImageFiles(System.IO.Path.Combine(root, folder)))
                {
                    items.Add(new DataItem(file, label, -1));
                }
            }
        }
        else
        {
            kind = "flat folder (class = file-name prefix before '_')";
            string[] files = ImageFiles(root);
            if (classList is null && files.Length > 0)
            {
                // Without a prefix the file name would become its own class: a meaningless top-1, so no labels at all.
                string? bare = files.FirstOrDefault(f => !HasClassPrefix(f));
                if (bare is not null)
                {
                    string? prefixed = files.FirstOrDefault(HasClassPrefix);
                    if (prefixed is not null)
                    {
                        throw Errors.InvalidInput(
                            $"Flat folder '{root}' mixes '<class>_name' files ('{System.IO.Path.GetFileName(prefixed)}') with files without a class prefix ('{System.IO.Path.GetFileName(bare)}'); name them all one way, or use class subfolders.");
                    }
                    return new DataSource
                    {
                        Kind = UnlabeledKind, Path = root, ClassNames = [], Items = [.. files.Select(f => new DataItem(f, -1, -1))],
                    };
                }
            }
            var keys = files.Select(f => ClassKey(System.IO.Path.GetFileName(f))).ToArray();
            classes = classList ?? keys.Distinct().Order(StringComparer.Ordinal).ToArray();
            var index = IndexOf(classes);
            for (int i = 0; i < files.Length; i++)
            {
                if (!index.TryGetValue(keys[i], out int label))
                {
                    throw Errors.InvalidInput(
                        $"Image '{files[i]}' has class '{keys[i]}', which is not in the class list '{classListPath}'.");
                }
                items.Add(new DataItem(files[i], label, -1));
            }
        }
        if (items.Count == 0)
        {
            throw Errors.InvalidInput($"Data folder '{root}' contains no images ({string.Join("/", s_imageExtensions)}).");
        }
        return new DataSource { Kind = kind, Path = root, ClassNames = classes, Items = [.. items] };
    }

    static bool HasClassPrefix(string file) => System.IO.Path.GetFileName(file).IndexOf('_', StringComparison.Ordinal) > 0;

    static string ClassKey(string fileName)
    {
        int underscore = fileName.IndexOf('_', StringComparison.Ordinal);
        return underscore > 0 ? fileName[..underscore] : System.IO.Path.GetFileNameWithoutExtension(fileName);
    }

    static string[] ImageFiles(string folder) => Directory.GetFiles(folder)
        .Where(f => s_imageExtensions.Contains(System.IO.Path.GetExtension(f).ToLowerInvariant()))
        .Order(StringComparer.Ordinal).ToArray();

    static string[] ReadClassList(string path)
    {
        if (!File.Exists(path)) { throw Errors.FileNotFound($"Class list '{path}' does not exist."); }
        string[] keys = File.ReadAllLines(path).Select(l => l.Trim()).Where(l => l.Length > 0)
            .Select(l => l.Split((char[]?)null, 2, StringSplitOptions.RemoveEmptyEntries)[0]).ToArray();
        if (keys.Length == 0) { throw Errors.InvalidInput($"Class list '{path}' is empty."); }
        string? duplicate = keys.GroupBy(k => k).FirstOrDefault(g => g.Count() > 1)?.Key;
        if (duplicate is not null) { throw Errors.InvalidInput($"Class list '{path}' names '{duplicate}' twice."); }
        return keys;
    }

    static Dictionary<string, int> IndexOf(IReadOnlyList<string> classes)
    {
        var index = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < classes.Count; i++) { index[classes[i]] = i; }
        return index;
    }

    static DataSource OpenCsv(string path)
    {
        // ERAN layout: "label," then H·W·3 bytes in HWC order; the side is inferred from the row length.
        string[] lines = File.ReadAllLines(path).Where(l => l.Length > 0).ToArray();
        if (lines.Length == 0) { throw Errors.InvalidInput($"CSV data '{path}' has no rows."); }
        int values = lines[0].Count(c => c == ',');
        int channels = values % 3 == 0 && IsSquare(values / 3) ? 3 : 1;
        if (!IsSquare(values / channels))
        {
            throw Errors.InvalidInput($"CSV data '{path}': row 1 has {values} pixel values, not a square image of 1 or 3 channels.");
        }
        int side = (int)Math.Round(Math.Sqrt(values / channels));
        var pixels = new byte[lines.Length * values];
        var items = new DataItem[lines.Length];
        int maxLabel = 0;
        for (int row = 0; row < lines.Length; row++)
        {
            ReadOnlySpan<char> line = lines[row];
            int n = 0, label = -1;
            foreach (Range cell in line.Split(','))
            {
                if (!int.TryParse(line[cell], System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out int v)
                    || v < 0 || (n > 0 && v > 255) || n > values)
                {
                    throw Errors.InvalidInput($"CSV data '{path}': row {row + 1}, value {n + 1} is not a label or a 0..255 pixel.");
                }
                if (n == 0) { label = v; } else { pixels[row * values + n - 1] = (byte)v; }
                n++;
            }
            if (n != values + 1) { throw Errors.InvalidInput($"CSV data '{path}': row {row + 1} has {n - 1} pixel values, expected {values}."); }
            items[row] = new DataItem($"{path}#{row}", label, row);
            maxLabel = Math.Max(maxLabel, label);
        }
        var classes = Enumerable.Range(0, maxLabel + 1).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        return new DataSource
        {
            Kind = "ERAN CSV", Path = path, ClassNames = classes, Items = items, RawPixels = pixels,
            RawHeight = side, RawWidth = side, RawChannels = channels,
        };

        static bool IsSquare(int n) => n > 0 && (int)Math.Round(Math.Sqrt(n)) is int s && s * s == n;
    }

    static DataSource OpenIdx(string imagesPath)
    {
        string name = System.IO.Path.GetFileName(imagesPath);
        string labelsPath = System.IO.Path.Combine(System.IO.Path.GetDirectoryName(imagesPath)!,
            name.Replace("images-idx3", "labels-idx1", StringComparison.OrdinalIgnoreCase));
        if (!File.Exists(labelsPath)) { throw Errors.FileNotFound($"IDX labels '{labelsPath}' for '{imagesPath}' do not exist."); }
        byte[] images = ReadMaybeGzip(imagesPath), labels = ReadMaybeGzip(labelsPath);
        if (images.Length < 16 || BigEndian(images, 0) != 0x803)
        {
            throw Errors.InvalidInput($"'{imagesPath}' is not an IDX images file (magic 0x00000803).");
        }
        if (labels.Length < 8 || BigEndian(labels, 0) != 0x801)
        {
            throw Errors.InvalidInput($"'{labelsPath}' is not an IDX labels file (magic 0x00000801).");
        }
        int count = BigEndian(images, 4), rows = BigEndian(images, 8), cols = BigEndian(images, 12);
        if (BigEndian(labels, 4) != count || images.Length != 16 + (long)count * rows * cols || labels.Length != 8 + count)
        {
            throw Errors.InvalidInput($"IDX files '{imagesPath}' and '{labelsPath}' disagree on the image count or are truncated.");
        }
        var items = new DataItem[count];
        for (int i = 0; i < count; i++) { items[i] = new DataItem($"{imagesPath}#{i}", labels[8 + i], i); }
        int classes = labels.AsSpan(8).ToArray().Max() + 1;
        return new DataSource
        {
            Kind = "IDX", Path = imagesPath, Items = items, RawPixels = images[16..], RawHeight = rows, RawWidth = cols, RawChannels = 1,
            ClassNames = Enumerable.Range(0, classes).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray(),
        };
    }

    static byte[] ReadMaybeGzip(string path)
    {
        byte[] bytes = File.ReadAllBytes(path);
        if (bytes.Length < 2 || bytes[0] != 0x1f || bytes[1] != 0x8b) { return bytes; }
        using var gzip = new GZipStream(new MemoryStream(bytes), CompressionMode.Decompress);
        using var output = new MemoryStream();
        try
        {
            gzip.CopyTo(output);
        }
        catch (InvalidDataException e)
        {
            throw Errors.InvalidInput($"'{path}' is a corrupt gzip file: {e.Message}");
        }
        return output.ToArray();
    }

    static int BigEndian(byte[] b, int at) => System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(b.AsSpan(at));
}

namespace BitBudget.Data;

/// <summary>Which images to load from a data source and how to turn them into tensors.</summary>
public sealed record DataOptions
{
    /// <summary>A folder of class subfolders, a flat folder of <c>&lt;class&gt;_*.JPEG</c> files, an IDX images file (plain or .gz), or an ERAN-style CSV.</summary>
    public required string Path { get; init; }

    /// <summary>How each image becomes a tensor.</summary>
    public required Preprocessing Preprocessing { get; init; }

    /// <summary>Optional class-list file (one class key per line: folder name or file-name prefix) fixing the label order.</summary>
    public string? ClassList { get; init; }

    /// <summary>Named split applied before the limit: <c>all</c>, <c>even-classes</c>, <c>odd-classes</c>.</summary>
    public string Split { get; init; } = "all";

    /// <summary>At most this many images (after the split); null for all.</summary>
    public int? Limit { get; init; }

    /// <summary>Seed of the random subset drawn by <see cref="Limit"/>; null takes the first images in sorted order.</summary>
    public int? Seed { get; init; }

    /// <summary>Added to every label after the split (e.g. 1 for an ImageNet model with a background class 0); splits use the source's labels.</summary>
    public int LabelOffset { get; init; }

    /// <summary>Skip (and report) unreadable images instead of failing.</summary>
    public bool SkipBadImages { get; init; }

    /// <summary>Folder of the decoded-tensor cache; null uses <c>$BITBUDGET_CACHE</c> or <c>~/.cache/bitbudget</c>; empty disables it.</summary>
    public string? CacheDirectory { get; init; }

    /// <summary>Decoder threads; 0 uses one per core.</summary>
    public int Threads { get; init; }
}

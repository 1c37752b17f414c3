using BitBudget.Data;
using BitBudget.Tests.Support;

namespace BitBudget.Tests.Data;

/// <summary>Issue 17, item 12: the decoded-image cache is keyed on the images' content and on every option that changes the result.</summary>
public class CacheKeyTests
{
    /// <summary>Two different CIFAR-10 test JPEGs of the same byte length (so size and mtime cannot tell them apart).</summary>
    static (string A, string B) SameSizePair()
    {
        string folder = Path.Combine(Assets.Require("cifar10/test"), "cat");
        var pair = Directory.GetFiles(folder).Order(StringComparer.Ordinal).GroupBy(f => new FileInfo(f).Length).First(g => g.Count() >= 2).Take(2).ToArray();
        Assert.NotEqual(File.ReadAllBytes(pair[0]), File.ReadAllBytes(pair[1]));
        return (pair[0], pair[1]);
    }

    [Fact]
    public void RewrittenFileWithItsMtimeRestoredIsDecodedAgain()
    {
        using var dir = new Assets.TempDir();
        using var cache = new Assets.TempDir();
        (string a, string b) = SameSizePair();
        Directory.CreateDirectory(dir.File("data/cat"));
        Directory.CreateDirectory(dir.File("data/dog"));
        string image = dir.File("data/cat/x.jpg");
        File.Copy(a, image);
        File.Copy(Path.Combine(Assets.Require("cifar10/test"), "dog", "0000.jpg"), dir.File("data/dog/y.jpg"));
        var options = new DataOptions { Path = dir.File("data"), Preprocessing = Preprocessing.Cifar10, CacheDirectory = cache.Path };
        Dataset first = DatasetLoader.Load(options);

        DateTime mtime = File.GetLastWriteTimeUtc(image);
        File.Copy(b, image, overwrite: true);
        File.SetLastWriteTimeUtc(image, mtime);
        Dataset second = DatasetLoader.Load(options);
        Dataset fresh = DatasetLoader.Load(options with { CacheDirectory = "" });
        Assert.Equal(fresh.Images.ToArray(), second.Images.ToArray());
        Assert.NotEqual(first.Images.ToArray(), second.Images.ToArray());
        Assert.NotEqual(first.Hash, second.Hash);   // the measurement store keys on it too

        // Unchanged content is still served from the cache (no decode progress), even with a new mtime.
        File.SetLastWriteTimeUtc(image, mtime.AddHours(1));
        int decoded = -1;
        Dataset third = DatasetLoader.Load(options, new SyncProgress(n => decoded = n));
        Assert.Equal(-1, decoded);
        Assert.Equal(second.Images.ToArray(), third.Images.ToArray());
    }

    [Fact]
    public void ContainerRewrittenWithItsMtimeRestoredIsDecodedAgain()
    {
        using var dir = new Assets.TempDir();
        using var cache = new Assets.TempDir();
        string[] rows = File.ReadAllLines(Assets.EranCsv)[..4];
        File.WriteAllLines(dir.File("d.csv"), rows);
        var options = new DataOptions { Path = dir.File("d.csv"), Preprocessing = Preprocessing.Cifar10, CacheDirectory = cache.Path };
        Dataset first = DatasetLoader.Load(options);
        DateTime mtime = File.GetLastWriteTimeUtc(dir.File("d.csv"));
        // Same length: swap the pixels of rows 0 and 1 but keep their labels.
        string Pixels(string row) => row[row.IndexOf(',', StringComparison.Ordinal)..];
        string Label(string row) => row[..row.IndexOf(',', StringComparison.Ordinal)];
        string[] swapped = [Label(rows[0]) + Pixels(rows[1]), Label(rows[1]) + Pixels(rows[0]), rows[2], rows[3]];
        Assert.Equal(rows.Sum(r => r.Length), swapped.Sum(r => r.Length));
        File.WriteAllLines(dir.File("d.csv"), swapped);
        File.SetLastWriteTimeUtc(dir.File("d.csv"), mtime);
        Dataset second = DatasetLoader.Load(options);
        Assert.Equal(DatasetLoader.Load(options with { CacheDirectory = "" }).Images.ToArray(), second.Images.ToArray());
        Assert.NotEqual(first.Images.ToArray(), second.Images.ToArray());
    }

    [Fact]
    public void SkipBadImagesIsPartOfTheKey()
    {
        using var dir = new Assets.TempDir();
        using var cache = new Assets.TempDir();
        Directory.CreateDirectory(dir.File("cat"));
        File.Copy(Path.Combine(Assets.Require("cifar10/test"), "cat", "0000.jpg"), dir.File("cat/a.jpg"));
        File.WriteAllText(dir.File("cat/broken.jpg"), "not a jpeg");
        var options = new DataOptions { Path = dir.Path, Preprocessing = Preprocessing.Cifar10, CacheDirectory = cache.Path };
        Assert.Equal(1, DatasetLoader.Load(options with { SkipBadImages = true }).Count);
        // Without --skip-bad-images the broken image is an error, cache or not.
        var e = Assert.Throws<BitBudgetException>(() => DatasetLoader.Load(options));
        Assert.Contains("broken.jpg", e.Message, StringComparison.Ordinal);
    }

    sealed class SyncProgress(Action<int> report) : IProgress<int>
    {
        public void Report(int value) => report(value);
    }
}

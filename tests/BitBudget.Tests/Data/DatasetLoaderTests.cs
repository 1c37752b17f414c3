using BitBudget.Data;
using BitBudget.Tests.Support;

namespace BitBudget.Tests.Data;

public class DatasetLoaderTests
{
    [Fact]
    public void EranCsvMatchesTheIndependentReader()
    {
        (float[] expected, int[] labels) = Assets.EranCifar(100);
        Dataset data = SharedData.Eran100;
        Assert.Equal(100, data.Count);
        Assert.Equal([3, 32, 32], data.SampleShape);
        Assert.Equal(labels, data.Labels.ToArray());
        float[] actual = data.Images.ToArray();
        for (int i = 0; i < expected.Length; i++) { Assert.Equal(expected[i], actual[i], 1e-6f); }
    }

    [Fact]
    public void ClassFoldersUseSortedFolderNamesAsLabels()
    {
        Dataset data = SharedData.CifarTrain(50, seed: 3);
        Assert.Equal(["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"], data.ClassNames);
        Assert.Equal(50, data.Count);
        for (int i = 0; i < data.Count; i++)
        {
            Assert.Contains($"/{data.ClassNames[data.Labels[i]]}/", data.Ids[i], StringComparison.Ordinal);
        }
    }

    [Fact]
    public void FlatFolderLabelsAreTheSortedWnidPositions()
    {
        string root = Assets.Require("imagenet/samples");
        var options = new DataOptions { Path = root, Preprocessing = Preprocessing.ImageNet, Limit = 4, Split = "odd-classes" };
        Dataset data = DatasetLoader.Load(options);
        Assert.Equal(1000, data.ClassNames.Count);
        Assert.Equal("n01440764", data.ClassNames[0]);
        Assert.Equal([3, 224, 224], data.SampleShape);
        Assert.All(data.Labels.ToArray(), l => Assert.Equal(1, l % 2));
        Assert.Equal("n01443537", data.ClassNames[data.Labels[0]]);   // the first odd class: goldfish
    }

    [Fact]
    public void EvenAndOddSplitsPartitionTheImages()
    {
        Dataset even = SharedData.ImageNet("even-classes", 40), odd = SharedData.ImageNet("odd-classes", 40);
        Assert.Equal(0, even.OverlapWith(odd));
        Assert.All(even.Labels.ToArray(), l => Assert.Equal(0, l % 2));
    }

    [Fact]
    public void IdxReadsEveryMnistTestImage()
    {
        Dataset data = SharedData.MnistTest;
        Assert.Equal(10_000, data.Count);
        Assert.Equal([1, 28, 28], data.SampleShape);
        Assert.Equal(7, data.Labels[0]);   // the canonical first test digit
        float[] first = data.Batch(0, 1).ToArray();
        Assert.Equal(255f, first.Max());   // raw 0..255 for the model zoo model
    }

    [Fact]
    public void LimitWithSeedIsDeterministicAndSeedsDiffer()
    {
        string root = Assets.Require("cifar10/train-5k");
        Dataset Load(int seed) => DatasetLoader.Load(new DataOptions { Path = root, Preprocessing = Preprocessing.Cifar10, Limit = 20, Seed = seed, CacheDirectory = "" });
        Dataset a = Load(1), b = Load(1), c = Load(2);
        Assert.Equal(a.Ids, b.Ids);
        Assert.Equal(a.Hash, b.Hash);
        Assert.NotEqual(a.Ids, c.Ids);
        Assert.Equal(a.Images.ToArray(), b.Images.ToArray());
    }

    [Fact]
    public void CacheReturnsIdenticalTensorsWithoutDecoding()
    {
        using var cache = new Assets.TempDir();
        string root = Assets.Require("cifar10/test");
        var options = new DataOptions { Path = root, Preprocessing = Preprocessing.Cifar10, Limit = 30, CacheDirectory = cache.Path };
        int decoded = 0;
        Dataset first = DatasetLoader.Load(options, new SyncProgress(n => decoded = n));
        Assert.Equal(30, decoded);
        Assert.Single(Directory.GetFiles(cache.Path));
        decoded = -1;
        Dataset second = DatasetLoader.Load(options, new SyncProgress(n => decoded = n));
        Assert.Equal(-1, decoded);   // no decode progress: served from the cache
        Assert.Equal(first.Images.ToArray(), second.Images.ToArray());
        Assert.Equal(first.Labels.ToArray(), second.Labels.ToArray());
        Assert.Equal(first.Hash, second.Hash);
    }

    [Fact]
    public void CorruptImageIsNamedAndCanBeSkipped()
    {
        using var dir = new Assets.TempDir();
        Directory.CreateDirectory(dir.File("cat"));
        Directory.CreateDirectory(dir.File("dog"));
        File.Copy(Path.Combine(Assets.Require("cifar10/test"), "cat", "0000.jpg"), dir.File("cat/a.jpg"));
        File.Copy(Path.Combine(Assets.Require("cifar10/test"), "dog", "0000.jpg"), dir.File("dog/b.jpg"));
        File.WriteAllText(dir.File("dog/broken.jpg"), "not a jpeg");
        var options = new DataOptions { Path = dir.Path, Preprocessing = Preprocessing.Cifar10, CacheDirectory = "" };
        var e = Assert.Throws<BitBudgetException>(() => DatasetLoader.Load(options));
        Assert.Contains("broken.jpg", e.Message, StringComparison.Ordinal);
        var warnings = new List<string>();
        Dataset data = DatasetLoader.Load(options with { SkipBadImages = true }, null, warnings.Add);
        Assert.Equal(2, data.Count);
        Assert.Equal([0, 1], data.Labels.ToArray());
        Assert.Single(warnings);
    }

    [Fact]
    public void BadSourcesGiveOneLineErrors()
    {
        using var dir = new Assets.TempDir();
        var empty = new DataOptions { Path = dir.Path, Preprocessing = Preprocessing.Cifar10, CacheDirectory = "" };
        Assert.Equal(ErrorKind.InvalidInput, Assert.Throws<BitBudgetException>(() => DatasetLoader.Load(empty)).Kind);
        Assert.Equal(ErrorKind.FileNotFound, Assert.Throws<BitBudgetException>(() => DatasetLoader.Load(empty with { Path = dir.File("missing") })).Kind);
        Assert.Equal(ErrorKind.InvalidInput, Assert.Throws<BitBudgetException>(() => DatasetLoader.Load(empty with { Path = Assets.EranCsv, Split = "thirds" })).Kind);

        // A class folder that the class list does not know.
        Directory.CreateDirectory(dir.File("data/zebra"));
        File.Copy(Path.Combine(Assets.Require("cifar10/test"), "cat", "0000.jpg"), dir.File("data/zebra/a.jpg"));
        File.WriteAllLines(dir.File("classes.txt"), ["cat", "dog"]);
        var unknown = Assert.Throws<BitBudgetException>(() => DatasetLoader.Load(empty with { Path = dir.File("data"), ClassList = dir.File("classes.txt") }));
        Assert.Contains("zebra", unknown.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void MixedSizesWithoutResizeAreRefused()
    {
        using var dir = new Assets.TempDir();
        Directory.CreateDirectory(dir.File("a"));
        string samples = Assets.Require("imagenet/samples");
        foreach (string f in Directory.GetFiles(samples).Order().Take(6)) { File.Copy(f, dir.File("a/" + Path.GetFileName(f))); }
        var options = new DataOptions { Path = dir.Path, Preprocessing = Preprocessing.Cifar10, CacheDirectory = "" };
        var e = Assert.Throws<BitBudgetException>(() => DatasetLoader.Load(options));
        Assert.Contains("mixed sizes", e.Message, StringComparison.Ordinal);
        Dataset fixedSize = DatasetLoader.Load(options with { Preprocessing = Preprocessing.ImageNet });
        Assert.Equal(6, fixedSize.Count);
    }

    [Fact]
    public void PreprocessingJsonRoundTripsAndRejectsBadFields()
    {
        Preprocessing pre = Preprocessing.ImageNet with { ChannelOrder = ChannelOrder.Bgr, Layout = TensorLayout.Nhwc };
        Assert.Equal(pre.ToJson(), Preprocessing.FromJson(pre.ToJson()).ToJson());
        Assert.Contains("\"resize_shorter\": 256", pre.ToJson(), StringComparison.Ordinal);
        Assert.Throws<BitBudgetException>(() => Preprocessing.FromJson("{\"resize\": 3}"));
        Assert.Throws<BitBudgetException>(() => Preprocessing.FromJson("{\"std\": [0, 1, 1]}"));
        Assert.Throws<BitBudgetException>(() => Preprocessing.FromJson("{\"grey\": true}"));   // 3 means for 1 channel
        Assert.Throws<BitBudgetException>(() => Preprocessing.FromPreset("coco"));
    }

    [Fact]
    public void PreprocessingJson_FieldsTheFileOmitsKeepTheirDefaults()
    {
        // The source-generated reader would set omitted init-only properties to 0/null (scale 0 was refused, a missing mean crashed).
        Preprocessing grey = Preprocessing.FromJson("{\"grey\": true, \"mean\": [0.5], \"std\": [0.5]}");
        var defaults = new Preprocessing();
        Assert.Equal(defaults.Scale, grey.Scale);
        Assert.Equal(defaults.ChannelOrder, grey.ChannelOrder);
        Assert.Equal(defaults.Layout, grey.Layout);
        Assert.Equal([0.5f], grey.Mean);
        Assert.Equal(defaults with { Grey = true, Mean = [0.5f], Std = [0.5f] }, grey with { Mean = grey.Mean, Std = grey.Std }, PreprocessingComparer);
        Assert.Equal(defaults.ToJson(), Preprocessing.FromJson("{}").ToJson());
        Assert.Equal((defaults with { CenterCrop = 28 }).ToJson(), Preprocessing.FromJson("{\"center_crop\": 28}").ToJson());
    }

    static readonly IEqualityComparer<Preprocessing> PreprocessingComparer =
        EqualityComparer<Preprocessing>.Create((a, b) => a!.ToJson() == b!.ToJson(), p => p.ToJson().GetHashCode(StringComparison.Ordinal));

    sealed class SyncProgress(Action<int> report) : IProgress<int>
    {
        public void Report(int value) => report(value);
    }
}

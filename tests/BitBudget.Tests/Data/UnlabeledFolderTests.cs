using BitBudget.Data;
using BitBudget.Tests.Support;
using SkiaSharp;

namespace BitBudget.Tests.Data;

/// <summary>A flat folder without <c>&lt;class&gt;_</c> file-name prefixes is unlabeled: usable where no label is read, refused where one is.</summary>
public class UnlabeledFolderTests
{
    static void WritePng(string path, int seed)
    {
        using var bitmap = new SKBitmap(8, 8, SKColorType.Rgba8888, SKAlphaType.Premul);
        var random = new Random(seed);
        for (int y = 0; y < 8; y++)
        {
            for (int x = 0; x < 8; x++) { bitmap.SetPixel(x, y, new SKColor((byte)random.Next(256), (byte)random.Next(256), (byte)random.Next(256))); }
        }
        using var data = bitmap.Encode(SKEncodedImageFormat.Png, 100);
        File.WriteAllBytes(path, data.ToArray());
    }

    static string Folder(Assets.TempDir dir, string name, params string[] files)
    {
        string folder = dir.File(name);
        Directory.CreateDirectory(folder);
        for (int i = 0; i < files.Length; i++) { WritePng(Path.Combine(folder, files[i]), i); }
        return folder;
    }

    static string Unlabeled(Assets.TempDir dir, int count = 24) =>
        Folder(dir, "photos", [.. Enumerable.Range(0, count).Select(i => $"img{i:D3}.png")]);

    static string TinyModel(Assets.TempDir dir)
    {
        string path = dir.File("tiny.onnx");
        TinyModels.Classifier().Save(path);
        return path;
    }

    static string Error(InProcessCli.Result r) => r.ErrLines.Single(l => l.StartsWith("error:", StringComparison.Ordinal));

    [Fact]
    public void FlatFolderWithoutPrefixesLoadsUnlabeled()
    {
        using var dir = new Assets.TempDir();
        string folder = Folder(dir, "photos", "img001.png", "cat.png", "img002.png");
        Dataset data = DatasetLoader.Load(new DataOptions { Path = folder, Preprocessing = new Preprocessing(), CacheDirectory = "", Limit = 2 });
        Assert.Equal(2, data.Count);
        Assert.All(data.Labels.ToArray(), l => Assert.Equal(-1, l));
        Assert.Empty(data.ClassNames);
        Assert.False(data.IsLabeled);
        Assert.Contains("(unlabeled flat folder", data.Description, StringComparison.Ordinal);
        Assert.EndsWith("cat.png", data.Ids[0], StringComparison.Ordinal);   // the first N in sorted order
        Assert.All(data.WithLabelOffset(1).Labels.ToArray(), l => Assert.Equal(-1, l));   // an offset does not invent labels
        var e = Assert.Throws<BitBudgetException>(() => data.RequireLabels("Top-1 evaluation"));
        Assert.Equal(ErrorKind.InvalidInput, e.Kind);
        Assert.Contains(folder, e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void PrefixedFlatFolderStaysLabeled()
    {
        using var dir = new Assets.TempDir();
        string folder = Folder(dir, "labeled", "cat_1.png", "dog_1.png", "cat_2.png");
        Dataset data = DatasetLoader.Load(new DataOptions { Path = folder, Preprocessing = new Preprocessing(), CacheDirectory = "" });
        Assert.True(data.IsLabeled);
        Assert.Equal(["cat", "dog"], data.ClassNames);
    }

    [Fact]
    public void MixedNamingIsRefusedNamingOneFileOfEachKind()
    {
        using var dir = new Assets.TempDir();
        string folder = Folder(dir, "mixed", "cat_1.png", "img002.png", "_odd.png");
        var e = Assert.Throws<BitBudgetException>(() =>
            DatasetLoader.Load(new DataOptions { Path = folder, Preprocessing = new Preprocessing(), CacheDirectory = "" }));
        Assert.Equal(ErrorKind.InvalidInput, e.Kind);
        Assert.Contains("'cat_1.png'", e.Message, StringComparison.Ordinal);
        Assert.Contains("'_odd.png'", e.Message, StringComparison.Ordinal);   // '_' at index 0 is no prefix
        Assert.DoesNotContain('\n', e.Message);
    }

    [Theory]
    [InlineData("even-classes")]
    [InlineData("odd-classes")]
    public void ClassSplitsAreRefused(string split)
    {
        using var dir = new Assets.TempDir();
        string folder = Unlabeled(dir, 4);
        var e = Assert.Throws<BitBudgetException>(() =>
            DatasetLoader.Load(new DataOptions { Path = folder, Preprocessing = new Preprocessing(), CacheDirectory = "", Split = split }));
        Assert.Equal(ErrorKind.InvalidInput, e.Kind);
        Assert.Contains(split, e.Message, StringComparison.Ordinal);
        Assert.Contains("needs labels", e.Message, StringComparison.Ordinal);
        Assert.EndsWith("or --class-list, or the plain split 'all'.", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("--loss", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void EvalOnUnlabeledFolderExitsTwoWithOneErrorLine()
    {
        using var dir = new Assets.TempDir();
        InProcessCli.Result r = InProcessCli.Run("eval", TinyModel(dir), "--data", Unlabeled(dir, 4), "--no-cache");
        Assert.True(r.Code == 2, r.ToString());
        Assert.Single(r.ErrLines, l => l.StartsWith("error:", StringComparison.Ordinal));
        Assert.Contains("needs labels", Error(r), StringComparison.Ordinal);
        Assert.Contains("photos", Error(r), StringComparison.Ordinal);
        Assert.Contains("use class subfolders, '<class>_name' files or --class-list.", Error(r), StringComparison.Ordinal);
        Assert.DoesNotContain("--loss", Error(r), StringComparison.Ordinal);   // evaluation has no label-free alternative
    }

    [Fact]
    public void UnlabeledErrorsNameTheAlternativeOfTheirCaller()
    {
        using var dir = new Assets.TempDir();
        Dataset data = DatasetLoader.Load(new DataOptions { Path = Unlabeled(dir, 2), Preprocessing = new Preprocessing(), CacheDirectory = "" });
        string Message(Action act) => Assert.Throws<BitBudgetException>(act).Message;

        string plain = Message(() => data.RequireLabels("Top-1 evaluation"));
        Assert.EndsWith("use class subfolders, '<class>_name' files or --class-list.", plain, StringComparison.Ordinal);
        string judge = Message(() => data.RequireLabels("Judging 'best' candidates by held-out CE (--best-judge ce)", BitBudget.BestOf.BestOfSearch.CeJudgeAlternative));
        Assert.EndsWith("or --class-list, or judging them by held-out KL (--best-judge kl).", judge, StringComparison.Ordinal);
        Assert.DoesNotContain("--loss", judge, StringComparison.Ordinal);
        // Dataset and DataSource share the rule: labeled exactly when there are class names.
        Assert.Equal(data.ClassNames.Count > 0, data.IsLabeled);
        Assert.True(Dataset.FromArrays(new float[4], [0, 1], [2]).IsLabeled);
        Assert.False(Dataset.FromArrays([], [], [2]).IsLabeled);
    }

    [Fact]
    public void RunWithBestJudgedByCeOnUnlabeledCalibrationIsRefusedWithTheKlHint()
    {
        using var dir = new Assets.TempDir();
        string eval = Folder(dir, "labeled", [.. Enumerable.Range(0, 4).Select(i => $"c{i % 2}_{i}.png")]);
        InProcessCli.Result r = InProcessCli.Run("run", "-m", TinyModel(dir), "--calib", Unlabeled(dir), "--eval", eval, "--method", "best",
            "--best-judge", "ce", "--budget", "8bits", "--rounding", "rtn", "--calib-images", "8", "--sens-images", "8", "--no-cache", "-o", dir.File("out"));
        Assert.True(r.Code == 2, r.ToString());
        Assert.Contains("--best-judge ce", Error(r), StringComparison.Ordinal);
        Assert.Contains("--best-judge kl", Error(r), StringComparison.Ordinal);
        Assert.DoesNotContain("--loss", Error(r), StringComparison.Ordinal);
    }

    [Fact]
    public void CladoWithMseRunsOnUnlabeledFolderAndCeIsRefused()
    {
        using var dir = new Assets.TempDir();
        string model = TinyModel(dir), folder = Unlabeled(dir);
        string[] common = ["sensitivity", model, "--calib", folder, "--calib-images", "16", "--sens-images", "8", "--sens-batch", "8",
            "--rounding", "rtn", "--first-bits", "search", "--last-bits", "search", "--no-cache"];
        InProcessCli.Result mse = InProcessCli.Run([.. common, "--loss", "mse", "-o", dir.File("mse.json")]);
        Assert.True(mse.Code == 0, mse.ToString());
        Assert.True(File.Exists(dir.File("mse.json")));

        InProcessCli.Result ce = InProcessCli.Run([.. common, "--loss", "ce", "-o", dir.File("ce.json")]);
        Assert.True(ce.Code == 2, ce.ToString());
        Assert.Contains("--loss ce", Error(ce), StringComparison.Ordinal);
        Assert.Contains("--loss kl|mse", Error(ce), StringComparison.Ordinal);

        InProcessCli.Result split = InProcessCli.Run([.. common, "--loss", "mse", "--calib-split", "even-classes", "-o", dir.File("split.json")]);
        Assert.True(split.Code == 2, split.ToString());
        Assert.Contains("even-classes", Error(split), StringComparison.Ordinal);
        Assert.DoesNotContain("--loss", Error(split), StringComparison.Ordinal);
    }
}

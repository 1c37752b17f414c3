namespace BitBudget.Tests.Support;

/// <summary>Locates ../shared/assets beside the repository; skips (or fails under CI=true) when it is missing.</summary>
public static class Assets
{
    static readonly Lazy<string?> s_root = new(FindRoot);

    public static string RepoRoot
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "BitBudget.slnx"))) { return dir.FullName; }
            }
            throw new InvalidOperationException("BitBudget.slnx not found above the test binaries.");
        }
    }

    static string? FindRoot()
    {
        string path = Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared", "assets"));
        return Directory.Exists(path) ? path : null;
    }

    /// <summary>Full path of a file under shared/assets; skips the test when the folder is absent (fails under CI).</summary>
    public static string Require(string relative)
    {
        string? root = s_root.Value;
        if (root is null || !File.Exists(Path.Combine(root, relative)) && !Directory.Exists(Path.Combine(root, relative)))
        {
            string message = $"Real assets not found: ../shared/assets/{relative} (expected beside the repository).";
            if (string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase))
            {
                Assert.Fail(message + " CI=true requires them.");
            }
            Assert.Skip(message);
        }
        return Path.Combine(root, relative);
    }

    public static string ResNet20 => Require("cifar10/resnet20.onnx");
    public static string SqueezeNet => Require("imagenet/squeezenet1.1.onnx");
    public static string Mnist8 => Require("mnist/mnist-8.onnx");
    public static string EranCsv => Require("cifar10/eran-test-100.csv");

    /// <summary>The ERAN CIFAR-10 rows normalized for ResNet-20 (NCHW), with labels.</summary>
    public static (float[] Images, int[] Labels) EranCifar(int count)
    {
        float[] mean = [0.4914f, 0.4822f, 0.4465f], std = [0.2023f, 0.1994f, 0.2010f];
        string[] lines = File.ReadAllLines(EranCsv);
        var images = new float[count * 3072];
        var labels = new int[count];
        for (int n = 0; n < count; n++)
        {
            string[] cells = lines[n].Split(',');
            labels[n] = int.Parse(cells[0], System.Globalization.CultureInfo.InvariantCulture);
            for (int p = 0; p < 1024; p++)
            {
                for (int c = 0; c < 3; c++)
                {
                    float v = int.Parse(cells[1 + p * 3 + c], System.Globalization.CultureInfo.InvariantCulture) / 255f;
                    images[n * 3072 + c * 1024 + p] = (v - mean[c]) / std[c];
                }
            }
        }
        return (images, labels);
    }

    /// <summary>A temporary folder deleted when disposed.</summary>
    public sealed class TempDir : IDisposable
    {
        public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "bitbudget-test-" + Guid.NewGuid().ToString("N"));
        public TempDir() => Directory.CreateDirectory(Path);
        public string File(string name) => System.IO.Path.Combine(Path, name);
        public void Dispose() { try { Directory.Delete(Path, recursive: true); } catch (IOException) { } }
    }
}

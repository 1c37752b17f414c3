using System.Diagnostics;
using System.IO.Hashing;
using BitBudget.Data;

namespace BitBudget.Bench;

/// <summary>
/// The decoded-image cache on a folder of images: the first load (decode), the cached second load (content key: every file read
/// and hashed), and, side by side, what the key's two ingredients cost alone: reading + XxHash128 of every file, and the
/// stat of every file (the old path/size/mtime key).
/// </summary>
static class DataCacheBench
{
    public static int Run(string[] args)
    {
        string path = Measure.Assets(args.Length > 0 ? args[0] : "cifar10/test");
        string cache = Path.Combine(Path.GetTempPath(), "bitbudget-bench-cache-" + Guid.NewGuid().ToString("N"));
        var options = new DataOptions { Path = path, Preprocessing = Preprocessing.Cifar10, CacheDirectory = cache };
        try
        {
            long start = Stopwatch.GetTimestamp();
            Dataset first = DatasetLoader.Load(options);
            double cold = Stopwatch.GetElapsedTime(start).TotalSeconds;
            double warm = Measure.Median(7, () => DatasetLoader.Load(options));
            string[] files = Directory.GetFiles(path, "*", SearchOption.AllDirectories);
            double stat = Measure.Median(7, () => { foreach (string f in files) { var fi = new FileInfo(f); _ = fi.Length; _ = fi.LastWriteTimeUtc; } });
            double hash = Measure.Median(7, () => Parallel.ForEach(files, f => XxHash128.HashToUInt128(File.ReadAllBytes(f))));
            Console.WriteLine($"{first.Count} images: first load (decode) {cold:F3} s; cached load median {warm:F3} s; " +
                $"read + XxHash128 of every file {hash:F3} s; stat of every file {stat:F3} s; peak RSS {Process.GetCurrentProcess().PeakWorkingSet64 / 1e6:F0} MB");
        }
        finally
        {
            Directory.Delete(cache, recursive: true);
        }
        return 0;
    }
}

using System.Globalization;

namespace BitBudget.Runtime;

/// <summary>
/// The process's resident memory as the kernel counts it (what gets a process killed), and the default memory budget.
/// Read from /proc/self/status on Linux; elsewhere the .NET working set stands in (no peak there but the current value).
/// </summary>
internal static class ProcessMemory
{
    const long GiB = 1L << 30;

    /// <summary>Resident set size now, bytes.</summary>
    public static long CurrentRss => Read("VmRSS:") ?? Environment.WorkingSet;

    /// <summary>Highest resident set size of the process so far (VmHWM), bytes.</summary>
    public static long PeakRss => Read("VmHWM:") ?? Environment.WorkingSet;

    /// <summary>
    /// Resident set size after a full, compacting garbage collection. On a 24 GB machine the GC lets garbage pile up far past
    /// a 3 GiB budget before it collects (measured while loading ResNet-18's 61 cone sessions: 2.9 GiB managed, 1 GiB of it
    /// live), so a pass that sizes its work from the resident set collects first.
    /// </summary>
    internal static long RssAfterCollecting()
    {
        System.Runtime.GCSettings.LargeObjectHeapCompactionMode = System.Runtime.GCLargeObjectHeapCompactionMode.CompactOnce;
        GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        return CurrentRss;
    }

    /// <summary>
    /// A full, compacting collection when the resident set is within a sixteenth of <paramref name="budget"/>. The GC's own limit
    /// (<see cref="LimitManagedHeap"/>) is the whole budget, but ONNX Runtime's native memory sits beside the managed heap, so
    /// short-lived managed buffers could fill the rest: ResNet-18's GPTQ rounding and CLADO measurement went 0.1–0.3 GiB over a
    /// 3 GiB budget on garbage alone. Long stages call this between their steps (a layer's rounding, a CLADO unit).
    /// </summary>
    /// <param name="budget">The process's memory budget, bytes (0: no check).</param>
    /// <param name="incoming">Bytes the caller is about to allocate: it collects when they would bring the resident set that near.</param>
    /// <returns>True if it collected.</returns>
    internal static bool CollectWhenNear(long budget, long incoming = 0)
    {
        if (budget <= 0 || CurrentRss + Math.Max(0, incoming) <= budget - Headroom(budget)) { return false; }
        RssAfterCollecting();
        return true;
    }

    /// <summary>
    /// What "near the budget" leaves free: a sixteenth of it. Garbage is collected inside it (<see cref="CollectWhenNear"/>), and
    /// CLADO keeps it in reserve when it plans its micro-batches, for the allocator slack and ORT buffers its plan does not count.
    /// </summary>
    internal static long Headroom(long budget) => budget / 16;

    /// <summary>
    /// Tells the garbage collector the budget (<c>GCHeapHardLimit</c> + <see cref="GC.RefreshMemoryLimit"/>), for a process that
    /// owns its whole memory (the CLI; never a library host or a test runner). Without it the GC sizes its collections from the
    /// machine's physical memory: on 24 GB it let GPTQ's short-lived rounding buffers pile up to 14 GB under a 3 GiB budget
    /// (ResNet-18 sensitivity). With it the GC collects before the managed heap reaches the budget, and a heap that really
    /// needs more fails with <see cref="OutOfMemoryException"/>, which the CLI reports in one line. Returns false (and
    /// changes nothing) when the budget is below what the GC has already committed.
    /// </summary>
    internal static bool LimitManagedHeap(long budget)
    {
        if (budget <= 0) { return false; }
        _ = Physical;   // the machine's memory, read before the limit: afterwards the GC reports the limit as all there is
        AppContext.SetData("GCHeapHardLimit", (ulong)budget);
        try
        {
            GC.RefreshMemoryLimit();
            return true;
        }
        catch (InvalidOperationException)
        {
            AppContext.SetData("GCHeapHardLimit", null);
            GC.RefreshMemoryLimit();
            return false;
        }
    }

    /// <summary>Physical memory of the machine (or the container limit .NET sees), bytes.</summary>
    public static long Physical => s_physical ??= GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;

    static long? s_physical;

    /// <summary>Environment variable that sets the default budget (e.g. <c>8GiB</c>), for hosts that run several pipelines in one process.</summary>
    public const string BudgetVariable = "BITBUDGET_MAX_MEMORY";

    /// <summary>
    /// The default <see cref="RuntimeOptions.MaxMemory"/>: <see cref="BudgetVariable"/> when set, else the smaller of 3 GiB and
    /// half the physical memory. The budget bounds the whole process, so a host running other work beside BitBudget (a test
    /// runner with tests in parallel) raises it there.
    /// </summary>
    public static long DefaultBudget => Environment.GetEnvironmentVariable(BudgetVariable) is { Length: > 0 } text
        ? ParseAmount(text) ?? throw Errors.InvalidInput($"{BudgetVariable}='{text}' is not an amount of memory such as 3GiB or 1500MB.")
        : Math.Min(3 * GiB, Math.Max(GiB / 4, Physical / 2));

    /// <summary>Parses an amount of memory: a number and B, KB, MB, GB (powers of 1000) or KiB, MiB, GiB (powers of 1024).</summary>
    internal static long? ParseAmount(string text)
    {
        string t = text.Trim();
        int split = 0;
        while (split < t.Length && (char.IsDigit(t[split]) || t[split] == '.')) { split++; }
        if (split == 0 || !double.TryParse(t[..split], NumberStyles.Float, CultureInfo.InvariantCulture, out double value)) { return null; }
        double unit = t[split..].Trim().ToUpperInvariant() switch
        {
            "" or "B" => 1, "KB" => 1e3, "MB" => 1e6, "GB" => 1e9, "KIB" => 1 << 10, "MIB" => 1 << 20, "GIB" => GiB,
            _ => double.NaN,
        };
        double bytes = value * unit;
        return double.IsFinite(bytes) && bytes >= 1 ? (long)bytes : null;
    }

    /// <summary>Bytes as "1.23 GiB" / "456 MiB", for messages.</summary>
    public static string Format(long bytes) => bytes >= GiB
        ? string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)GiB:0.00} GiB")
        : bytes >= 1 << 20 ? string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1 << 20):0} MiB")
        : string.Create(CultureInfo.InvariantCulture, $"{Math.Max(1, bytes / 1024.0):0} KiB");

    static long? Read(string key)
    {
        if (!OperatingSystem.IsLinux()) { return null; }
        try
        {
            foreach (string line in File.ReadLines("/proc/self/status"))
            {
                if (!line.StartsWith(key, StringComparison.Ordinal)) { continue; }
                string[] parts = line[key.Length..].Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
                return long.Parse(parts[0], CultureInfo.InvariantCulture) * 1024;   // the kernel reports kB
            }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return null;
    }
}

/// <summary>
/// How many images one ONNX Runtime run may take so that the process stays within <see cref="RuntimeOptions.MaxMemory"/>:
/// what is resident now (sessions, weights, data) plus the images' measured tensor footprint.
/// </summary>
public static class MemoryBudget
{
    /// <summary>
    /// The images per run (1 … <paramref name="wanted"/>) whose <paramref name="bytesPerImage"/> fit beside what the process holds
    /// now (<see cref="ProcessMemory.CurrentRss"/>, or <paramref name="residentBytes"/> when given), keeping
    /// <paramref name="reserveBytes"/> free for what the per-image figure does not see (it lowers the count, down to one image,
    /// but never refuses a run that fits without it).
    /// </summary>
    /// <exception cref="BitBudgetException">Not even one image fits; the message says how much would.</exception>
    public static int ImagesPerRun(RuntimeOptions runtime, long bytesPerImage, int wanted, string what, long? residentBytes = null, long reserveBytes = 0)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        if (wanted <= 0) { return Math.Max(1, wanted); }
        long resident = residentBytes ?? ProcessMemory.CurrentRss;
        long free = runtime.MaxMemory - resident;
        long perImage = Math.Max(1, bytesPerImage);
        if (free < perImage)
        {
            throw Errors.InvalidInput(
                $"--max-memory {ProcessMemory.Format(runtime.MaxMemory)} is too small for {what}: {ProcessMemory.Format(resident)} is already in use (model, sessions, images) " +
                $"and one image needs {ProcessMemory.Format(perImage)} more; at least {ProcessMemory.Format(resident + perImage)} would fit.");
        }
        return (int)Math.Clamp((free - Math.Max(0, reserveBytes)) / perImage, 1, wanted);
    }
}

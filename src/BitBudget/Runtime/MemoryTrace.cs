using System.Diagnostics;
using System.Globalization;

namespace BitBudget.Runtime;

/// <summary>
/// A diagnostic trace of where memory goes: with <c>BITBUDGET_MEMORY_TRACE=file</c> each stage boundary appends one line
/// (seconds since start; VmRSS and VmHWM; the managed heap's live bytes, the GC's committed bytes and the large-object heap's
/// free space at the last collection, all in kB; what just happened). A sampler outside the process sees a burst but not which
/// step made it; this names the step, and the GC columns say whether what is resident is live managed data, managed memory the
/// GC holds free (dotnet-counters showed 608 MB of the large-object heap free when a fresh machine's ResNet-18 run began CLADO), or native
/// memory (the rest of VmRSS). Off (one null check) unless the variable is set.
/// </summary>
internal static class MemoryTrace
{
    /// <summary>Environment variable naming the file the trace is appended to.</summary>
    public const string Variable = "BITBUDGET_MEMORY_TRACE";

    static readonly Stopwatch s_clock = Stopwatch.StartNew();
    static readonly Lock s_gate = new();

    /// <summary>The trace file (from <see cref="Variable"/>; null: off). Settable for tests.</summary>
    internal static string? Path { get; set; } = Environment.GetEnvironmentVariable(Variable) is { Length: > 0 } path ? path : null;

    /// <summary>Appends a line for <paramref name="what"/> when tracing is on.</summary>
    public static void Mark(string what)
    {
        if (Path is not string file) { return; }
        long live = GC.GetTotalMemory(false);
        GCMemoryInfo gc = GC.GetGCMemoryInfo(GCKind.Any);
        long committed = Math.Max(gc.TotalCommittedBytes, live);   // read at another instant: never report less than the live heap
        long largeObjectsFree = gc.GenerationInfo.Length > 3 ? gc.GenerationInfo[3].FragmentationAfterBytes : 0;
        string line = string.Create(CultureInfo.InvariantCulture,
            $"{s_clock.Elapsed.TotalSeconds:F2}\t{ProcessMemory.CurrentRss >> 10}\t{ProcessMemory.PeakRss >> 10}\t{live >> 10}\t{committed >> 10}\t{largeObjectsFree >> 10}\t{what}\n");
        lock (s_gate)
        {
            try { File.AppendAllText(file, line); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }   // a diagnostic never fails the work it watches
        }
    }
}

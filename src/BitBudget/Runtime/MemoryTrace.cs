using System.Diagnostics;
using System.Globalization;

namespace BitBudget.Runtime;

/// <summary>
/// A diagnostic trace of where memory goes: with <c>BITBUDGET_MEMORY_TRACE=file</c> each stage boundary appends one line
/// (seconds since start, VmRSS and VmHWM in kB, managed heap in kB, what just happened). A sampler outside the process sees a
/// burst but not which step made it; this names the step. Off (one null check) unless the variable is set.
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
        string line = string.Create(CultureInfo.InvariantCulture,
            $"{s_clock.Elapsed.TotalSeconds:F2}\t{ProcessMemory.CurrentRss >> 10}\t{ProcessMemory.PeakRss >> 10}\t{GC.GetTotalMemory(false) >> 10}\t{what}\n");
        lock (s_gate)
        {
            try { File.AppendAllText(file, line); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }   // a diagnostic never fails the work it watches
        }
    }
}

using System.CommandLine;
using System.Runtime.InteropServices;
using BitBudget.Cli.Commands;

namespace BitBudget.Cli;

static class Program   // the one place that turns exceptions into a message and an exit code
{
    static int Main(string[] args)
    {
        // The CLI owns its process, so the garbage collector may be told the budget (a library host or test runner is not).
        // Not below 256 MiB: a budget smaller than the runtime itself needs is reported by the passes' own checks, which say
        // what would fit, rather than by an out-of-memory error.
        long? budget = s_budget = MemoryBudgetOf(args);
        long? limit = budget is long b ? Math.Max(b, ManagedHeapFloor) : null;
        bool limited = limit is long l && BitBudget.Runtime.ProcessMemory.LimitManagedHeap(l);
        if (budget is long shown && args.Contains("--verbose"))
        {
            Console.Error.WriteLine($"memory: budget {BitBudget.Runtime.ProcessMemory.Format(shown)}, managed heap limit {(limited ? BitBudget.Runtime.ProcessMemory.Format(limit!.Value) : "none")}");
        }
        return Run(args);
    }

    static long? s_budget;

    const long ManagedHeapFloor = 256L << 20;

    /// <summary>The --max-memory of the command line, else the default budget; null when it does not parse (the command reports that).</summary>
    static long? MemoryBudgetOf(string[] args)
    {
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i] == "--max-memory") { return i + 1 < args.Length ? BitBudget.Runtime.ProcessMemory.ParseAmount(args[i + 1]) : null; }
            if (args[i].StartsWith("--max-memory=", StringComparison.Ordinal)) { return BitBudget.Runtime.ProcessMemory.ParseAmount(args[i]["--max-memory=".Length..]); }
        }
        try { return BitBudget.Runtime.ProcessMemory.DefaultBudget; }
        catch (BitBudgetException) { return null; }
    }

    internal static int Run(string[] args)
    {
        var verbose = new Option<bool>("--verbose") { Description = "Print stack traces of internal errors.", Recursive = true };
        var root = new RootCommand("BitBudget: mixed-precision quantization for ONNX vision models.")
        {
            InspectCommand.Create(),
            EvalCommand.Create(),
            QuantizeCommand.Create(),
            SensitivityCommand.Create(),
            MergeCommand.Create(),
            SearchCommand.Create(),
            RunCommand.Create(),
            DemoCommand.Create(),
            verbose,
        };
        ParseResult parse = root.Parse(args);
        using var cancel = new CancellationTokenSource();
        bool terminated = false;
        ConsoleCancelEventHandler onCtrlC = (_, e) => { e.Cancel = true; cancel.Cancel(); };
        Console.CancelKeyPress += onCtrlC;
        // SIGTERM (kill, docker stop, a CI timeout) gets the same cleanup as Ctrl+C instead of .NET's immediate exit.
        using var onSigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context =>
        {
            context.Cancel = true;
            terminated = true;
            cancel.Cancel();
        });
        Ui.Cancellation = cancel.Token;
        try
        {
            return parse.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (BitBudgetException e)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return ExitCodes.For(e.Kind);
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine(terminated
                ? "error: terminated (SIGTERM); no output was written (a measurement store keeps what was measured)."
                : "error: cancelled; no output was written.");
            return terminated ? ExitCodes.Terminated : ExitCodes.Cancelled;
        }
        catch (OutOfMemoryException)
        {
            // The GC's heap limit is the budget (Main): live data beyond it is the budget's error, not a kernel kill.
            Console.Error.WriteLine($"error: out of memory within --max-memory {BitBudget.Runtime.ProcessMemory.Format(s_budget ?? BitBudget.Runtime.RuntimeOptions.Default.MaxMemory)}" +
                " (the managed heap is limited to the budget); raise --max-memory or lower --sens-images / --calib-images.");
            return ExitCodes.For(ErrorKind.InvalidInput);
        }
        catch (UnauthorizedAccessException e)
        {
            // A folder or file the user cannot write is a user error, not a bug.
            Console.Error.WriteLine($"error: {e.Message.ReplaceLineEndings(" ")}");
            return ExitCodes.For(ErrorKind.InvalidInput);
        }
        catch (Exception e)
        {
            // With --verbose the stack follows the line. (An exception filter that let it escape Main made .NET abort: exit 134.)
            Console.Error.WriteLine($"internal error: {e.GetType().Name}: {e.Message.ReplaceLineEndings(" ")}{(parse.GetValue(verbose) ? "" : " (rerun with --verbose)")}");
            if (parse.GetValue(verbose)) { Console.Error.WriteLine(e.ToString()); }
            return ExitCodes.Internal;
        }
        finally
        {
            Console.CancelKeyPress -= onCtrlC;
        }
    }
}

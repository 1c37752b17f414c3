using System.CommandLine;
using System.Runtime.InteropServices;
using BitBudget.Cli.Commands;

namespace BitBudget.Cli;

static class Program   // the one place that turns exceptions into a message and an exit code
{
    // The CLI owns its process, so the garbage collector may be told the budget (a library host or a test runner is not).
    static int Main(string[] args) => Run(args, ownsProcess: true);

    static long? s_budget;

    /// <summary>
    /// Gives the GC the command's --max-memory (else the default budget) as its heap limit. Not below 256 MiB: a budget smaller
    /// than the runtime itself needs is reported by the passes' own checks, which say what would fit, rather than by an
    /// out-of-memory error. A value that does not parse is left to the command, which reports it.
    /// </summary>
    static void LimitManagedHeap(ParseResult parse, bool verbose)
    {
        const long floor = 256L << 20;
        Option<string?>? option = parse.CommandResult.Command.Options.OfType<Option<string?>>().FirstOrDefault(o => o.Name == "--max-memory");
        long? budget;
        if (option is not null && parse.GetValue(option) is string text) { budget = RuntimeArguments.ParseMaxMemory(text); }
        else
        {
            try { budget = BitBudget.Runtime.ProcessMemory.DefaultBudget; }
            catch (BitBudgetException) { budget = null; }   // a bad BITBUDGET_MAX_MEMORY: the command reports it
        }
        if (budget is not long b) { return; }
        s_budget = b;
        long limit = Math.Max(b, floor);
        bool limited = BitBudget.Runtime.ProcessMemory.LimitManagedHeap(limit);
        if (verbose)
        {
            Console.Error.WriteLine($"memory: budget {BitBudget.Runtime.ProcessMemory.Format(b)}, managed heap limit {(limited ? BitBudget.Runtime.ProcessMemory.Format(limit) : "none")}");
        }
    }

    internal static int Run(string[] args, bool ownsProcess = false)
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
        if (ownsProcess) { LimitManagedHeap(parse, parse.GetValue(verbose)); }
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

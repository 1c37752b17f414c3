using System.CommandLine;
using System.Runtime.InteropServices;
using BitBudget.Cli.Commands;

namespace BitBudget.Cli;

static class Program   // the one place that turns exceptions into a message and an exit code
{
    static int Main(string[] args) => Run(args);

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

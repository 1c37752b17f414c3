using Spectre.Console;

namespace BitBudget.Tests.Support;

/// <summary>
/// Tests that read what the CLI prints: the consoles (and Ui.Quiet) are process-wide, so they run alone, not beside other
/// test classes that call the CLI.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ConsoleCollection
{
    public const string Name = "console";
}

/// <summary>Runs the CLI in process with stdout and stderr captured (one command at a time: the consoles are process-wide).</summary>
internal static class InProcessCli
{
    static readonly Lock s_lock = new();

    public sealed record Result(int Code, string Out, string Err)
    {
        /// <summary>Stderr lines, without blank ones.</summary>
        public string[] ErrLines => Err.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

        public override string ToString() => $"exit {Code}\n--- stdout\n{Out}\n--- stderr\n{Err}";
    }

    public static Result Run(params string[] args)
    {
        lock (s_lock)
        {
            var err = new StringWriter();
            var @out = new StringWriter();
            TextWriter oldErr = Console.Error, oldOut = Console.Out;
            IAnsiConsole uiErr = Cli.Ui.Err, uiOut = Cli.Ui.Out;
            bool quiet = Cli.Ui.Quiet;
            Console.SetError(err);
            Console.SetOut(@out);
            Cli.Ui.Err = Plain(err);
            Cli.Ui.Out = Plain(@out);
            Cli.Ui.Quiet = false;   // commands set it from --quiet; an earlier in-process run may have left it on
            try
            {
                int code = Cli.Program.Run(args);
                return new Result(code, @out.ToString(), err.ToString());
            }
            finally
            {
                Console.SetError(oldErr);
                Console.SetOut(oldOut);
                Cli.Ui.Err = uiErr;
                Cli.Ui.Out = uiOut;
                Cli.Ui.Quiet = quiet;
            }
        }
    }

    static IAnsiConsole Plain(TextWriter writer)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(writer),
            Ansi = AnsiSupport.No,
            ColorSystem = ColorSystemSupport.NoColors,
            Interactive = InteractionSupport.No,
        });
        console.Profile.Width = 400;
        return console;
    }
}

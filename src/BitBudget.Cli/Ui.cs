using System.Text.Json;
using System.Text.Json.Serialization;
using Spectre.Console;

namespace BitBudget.Cli;

/// <summary>Console plumbing: humans read stderr (tables, progress), scripts read stdout (JSON results).</summary>
static class Ui
{
    public static IAnsiConsole Err { get; set; } = Create(Console.Error, Console.IsErrorRedirected);

    public static IAnsiConsole Out { get; set; } = Create(Console.Out, Console.IsOutputRedirected);

    static IAnsiConsole Create(TextWriter writer, bool redirected)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(writer) });
        if (redirected) { console.Profile.Width = 160; }   // files and pipes have no width; 80 columns would wrap every table
        return console;
    }

    public static JsonSerializerOptions Json { get; } = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
    };

    public static void WriteJson<T>(T value) => Console.Out.WriteLine(JsonSerializer.Serialize(value, Json));

    public static string Shape(IReadOnlyList<long> shape) => "[" + string.Join("×", shape.Select(d => d < 0 ? "N" : d.ToString(System.Globalization.CultureInfo.InvariantCulture))) + "]";

    public static string Count(long value) => value.ToString("N0", System.Globalization.CultureInfo.InvariantCulture);
}

/// <summary>Process exit codes; the <see cref="ErrorKind"/> values are their own codes.</summary>
static class ExitCodes
{
    public const int Ok = 0;
    public const int Usage = 1;
    public const int Internal = 70;
    public const int Cancelled = 130;

    public static int For(ErrorKind kind) => (int)kind;
}

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

    /// <summary>Strict JSON for scripts: a NaN or infinite number is written as null, with a warning on stderr naming how many.</summary>
    public static string ToJson<T>(T value)
    {
        NonFiniteWritten = 0;
        var info = (System.Text.Json.Serialization.Metadata.JsonTypeInfo<T>)(CliJson.Stdout.GetTypeInfo(typeof(T))
            ?? throw new InvalidOperationException($"{typeof(T)} is not in {nameof(CliJson)}; add a [JsonSerializable] for it."));
        string text = JsonSerializer.Serialize(value, info);
        if (NonFiniteWritten > 0)
        {
            Console.Error.WriteLine($"warning: {NonFiniteWritten} non-finite number{(NonFiniteWritten == 1 ? "" : "s")} (NaN or infinity) written as null in the JSON output.");
        }
        return text;
    }

    public static void WriteJson<T>(T value) => Console.Out.WriteLine(ToJson(value));

    [ThreadStatic] static int NonFiniteWritten;

    /// <summary>JSON has no NaN or infinity: System.Text.Json throws on them (exit 70); null says "no number" and stays valid JSON.</summary>
    internal sealed class FiniteOrNull<T> : JsonConverter<T> where T : struct, System.Numerics.IFloatingPointIeee754<T>
    {
        public override bool HandleNull => false;

        public override T Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
            reader.TokenType == JsonTokenType.Null ? T.NaN : T.CreateChecked(reader.GetDouble());

        public override void Write(Utf8JsonWriter writer, T value, JsonSerializerOptions options)
        {
            if (!T.IsFinite(value))
            {
                NonFiniteWritten++;
                writer.WriteNullValue();
            }
            else if (typeof(T) == typeof(float)) { writer.WriteNumberValue((float)(object)value); }
            else { writer.WriteNumberValue(double.CreateChecked(value)); }
        }
    }

    public static string Shape(IReadOnlyList<long> shape) => "[" + string.Join("×", shape.Select(d => d < 0 ? "N" : d.ToString(System.Globalization.CultureInfo.InvariantCulture))) + "]";

    /// <summary>Cancelled by Ctrl+C; long stages poll it so the process exits cleanly.</summary>
    public static CancellationToken Cancellation { get; set; }

    /// <summary>No progress bars or informational lines (set by --quiet).</summary>
    public static bool Quiet { get; set; }

    /// <summary>Runs <paramref name="work"/> with a progress bar (ETA, rate) on stderr when it is a terminal.</summary>
    public static T WithProgress<T>(string title, int total, Func<IProgress<int>, T> work)
    {
        if (Quiet || Console.IsErrorRedirected || total <= 0) { return work(new Progress<int>(_ => { })); }
        T result = default!;
        Err.Progress().AutoClear(true).HideCompleted(true)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask(Markup.Escape(title), maxValue: total);
                result = work(new SyncProgress(v => task.Value = v));
            });
        return result;
    }

    /// <summary>Runs <paramref name="work"/> with a bar whose total and caption it sets as it goes (done, total, caption).</summary>
    public static T WithDynamicProgress<T>(string title, Func<Action<long, long, string?>, T> work)
    {
        if (Quiet || Console.IsErrorRedirected) { return work((_, _, _) => { }); }
        T result = default!;
        Err.Progress().AutoClear(true).HideCompleted(true)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask(Markup.Escape(title), maxValue: 1);
                result = work((done, total, caption) =>
                {
                    task.MaxValue = Math.Max(1, total);
                    task.Value = done;
                    if (caption is not null) { task.Description = Markup.Escape($"{title} {caption}"); }
                });
            });
        return result;
    }

    /// <summary>An informational grey line on stderr (nothing with --quiet).</summary>
    public static void Note(string? line)
    {
        if (line is not null && !Quiet) { Err.MarkupLine($"[grey]{Markup.Escape(line)}[/]"); }
    }

    /// <summary>Loads a dataset with a progress bar; with <paramref name="model"/>, warns when its class count and the data's differ.</summary>
    public static BitBudget.Data.Dataset LoadData(BitBudget.Data.DataOptions options, BitBudget.Graph.OnnxModel? model = null)
    {
        var data = WithDynamicProgress($"decoding {System.IO.Path.GetFileName(options.Path.TrimEnd('/'))}", report => LoadData(options, report));
        if (!Quiet)
        {
            string classes = string.Join(", ", data.ClassNames.Take(10)) + (data.ClassNames.Count > 10 ? $", … ({data.ClassNames.Count} classes)" : "");
            Err.MarkupLine(data.IsLabeled ? $"[grey]data: {Markup.Escape(data.Description)}; labels 0… = {Markup.Escape(classes)}[/]"
                : $"[grey]data: {Markup.Escape(data.Description)}; no labels (calibration and --loss kl|mse only)[/]");
        }
        if (model is not null && ClassCountWarning(model, data) is string warning)
        {
            Err.MarkupLine($"[yellow]warning:[/] {Markup.Escape(warning)}");
        }
        return data;
    }

    /// <summary>Loads a dataset reporting (images decoded, images selected) as it goes; nothing is reported on a cache hit but the total.</summary>
    internal static BitBudget.Data.Dataset LoadData(BitBudget.Data.DataOptions options, Action<long, long, string?> report)
    {
        int total = 0;
        return BitBudget.Data.DatasetLoader.Load(options, new SyncProgress(n => report(n, total, null)),
            w => Err.MarkupLine($"[yellow]warning:[/] {Markup.Escape(w)}"), t => { total = t; report(0, t, null); });
    }

    /// <summary>A warning when the model's output class count (declared in the graph) differs from what the data's labels need.</summary>
    internal static string? ClassCountWarning(BitBudget.Graph.OnnxModel model, BitBudget.Data.Dataset data)
    {
        IReadOnlyList<long> shape = model.OutputShape;
        if (!data.IsLabeled || shape.Count < 2 || shape[^1] <= 0 || shape[^1] == data.ClassCount) { return null; }
        long classes = shape[^1];
        string offset = data.LabelOffset > 0 ? $" + label offset {data.LabelOffset}" : "";
        string hint = classes > data.ClassCount
            ? $"; if the model's first {classes - data.ClassNames.Count} class(es) are extra (e.g. a background class 0), pass --label-offset {classes - data.ClassNames.Count}"
            : "";
        return $"the model's output '{model.OutputName}' has {classes} classes but the data has {data.ClassNames.Count}{offset}{hint}.";
    }

    sealed class SyncProgress(Action<int> report) : IProgress<int>
    {
        public void Report(int value) => report(value);
    }

    public static string Count(long value) => value.ToString("N0", System.Globalization.CultureInfo.InvariantCulture);
}

/// <summary>Process exit codes; the <see cref="ErrorKind"/> values are their own codes.</summary>
static class ExitCodes
{
    public const int Ok = 0;
    public const int Usage = 1;
    public const int Internal = 70;
    public const int Cancelled = 130;
    public const int Terminated = 143;   // 128 + SIGTERM, what shells report for a terminated process

    public static int For(ErrorKind kind) => (int)kind;
}

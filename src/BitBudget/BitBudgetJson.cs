using System.Diagnostics.CodeAnalysis;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;
using BitBudget.Data;
using BitBudget.Internals;
using BitBudget.Optimization;
using BitBudget.BestOf;
using BitBudget.Reporting;

namespace BitBudget;

/// <summary>
/// The one JSON schema of every file the library writes (pareto.json, layers.json, manifest.json, best-candidates.json,
/// search results, preprocessing): source-generated metadata, snake_case names and enum values, indented, NaN/±∞ as the
/// strings "NaN"/"Infinity" so files round-trip, and unknown fields refused on reading.
/// </summary>
/// <remarks>
/// It lives in the root namespace beside <see cref="BitBudgetException"/> because every stage writes through it; it holds
/// metadata only. The encoder is <see cref="JavaScriptEncoder.UnsafeRelaxedJsonEscaping"/> so layer names keep their
/// <c>+</c>, <c>&lt;</c>, <c>'</c> and non-ASCII letters as written: safe because these files are never pasted into HTML
/// or script unescaped (the HTML report escapes everything it embeds through its template engine).
/// </remarks>
[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    WriteIndented = true,
    NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    AllowTrailingCommas = true,
    ReadCommentHandling = JsonCommentHandling.Skip,
    UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow)]
[JsonSerializable(typeof(ParetoFront))]
[JsonSerializable(typeof(List<LayerReportRow>))]
[JsonSerializable(typeof(RunManifest))]
[JsonSerializable(typeof(List<BestCandidate>))]
[JsonSerializable(typeof(SearchResultJson))]
[JsonSerializable(typeof(Preprocessing))]
internal sealed partial class BitBudgetJson : JsonSerializerContext
{
    /// <summary>The context every writer uses: the options above plus the relaxed encoder and snake_case enum values (neither expressible in the attribute).</summary>
    internal static BitBudgetJson Files { get; } = new(CreateOptions(JsonNamingPolicy.SnakeCaseLower));

    /// <summary>The same settings with no property naming policy (the caller names fields itself, e.g. the bit config).</summary>
    internal static JsonSerializerOptions WriterOptions { get; } = new() { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    internal static JsonSerializerOptions CreateOptions(JsonNamingPolicy naming) => new()
    {
        PropertyNamingPolicy = naming,
        WriteIndented = true,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        AllowTrailingCommas = true,
        ReadCommentHandling = JsonCommentHandling.Skip,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        Converters = { new SnakeCaseEnumConverter() },
    };

    /// <summary>The indented JSON text of <paramref name="value"/>.</summary>
    internal static string Serialize<T>(T value) => JsonSerializer.Serialize(value, Info<T>(Files));

    /// <summary>Writes <paramref name="value"/> to <paramref name="path"/> atomically.</summary>
    internal static void Write<T>(T value, string path) => AtomicFile.WriteAllBytes(path, JsonSerializer.SerializeToUtf8Bytes(value, Info<T>(Files)));

    /// <summary>
    /// Reads a file written by <see cref="Write"/>. Files from versions before the one schema (camelCase names) still read:
    /// a snake_case read refuses their multi-word names, and then the camelCase reading is tried.
    /// </summary>
    internal static T Read<T>(string path, string what)
    {
        if (!File.Exists(path))
        {
            throw Errors.FileNotFound($"The {what} file '{path}' does not exist.");
        }
        byte[] bytes = File.ReadAllBytes(path);
        try
        {
            return Deserialize(bytes, Info<T>(Files), path, what);
        }
        catch (JsonException snake)
        {
            try
            {
                return Deserialize(bytes, Info<T>(LegacyCamelCase), path, what);
            }
            catch (JsonException)
            {
                throw Errors.InvalidInput($"The {what} file '{path}' is not valid {what} JSON: {snake.Message.ReplaceLineEndings(" ")}", snake);
            }
        }
    }

    static T Deserialize<T>(byte[] bytes, JsonTypeInfo<T> info, string path, string what) =>
        JsonSerializer.Deserialize(bytes, info)
            ?? throw Errors.InvalidInput($"The {what} file '{path}' contains null instead of a {what}.");

    /// <summary>Reads report files written before the snake_case schema (camelCase names); never used for writing.</summary>
    static readonly BitBudgetJson LegacyCamelCase = new(CreateOptions(JsonNamingPolicy.CamelCase));

    internal static JsonTypeInfo<T> Info<T>(BitBudgetJson context) =>
        (JsonTypeInfo<T>)(context.GetTypeInfo(typeof(T)) ?? throw new InvalidOperationException($"{typeof(T)} is not in {nameof(BitBudgetJson)}; add a [JsonSerializable] for it."));
}

/// <summary>Enum values as snake_case strings ("time_limit"), read back case-insensitively.</summary>
[SuppressMessage("Trimming", "IL2026", Justification = "The library is not trimmed; the enum types are all known to the context.")]
internal sealed class SnakeCaseEnumConverter() : JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower);

/// <summary>The JSON shape of a <see cref="SearchResult"/>; a non-finite number (no bound proven) is null.</summary>
internal sealed record SearchResultJson(
    string Method,
    string Status,
    string Solver,
    double? Objective,
    double? BestBound,
    double? Gap,
    double? QuadraticObjective,
    double SolveSeconds,
    double? SizeBytes,
    double? AverageBits,
    double? AverageBitsSearched,
    double? BitOps,
    IReadOnlyList<LayerChoice> Layers)
{
    internal static SearchResultJson From(SearchResult r) => new(
        r.Method.ToString().ToLowerInvariant(),
        JsonNamingPolicy.SnakeCaseLower.ConvertName(r.Status.ToString()),
        r.Solver,
        Finite(r.Objective), Finite(r.BestBound), Finite(r.Gap), Finite(r.QuadraticObjective),
        Math.Round(r.SolveTime.TotalSeconds, 4),
        Finite(r.SizeBytes), Finite(r.AverageBits), Finite(r.AverageBitsSearched), Finite(r.BitOps),
        [.. r.Bits.Select(b => new LayerChoice(b.Key, b.Value))]);

    static double? Finite(double v) => double.IsFinite(v) ? v : null;
}

using System.Text.Json;
using System.Text.Json.Serialization;
using BitBudget.Internals;

namespace BitBudget.Reporting;

/// <summary>The one JSON shape every report file uses: camelCase, indented, NaN/±∞ as the strings "NaN"/"Infinity" so they round-trip.</summary>
static class ReportJson
{
    internal static readonly JsonSerializerOptions Options = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DictionaryKeyPolicy = null,
        WriteIndented = true,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    internal static void Write<T>(T value, string path) =>
        AtomicFile.WriteAllBytes(path, JsonSerializer.SerializeToUtf8Bytes(value, Options));

    internal static T Read<T>(string path, string what)
    {
        if (!File.Exists(path))
        {
            throw new BitBudgetException(ErrorKind.FileNotFound, $"The {what} file '{path}' does not exist.");
        }
        try
        {
            return JsonSerializer.Deserialize<T>(File.ReadAllBytes(path), Options)
                ?? throw new BitBudgetException(ErrorKind.InvalidInput, $"The {what} file '{path}' contains null instead of a {what}.");
        }
        catch (JsonException e)
        {
            throw new BitBudgetException(ErrorKind.InvalidInput, $"The {what} file '{path}' is not valid {what} JSON: {e.Message}", e);
        }
    }
}

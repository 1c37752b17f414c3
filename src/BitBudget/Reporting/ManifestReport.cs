namespace BitBudget.Reporting;

/// <summary>Writes and reads <c>manifest.json</c>: versions, seeds, hashes, timings and solver statuses of one run.</summary>
internal static class ManifestReport
{
    /// <summary>Writes <paramref name="manifest"/> as indented camelCase JSON, atomically.</summary>
    public static void WriteJson(RunManifest manifest, string path)
    {
        ArgumentNullException.ThrowIfNull(manifest);
        ReportJson.Write(manifest, path);
    }

    /// <summary>Reads a manifest written by <see cref="WriteJson"/>.</summary>
    public static RunManifest ReadJson(string path) => ReportJson.Read<RunManifest>(path, "manifest");

    /// <summary>The JSON text <see cref="WriteJson"/> writes.</summary>
    public static string ToJson(RunManifest manifest) => System.Text.Json.JsonSerializer.Serialize(manifest, ReportJson.Options);
}

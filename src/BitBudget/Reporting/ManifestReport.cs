namespace BitBudget.Reporting;

/// <summary>Writes and reads <c>manifest.json</c>: versions, seeds, hashes, timings and solver statuses of one run.</summary>
internal static class ManifestReport
{
    /// <summary>Writes <paramref name="manifest"/> as indented snake_case JSON, atomically.</summary>
    public static void WriteJson(RunManifest manifest, string path)
    {
        ArgumentNullException.ThrowIfNull(manifest);
        BitBudgetJson.Write(manifest, path);
    }

    /// <summary>Reads a manifest written by <see cref="WriteJson"/> (or by a version before snake_case, in camelCase).</summary>
    public static RunManifest ReadJson(string path) => BitBudgetJson.Read<RunManifest>(path, "manifest");

    /// <summary>The JSON text <see cref="WriteJson"/> writes.</summary>
    public static string ToJson(RunManifest manifest) => BitBudgetJson.Serialize(manifest);
}

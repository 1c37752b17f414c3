using BitBudget.Internals;

namespace BitBudget.Cli;

/// <summary>Checks an output path before any work is done: never an input, never a folder where a file goes, a writable folder,
/// and --force to replace an existing file.</summary>
static class OutputGuard
{
    /// <summary>Throws a one-line user error unless <paramref name="output"/> may be written as a file.</summary>
    /// <param name="output">The output file.</param>
    /// <param name="force">Whether an existing output may be replaced.</param>
    /// <param name="inputs">Every file the command reads (null entries are ignored); none of them is ever replaced, whatever the flags.</param>
    public static string CheckFile(string output, bool force, IEnumerable<string?> inputs)
    {
        string full = Path.GetFullPath(output);
        if (Directory.Exists(full))
        {
            throw Errors.InvalidInput($"Output '{full}' is a folder; give a file name.");
        }
        CheckNotInput(full, inputs);
        if (File.Exists(full) && !force)
        {
            throw Errors.OutputExists($"Output '{full}' already exists; use --force to overwrite it.");
        }
        CheckWritable(Path.GetDirectoryName(full)!);
        return full;
    }

    /// <summary>Throws when <paramref name="output"/> is one of <paramref name="inputs"/> (full path, symbolic or hard link).</summary>
    public static void CheckNotInput(string output, IEnumerable<string?> inputs)
    {
        foreach (string? input in inputs)
        {
            if (input is not null && FileIdentity.SameFile(output, input))
            {
                throw Errors.InvalidInput(
                    $"Output '{output}' is the input '{input}'; BitBudget never writes over an input, even with --force. Choose another output.");
            }
        }
    }

    /// <summary>Fails now, not after the work, when the output folder is missing or cannot be written.</summary>
    public static void CheckWritable(string folder)
    {
        if (!Directory.Exists(folder))
        {
            throw Errors.FileNotFound($"Output folder '{folder}' does not exist.");
        }
        string probe = Path.Combine(folder, $".bitbudget-write-test.{Environment.ProcessId}.{Guid.NewGuid():N}");
        try
        {
            using (File.Create(probe, 1, FileOptions.DeleteOnClose)) { }
        }
        catch (Exception e) when (e is UnauthorizedAccessException or IOException)
        {
            throw Errors.InvalidInput($"Output folder '{folder}' cannot be written: {e.Message.ReplaceLineEndings(" ")}", e);
        }
    }

    /// <summary>The files behind a data source argument that an output must never replace (the IDX labels file beside an images file too).</summary>
    public static IEnumerable<string?> DataFiles(string? data)
    {
        if (data is null || !File.Exists(data)) { yield break; }
        yield return data;
        string name = Path.GetFileName(data);
        if (name.Contains("images-idx3", StringComparison.OrdinalIgnoreCase))
        {
            yield return Path.Combine(Path.GetDirectoryName(Path.GetFullPath(data))!, name.Replace("images-idx3", "labels-idx1", StringComparison.OrdinalIgnoreCase));
        }
    }
}

using System.Diagnostics;
using System.Globalization;

namespace BitBudget.Internals;

/// <summary>
/// A folder of outputs written as a whole: the work goes into a hidden sibling (<c>.NAME.partial-PID-GUID</c>) that is moved to
/// its place only when everything succeeded, the same idea as <see cref="AtomicFile"/> for a folder.
/// </summary>
internal static class OutputStaging
{
    const string Marker = ".partial-";

    /// <summary>Creates the staging folder for <paramref name="target"/> (and its parent); removes stale ones of dead processes.</summary>
    public static string Create(string target)
    {
        string full = Path.GetFullPath(target).TrimEnd(Path.DirectorySeparatorChar);
        string parent = Path.GetDirectoryName(full) ?? throw Errors.InvalidInput($"Output folder '{full}' has no parent folder.");
        string name = Path.GetFileName(full);
        try
        {
            Directory.CreateDirectory(parent);
            RemoveStale(parent, name);
            string staging = Path.Combine(parent, $".{name}{Marker}{Environment.ProcessId.ToString(CultureInfo.InvariantCulture)}-{Guid.NewGuid():N}");
            Directory.CreateDirectory(staging);
            return staging;
        }
        catch (Exception e) when (e is UnauthorizedAccessException or IOException)
        {
            throw Errors.InvalidInput($"Output folder '{full}' cannot be written: {e.Message.ReplaceLineEndings(" ")}", e);
        }
    }

    /// <summary>Moves the staged outputs to <paramref name="target"/>: a rename when the target is absent or empty, else file by file (overwriting).</summary>
    public static void Publish(string staging, string target)
    {
        if (Directory.Exists(target) && !Directory.EnumerateFileSystemEntries(target).Any()) { Directory.Delete(target); }
        if (!Directory.Exists(target))
        {
            Directory.Move(staging, target);
            return;
        }
        foreach (string file in Directory.EnumerateFiles(staging, "*", SearchOption.AllDirectories))
        {
            string destination = Path.Combine(target, Path.GetRelativePath(staging, file));
            Directory.CreateDirectory(Path.GetDirectoryName(destination)!);
            File.Move(file, destination, overwrite: true);
        }
    }

    /// <summary>Deletes a staging folder that was not published (no-op after <see cref="Publish"/> renamed it).</summary>
    public static void Discard(string staging)
    {
        try
        {
            if (Directory.Exists(staging)) { Directory.Delete(staging, recursive: true); }
        }
        catch (Exception e) when (e is UnauthorizedAccessException or IOException)
        {
            // Leftovers are hidden and removed by the next run in this folder.
        }
    }

    /// <summary>Staging folders of <paramref name="name"/> left by processes that no longer run (killed with SIGKILL, power loss).</summary>
    static void RemoveStale(string parent, string name)
    {
        foreach (string dir in Directory.EnumerateDirectories(parent, $".{name}{Marker}*"))
        {
            string rest = Path.GetFileName(dir)[(name.Length + 1 + Marker.Length)..];
            int dash = rest.IndexOf('-', StringComparison.Ordinal);
            if (dash > 0 && int.TryParse(rest[..dash], NumberStyles.None, CultureInfo.InvariantCulture, out int pid) && !IsRunning(pid))
            {
                Discard(dir);
            }
        }
    }

    static bool IsRunning(int pid)
    {
        try
        {
            using var process = Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }
}

using System.Runtime.InteropServices;

namespace BitBudget.Runtime;

/// <summary>
/// A large array that a stage which does not read it can move to a temporary file, so the memory goes to the work that does.
/// ResNet-18's CLADO measurement began with 1.98 GB of managed data in a 3 GiB budget, 1.05 GB of it GPTQ's input statistics
/// and 0.30 GB the calibration images, neither read until a later stage re-rounds: what stayed for the measurement was one
/// image per run. <see cref="Value"/> reads the array back on first use after <see cref="Spill"/>, bit for bit, so spilling
/// only ever costs time; when the file cannot be written the array simply stays in memory.
/// </summary>
/// <remarks>The file is unlinked as soon as it is open (on Windows: deleted when closed), so a killed process leaves none behind.</remarks>
internal sealed class SpillableArray<T> where T : unmanaged
{
    T[]? _array;
    FileStream? _file;
    readonly Lock _gate = new();

    // Elements per read or write: a span of bytes is indexed by int, and a 3 GB image set is more bytes than that.
    const int Chunk = 1 << 24;

    public SpillableArray(T[] array)
    {
        ArgumentNullException.ThrowIfNull(array);
        _array = array;
        Length = array.LongLength;
    }

    /// <summary>Elements of the array.</summary>
    public long Length { get; }

    /// <summary>Bytes of the array.</summary>
    public long Bytes => Length * Marshal.SizeOf<T>();

    /// <summary>True while the array is in its file and not in memory.</summary>
    public bool IsSpilled
    {
        get { lock (_gate) { return _array is null; } }
    }

    /// <summary>The array; read back from its file first if it was spilled (and the file then closed).</summary>
    public T[] Value
    {
        get
        {
            lock (_gate)
            {
                if (_array is not null) { return _array; }
                var array = new T[Length];
                FileStream file = _file!;
                file.Position = 0;
                for (int at = 0; at < array.Length; at += Chunk)
                {
                    file.ReadExactly(MemoryMarshal.AsBytes(array.AsSpan(at, Math.Min(Chunk, array.Length - at))));
                }
                file.Dispose();
                _file = null;
                _array = array;
                return array;
            }
        }
    }

    /// <summary>Environment variable naming the folder spilled arrays go to (default: the system's temporary folder).</summary>
    public const string DirectoryVariable = "BITBUDGET_SPILL_DIR";

    /// <summary>
    /// Writes the array to a temporary file in <paramref name="directory"/> (default: <see cref="DirectoryVariable"/>, else the
    /// system's temporary folder) and drops it from memory: a caller still holding the old array keeps it alive until it lets go.
    /// Returns the bytes moved to the file, or 0 (and keeps the array) when there is nothing to spill, when the folder is in
    /// memory itself (tmpfs: the bytes would only move out of the process's count, not out of the machine's memory), lacks the
    /// space, or the file could not be written.
    /// </summary>
    public long Spill(string? directory = null)
    {
        lock (_gate)
        {
            if (_array is null || _array.Length == 0) { return 0; }
            directory ??= Environment.GetEnvironmentVariable(DirectoryVariable) is { Length: > 0 } chosen ? chosen : Path.GetTempPath();
            if (Unsuitable(directory) is string why)
            {
                MemoryTrace.Mark($"did not spill {Bytes >> 10} kB to {directory}: {why}");
                return 0;
            }
            string path = Path.Combine(directory, $"bitbudget-spill-{Guid.NewGuid():N}.bin");
            FileStream? file = null;
            try
            {
                file = new FileStream(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.Delete, 1 << 16, FileOptions.DeleteOnClose);
                if (!OperatingSystem.IsWindows()) { File.Delete(path); }
                for (int at = 0; at < _array.Length; at += Chunk)
                {
                    file.Write(MemoryMarshal.AsBytes(_array.AsSpan(at, Math.Min(Chunk, _array.Length - at))));
                }
                file.Flush();
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                file?.Dispose();
                MemoryTrace.Mark($"could not spill {Bytes >> 10} kB to {path}: {e.Message}");
                return 0;
            }
            _file = file;
            _array = null;
            return Bytes;
        }
    }

    string? Unsuitable(string directory)
    {
        try
        {
            var drive = new DriveInfo(directory);
            if (drive.DriveType == DriveType.Ram) { return $"it is in memory ({drive.DriveFormat}); set {DirectoryVariable} to a folder on disk"; }
            // Leave the disk a margin: filling it would fail whatever writes next (the measurement store, the outputs).
            if (drive.AvailableFreeSpace < 2 * Bytes + (256L << 20)) { return $"only {drive.AvailableFreeSpace >> 20} MiB free"; }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            return null;   // no drive information here: writing the file decides
        }
        return null;
    }
}

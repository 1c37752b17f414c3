using System.Runtime.InteropServices;

namespace BitBudget.Internals;

/// <summary>Whether two paths name the same file: same full path, through symbolic links, or (on Linux) the same inode (a hard link).</summary>
internal static partial class FileIdentity
{
    /// <summary>True when both paths exist and are the same file.</summary>
    public static bool SameFile(string a, string b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        if (!File.Exists(a) || !File.Exists(b)) { return false; }
        if (string.Equals(Resolve(a), Resolve(b), StringComparison.Ordinal)) { return true; }
        return Inode(a) is (ulong devA, ulong inoA) && Inode(b) is (ulong devB, ulong inoB) && devA == devB && inoA == inoB;
    }

    /// <summary>The full path with every symbolic link along it resolved (the path itself when it cannot be resolved).</summary>
    public static string Resolve(string path)
    {
        string full = Path.GetFullPath(path);
        string? dir = Path.GetDirectoryName(full);
        string resolved = full;
        try
        {
            if (dir is not null && Path.GetDirectoryName(dir) is not null)
            {
                resolved = Path.Combine(Resolve(dir), Path.GetFileName(full));
            }
            FileSystemInfo info = Directory.Exists(resolved) ? new DirectoryInfo(resolved) : new FileInfo(resolved);
            if (info.ResolveLinkTarget(returnFinalTarget: true) is FileSystemInfo target) { resolved = Resolve(target.FullName); }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return resolved;
    }

    /// <summary>(device, inode) from stat(2) on 64-bit Linux, where both lead struct stat as 8-byte fields; null elsewhere.</summary>
    static (ulong Device, ulong Inode)? Inode(string path)
    {
        if (!OperatingSystem.IsLinux() || !Environment.Is64BitProcess) { return null; }
        Span<byte> buffer = stackalloc byte[256];   // sizeof(struct stat) is 144 on x86-64, 128 on arm64
        try
        {
            if (Stat(path, ref MemoryMarshal.GetReference(buffer)) != 0) { return null; }
        }
        catch (EntryPointNotFoundException) { return null; }   // glibc before 2.33 exports only __xstat
        catch (DllNotFoundException) { return null; }
        return (MemoryMarshal.Read<ulong>(buffer), MemoryMarshal.Read<ulong>(buffer[8..]));
    }

    [LibraryImport("libc", EntryPoint = "stat", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Stat(string path, ref byte buffer);
}

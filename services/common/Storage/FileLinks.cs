using System.Runtime.InteropServices;

namespace Conduit.Common.Storage;

/// <summary>Hard links, which .NET has no API for (backups link media files rather than copying them).</summary>
public static partial class FileLinks
{
    /// <summary>Hard-links every file of <paramref name="from"/> into <paramref name="to"/>, recursively; copies where a
    /// link cannot be made (another file system, or Windows).</summary>
    public static void LinkTree(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var d in Directory.GetDirectories(from)) LinkTree(d, Path.Combine(to, Path.GetFileName(d)));
        foreach (var f in Directory.GetFiles(from))
        {
            var target = Path.Combine(to, Path.GetFileName(f));
            if (!OperatingSystem.IsWindows() && link(f, target) == 0) continue;
            File.Copy(f, target);
        }
    }

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int link(string oldPath, string newPath);
}

using System.Globalization;
using System.Runtime.InteropServices;

namespace Conduit.Common.Runtime;

/// <summary>
/// Hands back the pages of the executable and the shared libraries that the process has faulted in. They count in its
/// resident set, and starting faults in megabytes of code and read-only data that never run again: building the host,
/// its DI container and route tables, reading the config, opening the database, the dynamic linker resolving
/// librocksdb's symbols. The kernel also reads ahead and maps up to 64 KB around every page touched (fault-around), so
/// a start that touches a few bytes here and there leaves most of the 26 MB executable resident. Measured on the
/// all-in-one Native AOT server (README, "A small VPS"): settled after the start, 31 of its 57 MB of RSS were such
/// pages; after the page-out it settles at 27 MB, and at 36 to 38 MB once a client has created a room, sent and synced.
/// <para>
/// Only private, read-only mappings of files are advised: nothing written is lost, a page that is needed again is read
/// back from the file (from the page cache, or the disk), and pages that other processes map too (libc; the split
/// processes sharing one executable) are left alone by the kernel. Each mapping is first marked as read at random
/// (<c>MADV_RANDOM</c>: a fault reads one page, not a window around it; worth about 2.5 MB of what requests read back),
/// then paged out (<c>MADV_PAGEOUT</c>, Linux 5.4). The edge's MemoryTrimmer does this once, when the start has
/// settled, and clear_caches does it on request; doing it whenever the server turns quiet would evict the code every
/// request runs, only to read it back at the next one. Elsewhere than Linux, and on older kernels, this does nothing.
/// </para>
/// </summary>
public static unsafe class MappedFiles
{
    /// <summary>madvise's advice to reclaim the pages now (include/uapi/asm-generic/mman-common.h).</summary>
    const int MadvPageout = 21;

    /// <summary>madvise's advice that the pages will be read in no particular order: no read-ahead when one faults.</summary>
    const int MadvRandom = 1;

    static readonly delegate* unmanaged<nint, nuint, int, int> Madvise = Find();

    static delegate* unmanaged<nint, nuint, int, int> Find()
    {
        if (!OperatingSystem.IsLinux() || !NativeLibrary.TryLoad("libc.so.6", out var libc)) return null;
        return NativeLibrary.TryGetExport(libc, "madvise", out var f) ? (delegate* unmanaged<nint, nuint, int, int>)f : null;
    }

    /// <summary>Advises every private read-only file mapping out; returns the bytes of the mappings the kernel took
    /// the advice for (0 where it is not supported).</summary>
    public static long PageOut()
    {
        if (Madvise == null) return 0;
        string maps;
        try { maps = File.ReadAllText("/proc/self/maps"); }
        catch (IOException) { return 0; }
        catch (UnauthorizedAccessException) { return 0; }
        long advised = 0;
        foreach (var (start, length) in ReadOnlyFileMappings(maps))
        {
            Madvise(start, length, MadvRandom);
            if (Madvise(start, length, MadvPageout) == 0) advised += (long)length;
        }
        return advised;
    }

    /// <summary>
    /// The private, readable, non-writable mappings of files in a /proc/PID/maps text (proc(5): "start-end perms offset
    /// dev inode path"). Anonymous memory, the stack and the heap, the kernel's [vdso], shared mappings and anything
    /// writable are left out.
    /// </summary>
    internal static IEnumerable<(nint Start, nuint Length)> ReadOnlyFileMappings(string maps)
    {
        foreach (var line in maps.Split('\n'))
        {
            var fields = line.Split(' ', 6, StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length < 6 || !fields[5].StartsWith('/')) continue;
            var perms = fields[1];
            if (perms.Length != 4 || perms[0] != 'r' || perms[1] != '-' || perms[3] != 'p') continue;
            var dash = fields[0].IndexOf('-');
            if (dash <= 0
                || !ulong.TryParse(fields[0].AsSpan(0, dash), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var start)
                || !ulong.TryParse(fields[0].AsSpan(dash + 1), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var end)
                || end <= start) continue;
            yield return ((nint)start, (nuint)(end - start));
        }
    }

    /// <summary>The resident set's parts from /proc/self/status, in bytes: anonymous memory, file pages, shared memory
    /// (null where there is no such file).</summary>
    public static (long Anon, long File, long Shmem)? ResidentParts()
    {
        if (!OperatingSystem.IsLinux()) return null;
        try
        {
            long anon = 0, file = 0, shmem = 0;
            foreach (var line in File.ReadLines("/proc/self/status"))
            {
                if (line.StartsWith("RssAnon:", StringComparison.Ordinal)) anon = Kb(line);
                else if (line.StartsWith("RssFile:", StringComparison.Ordinal)) file = Kb(line);
                else if (line.StartsWith("RssShmem:", StringComparison.Ordinal)) shmem = Kb(line);
            }
            return (anon, file, shmem);
        }
        catch (IOException) { return null; }
    }

    static long Kb(string line)
    {
        var digits = line.AsSpan(line.IndexOf(':') + 1).Trim();
        var space = digits.IndexOf(' ');
        if (space > 0) digits = digits[..space];
        return long.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out var kb) ? kb * 1024 : 0;
    }
}

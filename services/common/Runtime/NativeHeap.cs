using System.Runtime.InteropServices;

namespace Conduit.Common.Runtime;

/// <summary>
/// Gives the C heap's free pages back to the system. Native code (RocksDB opening one memtable, table cache and
/// statistics; the .NET runtime's own allocations) frees megabytes while the server starts, and
/// glibc's malloc keeps such pages mapped unless the free space sits at the very top of the heap. The edge's
/// MemoryTrimmer calls this once the start has settled, when the server turns quiet after work and every few minutes,
/// and clear_caches calls it too
/// (measured on the idle all-in-one server: README, "A small VPS"). Elsewhere than glibc (musl, macOS, Windows) this
/// does nothing.
/// </summary>
public static unsafe class NativeHeap
{
    static readonly delegate* unmanaged<nuint, int> MallocTrim = Find();

    static delegate* unmanaged<nuint, int> Find()
    {
        if (!OperatingSystem.IsLinux() || !NativeLibrary.TryLoad("libc.so.6", out var libc)) return null;
        return NativeLibrary.TryGetExport(libc, "malloc_trim", out var f) ? (delegate* unmanaged<nuint, int>)f : null;
    }

    /// <summary>Returns whether anything was given back (false where there is no glibc).</summary>
    public static bool Trim() => MallocTrim != null && MallocTrim(0) != 0;
}

using System.Runtime.InteropServices;
using Conduit.Common.Runtime;

namespace Conduit.Common.Tests;

public class NativeHeapTests
{
    static long RssKb() =>
        long.Parse(File.ReadLines("/proc/self/status").First(l => l.StartsWith("VmRSS:")).Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]);

    [Fact]
    public void Trim_gives_freed_pages_in_the_middle_of_the_C_heap_back()
    {
        if (!OperatingSystem.IsLinux() || !File.Exists("/lib/x86_64-linux-gnu/libc.so.6") && !File.Exists("/usr/lib/x86_64-linux-gnu/libc.so.6")) return;
        // 48 MB in small blocks (below malloc's mmap threshold, so they come from a heap), all written to, then freed
        // except the last: the free space is not at the top of the heap, so free() alone keeps it mapped.
        const int count = 48 * 1024, size = 1000;
        var blocks = new nint[count];
        var ones = Enumerable.Repeat((byte)1, size).ToArray();
        var thread = new Thread(() =>
        {
            for (var i = 0; i < count; i++)
            {
                blocks[i] = Marshal.AllocHGlobal(size);
                Marshal.Copy(ones, 0, blocks[i], size);
            }
            for (var i = 0; i < count - 1; i++) Marshal.FreeHGlobal(blocks[i]);
        });
        thread.Start();
        thread.Join();
        try
        {
            var before = RssKb();
            Assert.True(NativeHeap.Trim());
            var after = RssKb();
            Assert.True(before - after > 24 * 1024, $"RSS {before} KB before the trim, {after} KB after");
        }
        finally
        {
            Marshal.FreeHGlobal(blocks[count - 1]);
        }
    }
}

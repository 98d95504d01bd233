using System.Runtime.InteropServices;
using Conduit.Common.Runtime;

namespace Conduit.Common.Tests;

public class MappedFilesTests
{
    [Fact]
    public void Only_private_read_only_file_mappings_are_advised()
    {
        const string maps = """
            55d0c0000000-55d0c0010000 r--p 00000000 08:01 123 /opt/conduit/conduit
            55d0c0010000-55d0c0c00000 r-xp 00010000 08:01 123 /opt/conduit/conduit
            55d0c0c00000-55d0c0d00000 rw-p 00c00000 08:01 123 /opt/conduit/conduit
            55d0c1000000-55d0c2000000 rw-p 00000000 00:00 0   [heap]
            7f0000000000-7f0000100000 r--s 00000000 08:01 456 /var/lib/conduit/db/000012.sst
            7f0000100000-7f0000200000 ---p 00000000 08:01 789 /usr/lib/librocksdb.so
            7f0000200000-7f0000300000 r-xp 00000000 08:01 789 /usr/lib/lib with space.so
            7f0000300000-7f0000400000 rw-p 00000000 00:00 0
            7ffff7fc0000-7ffff7fc2000 r-xp 00000000 00:00 0   [vdso]
            not a mapping line
            """;
        var found = MappedFiles.ReadOnlyFileMappings(maps).ToList();
        Assert.Equal(
            [(0x55d0c0000000, 0x10000), (0x55d0c0010000, 0xbf0000), (0x7f0000200000, 0x100000)],
            found.Select(m => ((long)m.Start, (long)m.Length)).ToList());
    }

    [Fact]
    public void PageOut_hands_back_the_pages_of_a_read_only_file_mapping()
    {
        if (!OperatingSystem.IsLinux()) return;
        const int size = 16 << 20;
        var path = Path.Combine(Path.GetTempPath(), $"conduit-mapped-{Guid.NewGuid():N}");
        // Written to disk before it is mapped: the kernel reclaims only clean pages, and a just-written file's pages
        // stay dirty until writeback.
        using (var f = new FileStream(path, FileMode.CreateNew))
        {
            f.Write(Enumerable.Repeat((byte)7, size).ToArray());
            f.Flush(flushToDisk: true);
        }
        try
        {
            using var file = File.OpenHandle(path);
            var at = Mmap(0, size, ProtRead, MapPrivate, (int)file.DangerousGetHandle(), 0);
            Assert.NotEqual(-1, at);
            try
            {
                long sum = 0;
                for (var i = 0; i < size; i += 4096) sum += Marshal.ReadByte(at + i);
                Assert.Equal(7L * (size / 4096), sum);
                var before = ResidentKb(at);
                Assert.True(MappedFiles.PageOut() >= size);
                var after = ResidentKb(at);
                Assert.True(before >= 12 * 1024 && after < before / 4, $"{before} KB of the mapping resident before, {after} KB after");
                // What was handed back reads back the same.
                sum = 0;
                for (var i = 0; i < size; i += 4096) sum += Marshal.ReadByte(at + i);
                Assert.Equal(7L * (size / 4096), sum);
            }
            finally
            {
                Munmap(at, size);
            }
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void ResidentParts_reads_the_process_status()
    {
        if (!OperatingSystem.IsLinux()) return;
        var (anon, file, _) = MappedFiles.ResidentParts()!.Value;
        Assert.True(anon > 1 << 20 && file > 1 << 20, $"anon {anon}, file {file}");
    }

    /// <summary>The resident KB of the mapping that starts at an address, from /proc/self/smaps.</summary>
    static long ResidentKb(nint start)
    {
        var head = ((long)start).ToString("x8") + "-";
        var inside = false;
        foreach (var line in File.ReadLines("/proc/self/smaps"))
        {
            // A mapping's first line is "start-end perms ...", its fields' lines "Name:   value kB".
            if (!line.Split(' ')[0].EndsWith(':'))
                inside = line.StartsWith(head, StringComparison.Ordinal);
            else if (inside && line.StartsWith("Rss:", StringComparison.Ordinal))
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]);
        }
        throw new InvalidOperationException("mapping not found");
    }

    const int ProtRead = 1, MapPrivate = 2;

    [DllImport("libc", EntryPoint = "mmap")]
    static extern nint Mmap(nint addr, nuint length, int prot, int flags, int fd, long offset);

    [DllImport("libc", EntryPoint = "munmap")]
    static extern int Munmap(nint addr, nuint length);
}

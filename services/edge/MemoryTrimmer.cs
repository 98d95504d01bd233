using Conduit.Common.Runtime;
using Microsoft.Extensions.Hosting;

namespace Conduit.Edge;

/// <summary>
/// Gives memory the process no longer uses back to the system, in every role. Starting leaves megabytes of garbage
/// in the managed heap (config, DI, route tables, gRPC descriptors) and of freed pages in the C heap (RocksDB opening
/// its memtable, table cache and statistics; the runtime's own allocations), and the background
/// services (feeds, senders, the admin room) keep allocating for a few seconds after the server listens. So: one
/// compacting collection once the server listens, one more with a trim of the C heap once the start has settled,
/// then a trim of the C heap whenever the server turns quiet after work, and every few minutes in any case. glibc
/// keeps freed pages mapped unless they sit at the top of a heap, and work leaves many: the JIT's arenas (methods
/// compiled, and recompiled optimised once they are hot), RocksDB's iterators and write batches, sockets' buffers. A
/// trim takes well under a millisecond on an idle server; it is not done while the server is busy, where the pages
/// it returned would be faulted back in at once. Measured on the idle all-in-one server: README, "A small VPS".
/// </summary>
public sealed class MemoryTrimmer(IHostApplicationLifetime lifetime) : BackgroundService
{
    static readonly TimeSpan Settle = TimeSpan.FromSeconds(5);
    static readonly TimeSpan Check = TimeSpan.FromSeconds(5);
    static readonly TimeSpan Every = TimeSpan.FromMinutes(5);

    /// <summary>Managed allocation over one <see cref="Check"/> below which the server counts as quiet (an idle
    /// server's timers and feeds allocate a few KB a second; one client syncing allocates far more).</summary>
    const long QuietBytes = 4L << 20;

    /// <summary>Managed allocation since the last trim above which there has been work worth trimming after. Any
    /// method compiled counts too: for a minute after a start, and after new work, the JIT recompiles the hot methods
    /// optimised in the background, and frees its arenas after each.</summary>
    const long WorkBytes = 256L << 10;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var started = new TaskCompletionSource();
        using (lifetime.ApplicationStarted.Register(started.SetResult))
            await started.Task.WaitAsync(stoppingToken).ConfigureAwait(false);
        Collect();
        await Task.Delay(Settle, stoppingToken).ConfigureAwait(false);
        CollectAndTrim();
        var lastTrim = Environment.TickCount64;
        var atTrim = Activity.Now();
        var atCheck = atTrim;
        using var timer = new PeriodicTimer(Check);
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
        {
            var now = Activity.Now();
            var trim = ShouldTrim(now, atCheck, atTrim, TimeSpan.FromMilliseconds(Environment.TickCount64 - lastTrim));
            atCheck = now;
            if (!trim) continue;
            NativeHeap.Trim();
            lastTrim = Environment.TickCount64;
            atTrim = now;
        }
    }

    /// <summary>
    /// Whether to trim now: every few minutes in any case, and otherwise once the server has worked since the last trim
    /// (allocated or compiled) and has allocated little since the last check (a trim while busy would only have the
    /// pages faulted back in).
    /// </summary>
    internal static bool ShouldTrim(Activity now, Activity atCheck, Activity atTrim, TimeSpan sinceTrim)
    {
        if (sinceTrim >= Every) return true;
        var quiet = now.Allocated - atCheck.Allocated < QuietBytes;
        var worked = now.Allocated - atTrim.Allocated > WorkBytes || now.Compiled != atTrim.Compiled;
        return quiet && worked;
    }

    /// <summary>Managed bytes allocated and methods compiled by the JIT (0 under Native AOT) since the start.</summary>
    internal readonly record struct Activity(long Allocated, long Compiled)
    {
        public static Activity Now() => new(GC.GetTotalAllocatedBytes(), System.Runtime.JitInfo.GetCompiledMethodCount());
    }

    static void Collect() => GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);

    /// <summary>A collection, the finalizers it queued (which free native memory: RocksDB's iterators, snapshots and
    /// options, sockets' buffers), then a trim of the C heap, so the trim sees what they freed.</summary>
    public static void CollectAndTrim()
    {
        Collect();
        GC.WaitForPendingFinalizers();
        NativeHeap.Trim();
    }
}

using Conduit.Common.Runtime;
using Microsoft.Extensions.Hosting;

namespace Conduit.Edge;

/// <summary>
/// Gives memory the process no longer uses back to the system, in every role. Starting leaves megabytes of garbage
/// in the managed heap (config, DI, route tables, gRPC descriptors) and of freed pages in the C heap (RocksDB opening
/// a memtable, table cache and statistics per column family; the runtime's own allocations), and the background
/// services (feeds, senders, the admin room) keep allocating for a few seconds after the server listens. So: one
/// compacting collection once the server listens, one more with a trim of the C heap once the start has settled,
/// then a trim of the C heap every few minutes (glibc keeps freed pages mapped unless they sit at the top of a heap;
/// a trim takes well under a millisecond on an idle server). Measured on the idle all-in-one server: README,
/// "A small VPS".
/// </summary>
public sealed class MemoryTrimmer(IHostApplicationLifetime lifetime) : BackgroundService
{
    static readonly TimeSpan Settle = TimeSpan.FromSeconds(5);
    static readonly TimeSpan Every = TimeSpan.FromMinutes(5);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var started = new TaskCompletionSource();
        using (lifetime.ApplicationStarted.Register(started.SetResult))
            await started.Task.WaitAsync(stoppingToken).ConfigureAwait(false);
        Collect();
        await Task.Delay(Settle, stoppingToken).ConfigureAwait(false);
        CollectAndTrim();
        using var timer = new PeriodicTimer(Every);
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false)) NativeHeap.Trim();
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

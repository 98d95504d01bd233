using Conduit.Common.Runtime;
using Microsoft.Extensions.Hosting;

namespace Conduit.Edge;

/// <summary>
/// Gives memory the process no longer uses back to the system, in every role. Starting leaves megabytes of garbage
/// in the managed heap (config, DI, route tables, gRPC descriptors) and of freed pages in the C heap (RocksDB opening
/// its memtable, table cache and statistics; the runtime's own allocations), and the background
/// services (feeds, senders, the admin room) keep allocating for a few seconds after the server listens. So: one
/// compacting collection once the server listens, one more with a trim of the C heap once the start has settled,
/// then a trim of the C heap whenever the server turns quiet after work (with a collection first, at most once a
/// minute), and every few minutes in any case. At the
/// settle it also hands back the pages of code and read-only data the start faulted in from the executable and the
/// libraries (<see cref="MappedFiles"/>), once: what runs again is read back in. glibc
/// keeps freed pages mapped unless they sit at the top of a heap, and work leaves many: the JIT's arenas (methods
/// compiled, and recompiled optimised once they are hot), RocksDB's iterators and write batches, sockets' buffers. A
/// trim takes well under a millisecond on an idle server; it is not done while the server is busy, where the pages
/// it returned would be faulted back in at once. Measured on the idle all-in-one server: README, "A small VPS".
/// </summary>
public sealed class MemoryTrimmer(IHostApplicationLifetime lifetime, MemoryTrimmer.Options options) : BackgroundService
{
    /// <param name="OwnsProcess">whether the server is the whole process (the conduit executable). Only then does the
    /// settle hand back the file pages the start faulted in (<see cref="MappedFiles"/>), and the quiet trim collect
    /// first: in a test host both would act on the test runner's code and heap too, once for every server it hosts.</param>
    public sealed record Options(bool OwnsProcess);

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

    /// <summary>At least this long between the collections done when the server turns quiet: a collection of a large
    /// heap takes tens of milliseconds, and a server with a little steady traffic turns "quiet after work" at every
    /// check.</summary>
    static readonly TimeSpan CollectEvery = TimeSpan.FromMinutes(1);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var started = new TaskCompletionSource();
        using (lifetime.ApplicationStarted.Register(started.SetResult))
            await started.Task.WaitAsync(stoppingToken).ConfigureAwait(false);
        Collect();
        await Task.Delay(Settle, stoppingToken).ConfigureAwait(false);
        CollectAndTrim();
        if (options.OwnsProcess) MappedFiles.PageOut();
        var lastTrim = Environment.TickCount64;
        // The first time the server turns quiet after work may collect at once; after that, once a minute at most.
        var lastCollect = lastTrim - (long)CollectEvery.TotalMilliseconds;
        var atTrim = Activity.Now();
        var atCheck = atTrim;
        using var timer = new PeriodicTimer(Check);
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
        {
            var now = Activity.Now();
            var tick = Environment.TickCount64;
            var step = Decide(now, atCheck, atTrim, TimeSpan.FromMilliseconds(tick - lastTrim), TimeSpan.FromMilliseconds(tick - lastCollect));
            if (step == Step.CollectAndTrim && !options.OwnsProcess) step = Step.Trim;
            atCheck = now;
            if (step == Step.None) continue;
            if (step == Step.CollectAndTrim)
            {
                CollectAndTrim();
                lastCollect = tick;
            }
            else NativeHeap.Trim();
            lastTrim = tick;
            atTrim = Activity.Now();
        }
    }

    internal enum Step { None, Trim, CollectAndTrim }

    /// <summary>
    /// What to do now. Once the server has worked since the last trim (allocated or compiled) and has allocated little
    /// since the last check: trim the C heap, after a collection if there was none for <see cref="CollectEvery"/> (the
    /// collection gives back the gen0 budget's pages, which work fills with garbage: about 2 MB). Every few minutes,
    /// trim in any case. Never collect while busy, where the pages given back would be faulted back in at once.
    /// </summary>
    internal static Step Decide(Activity now, Activity atCheck, Activity atTrim, TimeSpan sinceTrim, TimeSpan sinceCollect)
    {
        var quiet = now.Allocated - atCheck.Allocated < QuietBytes;
        var worked = now.Allocated - atTrim.Allocated > WorkBytes || now.Compiled != atTrim.Compiled;
        if (quiet && worked) return sinceCollect >= CollectEvery ? Step.CollectAndTrim : Step.Trim;
        return sinceTrim >= Every ? Step.Trim : Step.None;
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

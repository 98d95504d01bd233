using System.Collections.Concurrent;

namespace Conduit.Sync;

/// <summary>
/// One delivery loop per destination with queued work (a pusher, an application service), so a slow or failing one
/// holds back only itself: on each <see cref="Signal"/>, and every 30 s in case one was missed, every destination
/// <c>withWork</c> names that has no loop running gets one (<c>drain</c>, which sends until its queue is empty and
/// signals when it ends, so work queued meanwhile is seen).
/// </summary>
public sealed class DrainLoops<TWork, TKey>(Func<IEnumerable<TWork>> withWork, Func<TWork, TKey> keyOf, Func<TWork, Task> drain) where TKey : notnull
{
    readonly ConcurrentDictionary<TKey, Task> _running = new();
    readonly SemaphoreSlim _signal = new(0);

    /// <summary>New work is queued (or a loop ended).</summary>
    public void Signal() => _signal.Release();

    public async Task RunAsync(CancellationToken ct)
    {
        await Task.Yield();
        while (!ct.IsCancellationRequested)
        {
            foreach (var work in withWork())
            {
                var key = keyOf(work);
                if (_running.TryGetValue(key, out var t) && !t.IsCompleted) continue;
                _running[key] = Task.Run(() => drain(work), ct);
            }
            try { await _signal.WaitAsync(TimeSpan.FromSeconds(30), ct); }
            catch (OperationCanceledException) { return; }
            while (_signal.CurrentCount > 0) _signal.Wait(0);
        }
    }
}

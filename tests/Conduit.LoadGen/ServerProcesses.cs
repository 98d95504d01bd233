using System.Collections.Concurrent;
using System.Globalization;

namespace Conduit.LoadGen;

/// <summary>Server memory: VmRSS read from /proc/PID/status of the processes given with --pid/--pids.</summary>
internal static class Rss
{
    /// <summary>Sum of VmRSS (in kB) of the given processes, or null if none could be read.</summary>
    public static long? ReadKb(IReadOnlyList<int> pids)
    {
        long total = 0;
        var any = false;
        foreach (var pid in pids)
        {
            if (ReadOneKb(pid) is not { } kb) continue;
            total += kb;
            any = true;
        }
        return any ? total : null;
    }

    public static long? ReadOneKb(int pid) => ReadStatusKb(pid, "VmRSS");

    /// <summary>The kernel's high-water mark of the process's RSS (VmHWM), in kB, since start or <see cref="ResetPeak"/>.</summary>
    public static long? ReadPeakKb(int pid) => ReadStatusKb(pid, "VmHWM");

    /// <summary>Resets the process's VmHWM to its current RSS ("5" to /proc/PID/clear_refs); false if not allowed.</summary>
    public static bool ResetPeak(int pid)
    {
        try
        {
            File.WriteAllText($"/proc/{pid}/clear_refs", "5");
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>A kB field of /proc/PID/status ("VmRSS", "VmHWM"), or null.</summary>
    static long? ReadStatusKb(int pid, string field)
    {
        try
        {
            foreach (var line in File.ReadLines($"/proc/{pid}/status"))
            {
                if (!line.StartsWith(field, StringComparison.Ordinal) || line.Length <= field.Length || line[field.Length] != ':') continue;
                var parts = line[(field.Length + 1)..].Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries);
                return parts.Length > 0 && long.TryParse(parts[0], NumberStyles.Integer, CultureInfo.InvariantCulture, out var kb) ? kb : null;
            }
        }
        catch (IOException)
        {
            // process gone or not readable
        }
        catch (UnauthorizedAccessException)
        {
        }
        return null;
    }

    /// <summary>"edge 61.2, rooms 80.4, ..." (MB per process, named as in --pids P:NAME, else by pid).</summary>
    public static string PerProcess(Options o) =>
        string.Join(", ", o.Pids.Select(p => $"{o.PidName(p)} {Mb(ReadOneKb(p))}"));

    public static string Mb(long? kb) =>
        kb is { } v && v >= 0 ? (v / 1024.0).ToString("0.0", CultureInfo.InvariantCulture) + " MB" : "n/a";

    public static double? MbValue(long? kb) => kb is { } v && v >= 0 ? v / 1024.0 : null;
}

/// <summary>
/// Server CPU time (user + system) from /proc/PID/stat, summed over the processes. On a machine shared with other work,
/// CPU per event moves much less than wall-clock throughput does.
/// </summary>
internal static class Cpu
{
    /// <summary>USER_HZ, the unit of /proc/PID/stat times: 100 on every Linux architecture .NET runs on.</summary>
    const double TicksPerSecond = 100;

    /// <summary>Seconds of CPU the processes have used so far, or null if none could be read.</summary>
    public static double? ReadSeconds(IReadOnlyList<int> pids)
    {
        var each = pids.Select(ReadOneSeconds).Where(s => s is not null).ToList();
        return each.Count > 0 ? each.Sum() : null;
    }

    /// <summary>CPU seconds of each process, to tell later which one the time went to (<see cref="PerProcess"/>).</summary>
    public static Dictionary<int, double?> ReadEach(IReadOnlyList<int> pids) => pids.ToDictionary(p => p, ReadOneSeconds);

    /// <summary>CPU seconds used by all the processes between two <see cref="ReadEach"/> readings; null if none was read.</summary>
    public static double? Used(Dictionary<int, double?> before, Dictionary<int, double?> after) =>
        after.Values.Any(v => v is not null) ? after.Sum(kv => kv.Value - before.GetValueOrDefault(kv.Key) ?? 0) : null;

    /// <summary>"edge 1.2 s, rooms 3.4 s, ..." between two <see cref="ReadEach"/> readings.</summary>
    public static string PerProcess(Options o, Dictionary<int, double?> before, Dictionary<int, double?> after) =>
        string.Join(", ", o.Pids.Select(p => $"{o.PidName(p)} " +
            (before.GetValueOrDefault(p) is { } b && after.GetValueOrDefault(p) is { } a ? (a - b).ToString("0.0", CultureInfo.InvariantCulture) + " s" : "n/a")));

    static double? ReadOneSeconds(int pid)
    {
        string stat;
        try
        {
            stat = File.ReadAllText($"/proc/{pid}/stat");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null; // process gone or not readable
        }
        // Fields after "(comm)", which may hold spaces: state is field 3, utime 14, stime 15.
        var f = stat[(stat.LastIndexOf(')') + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return f.Length > 12 && long.TryParse(f[11], NumberStyles.Integer, CultureInfo.InvariantCulture, out var user)
            && long.TryParse(f[12], NumberStyles.Integer, CultureInfo.InvariantCulture, out var system)
            ? (user + system) / TicksPerSecond
            : null;
    }

    /// <summary>Server CPU milliseconds per event between two readings.</summary>
    public static double? MsPerEvent(double? before, double? after, int events) =>
        before is { } b && after is { } a && events > 0 ? (a - b) * 1000 / events : null;
}

/// <summary>
/// Samples the RSS of the server processes every <c>period</c> until disposed, keeping the peak of their sum and
/// each one's own peak.
/// </summary>
internal sealed class RssSampler : IAsyncDisposable
{
    readonly CancellationTokenSource _stop = new();
    readonly Task _loop;
    long _peakKb = -1;
    int _samples;
    readonly ConcurrentDictionary<int, long> _peakEachKb = new();

    public RssSampler(IReadOnlyList<int> pids, TimeSpan period, CancellationToken ct)
    {
        Period = period;
        var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, _stop.Token);
        _loop = pids.Count == 0 ? Task.CompletedTask : LoopAsync(pids, linked);
    }

    public TimeSpan Period { get; }
    public long? PeakKb => Volatile.Read(ref _peakKb) is var v && v >= 0 ? v : null;
    public int Samples => Volatile.Read(ref _samples);

    /// <summary>The highest RSS sampled of one process, in kB; null if it was never read.</summary>
    public long? PeakOfKb(int pid) => _peakEachKb.TryGetValue(pid, out var kb) ? kb : null;

    async Task LoopAsync(IReadOnlyList<int> pids, CancellationTokenSource linked)
    {
        using var _ = linked;
        try
        {
            using var timer = new PeriodicTimer(Period);
            do
            {
                long sum = 0;
                var any = false;
                foreach (var pid in pids)
                {
                    if (Rss.ReadOneKb(pid) is not { } one) continue;
                    sum += one;
                    any = true;
                    _peakEachKb.AddOrUpdate(pid, one, (_, old) => Math.Max(old, one));
                }
                if (any)
                {
                    Interlocked.Increment(ref _samples);
                    if (sum > Volatile.Read(ref _peakKb)) Volatile.Write(ref _peakKb, sum);
                }
            }
            while (await timer.WaitForNextTickAsync(linked.Token).ConfigureAwait(false));
        }
        catch (OperationCanceledException)
        {
            // stopping
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        await _loop.ConfigureAwait(false);
        _stop.Dispose();
    }
}

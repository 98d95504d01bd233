using System.Collections.Concurrent;
using Conduit.Protos.Keys;
using Grpc.Core;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Conduit.Edge;

/// <summary>
/// Access token → (user, device), resolved through the keys service and cached. The keys service streams every
/// revocation (logout, device deletion, deactivation), so a revoked token stops working at once. While that
/// stream is down nothing is cached, so a missed revocation can never leave a stale identity behind.
/// </summary>
public sealed partial class TokenCache(Protos.Keys.Keys.KeysClient keys, ILogger<TokenCache> log) : BackgroundService
{
    const int MaxEntries = 100_000;
    readonly ConcurrentDictionary<string, (string UserId, string DeviceId)> _cache = new();
    volatile bool _watching;
    // Bumped by every eviction: a lookup that raced one (started before, finished after) is not cached.
    long _generation;

    /// <summary>
    /// Set by the keys service on the response of anything that revoked tokens; the edge clears its cache before
    /// that response reaches the client, so the revocation has taken effect when the client learns of it.
    /// </summary>
    public const string RevokedHeader = "X-Conduit-Revoked";

    public void Clear()
    {
        Interlocked.Increment(ref _generation);
        _cache.Clear();
    }

    void Evict(string token)
    {
        Interlocked.Increment(ref _generation);
        _cache.TryRemove(token, out _);
    }

    public async Task<(string UserId, string DeviceId)?> ResolveAsync(string token, CancellationToken ct)
    {
        if (_cache.TryGetValue(token, out var hit)) return hit;
        var generation = Interlocked.Read(ref _generation);
        var cacheable = _watching;
        var r = await keys.ResolveTokenAsync(new ResolveTokenRequest { AccessToken = token }, cancellationToken: ct);
        if (!r.Valid) return null;
        var id = (r.UserId, r.DeviceId);
        if (cacheable && _watching && Interlocked.Read(ref _generation) == generation)
        {
            if (_cache.Count >= MaxEntries) _cache.Clear();
            _cache[token] = id;
        }
        return id;
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var delay = TimeSpan.FromMilliseconds(100);
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                using var call = keys.WatchRevocations(new WatchRevocationsRequest(), cancellationToken: stoppingToken);
                _watching = true;
                await foreach (var rev in call.ResponseStream.ReadAllAsync(stoppingToken))
                {
                    if (rev.AccessToken.Length == 0) Clear();
                    else Evict(rev.AccessToken);
                    delay = TimeSpan.FromMilliseconds(100);
                }
            }
            catch (Exception e) when (!stoppingToken.IsCancellationRequested)
            {
                LogStreamBroken(log, e.Message);
            }
            catch (Exception) { return; }
            _watching = false;
            Clear();
            try { await Task.Delay(delay, stoppingToken); } catch (OperationCanceledException) { return; }
            delay = TimeSpan.FromMilliseconds(Math.Min(delay.TotalMilliseconds * 2, 5000));
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Token revocation stream from the keys service broke; caching paused: {Reason}")]
    static partial void LogStreamBroken(ILogger log, string reason);
}

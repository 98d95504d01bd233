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

    public async Task<(string UserId, string DeviceId)?> ResolveAsync(string token, CancellationToken ct)
    {
        if (_cache.TryGetValue(token, out var hit)) return hit;
        // Read the flag before asking: a revocation racing this lookup is either seen by the stream (which
        // removes the entry) or happened before the lookup (which then finds no token).
        var cacheable = _watching;
        var r = await keys.ResolveTokenAsync(new ResolveTokenRequest { AccessToken = token }, cancellationToken: ct);
        if (!r.Valid) return null;
        var id = (r.UserId, r.DeviceId);
        if (cacheable && _watching)
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
                    if (rev.AccessToken.Length == 0) _cache.Clear();
                    else _cache.TryRemove(rev.AccessToken, out _);
                    delay = TimeSpan.FromMilliseconds(100);
                }
            }
            catch (Exception e) when (!stoppingToken.IsCancellationRequested)
            {
                LogStreamBroken(log, e.Message);
            }
            catch (Exception) { return; }
            _watching = false;
            _cache.Clear();
            try { await Task.Delay(delay, stoppingToken); } catch (OperationCanceledException) { return; }
            delay = TimeSpan.FromMilliseconds(Math.Min(delay.TotalMilliseconds * 2, 5000));
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Token revocation stream from the keys service broke; caching paused: {Reason}")]
    static partial void LogStreamBroken(ILogger log, string reason);
}

using System.Collections.Concurrent;
using Conduit.Protos.Keys;
using Grpc.Core;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Conduit.Edge;

/// <summary>What an access token stands for at the edge. <see cref="ExpiresTs"/>: 0 for a token that never expires.</summary>
public sealed record EdgeIdentity(string UserId, string DeviceId, bool IsGuest, long ExpiresTs, bool IsAdmin = false)
{
    /// <summary>The application service whose as_token it is; null for a user's token.</summary>
    public string? AppserviceId { get; init; }
    /// <summary>An application service asked to act as a user it may not: the message of a 403 M_FORBIDDEN.</summary>
    public string? Forbidden { get; init; }

    /// <summary>The keys service found it expired (whatever this machine's clock says).</summary>
    public bool Expired { get; init; }

    public bool ExpiredAt(long nowMs) => Expired || (ExpiresTs != 0 && nowMs >= ExpiresTs);
}

/// <summary>
/// Access token → identity (user, device, guest, admin, expiry), resolved through the keys service and cached. The keys
/// service streams every revocation (logout, device deletion, deactivation, refresh, a change of the user's admin flag), so a revoked token stops
/// working at once. While that stream is down nothing is cached, so a missed revocation can never leave a stale
/// identity behind. A token that expires (from a client with a refresh token) is cached with its expiry and
/// checked against the clock on every hit, so an expired token is never served from the cache.
/// </summary>
public sealed partial class TokenCache(Protos.Keys.Keys.KeysClient keys, ILogger<TokenCache> log) : BackgroundService
{
    const int MaxEntries = 100_000;
    readonly ConcurrentDictionary<string, EdgeIdentity> _cache = new();

    /// <summary>Milliseconds since the epoch, as the keys service stamps expiries.</summary>
    static long NowMs() => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
    volatile bool _watching;
    // Bumped by every eviction: a lookup that raced one (started before, finished after) is not cached.
    long _generation;

    /// <summary>See <see cref="Conduit.Common.Http.Caller.RevokedHeader"/>.</summary>
    public const string RevokedHeader = Common.Http.Caller.RevokedHeader;
    public const string RevokedTokenPrefix = Common.Http.Caller.RevokedTokenPrefix;

    /// <summary>Drops every cached token; answers how many there were.</summary>
    public long Clear()
    {
        Interlocked.Increment(ref _generation);
        var count = _cache.Count;
        _cache.Clear();
        return count;
    }

    public void Evict(string token)
    {
        Interlocked.Increment(ref _generation);
        _cache.TryRemove(token, out _);
    }

    /// <summary>The token's identity; null for an unknown token. An expired token comes back with its identity (so
    /// /logout can end the session), for the caller to check with <see cref="EdgeIdentity.ExpiredAt"/>; it is dropped
    /// from the cache.</summary>
    /// <para>An application service's as_token (spec: "Identity assertion") acts as the user of the request's
    /// <paramref name="userId"/> and <paramref name="deviceId"/> parameters; its answers are never cached, since they
    /// depend on those and on the state of the user it acts as, whose revocations do not name the as_token.</para>
    public async Task<EdgeIdentity?> ResolveAsync(string token, CancellationToken ct, string? userId = null, string? deviceId = null)
    {
        if (_cache.TryGetValue(token, out var hit))
        {
            if (!hit.ExpiredAt(NowMs())) return hit;
            _cache.TryRemove(token, out _);
            return hit;
        }
        var generation = Interlocked.Read(ref _generation);
        var cacheable = _watching;
        var r = await keys.ResolveTokenAsync(new ResolveTokenRequest { AccessToken = token, UserId = userId ?? "", DeviceId = deviceId ?? "" }, cancellationToken: ct);
        if (r.AppserviceId.Length > 0)
            return r.Valid
                ? new EdgeIdentity(r.UserId, r.DeviceId, false, 0, r.IsAdmin) { AppserviceId = r.AppserviceId }
                : new EdgeIdentity("", "", false, 0) { AppserviceId = r.AppserviceId, Forbidden = r.Forbidden };
        if (r.Expired) return new EdgeIdentity(r.UserId, r.DeviceId, r.IsGuest, r.ExpiresTs) { Expired = true };
        if (!r.Valid) return null;
        var id = new EdgeIdentity(r.UserId, r.DeviceId, r.IsGuest, r.ExpiresTs, r.IsAdmin);
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

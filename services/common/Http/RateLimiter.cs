using Conduit.Common.Config;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Conduit.Common.Http;

/// <summary>
/// One limit, a leaky bucket per key (a user ID, a client IP), as Synapse's Ratelimiter (synapse/api/ratelimiting.py):
/// an action adds its cost to the bucket, the bucket drains at <see cref="PerSecond"/>, and an action is allowed
/// while level + cost ≤ <see cref="BurstCount"/>. A refused action adds nothing, so a client that waits the
/// returned time is let through.
/// <para>Memory is bounded: a drained bucket equals no bucket, so drained ones are swept away (at most once a
/// minute, and whenever the limiter is full); past <see cref="MaxKeys"/> the buckets nearest to drained are
/// evicted first, forgetting the least. Keys an attacker can mint (addresses, claimed user IDs) therefore cost a
/// bounded amount however many there are.</para>
/// </summary>
public sealed class RateLimiter
{
    public const int DefaultMaxKeys = 20_000;

    struct Bucket
    {
        public double Level;
        public long At;
    }

    readonly Dictionary<string, Bucket> _buckets = new(StringComparer.Ordinal);
    readonly Lock _lock = new();
    readonly TimeProvider _time;
    long _lastSweep;

    public RateLimiter(double perSecond, double burstCount, int maxKeys = DefaultMaxKeys, TimeProvider? time = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(perSecond);
        ArgumentOutOfRangeException.ThrowIfLessThan(burstCount, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxKeys, 1);
        PerSecond = perSecond;
        BurstCount = burstCount;
        MaxKeys = maxKeys;
        _time = time ?? TimeProvider.System;
        _lastSweep = _time.GetTimestamp();
    }

    public double PerSecond { get; }
    public double BurstCount { get; }
    public int MaxKeys { get; }

    /// <summary>Buckets held (drained ones not yet swept included).</summary>
    public int Count
    {
        get { lock (_lock) return _buckets.Count; }
    }

    /// <summary>
    /// Whether an action of <paramref name="cost"/> is allowed now for <paramref name="key"/>; if it is and
    /// <paramref name="update"/> is set, it is counted. Otherwise <paramref name="retryAfter"/> is how long until it
    /// would be. A cost above the burst is allowed only on a drained bucket (it could never fit otherwise).
    /// </summary>
    public bool TryAcquire(string key, out TimeSpan retryAfter, double cost = 1, bool update = true)
    {
        cost = Math.Min(cost, BurstCount);
        var now = _time.GetTimestamp();
        lock (_lock)
        {
            var level = LevelAt(key, now);
            var over = level + cost - BurstCount;
            if (over > 1e-9)
            {
                // Rounded up, so that waiting exactly this long is enough.
                retryAfter = TimeSpan.FromTicks((long)Math.Ceiling(over / PerSecond * TimeSpan.TicksPerSecond));
                return false;
            }
            retryAfter = TimeSpan.Zero;
            if (update) Set(key, level + cost, now);
            return true;
        }
    }

    /// <summary>Counts an action whatever the level (a wrong password, known only after the check).</summary>
    public void Record(string key, double cost = 1)
    {
        var now = _time.GetTimestamp();
        lock (_lock) Set(key, Math.Min(LevelAt(key, now) + cost, BurstCount), now);
    }

    double LevelAt(string key, long now)
        => _buckets.TryGetValue(key, out var b) ? Drained(b, now) : 0;

    double Drained(Bucket b, long now) => Math.Max(0, b.Level - _time.GetElapsedTime(b.At, now).TotalSeconds * PerSecond);

    void Set(string key, double level, long now)
    {
        if (!_buckets.ContainsKey(key))
        {
            if (_time.GetElapsedTime(_lastSweep, now) > TimeSpan.FromMinutes(1) || _buckets.Count >= MaxKeys) Sweep(now);
            if (_buckets.Count >= MaxKeys) Evict(now);
        }
        _buckets[key] = new Bucket { Level = level, At = now };
    }

    void Sweep(long now)
    {
        _lastSweep = now;
        foreach (var (k, b) in _buckets)
            if (Drained(b, now) <= 0) _buckets.Remove(k);
    }

    // Full of live buckets: drop the quarter nearest to drained, so the next evictions are MaxKeys/4 inserts away.
    void Evict(long now)
    {
        var victims = _buckets.Select(kv => (kv.Key, Level: Drained(kv.Value, now)))
            .OrderBy(x => x.Level).Take(Math.Max(1, MaxKeys / 4)).Select(x => x.Key).ToList();
        foreach (var k in victims) _buckets.Remove(k);
    }
}

/// <summary>One action to count against a limit; a null limiter (limits disabled) counts nothing.</summary>
public readonly record struct Charge(RateLimiter? Limiter, string Key, double Cost = 1, bool Update = true);

/// <summary>
/// [global.rate_limits]: one <see cref="RateLimiter"/> per limited action, each null when rate limiting is disabled.
/// Every service builds its own and applies the limits of the actions it owns (keys: login and registration;
/// rooms: messages, room creation, joins, invites; media: media IDs created), so in split mode a limit lives in the one process that
/// performs its action and needs no shared state.
/// </summary>
public sealed class RateLimits
{
    public RateLimiter? Message { get; }
    public RateLimiter? Registration { get; }
    public RateLimiter? RoomCreation { get; }
    public RateLimiter? LoginAddress { get; }
    public RateLimiter? LoginAccount { get; }
    public RateLimiter? LoginFailedAttempts { get; }
    public RateLimiter? Joins { get; }
    public RateLimiter? InvitesPerRoom { get; }
    public RateLimiter? InvitesPerUser { get; }
    public RateLimiter? InvitesPerIssuer { get; }
    public RateLimiter? MediaCreate { get; }
    public RateLimiter? RegistrationTokenValidity { get; }

    public RateLimits(GlobalConfig config, TimeProvider? time = null)
    {
        var c = config.RateLimits;
        _config = config;
        if (!c.Enabled) return;
        RateLimiter Make(RateLimitConfig l, double perSecond, double burstCount)
            => new(l.PerSecond ?? perSecond, l.BurstCount ?? burstCount, time: time);

        // The defaults: Synapse's, except where a person would notice them (README, "Rate limits").
        // Messages: Synapse's 0.2/s with 10 at once limits a person chatting quickly (a message every 3 s fills it
        // in about a minute); one every 2 s sustained and 20 at once never fills, and a flood still stops at 0.5/s.
        Message = Make(c.Message, 0.5, 20);
        Registration = Make(c.Registration, 0.17, 3);
        RoomCreation = Make(c.RoomCreation, 0.016, 10);
        // Every attempt per address: Synapse's 0.003/s (one per 5.5 minutes after 5) locks out a household or an
        // office behind one address; one per 20 s after 10 still stops guessing across accounts from one address.
        LoginAddress = Make(c.Login.Address, 0.05, 10);
        LoginAccount = Make(c.Login.Account, 0.003, 5);
        LoginFailedAttempts = Make(c.Login.FailedAttempts, 0.17, 3);
        Joins = Make(c.Joins.Local, 0.1, 10);
        InvitesPerRoom = Make(c.Invites.PerRoom, 0.3, 10);
        InvitesPerUser = Make(c.Invites.PerUser, 0.003, 5);
        InvitesPerIssuer = Make(c.Invites.PerIssuer, 0.3, 10);
        MediaCreate = Make(c.MediaCreate, 10, 50);
        RegistrationTokenValidity = Make(c.RegistrationTokenValidity, 0.1, 5);
    }

    // The registrations are read at each request: an admin may register or remove an application service at runtime.
    readonly GlobalConfig _config;

    /// <summary>
    /// Whether a caller skips every limit: as in Synapse, requests made with the as_token of an application service
    /// registered with rate_limited: false (as its sender or as a user it acts as). Server admins are not exempt, as in
    /// Synapse, and there are no per-user overrides yet. This is the one place to decide it: every limited endpoint
    /// passes its caller (null before login) through <see cref="Take"/>.
    /// </summary>
    public bool IsExempt(Caller? caller)
        => caller?.AppserviceId is { } id && _config.Appservices().Any(a => !a.RateLimited && a.Id == id);

    /// <summary>
    /// Counts every charge, or none: if any would overflow, the request is refused with 429 M_LIMIT_EXCEEDED,
    /// retry_after_ms and a Retry-After header (client-server-api, "Rate limiting") naming the longest wait.
    /// </summary>
    public void Take(HttpContext ctx, Caller? caller, params ReadOnlySpan<Charge> charges)
    {
        if (IsExempt(caller)) return;
        var wait = TimeSpan.Zero;
        foreach (var c in charges)
            if (c.Limiter is not null && !c.Limiter.TryAcquire(c.Key, out var retry, c.Cost, update: false) && retry > wait)
                wait = retry;
        if (wait > TimeSpan.Zero)
        {
            var ms = (long)Math.Ceiling(wait.TotalMilliseconds);
            ctx.Response.Headers.RetryAfter = Math.Max(1, (long)Math.Ceiling(wait.TotalSeconds)).ToString(System.Globalization.CultureInfo.InvariantCulture);
            throw Err.LimitExceeded($"Too many requests; retry in {ms} ms", ms);
        }
        // Checked then counted: two requests racing past the check may both pass, as in Synapse; the bucket still
        // holds every action counted, so a flood is refused from its next request on.
        foreach (var c in charges)
            if (c.Update) c.Limiter?.TryAcquire(c.Key, out _, c.Cost);
    }
}

public static class RateLimitsRegistration
{
    /// <summary>One <see cref="RateLimits"/> per process, shared by the services hosted in it.</summary>
    public static IServiceCollection AddRateLimits(this IServiceCollection services)
    {
        services.TryAddSingleton(sp => new RateLimits(sp.GetRequiredService<GlobalConfig>()));
        return services;
    }
}

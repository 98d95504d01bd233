using System.Collections.Concurrent;
using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Http;
using Conduit.Common.Storage;
using K = Conduit.Common.Storage.Keys;

namespace Conduit.Keys;

/// <summary>A registration token as the admin API shows it (Synapse's fields). Null limits are no limit.</summary>
public sealed record RegistrationToken(string Token, long? UsesAllowed, long Pending, long Completed, long? ExpiryTime)
{
    public JsonObject ToJson() => new()
    {
        ["token"] = Token,
        ["uses_allowed"] = UsesAllowed,
        ["pending"] = Pending,
        ["completed"] = Completed,
        ["expiry_time"] = ExpiryTime,
    };
}

/// <summary>
/// Registration tokens made at runtime by admins (Synapse's admin API /_synapse/admin/v1/registration_tokens; spec:
/// client-server-api, "Token-authenticated registration"), kept in <see cref="KeysFamilies.RegistrationTokens"/>.
/// A token is valid while it has not expired (expiry_time, ms) and its uses, pending plus completed, are fewer than
/// uses_allowed. A use is pending from the moment a registration's auth session passes the
/// m.login.registration_token stage with it (so N people cannot all pass a token allowed once) until that
/// registration completes, when it counts as completed, in the batch that creates the account; a pending use
/// whose session never completes stops counting after <see cref="PendingLifetimeMs"/> (a UIA session's lifetime),
/// so a crash or an abandoned registration does not use a token up. Which token a session used is kept in memory,
/// as the sessions themselves are.
/// </summary>
public sealed class RegistrationTokens(IKeyValueStore store)
{
    /// <summary>How long a pending use counts: the lifetime of a user-interactive auth session.</summary>
    public const long PendingLifetimeMs = 3_600_000;
    public const int MaxLength = 64;
    const string Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-";

    readonly IKvMap _tokens = store.Map(KeysFamilies.RegistrationTokens);
    readonly Lock _lock = new();
    // Auth session → the stored token it passed the stage with, and when.
    readonly ConcurrentDictionary<string, (string Token, long Ts)> _sessions = new(StringComparer.Ordinal);

    /// <summary>Milliseconds since the epoch; tests move it.</summary>
    public Func<long> Clock { get; set; } = Ids.NowMs;

    /// <summary>The spec's grammar for a token: the opaque identifier grammar, at most 64 characters.</summary>
    public static bool IsValidToken(string token)
        => token.Length is > 0 and <= MaxLength && token.All(c => Alphabet.Contains(c, StringComparison.Ordinal));

    JsonObject? Record(string token) => IsValidToken(token) && _tokens.Get(K.Utf8(token)) is { } v ? JsonNode.Parse(v)!.AsObject() : null;

    // Numbers as stored, or as this class put them (an int literal stays an int until written).
    static long? Long(JsonNode? n) => n is not null && n.TryGetInteger(out var l) ? l : null;

    static byte[] Bytes(JsonObject record) => Encoding.UTF8.GetBytes(record.ToJsonString());

    // Pending uses that still count (their session may still complete).
    long LivePending(JsonObject record, long now, string? except = null)
        => record["pending"] is JsonObject p ? p.Count(e => e.Key != except && Long(e.Value) > now - PendingLifetimeMs) : 0;

    static void Prune(JsonObject record, long now)
    {
        if (record["pending"] is not JsonObject p) return;
        foreach (var stale in p.Where(e => Long(e.Value) <= now - PendingLifetimeMs).Select(e => e.Key).ToList()) p.Remove(stale);
    }

    RegistrationToken Show(string token, JsonObject r, long now)
        => new(token, Long(r["uses_allowed"]), LivePending(r, now), Long(r["completed"]) ?? 0, Long(r["expiry_time"]));

    bool Valid(JsonObject r, long now, string? session = null)
    {
        if (Long(r["expiry_time"]) is { } expiry && expiry <= now) return false;
        return Long(r["uses_allowed"]) is not { } allowed || LivePending(r, now, session) + (Long(r["completed"]) ?? 0) < allowed;
    }

    /// <summary>Whether any token is stored.</summary>
    public bool Any() => _tokens.Scan([]).Any();

    public RegistrationToken? Get(string token) => Record(token) is { } r ? Show(token, r, Clock()) : null;

    /// <summary>Every token, ordered by token; <paramref name="valid"/>: only the valid (true) or invalid (false) ones.</summary>
    public List<RegistrationToken> List(bool? valid)
    {
        var now = Clock();
        var list = new List<RegistrationToken>();
        foreach (var (k, v) in _tokens.Scan([]))
        {
            var r = JsonNode.Parse(v)!.AsObject();
            if (valid is null || Valid(r, now) == valid) list.Add(Show(Encoding.UTF8.GetString(k), r, now));
        }
        return list;
    }

    /// <summary>Whether the token may be used now (unknown: false).</summary>
    public bool IsValid(string token) => Record(token) is { } r && Valid(r, Clock());

    static void CheckLimits(long? usesAllowed, long? expiryTime, long now)
    {
        if (usesAllowed is < 0) throw Err.InvalidParam("uses_allowed must be a non-negative integer or null");
        if (expiryTime is { } e && e < now) throw Err.InvalidParam("expiry_time must not be in the past");
    }

    /// <summary>
    /// A new token: <paramref name="token"/> as given (the opaque identifier grammar, at most 64 characters; one
    /// that exists is M_INVALID_PARAM), else a random one of <paramref name="length"/> characters (1 to 64, default 16).
    /// </summary>
    public RegistrationToken Create(string? token, int? length, long? usesAllowed, long? expiryTime)
    {
        var now = Clock();
        if (token is not null && !IsValidToken(token))
            throw Err.InvalidParam($"token must be 1 to {MaxLength} characters of A-Z, a-z, 0-9, '.', '_', '~' and '-'");
        if (length is < 1 or > MaxLength) throw Err.InvalidParam($"length must be an integer from 1 to {MaxLength}");
        CheckLimits(usesAllowed, expiryTime, now);
        var record = new JsonObject { ["uses_allowed"] = usesAllowed, ["expiry_time"] = expiryTime, ["completed"] = 0, ["pending"] = new JsonObject() };
        lock (_lock)
        {
            if (token is not null)
            {
                if (_tokens.Contains(K.Utf8(token))) throw Err.InvalidParam($"Token already exists: {token}");
            }
            else
            {
                // A short random token may collide; a few tries, then the caller asks for a longer one.
                for (var i = 0; token is null || _tokens.Contains(K.Utf8(token)); i++)
                {
                    if (i == 10) throw Err.InvalidParam("Could not find an unused token of that length");
                    token = Ids.Random(length ?? 16, Alphabet);
                }
            }
            _tokens.Put(K.Utf8(token), Bytes(record));
        }
        return Show(token, record, now);
    }

    /// <summary>Changes a token's limits: each given one (a null value lifts it); null when there is no such token.</summary>
    public RegistrationToken? Update(string token, (bool Set, long? Value) usesAllowed, (bool Set, long? Value) expiryTime)
    {
        var now = Clock();
        CheckLimits(usesAllowed.Value, expiryTime.Value, now);
        lock (_lock)
        {
            if (Record(token) is not { } r) return null;
            if (usesAllowed.Set) r["uses_allowed"] = usesAllowed.Value;
            if (expiryTime.Set) r["expiry_time"] = expiryTime.Value;
            Prune(r, now);
            _tokens.Put(K.Utf8(token), Bytes(r));
            return Show(token, r, now);
        }
    }

    /// <summary>Deletes a token; false when there is none. Registrations that already passed the stage with it complete.</summary>
    public bool Delete(string token)
    {
        lock (_lock)
        {
            if (Record(token) is null) return false;
            _tokens.Delete(K.Utf8(token));
            return true;
        }
    }

    /// <summary>
    /// The m.login.registration_token stage with a stored token: if the token is valid, counting this session's use,
    /// the session's use is recorded as pending and true is returned. A session that passed with the token before
    /// passes again while the token has not expired, without a second use.
    /// </summary>
    public bool UseInSession(string token, string session)
    {
        var now = Clock();
        lock (_lock)
        {
            if (Record(token) is not { } r || !Valid(r, now, session)) return false;
            Prune(r, now);
            if (r["pending"] is not JsonObject p) r["pending"] = p = new JsonObject();
            p[session] = now;
            _tokens.Put(K.Utf8(token), Bytes(r));
        }
        foreach (var (s, e) in _sessions)
            if (e.Ts <= now - PendingLifetimeMs) _sessions.TryRemove(s, out _);
        _sessions[session] = (token, now);
        return true;
    }

    /// <summary>
    /// Completes the registration of <paramref name="session"/>: <paramref name="register"/> creates the account, adding
    /// to its batch what this hands it (the session's use moved from pending to completed, when the session passed
    /// the stage with a stored token that still exists; else nothing). If it throws, the use stays pending and a
    /// retry completes it.
    /// </summary>
    public T Complete<T>(string? session, Func<Action<IWriteBatch>?, T> register)
    {
        if (session is null || !_sessions.TryGetValue(session, out var used)) return register(null);
        T result;
        lock (_lock)
        {
            if (Record(used.Token) is not { } r) result = register(null);
            else
            {
                if (r["pending"] is JsonObject p) p.Remove(session);
                Prune(r, Clock());
                r["completed"] = (Long(r["completed"]) ?? 0) + 1;
                result = register(b => b.Put(KeysFamilies.RegistrationTokens, K.Utf8(used.Token), Bytes(r)));
            }
        }
        _sessions.TryRemove(session, out _);
        return result;
    }
}

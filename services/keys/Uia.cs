using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Http;

namespace Conduit.Keys;

/// <summary>
/// User-interactive authentication (spec: client-server-api, "User-Interactive Authentication API").
/// A session is bound to one operation and, for an authenticated request, to one user. It remembers the request's
/// parameters, so a later stage may send only <c>auth</c>, and once the operation is done its result, so a client
/// retrying with the completed session gets that result again ("servers must return ... the result of the API
/// call if all stages were completed when a client retries a stage"), not a second account.
/// <para>Sessions live in memory (a restart only makes a client start the flow again) and are bounded: an hour
/// at most, <see cref="MaxPerOwner"/> per owner (the client's address before login, else the user), whose oldest
/// goes first, so a flood of challenges from one address only evicts its own sessions, and
/// <see cref="MaxSessions"/> in all, oldest first. Remembered parameters are capped at <see cref="MaxParamsBytes"/>
/// and dropped once the operation is done (they may hold a new password).</para>
/// </summary>
public sealed class Uia(TimeProvider? time = null)
{
    public const int MaxSessions = 1_000;
    public const int MaxPerOwner = 10;
    public const int MaxParamsBytes = 16 * 1024;
    static readonly TimeSpan Lifetime = TimeSpan.FromHours(1);

    internal sealed class Session(string id, string operation, string? userId, string owner, DateTimeOffset created)
    {
        public readonly string Id = id;
        public readonly string Operation = operation;
        public readonly string? UserId = userId;
        public readonly string Owner = owner;
        public readonly DateTimeOffset Created = created;
        public readonly HashSet<string> Completed = [];
        public bool Authenticated;
        public JsonObject? Params;
        public JsonObject? Outcome;
        public readonly SemaphoreSlim Running = new(1, 1);
        public LinkedListNode<Session>? Node;
    }

    /// <summary>One request's view of its session: the parameters to act on and, once done, the result.</summary>
    public sealed class Request
    {
        internal Request(JsonObject @params, JsonObject? auth, string operation, string? userId, Session? session)
        {
            Params = @params;
            Auth = auth;
            Operation = operation;
            UserId = userId;
            Session = session;
            Authenticated = session?.Authenticated ?? false;
        }

        internal Session? Session;
        internal readonly JsonObject? Auth;
        internal readonly string Operation;
        internal readonly string? UserId;

        /// <summary>This request's parameters over those remembered from the session's earlier requests.</summary>
        public JsonObject Params { get; }

        /// <summary>The session's ID once it has one (a request with an auth dict, from the stage check on).</summary>
        public string? SessionId => Session?.Id;

        /// <summary>The session has passed a whole flow (this request may still have to pass one).</summary>
        public bool Authenticated { get; internal set; }
    }

    readonly TimeProvider _time = time ?? TimeProvider.System;
    readonly Lock _lock = new();
    readonly Dictionary<string, Session> _byId = new(StringComparer.Ordinal);
    readonly LinkedList<Session> _byAge = new();
    readonly Dictionary<string, int> _perOwner = new(StringComparer.Ordinal);

    /// <summary>Validates one stage's auth dict: true if it passes, false (M_FORBIDDEN) if not.</summary>
    public delegate bool StageCheck(string stage, JsonObject auth);

    /// <summary>Sessions held.</summary>
    public int Count
    {
        get { lock (_lock) return _byId.Count; }
    }

    /// <summary>
    /// Finds the request's session (M_UNKNOWN if it is gone, M_FORBIDDEN if it belongs to another operation or
    /// user) and merges the parameters. Judges nothing yet, so the endpoint can validate the parameters first.
    /// </summary>
    public Request Begin(JsonObject body, string operation, string? userId)
    {
        var auth = body.OptObject("auth");
        var sid = auth?.OptString("session");
        var own = new JsonObject();
        foreach (var (k, v) in body)
            if (k != "auth") own[k] = v?.DeepClone();
        if (sid is null) return new Request(own, auth, operation, userId, null);
        lock (_lock)
        {
            Expire();
            if (!_byId.TryGetValue(sid, out var s)) throw Err.Unknown("Unknown user-interactive auth session");
            if (s.Operation != operation || s.UserId != userId) throw Err.Forbidden("This auth session belongs to another request");
            var merged = s.Params?.DeepClone().AsObject() ?? new JsonObject();
            foreach (var (k, v) in own) merged[k] = v?.DeepClone();
            if (s.Outcome is null) s.Params = Bounded(merged.DeepClone().AsObject());
            return new Request(merged, auth, operation, userId, s);
        }
    }

    /// <summary>
    /// Returns when the session has passed one of <paramref name="flows"/> (now or before); otherwise throws the
    /// 401 challenge, starting a session owned by <paramref name="owner"/> if the request had none.
    /// </summary>
    public void Require(Request r, string owner, IReadOnlyList<string[]> flows, StageCheck check)
    {
        MatrixException? failure = null;
        if (r.Auth is not null)
        {
            var s = r.Session ?? Start(r, owner);
            if (!r.Authenticated && r.Auth.OptString("type") is { } type)
            {
                if (!flows.Any(f => f.Contains(type)))
                    failure = Err.Forbidden($"Auth stage '{type}' is not offered here");
                // Outside the lock: a check may hash a password or throw M_LIMIT_EXCEEDED.
                else if (check(type, r.Auth))
                    lock (_lock) s.Completed.Add(type);
                else
                    failure = type == "m.login.password" ? Err.Forbidden("Invalid password")
                        : type == "m.login.registration_token" ? new MatrixException("M_FORBIDDEN", 401, "Invalid registration token")
                        : Err.Forbidden("Authentication failed");
            }
            lock (_lock)
            {
                if (s.Authenticated || flows.Any(f => f.All(s.Completed.Contains)))
                {
                    s.Authenticated = r.Authenticated = true;
                    return;
                }
            }
        }
        var session = r.Session ?? Start(r, owner);
        JsonObject challenge;
        lock (_lock)
        {
            challenge = new JsonObject
            {
                ["flows"] = new JsonArray(flows.Select(f => (JsonNode)new JsonObject { ["stages"] = new JsonArray(f.Select(s => (JsonNode)s).ToArray()) }).ToArray()),
                ["params"] = new JsonObject(),
                ["session"] = session.Id,
            };
            if (session.Completed.Count > 0)
                challenge["completed"] = new JsonArray(session.Completed.Select(s => (JsonNode)s).ToArray());
        }
        if (failure is not null)
        {
            challenge["errcode"] = failure.ErrCode;
            challenge["error"] = failure.Message;
        }
        throw new MatrixException("", 401, "Additional authentication required") { Extra = challenge };
    }

    /// <summary>
    /// Performs the authenticated operation once per session: a retry, or a concurrent duplicate, gets the first
    /// result. If the operation throws, nothing is remembered and a retry performs it again.
    /// </summary>
    public async Task<JsonObject> Once(Request r, Func<JsonObject, Task<JsonObject>> operation)
    {
        if (!r.Authenticated) throw new InvalidOperationException("UIA not passed");
        var s = r.Session;
        if (s is null) return await operation(r.Params);
        await s.Running.WaitAsync();
        try
        {
            lock (_lock)
                if (s.Outcome is not null) return s.Outcome.DeepClone().AsObject();
            var result = await operation(r.Params);
            lock (_lock)
            {
                s.Outcome = result.DeepClone().AsObject();
                s.Params = null;
            }
            return result;
        }
        finally
        {
            s.Running.Release();
        }
    }

    Session Start(Request r, string owner)
    {
        lock (_lock)
        {
            if (r.Session is not null) return r.Session;
            Expire();
            if (_perOwner.GetValueOrDefault(owner) >= MaxPerOwner) Remove(_byAge.First(s => s.Owner == owner));
            if (_byId.Count >= MaxSessions) Remove(_byAge.First!.Value);
            var s = new Session(Ids.Random(24), r.Operation, r.UserId, owner, _time.GetUtcNow()) { Params = Bounded(r.Params.DeepClone().AsObject()) };
            s.Node = _byAge.AddLast(s);
            _byId[s.Id] = s;
            _perOwner[owner] = _perOwner.GetValueOrDefault(owner) + 1;
            r.Session = s;
            return s;
        }
    }

    void Remove(Session s)
    {
        _byId.Remove(s.Id);
        if (s.Node is not null) _byAge.Remove(s.Node);
        if (--_perOwner[s.Owner] == 0) _perOwner.Remove(s.Owner);
    }

    // Sessions are created in time order, so the expired ones are at the front.
    void Expire()
    {
        var cutoff = _time.GetUtcNow() - Lifetime;
        while (_byAge.First is { } oldest && oldest.Value.Created < cutoff) Remove(oldest.Value);
    }

    // Parameters too large to remember are not: a client that sends them with every request still works.
    static JsonObject? Bounded(JsonObject p) => Encoding.UTF8.GetByteCount(p.ToJsonString()) <= MaxParamsBytes ? p : null;
}

using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Http;

namespace Conduit.Keys;

/// <summary>
/// User-interactive authentication (spec: client-server-api, "User-Interactive Authentication API").
/// A session is bound to one operation and, for an authenticated request, to one user; it lives in memory for
/// an hour (a restart only makes a client start the flow again).
/// </summary>
public sealed class Uia
{
    sealed class Session(string id, string operation, string? userId)
    {
        public readonly string Id = id;
        public readonly string Operation = operation;
        public readonly string? UserId = userId;
        public readonly HashSet<string> Completed = [];
        public readonly long Created = Ids.NowMs();
    }

    readonly ConcurrentDictionary<string, Session> _sessions = new();

    /// <summary>Validates one stage's auth dict: true if it passes, false (M_FORBIDDEN) if not.</summary>
    public delegate bool StageCheck(string stage, JsonObject auth);

    /// <summary>
    /// Returns when one of <paramref name="flows"/> is complete; otherwise throws the 401 challenge.
    /// </summary>
    public void Require(JsonObject body, string operation, string? userId, IReadOnlyList<string[]> flows, StageCheck check, JsonObject? parameters = null)
    {
        Expire();
        var auth = body.OptObject("auth");
        Session? session = null;
        MatrixException? failure = null;
        if (auth is not null)
        {
            var sid = auth.OptString("session");
            if (sid is not null && !_sessions.TryGetValue(sid, out session))
                throw Err.Unknown("Unknown user-interactive auth session");
            if (session is not null && (session.Operation != operation || session.UserId != userId))
                throw Err.Forbidden("This auth session belongs to another request");
            session ??= NewSession(operation, userId);
            var type = auth.OptString("type");
            if (type is not null)
            {
                if (!flows.Any(f => f.Contains(type)))
                    failure = Err.Forbidden($"Auth stage '{type}' is not offered here");
                else if (check(type, auth))
                    session.Completed.Add(type);
                else
                    failure = type == "m.login.password" ? Err.Forbidden("Invalid password")
                        : type == "m.login.registration_token" ? new MatrixException("M_FORBIDDEN", 401, "Invalid registration token")
                        : Err.Forbidden("Authentication failed");
            }
            if (flows.Any(f => f.All(session.Completed.Contains)))
            {
                _sessions.TryRemove(SessionId(session), out _);
                return;
            }
        }
        session ??= NewSession(operation, userId);
        var challenge = new JsonObject
        {
            ["flows"] = new JsonArray(flows.Select(f => (JsonNode)new JsonObject { ["stages"] = new JsonArray(f.Select(s => (JsonNode)s).ToArray()) }).ToArray()),
            ["params"] = parameters ?? new JsonObject(),
            ["session"] = SessionId(session),
        };
        if (session.Completed.Count > 0)
            challenge["completed"] = new JsonArray(session.Completed.Select(s => (JsonNode)s).ToArray());
        if (failure is not null)
        {
            challenge["errcode"] = failure.ErrCode;
            challenge["error"] = failure.Message;
        }
        throw new MatrixException("", 401, "Additional authentication required") { Extra = challenge };
    }

    Session NewSession(string operation, string? userId)
    {
        var s = new Session(Ids.Random(24), operation, userId);
        _sessions[s.Id] = s;
        return s;
    }

    static string SessionId(Session s) => s.Id;

    void Expire()
    {
        var cutoff = Ids.NowMs() - 3_600_000;
        foreach (var (k, v) in _sessions)
            if (v.Created < cutoff) _sessions.TryRemove(k, out _);
    }
}

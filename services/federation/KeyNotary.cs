using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Http;

namespace Conduit.Federation;

/// <summary>
/// The notary endpoints (spec: server-server-api, "Querying Keys Through Another Server"): our own key response, or
/// another server's newest verified one (cached, or fetched from it when the cached one does not reach
/// minimum_valid_until_ts), each with our signature added to the server's own. A server we cannot reach and have no
/// keys of is left out of server_keys.
/// </summary>
public sealed class KeyNotary(RemoteKeyStore remote, ServerKeys own)
{
    /// <summary>
    /// Answers for several servers: server name to the minimum_valid_until_ts wanted (null: now, as the spec says).
    /// Servers are fetched concurrently, so one slow server does not add to the others' time.
    /// </summary>
    public async Task<JsonObject> QueryAsync(IReadOnlyDictionary<string, long?> criteria, CancellationToken ct)
    {
        var now = Ids.NowMs();
        var responses = await Task.WhenAll(criteria.Select(c => remote.GetResponseAsync(c.Key, c.Value ?? now, ct)));
        var list = new JsonArray();
        foreach (var r in responses)
        {
            if (r is null) continue;
            own.Sign(r);
            list.Add((JsonNode)r);
        }
        return new JsonObject { ["server_keys"] = list };
    }

    /// <summary>The body of POST /_matrix/key/v2/query: per server, the latest minimum_valid_until_ts over the key IDs asked about.</summary>
    public const int MaxServersPerQuery = 100;

    public static Dictionary<string, long?> ParseCriteria(JsonObject body)
    {
        if (body["server_keys"] is not JsonObject servers) throw Err.BadJson("server_keys must be an object");
        // Each server named may cost a fetch: one query asks about a bounded number.
        if (servers.Count > MaxServersPerQuery) throw Err.InvalidParam($"At most {MaxServersPerQuery} servers per query");
        var criteria = new Dictionary<string, long?>(StringComparer.Ordinal);
        foreach (var (server, keyIds) in servers)
        {
            if (keyIds is not JsonObject ids) throw Err.BadJson($"server_keys.{server} must be an object");
            long? min = null;
            foreach (var (keyId, c) in ids)
            {
                if (c is null) continue;
                if (c is not JsonObject o) throw Err.BadJson($"server_keys.{server}.{keyId} must be an object");
                if (o["minimum_valid_until_ts"] is { } m)
                {
                    if (m is not JsonValue v || !v.TryGetValue(out long ts)) throw Err.BadJson("minimum_valid_until_ts must be an integer");
                    min = Math.Max(min ?? long.MinValue, ts);
                }
            }
            criteria[server] = min;
        }
        return criteria;
    }
}

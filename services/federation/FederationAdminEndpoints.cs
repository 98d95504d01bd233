using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Crypto;
using Conduit.Common.Http;
using Conduit.Common.Routing;
using Conduit.Federation.Outbound;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Conduit.Federation;

/// <summary>
/// The federation service's admin endpoints, for server admins only (<see cref="Caller.Admin"/>). Synapse's
/// federation admin API (element-hq.github.io/synapse, "Federation API"): the outbound queue's destinations with
/// their backoff (<see cref="FederationQueue.Destinations"/>: destinations with something queued or failing, and
/// those reached since the start), one destination, and reset_connection (the backoff ends, the queue is retried at
/// once). Conduit's own: sign_json (an object signed with the server's key, spec appendices "Signing JSON") and
/// verify_json (each signature checked against this server's keys or the signer's, fetched as for any request).
/// </summary>
public sealed class FederationAdminEndpoints(FederationQueue queue, ServerKeys keys, RemoteKeyStore remoteKeys)
{
    /// <summary>Most signatures one verify_json checks (each may cost a key fetch).</summary>
    public const int MaxSignatures = 100;

    public void Map(IEndpointRouteBuilder app)
    {
        app.Map(RouteTable.AdminDestinations, ListDestinations);
        app.Map(RouteTable.AdminDestination, OneDestination);
        app.Map(RouteTable.AdminDestinationReset, ResetConnection);
        app.Map(RouteTable.AdminSignJson, SignJson);
        app.Map(RouteTable.AdminVerifyJson, VerifyJson);
    }

    static JsonObject Describe(DestinationInfo d) => new()
    {
        ["destination"] = d.Destination,
        ["retry_last_ts"] = d.RetryLastTs,
        ["retry_interval"] = d.RetryInterval,
        ["failure_ts"] = d.FailureTs,
        ["last_successful_stream_ordering"] = d.LastSuccessfulSeq,
        ["queued_pdus"] = d.QueuedPdus,
        ["queued_edus"] = d.QueuedEdus,
        ["failures"] = d.Failures,
        ["catching_up"] = d.CatchingUp,
    };

    // ---- GET /_synapse/admin/v1/federation/destinations: from, limit (default 100), order_by, dir, destination

    async Task ListDestinations(HttpContext ctx)
    {
        Caller.Admin(ctx);
        var from = (int)ctx.Request.QueryLong("from", 0, 0, int.MaxValue);
        var limit = (int)ctx.Request.QueryLong("limit", 100, 0, int.MaxValue);
        var forwards = ctx.Request.QueryForwards();
        var orderBy = ctx.Request.Query("order_by") ?? "destination";
        Func<DestinationInfo, IComparable?> key = orderBy switch
        {
            "destination" => d => d.Destination,
            "retry_last_ts" => d => d.RetryLastTs,
            "retry_interval" => d => d.RetryInterval,
            "failure_ts" => d => d.FailureTs ?? 0,
            "last_successful_stream_ordering" => d => d.LastSuccessfulSeq ?? 0,
            _ => throw Err.InvalidParam($"Unknown order_by '{orderBy}'"),
        };
        var filter = ctx.Request.Query("destination");
        var all = queue.Destinations().Where(d => filter is null || d.Destination.Contains(filter, StringComparison.OrdinalIgnoreCase))
            .OrderBy(key).ThenBy(d => d.Destination, StringComparer.Ordinal).ToList();
        if (!forwards) all.Reverse();
        var page = all.Skip(from).Take(limit).ToList();
        var answer = new JsonObject
        {
            ["destinations"] = new JsonArray([.. page.Select(d => (JsonNode)Describe(d))]),
            ["total"] = all.Count,
        };
        // Synapse's token is a string.
        if (from + page.Count < all.Count) answer["next_token"] = (from + page.Count).ToString(System.Globalization.CultureInfo.InvariantCulture);
        await ctx.Response.WriteJsonAsync(answer);
    }

    string DestinationParam(HttpContext ctx)
    {
        var destination = ctx.Route("destination");
        if (!Ids.IsValidServerName(destination)) throw Err.InvalidParam("Not a server name");
        return destination;
    }

    async Task OneDestination(HttpContext ctx)
    {
        Caller.Admin(ctx);
        var d = queue.Destination(DestinationParam(ctx)) ?? throw Err.NotFound("Unknown destination");
        await ctx.Response.WriteJsonAsync(Describe(d));
    }

    // ---- POST .../destinations/{destination}/reset_connection: {} (Synapse's answers: 400 for ourselves, 404 unknown)

    async Task ResetConnection(HttpContext ctx)
    {
        Caller.Admin(ctx);
        var destination = DestinationParam(ctx);
        if (destination == keys.ServerName) throw Err.InvalidParam("Can not reset connection to own server");
        if (!queue.ResetConnection(destination)) throw Err.NotFound("Unknown destination");
        await ctx.Response.WriteJsonAsync(new JsonObject());
    }

    /// <summary>The object's <c>signatures</c>, if any: an object of objects of strings, else 400 M_BAD_JSON.</summary>
    static JsonObject? Signatures(JsonObject obj)
    {
        if (obj["signatures"] is null) return obj.ContainsKey("signatures") ? throw Err.BadJson("signatures must be an object") : null;
        if (obj["signatures"] is not JsonObject signatures) throw Err.BadJson("signatures must be an object");
        foreach (var (server, byKey) in signatures)
        {
            if (byKey is not JsonObject ids) throw Err.BadJson($"signatures.{server} must be an object");
            foreach (var (keyId, sig) in ids)
                if (sig is not JsonValue v || !v.TryGetValue(out string? _)) throw Err.BadJson($"signatures.{server}.{keyId} must be a string");
        }
        return signatures;
    }

    // ---- POST /_conduit/admin/v1/sign_json: the body, signed (other signatures and unsigned kept, as the spec signs)

    async Task SignJson(HttpContext ctx)
    {
        Caller.Admin(ctx);
        var obj = await ctx.Request.ReadJsonObjectAsync();
        Signatures(obj);
        try { keys.Sign(obj); }
        catch (CanonicalJsonException e) { throw Err.BadJson("The object cannot be encoded as canonical JSON: " + e.Message); }
        await ctx.Response.WriteJsonAsync(obj);
    }

    // ---- POST /_conduit/admin/v1/verify_json: {"valid", "signatures": {server: {key_id: "valid" | "invalid" | "unknown key"}}}

    async Task VerifyJson(HttpContext ctx)
    {
        Caller.Admin(ctx);
        var obj = await ctx.Request.ReadJsonObjectAsync();
        var signatures = Signatures(obj);
        var entries = signatures?.SelectMany(s => s.Value!.AsObject().Select(k => (Server: s.Key, KeyId: k.Key))).ToList() ?? [];
        if (entries.Count == 0) throw Err.BadJson("The object has no signatures");
        if (entries.Count > MaxSignatures) throw Err.InvalidParam($"At most {MaxSignatures} signatures are checked");
        try { JsonSigning.SigningBytes(obj); }
        catch (CanonicalJsonException e) { throw Err.BadJson("The object cannot be encoded as canonical JSON: " + e.Message); }
        var now = Ids.NowMs();
        // Keys of different servers are fetched concurrently; one server's keys are fetched once (RemoteKeyStore).
        var verdicts = await Task.WhenAll(entries.Select(async e => (e.Server, e.KeyId, Verdict: await VerdictAsync(obj, e.Server, e.KeyId, now, ctx.RequestAborted))));
        var answer = new JsonObject();
        foreach (var (server, keyId, verdict) in verdicts)
        {
            if (answer[server] is not JsonObject byServer) answer[server] = byServer = [];
            byServer[keyId] = verdict;
        }
        await ctx.Response.WriteJsonAsync(new JsonObject { ["valid"] = verdicts.All(v => v.Verdict == "valid"), ["signatures"] = answer });
    }

    async Task<string> VerdictAsync(JsonObject obj, string server, string keyId, long now, CancellationToken ct)
    {
        if (!keyId.StartsWith(SigningKey.Algorithm + ":", StringComparison.Ordinal)) return "unknown key";
        RemoteKey? key;
        try { key = await remoteKeys.GetKeyAsync(server, keyId, now, ct); }
        catch (Exception) when (!ct.IsCancellationRequested) { key = null; }
        if (key is null) return "unknown key";
        return JsonSigning.Verify(obj, server, keyId, key.PublicKey) ? "valid" : "invalid";
    }
}

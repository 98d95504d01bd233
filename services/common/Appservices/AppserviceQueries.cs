using System.Net.Http.Headers;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Conduit.Common.Appservices;

/// <summary>
/// What the homeserver asks of application services (spec: application-service-api, "Querying" and "Third-party
/// networks"): GET url + /_matrix/app/v1/... with <c>Authorization: Bearer hs_token</c>. An appservice that cannot be
/// reached, times out or answers anything unexpected counts as knowing nothing (logged), never as an error of the
/// client's request, as Synapse's <c>ApplicationServiceApi</c>. The url is the admin's own (the registration file), so
/// loopback and private addresses are allowed. The registrations are passed in by the caller, read from
/// <c>GlobalConfig.Appservices()</c> at the moment of the request (they may change at runtime).
/// </summary>
public sealed partial class AppserviceQueries
{
    /// <summary>How long an appservice may take to say whether a user or alias exists: it creates the entity before
    /// answering (a room, for an alias), so a little longer than a lookup.</summary>
    public static readonly TimeSpan ExistsTimeout = TimeSpan.FromSeconds(10);
    /// <summary>How long an appservice may take to answer a third-party lookup or its protocol metadata.</summary>
    public static readonly TimeSpan LookupTimeout = TimeSpan.FromSeconds(5);
    const int MaxAnswerBytes = 1024 * 1024;
    const string Prefix = "/_matrix/app/v1";

    readonly HttpClient _http;
    readonly ILogger _log;

    /// <summary><paramref name="handler"/>: unit tests answer in place of appservices.</summary>
    public AppserviceQueries(HttpMessageHandler? handler, ILogger? log = null)
    {
        _http = new HttpClient(handler ?? new SocketsHttpHandler { AllowAutoRedirect = false, ConnectTimeout = LookupTimeout })
        {
            Timeout = Timeout.InfiniteTimeSpan,
            MaxResponseContentBufferSize = MaxAnswerBytes,
        };
        _log = log ?? NullLogger.Instance;
    }

    // ---- existence queries (spec: "Query User", "Query Room Alias")

    /// <summary>
    /// Whether an appservice whose user namespace holds <paramref name="userId"/> says the user exists (and so has
    /// registered it, as the spec requires of a 200). Asked one after the other, stopping at the first yes, as
    /// Synapse's <c>query_user_exists</c>.
    /// </summary>
    public async Task<bool> UserExistsAsync(IEnumerable<AppserviceRegistration> registrations, string userId, CancellationToken ct)
    {
        foreach (var r in registrations.Where(r => r.IsUserInNamespace(userId)).ToList())
            if (await GetAsync(r, "/users/" + Uri.EscapeDataString(userId), ExistsTimeout, ct) is JsonObject) return true;
        return false;
    }

    /// <summary>
    /// Whether an appservice whose alias namespace holds <paramref name="alias"/> says the alias exists (and so has
    /// created the room and the alias meanwhile). One after the other, stopping at the first yes, as Synapse's
    /// <c>query_room_alias_exists</c>; the caller looks the alias up again.
    /// </summary>
    public async Task<bool> AliasExistsAsync(IEnumerable<AppserviceRegistration> registrations, string alias, CancellationToken ct)
    {
        foreach (var r in registrations.Where(r => r.IsAliasInNamespace(alias)).ToList())
            if (await GetAsync(r, "/rooms/" + Uri.EscapeDataString(alias), ExistsTimeout, ct) is JsonObject) return true;
        return false;
    }

    // ---- third-party networks (spec: "Third-party networks"; client-server-api, "Third-party Lookups")

    /// <summary>
    /// The metadata of every protocol the registrations list (or only <paramref name="only"/>), each asked of every
    /// appservice listing it (in parallel) and merged by <see cref="MergeProtocols"/>. A protocol no appservice
    /// answered validly is left out.
    /// </summary>
    public async Task<JsonObject> ProtocolsAsync(IEnumerable<AppserviceRegistration> registrations, string? only, CancellationToken ct)
    {
        var asks = registrations
            .SelectMany(r => r.Protocols.Distinct().Where(p => only is null || p == only).Select(p => (Protocol: p, Info: ProtocolAsync(r, p, ct))))
            .ToList();
        await Task.WhenAll(asks.Select(a => a.Info));
        return MergeProtocols(asks.Select(a => (a.Protocol, a.Info.Result)));
    }

    /// <summary>One appservice's metadata of one protocol, its instances given an <c>instance_id</c>; null unless valid.</summary>
    async Task<JsonObject?> ProtocolAsync(AppserviceRegistration r, string protocol, CancellationToken ct)
    {
        var info = await GetAsync(r, "/thirdparty/protocol/" + Uri.EscapeDataString(protocol), LookupTimeout, ct) as JsonObject;
        if (info is null) return null;
        if (WithInstanceIds(r.Id, info) is { } valid) return valid;
        LogInvalid(_log, r.Id, "protocol metadata");
        return null;
    }

    /// <summary>
    /// The metadata as clients see it: <c>instances</c> must be an array of objects (else null, as Synapse's
    /// <c>_is_valid_3pe_metadata</c>), and each instance with a string <c>network_id</c> gains
    /// <c>instance_id</c> = "{appservice id}|{network_id}" (Synapse's <c>ThirdPartyInstanceID</c>), the
    /// <c>third_party_instance_id</c> of /publicRooms.
    /// </summary>
    public static JsonObject? WithInstanceIds(string appserviceId, JsonObject info)
    {
        if (info["instances"] is not JsonArray instances || instances.Any(i => i is not JsonObject)) return null;
        var copy = info.DeepClone().AsObject();
        foreach (var instance in copy["instances"]!.AsArray().Cast<JsonObject>())
            if (instance["network_id"] is JsonValue v && v.TryGetValue(out string? network))
                instance["instance_id"] = InstanceId(appserviceId, network);
        return copy;
    }

    /// <summary>The instance ID of an appservice's network, as Synapse spells it.</summary>
    public static string InstanceId(string appserviceId, string networkId) => appserviceId + "|" + networkId;

    /// <summary>
    /// Merges the appservices' answers per protocol as Synapse's <c>get_3pe_protocols</c>: the first valid answer's
    /// fields (the order of <paramref name="answers"/>: the registrations' order), with the <c>instances</c> of every
    /// valid answer after one another. Null answers (failures) are skipped; a protocol with none is left out.
    /// </summary>
    public static JsonObject MergeProtocols(IEnumerable<(string Protocol, JsonObject? Info)> answers)
    {
        var merged = new JsonObject();
        foreach (var (protocol, info) in answers)
        {
            if (info is null) continue;
            if (merged[protocol] is JsonObject first)
                foreach (var instance in info["instances"]!.AsArray())
                    first["instances"]!.AsArray().Add(instance!.DeepClone());
            else
                merged[protocol] = info.DeepClone();
        }
        return merged;
    }

    /// <summary>The kinds of third-party entity, with the field that names each on the Matrix side.</summary>
    public enum Kind { Location, User }

    /// <summary>
    /// A third-party lookup: with a <paramref name="protocol"/>, GET /thirdparty/{location|user}/{protocol} of every
    /// appservice listing it; without one (the reverse lookups by alias or user ID), GET /thirdparty/{location|user}
    /// of every appservice listing any protocol. <paramref name="query"/> is passed on as it is. The answers are
    /// asked in parallel and put after one another in the registrations' order, entries that are not valid results
    /// (Synapse's <c>_is_valid_3pe_result</c>: <c>alias</c> or <c>userid</c> and <c>protocol</c> strings and a
    /// <c>fields</c> object) left out.
    /// </summary>
    public async Task<JsonArray> LookupAsync(IEnumerable<AppserviceRegistration> registrations, Kind kind, string? protocol, string query, CancellationToken ct)
    {
        var path = "/thirdparty/" + (kind == Kind.Location ? "location" : "user") + (protocol is null ? "" : "/" + Uri.EscapeDataString(protocol)) + query;
        var asks = registrations.Where(r => protocol is null ? r.Protocols.Count > 0 : r.Protocols.Contains(protocol))
            .Select(r => (Id: r.Id, Answer: GetAsync(r, path, LookupTimeout, ct))).ToList();
        await Task.WhenAll(asks.Select(a => a.Answer));
        var results = new JsonArray();
        foreach (var (id, answer) in asks)
        {
            if (answer.Result is null) continue;
            if (answer.Result is not JsonArray list)
            {
                LogInvalid(_log, id, "third-party lookup answer (not an array)");
                continue;
            }
            foreach (var entry in list)
                if (IsValidResult(entry, kind)) results.Add(entry!.DeepClone());
                else LogInvalid(_log, id, "third-party lookup result");
        }
        return results;
    }

    static bool IsValidResult(JsonNode? entry, Kind kind)
        => entry is JsonObject o && IsString(o[kind == Kind.Location ? "alias" : "userid"]) && IsString(o["protocol"]) && o["fields"] is JsonObject;

    static bool IsString(JsonNode? n) => n is JsonValue v && v.GetValueKind() == JsonValueKind.String;

    // ---- the request

    /// <summary>The JSON of a 200 answer to GET <paramref name="path"/>; null for anything else (logged).</summary>
    async Task<JsonNode?> GetAsync(AppserviceRegistration r, string path, TimeSpan timeout, CancellationToken ct)
    {
        if (r.Url is null) return null;
        using var req = new HttpRequestMessage(HttpMethod.Get, r.Url.TrimEnd('/') + Prefix + path);
        req.Headers.Authorization = new AuthenticationHeaderValue("Bearer", r.HsToken);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(timeout);
        try
        {
            using var resp = await _http.SendAsync(req, cts.Token);
            if (resp.StatusCode != System.Net.HttpStatusCode.OK)
            {
                // 404 is the appservice's "no such user/alias/protocol": an answer, not a failure.
                if (resp.StatusCode != System.Net.HttpStatusCode.NotFound) LogStatus(_log, r.Id, path, (int)resp.StatusCode);
                return null;
            }
            return JsonNode.Parse(await resp.Content.ReadAsStringAsync(cts.Token));
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            LogFailed(_log, r.Id, path, $"no answer within {timeout.TotalSeconds:0} s");
        }
        catch (Exception e) when (e is HttpRequestException or JsonException or InvalidOperationException)
        {
            LogFailed(_log, r.Id, path, e.Message);
        }
        return null;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Application service {Id}: GET {Path} answered {Status}")]
    static partial void LogStatus(ILogger log, string id, string path, int status);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Application service {Id}: GET {Path} failed: {Reason}")]
    static partial void LogFailed(ILogger log, string id, string path, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Application service {Id} answered an invalid {What}; left out")]
    static partial void LogInvalid(ILogger log, string id, string what);
}

public static class AppserviceQueriesRegistration
{
    /// <summary>One <see cref="AppserviceQueries"/> per process, shared by the services hosted in it.</summary>
    public static IServiceCollection AddAppserviceQueries(this IServiceCollection services)
    {
        services.TryAddSingleton(sp => new AppserviceQueries(null, sp.GetRequiredService<ILogger<AppserviceQueries>>()));
        return services;
    }
}

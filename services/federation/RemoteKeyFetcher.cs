using System.Text.Json.Nodes;

namespace Conduit.Federation;

/// <summary>
/// Fetches another server's key responses, unverified: <see cref="RemoteKeyStore"/> checks them. Only transport here,
/// so tests (and server discovery, when it comes) can replace it.
/// </summary>
public interface IRemoteKeyFetcher
{
    /// <summary>
    /// The key responses of <paramref name="serverName"/>: from the server itself (GET /_matrix/key/v2/server) when
    /// <paramref name="notary"/> is null, else from the notary (GET /_matrix/key/v2/query/{serverName}). Empty or an
    /// exception when it cannot be reached.
    /// </summary>
    Task<IReadOnlyList<JsonObject>> FetchAsync(string serverName, string? notary, long minimumValidUntilTs, CancellationToken ct);
}

/// <summary>
/// <see cref="IRemoteKeyFetcher"/> over HTTP. <paramref name="resolveBaseUrl"/> turns a server name into the base URL
/// its federation API is reached at (spec: server-server-api, "Resolving server names"); until discovery exists the
/// default is https://name:8448 (or the name's own port).
/// </summary>
public sealed class HttpRemoteKeyFetcher(HttpClient http, Func<string, CancellationToken, ValueTask<Uri>>? resolveBaseUrl = null) : IRemoteKeyFetcher
{
    readonly Func<string, CancellationToken, ValueTask<Uri>> _resolve = resolveBaseUrl ?? DefaultBaseUrl;

    static ValueTask<Uri> DefaultBaseUrl(string serverName, CancellationToken ct)
        => ValueTask.FromResult(new Uri(serverName.Contains(':', StringComparison.Ordinal) && !serverName.EndsWith(']') ? $"https://{serverName}" : $"https://{serverName}:8448"));

    public async Task<IReadOnlyList<JsonObject>> FetchAsync(string serverName, string? notary, long minimumValidUntilTs, CancellationToken ct)
    {
        var baseUrl = await _resolve(notary ?? serverName, ct);
        if (notary is null)
        {
            var direct = await GetJsonAsync(new Uri(baseUrl, "/_matrix/key/v2/server"), ct);
            return direct is null ? [] : [direct];
        }
        var path = $"/_matrix/key/v2/query/{Uri.EscapeDataString(serverName)}?minimum_valid_until_ts={minimumValidUntilTs}";
        var viaNotary = await GetJsonAsync(new Uri(baseUrl, path), ct);
        return viaNotary?["server_keys"] is JsonArray list ? [.. list.OfType<JsonObject>()] : [];
    }

    async Task<JsonObject?> GetJsonAsync(Uri uri, CancellationToken ct)
    {
        using var response = await http.GetAsync(uri, HttpCompletionOption.ResponseHeadersRead, ct);
        response.EnsureSuccessStatusCode();
        await using var body = await response.Content.ReadAsStreamAsync(ct);
        return await JsonNode.ParseAsync(body, cancellationToken: ct) as JsonObject;
    }
}

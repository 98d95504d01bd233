using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Http;
using Conduit.Rooms.Rules;

namespace Conduit.Rooms;

/// <summary>
/// The resident server's check that the identity server key which signed a third-party invite's <c>signed</c> block
/// is still valid (spec: client-server-api, module "Third-party invites", "Server behaviour": the server already in
/// the room MUST check <c>key_validity_url</c>, using the URL given rather than building one, with the query string and
/// answer of the identity service's /pubkey/isvalid). The key is the one of the room's m.room.third_party_invite
/// (<c>public_key</c>, or an entry of <c>public_keys</c>) that verifies the signature; without a
/// <c>key_validity_url</c> there is nothing to ask (as Synapse). The request goes out as push gateway requests do:
/// never to an address in <c>ip_range_denylist</c> unless it is in <c>ip_range_allowlist</c>, no redirects, 10 s.
/// Only this server's check: other servers never reject the invite event on this ground (the spec forbids it).
/// </summary>
public sealed class IdentityKeyCheck
{
    static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);
    const int MaxAnswerBytes = 64 * 1024;

    readonly HttpClient _http;

    public IdentityKeyCheck(GlobalConfig config, HttpMessageHandler? handler = null)
    {
        _http = handler is not null ? new HttpClient(handler) { Timeout = Timeout }
            : new OutboundIpPolicy(new IpRangeList(config.IpRangeDenylist, "ip_range_denylist"), new IpRangeList(config.IpRangeAllowlist, "ip_range_allowlist"), "Identity servers")
                .CreateClient(Timeout, Timeout);
        _http.MaxResponseContentBufferSize = MaxAnswerBytes;
    }

    /// <summary>
    /// The keys of an m.room.third_party_invite content with their key_validity_url (null when none is given):
    /// <c>public_key</c> with the top-level URL, then each <c>public_keys</c> entry with its own.
    /// </summary>
    public static List<(string PublicKey, string? Url)> Keys(JsonObject content)
    {
        var keys = new List<(string, string?)>();
        if (ContentField.String(content, "public_key") is { } top) keys.Add((top, ContentField.String(content, "key_validity_url")));
        if (content["public_keys"] is JsonArray list)
            foreach (var entry in list.OfType<JsonObject>())
                if (ContentField.String(entry, "public_key") is { } k) keys.Add((k, ContentField.String(entry, "key_validity_url")));
        return keys;
    }

    /// <summary>
    /// Asks the identity server whether the key that verifies <paramref name="signed"/> is still valid: 403 M_FORBIDDEN
    /// if it says no (or answers something else than {"valid": true}), 502 if it cannot be asked.
    /// </summary>
    public async Task CheckAsync(JsonObject inviteContent, JsonObject signed, CancellationToken ct)
    {
        var (key, url) = Keys(inviteContent).FirstOrDefault(k => EventAuth.ThirdPartySignedVerifies(signed, new JsonObject { ["public_key"] = k.PublicKey }));
        if (key is null || url is null) return;
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttps && uri.Scheme != Uri.UriSchemeHttp) || uri.UserInfo.Length > 0)
            throw Err.Forbidden("The third-party invite's key_validity_url is not an http(s) URL");
        var ask = new UriBuilder(uri) { Query = (uri.Query.Length > 1 ? uri.Query[1..] + "&" : "") + "public_key=" + Uri.EscapeDataString(key) }.Uri;
        JsonObject? answer;
        try
        {
            using var response = await _http.GetAsync(ask, ct);
            if (!response.IsSuccessStatusCode) throw new MatrixException("M_UNKNOWN", 502, $"The identity server answered {(int)response.StatusCode} about the key");
            answer = JsonNode.Parse(await response.Content.ReadAsStringAsync(ct)) as JsonObject;
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException or OutboundRefusedException or System.Text.Json.JsonException && !ct.IsCancellationRequested)
        {
            throw new MatrixException("M_UNKNOWN", 502, "The identity server could not be asked whether the key is still valid");
        }
        if (answer?["valid"] is not JsonValue v || !v.TryGetValue(out bool valid) || !valid)
            throw Err.Forbidden("The identity server says the key that signed the invite is no longer valid");
    }
}

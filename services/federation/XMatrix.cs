using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Crypto;
using Conduit.Common.Http;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;

namespace Conduit.Federation;

/// <summary>The parameters of an <c>Authorization: X-Matrix</c> header. <see cref="Destination"/> is optional (spec v1.3).</summary>
public sealed record XMatrixAuth(string Origin, string? Destination, string KeyId, string Signature);

/// <summary>
/// Request authentication between servers (spec: server-server-api, "Request Authentication"): the method, target,
/// origin, destination and JSON body are signed as one JSON object, and the signature travels in the Authorization
/// header.
/// </summary>
public static class XMatrix
{
    public const string Scheme = "X-Matrix";

    /// <summary>The object that is signed: content only when the request has a body.</summary>
    public static JsonObject SigningObject(string method, string uri, string origin, string destination, JsonNode? content)
    {
        var o = new JsonObject { ["method"] = method, ["uri"] = uri, ["origin"] = origin, ["destination"] = destination };
        if (content is not null) o["content"] = content.DeepClone();
        return o;
    }

    /// <summary>
    /// The Authorization header value for an outbound request. <paramref name="uri"/> is the request target as sent:
    /// the path from /_matrix with the query string, without scheme and host. Written the way the spec asks senders to
    /// for older servers: one space, lower-case names, no whitespace around commas, values quoted.
    /// </summary>
    public static string Authorization(SigningKey key, string origin, string destination, string method, string uri, JsonNode? content)
    {
        var sig = key.SignBase64(JsonSigning.SigningBytes(SigningObject(method, uri, origin, destination, content)));
        return $"{Scheme} origin={Quote(origin)},destination={Quote(destination)},key={Quote(key.KeyId)},sig={Quote(sig)}";
    }

    static string Quote(string v) => "\"" + v.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal) + "\"";

    /// <summary>
    /// Parses the header (RFC 9110 section 11.4 auth-params): scheme case-insensitive, then name=value pairs separated by
    /// commas with optional spaces and tabs, names case-insensitive, values a token or a quoted string with backslash
    /// escapes; unquoted values may contain ':' (spec, for older servers). Unknown parameters are ignored; a repeated
    /// one, or a missing origin, key or sig, makes the header invalid.
    /// </summary>
    public static bool TryParse(string? header, out XMatrixAuth? auth)
    {
        auth = null;
        if (header is null || header.Length <= Scheme.Length || !header.StartsWith(Scheme, StringComparison.OrdinalIgnoreCase) || header[Scheme.Length] != ' ') return false;
        var s = header.AsSpan(Scheme.Length);
        var values = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        var i = 0;
        while (true)
        {
            while (i < s.Length && s[i] is ' ' or '\t') i++;
            var nameStart = i;
            while (i < s.Length && IsTokenChar(s[i])) i++;
            if (i == nameStart) return false;
            var name = s[nameStart..i].ToString();
            while (i < s.Length && s[i] is ' ' or '\t') i++;
            if (i >= s.Length || s[i] != '=') return false;
            i++;
            while (i < s.Length && s[i] is ' ' or '\t') i++;
            string value;
            if (i < s.Length && s[i] == '"')
            {
                var sb = new StringBuilder();
                i++;
                while (true)
                {
                    if (i >= s.Length) return false; // unterminated
                    var c = s[i++];
                    if (c == '"') break;
                    if (c == '\\')
                    {
                        if (i >= s.Length) return false;
                        c = s[i++];
                    }
                    sb.Append(c);
                }
                value = sb.ToString();
            }
            else
            {
                var valueStart = i;
                while (i < s.Length && (IsTokenChar(s[i]) || s[i] == ':')) i++;
                if (i == valueStart) return false;
                value = s[valueStart..i].ToString();
            }
            if (!values.TryAdd(name, value)) return false;
            while (i < s.Length && s[i] is ' ' or '\t') i++;
            if (i == s.Length) break;
            if (s[i] != ',') return false;
            i++;
        }
        if (!values.TryGetValue("origin", out var origin) || !values.TryGetValue("key", out var key) || !values.TryGetValue("sig", out var sig)) return false;
        auth = new XMatrixAuth(origin, values.GetValueOrDefault("destination"), key, sig);
        return true;
    }

    // RFC 9110 section 5.6.2: tchar.
    static bool IsTokenChar(char c) => char.IsAsciiLetterOrDigit(c) || "!#$%&'*+-.^_`|~".Contains(c);
}

/// <summary>
/// Checks inbound X-Matrix signatures: the destination, if given, must be us; the origin's key is looked up (and
/// fetched) through <see cref="RemoteKeyStore"/> and must be a current key valid now (old_verify_keys sign events
/// only, spec "Publishing Keys"); the signature must cover this method, target and body. Any failure is
/// 401 M_UNAUTHORIZED, as Synapse answers.
/// </summary>
public sealed class XMatrixVerifier(RemoteKeyStore keys, GlobalConfig config)
{
    /// <summary>The origin server of a correctly signed request; otherwise throws 401 M_UNAUTHORIZED (or M_NOT_JSON for a body that is not JSON).</summary>
    public async Task<string> VerifyAsync(string method, string uri, string? authorization, ReadOnlyMemory<byte> body, CancellationToken ct)
    {
        if (!XMatrix.TryParse(authorization, out var auth)) throw Unauthorized("Missing or malformed X-Matrix Authorization header");
        if (auth!.Destination is { } d && d != config.ServerName) throw Unauthorized("The request is not for this server");
        if (!Ids.IsValidServerName(auth.Origin)) throw Unauthorized("origin is not a server name");
        var content = body.IsEmpty ? null : RequestJson.Parse(body);
        var now = Ids.NowMs();
        var key = await keys.GetKeyAsync(auth.Origin, auth.KeyId, now, ct);
        if (key is null || !key.ValidForRequestsAt(now)) throw Unauthorized($"No valid key {auth.KeyId} of {auth.Origin}");
        var signed = XMatrix.SigningObject(method, uri, auth.Origin, auth.Destination ?? config.ServerName, content);
        JsonSigning.AddSignature(signed, auth.Origin, auth.KeyId, auth.Signature);
        if (!JsonSigning.Verify(signed, auth.Origin, auth.KeyId, key.PublicKey)) throw Unauthorized("Invalid X-Matrix signature");
        return auth.Origin;
    }

    /// <summary>
    /// Verifies the request on <paramref name="ctx"/> (its body is read here and left readable for the handler) and
    /// returns the origin. The target is the raw one as received, percent-encoding and all, as the sender signed it.
    /// </summary>
    public async Task<string> VerifyAsync(HttpContext ctx)
    {
        var r = ctx.Request;
        r.EnableBuffering();
        using var ms = new MemoryStream();
        await r.Body.CopyToAsync(ms, ctx.RequestAborted);
        r.Body.Position = 0;
        var target = ctx.Features.Get<IHttpRequestFeature>()?.RawTarget is { Length: > 0 } raw ? raw : r.PathBase + r.Path + r.QueryString;
        return await VerifyAsync(r.Method, target, r.Headers.Authorization.ToString() is { Length: > 0 } h ? h : null, ms.GetBuffer().AsMemory(0, (int)ms.Length), ctx.RequestAborted);
    }

    static MatrixException Unauthorized(string message) => new("M_UNAUTHORIZED", 401, message);

    /// <summary>
    /// A federation endpoint's handler behind X-Matrix: every /_matrix/federation path except the few the spec leaves
    /// open (version; OpenID userinfo, which the keys service serves; /3pid/onbind, which identity servers call) is mapped
    /// through this.
    /// </summary>
    public RequestDelegate Authenticated(Func<HttpContext, string, Task> handler)
        => async ctx => await handler(ctx, await VerifyAsync(ctx));
}

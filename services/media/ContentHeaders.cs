using System.Text;
using Microsoft.AspNetCore.Http;
using Microsoft.Net.Http.Headers;

namespace Conduit.Media;

/// <summary>
/// The headers every piece of served media carries, so that an uploaded file cannot run as a page of this server's
/// origin (spec: client-server-api, "Content repository" and "Serving inline content").
/// </summary>
public static class ContentHeaders
{
    /// <summary>Synapse's policy: the spec's recommended one plus media-src 'self'.</summary>
    public const string Csp = "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; style-src 'unsafe-inline'; media-src 'self'; object-src 'self';";

    /// <summary>The spec's list of types that are safe to show inline; anything else is an attachment. SVG is left out on
    /// purpose (it can carry script).</summary>
    static readonly HashSet<string> InlineTypes = new(StringComparer.OrdinalIgnoreCase)
    {
        "text/css", "text/plain", "text/csv", "application/json", "application/ld+json",
        "image/jpeg", "image/gif", "image/png", "image/apng", "image/webp", "image/avif",
        "video/mp4", "video/webm", "video/ogg", "video/quicktime",
        "audio/mp4", "audio/webm", "audio/aac", "audio/mpeg", "audio/ogg", "audio/wave", "audio/wav", "audio/x-wav", "audio/x-pn-wav", "audio/flac", "audio/x-flac",
    };

    /// <summary>The media type without parameters ("text/plain; charset=utf-8" → "text/plain").</summary>
    public static string Essence(string contentType)
    {
        var i = contentType.IndexOf(';');
        return (i < 0 ? contentType : contentType[..i]).Trim();
    }

    public static bool IsInline(string contentType) => InlineTypes.Contains(Essence(contentType));

    /// <summary>
    /// A content type fit to store and send back: a valid media type (type/subtype with optional parameters) of at most
    /// 255 characters, else application/octet-stream. Whatever it says, it only ever selects inline or attachment.
    /// </summary>
    public static string Sanitise(string? contentType)
    {
        if (string.IsNullOrWhiteSpace(contentType) || contentType.Length > 255) return "application/octet-stream";
        return MediaTypeHeaderValue.TryParse(contentType, out var parsed) && parsed.MediaType.Value?.Contains('/') == true && parsed.MediaType.Value != "*/*"
            ? contentType.Trim()
            : "application/octet-stream";
    }

    /// <summary>
    /// Content-Disposition per RFC 6266: inline for the safe types, attachment otherwise, with the file name as an
    /// ASCII fallback (quoted, control characters, quotes, backslashes and path separators replaced) and as
    /// filename* in UTF-8 when it is not plain ASCII.
    /// </summary>
    public static string Disposition(string contentType, string? fileName)
    {
        var kind = IsInline(contentType) ? "inline" : "attachment";
        if (string.IsNullOrEmpty(fileName)) return kind;
        var clean = new StringBuilder(fileName.Length);
        foreach (var ch in fileName) clean.Append(char.IsControl(ch) || ch is '/' or '\\' ? '_' : ch);
        var name = clean.ToString();
        var ascii = new StringBuilder(name.Length);
        var plain = true;
        foreach (var ch in name)
        {
            if (ch is >= ' ' and < (char)0x7F && ch is not '"' and not '%') ascii.Append(ch);
            else
            {
                ascii.Append('_');
                plain = false;
            }
        }
        var value = $"{kind}; filename=\"{ascii}\"";
        if (!plain) value += "; filename*=UTF-8''" + Rfc5987(name);
        return value;
    }

    /// <summary>RFC 5987 value characters: ALPHA / DIGIT / "!#$&amp;+-.^_`|~"; everything else percent-encoded UTF-8.</summary>
    static string Rfc5987(string s)
    {
        var sb = new StringBuilder();
        foreach (var b in Encoding.UTF8.GetBytes(s))
        {
            if (b is >= (byte)'a' and <= (byte)'z' or >= (byte)'A' and <= (byte)'Z' or >= (byte)'0' and <= (byte)'9'
                || "!#$&+-.^_`|~".Contains((char)b)) sb.Append((char)b);
            else sb.Append('%').Append(b.ToString("X2", System.Globalization.CultureInfo.InvariantCulture));
        }
        return sb.ToString();
    }

    /// <summary>Sets the security and caching headers of a media response. Media never changes under its ID, so
    /// clients may keep it a day (less than forever: an admin may delete it); shared caches only for the legacy,
    /// unauthenticated paths.</summary>
    public static void Apply(HttpResponse response, bool authenticated)
    {
        var h = response.Headers;
        h.ContentSecurityPolicy = Csp;
        h["X-Content-Security-Policy"] = "sandbox";
        h.XContentTypeOptions = "nosniff";
        h["Cross-Origin-Resource-Policy"] = "cross-origin";
        h["Referrer-Policy"] = "no-referrer";
        h.CacheControl = authenticated ? "private, max-age=86400" : "public, max-age=86400";
    }
}

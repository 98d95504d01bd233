using System.Security.Cryptography;

namespace Conduit.Common;

/// <summary>Matrix identifier grammar (spec: appendices, "Identifier Grammar").</summary>
public static class Ids
{
    /// <summary>Historical user IDs allow more, but new localparts are limited to a-z 0-9 . _ = - / +.</summary>
    public static bool IsValidLocalpart(string localpart)
        => localpart.Length > 0 && localpart.All(c => c is >= 'a' and <= 'z' or >= '0' and <= '9' or '.' or '_' or '=' or '-' or '/' or '+');

    public static string UserId(string localpart, string serverName) => $"@{localpart}:{serverName}";

    /// <summary>Longest identifier (user, room, alias, event ID), in bytes of UTF-8 (appendices, "Identifier Grammar").</summary>
    public const int MaxIdBytes = 255;

    /// <summary>Whether <paramref name="s"/> fits in <paramref name="maxBytes"/> bytes of UTF-8 (not UTF-16 chars).</summary>
    public static bool FitsBytes(string s, int maxBytes = MaxIdBytes)
        => s.Length <= maxBytes && (s.Length * 3 <= maxBytes || System.Text.Encoding.UTF8.GetByteCount(s) <= maxBytes);

    /// <summary>Splits "@local:server" (or "#alias:server", "!room:server") into its parts; at most 255 bytes.</summary>
    public static bool TrySplit(string id, char sigil, out string localpart, out string server)
    {
        localpart = server = "";
        if (id.Length < 3 || id[0] != sigil || !FitsBytes(id)) return false;
        var colon = id.IndexOf(':');
        if (colon < 2 || colon == id.Length - 1) return false;
        localpart = id[1..colon];
        server = id[(colon + 1)..];
        return true;
    }

    public static bool IsUserId(string id) => TrySplit(id, '@', out _, out _);

    /// <summary>"!opaque:server" (room versions 1-11), or "!" + 43 URL-safe Base64 characters of the create
    /// event's reference hash, with no server part (rooms/v12.md "Room IDs").</summary>
    public static bool IsRoomId(string id)
        => TrySplit(id, '!', out _, out _)
        || (id.Length == 44 && id[0] == '!' && id.AsSpan(1).IndexOfAnyExcept(UrlSafeBase64Chars) < 0);

    /// <summary>
    /// An event ID of any room version: "$" and an opaque part ("$opaque:server" in v1/v2, a hash from v3), at most
    /// 255 bytes (appendices, "Event IDs"), without whitespace or control characters (no grammar allows them).
    /// </summary>
    public static bool IsEventId(string id)
        => id.Length >= 2 && id[0] == '$' && FitsBytes(id) && !id.Any(c => char.IsWhiteSpace(c) || char.IsControl(c));

    static readonly System.Buffers.SearchValues<char> UrlSafeBase64Chars =
        System.Buffers.SearchValues.Create("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_");

    public static string ServerOf(string id)
    {
        var colon = id.IndexOf(':');
        return colon < 0 ? "" : id[(colon + 1)..];
    }

    /// <summary>
    /// A server name (appendices, "Server Name"): a DNS name (letters, digits, '-' and '.', at most 255), an IPv4
    /// address or a bracketed IPv6 address, with an optional port of 1 to 5 digits.
    /// </summary>
    public static bool IsValidServerName(string name)
    {
        if (name.Length == 0 || name.Length > 255 + 7) return false;
        string host = name, port = "";
        if (name[0] == '[')
        {
            var close = name.IndexOf(']');
            if (close < 0) return false;
            host = name[..(close + 1)];
            var rest = name[(close + 1)..];
            if (rest.Length > 0)
            {
                if (rest[0] != ':') return false;
                port = rest[1..];
                if (port.Length == 0) return false;
            }
            if (!System.Net.IPAddress.TryParse(host[1..^1], out var ip) || ip.AddressFamily != System.Net.Sockets.AddressFamily.InterNetworkV6) return false;
        }
        else
        {
            var colon = name.LastIndexOf(':');
            if (colon >= 0)
            {
                (host, port) = (name[..colon], name[(colon + 1)..]);
                if (port.Length == 0) return false;
            }
            if (host.Length is 0 or > 255 || !host.All(c => c is >= 'a' and <= 'z' or >= 'A' and <= 'Z' or >= '0' and <= '9' or '-' or '.')) return false;
        }
        return port.Length <= 5 && port.All(char.IsAsciiDigit);
    }

    /// <summary>A media ID: only A-Za-z0-9, '_' and '-' (client-server-api, "Matrix Content (mxc://) URIs"; anything
    /// else could reach a path on disk), at most 255.</summary>
    public static bool IsValidMediaId(string id) => id.Length is > 0 and <= 255 && id.AsSpan().IndexOfAnyExcept(UrlSafeBase64Chars) < 0;

    const string Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

    public static string Random(int length) => Random(length, Alphabet);

    /// <summary>A random string of characters drawn from <paramref name="alphabet"/>.</summary>
    public static string Random(int length, string alphabet)
    {
        Span<char> chars = stackalloc char[length];
        for (var i = 0; i < length; i++) chars[i] = alphabet[RandomNumberGenerator.GetInt32(alphabet.Length)];
        return new string(chars);
    }

    public static long NowMs() => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
}

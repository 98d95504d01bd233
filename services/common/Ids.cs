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

    const string Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

    public static string Random(int length)
    {
        Span<char> chars = stackalloc char[length];
        for (var i = 0; i < length; i++) chars[i] = Alphabet[RandomNumberGenerator.GetInt32(Alphabet.Length)];
        return new string(chars);
    }

    public static long NowMs() => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
}

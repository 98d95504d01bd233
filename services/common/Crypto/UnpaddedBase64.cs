using System.Buffers.Text;

namespace Conduit.Common.Crypto;

/// <summary>
/// Unpadded Base64 and URL-safe unpadded Base64 (spec appendices, "Unpadded Base64").
/// Decoding accepts padded or unpadded input in either alphabet, as the spec recommends.
/// </summary>
public static class UnpaddedBase64
{
    public static string Encode(ReadOnlySpan<byte> data) => Convert.ToBase64String(data).TrimEnd('=');

    public static string EncodeUrlSafe(ReadOnlySpan<byte> data) => Base64Url.EncodeToString(data);

    /// <exception cref="FormatException">The input is not valid Base64.</exception>
    public static byte[] Decode(string encoded) =>
        TryDecode(encoded, out var bytes) ? bytes : throw new FormatException("Invalid base64 string.");

    public static bool TryDecode(string? encoded, out byte[] bytes)
    {
        bytes = [];
        if (encoded is null)
        {
            return false;
        }
        ReadOnlySpan<char> s = encoded.AsSpan().TrimEnd('=');
        // Padding, if any, must complete the last quantum; a lone trailing sextet is never valid.
        int padding = encoded.Length - s.Length;
        if (s.Length % 4 == 1 || (padding != 0 && (padding > 2 || (s.Length + padding) % 4 != 0)))
        {
            return false;
        }
        Span<char> buf = s.Length <= 512 ? stackalloc char[s.Length + 3] : new char[s.Length + 3];
        for (int i = 0; i < s.Length; i++)
        {
            char c = s[i];
            buf[i] = c switch
            {
                '-' => '+',
                '_' => '/',
                >= 'A' and <= 'Z' or >= 'a' and <= 'z' or >= '0' and <= '9' or '+' or '/' => c,
                _ => '\0',
            };
            if (buf[i] == '\0')
            {
                return false;
            }
        }
        int len = s.Length;
        while (len % 4 != 0)
        {
            buf[len++] = '=';
        }
        var result = new byte[len / 4 * 3];
        if (!Convert.TryFromBase64Chars(buf[..len], result, out int written))
        {
            return false;
        }
        bytes = written == result.Length ? result : result[..written];
        return true;
    }
}

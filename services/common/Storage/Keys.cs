using System.Buffers.Binary;
using System.Text;

namespace Conduit.Common.Storage;

/// <summary>
/// Helpers to build keys that sort correctly: UTF-8 parts separated by <see cref="Sep"/> (0xFF never occurs in
/// UTF-8), big-endian unsigned integers.
/// </summary>
public static class Keys
{
    public const byte Sep = 0xFF;

    public static byte[] Utf8(string s) => Encoding.UTF8.GetBytes(s);

    public static byte[] Concat(params ReadOnlySpan<byte[]> parts)
    {
        var length = 0;
        foreach (var p in parts) length += p.Length;
        var result = new byte[length];
        var offset = 0;
        foreach (var p in parts)
        {
            p.CopyTo(result, offset);
            offset += p.Length;
        }
        return result;
    }

    /// <summary>UTF-8 of each part, separated by 0xFF (no trailing separator).</summary>
    public static byte[] Join(params string[] parts)
    {
        var length = Math.Max(0, parts.Length - 1);
        foreach (var p in parts) length += Encoding.UTF8.GetByteCount(p);
        var result = new byte[length];
        var offset = 0;
        for (var i = 0; i < parts.Length; i++)
        {
            if (i > 0) result[offset++] = Sep;
            offset += Encoding.UTF8.GetBytes(parts[i], 0, parts[i].Length, result, offset);
        }
        return result;
    }

    /// <summary><see cref="Join"/> plus a trailing 0xFF: the scan prefix of every key whose leading parts are these.</summary>
    public static byte[] Prefix(params string[] parts)
    {
        var joined = Join(parts);
        var result = new byte[joined.Length + 1];
        joined.CopyTo(result, 0);
        result[^1] = Sep;
        return result;
    }

    /// <summary>Splits on 0xFF and decodes each part as UTF-8 (only meaningful for keys made of strings).</summary>
    public static string[] Split(ReadOnlySpan<byte> key)
    {
        var parts = new List<string>();
        while (true)
        {
            var i = key.IndexOf(Sep);
            if (i < 0)
            {
                parts.Add(Encoding.UTF8.GetString(key));
                return [.. parts];
            }
            parts.Add(Encoding.UTF8.GetString(key[..i]));
            key = key[(i + 1)..];
        }
    }

    public static byte[] BigEndian(ulong value)
    {
        var b = new byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(b, value);
        return b;
    }

    public static ulong ReadBigEndian(ReadOnlySpan<byte> bytes) => BinaryPrimitives.ReadUInt64BigEndian(bytes);

    public static bool StartsWith(ReadOnlySpan<byte> key, ReadOnlySpan<byte> prefix) => key.StartsWith(prefix);

    public static int Compare(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b) => a.SequenceCompareTo(b);

    /// <summary>
    /// The smallest key greater than every key starting with <paramref name="prefix"/>, or null if there is none
    /// (empty prefix, or all 0xFF).
    /// </summary>
    public static byte[]? PrefixEnd(ReadOnlySpan<byte> prefix)
    {
        for (var i = prefix.Length - 1; i >= 0; i--)
        {
            if (prefix[i] != 0xFF)
            {
                var end = prefix[..(i + 1)].ToArray();
                end[i]++;
                return end;
            }
        }
        return null;
    }
}

/// <summary>Unsigned lexicographic byte-array order, the order of every backend.</summary>
public sealed class ByteArrayComparer : IComparer<byte[]>, IEqualityComparer<byte[]>
{
    public static readonly ByteArrayComparer Instance = new();

    public int Compare(byte[]? x, byte[]? y) => ((ReadOnlySpan<byte>)x).SequenceCompareTo(y);

    public bool Equals(byte[]? x, byte[]? y) => ((ReadOnlySpan<byte>)x).SequenceEqual(y);

    public int GetHashCode(byte[] obj)
    {
        var h = new HashCode();
        h.AddBytes(obj);
        return h.ToHashCode();
    }
}

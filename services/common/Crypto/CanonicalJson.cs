using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Conduit.Common.Crypto;

/// <summary>
/// Matrix canonical JSON (spec appendices, "Signing JSON" → "Canonical JSON").
/// Works on <see cref="JsonNode"/> trees only; no reflection-based serialization.
/// </summary>
public static class CanonicalJson
{
    /// <summary>Largest integer allowed in canonical JSON: 2^53 - 1.</summary>
    public const long MaxSafeInteger = 9_007_199_254_740_991;

    /// <summary>Smallest integer allowed in canonical JSON: -(2^53) + 1.</summary>
    public const long MinSafeInteger = -MaxSafeInteger;

    private static readonly JsonDocumentOptions StrictParseOptions = new()
    {
        AllowDuplicateProperties = false,
        AllowTrailingCommas = false,
        CommentHandling = JsonCommentHandling.Disallow,
        MaxDepth = 512,
    };

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    public static string Serialize(JsonNode? node)
    {
        var sb = new StringBuilder();
        Write(sb, node);
        return sb.ToString();
    }

    public static byte[] SerializeToUtf8Bytes(JsonNode? node) => StrictUtf8.GetBytes(Serialize(node));

    /// <summary>
    /// Canonical JSON of <paramref name="obj"/> as if the top-level members named in
    /// <paramref name="excludedKeys"/> were absent, without copying the tree.
    /// </summary>
    public static byte[] SerializeToUtf8BytesExcluding(JsonObject obj, params ReadOnlySpan<string> excludedKeys)
    {
        ArgumentNullException.ThrowIfNull(obj);
        var sb = new StringBuilder();
        WriteObject(sb, obj, excludedKeys);
        return StrictUtf8.GetBytes(sb.ToString());
    }

    /// <summary>Parses JSON text, rejecting duplicate object keys, comments and trailing commas.</summary>
    /// <exception cref="CanonicalJsonException">The text is not valid JSON or has duplicate keys.</exception>
    public static JsonNode? Parse(string json)
    {
        try
        {
            return JsonNode.Parse(json, documentOptions: StrictParseOptions);
        }
        catch (JsonException e)
        {
            throw new CanonicalJsonException("Invalid JSON: " + e.Message, e);
        }
    }

    /// <inheritdoc cref="Parse(string)"/>
    public static JsonNode? Parse(ReadOnlySpan<byte> utf8Json)
    {
        try
        {
            return JsonNode.Parse(utf8Json, documentOptions: StrictParseOptions);
        }
        catch (JsonException e)
        {
            throw new CanonicalJsonException("Invalid JSON: " + e.Message, e);
        }
    }

    /// <summary>
    /// Orders strings by Unicode code point (which equals UTF-8 byte order), unlike
    /// <see cref="string.CompareOrdinal(string, string)"/> which orders UTF-16 code units
    /// and so puts supplementary characters (surrogate pairs) before U+E000..U+FFFF.
    /// </summary>
    public static readonly IComparer<string> CodePointComparer = new CodePointOrder();

    private sealed class CodePointOrder : IComparer<string>
    {
        public int Compare(string? x, string? y)
        {
            if (ReferenceEquals(x, y)) return 0;
            if (x is null) return -1;
            if (y is null) return 1;
            int n = Math.Min(x.Length, y.Length);
            for (int i = 0; i < n; i++)
            {
                char a = x[i], b = y[i];
                if (a != b)
                {
                    return Fix(a) - Fix(b);
                }
            }
            return x.Length - y.Length;
        }

        // Move surrogates (D800-DFFF) above E000-FFFF so UTF-16 unit order matches code point order.
        private static int Fix(char c) => c >= 0xE000 ? c - 0x800 : c >= 0xD800 ? c + 0x2000 : c;
    }

    private static void Write(StringBuilder sb, JsonNode? node)
    {
        switch (node)
        {
            case null:
                sb.Append("null");
                break;
            case JsonObject obj:
                WriteObject(sb, obj, []);
                break;
            case JsonArray arr:
                sb.Append('[');
                for (int i = 0; i < arr.Count; i++)
                {
                    if (i > 0) sb.Append(',');
                    Write(sb, arr[i]);
                }
                sb.Append(']');
                break;
            case JsonValue value:
                WriteValue(sb, value);
                break;
            default:
                throw new CanonicalJsonException($"Unsupported JSON node type {node.GetType().Name}.");
        }
    }

    private static void WriteObject(StringBuilder sb, JsonObject obj, ReadOnlySpan<string> excludedKeys)
    {
        var keys = new List<string>(obj.Count);
        foreach (var kv in obj)
        {
            if (!excludedKeys.Contains(kv.Key))
            {
                keys.Add(kv.Key);
            }
        }
        keys.Sort(CodePointComparer);
        sb.Append('{');
        for (int i = 0; i < keys.Count; i++)
        {
            if (i > 0) sb.Append(',');
            WriteString(sb, keys[i]);
            sb.Append(':');
            Write(sb, obj[keys[i]]);
        }
        sb.Append('}');
    }

    private static void WriteValue(StringBuilder sb, JsonValue value)
    {
        switch (value.GetValueKind())
        {
            case JsonValueKind.String:
                string str;
                try
                {
                    str = value.GetValue<string>();
                }
                catch (InvalidOperationException e)
                {
                    // E.g. an escaped lone surrogate ("\ud800") in parsed JSON text.
                    throw new CanonicalJsonException("String cannot be encoded as UTF-8: " + e.Message, e);
                }
                WriteString(sb, str);
                break;
            case JsonValueKind.Number:
                sb.Append(ToCanonicalInteger(value).ToString(CultureInfo.InvariantCulture));
                break;
            case JsonValueKind.True:
                sb.Append("true");
                break;
            case JsonValueKind.False:
                sb.Append("false");
                break;
            case JsonValueKind.Null:
                sb.Append("null");
                break;
            default:
                throw new CanonicalJsonException($"Unsupported JSON value kind {value.GetValueKind()}.");
        }
    }

    /// <summary>
    /// Numbers must be integers in [-(2^53)+1, 2^53-1] (spec appendices, "Canonical JSON").
    /// The check is on the numeric value, not on its notation: the spec's own example encodes
    /// <c>-0</c> as <c>0</c> and <c>1e10</c> as <c>10000000000</c>. Fractions are rejected.
    /// </summary>
    private static long ToCanonicalInteger(JsonValue value)
    {
        if (value.TryGetValue(out long l))
        {
            return CheckRange(l);
        }
        // Any other backing (other CLR numeric types, or JSON text such as "1e10", "-0",
        // "1.5", "1e400"): decide on the numeric value of its JSON text.
        string text;
        try
        {
            text = value.ToJsonString();
        }
        catch (ArgumentException e)
        {
            // NaN and infinities have no JSON representation.
            throw new CanonicalJsonException("Floats are not allowed in canonical JSON.", e);
        }
        if (long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out l))
        {
            return CheckRange(l);
        }
        if (decimal.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out decimal m))
        {
            if (decimal.Truncate(m) != m)
            {
                throw new CanonicalJsonException($"Floats are not allowed in canonical JSON: {text}");
            }
            return m is > MaxSafeInteger or < MinSafeInteger
                ? throw new CanonicalJsonException($"Integer out of canonical JSON range: {text}")
                : (long)m;
        }
        if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double d)
            && double.IsFinite(d) && Math.Truncate(d) == d)
        {
            // Only reachable for magnitudes beyond decimal's range, hence always out of range.
            throw new CanonicalJsonException($"Integer out of canonical JSON range: {text}");
        }
        throw new CanonicalJsonException($"Floats are not allowed in canonical JSON: {text}");
    }

    private static long CheckRange(long l) =>
        l is > MaxSafeInteger or < MinSafeInteger
            ? throw new CanonicalJsonException("Integer out of canonical JSON range.")
            : l;

    /// <summary>
    /// Escapes only what the canonical JSON grammar requires: '"', '\\' and U+0000..U+001F,
    /// using the short forms \b \t \n \f \r where they exist and lowercase \u00XX otherwise.
    /// Everything else (including U+007F and non-ASCII) is emitted as UTF-8.
    /// </summary>
    private static void WriteString(StringBuilder sb, string s)
    {
        sb.Append('"');
        for (int i = 0; i < s.Length; i++)
        {
            char c = s[i];
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\b': sb.Append("\\b"); break;
                case '\t': sb.Append("\\t"); break;
                case '\n': sb.Append("\\n"); break;
                case '\f': sb.Append("\\f"); break;
                case '\r': sb.Append("\\r"); break;
                default:
                    if (c < 0x20)
                    {
                        sb.Append("\\u00").Append(((int)c).ToString("x2", CultureInfo.InvariantCulture));
                    }
                    else if (char.IsHighSurrogate(c))
                    {
                        if (i + 1 >= s.Length || !char.IsLowSurrogate(s[i + 1]))
                        {
                            throw new CanonicalJsonException("Unpaired surrogate in string cannot be encoded as UTF-8.");
                        }
                        sb.Append(c).Append(s[++i]);
                    }
                    else if (char.IsLowSurrogate(c))
                    {
                        throw new CanonicalJsonException("Unpaired surrogate in string cannot be encoded as UTF-8.");
                    }
                    else
                    {
                        sb.Append(c);
                    }
                    break;
            }
        }
        sb.Append('"');
    }
}

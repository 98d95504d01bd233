using System.Net;
using System.Text;
using System.Text.Json.Nodes;

namespace Conduit.Media.Previews;

/// <summary>
/// What a preview reads from an HTML page: its &lt;meta&gt; tags and its &lt;title&gt;, found by a small tokenizer
/// rather than a full HTML parser. It knows what it must to not be fooled: comments, and the raw text of script,
/// style, textarea and the like (where a "&lt;meta" is not a tag); quoted (single or double) and unquoted attribute
/// values, in any order; case-insensitive names; entities (<see cref="WebUtility.HtmlDecode"/>).
/// </summary>
public static class HtmlMeta
{
    /// <summary>At most this many og:* keys, and this many characters in a value (the preview is cached and sent).</summary>
    public const int MaxKeys = 64, MaxValueLength = 2048;

    static readonly string[] RawTextTags = ["script", "style", "textarea", "xmp", "iframe", "noembed", "noframes", "plaintext"];

    /// <summary>Every &lt;meta&gt; tag's attributes (names in lower case, values decoded) and the first title.</summary>
    public static (List<Dictionary<string, string>> Metas, string? Title) Parse(string html)
    {
        var metas = new List<Dictionary<string, string>>();
        string? title = null;
        var i = 0;
        while ((i = html.IndexOf('<', i)) >= 0 && i + 1 < html.Length)
        {
            if (string.CompareOrdinal(html, i, "<!--", 0, 4) == 0)
            {
                var end = html.IndexOf("-->", i + 4, StringComparison.Ordinal);
                if (end < 0) break;
                i = end + 3;
                continue;
            }
            if (html[i + 1] is '!' or '?')
            {
                var end = html.IndexOf('>', i);
                if (end < 0) break;
                i = end + 1;
                continue;
            }
            var closing = html[i + 1] == '/';
            var nameStart = i + (closing ? 2 : 1);
            var j = nameStart;
            while (j < html.Length && char.IsAsciiLetterOrDigit(html[j])) j++;
            if (j == nameStart || !char.IsAsciiLetter(html[nameStart]))
            {
                i++; // "a < b": text, not a tag
                continue;
            }
            var name = html[nameStart..j].ToLowerInvariant();
            var isMeta = !closing && name == "meta";
            var attrs = isMeta ? new Dictionary<string, string>(StringComparer.Ordinal) : null;
            i = ReadAttributes(html, j, attrs);
            if (closing) continue;
            if (isMeta) metas.Add(attrs!);
            else if (name == "title" || RawTextTags.Contains(name))
            {
                var close = html.IndexOf("</" + name, i, StringComparison.OrdinalIgnoreCase);
                if (close < 0) close = html.Length;
                if (name == "title") title ??= Collapse(WebUtility.HtmlDecode(html[i..close]));
                i = close;
            }
        }
        return (metas, title);
    }

    /// <summary>Reads a tag's attributes from <paramref name="i"/> (just after its name) into <paramref name="into"/>
    /// (when not null; the first of a repeated name wins, as in HTML); returns the index after the tag's '&gt;'.</summary>
    static int ReadAttributes(string html, int i, Dictionary<string, string>? into)
    {
        var n = html.Length;
        while (i < n)
        {
            while (i < n && (char.IsWhiteSpace(html[i]) || html[i] == '/')) i++;
            if (i >= n) break;
            if (html[i] == '>') return i + 1;
            var nameStart = i++;
            while (i < n && !char.IsWhiteSpace(html[i]) && html[i] is not ('/' or '>' or '=')) i++;
            var name = html[nameStart..i];
            while (i < n && char.IsWhiteSpace(html[i])) i++;
            var value = "";
            if (i < n && html[i] == '=')
            {
                i++;
                while (i < n && char.IsWhiteSpace(html[i])) i++;
                if (i < n && html[i] is '"' or '\'')
                {
                    var end = html.IndexOf(html[i], i + 1);
                    if (end < 0) end = n;
                    value = html[(i + 1)..end];
                    i = Math.Min(end + 1, n);
                }
                else
                {
                    var start = i;
                    while (i < n && !char.IsWhiteSpace(html[i]) && html[i] != '>') i++;
                    value = html[start..i];
                }
            }
            into?.TryAdd(name.ToLowerInvariant(), WebUtility.HtmlDecode(value));
        }
        return n;
    }

    static string Collapse(string s) => string.Join(' ', s.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries));

    /// <summary>
    /// The OpenGraph data of a page: every &lt;meta property="og:…" content="…"&gt; (or name="og:…"; the first of a
    /// key wins, as the OpenGraph protocol says), then for what is missing, twitter:title, twitter:description and
    /// twitter:image, the &lt;title&gt; and &lt;meta name="description"&gt;.
    /// </summary>
    public static JsonObject OpenGraph(string html)
    {
        var (metas, title) = Parse(html);
        var og = new JsonObject();
        var fallback = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var m in metas)
        {
            if (!m.TryGetValue("content", out var content)) continue;
            content = Collapse(content);
            if (content.Length is 0 or > MaxValueLength) continue;
            foreach (var attr in (ReadOnlySpan<string>)["property", "name"])
            {
                if (!m.TryGetValue(attr, out var key)) continue;
                key = key.Trim().ToLowerInvariant();
                if (key.StartsWith("og:", StringComparison.Ordinal) && key.Length > 3)
                {
                    if (og.Count < MaxKeys && !og.ContainsKey(key)) og[key] = content;
                }
                else if (key is "description" or "twitter:title" or "twitter:description" or "twitter:image") fallback.TryAdd(key, content);
            }
        }
        void Fill(string key, string? value)
        {
            if (!og.ContainsKey(key) && !string.IsNullOrEmpty(value)) og[key] = value.Length > MaxValueLength ? value[..MaxValueLength] : value;
        }
        Fill("og:title", fallback.GetValueOrDefault("twitter:title"));
        Fill("og:title", title);
        Fill("og:description", fallback.GetValueOrDefault("twitter:description"));
        Fill("og:description", fallback.GetValueOrDefault("description"));
        Fill("og:image", fallback.GetValueOrDefault("twitter:image"));
        return og;
    }

    // ---- character sets

    /// <summary>
    /// The page's text: decoded as its byte order mark says, else as the Content-Type header's charset, else as a
    /// &lt;meta charset&gt; (or http-equiv Content-Type) in its first 4 KiB says, else as UTF-8. Charsets .NET does not
    /// carry itself come from <see cref="CodePagesEncodingProvider"/> (windows-1252, shift_jis...; table-driven,
    /// fine under Native AOT); an unknown one is read as UTF-8.
    /// </summary>
    public static string Decode(byte[] bytes, string? headerCharset)
    {
        Encoding? bom = null;
        var skip = 0;
        if (bytes.AsSpan().StartsWith((ReadOnlySpan<byte>)[0xEF, 0xBB, 0xBF])) (bom, skip) = (Encoding.UTF8, 3);
        else if (bytes.AsSpan().StartsWith((ReadOnlySpan<byte>)[0xFF, 0xFE])) (bom, skip) = (Encoding.Unicode, 2);
        else if (bytes.AsSpan().StartsWith((ReadOnlySpan<byte>)[0xFE, 0xFF])) (bom, skip) = (Encoding.BigEndianUnicode, 2);
        var encoding = bom ?? Find(headerCharset) ?? Find(SniffMetaCharset(bytes)) ?? Encoding.UTF8;
        return encoding.GetString(bytes, skip, bytes.Length - skip);
    }

    static string? SniffMetaCharset(byte[] bytes)
    {
        // Latin-1 maps each byte to one char: good enough to read ASCII markup in any ASCII-compatible charset.
        var head = Encoding.Latin1.GetString(bytes, 0, Math.Min(bytes.Length, 4096));
        foreach (var m in Parse(head).Metas)
        {
            if (m.TryGetValue("charset", out var cs)) return cs;
            if (m.TryGetValue("http-equiv", out var he) && he.Equals("content-type", StringComparison.OrdinalIgnoreCase)
                && m.TryGetValue("content", out var ct) && CharsetOf(ct) is { } c) return c;
        }
        return null;
    }

    /// <summary>The charset parameter of a Content-Type value.</summary>
    public static string? CharsetOf(string contentType)
    {
        var at = contentType.IndexOf("charset=", StringComparison.OrdinalIgnoreCase);
        if (at < 0) return null;
        var v = contentType[(at + 8)..].Split(';')[0].Trim().Trim('"', '\'');
        return v.Length > 0 ? v : null;
    }

    static Encoding? Find(string? name)
    {
        if (string.IsNullOrWhiteSpace(name)) return null;
        name = name.Trim();
        // As browsers do: a page that says UTF-16 in ASCII markup is not UTF-16; "latin1" labels mean windows-1252.
        if (name.StartsWith("utf-16", StringComparison.OrdinalIgnoreCase)) return Encoding.UTF8;
        if (name.Equals("iso-8859-1", StringComparison.OrdinalIgnoreCase) || name.Equals("latin1", StringComparison.OrdinalIgnoreCase)
            || name.Equals("us-ascii", StringComparison.OrdinalIgnoreCase) || name.Equals("ascii", StringComparison.OrdinalIgnoreCase))
            name = "windows-1252";
        try { return CodePagesEncodingProvider.Instance.GetEncoding(name) ?? Encoding.GetEncoding(name); }
        catch (ArgumentException) { return null; }
    }
}

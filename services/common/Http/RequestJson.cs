using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Unicode;

namespace Conduit.Common.Http;

/// <summary>
/// The one strict parser of JSON a client sends (request bodies, and JSON in query parameters such as filters).
/// Everything that makes the text unusable is refused here, at parse time, as <c>M_NOT_JSON</c>: bad syntax,
/// invalid UTF-8 (RFC 8259 §8.1), duplicate object keys (RFC 7493 §2.3: their meaning is undefined, and the two
/// parsers of a request could disagree on which one counts), strings with a lone surrogate escape (not Unicode,
/// so not UTF-8 either), and nesting deeper than <see cref="MaxDepth"/>. The tree is built eagerly: a
/// <see cref="JsonNode"/> parsed the usual way materialises lazily, so a bad string would otherwise throw later,
/// in whichever handler touched it first, as a 500.
/// </summary>
public static class RequestJson
{
    /// <summary>Deepest nesting accepted; event content and push rule conditions stay far below it.</summary>
    public const int MaxDepth = 64;

    static readonly JsonDocumentOptions Options = new()
    {
        AllowDuplicateProperties = false,
        AllowTrailingCommas = false,
        CommentHandling = JsonCommentHandling.Disallow,
        MaxDepth = MaxDepth,
    };

    /// <summary>A JSON object from UTF-8 text, else M_NOT_JSON (not usable JSON) or M_BAD_JSON (not an object).</summary>
    public static JsonObject ParseObject(ReadOnlyMemory<byte> utf8, string what = "Request body")
        => Parse(utf8, what) as JsonObject ?? throw Err.BadJson($"{what} must be a JSON object");

    /// <summary>A JSON object from text (a query parameter), with the same rules as a body.</summary>
    public static JsonObject ParseObject(string text, string what)
    {
        ArgumentNullException.ThrowIfNull(text);
        // A lone surrogate in the decoded parameter becomes U+FFFD here, as in any other query parameter.
        return ParseObject(Encoding.UTF8.GetBytes(text), what);
    }

    /// <summary>Any JSON value from UTF-8 text (null for the literal null), else M_NOT_JSON.</summary>
    public static JsonNode? Parse(ReadOnlyMemory<byte> utf8, string what = "Request body")
    {
        if (!Utf8.IsValid(utf8.Span)) throw Err.NotJson($"{what} is not valid UTF-8");
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(utf8, Options);
        }
        catch (JsonException e)
        {
            throw Err.NotJson($"{what} is not valid JSON: {e.Message}");
        }
        catch (InvalidOperationException)
        {
            // The duplicate-key check unescapes property names: a lone surrogate escape in one throws here.
            throw Err.NotJson($"{what} has a string that is not valid Unicode (a lone surrogate escape)");
        }
        using (doc)
        {
            try
            {
                return Build(doc.RootElement);
            }
            catch (InvalidOperationException)
            {
                // JsonElement.GetString on an escaped lone surrogate ("\ud800").
                throw Err.NotJson($"{what} has a string that is not valid Unicode (a lone surrogate escape)");
            }
        }
    }

    static JsonNode? Build(JsonElement e)
    {
        switch (e.ValueKind)
        {
            case JsonValueKind.Object:
            {
                var o = new JsonObject();
                foreach (var p in e.EnumerateObject()) o[p.Name] = Build(p.Value);
                return o;
            }
            case JsonValueKind.Array:
            {
                var a = new JsonArray();
                foreach (var item in e.EnumerateArray()) a.Add(Build(item));
                return a;
            }
            case JsonValueKind.String:
                return JsonValue.Create(e.GetString()!);
            case JsonValueKind.True:
                return JsonValue.Create(true);
            case JsonValueKind.False:
                return JsonValue.Create(false);
            case JsonValueKind.Null:
                return null;
            default:
                // Other numbers (fractions, exponents, beyond 64 bits) keep their JSON text, so the checks that
                // refuse them where they matter (event content must be canonical JSON) still see them.
                return e.TryGetInt64(out var l) ? JsonValue.Create(l) : JsonValue.Create(e.Clone());
        }
    }
}

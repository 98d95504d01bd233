using System.Text.Json;
using System.Text.Json.Nodes;

namespace Conduit.Common;

/// <summary>
/// How deep JSON may nest, at each place it enters or is read back. Each limit leaves room for the one before it, so
/// whatever the server accepted it can always read again: a client's body is at most <see cref="Http.RequestJson.MaxDepth"/>
/// deep, an event at most <see cref="MaxEventDepth"/> (checked on send and on receipt), and JSON the server stored or
/// passes between its services (an event inside a /sync response, a body inside account data) is read with
/// <see cref="Internal"/>. System.Text.Json's default of 64 would refuse an event it stored one level deeper than
/// the body it came in, and every /sync that included it would fail.
/// </summary>
public static class JsonLimits
{
    /// <summary>Deepest nesting of a whole PDU (its content one level less).</summary>
    public const int MaxEventDepth = 100;

    /// <summary>For JSON the server wrote itself: room for an event inside any envelope.</summary>
    public static readonly JsonDocumentOptions Internal = new() { MaxDepth = 256 };

    /// <summary>Parses JSON the server stored or another service of it sent (<see cref="Internal"/> depth).</summary>
    public static JsonNode? ParseInternal(ReadOnlySpan<byte> utf8) => JsonNode.Parse(utf8, documentOptions: Internal);

    /// <inheritdoc cref="ParseInternal(ReadOnlySpan{byte})"/>
    public static JsonNode? ParseInternal(string json) => JsonNode.Parse(json, documentOptions: Internal);

    /// <summary>How deep <paramref name="node"/> nests: 0 for a scalar, 1 for an empty object or array, and so on.</summary>
    public static int DepthOf(JsonNode? node) => node switch
    {
        JsonObject o => 1 + o.Select(p => DepthOf(p.Value)).DefaultIfEmpty(0).Max(),
        JsonArray a => 1 + a.Select(DepthOf).DefaultIfEmpty(0).Max(),
        _ => 0,
    };
}

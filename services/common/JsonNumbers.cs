using System.Text.Json;
using System.Text.Json.Nodes;

namespace Conduit.Common;

/// <summary>
/// Reading integers from JSON nodes whether they were parsed (JsonElement-backed) or built in code (an int,
/// a long): <c>TryGetValue&lt;long&gt;</c> alone fails on a node built from an int.
/// </summary>
public static class JsonNumbers
{
    public static bool TryGetInteger(this JsonNode? node, out long value)
    {
        value = 0;
        if (node is not JsonValue v || v.GetValueKind() != JsonValueKind.Number) return false;
        if (v.TryGetValue(out long l)) { value = l; return true; }
        if (v.TryGetValue(out int i)) { value = i; return true; }
        if (v.TryGetValue(out JsonElement e) && e.TryGetInt64(out l)) { value = l; return true; }
        if (v.TryGetValue(out double d) && d == Math.Floor(d) && Math.Abs(d) < 9007199254740992) { value = (long)d; return true; }
        return false;
    }
}

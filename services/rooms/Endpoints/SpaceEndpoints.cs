using System.Globalization;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Http;
using Conduit.Common.Routing;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Conduit.Rooms;

/// <summary>
/// GET /_matrix/client/v1/rooms/{roomId}/hierarchy (spec: client-server-api, "Spaces"): the space and the rooms under
/// it, breadth first, each child list in the spec's order ("Ordering of children within a space"). A room appears only
/// if the caller may see its summary (<see cref="RoomSummaries.MaySee"/>); rooms this server does not know (on other
/// servers) are left out until federation. Loops are cut: a room appears once.
/// </summary>
public sealed class SpaceEndpoints(RoomStore rooms, RoomSummaries summaries)
{
    const int DefaultLimit = 50, MaxLimit = 100, DefaultDepth = 10, MaxDepth = 50;

    public void Map(IEndpointRouteBuilder app) => app.Map(RouteTable.SpaceHierarchy, Hierarchy);

    async Task Hierarchy(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var root = RoomParams.RoomId(ctx);
        var q = ctx.Request.Query;
        var suggestedOnly = q["suggested_only"].ToString() switch
        {
            "" or "false" => false,
            "true" => true,
            _ => throw Err.InvalidParam("'suggested_only' must be true or false"),
        };
        var limit = Number(q["limit"].ToString(), "limit", DefaultLimit, 1, MaxLimit);
        var maxDepth = Number(q["max_depth"].ToString(), "max_depth", DefaultDepth, 0, MaxDepth);
        var skip = 0;
        if (q["from"].ToString() is { Length: > 0 } from)
        {
            // "{rooms already returned}_{suggested_only}_{max_depth}": the walk is deterministic, so a page is the walk
            // again with the rooms before it skipped, and the parameters may not change between pages (spec: 400).
            var parts = from.Split('_');
            if (parts.Length != 3 || !int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out skip))
                throw Err.InvalidParam("Unknown 'from' token");
            if (parts[1] != (suggestedOnly ? "1" : "0") || parts[2] != maxDepth.ToString(CultureInfo.InvariantCulture))
                throw Err.InvalidParam("suggested_only and max_depth cannot change on paginated requests");
        }
        if (rooms.Info(root) is null || !summaries.MaySee(root, c.UserId))
            throw Err.Forbidden("You are not allowed to view this room");

        var chunk = new JsonArray();
        var seen = new HashSet<string> { root };
        var queue = new Queue<(string RoomId, int Depth)>();
        queue.Enqueue((root, 0));
        var index = 0;
        var more = false;
        while (queue.Count > 0)
        {
            var (roomId, depth) = queue.Dequeue();
            if (rooms.Info(roomId) is null || !summaries.MaySee(roomId, c.UserId)) continue;
            var children = Children(roomId, suggestedOnly);
            if (index++ >= skip)
            {
                if (chunk.Count == limit)
                {
                    more = true;
                    break;
                }
                var entry = summaries.Summarise(roomId);
                entry["children_state"] = new JsonArray(children.Select(ch => (JsonNode)ch.Stripped).ToArray());
                chunk.Add((JsonNode)entry);
            }
            if (depth < maxDepth)
                foreach (var ch in children)
                    if (seen.Add(ch.RoomId)) queue.Enqueue((ch.RoomId, depth + 1));
        }
        var body = new JsonObject { ["rooms"] = chunk };
        if (more) body["next_batch"] = $"{index - 1}_{(suggestedOnly ? 1 : 0)}_{maxDepth}";
        await ctx.Response.WriteJsonAsync(body);
    }

    static int Number(string s, string name, int dflt, int min, int max)
    {
        if (s.Length == 0) return dflt;
        return int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out var v) && v >= min
            ? Math.Min(v, max)
            : throw Err.InvalidParam($"'{name}' must be an integer of at least {min}");
    }

    /// <summary>
    /// The space's children: its m.space.child state events whose content has a non-empty via list (an empty or absent
    /// via removes a child), stripped as the spec shows them, in the spec's order: a valid order string (at most 50
    /// characters from \x20 to \x7E) first, by that string; then by the event's timestamp; then by room ID.
    /// </summary>
    List<(string RoomId, JsonObject Stripped)> Children(string spaceId, bool suggestedOnly)
    {
        var found = new List<(string RoomId, string? Order, long Ts, JsonObject Stripped)>();
        foreach (var ((type, stateKey), _) in rooms.CurrentState(spaceId))
        {
            if (type != "m.space.child" || !Ids.IsRoomId(stateKey)) continue;
            var e = rooms.StateEvent(spaceId, type, stateKey);
            if (e is null) continue;
            var content = e.Content;
            if (content["via"] is not JsonArray via || via.Count == 0 || !via.All(v => v is JsonValue jv && jv.TryGetValue<string>(out _))) continue;
            if (suggestedOnly && !(content["suggested"] is JsonValue s && s.TryGetValue<bool>(out var b) && b)) continue;
            var order = ContentField.String(content, "order");
            if (order is not null && (order.Length > 50 || order.Any(ch => ch is < '\x20' or > '\x7E'))) order = null;
            var ts = e.Pdu["origin_server_ts"]?.GetValue<long>() ?? 0;
            found.Add((stateKey, order, ts, new JsonObject
            {
                ["type"] = type, ["state_key"] = stateKey, ["content"] = content.DeepClone(), ["sender"] = e.Sender, ["origin_server_ts"] = ts,
            }));
        }
        return found
            .OrderBy(f => f.Order is null ? 1 : 0)
            .ThenBy(f => f.Order, StringComparer.Ordinal)
            .ThenBy(f => f.Ts)
            .ThenBy(f => f.RoomId, StringComparer.Ordinal)
            .Select(f => (f.RoomId, f.Stripped))
            .ToList();
    }
}

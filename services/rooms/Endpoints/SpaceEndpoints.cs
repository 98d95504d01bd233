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
/// if the caller may see its summary (<see cref="RoomSummaries.MaySee"/>); a room this server is not in is asked of the
/// servers its m.space.child names (GET /_matrix/federation/v1/hierarchy, once per request) and shown if it is public,
/// knockable, world-readable or restricted to a room the caller is joined to. Loops are cut: a room appears once.
/// </summary>
public sealed class SpaceEndpoints(RoomStore rooms, RoomSummaries summaries, RemoteServers remote, Conduit.Common.Config.GlobalConfig config)
{
    /// <summary>A room known only from another server's /hierarchy answer: its summary, and its children (as stripped m.space.child events).</summary>
    sealed record RemoteRoom(JsonObject Summary, List<(string RoomId, JsonObject Stripped)> Children);

    const int DefaultLimit = 50, MaxLimit = 100, DefaultDepth = 10, MaxDepth = 50;
    /// <summary>Rooms one hierarchy request asks other servers about, at the most (their answers' children come free).</summary>
    const int MaxRemoteFetches = 20;

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
        var queue = new Queue<(string RoomId, int Depth, string[] Via)>();
        queue.Enqueue((root, 0, []));
        var remoteRooms = new Dictionary<string, RemoteRoom?>(StringComparer.Ordinal);
        var asked = 0;
        var index = 0;
        var more = false;
        while (queue.Count > 0)
        {
            var (roomId, depth, via) = queue.Dequeue();
            JsonObject entry;
            List<(string RoomId, JsonObject Stripped)> children;
            // Rooms this server is in are read here; the others are asked of the servers their m.space.child names.
            if (rooms.Info(roomId) is not null && (roomId == root || rooms.JoinedMembers(roomId).Any(u => Ids.ServerOf(u) == config.ServerName)))
            {
                if (!summaries.MaySee(roomId, c.UserId)) continue;
                children = Children(roomId, suggestedOnly);
                entry = summaries.Summarise(roomId);
            }
            else
            {
                // Each room a request asks other servers about costs a round trip (or a timeout): a walk asks about a bounded number.
                if (!remoteRooms.TryGetValue(roomId, out var known))
                    remoteRooms[roomId] = known = ++asked <= MaxRemoteFetches ? await FetchAsync(roomId, via, suggestedOnly, remoteRooms, ctx.RequestAborted) : null;
                if (known is null || !RemoteMaySee(known.Summary, roomId, c.UserId)) continue;
                children = known.Children;
                entry = known.Summary.DeepClone().AsObject();
            }
            if (index++ >= skip)
            {
                if (chunk.Count == limit)
                {
                    more = true;
                    break;
                }
                entry["children_state"] = new JsonArray(children.Select(ch => (JsonNode)ch.Stripped.DeepClone()).ToArray());
                chunk.Add((JsonNode)entry);
            }
            if (depth < maxDepth)
                foreach (var ch in children)
                    if (seen.Add(ch.RoomId)) queue.Enqueue((ch.RoomId, depth + 1, ViaOf(ch.Stripped)));
        }
        var body = new JsonObject { ["rooms"] = chunk };
        if (more) body["next_batch"] = $"{index - 1}_{(suggestedOnly ? 1 : 0)}_{maxDepth}";
        await ctx.Response.WriteJsonAsync(body);
    }

    static string[] ViaOf(JsonObject stripped)
        => stripped["content"]?["via"] is JsonArray a ? a.OfType<JsonValue>().Select(v => v.TryGetValue(out string? s) ? s : null).OfType<string>().Take(10).ToArray() : [];

    /// <summary>The remote rule of <see cref="RoomSummaries.MaySee"/>, on the summary the other server sent.</summary>
    bool RemoteMaySee(JsonObject summary, string roomId, string userId)
    {
        if (rooms.MembershipOf(userId, roomId)?.State is "join" or "invite" or "knock") return true;
        var joinRule = ContentField.String(summary, "join_rule");
        if (joinRule is "public" or "knock" or "knock_restricted") return true;
        if (summary["world_readable"] is JsonValue w && w.TryGetValue(out bool wr) && wr) return true;
        return joinRule == "restricted" && summary["allowed_room_ids"] is JsonArray allowed
            && allowed.OfType<JsonValue>().Any(v => v.TryGetValue(out string? r) && rooms.MembershipOf(userId, r)?.State == "join");
    }

    /// <summary>
    /// Asks the via servers for a room's place in the hierarchy (spec: server-server-api, GET /hierarchy); the answer's
    /// children are kept too, so that the walk does not ask for them again. Null when no server answers.
    /// </summary>
    async Task<RemoteRoom?> FetchAsync(string roomId, string[] via, bool suggestedOnly, Dictionary<string, RemoteRoom?> known, CancellationToken ct)
    {
        if (!config.AllowFederation) return null;
        foreach (var server in via.Where(s => s != config.ServerName && Ids.IsValidServerName(s)).Distinct().Take(3))
        {
            var reply = await remote.SendAsync(server, "GET",
                $"/_matrix/federation/v1/hierarchy/{Uri.EscapeDataString(roomId)}?suggested_only={(suggestedOnly ? "true" : "false")}", null, ct, TimeSpan.FromSeconds(15));
            if (!reply.Ok || reply.Body!["room"] is not JsonObject room || ContentField.String(room, "room_id") != roomId) continue;
            foreach (var child in (reply.Body["children"] as JsonArray ?? []).OfType<JsonObject>())
                if (ContentField.String(child, "room_id") is { } childId && Ids.IsRoomId(childId) && !known.ContainsKey(childId))
                    known[childId] = Parse(child);
            return Parse(room);
        }
        return null;
    }

    /// <summary>A summary from another server, with its children_state taken as this server reads m.space.child (via required, its order).</summary>
    static RemoteRoom Parse(JsonObject room)
    {
        var summary = room.DeepClone().AsObject();
        summary.Remove("children_state");
        var children = new List<(string RoomId, string? Order, long Ts, JsonObject Stripped)>();
        foreach (var ev in (room["children_state"] as JsonArray ?? []).OfType<JsonObject>().Take(500))
        {
            if (ContentField.String(ev, "type") != "m.space.child" || ContentField.String(ev, "state_key") is not { } childId || !Ids.IsRoomId(childId)) continue;
            if (ev["content"] is not JsonObject content || content["via"] is not JsonArray v || v.Count == 0) continue;
            var ts = ev["origin_server_ts"] is JsonValue t && t.TryGetValue(out long tsv) ? tsv : 0;
            children.Add((childId, ValidOrder(content), ts, new JsonObject
            {
                ["type"] = "m.space.child", ["state_key"] = childId, ["content"] = content.DeepClone(), ["sender"] = ContentField.String(ev, "sender") ?? "", ["origin_server_ts"] = ts,
            }));
        }
        return new RemoteRoom(summary, InSpecOrder(children));
    }

    /// <summary>
    /// GET /_matrix/federation/v1/hierarchy/{roomId} for another server: the room (if a user of that server could see it
    /// from outside: public, knockable, world-readable or restricted) with its children_state, and its children this
    /// server knows, or their IDs as inaccessible.
    /// </summary>
    public JsonObject ForServer(string roomId, bool suggestedOnly)
    {
        if (rooms.Info(roomId) is null || !summaries.MaySee(roomId, null) && JoinRule.Of(rooms.StateContent(roomId, "m.room.join_rules")) != "restricted")
            throw Err.NotFound("Unknown room");
        JsonObject Entry(string id)
        {
            var e = summaries.Summarise(id);
            e["children_state"] = new JsonArray(Children(id, suggestedOnly).Select(ch => (JsonNode)ch.Stripped).ToArray());
            return e;
        }
        var children = new JsonArray();
        var inaccessible = new JsonArray();
        foreach (var (childId, _) in Children(roomId, suggestedOnly))
        {
            if (rooms.Info(childId) is null) continue;
            if (summaries.MaySee(childId, null) || JoinRule.Of(rooms.StateContent(childId, "m.room.join_rules")) == "restricted") children.Add((JsonNode)Entry(childId));
            else inaccessible.Add((JsonNode)childId);
        }
        return new JsonObject { ["room"] = Entry(roomId), ["children"] = children, ["inaccessible_children"] = inaccessible };
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
            var ts = e.Pdu["origin_server_ts"]?.GetValue<long>() ?? 0;
            found.Add((stateKey, ValidOrder(content), ts, new JsonObject
            {
                ["type"] = type, ["state_key"] = stateKey, ["content"] = content.DeepClone(), ["sender"] = e.Sender, ["origin_server_ts"] = ts,
            }));
        }
        return InSpecOrder(found);
    }

    /// <summary>The child's order string if valid (at most 50 characters from \x20 to \x7E), else null.</summary>
    static string? ValidOrder(JsonObject content)
        => ContentField.String(content, "order") is { } order && order.Length <= 50 && order.All(ch => ch is >= '\x20' and <= '\x7E') ? order : null;

    /// <summary>Children in the spec's order: a valid order string first, by that string; then by timestamp; then by room ID.</summary>
    static List<(string RoomId, JsonObject Stripped)> InSpecOrder(IEnumerable<(string RoomId, string? Order, long Ts, JsonObject Stripped)> children)
        => children.OrderBy(f => f.Order is null ? 1 : 0).ThenBy(f => f.Order, StringComparer.Ordinal).ThenBy(f => f.Ts)
            .ThenBy(f => f.RoomId, StringComparer.Ordinal).Select(f => (f.RoomId, f.Stripped)).ToList();
}

using System.Text.Json.Nodes;
using Conduit.Common.Http;
using Conduit.Common.Routing;
using Conduit.Rooms.Rules;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Conduit.Rooms;

/// <summary>
/// GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]] (spec: client-server-api,
/// "Relationships between events", relations.yaml) and GET /_matrix/client/v1/rooms/{roomId}/threads
/// (threads_list.yaml), from the indexes <see cref="Relations"/> reads. History visibility decides per event, as
/// for /messages; a parent the caller may not see is 404, as /event answers.
/// </summary>
public sealed class RelationEndpoints(RoomStore rooms, Relations relations, ClientEvents format, Visibility visibility, RoomParams param)
{
    /// <summary>How deep recurse=true follows relations of relations (MSC3981: at least 3).</summary>
    public const int RecursionDepth = 3;

    public void Map(IEndpointRouteBuilder app)
    {
        app.Map(RouteTable.Relations, List);
        app.Map(RouteTable.RelationsOfType, List);
        app.Map(RouteTable.RelationsOfTypes, List);
        app.Map(RouteTable.Threads, ThreadList);
    }

    async Task List(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var roomId = RoomParams.RoomId(ctx);
        var relType = ctx.Request.RouteValues.ContainsKey("relType") ? ctx.Route("relType") : null;
        var eventType = ctx.Request.RouteValues.ContainsKey("eventType") ? ctx.Route("eventType") : null;
        var dir = ctx.Request.Query("dir") ?? "b";
        if (dir is not ("b" or "f")) throw Err.InvalidParam("dir must be 'b' or 'f'");
        var recurseParam = ctx.Request.Query("recurse");
        var recurse = recurseParam switch
        {
            null or "false" => false,
            "true" => true,
            _ => throw Err.InvalidParam("recurse must be 'true' or 'false'"),
        };
        var limit = RoomParams.LimitParam(ctx, 5, 1000);
        var fromParam = ctx.Request.Query("from");
        var from = RoomParams.ParsePoint(fromParam);
        var to = RoomParams.ParsePoint(ctx.Request.Query("to"));
        var parent = rooms.Event(ctx.Route("eventId"));
        var window = visibility.ReadableWindow(c.UserId, roomId);
        if (parent is null || parent.RoomId != roomId || !visibility.CanSee(c.UserId, parent, window)) throw Err.NotFound("Event not found");

        // Tokens are room stream points (as /messages): backwards from `from` down to `to`, forwards from `from` up to `to`.
        var backwards = dir == "b";
        var (after, upTo) = backwards ? (to ?? 0, from ?? long.MaxValue) : (from ?? 0, to ?? long.MaxValue);
        var entries = recurse
            ? Descendants(roomId, parent.EventId, relType, after, upTo, backwards)
            : relations.Children(roomId, parent.EventId, relType, after, upTo, backwards);
        var chunk = new JsonArray();
        string? next = null;
        foreach (var r in entries)
        {
            if (eventType is not null && r.Type != eventType) continue;
            if (chunk.Count >= limit)
            {
                next = $"t{(backwards ? r.Pos : r.Pos - 1)}";
                break;
            }
            if (rooms.Event(r.EventId) is { } child && visibility.CanSee(c.UserId, child, window))
                chunk.Add((JsonNode)format.Format(child, c.DeviceId, true, c.UserId));
        }
        var result = new JsonObject { ["chunk"] = chunk };
        if (next is not null) result["next_batch"] = next;
        if (fromParam is not null) result["prev_batch"] = fromParam;
        if (recurseParam is not null) result["recursion_depth"] = recurse ? RecursionDepth : 1;
        await ctx.Response.WriteJsonAsync(result);
    }

    /// <summary>
    /// Children, their children and so on up to <see cref="RecursionDepth"/> levels (each event once), the
    /// rel_type filter applying to each event's own relation, ordered by position.
    /// </summary>
    List<RelationEntry> Descendants(string roomId, string parentId, string? relType, long after, long upTo, bool backwards)
    {
        var found = new List<RelationEntry>();
        var seen = new HashSet<string> { parentId };
        var level = new List<string> { parentId };
        for (var depth = 0; depth < RecursionDepth && level.Count > 0; depth++)
        {
            var nextLevel = new List<string>();
            foreach (var p in level)
                foreach (var r in relations.Children(roomId, p, null))
                {
                    if (!seen.Add(r.EventId)) continue;
                    nextLevel.Add(r.EventId);
                    if ((relType is null || r.RelType == relType) && r.Pos > after && r.Pos <= upTo) found.Add(r);
                }
            level = nextLevel;
        }
        found.Sort((a, b) => backwards ? b.Pos.CompareTo(a.Pos) : a.Pos.CompareTo(b.Pos));
        return found;
    }

    // ---- /threads: thread roots by their latest reply, newest first; the token is the latest position to list from.
    async Task ThreadList(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var roomId = param.KnownRoomId(ctx);
        var include = ctx.Request.Query("include") ?? "all";
        if (include is not ("all" or "participated")) throw Err.InvalidParam("include must be 'all' or 'participated'");
        var limit = RoomParams.LimitParam(ctx, 10, 100);
        var from = RoomParams.ParsePoint(ctx.Request.Query("from")) ?? long.MaxValue;
        var window = visibility.ReadableWindow(c.UserId, roomId) ?? throw Err.Forbidden("You are not allowed to read this room");
        var chunk = new JsonArray();
        string? next = null;
        foreach (var (pos, rootId) in relations.Threads(roomId, from))
        {
            if (chunk.Count >= limit)
            {
                next = $"t{pos}";
                break;
            }
            if (include == "participated" && !relations.Participated(roomId, rootId, c.UserId)) continue;
            if (rooms.Event(rootId) is { } root && visibility.CanSee(c.UserId, root, window))
                chunk.Add((JsonNode)format.Format(root, c.DeviceId, true, c.UserId));
        }
        var result = new JsonObject { ["chunk"] = chunk };
        if (next is not null) result["next_batch"] = next;
        await ctx.Response.WriteJsonAsync(result);
    }
}

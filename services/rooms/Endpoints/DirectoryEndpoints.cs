using System.Globalization;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Http;
using Conduit.Common.Routing;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Conduit.Rooms;

/// <summary>
/// The published room directory (spec: client-server-api, "Listing rooms"): GET and POST /publicRooms (the rooms
/// published here, largest first, then by room ID; a filter on name, topic, alias and room ID, and on room types;
/// offset pages), and GET/PUT /directory/list/room/{roomId}. Publishing or hiding a room takes the power to set its
/// canonical alias (Synapse asks the same of a room's moderators). Other servers' directories and third-party
/// networks need federation and application services: `server` naming another server, or a third-party instance,
/// is answered with no rooms.
/// </summary>
public sealed class DirectoryEndpoints(RoomStore rooms, RoomSummaries summaries, GlobalConfig config, RemoteServers remote)
{
    const int MaxLimit = 500;

    public void Map(IEndpointRouteBuilder app)
    {
        app.Map(RouteTable.PublicRooms, PublicRooms);
        app.Map(RouteTable.DirectoryListRoom, Visibility);
    }

    async Task Visibility(HttpContext ctx)
    {
        var roomId = RoomParams.RoomId(ctx);
        if (HttpMethods.IsGet(ctx.Request.Method))
        {
            if (rooms.Info(roomId) is null) throw Err.NotFound("Unknown room");
            var published = rooms.Store.Map(RoomsFamilies.Directory).Contains(RoomsFamilies.DirectoryKey(roomId));
            await ctx.Response.WriteJsonAsync(new JsonObject { ["visibility"] = published ? "public" : "private" });
            return;
        }
        var c = Caller.Required(ctx);
        var body = await ctx.Request.ReadJsonObjectAsync();
        var visibility = body.OptString("visibility") ?? "public";
        if (visibility is not ("public" or "private")) throw Err.InvalidParam("'visibility' must be public or private");
        if (rooms.Info(roomId) is null) throw Err.NotFound("Unknown room");
        if (rooms.MembershipOf(c.UserId, roomId)?.State != "join") throw Err.Forbidden("You are not in this room");
        var version = rooms.VersionOf(roomId)!;
        var levels = PowerLevels.FromEvents(version, rooms.StateEvent(roomId, "m.room.create", "")?.Pdu, rooms.StateEvent(roomId, "m.room.power_levels", "")?.Pdu);
        if (levels.UserLevel(c.UserId) < levels.EventLevel("m.room.canonical_alias", isState: true))
            throw Err.Forbidden("You need the power to set the room's canonical alias to publish it");
        rooms.SetDirectoryVisibility(roomId, visibility == "public");
        await ctx.Response.WriteJsonAsync(new JsonObject());
    }

    async Task PublicRooms(HttpContext ctx)
    {
        int? limit;
        string? since, server, term = null;
        HashSet<string?>? roomTypes = null;
        var thirdParty = false;
        if (HttpMethods.IsPost(ctx.Request.Method))
        {
            Caller.Required(ctx);
            var body = await ctx.Request.ReadJsonObjectAsync();
            limit = body["limit"] is null ? null : (int?)Math.Clamp(body.OptLong("limit") ?? 0, 0, MaxLimit);
            since = body.OptString("since");
            server = ctx.Request.Query["server"].ToString();
            if (body.OptObject("filter") is { } filter)
            {
                term = filter.OptString("generic_search_term");
                if (filter["room_types"] is JsonArray types)
                    roomTypes = types.Select(t => t is JsonValue v && v.TryGetValue<string>(out var s) ? s : t is null ? null : throw Err.BadJson("'room_types' must hold strings or null")).ToHashSet();
                else if (filter["room_types"] is not null) throw Err.BadJson("'room_types' must be an array");
            }
            thirdParty = body.OptString("third_party_instance_id") is not null;
        }
        else
        {
            // GET may be used without a token (spec).
            var q = ctx.Request.Query;
            limit = q["limit"].Count == 0 ? null
                : int.TryParse(q["limit"].ToString(), NumberStyles.None, CultureInfo.InvariantCulture, out var l) ? Math.Min(l, MaxLimit)
                : throw Err.InvalidParam("'limit' must be a non-negative integer");
            since = q["since"].Count == 0 ? null : q["since"].ToString();
            server = q["server"].ToString();
        }
        if (thirdParty) throw Err.InvalidParam("No third-party networks are bridged to this server");
        if (!string.IsNullOrEmpty(server) && server != config.ServerName)
        {
            await ctx.Response.WriteJsonAsync(await RemoteDirectoryAsync(server, limit, since, term, roomTypes, ctx.RequestAborted));
            return;
        }
        await ctx.Response.WriteJsonAsync(LocalDirectory(limit, since, term, roomTypes));
    }

    /// <summary>Another server's published rooms (spec: server-server-api, "Public Room Directory"); what it answers is passed on if it has the shape of a directory page.</summary>
    async Task<JsonObject> RemoteDirectoryAsync(string server, int? limit, string? since, string? term, HashSet<string?>? roomTypes, CancellationToken ct)
    {
        if (!config.AllowFederation || !Ids.IsValidServerName(server)) throw Err.NotFound("Unknown server");
        var body = new JsonObject();
        if (limit is { } l) body["limit"] = l;
        if (since is not null) body["since"] = since;
        var filter = new JsonObject();
        if (term is not null) filter["generic_search_term"] = term;
        if (roomTypes is not null) filter["room_types"] = new JsonArray(roomTypes.Select(t => (JsonNode?)t).ToArray());
        if (filter.Count > 0) body["filter"] = filter;
        var reply = await remote.SendAsync(server, "POST", "/_matrix/federation/v1/publicRooms", body, ct, TimeSpan.FromSeconds(20));
        if (!reply.Ok || reply.Body!["chunk"] is not JsonArray chunk) throw Err.NotFound($"The room directory of {server} could not be fetched ({reply})");
        var answer = new JsonObject { ["chunk"] = new JsonArray(chunk.OfType<JsonObject>().Where(r => ContentField.String(r, "room_id") is { } id && Ids.IsRoomId(id)).Select(r => (JsonNode)r.DeepClone()).ToArray()) };
        foreach (var key in new[] { "next_batch", "prev_batch" })
            if (ContentField.String(reply.Body, key) is { } token) answer[key] = token;
        if (reply.Body["total_room_count_estimate"] is JsonValue est && est.TryGetValue(out long n)) answer["total_room_count_estimate"] = n;
        return answer;
    }

    /// <summary>One page of this server's published rooms, largest first (also what other servers are answered).</summary>
    public JsonObject LocalDirectory(int? limit, string? since, string? term, HashSet<string?>? roomTypes)
    {
        var offset = 0;
        if (since is not null && (!since.StartsWith('p') || !int.TryParse(since.AsSpan(1), NumberStyles.None, CultureInfo.InvariantCulture, out offset)))
            throw Err.InvalidParam("Unknown 'since' token");

        List<JsonObject> all = [];
        foreach (var (k, _) in rooms.Store.Map(RoomsFamilies.Directory).Scan([]))
        {
            var roomId = System.Text.Encoding.UTF8.GetString(k);
            if (rooms.Info(roomId) is null) continue;
            var s = summaries.Summarise(roomId);
            if (roomTypes is not null && !roomTypes.Contains(s["room_type"]?.GetValue<string>())) continue;
            if (!string.IsNullOrWhiteSpace(term) && !Matches(s, term)) continue;
            s.Remove("room_version");
            s.Remove("encryption");
            s.Remove("allowed_room_ids");
            all.Add(s);
        }
        var ordered = all.OrderByDescending(s => s["num_joined_members"]!.GetValue<int>()).ThenBy(s => s["room_id"]!.GetValue<string>(), StringComparer.Ordinal).ToList();
        var take = limit ?? ordered.Count;
        var page = ordered.Skip(offset).Take(take).ToList();
        var body2 = new JsonObject
        {
            ["chunk"] = new JsonArray(page.Select(p => (JsonNode)p).ToArray()),
            ["total_room_count_estimate"] = ordered.Count,
        };
        if (offset + page.Count < ordered.Count && take > 0) body2["next_batch"] = $"p{offset + page.Count}";
        if (offset > 0) body2["prev_batch"] = $"p{Math.Max(0, offset - take)}";
        return body2;
    }

    /// <summary>Synapse's search: the term (case-insensitive) in the name, topic, canonical alias or room ID.</summary>
    static bool Matches(JsonObject s, string term)
        => new[] { "name", "topic", "canonical_alias", "room_id" }
            .Any(k => s[k]?.GetValue<string>().Contains(term.Trim(), StringComparison.OrdinalIgnoreCase) == true);
}

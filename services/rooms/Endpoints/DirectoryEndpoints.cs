using System.Globalization;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Appservices;
using Conduit.Common.Config;
using Conduit.Common.Http;
using Conduit.Common.Routing;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Conduit.Rooms;

/// <summary>
/// Which of the published rooms a /publicRooms request lists (Synapse's <c>network_tuple</c>): the main list (the
/// default), one application service network's list (<c>third_party_instance_id</c>, "{appservice id}|{network id}"
/// as <c>GET /thirdparty/protocols</c> names its instances), or every list (<c>include_all_networks</c>).
/// </summary>
public sealed record DirectoryNetwork(bool All, string? AppserviceId, string? NetworkId)
{
    public static readonly DirectoryNetwork Main = new(false, null, null);

    /// <summary>
    /// The one rule for the client and federation requests: <c>include_all_networks</c> wins (spec: the instance ID
    /// "can only be used if include_all_networks is false"); an instance ID without '|' is M_INVALID_PARAM.
    /// </summary>
    public static DirectoryNetwork Parse(bool includeAllNetworks, string? thirdPartyInstanceId)
    {
        if (includeAllNetworks) return new(true, null, null);
        if (thirdPartyInstanceId is null) return Main;
        var bar = thirdPartyInstanceId.IndexOf('|', StringComparison.Ordinal);
        if (bar <= 0 || bar == thirdPartyInstanceId.Length - 1) throw Err.InvalidParam("Invalid third_party_instance_id: expected the instance_id of a protocol instance from /thirdparty/protocols");
        return new(false, thirdPartyInstanceId[..bar], thirdPartyInstanceId[(bar + 1)..]);
    }

    /// <summary>The request body's fields for another server (nothing for the main list).</summary>
    public void AddTo(JsonObject body)
    {
        if (All) body["include_all_networks"] = true;
        else if (AppserviceId is not null) body["third_party_instance_id"] = AppserviceQueries.InstanceId(AppserviceId, NetworkId!);
    }
}

/// <summary>
/// The published room directory (spec: client-server-api, "Listing rooms"): GET and POST /publicRooms (the rooms
/// published here, largest first, then by room ID; a filter on name, topic, alias and room ID, and on room types;
/// offset pages; the main list, an application service network's or all of them: <see cref="DirectoryNetwork"/>),
/// GET/PUT /directory/list/room/{roomId}, and PUT/DELETE /directory/list/appservice/{networkId}/{roomId} (the
/// application service's own network lists, with its as_token only). Publishing or hiding a room in the main list
/// takes the power to set its canonical alias (Synapse asks the same of a room's moderators). `server` naming another
/// server asks that server's directory over federation.
/// </summary>
public sealed class DirectoryEndpoints(RoomStore rooms, RoomSummaries summaries, GlobalConfig config, RemoteServers remote)
{
    const int MaxLimit = 500;

    public void Map(IEndpointRouteBuilder app)
    {
        app.Map(RouteTable.PublicRooms, PublicRooms);
        app.Map(RouteTable.DirectoryListRoom, Visibility);
        app.Map(RouteTable.DirectoryListAppservice, AppserviceVisibility);
    }

    /// <summary>
    /// PUT (<c>visibility</c> public, the default as in Synapse, or private) and DELETE (private)
    /// /directory/list/appservice/{networkId}/{roomId} (spec: application-service-api, "Published room directories"):
    /// the caller's appservice's list for that network, so only an as_token may (403 otherwise, as Synapse). The
    /// network ID is the appservice's own name for it (an instance's network_id); it is not checked against anything.
    /// Publishing needs a room this server knows; one write either way.
    /// </summary>
    async Task AppserviceVisibility(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        if (c.AppserviceId is not { } appservice || config.Appservices().All(a => a.Id != appservice))
            throw Err.Forbidden("Only application services can edit their published room lists");
        var roomId = RoomParams.RoomId(ctx);
        var networkId = ctx.Route("networkId");
        var visibility = "private";
        if (HttpMethods.IsPut(ctx.Request.Method))
        {
            var body = await ctx.Request.ReadJsonObjectAsync();
            visibility = body.OptString("visibility") ?? "public";
            if (visibility is not ("public" or "private")) throw Err.InvalidParam("'visibility' must be public or private");
        }
        if (visibility == "public" && rooms.Info(roomId) is null) throw Err.NotFound("Unknown room");
        rooms.SetAppserviceDirectoryVisibility(roomId, appservice, networkId, visibility == "public");
        await ctx.Response.WriteJsonAsync(new JsonObject());
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
        DirectoryNetwork network;
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
            network = DirectoryNetwork.Parse(body.OptBool("include_all_networks") ?? false, body.OptString("third_party_instance_id"));
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
            // Not in the spec's GET, but the same meaning as in POST's body (and federation's GET).
            network = DirectoryNetwork.Parse(ctx.Request.QueryBool("include_all_networks") ?? false, ctx.Request.Query("third_party_instance_id"));
        }
        if (!string.IsNullOrEmpty(server) && server != config.ServerName)
        {
            await ctx.Response.WriteJsonAsync(await RemoteDirectoryAsync(server, limit, since, term, roomTypes, network, ctx.RequestAborted));
            return;
        }
        await ctx.Response.WriteJsonAsync(LocalDirectory(limit, since, term, roomTypes, network));
    }

    /// <summary>Another server's published rooms (spec: server-server-api, "Public Room Directory"); what it answers is passed on if it has the shape of a directory page.</summary>
    async Task<JsonObject> RemoteDirectoryAsync(string server, int? limit, string? since, string? term, HashSet<string?>? roomTypes, DirectoryNetwork network, CancellationToken ct)
    {
        if (!config.AllowFederation || !Ids.IsValidServerName(server)) throw Err.NotFound("Unknown server");
        var body = new JsonObject();
        network.AddTo(body);
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

    /// <summary>One page of this server's published rooms of <paramref name="network"/>, largest first (also what
    /// other servers are answered).</summary>
    public JsonObject LocalDirectory(int? limit, string? since, string? term, HashSet<string?>? roomTypes, DirectoryNetwork network)
    {
        var offset = 0;
        if (since is not null && (!since.StartsWith('p') || !int.TryParse(since.AsSpan(1), NumberStyles.None, CultureInfo.InvariantCulture, out offset)))
            throw Err.InvalidParam("Unknown 'since' token");

        List<JsonObject> all = [];
        foreach (var roomId in PublishedRooms(network))
        {
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

    /// <summary>The room IDs published in <paramref name="network"/>'s list (for all networks, each room once).</summary>
    IEnumerable<string> PublishedRooms(DirectoryNetwork network)
    {
        var main = network.AppserviceId is null
            ? rooms.Store.Map(RoomsFamilies.Directory).Scan([]).Select(e => System.Text.Encoding.UTF8.GetString(e.Key))
            : [];
        var bridged = network.All || network.AppserviceId is not null
            ? rooms.AppserviceDirectoryEntries().Where(e => network.All || (e.AppserviceId == network.AppserviceId && e.NetworkId == network.NetworkId)).Select(e => e.RoomId)
            : [];
        return main.Concat(bridged).Distinct(StringComparer.Ordinal);
    }

    /// <summary>Synapse's search: the term (case-insensitive) in the name, topic, canonical alias or room ID.</summary>
    static bool Matches(JsonObject s, string term)
        => new[] { "name", "topic", "canonical_alias", "room_id" }
            .Any(k => s[k]?.GetValue<string>().Contains(term.Trim(), StringComparison.OrdinalIgnoreCase) == true);
}

using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Admin;
using Conduit.Common.Config;
using Conduit.Common.Events;
using Conduit.Common.Http;
using Conduit.Common.Routing;
using Conduit.Rooms.Rules;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Conduit.Rooms;

/// <summary>
/// The rooms part of Synapse's admin API (element-hq.github.io/synapse, "Rooms", "Delete Room API", "Block Room API",
/// "Purge History API"), for server admins only (<see cref="Caller.Admin"/>): the rooms this server has, one room, its
/// members and state, blocking, deleting a room, and purging its history. A deletion (v2; done before the answer, so
/// its status is complete at once) makes every local member leave (joined, invited or knocking: a leave each, sent as
/// that user, so other servers and clients see it as usual), removes the room's local aliases and its directory entry,
/// and, with <c>block</c>, blocks it: no local user may join, knock on or be invited into a blocked room. With
/// <c>purge</c> (true unless false, as in Synapse) the room's events, state and memberships are then deleted from
/// storage (<see cref="RoomPurger.PurgeRoomAsync"/>): the room is unknown here from then on, except its blocked flag;
/// a remote join may bring it back unless it is blocked. <c>new_room_user_id</c> (a room to move the members to) is
/// not supported. A history purge (<see cref="RoomPurger.PurgeHistoryAsync"/>) is done before the answer too: its
/// status is <c>complete</c> (or <c>failed</c>, with <c>error</c>) at once.
/// Also Synapse's fetch_event (any stored event, PDU format with unsigned), and Conduit's own: an event's whole auth
/// chain, and taking a room off federation (Conduit's disable-room: its events are not sent, and other servers' PDUs,
/// EDUs and requests about it are refused; local users keep using it).
/// </summary>
public sealed class AdminRoomEndpoints(RoomStore rooms, EventSender sender, RoomPurger purger, ClientEvents format, GlobalConfig config)
{
    /// <summary>Deletion statuses by delete_id, kept in memory (a day in Synapse; here until the process restarts, at most 1,000).</summary>
    readonly ConcurrentDictionary<string, JsonObject> _deletions = new();

    /// <summary>History purge statuses by purge_id, kept in memory the same way (at most 1,000).</summary>
    readonly ConcurrentDictionary<string, JsonObject> _purges = new();

    public void Map(IEndpointRouteBuilder app)
    {
        app.Map(RouteTable.AdminRooms, ListRooms);
        app.Map(RouteTable.AdminRoom, RoomDetails);
        app.Map(RouteTable.AdminRoomMembers, Members);
        app.Map(RouteTable.AdminRoomState, State);
        app.Map(RouteTable.AdminRoomBlock, Block);
        app.Map(RouteTable.AdminRoomDelete, Delete);
        app.Map(RouteTable.AdminRoomDeleteStatus, RoomDeleteStatus);
        app.Map(RouteTable.AdminDeleteStatus, DeleteStatus);
        app.Map(RouteTable.AdminPurgeHistory, PurgeHistory);
        app.Map(RouteTable.AdminPurgeHistoryToEvent, PurgeHistory);
        app.Map(RouteTable.AdminPurgeHistoryStatus, PurgeHistoryStatus);
        app.Map(RouteTable.AdminFetchEvent, FetchEvent);
        app.Map(RouteTable.AdminAuthChain, AuthChain);
        app.Map(RouteTable.AdminRoomFederation, RoomFederation);
    }

    /// <summary>The admin room (<see cref="AdminBot"/>) is never deleted or blocked: the server would lose its admin room.</summary>
    void NotTheAdminRoom(string roomId)
    {
        if (rooms.AliasTarget(AdminBot.RoomAlias(config.ServerName)) == roomId)
            throw Err.Forbidden("This is the server's admin room: it cannot be deleted or blocked");
    }

    string KnownRoom(HttpContext ctx)
    {
        var roomId = ctx.Route("roomId");
        if (!Ids.IsRoomId(roomId)) throw Err.InvalidParam("Not a room ID");
        if (rooms.Info(roomId)?["state_group"] is null) throw Err.NotFound("Room not found");
        return roomId;
    }

    /// <summary>A room as the admin API lists it (Synapse's fields).</summary>
    JsonObject Describe(string roomId, bool details)
    {
        string? Str(string type, string key) => ContentField.String(rooms.StateContent(roomId, type), key);
        var joined = rooms.JoinedMembers(roomId).ToList();
        var create = rooms.StateEvent(roomId, "m.room.create", "");
        var o = new JsonObject
        {
            ["room_id"] = roomId,
            ["name"] = Str("m.room.name", "name"),
            ["canonical_alias"] = Str("m.room.canonical_alias", "alias"),
            ["joined_members"] = joined.Count,
            ["joined_local_members"] = joined.Count(u => Ids.ServerOf(u) == config.ServerName),
            ["version"] = rooms.VersionOf(roomId)?.Id,
            ["creator"] = ContentField.String(create?.Content, "creator") ?? create?.Sender,
            ["encryption"] = Str("m.room.encryption", "algorithm"),
            ["federatable"] = create?.Content["m.federate"] is not JsonValue f || !f.TryGetValue(out bool fed) || fed,
            ["public"] = rooms.IsPublished(roomId),
            ["join_rules"] = JoinRule.Of(rooms.StateContent(roomId, "m.room.join_rules")),
            ["guest_access"] = Str("m.room.guest_access", "guest_access"),
            ["history_visibility"] = HistoryVisibility.Of(rooms.StateContent(roomId, "m.room.history_visibility")),
            ["state_events"] = rooms.CurrentState(roomId).Count,
            ["room_type"] = ContentField.String(create?.Content, "type"),
        };
        if (details)
        {
            o["avatar"] = Str("m.room.avatar", "url");
            o["topic"] = Str("m.room.topic", "topic");
            o["forgotten"] = false;
            o["blocked"] = rooms.Blocked(roomId) is not null;
        }
        return o;
    }

    // ---- GET /_synapse/admin/v1/rooms: from, limit (default 100), order_by, dir, search_term

    async Task ListRooms(HttpContext ctx)
    {
        Caller.Admin(ctx);
        var from = (int)ctx.Request.QueryLong("from", 0, 0, int.MaxValue);
        var limit = (int)ctx.Request.QueryLong("limit", 100, 0, int.MaxValue);
        var forwards = ctx.Request.QueryForwards();
        var term = ctx.Request.Query("search_term");
        var all = rooms.AllRoomIds().Select(r => Describe(r, details: false))
            .Where(r => term is null || new[] { "room_id", "name", "canonical_alias" }.Any(k => r[k]?.GetValue<string>().Contains(term, StringComparison.OrdinalIgnoreCase) == true))
            .ToList();
        var orderBy = ctx.Request.Query("order_by") ?? "name";
        Func<JsonObject, IComparable?> key = orderBy switch
        {
            "name" => r => r["name"]?.GetValue<string>() ?? "",
            "canonical_alias" => r => r["canonical_alias"]?.GetValue<string>() ?? "",
            "joined_members" or "size" => r => r["joined_members"]!.GetValue<int>(),
            "joined_local_members" => r => r["joined_local_members"]!.GetValue<int>(),
            "version" => r => r["version"]?.GetValue<string>() ?? "",
            "creator" => r => r["creator"]?.GetValue<string>() ?? "",
            "encryption" => r => r["encryption"]?.GetValue<string>() ?? "",
            "state_events" => r => r["state_events"]!.GetValue<int>(),
            "join_rules" => r => r["join_rules"]?.GetValue<string>() ?? "",
            "history_visibility" => r => r["history_visibility"]?.GetValue<string>() ?? "",
            "public" => r => r["public"]!.GetValue<bool>(),
            "federatable" => r => r["federatable"]!.GetValue<bool>(),
            _ => throw Err.InvalidParam($"Unknown order_by '{orderBy}'"),
        };
        // Synapse's default for the size orders is largest first; dir=b reverses whatever the order is.
        var ordered = all.OrderBy(key).ThenBy(r => r["room_id"]!.GetValue<string>(), StringComparer.Ordinal).ToList();
        if ((orderBy is "joined_members" or "size" or "joined_local_members" or "state_events") ^ !forwards) ordered.Reverse();
        var page = ordered.Skip(from).Take(limit).ToList();
        var answer = new JsonObject
        {
            ["rooms"] = new JsonArray(page.Select(r => (JsonNode)r).ToArray()),
            ["offset"] = from,
            ["total_rooms"] = ordered.Count,
        };
        if (from + page.Count < ordered.Count) answer["next_batch"] = from + page.Count;
        if (from > 0) answer["prev_batch"] = Math.Max(0, from - limit);
        await ctx.Response.WriteJsonAsync(answer);
    }

    async Task RoomDetails(HttpContext ctx)
    {
        Caller.Admin(ctx);
        await ctx.Response.WriteJsonAsync(Describe(KnownRoom(ctx), details: true));
    }

    async Task Members(HttpContext ctx)
    {
        Caller.Admin(ctx);
        var members = rooms.JoinedMembers(KnownRoom(ctx)).Order(StringComparer.Ordinal).ToList();
        await ctx.Response.WriteJsonAsync(new JsonObject { ["members"] = new JsonArray(members.Select(m => (JsonNode)m).ToArray()), ["total"] = members.Count });
    }

    async Task State(HttpContext ctx)
    {
        Caller.Admin(ctx);
        var roomId = KnownRoom(ctx);
        var state = rooms.CurrentState(roomId).Values.Select(rooms.Event).OfType<StoredEvent>().Select(e => (JsonNode)format.Format(e)).ToArray();
        await ctx.Response.WriteJsonAsync(new JsonObject { ["state"] = new JsonArray(state) });
    }

    // ---- GET/PUT /_synapse/admin/v1/rooms/{roomId}/block (a room need not be known here to be blocked)
    //      GET/PUT /_conduit/admin/v1/rooms/{roomId}/federation {"disabled"} (likewise)

    Task Block(HttpContext ctx) => RoomFlag(ctx, "block", rooms.Blocked, rooms.SetBlocked);

    Task RoomFederation(HttpContext ctx) => RoomFlag(ctx, "disabled", rooms.FederationDisabled, rooms.SetFederationDisabled);

    /// <summary>An admin's flag on a room: PUT <c>{field: bool}</c> sets or clears it, GET says whether it is set and by whom.</summary>
    async Task RoomFlag(HttpContext ctx, string field, Func<string, JsonObject?> get, Action<string, string?> set)
    {
        var c = Caller.Admin(ctx);
        var roomId = ctx.Route("roomId");
        if (!Ids.IsRoomId(roomId)) throw Err.InvalidParam("Not a room ID");
        if (HttpMethods.IsPut(ctx.Request.Method))
        {
            var body = await ctx.Request.ReadJsonObjectAsync();
            if (body[field] is not JsonValue v || !v.TryGetValue(out bool on)) throw Err.BadJson($"{field} must be a boolean");
            if (on && field == "block") NotTheAdminRoom(roomId);
            set(roomId, on ? c.UserId : null);
            await ctx.Response.WriteJsonAsync(new JsonObject { [field] = on });
            return;
        }
        var flag = get(roomId);
        var answer = new JsonObject { [field] = flag is not null };
        if (flag?["user_id"] is { } by) answer["user_id"] = by.DeepClone();
        await ctx.Response.WriteJsonAsync(answer);
    }

    // ---- GET /_synapse/admin/v1/fetch_event/{eventId}, GET /_conduit/admin/v1/events/{eventId}/auth_chain

    StoredEvent KnownEvent(HttpContext ctx)
    {
        var eventId = ctx.Route("eventId");
        if (!Ids.IsEventId(eventId)) throw Err.InvalidParam("Not an event ID");
        return rooms.Event(eventId) ?? throw Err.NotFound("Event not found");
    }

    /// <summary>The event as stored (redacted if it was), PDU format with its event_id and the unsigned a client would get.</summary>
    async Task FetchEvent(HttpContext ctx)
    {
        Caller.Admin(ctx);
        var e = KnownEvent(ctx);
        var pdu = e.Meta["redacted_by"] is null ? e.Pdu.DeepClone().AsObject() : Redaction.Redact(e.Pdu, rooms.VersionOf(e.RoomId) ?? RoomVersion.V11);
        if (!pdu.ContainsKey("event_id")) pdu["event_id"] = e.EventId;
        var unsigned = pdu["unsigned"] as JsonObject ?? [];
        foreach (var (k, v) in format.Format(e)["unsigned"]!.AsObject()) unsigned[k] = v?.DeepClone();
        pdu["unsigned"] = unsigned;
        await ctx.Response.WriteJsonAsync(new JsonObject { ["event"] = pdu });
    }

    /// <summary>Conduit's get-auth-chain: the event's full auth chain (events held here), nearest first, and how long it took.</summary>
    async Task AuthChain(HttpContext ctx)
    {
        Caller.Admin(ctx);
        var e = KnownEvent(ctx);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var chain = rooms.AuthChain(e.EventId);
        var elapsed = clock.ElapsedMilliseconds;
        await ctx.Response.WriteJsonAsync(new JsonObject
        {
            ["auth_chain"] = new JsonArray([.. chain.Select(id => (JsonNode)id)]),
            ["count"] = chain.Count,
            ["elapsed_ms"] = elapsed,
        });
    }

    // ---- DELETE /_synapse/admin/v2/rooms/{roomId}

    async Task Delete(HttpContext ctx)
    {
        var c = Caller.Admin(ctx);
        var roomId = ctx.Route("roomId");
        if (!Ids.IsRoomId(roomId)) throw Err.InvalidParam("Not a room ID");
        NotTheAdminRoom(roomId);
        var body = await Body(ctx);
        var block = Flag(body, "block", false);
        var purge = Flag(body, "purge", true);
        if (body["new_room_user_id"] is not null) throw new MatrixException("M_UNRECOGNIZED", 400, "new_room_user_id (moving the members to a new room) is not supported");
        var known = rooms.Info(roomId)?["state_group"] is not null;
        if (!known && !block) throw Err.NotFound("Room not found");

        if (block) rooms.SetBlocked(roomId, c.UserId);
        var kicked = new JsonArray();
        var failed = new JsonArray();
        if (known)
            foreach (var (userId, membership) in rooms.Members(roomId).ToList())
            {
                if (Ids.ServerOf(userId) != config.ServerName || membership is not ("join" or "invite" or "knock")) continue;
                try
                {
                    await sender.SendAsync(roomId, userId, [new NewEvent("m.room.member", userId, new JsonObject { ["membership"] = "leave" })], null, ctx.RequestAborted);
                    kicked.Add((JsonNode)userId);
                }
                catch (MatrixException)
                {
                    failed.Add((JsonNode)userId);
                }
            }
        var aliases = new JsonArray();
        foreach (var alias in rooms.AliasesOf(roomId).ToList())
        {
            rooms.DeleteAlias(alias, roomId);
            aliases.Add((JsonNode)alias);
        }
        rooms.UnpublishEverywhere(roomId);
        var purged = false;
        var error = "";
        if (purge && rooms.Info(roomId) is not null)
        {
            try
            {
                await purger.PurgeRoomAsync(roomId, ctx.RequestAborted);
                purged = true;
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                error = "Purging the room failed: " + e.Message;
            }
        }

        var deleteId = Ids.Random(16);
        if (_deletions.Count >= 1000) _deletions.Clear();
        _deletions[deleteId] = new JsonObject
        {
            ["delete_id"] = deleteId,
            ["room_id"] = roomId,
            ["status"] = error.Length == 0 ? "complete" : "failed",
            ["purged"] = purged,
            ["error"] = error,
            ["shutdown_room"] = new JsonObject { ["kicked_users"] = kicked, ["failed_to_kick_users"] = failed, ["local_aliases"] = aliases, ["new_room_id"] = null },
        };
        await ctx.Response.WriteJsonAsync(new JsonObject { ["delete_id"] = deleteId });
    }

    async Task RoomDeleteStatus(HttpContext ctx)
    {
        Caller.Admin(ctx);
        var roomId = ctx.Route("roomId");
        var results = _deletions.Values.Where(d => d["room_id"]!.GetValue<string>() == roomId).Select(d => (JsonNode)Status(d)).ToArray();
        if (results.Length == 0) throw Err.NotFound("No delete task for room");
        await ctx.Response.WriteJsonAsync(new JsonObject { ["results"] = new JsonArray(results) });
    }

    async Task DeleteStatus(HttpContext ctx)
    {
        Caller.Admin(ctx);
        if (!_deletions.TryGetValue(ctx.Route("deleteId"), out var d)) throw Err.NotFound("No delete task");
        await ctx.Response.WriteJsonAsync(Status(d));
    }

    static async Task<JsonObject> Body(HttpContext ctx) => ctx.Request.ContentLength is 0 ? new JsonObject() : await ctx.Request.ReadJsonObjectAsync();

    static bool Flag(JsonObject body, string name, bool fallback) => body[name] switch
    {
        null => fallback,
        JsonValue v when v.TryGetValue(out bool b) => b,
        _ => throw Err.BadJson($"{name} must be a boolean"),
    };

    // ---- POST /_synapse/admin/v1/purge_history/{roomId}[/{eventId}], GET /_synapse/admin/v1/purge_history_status/{purgeId}

    async Task PurgeHistory(HttpContext ctx)
    {
        Caller.Admin(ctx);
        var roomId = KnownRoom(ctx);
        var body = await Body(ctx);
        var deleteLocal = Flag(body, "delete_local_events", false);
        var eventId = ctx.Request.RouteValues.ContainsKey("eventId") ? ctx.Route("eventId") : null;
        if (eventId is null && body["purge_up_to_event_id"] is { } given)
            eventId = given is JsonValue v && v.TryGetValue(out string? id) ? id : throw Err.BadJson("purge_up_to_event_id must be a string");
        long ts = 0;
        if (eventId is not null)
        {
            var e = rooms.Event(eventId) ?? throw Err.NotFound("Event not found");
            if (e.RoomId != roomId) throw Err.InvalidParam("Event is for another room");
            if (!e.InTimeline) throw Err.InvalidParam("Event is not in the room's timeline");
        }
        else if (body["purge_up_to_ts"] is null) throw Err.BadJson("Give purge_up_to_ts, purge_up_to_event_id or an event ID in the path");
        else if (body["purge_up_to_ts"] is not JsonValue t || !t.TryGetValue(out ts)) throw Err.BadJson("purge_up_to_ts must be an integer");
        else if (ts < 0) throw Err.InvalidParam("purge_up_to_ts must not be negative");

        var status = new JsonObject { ["status"] = "complete" };
        try
        {
            var result = await purger.PurgeHistoryAsync(roomId, eventId, ts, deleteLocal, ctx.RequestAborted);
            if (result is null && eventId is null) throw Err.NotFound("There is no event to be purged");
        }
        catch (Exception e) when (e is not MatrixException and not OperationCanceledException)
        {
            status = new JsonObject { ["status"] = "failed", ["error"] = e.Message };
        }
        var purgeId = Ids.Random(16);
        if (_purges.Count >= 1000) _purges.Clear();
        _purges[purgeId] = status;
        await ctx.Response.WriteJsonAsync(new JsonObject { ["purge_id"] = purgeId });
    }

    async Task PurgeHistoryStatus(HttpContext ctx)
    {
        Caller.Admin(ctx);
        if (!_purges.TryGetValue(ctx.Route("purgeId"), out var status)) throw Err.NotFound("No purge task");
        await ctx.Response.WriteJsonAsync(status.DeepClone());
    }

    static JsonObject Status(JsonObject d)
    {
        var o = d.DeepClone().AsObject();
        o.Remove("purged");
        return o;
    }
}

using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Events;
using Conduit.Common.Http;
using Conduit.Common.Routing;
using Conduit.Protos.Keys;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Conduit.Rooms;

/// <summary>The rooms service's Matrix endpoints.</summary>
public sealed class RoomsEndpoints(RoomStore rooms, StateStore states, EventSender sender, ClientEvents format, Visibility visibility, GlobalConfig config, Keys.KeysClient keys)
{
    public void Map(IEndpointRouteBuilder app)
    {
        app.Map(RouteTable.CreateRoom, CreateRoom);
        app.Map(RouteTable.JoinByIdOrAlias, JoinByIdOrAlias);
        app.Map(RouteTable.Membership, MembershipAction);
        app.Map(RouteTable.JoinedRooms, JoinedRooms);
        app.Map(RouteTable.Send, Send);
        app.Map(RouteTable.StateEvent, StateEvent);
        app.Map(RouteTable.StateEventNoKey, StateEvent);
        app.Map(RouteTable.State, FullState);
        app.Map(RouteTable.Event, GetEvent);
        app.Map(RouteTable.Context, Context);
        app.Map(RouteTable.Messages, Messages);
        app.Map(RouteTable.Members, Members);
        app.Map(RouteTable.JoinedMembers, JoinedMembers);
        app.Map(RouteTable.Redact, Redact);
        app.Map(RouteTable.Alias, AliasEndpoint);
        app.Map(RouteTable.RoomAliases, RoomAliases);
    }

    static Caller Auth(HttpContext ctx) => Caller.Required(ctx);

    string RoomIdParam(HttpContext ctx)
    {
        var id = ctx.Route("roomId");
        if (!Ids.IsRoomId(id)) throw Err.InvalidParam("Invalid room ID");
        return id;
    }

    void RequireRoom(string roomId)
    {
        if (rooms.Info(roomId) is null) throw Err.NotFound("Unknown room");
    }


    // ---- createRoom (spec: client-server-api, "Creation")

    async Task CreateRoom(HttpContext ctx)
    {
        var c = Auth(ctx);
        var body = await ctx.Request.ReadJsonObjectAsync();
        var versionId = body.OptString("room_version") ?? config.DefaultRoomVersion;
        var version = RoomVersion.Find(versionId) ?? throw Err.UnsupportedRoomVersion($"Room version {versionId} is not supported here");
        var preset = body.OptString("preset") ?? (body.OptString("visibility") == "public" ? "public_chat" : "private_chat");
        if (preset is not ("public_chat" or "private_chat" or "trusted_private_chat")) throw Err.BadJson("Unknown preset");
        var visibilityParam = body.OptString("visibility") ?? "private";
        if (visibilityParam is not ("public" or "private")) throw Err.BadJson("visibility must be 'public' or 'private'");
        var isDirect = body.OptBool("is_direct") ?? false;
        var invites = (body.OptArray("invite") ?? []).Select(n => n is JsonValue v && v.TryGetValue<string>(out var s) && Ids.IsUserId(s) ? s : throw Err.InvalidParam("invite must list user IDs")).Distinct().ToList();

        string? alias = null;
        if (body.OptString("room_alias_name") is { } aliasName)
        {
            if (aliasName.Length == 0 || aliasName.Contains(':') || aliasName.Any(char.IsWhiteSpace)) throw Err.InvalidParam("Invalid room_alias_name");
            alias = $"#{aliasName}:{config.ServerName}";
            if (rooms.AliasTarget(alias) is not null) throw Err.RoomInUse();
        }
        foreach (var invitee in invites)
            if (AuthRules.IsLocal(invitee, config.ServerName)) await RequireLocalUser(invitee, ctx.RequestAborted);

        // v12: the room ID is derived from the create event, so EventSender computes it ("" here).
        var roomId = version.RoomIdFromCreateEvent ? "" : $"!{Ids.Random(18)}:{config.ServerName}";
        var events = new List<NewEvent>();
        events.Add(new NewEvent("m.room.create", "", CreateContent(body, version, c.UserId, preset, invites)));
        events.Add(new NewEvent("m.room.member", c.UserId, await MemberContent(c.UserId, "join", ctx.RequestAborted)));

        // v12 creators have infinite power and may not be listed in users (client-server-api "Creation", step 3).
        var users = new JsonObject();
        if (!version.PrivilegedCreators)
        {
            users[c.UserId] = 100;
            if (preset == "trusted_private_chat") foreach (var i in invites) users[i] = 100;
        }
        var pl = new JsonObject
        {
            ["users"] = users,
            ["users_default"] = 0,
            ["events"] = new JsonObject
            {
                ["m.room.name"] = 50, ["m.room.power_levels"] = 100, ["m.room.history_visibility"] = 100,
                ["m.room.canonical_alias"] = 50, ["m.room.avatar"] = 50,
                // v12: above every non-creator's reach (client-server-api "Creation", step 3).
                ["m.room.tombstone"] = version.PrivilegedCreators ? 150 : 100,
                ["m.room.server_acl"] = 100, ["m.room.encryption"] = 100,
            },
            ["events_default"] = 0,
            ["state_default"] = 50,
            ["ban"] = 50, ["kick"] = 50, ["redact"] = 50, ["invite"] = 0,
            ["historical"] = 100,
            ["notifications"] = new JsonObject { ["room"] = 50 },
        };
        if (body.OptObject("power_level_content_override") is { } plo)
            foreach (var (k, v) in plo) pl[k] = v?.DeepClone();
        events.Add(new NewEvent("m.room.power_levels", "", pl));
        if (alias is not null) events.Add(new NewEvent("m.room.canonical_alias", "", new JsonObject { ["alias"] = alias }));
        events.Add(new NewEvent("m.room.join_rules", "", new JsonObject { ["join_rule"] = preset == "public_chat" ? "public" : "invite" }));
        events.Add(new NewEvent("m.room.history_visibility", "", new JsonObject { ["history_visibility"] = "shared" }));
        if (preset != "public_chat") events.Add(new NewEvent("m.room.guest_access", "", new JsonObject { ["guest_access"] = "can_join" }));
        foreach (var n in body.OptArray("initial_state") ?? [])
        {
            if (n is not JsonObject st) throw Err.BadJson("initial_state entries must be objects");
            var type = st.ReqString("type");
            if (type is "m.room.create" or "m.room.member") throw Err.BadJson($"initial_state may not contain {type}");
            events.Add(new NewEvent(type, st.OptString("state_key") ?? "", st.OptObject("content") ?? throw Err.MissingParam("initial_state content")));
        }
        if (body.OptString("name") is { } name) events.Add(new NewEvent("m.room.name", "", new JsonObject { ["name"] = name }));
        if (body.OptString("topic") is { } topic) events.Add(new NewEvent("m.room.topic", "", new JsonObject { ["topic"] = topic }));
        foreach (var i in invites)
        {
            var content = await InviteContent(i, ctx.RequestAborted);
            if (isDirect) content["is_direct"] = true;
            events.Add(new NewEvent("m.room.member", i, content));
        }

        roomId = (await sender.SendAsync(roomId, c.UserId, events, null, ctx.RequestAborted))[0].RoomId;
        if (alias is not null) rooms.PutAlias(alias, roomId, c.UserId);
        if (visibilityParam == "public") rooms.SetDirectoryVisibility(roomId, true);
        await ctx.Response.WriteJsonAsync(new JsonObject { ["room_id"] = roomId });
    }

    /// <summary>
    /// m.room.create content: creation_content with room_version (and, v1-v10, creator) overwritten; in v12 the
    /// invitees of trusted_private_chat join additional_creators (client-server-api "Creation", creation_content).
    /// </summary>
    static JsonObject CreateContent(JsonObject body, RoomVersion version, string creator, string preset, List<string> invites)
    {
        var create = body.OptObject("creation_content")?.DeepClone().AsObject() ?? new JsonObject();
        create["room_version"] = version.Id;
        if (version.CreatorInCreateContent) create["creator"] = creator;
        else create.Remove("creator");
        if (version.PrivilegedCreators)
        {
            var additional = new List<string>();
            if (create["additional_creators"] is { } given)
            {
                if (given is not JsonArray arr) throw Err.BadJson("additional_creators must be an array of user IDs");
                foreach (var n in arr)
                    additional.Add(n is JsonValue v && v.TryGetValue<string>(out var s) && Ids.IsUserId(s) ? s : throw Err.BadJson("additional_creators must be an array of user IDs"));
            }
            if (preset == "trusted_private_chat") additional.AddRange(invites);
            additional = additional.Where(u => u != creator).Distinct().ToList();
            if (additional.Count > 0) create["additional_creators"] = new JsonArray(additional.Select(u => (JsonNode)u).ToArray());
            else create.Remove("additional_creators");
        }
        return create;
    }

    async Task RequireLocalUser(string userId, CancellationToken ct)
    {
        var p = await keys.GetProfileAsync(new GetProfileRequest { UserId = userId }, cancellationToken: ct);
        if (p.Deactivated) throw Err.NotFound($"User {userId} is deactivated");
    }

    async Task<JsonObject> MemberContent(string userId, string membership, CancellationToken ct)
    {
        var content = new JsonObject { ["membership"] = membership };
        if (AuthRules.IsLocal(userId, config.ServerName))
        {
            var p = await keys.GetProfileAsync(new GetProfileRequest { UserId = userId }, cancellationToken: ct);
            if (p.HasDisplayname) content["displayname"] = p.Displayname;
            if (p.HasAvatarUrl) content["avatar_url"] = p.AvatarUrl;
        }
        return content;
    }

    async Task<JsonObject> InviteContent(string userId, CancellationToken ct)
    {
        if (AuthRules.IsLocal(userId, config.ServerName)) await RequireLocalUser(userId, ct);
        else throw Err.Forbidden("Inviting users of other servers needs federation, which is not enabled yet");
        return await MemberContent(userId, "invite", ct);
    }

    // ---- membership

    async Task JoinByIdOrAlias(HttpContext ctx)
    {
        var c = Auth(ctx);
        var target = ctx.Route("roomIdOrAlias");
        var body = await ctx.Request.ReadJsonObjectAsync();
        string roomId;
        if (target.StartsWith('#'))
            roomId = rooms.AliasTarget(target) ?? throw Err.NotFound("Room alias not found");
        else if (Ids.IsRoomId(target)) roomId = target;
        else throw Err.InvalidParam("Expected a room ID or alias");
        await Join(ctx, c, roomId, body);
    }

    async Task Join(HttpContext ctx, Caller c, string roomId, JsonObject body)
    {
        if (rooms.Info(roomId) is null) throw Err.NotFound("Room not found (joining over federation is not enabled yet)");
        if (rooms.MembershipOf(c.UserId, roomId)?.State != "join")
        {
            var content = await MemberContent(c.UserId, "join", ctx.RequestAborted);
            if (body.OptString("reason") is { } reason) content["reason"] = reason;
            RestrictedJoin.Authorise(rooms, config.ServerName, roomId, c.UserId, content);
            await sender.SendAsync(roomId, c.UserId, [new NewEvent("m.room.member", c.UserId, content)], null, ctx.RequestAborted);
        }
        await ctx.Response.WriteJsonAsync(new JsonObject { ["room_id"] = roomId });
    }

    async Task MembershipAction(HttpContext ctx)
    {
        var c = Auth(ctx);
        var roomId = RoomIdParam(ctx);
        var action = ctx.Route("action");
        var body = await ctx.Request.ReadJsonObjectAsync();
        if (action == "join")
        {
            await Join(ctx, c, roomId, body);
            return;
        }
        if (action == "forget")
        {
            var m = rooms.MembershipOf(c.UserId, roomId);
            if (m is null) throw Err.NotFound("You were never in this room");
            if (m.State is "join" or "invite" or "knock") throw Err.Unknown("Leave the room before forgetting it");
            rooms.Forget(c.UserId, roomId);
            await ctx.Response.WriteJsonAsync(new JsonObject());
            return;
        }
        RequireRoom(roomId);
        string target, membership;
        JsonObject content;
        if (action == "leave")
        {
            target = c.UserId;
            membership = "leave";
            if (rooms.MembershipOf(c.UserId, roomId) is null) throw Err.Forbidden("You are not in this room");
            content = new JsonObject { ["membership"] = "leave" };
        }
        else
        {
            target = body.ReqString("user_id");
            if (!Ids.IsUserId(target)) throw Err.InvalidParam("Invalid user_id");
            membership = action switch { "invite" => "invite", "kick" => "leave", "ban" => "ban", _ => "leave" };
            if (action == "unban" && rooms.MembershipOf(target, roomId)?.State != "ban") throw Err.Forbidden("The user is not banned");
            if (action == "kick" && rooms.MembershipOf(target, roomId)?.State is not ("join" or "invite" or "knock"))
                throw Err.Forbidden("The user is not in the room");
            if (action == "invite" && rooms.MembershipOf(target, roomId)?.State == "invite")
            {
                await ctx.Response.WriteJsonAsync(new JsonObject());
                return;
            }
            content = action == "invite" ? await InviteContent(target, ctx.RequestAborted) : new JsonObject { ["membership"] = membership };
        }
        if (body.OptString("reason") is { } reason) content["reason"] = reason;
        await sender.SendAsync(roomId, c.UserId, [new NewEvent("m.room.member", target, content)], null, ctx.RequestAborted);
        await ctx.Response.WriteJsonAsync(new JsonObject());
    }

    async Task JoinedRooms(HttpContext ctx)
    {
        var c = Auth(ctx);
        var ids = rooms.RoomsOf(c.UserId).Where(r => r.M.State == "join").Select(r => (JsonNode)r.RoomId).ToArray();
        await ctx.Response.WriteJsonAsync(new JsonObject { ["joined_rooms"] = new JsonArray(ids) });
    }

    // ---- events

    async Task Send(HttpContext ctx)
    {
        var c = Auth(ctx);
        var roomId = RoomIdParam(ctx);
        var type = ctx.Route("eventType");
        var txnId = ctx.Route("txnId");
        var content = await ctx.Request.ReadJsonObjectAsync();
        RequireRoom(roomId);
        var txn = new TxnRef(c.UserId, c.DeviceId, txnId);
        var sent = await sender.SendAsync(roomId, c.UserId, [new NewEvent(type, null, content)], txn, ctx.RequestAborted);
        await ctx.Response.WriteJsonAsync(new JsonObject { ["event_id"] = sent[0].EventId });
    }

    async Task StateEvent(HttpContext ctx)
    {
        var c = Auth(ctx);
        var roomId = RoomIdParam(ctx);
        var type = ctx.Route("eventType");
        var stateKey = ctx.Route("stateKey");
        RequireRoom(roomId);
        if (HttpMethods.IsGet(ctx.Request.Method))
        {
            var ev = visibility.VisibleStateEvent(c.UserId, roomId, type, stateKey) ?? throw Err.NotFound("State event not found");
            var formatted = format.Format(ev);
            if (ctx.Request.Query("format") == "event") await ctx.Response.WriteJsonAsync(formatted);
            else await ctx.Response.WriteJsonAsync(formatted["content"]!.DeepClone());
            return;
        }
        var content = await ctx.Request.ReadJsonObjectAsync();
        if (type == "m.room.create") throw Err.Forbidden("The create event cannot be replaced");
        if (type == "m.room.member")
        {
            // Membership goes through the membership endpoints' checks; only profile updates of one's own join pass here.
            if (stateKey != c.UserId || content.OptString("membership") is not { } m || m != rooms.MembershipOf(c.UserId, roomId)?.State)
                throw Err.Forbidden("Use the membership endpoints to change membership");
        }
        if (type == "m.room.canonical_alias") ValidateCanonicalAlias(content, roomId);
        var sent = await sender.SendAsync(roomId, c.UserId, [new NewEvent(type, stateKey, content)], null, ctx.RequestAborted);
        await ctx.Response.WriteJsonAsync(new JsonObject { ["event_id"] = sent[0].EventId });
    }

    // Spec: "m.room.canonical_alias": the server must check that the aliases point to the room (M_BAD_ALIAS).
    void ValidateCanonicalAlias(JsonObject content, string roomId)
    {
        var aliases = new List<string>();
        if (content.OptString("alias") is { } a) aliases.Add(a);
        foreach (var n in content.OptArray("alt_aliases") ?? [])
            aliases.Add(n is JsonValue v && v.TryGetValue<string>(out var s) ? s : throw Err.BadJson("alt_aliases must be strings"));
        foreach (var alias in aliases)
        {
            if (!Ids.TrySplit(alias, '#', out _, out _)) throw Err.InvalidParam($"Invalid alias {alias}");
            if (Ids.ServerOf(alias) == config.ServerName && rooms.AliasTarget(alias) != roomId)
                throw new MatrixException("M_BAD_ALIAS", 400, $"{alias} does not point to this room");
        }
    }

    async Task FullState(HttpContext ctx)
    {
        var c = Auth(ctx);
        var roomId = RoomIdParam(ctx);
        RequireRoom(roomId);
        var state = visibility.VisibleState(c.UserId, roomId) ?? throw Err.Forbidden("You are not allowed to see this room's state");
        var arr = new JsonArray(state.Select(e => (JsonNode)format.Format(e)).ToArray());
        await ctx.Response.WriteJsonAsync(arr);
    }

    async Task GetEvent(HttpContext ctx)
    {
        var c = Auth(ctx);
        var roomId = RoomIdParam(ctx);
        var ev = rooms.Event(ctx.Route("eventId"));
        if (ev is null || ev.RoomId != roomId || !visibility.CanSee(c.UserId, ev)) throw Err.NotFound("Event not found");
        await ctx.Response.WriteJsonAsync(format.Format(ev, c.DeviceId));
    }

    /// <summary>The RoomEventFilter JSON in the "filter" query parameter, if any.</summary>
    static RoomEventFilter? FilterParam(HttpContext ctx)
    {
        if (ctx.Request.Query("filter") is not { } fs) return null;
        try { return RoomEventFilter.Parse(JsonNode.Parse(fs) as JsonObject ?? throw Err.BadJson("filter must be a JSON object")); }
        catch (System.Text.Json.JsonException) { throw Err.NotJson("filter is not JSON"); }
    }

    // ---- /context (spec: client-server-api, "GET /rooms/{roomId}/context/{eventId}"): the event, what the
    // user may see around it, and the state at the last event returned, taken from the state groups.
    async Task Context(HttpContext ctx)
    {
        var c = Auth(ctx);
        var roomId = RoomIdParam(ctx);
        var ev = rooms.Event(ctx.Route("eventId"));
        var window = visibility.ReadableWindow(c.UserId, roomId);
        if (ev is null || ev.RoomId != roomId || !visibility.CanSee(c.UserId, ev, window)) throw Err.NotFound("Event not found");
        var limit = 10;
        if (ctx.Request.Query("limit") is { } ls && (!int.TryParse(ls, out limit) || limit < 0)) throw Err.InvalidParam("Invalid limit");
        limit = Math.Clamp(limit, 0, 100);
        var filter = FilterParam(ctx);
        // Half the limit before the event (rounded down) and the rest after, as Synapse does.
        Func<StoredEvent, bool>? include = filter is null ? null : e => filter.Matches(e.Type, e.Sender, roomId);
        var before = visibility.Around(c.UserId, ev, window, backwards: true, limit / 2, include);
        var after = visibility.Around(c.UserId, ev, window, backwards: false, limit - limit / 2, include);
        var lastReturned = after.Count > 0 ? after[^1] : ev;
        var state = states.Full(lastReturned.StateAfter).Values.Select(rooms.Event).OfType<StoredEvent>();
        if (filter?.LazyLoadMembers == true)
        {
            var senders = before.Concat(after).Append(ev).Select(e => e.Sender).ToHashSet();
            state = state.Where(e => e.Type != "m.room.member" || senders.Contains(e.StateKey!));
        }
        await ctx.Response.WriteJsonAsync(new JsonObject
        {
            ["event"] = format.Format(ev, c.DeviceId),
            ["events_before"] = new JsonArray(before.Select(e => (JsonNode)format.Format(e, c.DeviceId)).ToArray()),
            ["events_after"] = new JsonArray(after.Select(e => (JsonNode)format.Format(e, c.DeviceId)).ToArray()),
            ["start"] = $"t{(before.Count > 0 ? before[^1].Pos : ev.Pos) - 1}",
            ["end"] = $"t{lastReturned.Pos}",
            ["state"] = new JsonArray(state.Select(e => (JsonNode)format.Format(e)).ToArray()),
        });
    }

    // ---- /messages (spec: client-server-api, "GET /rooms/{roomId}/messages"). Tokens are "t{pos}": a point in
    // the room stream between pos and pos+1. A /sync next_batch ("s{pos}_...") is accepted as well.

    public static long? ParsePoint(string? token)
    {
        if (string.IsNullOrEmpty(token)) return null;
        var t = token[0] is 't' or 's' ? token[1..] : token;
        var end = t.IndexOf('_');
        if (end >= 0) t = t[..end];
        return long.TryParse(t, out var p) && p >= 0 ? p : throw Err.InvalidParam("Invalid pagination token");
    }

    async Task Messages(HttpContext ctx)
    {
        var c = Auth(ctx);
        var roomId = RoomIdParam(ctx);
        RequireRoom(roomId);
        var dir = ctx.Request.Query("dir") ?? "b";
        if (dir is not ("b" or "f")) throw Err.InvalidParam("dir must be 'b' or 'f'");
        var limit = 10;
        if (ctx.Request.Query("limit") is { } ls && (!int.TryParse(ls, out limit) || limit < 0)) throw Err.InvalidParam("Invalid limit");
        limit = Math.Clamp(limit, 0, 1000);
        var filter = FilterParam(ctx);
        if (filter?.Limit is { } fl)
        {
            limit = Math.Min(limit, fl);
        }
        var window = visibility.ReadableWindow(c.UserId, roomId) ?? throw Err.Forbidden("You are not allowed to read this room");
        var now = rooms.StreamPosition;
        var from = ParsePoint(ctx.Request.Query("from")) ?? (dir == "b" ? now : 0);
        var to = ParsePoint(ctx.Request.Query("to"));

        var chunk = new JsonArray();
        long last = from;
        var memberIds = new HashSet<string>();
        var timeline = dir == "b"
            ? rooms.Timeline(roomId, Math.Max(to ?? 0, window.After), Math.Min(from, window.UpTo), backwards: true)
            : rooms.Timeline(roomId, Math.Max(from, window.After), Math.Min(to ?? long.MaxValue, window.UpTo), backwards: false);
        var reachedEnd = true;
        foreach (var (pos, id) in timeline)
        {
            if (chunk.Count >= limit) { reachedEnd = false; break; }
            last = dir == "b" ? pos - 1 : pos;
            var ev = rooms.Event(id);
            if (ev is null || !visibility.CanSee(c.UserId, ev, window)) continue;
            if (filter is not null && !filter.Matches(ev.Type, ev.Sender, roomId)) continue;
            chunk.Add((JsonNode)format.Format(ev, c.DeviceId));
            memberIds.Add(ev.Sender);
        }
        var result = new JsonObject { ["chunk"] = chunk, ["start"] = $"t{from}" };
        if (!reachedEnd || (chunk.Count > 0 && chunk.Count >= limit)) result["end"] = $"t{last}";
        if (filter?.LazyLoadMembers == true)
        {
            var state = new JsonArray();
            foreach (var m in memberIds)
                if (rooms.StateEvent(roomId, "m.room.member", m) is { } me) state.Add((JsonNode)format.Format(me));
            result["state"] = state;
        }
        await ctx.Response.WriteJsonAsync(result);
    }

    async Task Members(HttpContext ctx)
    {
        var c = Auth(ctx);
        var roomId = RoomIdParam(ctx);
        RequireRoom(roomId);
        var state = visibility.VisibleState(c.UserId, roomId) ?? throw Err.Forbidden("You are not allowed to see this room's members");
        var only = ctx.Request.Query("membership");
        var not = ctx.Request.Query("not_membership");
        var chunk = new JsonArray();
        foreach (var e in state.Where(e => e.Type == "m.room.member"))
        {
            var m = e.Content["membership"]?.GetValue<string>();
            if (only is not null && m != only) continue;
            if (not is not null && m == not) continue;
            chunk.Add((JsonNode)format.Format(e));
        }
        await ctx.Response.WriteJsonAsync(new JsonObject { ["chunk"] = chunk });
    }

    async Task JoinedMembers(HttpContext ctx)
    {
        var c = Auth(ctx);
        var roomId = RoomIdParam(ctx);
        RequireRoom(roomId);
        if (rooms.MembershipOf(c.UserId, roomId)?.State != "join") throw Err.Forbidden("You are not joined to this room");
        var joined = new JsonObject();
        foreach (var u in rooms.JoinedMembers(roomId))
        {
            var content = rooms.StateContent(roomId, "m.room.member", u);
            var o = new JsonObject();
            if (content?["displayname"] is JsonValue dn) o["display_name"] = dn.DeepClone();
            if (content?["avatar_url"] is JsonValue av) o["avatar_url"] = av.DeepClone();
            joined[u] = o;
        }
        await ctx.Response.WriteJsonAsync(new JsonObject { ["joined"] = joined });
    }

    async Task Redact(HttpContext ctx)
    {
        var c = Auth(ctx);
        var roomId = RoomIdParam(ctx);
        var eventId = ctx.Route("eventId");
        var body = await ctx.Request.ReadJsonObjectAsync();
        RequireRoom(roomId);
        var target = rooms.Event(eventId);
        if (target is null || target.RoomId != roomId || !visibility.CanSee(c.UserId, target)) throw Err.NotFound("Event not found");
        var pl = rooms.PowerLevelsOf(roomId);
        if (!AuthRules.MayRedact(c.UserId, target.Sender, pl)) throw Err.Forbidden("You do not have the power to redact this event");
        var content = new JsonObject();
        if (body.OptString("reason") is { } reason) content["reason"] = reason;
        var sent = await sender.SendAsync(roomId, c.UserId, [new NewEvent("m.room.redaction", null, content, eventId)],
            new TxnRef(c.UserId, c.DeviceId, "redact:" + ctx.Route("txnId")), ctx.RequestAborted);
        await ctx.Response.WriteJsonAsync(new JsonObject { ["event_id"] = sent[0].EventId });
    }

    // ---- aliases (spec: client-server-api, "Room aliases")

    async Task AliasEndpoint(HttpContext ctx)
    {
        var alias = ctx.Route("roomAlias");
        if (!Ids.TrySplit(alias, '#', out _, out _)) throw Err.InvalidParam("Invalid room alias");
        switch (ctx.Request.Method)
        {
            case "GET":
                var roomId = rooms.AliasTarget(alias) ?? throw Err.NotFound("Room alias not found");
                await ctx.Response.WriteJsonAsync(new JsonObject { ["room_id"] = roomId, ["servers"] = new JsonArray(config.ServerName) });
                return;
            case "PUT":
            {
                var c = Auth(ctx);
                var body = await ctx.Request.ReadJsonObjectAsync();
                var target = body.ReqString("room_id");
                if (Ids.ServerOf(alias) != config.ServerName) throw Err.InvalidParam("Aliases of other servers cannot be created here");
                RequireRoom(target);
                if (rooms.MembershipOf(c.UserId, target)?.State != "join") throw Err.Forbidden("You are not joined to this room");
                if (!rooms.TryPutAlias(alias, target, c.UserId)) throw new MatrixException("M_ROOM_IN_USE", 409, "Room alias already exists");
                await ctx.Response.WriteJsonAsync(new JsonObject());
                return;
            }
            default:
            {
                var c = Auth(ctx);
                var a = rooms.Alias(alias) ?? throw Err.NotFound("Room alias not found");
                var target = a["room_id"]!.GetValue<string>();
                var pl = rooms.PowerLevelsOf(target);
                var mayDelete = a["creator"]?.GetValue<string>() == c.UserId
                    || (rooms.MembershipOf(c.UserId, target)?.State == "join" && pl.UserLevel(c.UserId) >= pl.EventLevel("m.room.canonical_alias", true));
                if (!mayDelete) throw Err.Forbidden("You may not remove this alias");
                rooms.DeleteAlias(alias, target);
                await ctx.Response.WriteJsonAsync(new JsonObject());
                return;
            }
        }
    }

    async Task RoomAliases(HttpContext ctx)
    {
        var c = Auth(ctx);
        var roomId = RoomIdParam(ctx);
        RequireRoom(roomId);
        if (visibility.VisibleState(c.UserId, roomId) is null) throw Err.Forbidden("You are not allowed to see this room");
        await ctx.Response.WriteJsonAsync(new JsonObject { ["aliases"] = new JsonArray(rooms.AliasesOf(roomId).Select(a => (JsonNode)a).ToArray()) });
    }
}

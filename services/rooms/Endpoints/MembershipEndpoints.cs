using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Http;
using Conduit.Common.Routing;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Conduit.Rooms;

/// <summary>
/// Membership (spec: client-server-api, "Room membership"): joining by ID or alias, invite, leave, kick, ban,
/// unban, forget, knocking, and the list of joined rooms. Accepting a knock is /invite, denying it /kick or /ban,
/// rescinding it /leave. The auth rules, applied by <see cref="EventSender"/> to every event, decide what is
/// allowed; the checks here only give clearer errors first.
/// </summary>
public sealed class MembershipEndpoints(RoomStore rooms, EventSender sender, RoomParams param, GlobalConfig config, RateLimits limits, RemoteMembership remote)
{
    public void Map(IEndpointRouteBuilder app)
    {
        app.Map(RouteTable.JoinByIdOrAlias, JoinByIdOrAlias);
        app.Map(RouteTable.Membership, MembershipAction);
        app.Map(RouteTable.JoinedRooms, JoinedRooms);
        app.Map(RouteTable.Knock, Knock);
    }

    async Task JoinByIdOrAlias(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var body = await ctx.Request.ReadJsonObjectAsync();
        var (roomId, servers) = await TargetAsync(ctx);
        await Join(ctx, c, roomId, body, servers);
    }

    /// <summary>
    /// The {roomIdOrAlias} of /join and /knock as a room ID, and the servers an alias of another server named (asked of
    /// that server: spec, server-server-api, "Room aliases" query).
    /// </summary>
    async Task<(string RoomId, IEnumerable<string> Servers)> TargetAsync(HttpContext ctx)
    {
        var target = ctx.Route("roomIdOrAlias");
        if (target.StartsWith('#') && Ids.TrySplit(target, '#', out _, out var aliasServer) && aliasServer != config.ServerName && config.AllowFederation)
            return await remote.ResolveAliasAsync(target, ctx.RequestAborted);
        return (await param.RoomIdOrAliasAsync(ctx), []);
    }

    /// <summary>
    /// The other servers to join or knock through when this server is not in the room: those the client named (?via=,
    /// v1.12, and the older ?server_name=), the alias's, the inviter's, and the room ID's server (v12 IDs name none).
    /// </summary>
    List<string> Through(HttpContext ctx, string userId, string roomId, IEnumerable<string> servers)
        => ctx.Request.Query["via"].Concat(ctx.Request.Query["server_name"]).OfType<string>().Concat(servers).Concat(InviterServer(userId, roomId))
            .Concat(roomId.Contains(':', StringComparison.Ordinal) ? [Ids.ServerOf(roomId)] : [])
            .Where(s => s != config.ServerName).Distinct().ToList();

    async Task Join(HttpContext ctx, Caller c, string roomId, JsonObject body, IEnumerable<string>? servers = null)
    {
        RefuseBlocked(roomId);
        var through = Through(ctx, c.UserId, roomId, servers ?? []);
        if (config.AllowFederation && through.Count > 0 && remote.NeedsRemoteJoin(roomId))
        {
            var joinContent = await JoinContent(ctx, c, roomId, body, restricted: false);
            await remote.JoinAsync(roomId, c.UserId, joinContent, through, ctx.RequestAborted);
            await ctx.Response.WriteJsonAsync(new JsonObject { ["room_id"] = roomId });
            return;
        }
        if (rooms.Info(roomId) is null) throw Err.NotFound("Room not found");
        if (rooms.MembershipOf(c.UserId, roomId)?.State != "join")
        {
            var content = await JoinContent(ctx, c, roomId, body, restricted: true);
            await sender.SendAsync(roomId, c.UserId, [new NewEvent("m.room.member", c.UserId, content)], null, ctx.RequestAborted);
        }
        await ctx.Response.WriteJsonAsync(new JsonObject { ["room_id"] = roomId });
    }

    /// <summary>A room an admin blocked (admin API) takes no joins, knocks or invites from this server's users.</summary>
    void RefuseBlocked(string roomId)
    {
        if (rooms.Blocked(roomId) is not null) throw Err.Forbidden("This room has been blocked on this server");
    }

    /// <summary>
    /// Servers in the room as the user's pending membership tells: the inviter's for an invite; for a knock (which the
    /// user sent), those of the senders of the stripped state the resident server answered it with.
    /// </summary>
    IEnumerable<string> InviterServer(string userId, string roomId)
    {
        if (rooms.MembershipOf(userId, roomId) is not { State: "invite" or "knock" } m || rooms.Event(m.EventId) is not { } e) return [];
        if (m.State == "invite") return [Ids.ServerOf(e.Sender)];
        return (e.Meta["invite_room_state"] as JsonArray ?? []).OfType<JsonObject>()
            .Select(o => ContentField.String(o, "sender")).OfType<string>().Where(Ids.IsUserId).Select(Ids.ServerOf);
    }

    /// <summary>The join event's content: the profile, the body's additions, the authorising user of a restricted join.</summary>
    async Task<JsonObject> JoinContent(HttpContext ctx, Caller c, string roomId, JsonObject body, bool restricted)
    {
        // Spec, "Guest access", server behaviour: guests join only rooms whose m.room.guest_access is can_join.
        if (c.IsGuest && ContentField.String(rooms.StateContent(roomId, "m.room.guest_access"), "guest_access") != "can_join")
            throw Err.Forbidden("Guest access is not allowed in this room");
        var content = await param.MemberContent(c.UserId, "join", ctx.RequestAborted);
        // The request body is the member event's content, as Synapse takes it: a reason, or a display name or
        // avatar for this room, override the profile. Keys the server decides are not the client's to set.
        foreach (var (key, value) in body)
            if (key is not ("membership" or "join_authorised_via_users_server" or "third_party_signed" or "third_party_invite"))
                content[key] = value?.DeepClone();
        // The keys clients show must have the right type (M_BAD_JSON otherwise).
        foreach (var key in new[] { "reason", "displayname", "avatar_url" }) body.OptString(key);
        if (restricted) RestrictedJoin.Authorise(rooms, config.ServerName, roomId, c.UserId, content);
        limits.Take(ctx, c, new Charge(limits.Joins, c.UserId));
        return content;
    }

    async Task MembershipAction(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var roomId = RoomParams.RoomId(ctx);
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
        // An invite to a room this server is not in is rejected through the inviting server; a knock is rescinded
        // through a server in the room (spec: server-server-api, "Leaving Rooms (Rejecting Invites)").
        if (action == "leave" && config.AllowFederation && rooms.Info(roomId) is null && rooms.MembershipOf(c.UserId, roomId)?.State is "invite" or "knock")
        {
            await remote.LeaveAsync(roomId, c.UserId, Through(ctx, c.UserId, roomId, []), ctx.RequestAborted);
            await ctx.Response.WriteJsonAsync(new JsonObject());
            return;
        }
        param.RequireRoom(roomId);
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
            target = RoomParams.UserId(body.ReqString("user_id"), "user_id");
            membership = action switch { "invite" => "invite", "kick" => "leave", "ban" => "ban", _ => "leave" };
            if (action == "unban" && rooms.MembershipOf(target, roomId)?.State != "ban") throw Err.Forbidden("The user is not banned");
            if (action == "kick" && rooms.MembershipOf(target, roomId)?.State is not ("join" or "invite" or "knock"))
                throw Err.Forbidden("The user is not in the room");
            if (action == "invite") RefuseBlocked(roomId);
            if (action == "invite" && rooms.MembershipOf(target, roomId)?.State == "invite")
            {
                await ctx.Response.WriteJsonAsync(new JsonObject());
                return;
            }
            content = action == "invite" ? await param.InviteContent(target, ctx.RequestAborted) : new JsonObject { ["membership"] = membership };
            // rc_invites: into this room, by this user, and to the invitee (who cannot be flooded from many rooms).
            if (action == "invite")
                limits.Take(ctx, c, new(limits.InvitesPerRoom, roomId), new(limits.InvitesPerIssuer, c.UserId), new(limits.InvitesPerUser, target));
        }
        if (body.OptString("reason") is { } reason) content["reason"] = reason;
        if (action == "invite" && !AuthRules.IsLocal(target, config.ServerName))
            await remote.InviteAsync(roomId, c.UserId, target, content, ctx.RequestAborted);
        else await sender.SendAsync(roomId, c.UserId, [new NewEvent("m.room.member", target, content)], null, ctx.RequestAborted);
        await ctx.Response.WriteJsonAsync(new JsonObject());
    }

    async Task JoinedRooms(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var ids = rooms.RoomsOf(c.UserId).Where(r => r.M.State == "join").Select(r => (JsonNode)r.RoomId).ToArray();
        await ctx.Response.WriteJsonAsync(new JsonObject { ["joined_rooms"] = new JsonArray(ids) });
    }

    // ---- knocking (spec: client-server-api, "Knocking on rooms"; POST /knock/{roomIdOrAlias}).
    // The auth rules (knock.1-knock.4) decide whether the room takes knocks and from whom.

    async Task Knock(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var body = await ctx.Request.ReadJsonObjectAsync();
        var (roomId, servers) = await TargetAsync(ctx);
        RefuseBlocked(roomId);
        var through = Through(ctx, c.UserId, roomId, servers);
        var remoteKnock = config.AllowFederation && through.Count > 0 && remote.NeedsRemoteJoin(roomId);
        if (!remoteKnock && rooms.Info(roomId) is null) throw Err.NotFound("Room not found");
        if (rooms.MembershipOf(c.UserId, roomId)?.State != "knock")
        {
            var content = await param.MemberContent(c.UserId, "knock", ctx.RequestAborted);
            if (body.OptString("reason") is { } reason) content["reason"] = reason;
            // A knock notifies the room's moderators; it counts as a join.
            limits.Take(ctx, c, new Charge(limits.Joins, c.UserId));
            // A room this server is not in is knocked on through one that is (spec: server-server-api, "Knocking on rooms").
            if (remoteKnock) await remote.KnockAsync(roomId, c.UserId, content, through, ctx.RequestAborted);
            else await sender.SendAsync(roomId, c.UserId, [new NewEvent("m.room.member", c.UserId, content)], null, ctx.RequestAborted);
        }
        await ctx.Response.WriteJsonAsync(new JsonObject { ["room_id"] = roomId });
    }
}

/// <summary>
/// Joins of rooms whose join rule is restricted or knock_restricted (spec: client-server-api, "Restricted rooms";
/// rooms v8+ auth rules, join.5). A user without an invite who is joined to one of the allowed rooms gets a
/// join_authorised_via_users_server naming a local member with the power to invite; otherwise the join is refused.
/// The auth rules then require this server's signature on the join, which <see cref="EventSender"/> adds before it
/// checks the event.
/// </summary>
public static class RestrictedJoin
{
    public static void Authorise(RoomStore rooms, string serverName, string roomId, string userId, JsonObject content)
    {
        var version = rooms.VersionOf(roomId);
        var rules = rooms.StateContent(roomId, "m.room.join_rules");
        var rule = JoinRule.Of(rules);
        var restricted = version is not null
            && ((version.RestrictedJoins && rule == "restricted") || (version.KnockRestricted && rule == "knock_restricted"));
        if (!restricted) return;
        // Invited (or already joined) users join as usual; the conditions do not apply to them.
        if (rooms.MembershipOf(userId, roomId)?.State is "invite" or "join") return;

        var allowed = JoinRule.AllowedRoomIds(rules).Any(allowRoom => rooms.MembershipOf(userId, allowRoom)?.State == "join");
        if (!allowed) throw Err.Forbidden("You are not invited and not joined to any room this room's join rules allow");

        var levels = rooms.PowerLevelsOf(roomId);
        var via = rooms.JoinedMembers(roomId)
            .Where(u => AuthRules.IsLocal(u, serverName))
            .Select(u => (User: u, Level: levels.UserLevel(u)))
            .Where(x => x.Level >= levels.Invite)
            .OrderByDescending(x => x.Level).ThenBy(x => x.User, StringComparer.Ordinal)
            .Select(x => x.User).FirstOrDefault()
            ?? throw Err.Forbidden("No member of this server can authorise your join");
        content["join_authorised_via_users_server"] = via;
    }
}

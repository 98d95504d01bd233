using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Events;
using Conduit.Common.Http;
using Conduit.Common.Routing;
using Conduit.Protos.Keys;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using K = Conduit.Common.Storage.Keys;

namespace Conduit.Rooms;

/// <summary>
/// Knocking, room upgrades and timestamp_to_event: endpoints built on <see cref="EventSender"/> and the existing
/// membership endpoints (accepting a knock is /invite, denying it /kick or /ban, rescinding it /leave).
/// Restricted joins are <see cref="RestrictedJoin"/>, called from the join path.
/// </summary>
public sealed class RoomFeatures(RoomStore rooms, EventSender sender, Visibility visibility, GlobalConfig config, Keys.KeysClient keys)
{
    public void Map(IEndpointRouteBuilder app)
    {
        app.Map(RouteTable.Knock, Knock);
        app.Map(RouteTable.Upgrade, Upgrade);
        app.Map(RouteTable.TimestampToEvent, TimestampToEvent);
    }

    string RoomIdParam(HttpContext ctx)
    {
        var id = ctx.Route("roomId");
        if (!Ids.TrySplit(id, '!', out _, out _)) throw Err.InvalidParam("Invalid room ID");
        if (rooms.Info(id) is null) throw Err.NotFound("Unknown room");
        return id;
    }

    async Task<JsonObject> MemberContent(string userId, string membership, CancellationToken ct)
    {
        var content = new JsonObject { ["membership"] = membership };
        var p = await keys.GetProfileAsync(new GetProfileRequest { UserId = userId }, cancellationToken: ct);
        if (p.HasDisplayname) content["displayname"] = p.Displayname;
        if (p.HasAvatarUrl) content["avatar_url"] = p.AvatarUrl;
        return content;
    }

    // ---- knocking (spec: client-server-api, "Knocking on rooms"; POST /knock/{roomIdOrAlias}).
    // The auth rules (knock.1-knock.4) decide whether the room takes knocks and from whom.

    async Task Knock(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var target = ctx.Route("roomIdOrAlias");
        var body = await ctx.Request.ReadJsonObjectAsync();
        string roomId;
        if (target.StartsWith('#'))
            roomId = rooms.AliasTarget(target) ?? throw Err.NotFound("Room alias not found");
        else if (Ids.TrySplit(target, '!', out _, out _)) roomId = target;
        else throw Err.InvalidParam("Expected a room ID or alias");
        if (rooms.Info(roomId) is null) throw Err.NotFound("Room not found (knocking over federation is not enabled yet)");
        if (rooms.MembershipOf(c.UserId, roomId)?.State != "knock")
        {
            var content = await MemberContent(c.UserId, "knock", ctx.RequestAborted);
            if (body.OptString("reason") is { } reason) content["reason"] = reason;
            await sender.SendAsync(roomId, c.UserId, [new NewEvent("m.room.member", c.UserId, content)], null, ctx.RequestAborted);
        }
        await ctx.Response.WriteJsonAsync(new JsonObject { ["room_id"] = roomId });
    }

    // ---- room upgrades (spec: client-server-api, "Room Upgrades", "Server behaviour").

    // The state copied to the replacement room (spec list, plus the canonical alias, whose local aliases move too).
    static readonly string[] TransferredState =
    [
        "m.room.server_acl", "m.room.encryption", "m.room.name", "m.room.avatar", "m.room.topic",
        "m.room.guest_access", "m.room.history_visibility", "m.room.join_rules", "m.room.canonical_alias",
    ];

    async Task Upgrade(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var oldRoom = RoomIdParam(ctx);
        var body = await ctx.Request.ReadJsonObjectAsync();
        var versionId = body.ReqString("new_version");
        var version = RoomVersion.Find(versionId) ??
            throw Err.UnsupportedRoomVersion($"Room version {versionId} is not supported here");
        var ct = ctx.RequestAborted;

        // Step 1: the caller must be able to send m.room.tombstone in the old room.
        if (rooms.MembershipOf(c.UserId, oldRoom)?.State != "join") throw Err.Forbidden("You are not joined to this room");
        var oldPl = rooms.StateContent(oldRoom, "m.room.power_levels");
        var oldLevels = rooms.PowerLevelsOf(oldRoom);
        if (oldLevels.UserLevel(c.UserId) < oldLevels.EventLevel("m.room.tombstone", true))
            throw Err.Forbidden("You do not have the power to upgrade this room");

        // Step 2: the replacement room's create event, with the predecessor and the old room's type. Versions whose
        // room ID comes from the create event (v12) get it from EventSender; their additional creators are only
        // those the request names.
        var newRoom = version.RoomIdFromCreateEvent ? "" : $"!{Ids.Random(18)}:{config.ServerName}";
        var create = new JsonObject { ["room_version"] = version.Id };
        if (version.CreatorInCreateContent) create["creator"] = c.UserId;
        var creators = new List<string> { c.UserId };
        if (version.PrivilegedCreators && body["additional_creators"] is { } given)
        {
            foreach (var n in given as JsonArray ?? throw Err.BadJson("additional_creators must be an array of user IDs"))
                creators.Add(n is JsonValue v && v.TryGetValue<string>(out var u) && Ids.IsUserId(u) ? u : throw Err.BadJson("additional_creators must be an array of user IDs"));
            creators = creators.Distinct().ToList();
            if (creators.Count > 1) create["additional_creators"] = new JsonArray(creators.Skip(1).Select(u => (JsonNode)u).ToArray());
        }
        if (rooms.StateContent(oldRoom, "m.room.create")?["type"] is JsonValue roomType) create["type"] = roomType.DeepClone();
        var predecessor = new JsonObject { ["room_id"] = oldRoom };
        if (rooms.Info(oldRoom)?["forward_extremities"] is JsonArray { Count: > 0 } fe) predecessor["event_id"] = fe[0]!.DeepClone();
        create["predecessor"] = predecessor;
        var events = new List<NewEvent>
        {
            new("m.room.create", "", create),
            new("m.room.member", c.UserId, await MemberContent(c.UserId, "join", ct)),
        };

        // Step 3: transferable state. The power levels are copied as they are; if the caller's own level is too
        // low to send the rest of the copied state, it is raised for the copy and restored by a last event.
        var copied = TransferredState.Select(t => (Type: t, Content: rooms.StateContent(oldRoom, t))).Where(s => s.Content is not null).ToList();
        var pl = NormalizedPowerLevels(oldPl, version, c.UserId, creators, oldRoom);
        var newLevels = new PowerLevels(pl, c.UserId);
        var needed = copied.Select(s => newLevels.EventLevel(s.Type, true)).Append(newLevels.EventLevel("m.room.power_levels", true)).Max();
        var raise = !version.PrivilegedCreators && newLevels.UserLevel(c.UserId) < needed;
        if (raise)
        {
            var raised = pl.DeepClone().AsObject();
            var users = raised["users"] as JsonObject ?? [];
            users[c.UserId] = needed;
            raised["users"] = users;
            events.Add(new NewEvent("m.room.power_levels", "", raised));
        }
        else events.Add(new NewEvent("m.room.power_levels", "", pl));
        foreach (var (type, content) in copied) events.Add(new NewEvent(type, "", content!.DeepClone().AsObject()));
        if (raise) events.Add(new NewEvent("m.room.power_levels", "", pl));
        newRoom = (await sender.SendAsync(newRoom, c.UserId, events, null, ct))[0].RoomId;

        // Step 4: local aliases (and publication in the room directory) move to the new room.
        foreach (var alias in rooms.AliasesOf(oldRoom).ToList())
        {
            if (Ids.ServerOf(alias) != config.ServerName) continue;
            var aliasCreator = rooms.Alias(alias)?["creator"]?.GetValue<string>() ?? c.UserId;
            rooms.DeleteAlias(alias, oldRoom);
            rooms.PutAlias(alias, newRoom, aliasCreator);
        }
        var directory = rooms.Store.Map(RoomsFamilies.Directory);
        if (directory.Get(K.Utf8(oldRoom)) is not null)
        {
            rooms.SetDirectoryVisibility(newRoom, true);
            rooms.SetDirectoryVisibility(oldRoom, false);
        }

        // Step 5: the tombstone.
        await sender.SendAsync(oldRoom, c.UserId,
            [new NewEvent("m.room.tombstone", "", new JsonObject { ["body"] = "This room has been replaced", ["replacement_room"] = newRoom })], null, ct);

        // Step 6, best effort: the old room stops taking messages and invites from ordinary members, and no longer
        // names the aliases that moved.
        var restricted = oldPl?.DeepClone().AsObject() ?? new JsonObject { ["users"] = new JsonObject { [c.UserId] = Math.Min(100, UserLevel(oldRoom, c.UserId)) } };
        var floor = Math.Max(50, oldLevels.UsersDefault + 1);
        restricted["events_default"] = Math.Max(floor, oldLevels.EventsDefault);
        restricted["invite"] = Math.Max(floor, oldLevels.Invite);
        await TrySend(oldRoom, c.UserId, new NewEvent("m.room.power_levels", "", restricted), ct);
        if (rooms.StateContent(oldRoom, "m.room.canonical_alias") is { Count: > 0 })
            await TrySend(oldRoom, c.UserId, new NewEvent("m.room.canonical_alias", "", new JsonObject()), ct);

        await ctx.Response.WriteJsonAsync(new JsonObject { ["replacement_room"] = newRoom });
    }

    async Task TrySend(string roomId, string userId, NewEvent e, CancellationToken ct)
    {
        try { await sender.SendAsync(roomId, userId, [e], null, ct); }
        catch (MatrixException) { /* the caller may lack the power; the tombstone already tells clients */ }
    }

    long UserLevel(string roomId, string userId) => rooms.PowerLevelsOf(roomId).UserLevel(userId);

    // The old room's power levels for the new room: integers where the new version requires them, and (in versions
    // whose creators are privileged) no entry for the creator. Without power levels the old defaults are spelled out.
    JsonObject NormalizedPowerLevels(JsonObject? old, RoomVersion version, string creator, IEnumerable<string> creators, string oldRoom)
    {
        var pl = old?.DeepClone().AsObject() ?? new JsonObject { ["users"] = new JsonObject { [creator] = Math.Min(100, UserLevel(oldRoom, creator)) } };
        if (version.IntegerOnlyPowerLevels)
        {
            static JsonNode? Int(JsonNode? n) => n is JsonValue v && v.TryGetValue<string>(out var s) && long.TryParse(s, out var l) ? l : n;
            foreach (var (k, v) in pl.ToList())
            {
                if (v is JsonObject o) { foreach (var (ik, iv) in o.ToList()) o[ik] = Int(iv)?.DeepClone(); }
                else pl[k] = Int(v)?.DeepClone();
            }
        }
        if (version.PrivilegedCreators && pl["users"] is JsonObject users)
            foreach (var u in creators) users.Remove(u);
        return pl;
    }

    // ---- GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event (spec: client-server-api, "Room participation",
    // getEventByTimestamp): the closest event at or after (dir=f) or at or before (dir=b) ts that the caller may see.

    async Task TimestampToEvent(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var roomId = RoomIdParam(ctx);
        var dir = ctx.Request.Query("dir") ?? throw Err.MissingParam("dir is required");
        if (dir is not ("f" or "b")) throw Err.InvalidParam("dir must be 'f' or 'b'");
        var tsParam = ctx.Request.Query("ts") ?? throw Err.MissingParam("ts is required");
        if (!long.TryParse(tsParam, out var ts)) throw Err.InvalidParam("ts must be an integer");
        var window = visibility.ReadableWindow(c.UserId, roomId) ?? throw Err.Forbidden("You are not allowed to read this room");
        var upTo = Math.Min(rooms.StreamPosition, window.UpTo);
        var forward = dir == "f";
        // Local events are stored in the order they were created, so timestamps grow along the timeline.
        foreach (var (_, id) in rooms.Timeline(roomId, window.After, upTo, backwards: !forward))
        {
            if (rooms.Event(id) is not { } e || !visibility.CanSee(c.UserId, e, window)
                || e.Pdu["origin_server_ts"]?.GetValue<long>() is not { } evTs) continue;
            if (forward ? evTs >= ts : evTs <= ts)
            {
                await ctx.Response.WriteJsonAsync(new JsonObject { ["event_id"] = e.EventId, ["origin_server_ts"] = evTs });
                return;
            }
        }
        throw Err.NotFound($"Unable to find an event from {ts} in the {(forward ? "forward" : "backward")} direction");
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
        var rule = rules?["join_rule"] is JsonValue jv && jv.TryGetValue<string>(out var r) ? r : null;
        var restricted = version is not null
            && ((version.RestrictedJoins && rule == "restricted") || (version.KnockRestricted && rule == "knock_restricted"));
        if (!restricted) return;
        // Invited (or already joined) users join as usual; the conditions do not apply to them.
        if (rooms.MembershipOf(userId, roomId)?.State is "invite" or "join") return;

        var allowed = false;
        foreach (var n in rules!["allow"] as JsonArray ?? [])
            if (n is JsonObject cond && cond.OptString("type") == "m.room_membership" && cond.OptString("room_id") is { } allowRoom
                && rooms.MembershipOf(userId, allowRoom)?.State == "join")
            {
                allowed = true;
                break;
            }
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

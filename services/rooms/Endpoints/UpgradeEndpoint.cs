using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Events;
using Conduit.Common.Http;
using Conduit.Common.Routing;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Conduit.Rooms;

/// <summary>POST /rooms/{roomId}/upgrade (spec: client-server-api, "Room Upgrades", "Server behaviour").</summary>
public sealed class UpgradeEndpoint(RoomStore rooms, EventSender sender, RoomParams param, GlobalConfig config, RateLimits limits)
{
    public void Map(IEndpointRouteBuilder app) => app.Map(RouteTable.Upgrade, Upgrade);

    // The state copied to the replacement room (spec list, plus the canonical alias, whose local aliases move too).
    static readonly string[] TransferredState =
    [
        "m.room.server_acl", "m.room.encryption", "m.room.name", "m.room.avatar", "m.room.topic",
        "m.room.guest_access", "m.room.history_visibility", "m.room.join_rules", "m.room.canonical_alias",
    ];

    async Task Upgrade(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var oldRoom = param.KnownRoomId(ctx);
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
        // An upgrade creates a room: rc_room_creation.
        limits.Take(ctx, c, new Charge(limits.RoomCreation, c.UserId));

        // Step 2: the replacement room's create event, with the predecessor and the old room's type. Versions whose
        // room ID comes from the create event (v12) get it from EventSender; their additional creators are only
        // those the request names.
        var newRoom = version.RoomIdFromCreateEvent ? "" : $"!{Ids.Random(18)}:{config.ServerName}";
        var create = new JsonObject { ["room_version"] = version.Id };
        if (version.CreatorInCreateContent) create["creator"] = c.UserId;
        var creators = new List<string> { c.UserId };
        if (version.PrivilegedCreators)
        {
            creators = creators.Concat(RoomParams.UserIds(body["additional_creators"], "additional_creators")).Distinct().ToList();
            if (creators.Count > 1) create["additional_creators"] = new JsonArray(creators.Skip(1).Select(u => (JsonNode)u).ToArray());
        }
        if (rooms.StateContent(oldRoom, "m.room.create")?["type"] is JsonValue roomType) create["type"] = roomType.DeepClone();
        var predecessor = new JsonObject { ["room_id"] = oldRoom };
        if (rooms.Info(oldRoom)?["forward_extremities"] is JsonArray { Count: > 0 } fe) predecessor["event_id"] = fe[0]!.DeepClone();
        create["predecessor"] = predecessor;
        var events = new List<NewEvent>
        {
            new("m.room.create", "", create),
            new("m.room.member", c.UserId, await param.MemberContent(c.UserId, "join", ct)),
        };

        // Step 3: transferable state. The power levels are copied as they are; if the caller's own level is too
        // low to send the rest of the copied state, it is raised for the copy and restored by a last event.
        // State another server sent in a shape this server would not send is left behind rather than failing the upgrade.
        var copied = TransferredState.Select(t => (Type: t, Content: rooms.StateContent(oldRoom, t)))
            .Where(s => s.Content is not null && EventContent.IsValid(new NewEvent(s.Type, "", s.Content), oldRoom, config.ServerName)).ToList();
        var pl = NormalizedPowerLevels(oldPl, version, c.UserId, creators, oldRoom);
        var newLevels = new PowerLevels(version, c.UserId, version.PrivilegedCreators ? creators : null, pl);
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
        if (directory.Get(RoomsFamilies.DirectoryKey(oldRoom)) is not null)
        {
            rooms.SetDirectoryVisibility(newRoom, true);
            rooms.SetDirectoryVisibility(oldRoom, false);
        }

        // Step 5: the tombstone.
        await sender.SendAsync(oldRoom, c.UserId,
            [new NewEvent("m.room.tombstone", "", new JsonObject { ["body"] = "This room has been replaced", ["replacement_room"] = newRoom })], null, ct);

        // Step 6, best effort: the old room stops taking messages and invites from ordinary members, and no longer
        // names the aliases that moved.
        var restricted = oldPl is null ? new JsonObject { ["users"] = new JsonObject { [c.UserId] = Math.Min(100, UserLevel(oldRoom, c.UserId)) } } : IntegerLevels(oldPl);
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

    /// <summary>
    /// A copy of power levels with numeric strings ("50", which rooms before v10 accept from other servers) as
    /// integers: this server sends integers only, in every room version (EventContent).
    /// </summary>
    static JsonObject IntegerLevels(JsonObject levels)
    {
        static JsonNode? Int(JsonNode? n) => n is JsonValue v && v.TryGetValue<string>(out var s) && long.TryParse(s, out var l) ? l : n;
        var pl = levels.DeepClone().AsObject();
        foreach (var (k, v) in pl.ToList())
        {
            if (v is JsonObject o) { foreach (var (ik, iv) in o.ToList()) o[ik] = Int(iv)?.DeepClone(); }
            else pl[k] = Int(v)?.DeepClone();
        }
        return pl;
    }

    // The old room's power levels for the new room: integers, and (in versions whose creators are privileged) no entry
    // for the creator. Without power levels the old defaults are spelled out.
    JsonObject NormalizedPowerLevels(JsonObject? old, RoomVersion version, string creator, IEnumerable<string> creators, string oldRoom)
    {
        var pl = old is null ? new JsonObject { ["users"] = new JsonObject { [creator] = Math.Min(100, UserLevel(oldRoom, creator)) } } : IntegerLevels(old);
        if (version.PrivilegedCreators && pl["users"] is JsonObject users)
            foreach (var u in creators) users.Remove(u);
        return pl;
    }
}

using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Events;
using Conduit.Common.Http;
using Conduit.Common.Routing;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Conduit.Rooms;

/// <summary>POST /createRoom (spec: client-server-api, "Creation"). Local invitees' invites are part of the room's
/// first events; another server's users are invited afterwards as POST /invite does it (PUT /v2/invite to their
/// server, which signs the event), in order, a refusal failing the request as in Synapse (the room stays).</summary>
public sealed class CreateRoomEndpoint(RoomStore rooms, EventSender sender, RoomParams param, GlobalConfig config, RateLimits limits, RemoteMembership remote)
{
    public void Map(IEndpointRouteBuilder app) => app.Map(RouteTable.CreateRoom, CreateRoom);

    async Task CreateRoom(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var body = await ctx.Request.ReadJsonObjectAsync();
        var versionId = body.OptString("room_version") ?? config.DefaultRoomVersion;
        var version = RoomVersion.Find(versionId) ?? throw Err.UnsupportedRoomVersion($"Room version {versionId} is not supported here");
        var preset = body.OptString("preset") ?? (body.OptString("visibility") == "public" ? "public_chat" : "private_chat");
        if (preset is not ("public_chat" or "private_chat" or "trusted_private_chat")) throw Err.BadJson("Unknown preset");
        var visibilityParam = body.OptString("visibility") ?? "private";
        if (visibilityParam is not ("public" or "private")) throw Err.BadJson("visibility must be 'public' or 'private'");
        var isDirect = body.OptBool("is_direct") ?? false;
        var invites = RoomParams.UserIds(body["invite"], "invite");

        string? alias = null;
        if (body.OptString("room_alias_name") is { } aliasName)
        {
            alias = $"#{aliasName}:{config.ServerName}";
            if (aliasName.Length == 0 || aliasName.Contains(':') || aliasName.Any(char.IsWhiteSpace) || !Ids.TrySplit(alias, '#', out _, out _))
                throw Err.InvalidParam("Invalid room_alias_name");
            if (rooms.AliasTarget(alias) is not null) throw Err.RoomInUse();
            Common.Appservices.AppserviceRegistration.RequireAliasAllowed(config.Appservices(), alias, c.AppserviceId);
        }
        foreach (var invitee in invites)
            if (AuthRules.IsLocal(invitee, config.ServerName)) await param.RequireLocalUser(invitee, ctx.RequestAborted);

        // rc_room_creation, and the invites it sends count as invites by this user and to each invitee (Synapse
        // counts them only per room, which lets createRoom deliver invites past the per-invitee limit).
        var charges = new List<Charge> { new(limits.RoomCreation, c.UserId) };
        if (invites.Count > 0) charges.Add(new(limits.InvitesPerIssuer, c.UserId, invites.Count));
        charges.AddRange(invites.Select(i => new Charge(limits.InvitesPerUser, i)));
        limits.Take(ctx, c, [.. charges]);

        // v12: the room ID is derived from the create event, so EventSender computes it ("" here).
        var roomId = version.RoomIdFromCreateEvent ? "" : $"!{Ids.Random(18)}:{config.ServerName}";
        var events = new List<NewEvent>();
        events.Add(new NewEvent("m.room.create", "", CreateContent(body, version, c.UserId, preset, invites)));
        events.Add(new NewEvent("m.room.member", c.UserId, await param.MemberContent(c.UserId, "join", ctx.RequestAborted)));

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
        async Task<JsonObject> InviteContent(string invitee)
        {
            var content = await param.InviteContent(invitee, ctx.RequestAborted);
            if (isDirect) content["is_direct"] = true;
            return content;
        }
        foreach (var i in invites.Where(i => AuthRules.IsLocal(i, config.ServerName)))
            events.Add(new NewEvent("m.room.member", i, await InviteContent(i)));

        roomId = (await sender.SendAsync(roomId, c.UserId, events, null, ctx.RequestAborted))[0].RoomId;
        if (alias is not null) rooms.PutAlias(alias, roomId, c.UserId);
        if (visibilityParam == "public") rooms.SetDirectoryVisibility(roomId, true);
        // An invite event of ours alone would never reach the invitee's server (it is not in the room yet).
        foreach (var i in invites.Where(i => !AuthRules.IsLocal(i, config.ServerName)))
            await remote.InviteAsync(roomId, c.UserId, i, await InviteContent(i), ctx.RequestAborted);
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
            var additional = RoomParams.UserIds(create["additional_creators"], "additional_creators");
            if (preset == "trusted_private_chat") additional.AddRange(invites);
            additional = additional.Where(u => u != creator).Distinct().ToList();
            if (additional.Count > 0) create["additional_creators"] = new JsonArray(additional.Select(u => (JsonNode)u).ToArray());
            else create.Remove("additional_creators");
        }
        return create;
    }
}

using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Events;
using Conduit.Common.Http;
using Conduit.Protos.Keys;
using Microsoft.AspNetCore.Http;

namespace Conduit.Rooms;

/// <summary>
/// The request-parameter rules of the rooms endpoints, each in one place: a room ID (any room version, v12 included),
/// a room ID or alias, a user ID, and the content of a member event a local user sends. Every endpoint uses these;
/// a copy of a rule in one endpoint drifts (a pre-v12 room ID check once kept v12 rooms from being upgraded).
/// </summary>
public sealed class RoomParams(RoomStore rooms, GlobalConfig config, Keys.KeysClient keys, AliasLookup aliases)
{
    /// <summary>The {roomId} path parameter: a room ID of any room version, else M_INVALID_PARAM.</summary>
    public static string RoomId(HttpContext ctx)
    {
        var id = ctx.Route("roomId");
        return Ids.IsRoomId(id) ? id : throw Err.InvalidParam("Invalid room ID");
    }

    /// <summary>The {roomId} path parameter of a room this server knows, else M_INVALID_PARAM or M_NOT_FOUND.</summary>
    public string KnownRoomId(HttpContext ctx)
    {
        var id = RoomId(ctx);
        RequireRoom(id);
        return id;
    }

    /// <summary>M_NOT_FOUND unless this server knows the room.</summary>
    public void RequireRoom(string roomId)
    {
        if (rooms.Info(roomId) is null) throw Err.NotFound("Unknown room");
    }

    /// <summary>
    /// The {roomIdOrAlias} path parameter resolved to a room ID: an alias through the directory and the appservices
    /// (<see cref="AliasLookup"/>; M_NOT_FOUND when unknown), a room ID as it is; anything else M_INVALID_PARAM.
    /// </summary>
    public async Task<string> RoomIdOrAliasAsync(HttpContext ctx)
    {
        var target = ctx.Route("roomIdOrAlias");
        if (target.StartsWith('#'))
        {
            if (!Ids.TrySplit(target, '#', out _, out _)) throw Err.InvalidParam("Invalid room alias");
            return await aliases.TargetAsync(target, ctx.RequestAborted) ?? throw Err.NotFound("Room alias not found");
        }
        return Ids.IsRoomId(target) ? target : throw Err.InvalidParam("Expected a room ID or alias");
    }

    /// <summary>A user ID given by the client (in a body or a path), else M_INVALID_PARAM naming <paramref name="what"/>.</summary>
    public static string UserId(string? value, string what)
        => value is not null && Ids.IsUserId(value) ? value : throw Err.InvalidParam($"Invalid {what}: expected a user ID");

    /// <summary>
    /// A list of user IDs given by the client (createRoom's invite, additional_creators), without duplicates: an entry
    /// that is not a string is M_BAD_JSON, a string that is not a user ID M_INVALID_PARAM.
    /// </summary>
    public static List<string> UserIds(JsonNode? list, string what)
    {
        if (list is null) return [];
        if (list is not JsonArray array) throw Err.BadJson($"{what} must be an array of user IDs");
        var result = new List<string>();
        foreach (var n in array)
        {
            if (n is not JsonValue v || !v.TryGetValue<string>(out var s)) throw Err.BadJson($"{what} must be an array of user IDs");
            result.Add(UserId(s, what));
        }
        return result.Distinct().ToList();
    }

    /// <summary>The room's version, or M_NOT_FOUND for a room this server does not know.</summary>
    public RoomVersion VersionOf(string roomId) => rooms.VersionOf(roomId) ?? throw Err.NotFound("Unknown room");

    /// <summary>M_NOT_FOUND unless the local user exists and is active.</summary>
    public async Task RequireLocalUser(string userId, CancellationToken ct)
    {
        var p = await keys.GetProfileAsync(new GetProfileRequest { UserId = userId }, cancellationToken: ct);
        if (p.Deactivated) throw Err.NotFound($"User {userId} is deactivated");
    }

    /// <summary>
    /// The content of a member event for <paramref name="userId"/>: the membership and, for a local user, the
    /// user's profile (displayname, avatar_url).
    /// </summary>
    public async Task<JsonObject> MemberContent(string userId, string membership, CancellationToken ct)
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

    /// <summary>An invite's member content: local invitees must exist; remote ones need federation (not yet).</summary>
    public async Task<JsonObject> InviteContent(string userId, CancellationToken ct)
    {
        if (AuthRules.IsLocal(userId, config.ServerName))
        {
            await RequireLocalUser(userId, ct);
            return await MemberContent(userId, "invite", ct);
        }
        if (!config.AllowFederation) throw Err.Forbidden("Inviting users of other servers needs federation, which is off (allow_federation = false)");
        return new JsonObject { ["membership"] = "invite" };
    }

    /// <summary>A RoomEventFilter JSON in the "filter" query parameter, if any (/messages, /context).</summary>
    public static RoomEventFilter? FilterParam(HttpContext ctx)
    {
        if (ctx.Request.Query("filter") is not { } fs) return null;
        return RoomEventFilter.Parse(RequestJson.ParseObject(fs, "filter"));
    }

    /// <summary>A non-negative integer query parameter, clamped to <paramref name="max"/>; M_INVALID_PARAM otherwise.</summary>
    public static int LimitParam(HttpContext ctx, int dflt, int max)
    {
        var limit = dflt;
        if (ctx.Request.Query("limit") is { } ls && (!int.TryParse(ls, out limit) || limit < 0)) throw Err.InvalidParam("Invalid limit");
        return Math.Clamp(limit, 0, max);
    }

    /// <summary>
    /// A pagination token: "t{pos}", a point in the room stream between pos and pos+1; a /sync next_batch
    /// ("s{pos}_...") is accepted as well.
    /// </summary>
    public static long? ParsePoint(string? token)
    {
        if (string.IsNullOrEmpty(token)) return null;
        var t = token[0] is 't' or 's' ? token[1..] : token;
        var end = t.IndexOf('_');
        if (end >= 0) t = t[..end];
        return long.TryParse(t, out var p) && p >= 0 ? p : throw Err.InvalidParam("Invalid pagination token");
    }
}

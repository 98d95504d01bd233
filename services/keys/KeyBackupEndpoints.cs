using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Http;
using Conduit.Common.Routing;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Conduit.Keys;

/// <summary>
/// Server-side key backups (spec: client-server-api, "Server-side key backups"): versions under
/// /room_keys/version, keys under /room_keys/keys for all rooms, one room or one session. Every call names the
/// caller's own backups only. A body is read and checked whole before anything is written, and what a request
/// writes is one batch (<see cref="KeyBackupStore"/>): it takes full effect or none.
/// </summary>
public sealed class KeyBackupEndpoints(KeyBackupStore backups)
{
    public void Map(IEndpointRouteBuilder app)
    {
        app.Map(RouteTable.RoomKeysVersion, Versions);
        app.Map(RouteTable.RoomKeysVersionById, VersionById);
        app.Map(RouteTable.RoomKeys, ctx => Keys(ctx, KeysLevel.All));
        app.Map(RouteTable.RoomKeysRoom, ctx => Keys(ctx, KeysLevel.Room));
        app.Map(RouteTable.RoomKeysSession, ctx => Keys(ctx, KeysLevel.Session));
    }

    // ---- versions

    async Task Versions(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        if (HttpMethods.IsGet(ctx.Request.Method))
        {
            var current = backups.Current(c.UserId) ?? throw Err.NotFound("No current backup version");
            await ctx.Response.WriteJsonAsync(current.ToJson());
            return;
        }
        var (algorithm, authData) = VersionBody(await ctx.Request.ReadJsonObjectAsync());
        await ctx.Response.WriteJsonAsync(new JsonObject { ["version"] = backups.CreateVersion(c.UserId, algorithm, authData) });
    }

    /// <summary>The algorithm and auth_data of POST and PUT /room_keys/version; any algorithm name is kept as given.</summary>
    static (string Algorithm, JsonObject AuthData) VersionBody(JsonObject body)
    {
        var algorithm = body.ReqString("algorithm");
        if (algorithm.Length == 0) throw Err.InvalidParam("'algorithm' must not be empty");
        return (algorithm, body.OptObject("auth_data") ?? throw Err.MissingParam("Missing 'auth_data'"));
    }

    async Task VersionById(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var version = ctx.Route("version");
        switch (ctx.Request.Method)
        {
            case "GET":
                var v = backups.Get(c.UserId, version) ?? throw Err.NotFound("Unknown backup version");
                await ctx.Response.WriteJsonAsync(v.ToJson());
                break;
            case "PUT":
                var body = await ctx.Request.ReadJsonObjectAsync();
                var (algorithm, authData) = VersionBody(body);
                // Only auth_data changes; the body's version, if any, must name the version in the path.
                if (body.OptString("version") is { } named && named != version) throw Err.InvalidParam("Version in body does not match");
                backups.UpdateVersion(c.UserId, version, algorithm, authData);
                await ctx.Response.WriteJsonAsync(new JsonObject());
                break;
            default:
                backups.DeleteVersion(c.UserId, version);
                await ctx.Response.WriteJsonAsync(new JsonObject());
                break;
        }
    }

    // ---- keys

    enum KeysLevel { All, Room, Session }

    async Task Keys(HttpContext ctx, KeysLevel level)
    {
        var c = Caller.Required(ctx);
        var roomId = level == KeysLevel.All ? null : RoomId(ctx.Route("roomId"));
        var sessionId = level == KeysLevel.Session ? SessionId(ctx.Route("sessionId")) : null;
        var version = ctx.Request.Query("version") ?? throw Err.MissingParam("Missing 'version' query parameter");
        switch (ctx.Request.Method)
        {
            case "GET":
                var found = backups.GetKeys(c.UserId, version, roomId, sessionId);
                await ctx.Response.WriteJsonAsync(level switch
                {
                    KeysLevel.Session => found.Count > 0 ? JsonNode.Parse(found[0].Data)! : throw Err.NotFound("Key not found"),
                    // A room without keys is {"sessions": {}} (spec; Synapse answers the same), not an error.
                    KeysLevel.Room => SessionsJson(found),
                    _ => new JsonObject { ["rooms"] = RoomsJson(found) },
                });
                break;
            case "PUT":
                var body = await ctx.Request.ReadJsonObjectAsync();
                var keys = level switch
                {
                    KeysLevel.Session => [(roomId!, sessionId!, BackupKey.FromJson(body))],
                    KeysLevel.Room => Sessions(roomId!, body),
                    _ => Rooms(body),
                };
                await ctx.Response.WriteJsonAsync(backups.PutKeys(c.UserId, version, keys).ToJson());
                break;
            default:
                await ctx.Response.WriteJsonAsync(backups.DeleteKeys(c.UserId, version, roomId, sessionId).ToJson());
                break;
        }
    }

    static string RoomId(string roomId) => Ids.IsRoomId(roomId) ? roomId : throw Err.InvalidParam("Invalid room ID");

    // Megolm session IDs are 43 characters; the bound keeps a storage key of client text small.
    static string SessionId(string sessionId)
        => sessionId.Length > 0 && Ids.FitsBytes(sessionId) ? sessionId : throw Err.InvalidParam("Invalid session ID");

    /// <summary>The keys of PUT /room_keys/keys: {rooms: {roomId: {sessions: {sessionId: KeyBackupData}}}}.</summary>
    static List<(string, string, BackupKey)> Rooms(JsonObject body)
    {
        var rooms = body.OptObject("rooms") ?? throw Err.MissingParam("Missing 'rooms'");
        var keys = new List<(string, string, BackupKey)>();
        foreach (var (roomId, room) in rooms)
            keys.AddRange(Sessions(RoomId(roomId), room as JsonObject ?? throw Err.BadJson("Each room in 'rooms' must be an object")));
        return keys;
    }

    /// <summary>The keys of PUT /room_keys/keys/{roomId}: {sessions: {sessionId: KeyBackupData}}.</summary>
    static List<(string, string, BackupKey)> Sessions(string roomId, JsonObject room)
    {
        var sessions = room.OptObject("sessions") ?? throw Err.MissingParam("Missing 'sessions'");
        return sessions.Select(s => (roomId, SessionId(s.Key), BackupKey.FromJson(s.Value as JsonObject ?? throw Err.BadJson("Each session's key data must be an object")))).ToList();
    }

    static JsonObject SessionsJson(IEnumerable<BackupSession> found)
    {
        var sessions = new JsonObject();
        foreach (var s in found) sessions[s.SessionId] = JsonNode.Parse(s.Data);
        return new JsonObject { ["sessions"] = sessions };
    }

    // The store returns sessions in key order, so each room's sessions are together.
    static JsonObject RoomsJson(List<BackupSession> found)
    {
        var rooms = new JsonObject();
        foreach (var room in found.GroupBy(s => s.RoomId)) rooms[room.Key] = SessionsJson(room);
        return rooms;
    }
}

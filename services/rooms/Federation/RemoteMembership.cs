using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Events;
using Conduit.Common.Http;
using Conduit.Rooms.Rules;
using Microsoft.Extensions.Logging;

namespace Conduit.Rooms;

/// <summary>
/// Joining a room this server is not in, through a server that is (spec: server-server-api, "Joining Rooms"):
/// make_join for a template, our event built from it and signed, send_join, then the room imported from the state
/// and auth chain the resident server answered (<see cref="EventSender.ImportJoinAsync"/>). The candidate servers are
/// tried in turn: those the client named (via / server_name), the alias's servers, the room ID's server.
/// </summary>
public sealed partial class RemoteMembership(RoomStore rooms, EventSender sender, RemoteServers remote, GlobalConfig config, ILogger<RemoteMembership> log)
{
    static readonly string VersionQuery = string.Join('&', RoomVersion.All.Select(v => "ver=" + Uri.EscapeDataString(v.Id)));

    /// <summary>Whether a join of this room has to go through another server: we know nothing of it, or no local user is in it.</summary>
    public bool NeedsRemoteJoin(string roomId)
        => rooms.Info(roomId) is null || !rooms.JoinedMembers(roomId).Any(u => Ids.ServerOf(u) == config.ServerName);

    public async Task JoinAsync(string roomId, string userId, JsonObject content, IEnumerable<string> servers, CancellationToken ct)
    {
        var candidates = servers.Where(s => s != config.ServerName && Ids.IsValidServerName(s)).Distinct().ToList();
        if (candidates.Count == 0) throw Err.NotFound("No server to join this room through");
        MatrixException? last = null;
        foreach (var server in candidates)
        {
            var made = await remote.SendAsync(server, "GET",
                $"/_matrix/federation/v1/make_join/{Uri.EscapeDataString(roomId)}/{Uri.EscapeDataString(userId)}?{VersionQuery}", null, ct);
            if (!made.Ok)
            {
                LogAttempt(log, "make_join", server, roomId, made.ToString());
                last = Failure(made);
                continue;
            }
            var versionId = ContentField.String(made.Body, "room_version") ?? "1";
            if (RoomVersion.Find(versionId) is not { } version || made.Body!["event"] is not JsonObject template)
            {
                last = Err.UnsupportedRoomVersion($"Unsupported room version {versionId}");
                continue;
            }
            var join = Build(template, roomId, userId, content, version);
            if (join is null)
            {
                last = Err.Unknown("The resident server's join template is not usable");
                continue;
            }
            await sender.SignForeignAsync(join, version, ct);
            var eventId = version.EventIdFormat == EventIdFormat.ServerGenerated ? join["event_id"]!.GetValue<string>() : EventHashing.ComputeEventId(join, version);
            var sent = await remote.SendAsync(server, "PUT",
                $"/_matrix/federation/v2/send_join/{Uri.EscapeDataString(roomId)}/{Uri.EscapeDataString(eventId)}", join, ct, TimeSpan.FromMinutes(5));
            if (!sent.Ok)
            {
                LogAttempt(log, "send_join", server, roomId, sent.ToString());
                last = Failure(sent);
                continue;
            }
            var body = sent.Body!;
            // A restricted join comes back signed by the resident server too (send_join v2, "event").
            var finalJoin = body["event"] is JsonObject signed && IdOf(signed, version) == eventId ? signed : join;
            var state = (body["state"] as JsonArray)?.OfType<JsonObject>().ToList() ?? [];
            var chain = (body["auth_chain"] as JsonArray)?.OfType<JsonObject>().ToList() ?? [];
            var keys = await remote.KeysForAsync(state.Concat(chain).Append(finalJoin), ct);
            await sender.ImportJoinAsync(roomId, version, finalJoin, state, chain, keys, ct);
            LogJoined(log, roomId, server, state.Count, chain.Count);
            return;
        }
        throw last ?? Err.NotFound("No server could be reached to join this room");
    }

    static string? IdOf(JsonObject pdu, RoomVersion version)
        => version.EventIdFormat == EventIdFormat.ServerGenerated ? ContentField.String(pdu, "event_id") : EventHashing.ComputeEventId(pdu, version);

    /// <summary>Our join event from the template: its graph fields as given, the content ours (membership join, and the
    /// authorising user of a restricted join as the resident chose it), origin and time ours.</summary>
    JsonObject? Build(JsonObject template, string roomId, string userId, JsonObject content, RoomVersion version)
    {
        if (ContentField.String(template, "room_id") != roomId || ContentField.String(template, "sender") != userId
            || ContentField.String(template, "state_key") != userId || ContentField.String(template, "type") != "m.room.member"
            || template["prev_events"] is not JsonArray prev || template["auth_events"] is not JsonArray auth
            || template["depth"] is not JsonValue depth || !depth.TryGetValue(out long _))
            return null;
        var c = content.DeepClone().AsObject();
        c["membership"] = "join";
        if (ContentField.String(template["content"] as JsonObject, "join_authorised_via_users_server") is { } via) c["join_authorised_via_users_server"] = via;
        var pdu = new JsonObject
        {
            ["auth_events"] = auth.DeepClone(),
            ["content"] = c,
            ["depth"] = depth.DeepClone(),
            ["origin"] = config.ServerName,
            ["origin_server_ts"] = Ids.NowMs(),
            ["prev_events"] = prev.DeepClone(),
            ["room_id"] = roomId,
            ["sender"] = userId,
            ["state_key"] = userId,
            ["type"] = "m.room.member",
        };
        if (version.EventIdFormat == EventIdFormat.ServerGenerated) pdu["event_id"] = $"${Ids.Random(24)}:{config.ServerName}";
        EventHashing.AddContentHash(pdu);
        return pdu;
    }

    /// <summary>The other server's refusal as the client sees it: its Matrix error if it gave one, else 502-like M_UNKNOWN.</summary>
    static MatrixException Failure(RemoteReply r)
    {
        if (r.Status is >= 400 and < 500 && r.ErrCode.Length > 0)
            return new MatrixException(r.ErrCode, r.Status, ContentField.String(r.Body, "error") ?? "Refused by the resident server");
        return new MatrixException("M_UNKNOWN", 502, "The resident server could not be reached: " + r);
    }

    /// <summary>Resolves an alias of another server (GET /query/directory): its room ID and the servers in the room.</summary>
    public async Task<(string RoomId, List<string> Servers)> ResolveAliasAsync(string alias, CancellationToken ct)
    {
        var server = Ids.ServerOf(alias);
        var reply = await remote.SendAsync(server, "GET", $"/_matrix/federation/v1/query/directory?room_alias={Uri.EscapeDataString(alias)}", null, ct);
        if (reply.Status == 404 || (reply.Ok && ContentField.String(reply.Body, "room_id") is null)) throw Err.NotFound("Room alias not found");
        if (!reply.Ok) throw Failure(reply);
        var roomId = ContentField.String(reply.Body, "room_id")!;
        if (!Ids.IsRoomId(roomId)) throw Err.NotFound("Room alias not found");
        return (roomId, [.. ContentField.Strings(reply.Body, "servers").Prepend(server)]);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "{Step} to {Server} for {RoomId} failed: {Error}")]
    static partial void LogAttempt(ILogger log, string step, string server, string roomId, string error);

    [LoggerMessage(Level = LogLevel.Information, Message = "Joined {RoomId} through {Server}: {State} state events, {Chain} in the auth chain")]
    static partial void LogJoined(ILogger log, string roomId, string server, int state, int chain);
}

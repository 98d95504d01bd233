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
public sealed partial class RemoteMembership(RoomStore rooms, EventSender sender, RemoteServers remote, ClientEvents format, GlobalConfig config, ILogger<RemoteMembership> log)
{
    static readonly string VersionQuery = string.Join('&', RoomVersion.All.Select(v => "ver=" + Uri.EscapeDataString(v.Id)));

    /// <summary>Whether a join of this room has to go through another server: we know nothing of it, or no local user is in it.</summary>
    public bool NeedsRemoteJoin(string roomId)
        => rooms.Info(roomId) is null || !rooms.JoinedMembers(roomId).Any(u => Ids.ServerOf(u) == config.ServerName);

    public Task JoinAsync(string roomId, string userId, JsonObject content, IEnumerable<string> servers, CancellationToken ct)
        => HandshakeAsync(roomId, userId, content, servers, "join", "v2/send_join", TimeSpan.FromMinutes(5), async (server, version, join, eventId, body) =>
        {
            // A restricted join comes back signed by the resident server too (send_join v2, "event").
            var finalJoin = body["event"] is JsonObject signed && EventHashing.TryEventId(signed, version) == eventId ? signed : join;
            var state = (body["state"] as JsonArray)?.OfType<JsonObject>().ToList() ?? [];
            var chain = (body["auth_chain"] as JsonArray)?.OfType<JsonObject>().ToList() ?? [];
            var keys = await remote.KeysForAsync(state.Concat(chain).Append(finalJoin), ct);
            await sender.ImportJoinAsync(roomId, version, finalJoin, state, chain, keys, ct);
            LogJoined(log, roomId, server, state.Count, chain.Count);
        }, ct);

    /// <summary>
    /// The two steps every membership change through another server takes (spec: server-server-api, "Joining Rooms",
    /// "Leaving Rooms", "Knocking on rooms"): make_{membership} for a template, our event built from it and signed,
    /// then send; the candidate servers are tried in turn until one takes it, and <paramref name="done"/> stores the
    /// outcome. The error of the last server tried is the client's when none does.
    /// </summary>
    async Task HandshakeAsync(string roomId, string userId, JsonObject content, IEnumerable<string> servers, string membership, string sendPath,
        TimeSpan sendTimeout, Func<string, RoomVersion, JsonObject, string, JsonObject, Task> done, CancellationToken ct)
    {
        var candidates = servers.Where(s => s != config.ServerName && Ids.IsValidServerName(s)).Distinct().ToList();
        if (candidates.Count == 0) throw Err.NotFound($"No server to {membership} this room through");
        // A leave works in every room version; join and knock say which versions this server can take.
        var versions = membership == "leave" ? "" : "?" + VersionQuery;
        MatrixException? last = null;
        foreach (var server in candidates)
        {
            var made = await remote.SendAsync(server, "GET",
                $"/_matrix/federation/v1/make_{membership}/{Uri.EscapeDataString(roomId)}/{Uri.EscapeDataString(userId)}{versions}", null, ct);
            if (!made.Ok)
            {
                LogAttempt(log, "make_" + membership, server, roomId, made.ToString());
                last = Failure(made);
                continue;
            }
            var versionId = ContentField.String(made.Body, "room_version") ?? "1";
            if (RoomVersion.Find(versionId) is not { } version || made.Body!["event"] is not JsonObject template)
            {
                last = Err.UnsupportedRoomVersion($"Unsupported room version {versionId}");
                continue;
            }
            if (Build(template, roomId, userId, content, version, membership) is not { } ev)
            {
                last = Err.Unknown($"The resident server's {membership} template is not usable");
                continue;
            }
            await sender.SignForeignAsync(ev, version, ct);
            var eventId = EventHashing.TryEventId(ev, version)!;
            var sent = await remote.SendAsync(server, "PUT",
                $"/_matrix/federation/{sendPath}/{Uri.EscapeDataString(roomId)}/{Uri.EscapeDataString(eventId)}", ev, ct, sendTimeout);
            if (!sent.Ok)
            {
                LogAttempt(log, sendPath, server, roomId, sent.ToString());
                last = Failure(sent);
                continue;
            }
            await done(server, version, ev, eventId, sent.Body!);
            return;
        }
        throw last ?? Err.NotFound($"No server could be reached to {membership} this room");
    }

    /// <summary>Our join event from the template: its graph fields as given, the content ours (membership join, and the
    /// authorising user of a restricted join as the resident chose it), origin and time ours.</summary>
    JsonObject? Build(JsonObject template, string roomId, string userId, JsonObject content, RoomVersion version, string membership)
    {
        if (ContentField.String(template, "room_id") != roomId || ContentField.String(template, "sender") != userId
            || ContentField.String(template, "state_key") != userId || ContentField.String(template, "type") != "m.room.member"
            || template["prev_events"] is not JsonArray prev || template["auth_events"] is not JsonArray auth
            || template["depth"] is not JsonValue depth || !depth.TryGetValue(out long _))
            return null;
        var c = content.DeepClone().AsObject();
        c["membership"] = membership;
        if (membership == "join" && ContentField.String(template["content"] as JsonObject, "join_authorised_via_users_server") is { } via) c["join_authorised_via_users_server"] = via;
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
        try { EventHashing.AddContentHash(pdu); }
        catch (Conduit.Common.Crypto.CanonicalJsonException) { return null; } // a template that is not canonical JSON
        return pdu;
    }

    /// <summary>
    /// The other server's refusal as the client sees it: its Matrix error if it gave one; a server that cannot be
    /// reached or fails is, from here, a room that cannot be found (404 M_NOT_FOUND, as Conduit answers).
    /// </summary>
    static MatrixException Failure(RemoteReply r)
    {
        if (r.Status is >= 400 and < 500 && r.ErrCode.Length > 0)
            return new MatrixException(r.ErrCode, r.Status, ContentField.String(r.Body, "error") ?? "Refused by the resident server");
        return Err.NotFound("The other server could not be reached: " + r);
    }

    /// <summary>
    /// Invites a user of another server (spec: server-server-api, "Inviting to a room", PUT /v2/invite): our event goes
    /// to the invitee's server, which signs it too; with both signatures it is stored and sent to the room like any of
    /// our events.
    /// </summary>
    public async Task InviteAsync(string roomId, string inviter, string invitee, JsonObject content, CancellationToken ct)
    {
        var (pdu, eventId, version) = await sender.BuildSignedAsync(roomId, inviter, invitee, "invite", content, ct);
        var server = Ids.ServerOf(invitee);
        var reply = await remote.SendAsync(server, "PUT", $"/_matrix/federation/v2/invite/{Uri.EscapeDataString(roomId)}/{Uri.EscapeDataString(eventId)}", new JsonObject
        {
            ["event"] = pdu,
            ["room_version"] = version.Id,
            ["invite_room_state"] = format.StrippedState(roomId, inviter),
        }, ct);
        if (!reply.Ok || reply.Body!["event"] is not JsonObject signed) throw Failure(reply);
        if (EventHashing.TryEventId(signed, version) != eventId) throw Err.Unknown("The invitee's server changed the invite");
        var keys = await remote.KeysForAsync([signed], ct);
        var verify = keys.For(signed, version);
        var countersigned = signed["signatures"]?[server] is JsonObject byServer && byServer.Any(kv =>
            verify(server, kv.Key) is { } key && EventHashing.VerifySignature(signed, version, server, kv.Key, key));
        if (!countersigned) throw Err.Unknown("The invitee's server did not sign the invite");
        var result = await sender.AcceptRemoteAsync(signed, verify, ct);
        if (result.Outcome != IngestOutcome.Accepted) throw Err.Forbidden("The invite was not accepted: " + result.Reason);
    }

    /// <summary>
    /// Leaves (rejects an invite to) a room this server is not in, through a server that is (spec: "Leaving Rooms
    /// (Rejecting Invites)", make_leave then send_leave v2); the leave is kept out of band as the user's membership.
    /// </summary>
    public Task LeaveAsync(string roomId, string userId, IEnumerable<string> servers, CancellationToken ct)
        => HandshakeAsync(roomId, userId, [], servers, "leave", "v2/send_leave", RemoteServers.DefaultTimeout,
            (_, _, leave, eventId, _) => sender.StoreOutOfBandAsync(roomId, leave, eventId, userId, "leave", null, ct), ct);

    /// <summary>
    /// Knocks on a room this server is not in (spec: server-server-api, "Knocking on rooms": make_knock, then
    /// send_knock); the knock is kept out of band as the user's membership, with the stripped state the resident
    /// server answered, for /sync's knock section.
    /// </summary>
    public Task KnockAsync(string roomId, string userId, JsonObject content, IEnumerable<string> servers, CancellationToken ct)
        => HandshakeAsync(roomId, userId, content, servers, "knock", "v1/send_knock", RemoteServers.DefaultTimeout,
            (_, _, knock, eventId, body) => sender.StoreOutOfBandAsync(roomId, knock, eventId, userId, "knock", body["knock_room_state"], ct), ct);

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

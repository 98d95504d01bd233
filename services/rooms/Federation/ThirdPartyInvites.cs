using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Http;
using Conduit.Rooms.Rules;
using Microsoft.Extensions.Logging;

namespace Conduit.Rooms;

/// <summary>
/// Third-party invites across servers (spec: server-server-api, "Third-party invites"; client-server-api, module
/// "Third-party invites"). An identity server tells the invitee's server of a binding (PUT /3pid/onbind, not signed:
/// identity servers have no server keys); that server asks the inviting user's server to exchange each pending
/// m.room.third_party_invite for an invite (PUT /exchange_third_party_invite/{roomId}, X-Matrix), or sends the invite
/// itself when the inviting user is one of its own. The resident server checks the identity server's signature on
/// <c>signed</c> with the room's m.room.third_party_invite keys and sends the invite as the inviting user through the
/// ordinary invite path (auth rules invite.1, persistence, /v2/invite to the invitee's server, fan-out).
/// Before that, the identity server is asked whether the key is still valid (<see cref="IdentityKeyCheck"/>).
/// </summary>
public sealed partial class ThirdPartyInvites(RoomStore rooms, EventSender sender, RemoteMembership membership, RemoteServers remote,
    IdentityKeyCheck keyCheck, GlobalConfig config, ILogger<ThirdPartyInvites> log)
{
    /// <summary>Most invites one /3pid/onbind request gets handled (one outbound request each at most).</summary>
    public const int MaxInvitesPerBind = 100;
    static readonly TimeSpan ExchangeTimeout = TimeSpan.FromSeconds(30);
    /// <summary>No exchange is started after this long into one /3pid/onbind: invites naming servers that never
    /// answer cannot hold the endpoint (one binding at a time) for 100 timeouts.</summary>
    static readonly TimeSpan BindBudget = TimeSpan.FromSeconds(90);

    /// <summary>One /3pid/onbind at a time: the endpoint is open to anyone, and each invite may cost a request to another server.</summary>
    readonly SemaphoreSlim _binding = new(1, 1);

    /// <summary>A partial m.room.member invite carrying an identity server's <c>signed</c> proof of a binding.</summary>
    public sealed record Claim(string RoomId, string Sender, string Invitee, JsonObject Signed, string Token);

    // ---- as the inviting user's server: PUT /exchange_third_party_invite/{roomId}

    /// <summary>
    /// Exchanges the third-party invite that <paramref name="body"/> (the partial invite event) proves for an invite of
    /// the bound user, sent by the inviting user. The room is known and the origin allowed by its ACL (the caller
    /// checked). 400 for a malformed body, 403 for any failed check.
    /// </summary>
    public Task ExchangeAsync(string origin, string roomId, JsonObject body, CancellationToken ct)
        => IssueAsync(origin, ParseExchange(body, roomId), ct);

    /// <summary>The claim in an exchange body (spec: the request body of exchange_third_party_invite); M_BAD_JSON otherwise.</summary>
    public static Claim ParseExchange(JsonObject body, string roomId)
    {
        if (ContentField.String(body, "type") != "m.room.member") throw Err.BadJson("type must be m.room.member");
        if (ContentField.String(body, "room_id") != roomId) throw Err.BadJson("room_id must be the room of the path");
        var inviter = ContentField.String(body, "sender");
        var invitee = ContentField.String(body, "state_key");
        if (inviter is null || !Ids.IsUserId(inviter)) throw Err.BadJson("sender must be a user ID");
        if (invitee is null || !Ids.IsUserId(invitee)) throw Err.BadJson("state_key must be a user ID");
        var content = ContentField.Object(body, "content");
        if (ContentField.String(content, "membership") != "invite") throw Err.BadJson("content.membership must be invite");
        if (ContentField.Object(ContentField.Object(content, "third_party_invite"), "signed") is not { } signed)
            throw Err.BadJson("content.third_party_invite.signed is required");
        if (ContentField.String(signed, "token") is not { } token || ContentField.String(signed, "mxid") is null)
            throw Err.BadJson("signed needs mxid and token");
        return new Claim(roomId, inviter, invitee, signed, token);
    }

    /// <summary>Checks the claim and sends the invite; an invitee already invited is left as it is (a retried exchange).</summary>
    async Task IssueAsync(string origin, Claim c, CancellationToken ct)
    {
        var thirdParty = Verify(origin, c);
        var current = rooms.MembershipOf(c.Invitee, c.RoomId)?.State;
        if (current == "invite") return;
        if (current is "join" or "ban") throw Err.Forbidden($"The user is already {(current == "join" ? "in" : "banned from")} the room");
        await keyCheck.CheckAsync(thirdParty, c.Signed, ct);
        // As Synapse: the display name is the room's, not the requester's (the invite shows what the inviter was shown).
        var content = new JsonObject
        {
            ["membership"] = "invite",
            ["third_party_invite"] = new JsonObject
            {
                ["display_name"] = ContentField.String(thirdParty, "display_name") ?? "",
                ["signed"] = c.Signed.DeepClone(),
            },
        };
        if (AuthRules.IsLocal(c.Invitee, config.ServerName))
            await sender.SendAsync(c.RoomId, c.Sender, [new NewEvent("m.room.member", c.Invitee, content)], null, ct);
        else await membership.InviteAsync(c.RoomId, c.Sender, c.Invitee, content, ct);
        LogExchanged(log, c.RoomId, c.Invitee, origin);
    }

    /// <summary>
    /// The resident server's checks of an exchange (spec: server-server-api, "Verifying the invite"), before the auth
    /// rules (invite.1) check the built event once more: the inviter is ours, the bound user the one invited and on
    /// the requesting server, and the room's m.room.third_party_invite for the token, sent by the inviter, has a
    /// public key that verifies <c>signed</c>. Answers that event's content.
    /// </summary>
    JsonObject Verify(string origin, Claim c)
    {
        if (!AuthRules.IsLocal(c.Sender, config.ServerName)) throw Err.Forbidden("The inviting user is not a user of this server");
        if (ContentField.String(c.Signed, "mxid") != c.Invitee) throw Err.Forbidden("signed.mxid is not the invited user");
        if (Ids.ServerOf(c.Invitee) != origin) throw Err.Forbidden("The invited user is not on the requesting server");
        var invite = rooms.StateEvent(c.RoomId, "m.room.third_party_invite", c.Token)
            ?? throw Err.Forbidden("No third-party invite with this token in the room");
        if (invite.Sender != c.Sender) throw Err.Forbidden("The third-party invite was sent by another user");
        if (!EventAuth.ThirdPartySignedVerifies(c.Signed, invite.Content))
            throw Err.Forbidden("signed is not signed by a key of the third-party invite");
        return invite.Content;
    }

    // ---- as the invited user's server: PUT /3pid/onbind

    /// <summary>
    /// The identity server's notice of a binding with its pending invites (spec: server-server-api, PUT /3pid/onbind):
    /// each valid invite of one of our users (at most <see cref="MaxInvitesPerBind"/>, duplicates once, none started
    /// after <see cref="BindBudget"/>) is exchanged, one after the other; invalid or refused ones are skipped (the
    /// identity server cannot act on them).
    /// </summary>
    public async Task OnBindAsync(JsonObject body, CancellationToken ct)
    {
        if (body["invites"] is not JsonArray invites) throw Err.BadJson("invites must be a list");
        if (!await _binding.WaitAsync(TimeSpan.Zero, ct)) throw Err.LimitExceeded("Another binding is being processed", 1000);
        try
        {
            var seen = new HashSet<(string, string, string)>();
            var started = System.Diagnostics.Stopwatch.StartNew();
            foreach (var entry in invites.Take(MaxInvitesPerBind))
            {
                if (BoundInvite(entry) is not { } c || !seen.Add((c.RoomId, c.Token, c.Invitee))) continue;
                if (started.Elapsed > BindBudget)
                {
                    LogBindOutOfTime(log, c.Invitee);
                    break;
                }
                await ExchangeForAsync(c, ct);
            }
        }
        finally
        {
            _binding.Release();
        }
    }

    /// <summary>One entry of onbind's invites as a claim, or null: the bound user ours and the one <c>signed</c> names.</summary>
    Claim? BoundInvite(JsonNode? entry)
    {
        if (entry is not JsonObject o) return null;
        var mxid = ContentField.String(o, "mxid");
        var roomId = ContentField.String(o, "room_id");
        var inviter = ContentField.String(o, "sender");
        if (mxid is null || !Ids.IsUserId(mxid) || !AuthRules.IsLocal(mxid, config.ServerName)) return null;
        if (roomId is null || !Ids.IsRoomId(roomId)) return null;
        if (inviter is null || !Ids.IsUserId(inviter) || !Ids.IsValidServerName(Ids.ServerOf(inviter))) return null;
        if (ContentField.Object(o, "signed") is not { } signed || ContentField.String(signed, "mxid") != mxid
            || ContentField.String(signed, "token") is not { } token) return null;
        return new Claim(roomId, inviter, mxid, signed, token);
    }

    /// <summary>
    /// Exchanges one bound invite: sent here when the inviter is one of our users, otherwise asked of the inviter's
    /// server, which is in the room (spec: "if the invited homeserver isn't in the room the invite came from, it will
    /// need to request the inviting homeserver to auth the event"). A failure is logged, not answered.
    /// </summary>
    async Task ExchangeForAsync(Claim c, CancellationToken ct)
    {
        try
        {
            if (AuthRules.IsLocal(c.Sender, config.ServerName))
            {
                await IssueAsync(config.ServerName, c, ct);
                return;
            }
            var server = Ids.ServerOf(c.Sender);
            var reply = await remote.SendAsync(server, "PUT", $"/_matrix/federation/v1/exchange_third_party_invite/{Uri.EscapeDataString(c.RoomId)}",
                ExchangeBody(c), ct, ExchangeTimeout);
            if (!reply.Ok) LogExchangeFailed(log, c.RoomId, c.Invitee, server, reply.ToString());
        }
        catch (MatrixException e)
        {
            LogExchangeFailed(log, c.RoomId, c.Invitee, config.ServerName, $"{e.ErrCode}: {e.Message}");
        }
    }

    /// <summary>The partial invite event of an exchange request (the resident server puts in the room's display name).</summary>
    static JsonObject ExchangeBody(Claim c) => new()
    {
        ["type"] = "m.room.member",
        ["room_id"] = c.RoomId,
        ["sender"] = c.Sender,
        ["state_key"] = c.Invitee,
        ["content"] = new JsonObject
        {
            ["membership"] = "invite",
            ["third_party_invite"] = new JsonObject { ["display_name"] = "", ["signed"] = c.Signed.DeepClone() },
        },
    };

    [LoggerMessage(Level = LogLevel.Warning, Message = "A binding of {Invitee} ran out of time: its remaining third-party invites are not exchanged")]
    static partial void LogBindOutOfTime(ILogger log, string invitee);

    [LoggerMessage(Level = LogLevel.Information, Message = "Third-party invite of {Invitee} to {RoomId} exchanged for {Origin}")]
    static partial void LogExchanged(ILogger log, string roomId, string invitee, string origin);

    [LoggerMessage(Level = LogLevel.Information, Message = "Third-party invite of {Invitee} to {RoomId} not exchanged by {Server}: {Error}")]
    static partial void LogExchangeFailed(ILogger log, string roomId, string invitee, string server, string error);
}

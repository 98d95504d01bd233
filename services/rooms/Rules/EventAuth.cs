using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Conduit.Common.Crypto;
using Conduit.Common;
using Conduit.Common.Events;

namespace Conduit.Rooms.Rules;

/// <summary>The outcome of an authorization check: allowed, or rejected with a reason.</summary>
public sealed record AuthResult(bool Allowed, string? Reason)
{
    public static readonly AuthResult Allow = new(true, null);

    public static AuthResult Deny(string reason) => new(false, reason);
}

/// <summary>
/// The authorization rules of room versions 1-12 (spec rooms/vN.md, "Authorisation rules";
/// rooms/fragments/v1-auth-rules.md, v3-auth-rules.md, v8-auth-rules.md).
/// Rule numbers in comments are given per version group because inserted and removed rules
/// renumber the list: "v1-5" (with the m.room.aliases rule 4), "v6-11" (aliases rule removed),
/// "v12" (new rule 2 for the room id).
///
/// Not checked here, because they need more than the auth state: signatures and hashes (the
/// receipt checks do that before auth), the shape of the event's own <c>auth_events</c> list
/// (duplicates, entries not selected by the auth events selection, rejected entries: rules
/// v1-11 2.1-2.3, v12 3.1-3.3; see <see cref="AuthTypesFor"/> for the selection). For
/// <c>join_authorised_via_users_server</c> only the presence of a signature from that server is
/// checked; verifying it needs the server's keys.
/// </summary>
public static class EventAuth
{
    private static readonly (string Type, string StateKey) CreateKey = ("m.room.create", "");
    private static readonly (string Type, string StateKey) PowerLevelsKey = ("m.room.power_levels", "");
    private static readonly (string Type, string StateKey) JoinRulesKey = ("m.room.join_rules", "");

    private static readonly string[] NamedLevelKeys =
        ["users_default", "events_default", "state_default", "ban", "redact", "kick", "invite"];

    /// <summary>
    /// Checks <paramref name="pdu"/> against the authorization rules of <paramref name="version"/>.
    /// <paramref name="authState"/> returns the full event JSON of the state entry with that
    /// (type, state_key) in the state the event is checked against, or null if there is none.
    /// In v12 it must still return the room's m.room.create event for ("m.room.create", "").
    /// </summary>
    public static AuthResult Check(
        JsonObject pdu,
        RoomVersion version,
        Func<(string Type, string StateKey), JsonObject?> authState)
    {
        ArgumentNullException.ThrowIfNull(pdu);
        ArgumentNullException.ThrowIfNull(version);
        ArgumentNullException.ThrowIfNull(authState);

        string? type = Str(pdu, "type");
        if (type is null)
        {
            return AuthResult.Deny("event has no type");
        }
        string? sender = Str(pdu, "sender");
        if (sender is null || !Ids.IsUserId(sender))
        {
            return AuthResult.Deny("sender is not a valid user ID");
        }
        if (pdu.TryGetPropertyValue("state_key", out var skNode) && skNode is not null && Str(pdu, "state_key") is null)
        {
            return AuthResult.Deny("state_key is not a string");
        }
        string? stateKey = Str(pdu, "state_key");
        string? roomId = Str(pdu, "room_id");
        var content = pdu["content"] as JsonObject ?? new JsonObject();

        // Rule 1 (all versions): m.room.create.
        if (type == "m.room.create")
        {
            return CheckCreate(pdu, version, sender, stateKey, roomId, content);
        }

        if (roomId is null)
        {
            return AuthResult.Deny("event has no room_id");
        }

        var create = authState(CreateKey);
        if (create is null)
        {
            // v1-11 2.4: there must be an m.room.create event among the auth events.
            return AuthResult.Deny("no m.room.create event in the auth state");
        }
        if (version.RoomIdFromCreateEvent)
        {
            // v12 2: the room id is the create event's id with '!' instead of '$'.
            string? createId = Str(create, "event_id");
            if (createId is null || createId.Length < 2 || roomId != "!" + createId[1..])
            {
                return AuthResult.Deny("room_id is not derived from the room's m.room.create event");
            }
        }

        // v1-11 2.5, v12 3.5: every auth event must be in the event's room. We check each entry
        // of the auth state that the selection algorithm would pick for this event.
        foreach (var key in AuthTypesFor(pdu, version, includeCreate: true))
        {
            var entry = key == CreateKey ? create : authState(key);
            if (entry is null)
            {
                continue;
            }
            if (version.RoomIdFromCreateEvent && key == CreateKey)
            {
                continue; // v12 create events have no room_id; checked above through the id.
            }
            if (Str(entry, "room_id") != roomId)
            {
                return AuthResult.Deny($"auth event {Str(entry, "event_id")} is from a different room");
            }
        }

        // v1-11 3, v12 4: m.federate = false keeps other servers out.
        if (create["content"] is JsonObject createContent
            && createContent["m.federate"] is JsonValue fed
            && fed.GetValueKind() == JsonValueKind.False
            && Ids.ServerOf(sender) != Ids.ServerOf(Str(create, "sender") ?? ""))
        {
            return AuthResult.Deny("room is not federated and sender is from a different server");
        }

        var levels = PowerLevels.FromEvents(version, create, authState(PowerLevelsKey));

        // v1-5 4: m.room.aliases special case.
        if (version.SpecialCaseAliasesAuth && type == "m.room.aliases")
        {
            if (stateKey is null)
            {
                return AuthResult.Deny("m.room.aliases event has no state_key");
            }
            return Ids.ServerOf(sender) == stateKey
                ? AuthResult.Allow
                : AuthResult.Deny("m.room.aliases state_key is not the sender's server");
        }

        // v1-5 5, v6-11 4, v12 5: m.room.member.
        if (type == "m.room.member")
        {
            return CheckMember(pdu, version, create, levels, sender, stateKey, content, authState);
        }

        // v1-5 6, v6-11 5, v12 6: the sender must be joined.
        string? senderMembership = Membership(authState(("m.room.member", sender)));
        if (senderMembership != "join")
        {
            return AuthResult.Deny("sender is not joined to the room");
        }

        long senderLevel = levels.UserLevel(sender);

        // v1-5 7, v6-11 6, v12 7: m.room.third_party_invite needs the invite level.
        if (type == "m.room.third_party_invite")
        {
            return senderLevel >= levels.NamedLevel("invite", 0)
                ? AuthResult.Allow
                : AuthResult.Deny("sender's power level is below the invite level");
        }

        // v1-5 8, v6-11 7, v12 8: the event type's required power level.
        long required = levels.EventLevel(type, stateKey is not null);
        if (required > senderLevel)
        {
            return AuthResult.Deny($"sender's power level {senderLevel} is below {required} required for {type}");
        }

        // v1-5 9, v6-11 8, v12 9: state keys starting with '@' are reserved for that user.
        if (stateKey is not null && stateKey.StartsWith('@') && stateKey != sender)
        {
            return AuthResult.Deny("state_key starts with '@' and is not the sender");
        }

        // v1-5 10, v6-11 9, v12 10: m.room.power_levels.
        if (type == "m.room.power_levels")
        {
            return CheckPowerLevels(version, levels, sender, senderLevel, content);
        }

        // v1-2 11: m.room.redaction needs the redact level or the same origin as the redacted event.
        if (type == "m.room.redaction" && version.EventIdFormat == EventIdFormat.ServerGenerated)
        {
            if (senderLevel >= levels.NamedLevel("redact", 50))
            {
                return AuthResult.Allow;
            }
            string? redacts = Str(pdu, "redacts");
            string? eventId = Str(pdu, "event_id");
            if (redacts is not null && eventId is not null && Ids.ServerOf(redacts) == Ids.ServerOf(eventId))
            {
                return AuthResult.Allow;
            }
            return AuthResult.Deny("sender may not redact events from another server");
        }

        return AuthResult.Allow;
    }

    /// <summary>
    /// The (type, state_key) pairs the auth events selection picks for this event
    /// (server-server API, "Auth events selection"): the create event (not in v12, unless
    /// <paramref name="includeCreate"/>), the power levels, the sender's membership and, for
    /// m.room.member, the target's membership, the join rules, the third-party invite and the
    /// authorising user's membership.
    /// </summary>
    public static IReadOnlyList<(string Type, string StateKey)> AuthTypesFor(
        JsonObject pdu,
        RoomVersion version,
        bool includeCreate = false)
    {
        ArgumentNullException.ThrowIfNull(pdu);
        ArgumentNullException.ThrowIfNull(version);
        var keys = new List<(string Type, string StateKey)>();
        string? type = Str(pdu, "type");
        if (type == "m.room.create")
        {
            return keys;
        }
        if (includeCreate || !version.RoomIdFromCreateEvent)
        {
            keys.Add(CreateKey);
        }
        keys.Add(PowerLevelsKey);
        if (Str(pdu, "sender") is { } sender)
        {
            keys.Add(("m.room.member", sender));
        }
        if (type == "m.room.member" && Str(pdu, "state_key") is { } target)
        {
            var content = pdu["content"] as JsonObject;
            string? membership = content is null ? null : Str(content, "membership");
            if (!keys.Contains(("m.room.member", target)))
            {
                keys.Add(("m.room.member", target));
            }
            if (membership is "join" or "invite" or "knock")
            {
                keys.Add(JoinRulesKey);
            }
            if (membership == "invite"
                && content?["third_party_invite"] is JsonObject tpi
                && tpi["signed"] is JsonObject signed
                && Str(signed, "token") is { } token)
            {
                keys.Add(("m.room.third_party_invite", token));
            }
            if (membership == "join"
                && version.RestrictedJoins
                && content is not null
                && Str(content, "join_authorised_via_users_server") is { } via
                && !keys.Contains(("m.room.member", via)))
            {
                keys.Add(("m.room.member", via));
            }
        }
        return keys;
    }

    // ---- m.room.create ----

    private static AuthResult CheckCreate(
        JsonObject pdu, RoomVersion version, string sender, string? stateKey, string? roomId, JsonObject content)
    {
        // The create event is a state event with an empty state key (m.room.create schema).
        if (stateKey != "")
        {
            return AuthResult.Deny("m.room.create must have an empty state_key");
        }
        // 1.1: no prev_events.
        if (PrevEventIds(pdu).Count > 0)
        {
            return AuthResult.Deny("m.room.create has prev_events");
        }
        if (version.RoomIdFromCreateEvent)
        {
            // v12 1.2: the room id is derived from the create event, so it carries none.
            if (pdu.ContainsKey("room_id"))
            {
                return AuthResult.Deny("m.room.create has a room_id");
            }
        }
        else
        {
            // v1-11 1.2: room id domain must be the sender's.
            if (roomId is null || !Ids.TrySplit(roomId, '!', out _, out string roomServer))
            {
                return AuthResult.Deny("room_id is not a valid room ID");
            }
            if (roomServer != Ids.ServerOf(sender))
            {
                return AuthResult.Deny("room_id domain does not match the sender's");
            }
        }
        // 1.3: a room_version, if present, must be known.
        if (content.TryGetPropertyValue("room_version", out var rv) && rv is not null)
        {
            if (rv is not JsonValue rvValue || !rvValue.TryGetValue(out string? rvs) || RoomVersion.Find(rvs) is null)
            {
                return AuthResult.Deny("unknown room_version");
            }
        }
        // v1-10 1.4: content.creator is required.
        if (version.CreatorInCreateContent && !content.ContainsKey("creator"))
        {
            return AuthResult.Deny("m.room.create has no creator");
        }
        // v12 1.4: additional_creators must be an array of valid user ids.
        if (version.PrivilegedCreators && content.TryGetPropertyValue("additional_creators", out var ac))
        {
            if (ac is not JsonArray arr)
            {
                return AuthResult.Deny("additional_creators is not an array");
            }
            foreach (var item in arr)
            {
                if (item is not JsonValue v || !v.TryGetValue(out string? s) || !Ids.IsUserId(s))
                {
                    return AuthResult.Deny("additional_creators contains an invalid user ID");
                }
            }
        }
        return AuthResult.Allow;
    }

    // ---- m.room.member (v1-5 rule 5, v6-11 rule 4, v12 rule 5) ----

    private static AuthResult CheckMember(
        JsonObject pdu,
        RoomVersion version,
        JsonObject create,
        PowerLevels levels,
        string sender,
        string? stateKey,
        JsonObject content,
        Func<(string Type, string StateKey), JsonObject?> authState)
    {
        // Sub-rules are named by membership and item: "join.4" is v1-5 5.2.4, v6-7 4.2.4,
        // v8-11 4.3.4, v12 5.3.4; likewise invite (v1-5 5.3, v6-7 4.3, v8-11 4.4, v12 5.4),
        // leave (5.4 / 4.4 / 4.5 / 5.5), ban (5.5 / 4.5 / 4.6 / 5.6), knock (v7 4.6, v8-11 4.7,
        // v12 5.7) and unknown membership (5.6 / v6 4.6, v7 4.7 / 4.8 / 5.8).
        // v1-5 5.1, v6-11 4.1, v12 5.1: state_key and membership are required.
        string? membership = Str(content, "membership");
        if (stateKey is null || membership is null)
        {
            return AuthResult.Deny("m.room.member needs a state_key and content.membership");
        }

        // v8-11 4.2, v12 5.2: join_authorised_via_users_server must be signed by that user's server.
        string? via = null;
        if (version.RestrictedJoins && content.TryGetPropertyValue("join_authorised_via_users_server", out var viaNode) && viaNode is not null)
        {
            via = Str(content, "join_authorised_via_users_server");
            if (via is null || !Ids.IsUserId(via))
            {
                return AuthResult.Deny("join_authorised_via_users_server is not a user ID");
            }
            // Only the presence of the signature can be checked here (no keys); the receipt
            // checks verify it.
            if (pdu["signatures"] is not JsonObject sigs || sigs[Ids.ServerOf(via)] is not JsonObject bySrv || bySrv.Count == 0)
            {
                return AuthResult.Deny("event is not signed by the server of join_authorised_via_users_server");
            }
        }

        string? senderMembership = Membership(authState(("m.room.member", sender)));
        string? targetMembership = Membership(authState(("m.room.member", stateKey)));
        string joinRule = authState(JoinRulesKey) is { } jr && jr["content"] is JsonObject jrc && Str(jrc, "join_rule") is { } rule
            ? rule
            : "invite"; // No join rules event: nobody may join without an invite.

        switch (membership)
        {
            case "join":
            {
                // join.2: sender must be the joining user. Checked before join.1 (deliberately
                // stricter than the rule order): nobody else may send the creator's first join.
                // gomatrixserverlib does the same; its vectors expect that rejection.
                if (sender != stateKey)
                {
                    return AuthResult.Deny("sender does not match state_key for a join");
                }
                // join.1: the creator's first join right after the create event (creator: content.creator
                // in v1-10, the create event's sender from v11).
                var prev = PrevEventIds(pdu);
                if (prev.Count == 1 && prev[0] == Str(create, "event_id") && stateKey == levels.Creator)
                {
                    return AuthResult.Allow;
                }
                // join.3: banned users may not join.
                if (senderMembership == "ban")
                {
                    return AuthResult.Deny("sender is banned");
                }
                // join.4: invite (and, v7+, knock) rooms need an invite or existing join.
                if (joinRule == "invite" || (version.Knock && joinRule == "knock"))
                {
                    return senderMembership is "invite" or "join"
                        ? AuthResult.Allow
                        : AuthResult.Deny("join rule requires an invite");
                }
                // join.5 (v8+): restricted, and knock_restricted from v10.
                if ((version.RestrictedJoins && joinRule == "restricted")
                    || (version.KnockRestricted && joinRule == "knock_restricted"))
                {
                    if (senderMembership is "invite" or "join")
                    {
                        return AuthResult.Allow;
                    }
                    if (via is null)
                    {
                        return AuthResult.Deny("restricted join without join_authorised_via_users_server");
                    }
                    if (Membership(authState(("m.room.member", via))) != "join")
                    {
                        return AuthResult.Deny("join_authorised_via_users_server is not joined");
                    }
                    if (levels.UserLevel(via) < levels.NamedLevel("invite", 0))
                    {
                        return AuthResult.Deny("join_authorised_via_users_server may not invite");
                    }
                    return AuthResult.Allow;
                }
                // join.5 (v1-7) / join.6 (v8+): public rooms; then reject.
                if (joinRule == "public")
                {
                    return AuthResult.Allow;
                }
                return AuthResult.Deny($"join rule '{joinRule}' does not allow joining");
            }
            case "invite":
            {
                // invite.1: third-party invites.
                if (content.ContainsKey("third_party_invite"))
                {
                    return CheckThirdPartyInvite(sender, stateKey, targetMembership, content, authState);
                }
                // invite.2: the sender must be joined.
                if (senderMembership != "join")
                {
                    return AuthResult.Deny("sender is not joined");
                }
                // invite.3: target must not be joined or banned.
                if (targetMembership is "join" or "ban")
                {
                    return AuthResult.Deny($"target is already {targetMembership}");
                }
                // invite.4, invite.5: invite level.
                return levels.UserLevel(sender) >= levels.NamedLevel("invite", 0)
                    ? AuthResult.Allow
                    : AuthResult.Deny("sender's power level is below the invite level");
            }
            case "leave":
            {
                // leave.1: leaving or rejecting; v7+ also rescinding a knock.
                if (sender == stateKey)
                {
                    bool ok = senderMembership is "invite" or "join" || (version.Knock && senderMembership == "knock");
                    return ok ? AuthResult.Allow : AuthResult.Deny($"cannot leave from membership '{senderMembership}'");
                }
                // leave.2: kicker must be joined.
                if (senderMembership != "join")
                {
                    return AuthResult.Deny("sender is not joined");
                }
                long senderLevel = levels.UserLevel(sender);
                // leave.3: unbanning needs the ban level.
                if (targetMembership == "ban" && senderLevel < levels.NamedLevel("ban", 50))
                {
                    return AuthResult.Deny("sender's power level is below the ban level");
                }
                // leave.4, leave.5: kick level and more power than the target.
                if (senderLevel >= levels.NamedLevel("kick", 50) && levels.UserLevel(stateKey) < senderLevel)
                {
                    return AuthResult.Allow;
                }
                return AuthResult.Deny("sender may not kick the target");
            }
            case "ban":
            {
                // ban.1: banner must be joined.
                if (senderMembership != "join")
                {
                    return AuthResult.Deny("sender is not joined");
                }
                long senderLevel = levels.UserLevel(sender);
                // ban.2, ban.3: ban level and more power than the target.
                if (senderLevel >= levels.NamedLevel("ban", 50) && levels.UserLevel(stateKey) < senderLevel)
                {
                    return AuthResult.Allow;
                }
                return AuthResult.Deny("sender may not ban the target");
            }
            case "knock" when version.Knock:
            {
                // knock.1 (v7+): join rule must be knock (or knock_restricted, v10+).
                if (!(joinRule == "knock" || (version.KnockRestricted && joinRule == "knock_restricted")))
                {
                    return AuthResult.Deny("join rule does not allow knocking");
                }
                // knock.2: only for oneself.
                if (sender != stateKey)
                {
                    return AuthResult.Deny("sender does not match state_key for a knock");
                }
                // knock.3, knock.4: not if banned, invited or joined.
                return senderMembership is "ban" or "invite" or "join"
                    ? AuthResult.Deny($"cannot knock from membership '{senderMembership}'")
                    : AuthResult.Allow;
            }
            default:
                // Unknown membership (including knock before v7).
                return AuthResult.Deny($"unknown membership '{membership}'");
        }
    }

    // invite.1.1-invite.1.8: third-party invites.
    private static AuthResult CheckThirdPartyInvite(
        string sender,
        string stateKey,
        string? targetMembership,
        JsonObject content,
        Func<(string Type, string StateKey), JsonObject?> authState)
    {
        if (targetMembership == "ban")
        {
            return AuthResult.Deny("target is banned");
        }
        if (content["third_party_invite"] is not JsonObject tpi || tpi["signed"] is not JsonObject signed)
        {
            return AuthResult.Deny("third_party_invite has no signed object");
        }
        string? mxid = Str(signed, "mxid");
        string? token = Str(signed, "token");
        if (mxid is null || token is null)
        {
            return AuthResult.Deny("third_party_invite.signed needs mxid and token");
        }
        if (mxid != stateKey)
        {
            return AuthResult.Deny("third_party_invite mxid does not match state_key");
        }
        var inviteEvent = authState(("m.room.third_party_invite", token));
        if (inviteEvent is null)
        {
            return AuthResult.Deny("no m.room.third_party_invite for the token");
        }
        if (Str(inviteEvent, "sender") != sender)
        {
            return AuthResult.Deny("sender does not match the m.room.third_party_invite sender");
        }
        // invite.1.7: any signature in signed by any public key of the m.room.third_party_invite.
        if (ThirdPartySignedVerifies(signed, inviteEvent["content"] as JsonObject))
        {
            return AuthResult.Allow;
        }
        return AuthResult.Deny("no valid signature on third_party_invite.signed");
    }

    /// <summary>
    /// Whether any signature in a third-party invite's <paramref name="signed"/> object verifies with any public key
    /// of the m.room.third_party_invite content (rules invite.1.7: its <c>public_key</c> and each
    /// <c>public_keys[].public_key</c>, Base64 padded or not, standard or URL-safe). The auth rules and the resident
    /// server's check of /exchange_third_party_invite share it.
    /// </summary>
    public static bool ThirdPartySignedVerifies(JsonObject signed, JsonObject? inviteContent)
    {
        ArgumentNullException.ThrowIfNull(signed);
        var keys = ThirdPartyPublicKeys(inviteContent);
        if (keys.Count == 0 || signed["signatures"] is not JsonObject sigs)
        {
            return false;
        }
        foreach (var (server, byServer) in sigs)
        {
            if (byServer is not JsonObject keyIds)
            {
                continue;
            }
            foreach (var (keyId, _) in keyIds)
            {
                if (keys.Any(key => JsonSigning.Verify(signed, server, keyId, key)))
                {
                    return true;
                }
            }
        }
        return false;
    }

    /// <summary>The Ed25519 public keys (32 bytes) of an m.room.third_party_invite content; others are skipped.</summary>
    private static List<byte[]> ThirdPartyPublicKeys(JsonObject? content)
    {
        var keys = new List<byte[]>();
        if (content is null)
        {
            return keys;
        }
        void Add(JsonObject o)
        {
            if (UnpaddedBase64.TryDecode(Str(o, "public_key"), out var k) && k.Length == 32)
            {
                keys.Add(k);
            }
        }
        Add(content);
        if (content["public_keys"] is JsonArray list)
        {
            foreach (var o in list.OfType<JsonObject>())
            {
                Add(o);
            }
        }
        return keys;
    }

    // ---- m.room.power_levels (v1-5 rule 10, v6-11 rule 9, v12 rule 10) ----

    private static AuthResult CheckPowerLevels(RoomVersion version, PowerLevels levels, string sender, long senderLevel, JsonObject content)
    {

        // Power levels rules: v1-5 10.N, v6-9 9.N, v10-11 9.N, v12 10.N (v10 inserted two items).
        // v10-11 9.1, v12 10.1 (and, for older versions, values that cannot be read as levels at all).
        foreach (var key in NamedLevelKeys)
        {
            if (content.TryGetPropertyValue(key, out var v) && !PowerLevels.TryLevel(v, version, out _))
            {
                return AuthResult.Deny($"power levels '{key}' is not an integer");
            }
        }
        // v10-11 9.2, v12 10.2: events / notifications must be objects of integers.
        foreach (var key in new[] { "events", "notifications" })
        {
            if (!content.TryGetPropertyValue(key, out var v))
            {
                continue;
            }
            if (v is not JsonObject obj)
            {
                if (version.IntegerOnlyPowerLevels || key == "events")
                {
                    return AuthResult.Deny($"power levels '{key}' is not an object");
                }
                continue;
            }
            foreach (var (name, level) in obj)
            {
                if (!PowerLevels.TryLevel(level, version, out _))
                {
                    return AuthResult.Deny($"power levels '{key}.{name}' is not an integer");
                }
            }
        }
        // v1-5 10.1, v6-9 9.1, v10-11 9.3, v12 10.3: users must map valid user ids to integers.
        if (content.TryGetPropertyValue("users", out var usersNode))
        {
            if (usersNode is not JsonObject users)
            {
                return AuthResult.Deny("power levels 'users' is not an object");
            }
            foreach (var (user, level) in users)
            {
                if (!Ids.IsUserId(user))
                {
                    return AuthResult.Deny($"power levels 'users' key '{user}' is not a user ID");
                }
                if (!PowerLevels.TryLevel(level, version, out _))
                {
                    return AuthResult.Deny($"power level of '{user}' is not an integer");
                }
                // v12 10.4: creators may not appear in users.
                if (version.PrivilegedCreators && levels.IsCreator(user))
                {
                    return AuthResult.Deny($"power levels 'users' may not contain the room creator '{user}'");
                }
            }
        }

        // v1-5 10.2, v6-9 9.2, v10-11 9.4, v12 10.5: first power levels event.
        if (levels.Content is not { } old)
        {
            return AuthResult.Allow;
        }

        // v1-5 10.3, v6-9 9.3, v10-11 9.5, v12 10.6: named levels changed.
        foreach (var key in NamedLevelKeys)
        {
            long? oldV = PowerLevels.ReadLevel(old, key, version);
            long? newV = PowerLevels.ReadLevel(content, key, version);
            if (oldV == newV)
            {
                continue;
            }
            if (oldV is { } o && o > senderLevel)
            {
                return AuthResult.Deny($"cannot change '{key}' from {o}, above the sender's level");
            }
            if (newV is { } n && n > senderLevel)
            {
                return AuthResult.Deny($"cannot change '{key}' to {n}, above the sender's level");
            }
        }

        // v1-5 10.4-10.5, v6-9 9.4-9.5, v10-11 9.6-9.7, v12 10.7-10.8: events, and notifications from v6.
        var maps = version.LimitNotificationsPowerLevels ? new[] { "events", "notifications" } : ["events"];
        foreach (var mapKey in maps)
        {
            var oldMap = PowerLevels.ReadLevelMap(old, mapKey, version);
            var newMap = PowerLevels.ReadLevelMap(content, mapKey, version);
            foreach (var (name, o) in oldMap)
            {
                bool changed = !newMap.TryGetValue(name, out long n) || n != o;
                if (changed && o > senderLevel)
                {
                    return AuthResult.Deny($"cannot change {mapKey}.{name} from {o}, above the sender's level");
                }
            }
            foreach (var (name, n) in newMap)
            {
                bool changed = !oldMap.TryGetValue(name, out long o) || n != o;
                if (changed && n > senderLevel)
                {
                    return AuthResult.Deny($"cannot set {mapKey}.{name} to {n}, above the sender's level");
                }
            }
        }

        // v1-5 10.6-10.7, v6-9 9.6-9.7, v10-11 9.8-9.9, v12 10.9-10.10: users.
        var oldUsers = PowerLevels.ReadLevelMap(old, "users", version);
        var newUsers = PowerLevels.ReadLevelMap(content, "users", version);
        foreach (var (user, o) in oldUsers)
        {
            bool changed = !newUsers.TryGetValue(user, out long n) || n != o;
            if (changed && user != sender && o >= senderLevel)
            {
                return AuthResult.Deny($"cannot change the level of {user} ({o}), not below the sender's");
            }
        }
        foreach (var (user, n) in newUsers)
        {
            bool changed = !oldUsers.TryGetValue(user, out long o) || n != o;
            if (changed && n > senderLevel)
            {
                return AuthResult.Deny($"cannot set the level of {user} to {n}, above the sender's level");
            }
        }
        return AuthResult.Allow;
    }

    // ---- helpers ----

    private static string? Membership(JsonObject? memberEvent) =>
        memberEvent?["content"] is JsonObject c ? Str(c, "membership") : null;

    /// <summary>prev_events ids in both formats: strings (v3+) and [id, hashes] pairs (v1, v2).</summary>
    public static List<string> PrevEventIds(JsonObject pdu) => EventIdList(pdu["prev_events"]);

    /// <summary>auth_events ids in both formats: strings (v3+) and [id, hashes] pairs (v1, v2).</summary>
    public static List<string> AuthEventIds(JsonObject pdu) => EventIdList(pdu["auth_events"]);

    private static List<string> EventIdList(JsonNode? node)
    {
        var ids = new List<string>();
        if (node is not JsonArray arr)
        {
            return ids;
        }
        foreach (var item in arr)
        {
            if (item is JsonValue v && v.TryGetValue(out string? s))
            {
                ids.Add(s);
            }
            else if (item is JsonArray pair && pair.Count > 0 && pair[0] is JsonValue pv && pv.TryGetValue(out string? ps))
            {
                ids.Add(ps);
            }
        }
        return ids;
    }

    internal static string? Str(JsonObject? obj, string key) =>
        obj is not null && obj.TryGetPropertyValue(key, out var n) && n is JsonValue v
            && v.GetValueKind() == JsonValueKind.String && v.TryGetValue(out string? s)
            ? s
            : null;
}

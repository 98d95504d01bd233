using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Crypto;
using Conduit.Common.Http;

namespace Conduit.Rooms.Rules;

/// <summary>
/// What a local user may send, checked for every event before it is built (<see cref="EventSender"/> calls
/// <see cref="Validate"/> first for each event, whichever endpoint made it), and the spec's size limits, checked on
/// send and on receipt. The content of the types this server or its clients interpret must have the shape the spec
/// gives it, as Synapse's EventValidator demands for the types it checks: a room admin must not be able to store an
/// event that readers would have to guess about, or that other servers would refuse. Refused with M_BAD_JSON (a
/// wrong shape), M_INVALID_PARAM (a well-formed value that is not allowed) or M_TOO_LARGE. Readers stay tolerant all
/// the same (<see cref="ContentField"/>): events from other servers are not held to these rules. The decisions, field
/// by field, are in the rooms service's README.
/// </summary>
public static class EventContent
{
    /// <summary>Largest PDU, in bytes of canonical JSON with its signatures (client-server-api, "Size limits").</summary>
    public const int MaxPduBytes = 65536;

    /// <summary>Refuses an event a local user may not send (see the class comment); returns when it may be built.</summary>
    public static void Validate(NewEvent e, string roomId, string serverName)
    {
        ArgumentNullException.ThrowIfNull(e);
        // Size limits: type and state_key at most 255 bytes each (client-server-api, "Size limits").
        if (!Ids.FitsBytes(e.Type)) throw Err.TooLarge("Event type is longer than 255 bytes");
        if (e.StateKey is { } sk && !Ids.FitsBytes(sk)) throw Err.TooLarge("State key is longer than 255 bytes");
        if (e.Type.Length == 0) throw Err.BadJson("Event type must not be empty");
        // Every event is signed as canonical JSON: integers in [-(2^53)+1, 2^53-1] only, no floats, and strings of
        // Unicode (appendices, "Canonical JSON"; from room v6 other servers refuse anything else, rooms/v6.md).
        int contentBytes;
        try
        {
            contentBytes = Encoding.UTF8.GetByteCount(CanonicalJson.Serialize(e.Content));
        }
        catch (CanonicalJsonException x)
        {
            throw Err.BadJson("Event content is not canonical JSON: " + x.Message);
        }
        // The content alone over the PDU limit needs no signing to refuse; the whole PDU is checked once built.
        if (contentBytes > MaxPduBytes) throw Err.TooLarge($"Event is larger than {MaxPduBytes} bytes");
        if (JsonLimits.DepthOf(e.Content) >= JsonLimits.MaxEventDepth) throw Err.BadJson("Event content is nested too deeply");

        var c = e.Content;
        // m.mentions on any event (client-server-api, "User and room mentions"), checked as Synapse does.
        if (c.OptObject("m.mentions") is { } mentions)
        {
            mentions.OptStringList("user_ids");
            mentions.OptBool("room");
        }
        if (StateTypes.Contains(e.Type) && e.StateKey is null) throw Err.BadJson($"{e.Type} must be a state event");
        switch (e.Type)
        {
            case "m.room.create": Create(c); break;
            case "m.room.member": Member(c); break;
            case "m.room.power_levels": PowerLevelsContent(c); break;
            case "m.room.join_rules": JoinRules(c); break;
            case "m.room.history_visibility": OneOf(c, "history_visibility", HistoryVisibility.Values); break;
            case "m.room.guest_access": OneOf(c, "guest_access", GuestAccess); break;
            case "m.room.redaction": RedactionContent(e); break;
            case "m.room.canonical_alias": CanonicalAlias(c); break;
            case "m.room.aliases": Aliases(c); break;
            case "m.room.server_acl": ServerAcl(c, serverName); break;
            case "m.room.encryption":
                Required(c, "algorithm");
                c.OptLong("rotation_period_ms");
                c.OptLong("rotation_period_msgs");
                break;
            case "m.room.tombstone":
                var replacement = Required(c, "replacement_room");
                if (!Ids.IsRoomId(replacement)) throw Err.InvalidParam("replacement_room must be a room ID");
                if (replacement == roomId) throw Err.InvalidParam("A tombstone cannot name its own room");
                c.OptString("body");
                break;
            case "m.room.name": c.OptString("name"); break;
            case "m.room.topic": c.OptString("topic"); break;
            case "m.room.avatar":
                c.OptString("url");
                c.OptObject("info");
                break;
            case "m.room.message":
                // Synapse also requires both; this server only reads body (search), so absent ones are let through.
                c.OptString("body");
                c.OptString("msgtype");
                break;
        }
    }

    /// <summary>Whether <see cref="Validate"/> lets the event through.</summary>
    public static bool IsValid(NewEvent e, string roomId, string serverName)
    {
        try
        {
            Validate(e, roomId, serverName);
            return true;
        }
        catch (MatrixException)
        {
            return false;
        }
    }

    /// <summary>
    /// Refuses an ACL that would shut this server out of the room, as Synapse does ("Can't create an ACL event that
    /// denies the local server"): its rules are those of client-server-api, "Server Access Control Lists".
    /// </summary>
    static void ServerAcl(JsonObject c, string serverName)
    {
        var allow = c.OptStringList("allow") ?? [];
        var deny = c.OptStringList("deny") ?? [];
        var allowIpLiterals = c.OptBool("allow_ip_literals") ?? true;
        var host = HostOf(serverName);
        var denied = (!allowIpLiterals && (IPAddress.TryParse(host.Trim('[', ']'), out _)))
            || deny.Any(p => GlobMatches(p, host))
            || !allow.Any(p => GlobMatches(p, host));
        if (denied) throw Err.InvalidParam("This server ACL would deny this homeserver itself");
    }

    /// <summary>
    /// Why a PDU breaks the spec's size limits on its keys (client-server-api, "Size limits"; appendices, "Identifier
    /// Grammar": type, state_key, sender, room_id and event_id at most 255 bytes each) or nests deeper than
    /// <see cref="JsonLimits.MaxEventDepth"/> (so that every reader can parse it again); null when it does not.
    /// </summary>
    public static string? LimitViolation(JsonObject pdu)
        => KeyTooLarge(pdu) ?? (JsonLimits.DepthOf(pdu) > JsonLimits.MaxEventDepth ? $"nested deeper than {JsonLimits.MaxEventDepth}" : null);

    /// <summary>
    /// M_TOO_LARGE unless the finished (hashed and signed) PDU is within the spec's limits; else its canonical JSON, the
    /// bytes that are stored, so the event is serialised once for both.
    /// </summary>
    public static byte[] RequireWithinLimits(JsonObject pdu)
    {
        if (KeyTooLarge(pdu) is { } key) throw Err.TooLarge(key);
        var bytes = CanonicalJson.SerializeToUtf8Bytes(pdu);
        if (bytes.Length > MaxPduBytes) throw Err.TooLarge($"Event is larger than {MaxPduBytes} bytes");
        return bytes;
    }

    static readonly string[] SizeLimitedKeys = ["type", "state_key", "sender", "room_id", "event_id"];

    static string? KeyTooLarge(JsonObject pdu)
    {
        foreach (var key in SizeLimitedKeys)
            if (ContentField.String(pdu, key) is { } s && !Ids.FitsBytes(s)) return $"{key} is longer than 255 bytes";
        return null;
    }

    static readonly HashSet<string> StateTypes =
    [
        "m.room.create", "m.room.member", "m.room.power_levels", "m.room.join_rules", "m.room.history_visibility",
        "m.room.guest_access", "m.room.canonical_alias", "m.room.aliases", "m.room.server_acl", "m.room.encryption",
        "m.room.tombstone", "m.room.name", "m.room.topic", "m.room.avatar",
    ];

    static readonly HashSet<string> GuestAccess = ["can_join", "forbidden"];

    static string Required(JsonObject c, string key)
        => c.OptString(key) ?? throw Err.BadJson($"'{key}' is required");

    static void OneOf(JsonObject c, string key, IReadOnlySet<string> values)
    {
        var v = Required(c, key);
        if (!values.Contains(v)) throw Err.BadJson($"'{key}' must be one of {string.Join(", ", values)}");
    }

    static void Create(JsonObject c)
    {
        c.OptString("room_version");
        c.OptString("creator");
        c.OptBool("m.federate");
        c.OptString("type");
        if (c.OptObject("predecessor") is { } p)
        {
            if (!Ids.IsRoomId(p.OptString("room_id") ?? "")) throw Err.InvalidParam("predecessor.room_id must be a room ID");
            if (p.OptString("event_id") is { } id && !Ids.IsEventId(id)) throw Err.InvalidParam("predecessor.event_id must be an event ID");
        }
        foreach (var u in c.OptStringList("additional_creators") ?? [])
            if (!Ids.IsUserId(u)) throw Err.InvalidParam("additional_creators must be user IDs");
    }

    static void Member(JsonObject c)
    {
        if (!MemberContent.Memberships.Contains(Required(c, "membership"))) throw Err.BadJson("Unknown membership");
        c.OptString("displayname");
        c.OptString("avatar_url");
        c.OptString("reason");
        c.OptBool("is_direct");
        c.OptObject("third_party_invite");
        if (c.OptString("join_authorised_via_users_server") is { } via && !Ids.IsUserId(via))
            throw Err.InvalidParam("join_authorised_via_users_server must be a user ID");
    }

    /// <summary>Integers in every room version, as Synapse's POWER_LEVELS_SCHEMA demands (v10+ need it anyway).</summary>
    // Integers everywhere, in every room version (as Synapse's schema; v10+ auth rules require it anyway).
    static void PowerLevelsContent(JsonObject c)
    {
        if (!PowerLevels.AllIntegers(c))
            throw Err.BadJson("Power levels must be integers: ban, kick, redact, invite, the defaults, and every value of events, notifications and users");
    }

    static void JoinRules(JsonObject c)
    {
        OneOf(c, "join_rule", JoinRule.Values);
        foreach (var condition in c.OptObjectList("allow") ?? [])
        {
            var type = Required(condition, "type");
            if (type == "m.room_membership" && !Ids.IsRoomId(condition.OptString("room_id") ?? ""))
                throw Err.InvalidParam("An m.room_membership condition needs the room_id of a room");
        }
    }

    /// <summary>
    /// A redaction names the event it redacts ("redacts": top-level before v11, in content from v11, rooms/v11.md),
    /// and is not a state event (that would put it in the room state as well as redact).
    /// </summary>
    static void RedactionContent(NewEvent e)
    {
        if (e.StateKey is not null) throw Err.BadJson("m.room.redaction cannot be a state event");
        RedactedEventId(e.Redacts ?? e.Content.OptString("redacts"));
        e.Content.OptString("reason");
    }

    /// <summary>The ID of the event a redaction redacts: M_BAD_JSON when missing, M_INVALID_PARAM when not an event ID.</summary>
    public static string RedactedEventId(string? redacts)
    {
        if (redacts is null) throw Err.BadJson("A redaction needs 'redacts', the ID of the event to redact");
        return Ids.IsEventId(redacts) ? redacts : throw Err.InvalidParam("'redacts' must be an event ID");
    }

    static void CanonicalAlias(JsonObject c)
    {
        if (c.OptString("alias") is { } a && !Ids.TrySplit(a, '#', out _, out _)) throw Err.InvalidParam($"Invalid alias {a}");
        foreach (var alt in c.OptStringList("alt_aliases") ?? [])
            if (!Ids.TrySplit(alt, '#', out _, out _)) throw Err.InvalidParam($"Invalid alias {alt}");
    }

    static void Aliases(JsonObject c)
    {
        foreach (var a in c.OptStringList("aliases") ?? [])
            if (!Ids.TrySplit(a, '#', out _, out _)) throw Err.InvalidParam($"Invalid alias {a}");
    }

    /// <summary>A server name without its port ("server names are compared without the port").</summary>
    static string HostOf(string serverName)
    {
        if (serverName.StartsWith('[')) return serverName[..(serverName.IndexOf(']') + 1)];
        var colon = serverName.LastIndexOf(':');
        return colon < 0 ? serverName : serverName[..colon];
    }

    /// <summary>Glob with '*' (any run of characters) and '?' (one character), as server ACLs use it.</summary>
    static bool GlobMatches(string pattern, string s)
    {
        int p = 0, i = 0, star = -1, mark = 0;
        while (i < s.Length)
        {
            if (p < pattern.Length && (pattern[p] == '?' || pattern[p] == s[i])) { p++; i++; }
            else if (p < pattern.Length && pattern[p] == '*') { star = p++; mark = i; }
            else if (star >= 0) { p = star + 1; i = ++mark; }
            else return false;
        }
        while (p < pattern.Length && pattern[p] == '*') p++;
        return p == pattern.Length;
    }
}

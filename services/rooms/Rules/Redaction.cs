using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Events;

namespace Conduit.Rooms.Rules;

/// <summary>
/// The redaction algorithm (client-server API "Redactions", with the per-version rules in
/// spec rooms/vN.md; see <see cref="RedactionRules"/> for what changes between versions).
/// </summary>
public static class Redaction
{
    // Top-level keys kept by every version (rooms/fragments/v11-redactions.md is the smallest list).
    private static readonly string[] AlwaysKeptTopLevel =
    [
        "event_id", "type", "room_id", "sender", "state_key", "content", "hashes",
        "signatures", "depth", "prev_events", "auth_events", "origin_server_ts",
    ];

    // Kept by v1-v10 only (removed in v11).
    private static readonly string[] LegacyTopLevel = ["origin", "membership", "prev_state"];

    private static readonly string[] PowerLevelsKeys =
        ["ban", "events", "events_default", "kick", "redact", "state_default", "users", "users_default"];

    /// <summary>
    /// Returns a redacted deep copy of <paramref name="pdu"/>; the input is not modified.
    /// <c>unsigned</c> is dropped like any other non-protected key.
    /// </summary>
    public static JsonObject Redact(JsonObject pdu, RoomVersion version)
    {
        ArgumentNullException.ThrowIfNull(pdu);
        ArgumentNullException.ThrowIfNull(version);
        var rules = version.Redaction;

        var result = new JsonObject();
        foreach (var (key, value) in pdu)
        {
            bool keep = AlwaysKeptTopLevel.Contains(key)
                || (rules.KeepOriginMembershipPrevState && LegacyTopLevel.Contains(key));
            if (keep && key != "content")
            {
                result[key] = value?.DeepClone();
            }
        }

        if (pdu.ContainsKey("content"))
        {
            // A non-object content cannot have protected keys; it becomes empty.
            var content = pdu["content"] as JsonObject;
            string? type = pdu["type"] is JsonValue t && t.TryGetValue(out string? s) ? s : null;
            result["content"] = content is null ? new JsonObject() : RedactContent(content, type, rules);
        }

        return result;
    }

    private static JsonObject RedactContent(JsonObject content, string? type, RedactionRules rules)
    {
        switch (type)
        {
            case "m.room.member":
            {
                var kept = Keep(content, "membership");
                if (rules.KeepMemberJoinAuthorisedVia)
                {
                    CopyIfPresent(content, kept, "join_authorised_via_users_server");
                }
                // v11: third_party_invite survives but only with its "signed" key
                // (rooms/fragments/v11-redactions.md); dropped entirely if it has none.
                if (rules.KeepMemberThirdPartyInviteSigned
                    && content["third_party_invite"] is JsonObject tpi
                    && tpi.ContainsKey("signed"))
                {
                    kept["third_party_invite"] = new JsonObject { ["signed"] = tpi["signed"]?.DeepClone() };
                }
                return kept;
            }
            case "m.room.create":
                return rules.KeepAllCreateContent
                    ? (JsonObject)content.DeepClone()
                    : Keep(content, "creator");
            case "m.room.join_rules":
                return rules.KeepJoinRulesAllow ? Keep(content, "join_rule", "allow") : Keep(content, "join_rule");
            case "m.room.power_levels":
            {
                var kept = Keep(content, PowerLevelsKeys);
                if (rules.KeepPowerLevelsInvite)
                {
                    CopyIfPresent(content, kept, "invite");
                }
                return kept;
            }
            case "m.room.aliases" when rules.KeepAliasesContent:
                return Keep(content, "aliases");
            case "m.room.history_visibility":
                return Keep(content, "history_visibility");
            case "m.room.redaction" when rules.KeepRedactionRedacts:
                return Keep(content, "redacts");
            default:
                return new JsonObject();
        }
    }

    private static JsonObject Keep(JsonObject content, params ReadOnlySpan<string> keys)
    {
        var kept = new JsonObject();
        foreach (var key in keys)
        {
            CopyIfPresent(content, kept, key);
        }
        return kept;
    }

    private static void CopyIfPresent(JsonObject from, JsonObject to, string key)
    {
        if (from.TryGetPropertyValue(key, out var value))
        {
            to[key] = value?.DeepClone();
        }
    }
}

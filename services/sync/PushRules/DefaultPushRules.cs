using System.Text.Json.Nodes;

namespace Conduit.Sync.PushRules;

/// <summary>
/// The server-default push rules of Matrix v1.19 ("Predefined Rules"), as the <c>m.push_rules</c>
/// account-data content / GET /pushrules/ body, and path selection for the GET /pushrules/... endpoints.
/// </summary>
/// <remarks>
/// v1.17 removed the legacy body-matching defaults (.m.rule.contains_display_name,
/// .m.rule.contains_user_name, .m.rule.roomnotif), so v1.19 has no default content rules: <c>content</c>
/// is empty. When merging with user rules, user override rules go after .m.rule.master but before the
/// other server-default override rules; user underride rules go before the default underride rules.
/// </remarks>
public static class DefaultPushRules
{
    /// <summary>The rule kinds of a ruleset, in evaluation order.</summary>
    public static IReadOnlyList<string> Kinds { get; } = ["override", "content", "room", "sender", "underride"];

    /// <summary>A fresh (caller-owned) default ruleset for <paramref name="userId"/>: <c>{"global": {...}}</c>.</summary>
    public static JsonObject For(string userId)
    {
        ArgumentException.ThrowIfNullOrEmpty(userId);
        var global = new JsonObject
        {
            ["override"] = Override(userId),
            ["content"] = new JsonArray(),
            ["room"] = new JsonArray(),
            ["sender"] = new JsonArray(),
            ["underride"] = Underride(),
        };
        return new JsonObject { ["global"] = global };
    }

    /// <summary>
    /// Resolves the path after <c>/pushrules/</c>, already split on '/' and URL-decoded, against a ruleset
    /// shaped like <see cref="For"/>'s result. Empty segments (e.g. from a trailing slash) are skipped.
    /// <list type="bullet">
    /// <item><c>[]</c>: the whole ruleset; <c>["global"]</c>: the global ruleset;</item>
    /// <item><c>["global", kind]</c>: that kind's rule array;</item>
    /// <item><c>["global", kind, ruleId]</c>: the rule;</item>
    /// <item><c>[..., ruleId, "enabled"]</c>: <c>{"enabled": bool}</c>; <c>[..., ruleId, "actions"]</c>:
    /// <c>{"actions": [...]}</c> (the GET bodies of those endpoints).</item>
    /// </list>
    /// Returns a deep copy (safe to put into a response), or <c>null</c> when nothing is there (unknown
    /// scope, kind or rule id, or a longer path).
    /// </summary>
    public static JsonNode? Select(JsonObject ruleset, string[] pathSegments)
    {
        ArgumentNullException.ThrowIfNull(ruleset);
        ArgumentNullException.ThrowIfNull(pathSegments);
        var segs = pathSegments.Where(s => s.Length > 0).ToArray();
        if (segs.Length == 0) return ruleset.DeepClone();

        if (ruleset[segs[0]] is not JsonObject scope) return null;
        if (segs.Length == 1) return scope.DeepClone();

        if (!Kinds.Contains(segs[1]) || scope[segs[1]] is not JsonArray rules) return null;
        if (segs.Length == 2) return rules.DeepClone();

        var rule = rules.OfType<JsonObject>()
            .FirstOrDefault(r => r["rule_id"] is JsonValue v && v.TryGetValue(out string? id) && id == segs[2]);
        if (rule is null) return null;
        if (segs.Length == 3) return rule.DeepClone();
        if (segs.Length > 4) return null;

        return segs[3] switch
        {
            "enabled" => new JsonObject { ["enabled"] = rule["enabled"]?.DeepClone() ?? false },
            "actions" => new JsonObject { ["actions"] = rule["actions"]?.DeepClone() ?? new JsonArray() },
            _ => null,
        };
    }

    private static JsonArray Override(string userId) =>
    [
        Rule(".m.rule.master", enabled: false, [], []),
        Rule(".m.rule.suppress_notices", enabled: true,
            [EventMatch("content.msgtype", "m.notice")],
            []),
        Rule(".m.rule.invite_for_me", enabled: true,
            [
                EventMatch("type", "m.room.member"),
                EventMatch("content.membership", "invite"),
                EventMatch("state_key", userId),
            ],
            [Notify(), Sound("default")]),
        Rule(".m.rule.member_event", enabled: true,
            [EventMatch("type", "m.room.member")],
            []),
        Rule(".m.rule.is_user_mention", enabled: true,
            [(JsonNode)new JsonObject { ["kind"] = "event_property_contains", ["key"] = @"content.m\.mentions.user_ids", ["value"] = userId }],
            [Notify(), Sound("default"), Highlight()]),
        Rule(".m.rule.is_room_mention", enabled: true,
            [
                (JsonNode)new JsonObject { ["kind"] = "event_property_is", ["key"] = @"content.m\.mentions.room", ["value"] = true },
                (JsonNode)new JsonObject { ["kind"] = "sender_notification_permission", ["key"] = "room" },
            ],
            [Notify(), Highlight()]),
        Rule(".m.rule.tombstone", enabled: true,
            [EventMatch("type", "m.room.tombstone"), EventMatch("state_key", "")],
            [Notify(), Highlight()]),
        Rule(".m.rule.reaction", enabled: true,
            [EventMatch("type", "m.reaction")],
            []),
        Rule(".m.rule.room.server_acl", enabled: true,
            [EventMatch("type", "m.room.server_acl"), EventMatch("state_key", "")],
            []),
        Rule(".m.rule.suppress_edits", enabled: true,
            [(JsonNode)new JsonObject { ["kind"] = "event_property_is", ["key"] = @"content.m\.relates_to.rel_type", ["value"] = "m.replace" }],
            []),
    ];

    private static JsonArray Underride() =>
    [
        Rule(".m.rule.call", enabled: true,
            [EventMatch("type", "m.call.invite")],
            [Notify(), Sound("ring")]),
        Rule(".m.rule.encrypted_room_one_to_one", enabled: true,
            [MemberCount("2"), EventMatch("type", "m.room.encrypted")],
            [Notify(), Sound("default")]),
        Rule(".m.rule.room_one_to_one", enabled: true,
            [MemberCount("2"), EventMatch("type", "m.room.message")],
            [Notify(), Sound("default")]),
        Rule(".m.rule.message", enabled: true,
            [EventMatch("type", "m.room.message")],
            [Notify()]),
        Rule(".m.rule.encrypted", enabled: true,
            [EventMatch("type", "m.room.encrypted")],
            [Notify()]),
    ];

    // Typed as JsonNode so collection expressions use JsonArray.Add(JsonNode), not the reflection-based Add<T>.
    private static JsonNode Rule(string ruleId, bool enabled, JsonArray conditions, JsonArray actions) => new JsonObject
    {
        ["rule_id"] = ruleId,
        ["default"] = true,
        ["enabled"] = enabled,
        ["conditions"] = conditions,
        ["actions"] = actions,
    };

    private static JsonNode EventMatch(string key, string pattern) =>
        new JsonObject { ["kind"] = "event_match", ["key"] = key, ["pattern"] = pattern };

    private static JsonNode MemberCount(string @is) => new JsonObject { ["kind"] = "room_member_count", ["is"] = @is };

    private static JsonNode Notify() => JsonValue.Create("notify");

    private static JsonNode Sound(string sound) => new JsonObject { ["set_tweak"] = "sound", ["value"] = sound };

    private static JsonNode Highlight() => new JsonObject { ["set_tweak"] = "highlight" };
}

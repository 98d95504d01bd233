using System.Text.Json;
using System.Text.Json.Nodes;
using Conduit.Common;

namespace Conduit.Rooms.Rules;

/// <summary>
/// Tolerant readers of event content. Content stored in a room may have any shape: events from other servers are
/// not checked against content schemas (only the auth rules decide), and rooms created before the send-time rules
/// of <see cref="EventContent"/> may hold anything. A reader never throws on a wrong type; it answers what the spec
/// says an invalid value means, or null. Every reader of stored content in the rooms service goes through these
/// (or <see cref="PowerLevels"/> and <see cref="EventAuth"/>, which are tolerant the same way).
/// </summary>
public static class ContentField
{
    /// <summary>The string at <paramref name="key"/>, or null when absent or of another type.</summary>
    public static string? String(JsonObject? content, string key)
        => content?[key] is JsonValue v && v.GetValueKind() == JsonValueKind.String && v.TryGetValue(out string? s) ? s : null;

    /// <summary>The object at <paramref name="key"/>, or null.</summary>
    public static JsonObject? Object(JsonObject? content, string key) => content?[key] as JsonObject;

    /// <summary>The strings of the array at <paramref name="key"/>, skipping entries of other types.</summary>
    public static IEnumerable<string> Strings(JsonObject? content, string key)
    {
        foreach (var n in content?[key] as JsonArray ?? [])
            if (n is JsonValue v && v.GetValueKind() == JsonValueKind.String && v.TryGetValue(out string? s)) yield return s;
    }

    /// <summary>The objects of the array at <paramref name="key"/>, skipping entries of other types.</summary>
    public static IEnumerable<JsonObject> Objects(JsonObject? content, string key)
        => (content?[key] as JsonArray ?? []).OfType<JsonObject>();
}

/// <summary>m.room.history_visibility (client-server-api, "History visibility").</summary>
public static class HistoryVisibility
{
    public const string WorldReadable = "world_readable";
    public const string Shared = "shared";
    public const string Invited = "invited";
    public const string Joined = "joined";

    public static readonly IReadOnlySet<string> Values = new HashSet<string> { WorldReadable, Shared, Invited, Joined };

    /// <summary>
    /// The room's setting from the content of its m.room.history_visibility (null when there is none). "By default
    /// if no history_visibility is set, or if the value is not understood, the visibility is assumed to be shared"
    /// (client-server-api, "History visibility", "Server behaviour"): a number, an object or an unknown string too.
    /// </summary>
    public static string Of(JsonObject? content)
        => ContentField.String(content, "history_visibility") is { } v && Values.Contains(v) ? v : Shared;
}

/// <summary>m.room.join_rules (client-server-api, "m.room.join_rules").</summary>
public static class JoinRule
{
    public static readonly IReadOnlySet<string> Values =
        new HashSet<string> { "public", "knock", "invite", "private", "restricted", "knock_restricted" };

    /// <summary>The join rule, or null when absent or not a string (the auth rules then let nobody join without an invite).</summary>
    public static string? Of(JsonObject? content) => ContentField.String(content, "join_rule");

    /// <summary>The room IDs of the m.room_membership conditions in "allow"; malformed conditions are skipped.</summary>
    public static IEnumerable<string> AllowedRoomIds(JsonObject? content)
        => ContentField.Objects(content, "allow")
            .Where(c => ContentField.String(c, "type") == "m.room_membership")
            .Select(c => ContentField.String(c, "room_id"))
            .OfType<string>();
}

/// <summary>m.room.member content (client-server-api, "m.room.member").</summary>
public static class MemberContent
{
    public static readonly IReadOnlySet<string> Memberships = new HashSet<string> { "invite", "join", "knock", "leave", "ban" };

    /// <summary>The membership, or null when it is missing or not a string (such an event never passed the auth rules).</summary>
    public static string? MembershipOf(JsonObject? content) => ContentField.String(content, "membership");

    public static string? DisplayName(JsonObject? content) => ContentField.String(content, "displayname");

    public static string? AvatarUrl(JsonObject? content) => ContentField.String(content, "avatar_url");
}

/// <summary>
/// m.relates_to (client-server-api, "Forming relationships between events"): a relation is a string rel_type and a
/// string event_id with event ID grammar; anything else (absent, malformed, a reply's m.in_reply_to alone) is none.
/// </summary>
public static class RelatesTo
{
    public const string Thread = "m.thread";
    public const string Replace = "m.replace";
    public const string Annotation = "m.annotation";

    public static (string RelType, string EventId)? Of(JsonObject? content)
    {
        var r = ContentField.Object(content, "m.relates_to");
        return ContentField.String(r, "rel_type") is { Length: > 0 and <= 255 } rel && ContentField.String(r, "event_id") is { } id && Ids.IsEventId(id)
            ? (rel, id)
            : null;
    }
}

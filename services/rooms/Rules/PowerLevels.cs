using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Events;

namespace Conduit.Rooms.Rules;

/// <summary>
/// A room's power levels as the spec reads them (client-server-api "m.room.power_levels"; rooms/vN.md
/// "Authorisation rules"): the one implementation used by the auth rules (<see cref="EventAuth"/>), state resolution
/// and the endpoints' pre-checks. Values are read by the room version's rules (<see cref="TryLevel"/>); a value that
/// cannot be read counts as absent, so a malformed event never throws here. Without a power levels event the creator
/// has 100 and everyone else 0, and every event needs 0. In v12 the creators (the create event's sender and
/// additional_creators) rank above everyone (rooms/v12.md).
/// </summary>
public sealed class PowerLevels
{
    /// <summary>The power level of v12 room creators ("infinitely high").</summary>
    public const long Infinite = long.MaxValue;

    readonly RoomVersion _version;
    readonly IReadOnlyCollection<string>? _privilegedCreators;

    /// <param name="version">The room version, whose rules read the values.</param>
    /// <param name="creator">The room's creator, for the defaults without a power levels event.</param>
    /// <param name="privilegedCreators">v12: the creators, whose level is infinite; null before v12.</param>
    /// <param name="content">The power levels event's content; null when the room has no power levels event.</param>
    public PowerLevels(RoomVersion version, string? creator, IReadOnlyCollection<string>? privilegedCreators, JsonObject? content)
    {
        _version = version;
        Creator = creator;
        _privilegedCreators = privilegedCreators;
        Content = content;
    }

    /// <summary>
    /// From the room's create event and power levels event (full events, as the auth rules see them; either may be
    /// null). The creator is content.creator in v1-10 and the sender from v11.
    /// </summary>
    public static PowerLevels FromEvents(RoomVersion version, JsonObject? create, JsonObject? powerLevelsEvent)
    {
        var creator = version.CreatorInCreateContent
            ? (create?["content"] is JsonObject c ? EventAuth.Str(c, "creator") : null)
            : EventAuth.Str(create, "sender");
        List<string>? privileged = null;
        if (version.PrivilegedCreators && create is not null)
        {
            privileged = [];
            if (EventAuth.Str(create, "sender") is { } sender) privileged.Add(sender);
            if (create["content"] is JsonObject cc && cc["additional_creators"] is JsonArray arr)
                foreach (var item in arr)
                    if (item is JsonValue v && v.TryGetValue(out string? s)) privileged.Add(s);
        }
        // A power levels event whose content is not an object counts as one with empty content.
        var content = powerLevelsEvent is null ? null : powerLevelsEvent["content"] as JsonObject ?? [];
        return new PowerLevels(version, creator, privileged, content);
    }

    /// <summary>The power levels content; null when the room has no power levels event.</summary>
    public JsonObject? Content { get; }

    /// <summary>The creator, for the defaults without power levels and the first join (rooms/vN.md, join rules).</summary>
    public string? Creator { get; }

    /// <summary>v12: whether the user is one of the room's creators.</summary>
    public bool IsCreator(string user) => _privilegedCreators?.Contains(user) == true;

    public long UserLevel(string user)
    {
        if (IsCreator(user)) return Infinite;
        if (Content is null) return !_version.PrivilegedCreators && user == Creator ? 100 : 0;
        if (Content["users"] is JsonObject users && users.TryGetPropertyValue(user, out var v) && TryLevel(v, _version, out var level)) return level;
        return ReadLevel(Content, "users_default", _version) ?? 0;
    }

    /// <summary>A named level (ban, kick, redact default 50; invite default 0; ...), its default when absent.</summary>
    public long NamedLevel(string name, long defaultLevel) => Content is { } c ? ReadLevel(c, name, _version) ?? defaultLevel : defaultLevel;

    public long Ban => NamedLevel("ban", 50);
    public long Kick => NamedLevel("kick", 50);
    public long Redact => NamedLevel("redact", 50);
    public long Invite => NamedLevel("invite", 0);
    public long EventsDefault => NamedLevel("events_default", 0);
    public long UsersDefault => NamedLevel("users_default", 0);
    /// <summary>50 when the room has power levels, 0 when it has none.</summary>
    public long StateDefault => Content is null ? 0 : NamedLevel("state_default", 50);

    /// <summary>The level needed to send an event of this type: events[type], else state_default or events_default.</summary>
    public long EventLevel(string type, bool isState)
    {
        if (Content is null) return 0;
        if (Content["events"] is JsonObject events && events.TryGetPropertyValue(type, out var v) && TryLevel(v, _version, out var level)) return level;
        return isState ? StateDefault : EventsDefault;
    }

    public static long? ReadLevel(JsonObject obj, string key, RoomVersion version) =>
        obj.TryGetPropertyValue(key, out var v) && TryLevel(v, version, out var level) ? level : null;

    /// <summary>The readable entries of a map of levels (events, notifications, users); others are left out.</summary>
    public static Dictionary<string, long> ReadLevelMap(JsonObject obj, string key, RoomVersion version)
    {
        var result = new Dictionary<string, long>(StringComparer.Ordinal);
        if (obj[key] is JsonObject map)
            foreach (var (name, v) in map)
                if (TryLevel(v, version, out var level)) result[name] = level;
        return result;
    }

    /// <summary>
    /// Reads a power level value: integers in all versions; in v1-9 also strings holding an integer
    /// (rooms/fragments/v1-stringy-power-levels.md); in v1-5 also floats, truncated
    /// (rooms/fragments/v1-floaty-power-levels.md).
    /// </summary>
    public static bool TryLevel(JsonNode? node, RoomVersion version, out long level)
    {
        level = 0;
        if (node is not JsonValue v) return false;
        if (node.TryGetInteger(out level)) return true;
        switch (v.GetValueKind())
        {
            case JsonValueKind.Number when !version.StrictCanonicalJson:
            {
                if (v.TryGetValue(out double d) && double.IsFinite(d) && Math.Abs(d) < 9.2e18)
                {
                    level = (long)Math.Truncate(d);
                    return true;
                }
                if (v.TryGetValue(out JsonElement e) && e.TryGetDouble(out d) && double.IsFinite(d) && Math.Abs(d) < 9.2e18)
                {
                    level = (long)Math.Truncate(d);
                    return true;
                }
                return false;
            }
            case JsonValueKind.String when !version.IntegerOnlyPowerLevels:
            {
                var s = v.GetValue<string>().Trim();
                if (s.Length == 0) return false;
                var start = s[0] is '+' or '-' ? 1 : 0;
                if (start == s.Length) return false;
                for (var i = start; i < s.Length; i++)
                    if (s[i] is < '0' or > '9') return false;
                return long.TryParse(s, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out level);
            }
            default:
                return false;
        }
    }

    /// <summary>Checks that every value in new power levels content is an integer (v10+: strings are rejected).</summary>
    public static bool AllIntegers(JsonObject c)
    {
        static bool IsInt(JsonNode? n) => n.TryGetInteger(out _);
        foreach (var k in new[] { "ban", "kick", "redact", "invite", "state_default", "events_default", "users_default" })
            if (c.ContainsKey(k) && !IsInt(c[k])) return false;
        foreach (var k in new[] { "events", "users", "notifications" })
        {
            if (!c.ContainsKey(k)) continue;
            if (c[k] is not JsonObject o) return false;
            foreach (var (_, v) in o) if (!IsInt(v)) return false;
        }
        return true;
    }
}

using System.Text.Json;
using System.Text.Json.Nodes;
using Conduit.Common;

namespace Conduit.Rooms;

/// <summary>
/// A room's m.room.power_levels with the spec's defaults for absent keys (spec: client-server-api,
/// "m.room.power_levels"). Without a power levels event the creator has 100 and everyone else 0.
/// <paramref name="privilegedCreators"/>: in v12, the room's creators, whose power is infinite (rooms/v12.md
/// "Authorisation rules").
/// </summary>
public sealed class PowerLevels(JsonObject? content, string? creator, IReadOnlyCollection<string>? privilegedCreators = null)
{
    public JsonObject? Content => content;

    static long? Num(JsonNode? n)
    {
        if (n is not JsonValue v) return null;
        if (n.TryGetInteger(out var l)) return l;
        // Room versions before 10 also accepted numeric strings; v10+ events are validated as integers on entry.
        return v.TryGetValue<string>(out var s) && long.TryParse(s, out var p) ? p : null;
    }

    long Level(string key, long dflt) => content is null ? dflt : Num(content[key]) ?? dflt;

    public long Ban => Level("ban", 50);
    public long Kick => Level("kick", 50);
    public long Redact => Level("redact", 50);
    public long Invite => Level("invite", 0);
    public long StateDefault => content is null ? 0 : Level("state_default", 50);
    public long EventsDefault => Level("events_default", 0);
    public long UsersDefault => Level("users_default", 0);

    public long UserLevel(string userId)
    {
        if (privilegedCreators?.Contains(userId) == true) return long.MaxValue;
        if (content is null) return userId == creator ? 100 : 0;
        return (content["users"] as JsonObject)?[userId] is { } n && Num(n) is { } l ? l : UsersDefault;
    }

    public long EventLevel(string type, bool isState)
    {
        if (content?["events"] is JsonObject events && Num(events[type]) is { } l) return l;
        return isState ? StateDefault : EventsDefault;
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

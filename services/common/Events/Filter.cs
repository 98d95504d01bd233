using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Conduit.Common.Events;

/// <summary>
/// A client filter (POST /user/{userId}/filter, the <c>filter</c> parameter of /sync, /messages,
/// /context). Built by <see cref="Parse(JsonObject)"/>; all sub-filters are non-null (an absent
/// sub-filter is an empty one, which matches everything).
/// </summary>
/// <remarks>
/// Parsing choices (the spec's schema leaves these open):
/// <list type="bullet">
/// <item>Unknown keys are ignored; an explicit JSON <c>null</c> is treated like an absent key.</item>
/// <item>Any other wrong type is <c>M_BAD_JSON</c> (400): non-object sub-filters, non-array lists,
/// non-string list items, non-boolean flags, an <c>event_format</c> other than "client"/"federation".</item>
/// <item>Entries of <c>senders</c>/<c>not_senders</c> must start with '@' and of <c>rooms</c>/<c>not_rooms</c>
/// with '!' (the schema's patterns); otherwise <c>M_BAD_JSON</c>.</item>
/// <item><c>limit</c> must be a non-negative integer (10.0 counts), otherwise <c>M_BAD_JSON</c>. The spec asks for
/// more than 0, but clients send 0 to get a room's state without its timeline and Synapse accepts it, so 0 is taken;
/// values above <see cref="MaxLimit"/> are clamped to it (the spec asks servers to impose a maximum;
/// 1000 matches Synapse's pagination cap). Absent means "server default" (<c>null</c>).</item>
/// </list>
/// </remarks>
public sealed class Filter
{
    /// <summary>Largest <c>limit</c> kept; larger requested values are clamped to this.</summary>
    public const int MaxLimit = 1000;

    public IReadOnlyList<string>? EventFields { get; init; }

    /// <summary>"client" (default) or "federation".</summary>
    public string EventFormat { get; init; } = "client";

    public EventFilter Presence { get; init; } = new();
    public EventFilter AccountData { get; init; } = new();
    public RoomFilter Room { get; init; } = new();

    /// <summary>
    /// A copy of the JSON this filter was parsed from (what GET /user/{userId}/filter/{filterId} can
    /// return verbatim); <c>null</c> for filters built in code. Callers must not modify it.
    /// </summary>
    public JsonObject? Original { get; private init; }

    /// <summary>The filter that filters nothing.</summary>
    public static Filter Empty { get; } = new();

    /// <summary>Validates and parses a filter definition. Throws <see cref="MatrixException"/> M_BAD_JSON.</summary>
    public static Filter Parse(JsonObject json)
    {
        ArgumentNullException.ThrowIfNull(json);
        string? format = FilterJson.String(json, "event_format", "filter");
        if (format is not null and not ("client" or "federation"))
        {
            throw FilterJson.Bad("event_format must be 'client' or 'federation'");
        }

        return new Filter
        {
            EventFields = FilterJson.StringList(json, "event_fields", "filter", prefix: null),
            EventFormat = format ?? "client",
            Presence = EventFilter.Parse(FilterJson.Object(json, "presence", "filter"), "presence"),
            AccountData = EventFilter.Parse(FilterJson.Object(json, "account_data", "filter"), "account_data"),
            Room = RoomFilter.ParseOptional(FilterJson.Object(json, "room", "filter")),
            Original = (JsonObject)json.DeepClone(),
        };
    }

    /// <summary>
    /// Parses a filter given as JSON text (the inline form of /sync's <c>filter</c> parameter):
    /// <c>M_NOT_JSON</c> if it is not JSON, <c>M_BAD_JSON</c> if it is not an object or invalid.
    /// </summary>
    public static Filter ParseText(string json)
    {
        ArgumentNullException.ThrowIfNull(json);
        return Parse(Http.RequestJson.ParseObject(json, "filter"));
    }

    /// <summary>Normalized JSON form: only non-default fields; re-parsing it yields an equal filter.</summary>
    public JsonObject ToJson()
    {
        var o = new JsonObject();
        if (EventFields is not null) o["event_fields"] = FilterJson.ToArray(EventFields);
        if (EventFormat != "client") o["event_format"] = EventFormat;
        FilterJson.AddIfNotEmpty(o, "presence", Presence.ToJson());
        FilterJson.AddIfNotEmpty(o, "account_data", AccountData.ToJson());
        FilterJson.AddIfNotEmpty(o, "room", Room.ToJson());
        return o;
    }
}

/// <summary>EventFilter: used for presence and global account data.</summary>
public sealed class EventFilter
{
    /// <summary>Maximum number of events; <c>null</c> = server default. Always in 0..<see cref="Filter.MaxLimit"/>.</summary>
    public int? Limit { get; init; }
    public IReadOnlyList<string>? Types { get; init; }
    public IReadOnlyList<string>? NotTypes { get; init; }
    public IReadOnlyList<string>? Senders { get; init; }
    public IReadOnlyList<string>? NotSenders { get; init; }

    public static EventFilter Parse(JsonObject json) => Parse(json, "filter");

    internal static EventFilter Parse(JsonObject? json, string where)
    {
        if (json is null) return new EventFilter();
        return new EventFilter
        {
            Limit = FilterJson.Limit(json, where),
            Types = FilterJson.StringList(json, "types", where, prefix: null),
            NotTypes = FilterJson.StringList(json, "not_types", where, prefix: null),
            Senders = FilterJson.StringList(json, "senders", where, prefix: '@'),
            NotSenders = FilterJson.StringList(json, "not_senders", where, prefix: '@'),
        };
    }

    /// <summary>
    /// True if an event of this type and sender passes the filter. <paramref name="roomId"/> and
    /// <paramref name="hasUrl"/> are ignored here (kept for a signature shared with <see cref="RoomEventFilter"/>).
    /// </summary>
    public bool Matches(string type, string sender, string? roomId = null, bool? hasUrl = null) =>
        FilterJson.MatchesTypeAndSender(type, sender, Types, NotTypes, Senders, NotSenders);

    public JsonObject ToJson()
    {
        var o = new JsonObject();
        FilterJson.WriteEventFields(o, Limit, Types, NotTypes, Senders, NotSenders);
        return o;
    }
}

/// <summary>RoomEventFilter: the timeline, state, ephemeral and per-room account data filters.</summary>
public sealed class RoomEventFilter
{
    /// <summary>Maximum number of events; <c>null</c> = server default. Always in 0..<see cref="Filter.MaxLimit"/>.</summary>
    public int? Limit { get; init; }
    public IReadOnlyList<string>? Types { get; init; }
    public IReadOnlyList<string>? NotTypes { get; init; }
    public IReadOnlyList<string>? Senders { get; init; }
    public IReadOnlyList<string>? NotSenders { get; init; }
    public IReadOnlyList<string>? Rooms { get; init; }
    public IReadOnlyList<string>? NotRooms { get; init; }

    /// <summary>true: only events whose content has a <c>url</c>; false: only those without; null: either.</summary>
    public bool? ContainsUrl { get; init; }
    public bool LazyLoadMembers { get; init; }

    /// <summary>Only meaningful when <see cref="LazyLoadMembers"/> is set.</summary>
    public bool IncludeRedundantMembers { get; init; }
    public bool UnreadThreadNotifications { get; init; }

    public static RoomEventFilter Parse(JsonObject json) => Parse(json, "filter");

    internal static RoomEventFilter Parse(JsonObject? json, string where)
    {
        if (json is null) return new RoomEventFilter();
        return new RoomEventFilter
        {
            Limit = FilterJson.Limit(json, where),
            Types = FilterJson.StringList(json, "types", where, prefix: null),
            NotTypes = FilterJson.StringList(json, "not_types", where, prefix: null),
            Senders = FilterJson.StringList(json, "senders", where, prefix: '@'),
            NotSenders = FilterJson.StringList(json, "not_senders", where, prefix: '@'),
            Rooms = FilterJson.StringList(json, "rooms", where, prefix: '!'),
            NotRooms = FilterJson.StringList(json, "not_rooms", where, prefix: '!'),
            ContainsUrl = FilterJson.Bool(json, "contains_url", where),
            LazyLoadMembers = FilterJson.Bool(json, "lazy_load_members", where) ?? false,
            IncludeRedundantMembers = FilterJson.Bool(json, "include_redundant_members", where) ?? false,
            UnreadThreadNotifications = FilterJson.Bool(json, "unread_thread_notifications", where) ?? false,
        };
    }

    /// <summary>
    /// True if the event passes the filter. A <c>null</c> <paramref name="roomId"/> skips the room checks
    /// and a <c>null</c> <paramref name="hasUrl"/> skips <see cref="ContainsUrl"/> (caller does not know).
    /// </summary>
    public bool Matches(string type, string sender, string? roomId = null, bool? hasUrl = null)
    {
        if (roomId is not null && !FilterJson.IncludesRoom(roomId, Rooms, NotRooms)) return false;
        if (ContainsUrl is bool want && hasUrl is bool has && want != has) return false;
        return FilterJson.MatchesTypeAndSender(type, sender, Types, NotTypes, Senders, NotSenders);
    }

    /// <summary>Convenience for a client-format or federation-format event object (type, sender, room_id, content.url).</summary>
    public bool Matches(JsonObject ev)
    {
        ArgumentNullException.ThrowIfNull(ev);
        string type = FilterJson.StringOrEmpty(ev["type"]);
        string sender = FilterJson.StringOrEmpty(ev["sender"]);
        string? roomId = ev["room_id"] is JsonValue r && r.TryGetValue(out string? s) ? s : null;
        bool hasUrl = ev["content"] is JsonObject c && c.ContainsKey("url");
        return Matches(type, sender, roomId, hasUrl);
    }

    public JsonObject ToJson()
    {
        var o = new JsonObject();
        FilterJson.WriteEventFields(o, Limit, Types, NotTypes, Senders, NotSenders);
        if (Rooms is not null) o["rooms"] = FilterJson.ToArray(Rooms);
        if (NotRooms is not null) o["not_rooms"] = FilterJson.ToArray(NotRooms);
        if (ContainsUrl is bool b) o["contains_url"] = b;
        if (LazyLoadMembers) o["lazy_load_members"] = true;
        if (IncludeRedundantMembers) o["include_redundant_members"] = true;
        if (UnreadThreadNotifications) o["unread_thread_notifications"] = true;
        return o;
    }
}

/// <summary>RoomFilter: which rooms, and the per-section event filters.</summary>
public sealed class RoomFilter
{
    public IReadOnlyList<string>? Rooms { get; init; }
    public IReadOnlyList<string>? NotRooms { get; init; }
    public bool IncludeLeave { get; init; }
    public RoomEventFilter Timeline { get; init; } = new();
    public RoomEventFilter State { get; init; } = new();
    public RoomEventFilter Ephemeral { get; init; } = new();
    public RoomEventFilter AccountData { get; init; } = new();

    public static RoomFilter Parse(JsonObject json) => ParseOptional(json);

    internal static RoomFilter ParseOptional(JsonObject? json)
    {
        if (json is null) return new RoomFilter();
        const string where = "room";
        return new RoomFilter
        {
            Rooms = FilterJson.StringList(json, "rooms", where, prefix: '!'),
            NotRooms = FilterJson.StringList(json, "not_rooms", where, prefix: '!'),
            IncludeLeave = FilterJson.Bool(json, "include_leave", where) ?? false,
            Timeline = RoomEventFilter.Parse(FilterJson.Object(json, "timeline", where), "room.timeline"),
            State = RoomEventFilter.Parse(FilterJson.Object(json, "state", where), "room.state"),
            Ephemeral = RoomEventFilter.Parse(FilterJson.Object(json, "ephemeral", where), "room.ephemeral"),
            AccountData = RoomEventFilter.Parse(FilterJson.Object(json, "account_data", where), "room.account_data"),
        };
    }

    /// <summary>
    /// The room-level check, applied before the section filters: not_rooms wins over rooms; an absent
    /// rooms list includes every room, an empty one includes none.
    /// </summary>
    public bool IncludesRoom(string roomId)
    {
        ArgumentNullException.ThrowIfNull(roomId);
        return FilterJson.IncludesRoom(roomId, Rooms, NotRooms);
    }

    public JsonObject ToJson()
    {
        var o = new JsonObject();
        if (Rooms is not null) o["rooms"] = FilterJson.ToArray(Rooms);
        if (NotRooms is not null) o["not_rooms"] = FilterJson.ToArray(NotRooms);
        if (IncludeLeave) o["include_leave"] = true;
        FilterJson.AddIfNotEmpty(o, "timeline", Timeline.ToJson());
        FilterJson.AddIfNotEmpty(o, "state", State.ToJson());
        FilterJson.AddIfNotEmpty(o, "ephemeral", Ephemeral.ToJson());
        FilterJson.AddIfNotEmpty(o, "account_data", AccountData.ToJson());
        return o;
    }
}

/// <summary>Shared parsing and matching helpers for the filter classes.</summary>
internal static class FilterJson
{
    internal static MatrixException Bad(string message) => new("M_BAD_JSON", 400, message);

    internal static JsonObject? Object(JsonObject json, string key, string where) => json[key] switch
    {
        null => null,
        JsonObject o => o,
        _ => throw Bad($"{where}.{key} must be an object"),
    };

    internal static string? String(JsonObject json, string key, string where) => json[key] switch
    {
        null => null,
        JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>(),
        _ => throw Bad($"{where}.{key} must be a string"),
    };

    internal static bool? Bool(JsonObject json, string key, string where) => json[key] switch
    {
        null => null,
        JsonValue v when v.GetValueKind() == JsonValueKind.True => true,
        JsonValue v when v.GetValueKind() == JsonValueKind.False => false,
        _ => throw Bad($"{where}.{key} must be a boolean"),
    };

    internal static IReadOnlyList<string>? StringList(JsonObject json, string key, string where, char? prefix)
    {
        var node = json[key];
        if (node is null) return null;
        if (node is not JsonArray array) throw Bad($"{where}.{key} must be an array of strings");
        var list = new string[array.Count];
        for (int i = 0; i < array.Count; i++)
        {
            if (array[i] is not JsonValue v || v.GetValueKind() != JsonValueKind.String)
            {
                throw Bad($"{where}.{key} must be an array of strings");
            }
            string s = v.GetValue<string>();
            if (prefix is char p && (s.Length == 0 || s[0] != p))
            {
                throw Bad($"{where}.{key} entries must start with '{p}'");
            }
            list[i] = s;
        }
        return list;
    }

    internal static int? Limit(JsonObject json, string where)
    {
        var node = json["limit"];
        if (node is null) return null;
        if (node is not JsonValue v || v.GetValueKind() != JsonValueKind.Number)
        {
            throw Bad($"{where}.limit must be an integer");
        }
        // Read through the JSON text so parsed and in-code values (any CLR numeric type) behave alike.
        string text = v.ToJsonString();
        if (long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long l))
        {
            return l >= 0 ? (int)Math.Min(l, Filter.MaxLimit) : throw Bad($"{where}.limit must not be negative");
        }
        if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double d)
            && double.IsFinite(d) && d == Math.Floor(d))
        {
            // Integral but written as 10.0 / 1e3, or beyond the range of long.
            return d >= 0 ? (int)Math.Min(d, Filter.MaxLimit) : throw Bad($"{where}.limit must not be negative");
        }
        throw Bad($"{where}.limit must be an integer");
    }

    internal static bool MatchesTypeAndSender(
        string type, string sender,
        IReadOnlyList<string>? types, IReadOnlyList<string>? notTypes,
        IReadOnlyList<string>? senders, IReadOnlyList<string>? notSenders)
    {
        ArgumentNullException.ThrowIfNull(type);
        ArgumentNullException.ThrowIfNull(sender);
        if (notSenders is not null && notSenders.Contains(sender)) return false;
        if (senders is not null && !senders.Contains(sender)) return false;
        if (notTypes is not null && notTypes.Any(p => WildcardMatch(p, type))) return false;
        if (types is not null && !types.Any(p => WildcardMatch(p, type))) return false;
        return true;
    }

    internal static bool IncludesRoom(string roomId, IReadOnlyList<string>? rooms, IReadOnlyList<string>? notRooms)
    {
        if (notRooms is not null && notRooms.Contains(roomId)) return false;
        return rooms is null || rooms.Contains(roomId);
    }

    /// <summary>
    /// Case-sensitive match of <paramref name="value"/> against <paramref name="pattern"/>, where '*' stands for
    /// any (possibly empty) sequence of characters and every other character is literal. Linear-time greedy
    /// matching with single-star backtracking (no regex, so no pathological patterns).
    /// </summary>
    internal static bool WildcardMatch(string pattern, string value)
    {
        int p = 0, v = 0, starP = -1, starV = 0;
        while (v < value.Length)
        {
            if (p < pattern.Length && pattern[p] == '*')
            {
                starP = p++;
                starV = v;
            }
            else if (p < pattern.Length && pattern[p] == value[v])
            {
                p++;
                v++;
            }
            else if (starP >= 0)
            {
                p = starP + 1;
                v = ++starV;
            }
            else
            {
                return false;
            }
        }
        while (p < pattern.Length && pattern[p] == '*') p++;
        return p == pattern.Length;
    }

    internal static string StringOrEmpty(JsonNode? node) =>
        node is JsonValue v && v.TryGetValue(out string? s) ? s : "";

    internal static JsonArray ToArray(IReadOnlyList<string> list)
    {
        var a = new JsonArray();
        foreach (var s in list) a.Add((JsonNode)s);
        return a;
    }

    internal static void AddIfNotEmpty(JsonObject target, string key, JsonObject value)
    {
        if (value.Count > 0) target[key] = value;
    }

    internal static void WriteEventFields(
        JsonObject o, int? limit,
        IReadOnlyList<string>? types, IReadOnlyList<string>? notTypes,
        IReadOnlyList<string>? senders, IReadOnlyList<string>? notSenders)
    {
        if (limit is int l) o["limit"] = l;
        if (types is not null) o["types"] = ToArray(types);
        if (notTypes is not null) o["not_types"] = ToArray(notTypes);
        if (senders is not null) o["senders"] = ToArray(senders);
        if (notSenders is not null) o["not_senders"] = ToArray(notSenders);
    }
}

using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Http;
using Conduit.Protos.Rooms;

namespace Conduit.Sync.Sliding;

/// <summary>An extension's switch and the lists and rooms it covers (null: all of them, Synapse's default "*").</summary>
public sealed record SlidingExtension(bool Enabled, IReadOnlyList<string>? Lists, IReadOnlyList<string>? Rooms)
{
    public static readonly SlidingExtension Off = new(false, null, null);

    public bool Covers(string list) => Lists is null || Lists.Contains("*") || Lists.Contains(list);
    public bool CoversRoom(string roomId) => Rooms is null || Rooms.Contains("*") || Rooms.Contains(roomId);
}

/// <summary>
/// The body of a simplified sliding sync request (MSC4186 as Synapse reads it): conn_id, lists, room_subscriptions
/// and extensions, checked and turned into the rooms service's request parts.
/// </summary>
public sealed class SlidingRequest
{
    const int MaxLists = 100, MaxRanges = 100, MaxSubscriptions = 1000, MaxRequiredState = 200;
    /// <summary>Synapse's bound on timeline_limit.</summary>
    public const int MaxTimelineLimit = 1000;

    public string ConnId { get; private init; } = "";
    public string? TxnId { get; private init; }
    public List<SlidingList> Lists { get; } = [];
    public List<SlidingSubscription> Subscriptions { get; } = [];
    public bool ToDevice { get; private init; }
    public string? ToDeviceSince { get; private init; }
    public int ToDeviceLimit { get; private init; }
    public bool E2ee { get; private init; }
    public SlidingExtension AccountData { get; private init; } = SlidingExtension.Off;
    public SlidingExtension Receipts { get; private init; } = SlidingExtension.Off;
    public SlidingExtension Typing { get; private init; } = SlidingExtension.Off;

    public static SlidingRequest Parse(JsonObject body)
    {
        var ext = body.OptObject("extensions") ?? [];
        var toDevice = ext.OptObject("to_device");
        var limit = toDevice?.OptLong("limit") ?? 100;
        var r = new SlidingRequest
        {
            ConnId = body.OptString("conn_id") ?? "",
            TxnId = body.OptString("txn_id"),
            ToDevice = toDevice?.OptBool("enabled") == true,
            ToDeviceSince = toDevice?.OptString("since"),
            ToDeviceLimit = (int)Math.Clamp(limit, 1, 100),
            E2ee = ext.OptObject("e2ee")?.OptBool("enabled") == true,
            AccountData = Extension(ext, "account_data"),
            Receipts = Extension(ext, "receipts"),
            Typing = Extension(ext, "typing"),
        };
        if (r.ConnId.Length > 255) throw Err.InvalidParam("conn_id is too long");
        if (body.OptObject("lists") is { } lists)
        {
            if (lists.Count > MaxLists) throw Err.InvalidParam($"At most {MaxLists} lists");
            foreach (var (name, node) in lists)
            {
                var l = node as JsonObject ?? throw Err.BadJson("A list must be an object");
                var list = new SlidingList { Name = name, Config = Config(l), Filters = Filters(l.OptObject("filters")) };
                var ranges = l.OptArray("ranges") ?? [];
                if (ranges.Count > MaxRanges) throw Err.InvalidParam($"At most {MaxRanges} ranges");
                foreach (var range in ranges)
                {
                    if (range is not JsonArray { Count: 2 } pair || !pair[0]!.TryGetInteger(out var start) || !pair[1]!.TryGetInteger(out var end)
                        || start < 0 || end < start)
                        throw Err.InvalidParam("A range is [start, end]: two integers, 0 <= start <= end");
                    list.Ranges.Add(new SlidingRange { Start = start, End = end });
                }
                r.Lists.Add(list);
            }
        }
        if (body.OptObject("room_subscriptions") is { } subs)
        {
            if (subs.Count > MaxSubscriptions) throw Err.InvalidParam($"At most {MaxSubscriptions} room subscriptions");
            foreach (var (roomId, node) in subs)
            {
                if (!Ids.IsRoomId(roomId)) throw Err.InvalidParam("room_subscriptions are keyed by room ID");
                r.Subscriptions.Add(new SlidingSubscription { RoomId = roomId, Config = Config(node as JsonObject ?? throw Err.BadJson("A room subscription must be an object")) });
            }
        }
        return r;
    }

    static SlidingExtension Extension(JsonObject ext, string name)
        => ext.OptObject(name) is { } o ? new SlidingExtension(o.OptBool("enabled") == true, o.OptStringList("lists"), o.OptStringList("rooms")) : SlidingExtension.Off;

    static SlidingRoomConfig Config(JsonObject o)
    {
        var limit = o.OptLong("timeline_limit") ?? 0;
        if (limit < 0) throw Err.InvalidParam("timeline_limit must not be negative");
        var c = new SlidingRoomConfig { TimelineLimit = (int)Math.Min(limit, MaxTimelineLimit) };
        var required = o.OptArray("required_state") ?? [];
        if (required.Count > MaxRequiredState) throw Err.InvalidParam($"At most {MaxRequiredState} required_state entries");
        foreach (var entry in required)
        {
            if (entry is not JsonArray { Count: 2 } pair || pair[0] is not JsonValue t || !t.TryGetValue<string>(out var type)
                || pair[1] is not JsonValue k || !k.TryGetValue<string>(out var key))
                throw Err.InvalidParam("A required_state entry is [type, state_key]");
            c.RequiredState.Add(new SlidingStateKey { Type = type, StateKey = key });
        }
        return c;
    }

    static SlidingFilters? Filters(JsonObject? f)
    {
        if (f is null) return null;
        var filters = new SlidingFilters();
        if (f.OptBool("is_dm") is { } dm) filters.IsDm = dm;
        if (f.OptBool("is_encrypted") is { } enc) filters.IsEncrypted = enc;
        if (f.OptBool("is_invite") is { } inv) filters.IsInvite = inv;
        filters.RoomTypes = RoomTypes(f, "room_types");
        filters.NotRoomTypes = RoomTypes(f, "not_room_types");
        if (f.OptStringList("spaces") is { } spaces) filters.Spaces = new StringList { Values = { spaces } };
        return filters;
    }

    // Room types, null (rooms without a type) as "".
    static StringList? RoomTypes(JsonObject f, string key)
    {
        if (f.OptArray(key) is not { } a) return null;
        var list = new StringList();
        foreach (var n in a)
            list.Values.Add(n is null ? "" : n is JsonValue v && v.TryGetValue<string>(out var s) ? s : throw Err.BadJson($"'{key}' must be an array of strings and nulls"));
        return list;
    }
}

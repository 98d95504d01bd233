using Conduit.Common.Http;

namespace Conduit.Common;

/// <summary>
/// A /sync next_batch (also the from/to of /keys/changes): "s" then one position per stream joined by '_' (rooms,
/// account data, keys, receipts, typing, presence). A token from before a stream existed lacks its slot and reads as 0, and
/// slots are never reused, so old tokens stay valid as streams are added (as Synapse's StreamToken does). The typing
/// slot is an in-memory position that restarts at 0 with the sync service: a slot above the current position is from
/// before a restart. The presence slot is durable (the sync service's presence stream).
/// </summary>
public readonly record struct SyncToken(long Rooms, long AccountData, long Keys = 0, long Receipts = 0, long Typing = 0, long Presence = 0)
{
    const int Slots = 6;

    public override string ToString() => $"s{Rooms}_{AccountData}_{Keys}_{Receipts}_{Typing}_{Presence}";

    /// <summary>Null for null or empty; M_INVALID_PARAM for anything that is not a token.</summary>
    public static SyncToken? Parse(string? s, string what = "since")
    {
        if (string.IsNullOrEmpty(s)) return null;
        if (s[0] != 's') throw Err.InvalidParam($"Invalid {what} token");
        var parts = s[1..].Split('_');
        var values = new long[Slots];
        for (var i = 0; i < Math.Min(parts.Length, values.Length); i++)
            if (!long.TryParse(parts[i], out values[i]) || values[i] < 0) throw Err.InvalidParam($"Invalid {what} token");
        return new SyncToken(values[0], values[1], values[2], values[3], values[4], values[5]);
    }
}

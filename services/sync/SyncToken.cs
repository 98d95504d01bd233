using Conduit.Common.Http;

namespace Conduit.Sync;

/// <summary>
/// A /sync next_batch: "s" then one position per stream joined by '_' (rooms, account data). A token from
/// before a stream existed lacks its slot and reads as 0, and slots are never reused, so old tokens stay valid
/// as streams are added (as Synapse's StreamToken does).
/// </summary>
public readonly record struct SyncToken(long Rooms, long AccountData)
{
    public override string ToString() => $"s{Rooms}_{AccountData}";

    public static SyncToken? Parse(string? s)
    {
        if (string.IsNullOrEmpty(s)) return null;
        if (s[0] != 's') throw Err.InvalidParam("Invalid since token");
        var parts = s[1..].Split('_');
        var values = new long[2];
        for (var i = 0; i < Math.Min(parts.Length, values.Length); i++)
            if (!long.TryParse(parts[i], out values[i]) || values[i] < 0) throw Err.InvalidParam("Invalid since token");
        return new SyncToken(values[0], values[1]);
    }
}

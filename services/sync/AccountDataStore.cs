using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Storage;
using K = Conduit.Common.Storage.Keys;

namespace Conduit.Sync;

public sealed record AccountDataEntry(string RoomId, string Type, long Pos, JsonObject Content);

/// <summary>Account data (global and per room) and filters, with their own stream position for /sync.</summary>
public sealed class AccountDataStore(IKeyValueStore store)
{
    readonly IKvMap _data = store.Map(SyncFamilies.AccountData);
    readonly IKvMap _filters = store.Map(SyncFamilies.Filters);
    readonly IKvMap _counters = store.Map(SyncFamilies.Counters);
    readonly Lock _write = new();

    public long Position => Counter("account_data");

    long Counter(string name) => _counters.Get(K.Utf8(name)) is { } v ? (long)K.ReadBigEndian(v) : 0;

    public JsonObject? Get(string userId, string roomId, string type)
        => _data.Get(K.Join(userId, roomId, type)) is { } v ? JsonLimits.ParseInternal(v)!["content"]!.AsObject() : null;

    public long Put(string userId, string roomId, string type, JsonObject content)
    {
        lock (_write)
        {
            var pos = Counter("account_data") + 1;
            using var b = store.CreateBatch();
            b.Put(SyncFamilies.AccountData, K.Join(userId, roomId, type),
                Encoding.UTF8.GetBytes(new JsonObject { ["pos"] = pos, ["content"] = content.DeepClone() }.ToJsonString()));
            b.Put(SyncFamilies.Counters, K.Utf8("account_data"), K.BigEndian((ulong)pos));
            store.Write(b);
            return pos;
        }
    }

    /// <summary>The user's entries changed after <paramref name="since"/> (all of them when 0).</summary>
    public IEnumerable<AccountDataEntry> ChangedSince(string userId, long since)
    {
        foreach (var (k, v) in _data.Scan(K.Prefix(userId)))
        {
            var o = JsonLimits.ParseInternal(v)!.AsObject();
            var pos = o["pos"]!.GetValue<long>();
            if (pos <= since) continue;
            var parts = K.Split(k);
            yield return new AccountDataEntry(parts[1], parts[2], pos, o["content"]!.AsObject());
        }
    }

    /// <summary>The user's account data in one room, as (type, content).</summary>
    public IEnumerable<(string Type, JsonObject Content)> InRoom(string userId, string roomId)
    {
        foreach (var (k, v) in _data.Scan(K.Prefix(userId, roomId)))
            yield return (K.Split(k)[2], JsonLimits.ParseInternal(v)!["content"]!.AsObject());
    }

    public string PutFilter(string userId, JsonObject filter)
    {
        lock (_write)
        {
            var id = Counter("filter") + 1;
            using var b = store.CreateBatch();
            b.Put(SyncFamilies.Filters, K.Join(userId, id.ToString()), Encoding.UTF8.GetBytes(filter.ToJsonString()));
            b.Put(SyncFamilies.Counters, K.Utf8("filter"), K.BigEndian((ulong)id));
            store.Write(b);
            return id.ToString();
        }
    }

    public JsonObject? GetFilter(string userId, string filterId)
        => _filters.Get(K.Join(userId, filterId)) is { } v ? JsonLimits.ParseInternal(v)!.AsObject() : null;
}

using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common;

namespace Conduit.Keys.E2ee;

/// <summary>
/// The cached device lists of other servers' users (spec: server-server-api, "Device Management"): filled from
/// GET /user/devices (which gives the list and its stream_id), kept current by m.device_list_update and
/// m.signing_key_update EDUs, and dropped when an update shows a gap (a prev_id newer than the stream_id we have:
/// an update was missed), so the next /keys/query fetches the list again (Synapse's resync). Only used for users
/// who share a room with one of our users, whose server therefore sends us their updates.
/// An entry: JSON {stream_id, devices: {device_id: {keys?, device_display_name?}}, master_key?, self_signing_key?}.
/// </summary>
public sealed class RemoteDeviceLists(KeysStream stream)
{
    /// <summary>A list longer than this is served but not cached (a hostile server cannot make us store without end).</summary>
    public const int MaxCachedDevices = 1000;

    readonly Common.Storage.IKvMap _map = stream.Store.Map(KeysFamilies.RemoteDevices);

    public JsonObject? Get(string userId)
        => _map.Get(KeysFamilies.RemoteDevicesKey(userId)) is { } v && JsonNode.Parse(v) is JsonObject o ? o : null;

    /// <summary>
    /// Builds an entry from a GET /user/devices answer for <paramref name="userId"/>; null if the answer is not about
    /// that user. Devices whose keys name another user or device are listed without keys.
    /// </summary>
    public static JsonObject? FromDevicesAnswer(string userId, JsonObject answer)
    {
        if (Str(answer, "user_id") != userId) return null;
        var devices = new JsonObject();
        if (answer["devices"] is JsonArray list)
            foreach (var d in list.OfType<JsonObject>())
            {
                if (Str(d, "device_id") is not { Length: > 0 and <= 255 } deviceId) continue;
                devices[deviceId] = Device(userId, deviceId, d["keys"] as JsonObject, Str(d, "device_display_name"));
            }
        var entry = new JsonObject { ["stream_id"] = Long(answer["stream_id"]) ?? 0, ["devices"] = devices };
        if (CrossSigningKey(userId, answer["master_key"]) is { } m) entry["master_key"] = m;
        if (CrossSigningKey(userId, answer["self_signing_key"]) is { } s) entry["self_signing_key"] = s;
        return entry;
    }

    /// <summary>Stores an entry fetched from the user's server (unless it is too large to cache, or older than the one kept).</summary>
    public void Put(string userId, JsonObject entry)
    {
        if ((entry["devices"] as JsonObject)?.Count > MaxCachedDevices) return;
        stream.Write(kb =>
        {
            // An update that came in while the list was fetched may be newer than the list: the newer stays.
            if (Get(userId) is { } have && (Long(have["stream_id"]) ?? 0) > (Long(entry["stream_id"]) ?? 0)) return;
            kb.Batch.Put(KeysFamilies.RemoteDevices, KeysFamilies.RemoteDevicesKey(userId), Encoding.UTF8.GetBytes(entry.ToJsonString()));
        });
    }

    /// <summary>Forgets a user's list: the next query asks their server again.</summary>
    public void Forget(string userId)
    {
        if (_map.Get(KeysFamilies.RemoteDevicesKey(userId)) is null) return;
        stream.Write(kb => kb.Batch.Delete(KeysFamilies.RemoteDevices, KeysFamilies.RemoteDevicesKey(userId)));
    }

    /// <summary>
    /// Applies an m.device_list_update (the user is already checked to be of the sending server) in the caller's
    /// batch. Without an entry there is nothing to keep current; an update we already have is ignored; a prev_id
    /// newer than our stream_id means we missed one, so the entry is dropped.
    /// </summary>
    public void ApplyDeviceUpdate(KeysBatch kb, Dictionary<string, JsonObject?> pending, string userId, JsonObject content)
    {
        if (Pending(pending, userId) is not { } entry) return;
        var have = Long(entry["stream_id"]) ?? 0;
        var streamId = Long(content["stream_id"]);
        if (streamId is not { } id || id <= have) return;
        var prev = content["prev_id"] as JsonArray ?? [];
        if (prev.Any(p => Long(p) is not { } pid || pid > have) || Str(content, "device_id") is not { Length: > 0 and <= 255 } deviceId)
        {
            Drop(kb, pending, userId);
            return;
        }
        var devices = entry["devices"] as JsonObject ?? (JsonObject)(entry["devices"] = new JsonObject());
        if (content["deleted"] is JsonValue del && del.TryGetValue(out bool deleted) && deleted) devices.Remove(deviceId);
        else devices[deviceId] = Device(userId, deviceId, content["keys"] as JsonObject, Str(content, "device_display_name"));
        entry["stream_id"] = id;
        Save(kb, pending, userId, entry);
    }

    /// <summary>Applies an m.signing_key_update: the user's master and self-signing keys, when we keep their list.</summary>
    public void ApplySigningKeyUpdate(KeysBatch kb, Dictionary<string, JsonObject?> pending, string userId, JsonObject content)
    {
        if (Pending(pending, userId) is not { } entry) return;
        if (CrossSigningKey(userId, content["master_key"]) is { } m) entry["master_key"] = m;
        if (CrossSigningKey(userId, content["self_signing_key"]) is { } s) entry["self_signing_key"] = s;
        Save(kb, pending, userId, entry);
    }

    // Several updates for one user can come in one transaction: each sees what the ones before it wrote to the batch
    // (pending: user ID to the entry as the batch leaves it, null once dropped; one dictionary per batch).
    JsonObject? Pending(Dictionary<string, JsonObject?> pending, string userId)
    {
        if (!pending.TryGetValue(userId, out var entry)) pending[userId] = entry = Get(userId);
        return entry;
    }

    void Save(KeysBatch kb, Dictionary<string, JsonObject?> pending, string userId, JsonObject entry)
    {
        if ((entry["devices"] as JsonObject)?.Count > MaxCachedDevices) { Drop(kb, pending, userId); return; }
        kb.Batch.Put(KeysFamilies.RemoteDevices, KeysFamilies.RemoteDevicesKey(userId), Encoding.UTF8.GetBytes(entry.ToJsonString()));
    }

    void Drop(KeysBatch kb, Dictionary<string, JsonObject?> pending, string userId)
    {
        kb.Batch.Delete(KeysFamilies.RemoteDevices, KeysFamilies.RemoteDevicesKey(userId));
        pending[userId] = null;
    }

    /// <summary>
    /// Adds the cached keys to a /keys/query answer: the wanted devices (all when none are named) with their display
    /// names, and the public cross-signing keys.
    /// </summary>
    public static void Serve(string userId, JsonObject entry, IReadOnlyCollection<string> wanted, JsonObject deviceKeys, JsonObject master, JsonObject selfSigning)
    {
        var byDevice = new JsonObject();
        if (entry["devices"] is JsonObject devices)
            foreach (var (deviceId, d) in devices)
            {
                if (wanted.Count > 0 && !wanted.Contains(deviceId)) continue;
                if (d?["keys"] is not JsonObject keys) continue;
                var served = keys.DeepClone().AsObject();
                var unsigned = new JsonObject();
                if (Str(d as JsonObject, "device_display_name") is { } name) unsigned["device_display_name"] = name;
                served["unsigned"] = unsigned;
                byDevice[deviceId] = served;
            }
        deviceKeys[userId] = byDevice;
        if (entry["master_key"] is JsonObject m) master[userId] = m.DeepClone();
        if (entry["self_signing_key"] is JsonObject s) selfSigning[userId] = s.DeepClone();
    }

    static JsonObject Device(string userId, string deviceId, JsonObject? keys, string? name)
    {
        var d = new JsonObject();
        // Keys that name another user or device would let one server speak for another device: not kept.
        if (keys is not null && Str(keys, "user_id") == userId && Str(keys, "device_id") == deviceId)
        {
            var k = keys.DeepClone().AsObject();
            k.Remove("unsigned");
            d["keys"] = k;
        }
        if (name is { Length: <= 1000 }) d["device_display_name"] = name;
        return d;
    }

    static JsonObject? CrossSigningKey(string userId, JsonNode? key)
        => key is JsonObject o && Str(o, "user_id") == userId && o["keys"] is JsonObject ? o.DeepClone().AsObject() : null;

    static string? Str(JsonObject? o, string key) => o?[key] is JsonValue v && v.TryGetValue(out string? s) ? s : null;

    // A parsed number reads as long; one built in code may hold an int.
    static long? Long(JsonNode? n) => n is JsonValue v ? v.TryGetValue(out long l) ? l : v.TryGetValue(out int i) ? i : null : null;
}

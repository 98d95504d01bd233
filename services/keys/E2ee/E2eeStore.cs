using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common.Crypto;
using Conduit.Common.Http;
using Conduit.Common.Storage;
using K = Conduit.Common.Storage.Keys;

namespace Conduit.Keys.E2ee;

/// <summary>One user's request of a one-time key: the device and the algorithm.</summary>
public sealed record ClaimRequest(string UserId, string DeviceId, string Algorithm);

/// <summary>A to-device message to one device of a user, or to every device ("*").</summary>
public sealed record ToDeviceMessage(string UserId, string DeviceId, JsonObject Content);

/// <summary>What one device's /sync gets from the keys stream.</summary>
public sealed record KeysSync(long Position, List<string> ToDevice, Dictionary<string, int> OneTimeKeyCounts, List<string> UnusedFallbackTypes, List<string> Changed);

/// <summary>
/// Device keys, one-time and fallback keys, to-device messages and the device-list change log of local users
/// (spec: client-server-api, "End-to-End Encryption" and "Send-to-Device messaging"). Every write goes through the
/// <see cref="KeysStream"/>, whose lock makes claims exact: a one-time key is handed out once, whatever the
/// concurrency. Reads take no lock and see only what is durable.
/// </summary>
public sealed class E2eeStore(KeysStream stream)
{
    /// <summary>To-device messages per /sync response; the rest come with the next (as Synapse does).</summary>
    public const int ToDevicePerSync = 100;

    readonly IKeyValueStore _store = stream.Store;
    readonly IKvMap _deviceKeys = stream.Store.Map(KeysFamilies.DeviceKeys);
    readonly IKvMap _otks = stream.Store.Map(KeysFamilies.OneTimeKeys);
    readonly IKvMap _otkIds = stream.Store.Map(KeysFamilies.OneTimeKeyIds);
    readonly IKvMap _fallback = stream.Store.Map(KeysFamilies.FallbackKeys);
    readonly IKvMap _toDevice = stream.Store.Map(KeysFamilies.ToDevice);
    readonly IKvMap _txns = stream.Store.Map(KeysFamilies.ToDeviceTxns);
    readonly IKvMap _log = stream.Store.Map(KeysFamilies.DeviceListLog);
    readonly IKvMap _logPos = stream.Store.Map(KeysFamilies.DeviceListPos);
    readonly IKvMap _devices = stream.Store.Map(KeysFamilies.Devices);
    readonly IKvMap _signatures = stream.Store.Map(KeysFamilies.Signatures);

    // In-memory state that spares scans over deleted entries. Claimed one-time keys and acknowledged to-device messages
    // are deleted from the front of their ranges; RocksDB keeps a tombstone for each until compaction, and a scan from
    // the range's start walks them all (a claim took 0.3 ms on a fresh device and 3.5 ms after 15,000 claims). So
    // claims start after the last key claimed, acknowledgements after the last position acknowledged, and one-time
    // key counts are kept rather than counted. All are changed under the keys stream's lock after the batch is
    // durable; lost at a restart, they are rebuilt by one scan each. (Range tombstones were tried instead: with
    // thousands of them in a memtable every new iterator re-fragments them all and claims fell to 26/s.)
    readonly Lock _memo = new();
    readonly Dictionary<(string, string, string), byte[]> _claimCursor = [];
    readonly Dictionary<(string, string), long> _ackedUpTo = [];
    readonly Dictionary<(string, string), Dictionary<string, int>> _counts = [];
    const int MaxMemoEntries = 100_000;

    // Bounded: past MaxMemoEntries devices the memo starts over (each entry is rebuilt by one scan when next needed).
    void Memo<TKey, TValue>(Dictionary<TKey, TValue> map, TKey key, TValue value) where TKey : notnull
    {
        lock (_memo)
        {
            if (map.Count >= MaxMemoEntries && !map.ContainsKey(key)) map.Clear();
            map[key] = value;
        }
    }

    public KeysStream Stream => stream;

    static byte[] Bytes(JsonNode n) => Encoding.UTF8.GetBytes(n.ToJsonString());
    static JsonNode Parse(byte[] v) => JsonNode.Parse(v)!;

    // ---- device keys

    public JsonObject? DeviceKeys(string userId, string deviceId)
        => _deviceKeys.Get(KeysFamilies.DeviceKeysKey(userId, deviceId)) is { } v ? Parse(v).AsObject() : null;

    public IEnumerable<(string DeviceId, JsonObject Keys)> AllDeviceKeys(string userId)
    {
        foreach (var (k, v) in _deviceKeys.Scan(KeysFamilies.DeviceKeysPrefix(userId)))
            yield return (K.Split(k)[1], Parse(v).AsObject());
    }

    /// <summary>The device's Ed25519 key, from its uploaded device keys.</summary>
    public byte[]? DeviceEd25519(string userId, string deviceId)
        => KeyObjects.Ed25519Key(DeviceKeys(userId, deviceId)?["keys"]?[$"{KeyObjects.Ed25519}:{deviceId}"]?.GetValue<string>());

    /// <summary>
    /// Stores what /keys/upload carries, checked already, in one batch: device keys (a change is a device-list
    /// change), one-time keys (an ID already stored with other content is refused, the same content is ignored) and
    /// fallback keys (a new key replaces the algorithm's old one and is unused; the same key keeps its state).
    /// Returns the one-time key counts after the upload.
    /// </summary>
    public Dictionary<string, int> Upload(string userId, string deviceId, JsonObject? deviceKeys,
        List<(string Algorithm, string KeyId, JsonNode Key)> oneTimeKeys, List<(string Algorithm, string KeyId, JsonNode Key)> fallbackKeys)
    {
        stream.Write(kb => Upload(kb, userId, deviceId, deviceKeys, oneTimeKeys, fallbackKeys, fresh: false));
        return OneTimeKeyCounts(userId, deviceId);
    }

    /// <summary>
    /// Adds an upload to a batch. <paramref name="fresh"/>: the device is new in this batch (a dehydrated device
    /// replacing one of the same ID), so nothing stored for it counts.
    /// </summary>
    public void Upload(KeysBatch kb, string userId, string deviceId, JsonObject? deviceKeys,
        List<(string Algorithm, string KeyId, JsonNode Key)> oneTimeKeys, List<(string Algorithm, string KeyId, JsonNode Key)> fallbackKeys, bool fresh)
    {
        if (fresh) kb.OnCommitted(() => ForgetDevice(userId, deviceId));
        if (deviceKeys is not null)
        {
            var key = KeysFamilies.DeviceKeysKey(userId, deviceId);
            var old = fresh ? null : _deviceKeys.Get(key);
            if (old is null || !SameJson(Parse(old), deviceKeys))
            {
                kb.Batch.Put(KeysFamilies.DeviceKeys, key, Bytes(deviceKeys));
                DeviceListChanged(kb, userId);
            }
        }
        long pos = 0;
        foreach (var (alg, keyId, value) in oneTimeKeys)
        {
            var idKey = KeysFamilies.OneTimeKeyIdKey(userId, deviceId, keyId);
            if (!fresh && _otkIds.Get(idKey) is { } existingPos)
            {
                var existing = _otks.Get(KeysFamilies.OneTimeKeyKey(userId, deviceId, alg, (long)K.ReadBigEndian(existingPos), keyId));
                if (existing is not null && SameJson(Parse(existing), value)) continue;
                throw Err.InvalidParam($"One-time key {keyId} already exists with different content");
            }
            if (pos == 0) pos = kb.Next();
            kb.Batch.Put(KeysFamilies.OneTimeKeys, KeysFamilies.OneTimeKeyKey(userId, deviceId, alg, pos, keyId), Bytes(value));
            kb.Batch.Put(KeysFamilies.OneTimeKeyIds, idKey, K.BigEndian((ulong)pos));
            AdjustCount(kb, userId, deviceId, alg, +1);
        }
        foreach (var (alg, keyId, value) in fallbackKeys)
        {
            var key = KeysFamilies.FallbackKeyKey(userId, deviceId, alg);
            if (!fresh && _fallback.Get(key) is { } old && Parse(old) is JsonObject o && o["key_id"]?.GetValue<string>() == keyId && SameJson(o["key"], value))
                continue;
            kb.Batch.Put(KeysFamilies.FallbackKeys, key, Bytes(new JsonObject { ["key_id"] = keyId, ["key"] = value.DeepClone(), ["used"] = false }));
            kb.CountsChanged(userId);
        }
    }

    static bool SameJson(JsonNode? a, JsonNode? b)
    {
        try { return CanonicalJson.Serialize(a) == CanonicalJson.Serialize(b); }
        catch (CanonicalJsonException) { return false; }
    }

    public Dictionary<string, int> OneTimeKeyCounts(string userId, string deviceId)
    {
        Dictionary<string, int>? counts;
        lock (_memo) _counts.TryGetValue((userId, deviceId), out counts);
        counts ??= stream.Locked(() =>
        {
            // Counted under the stream's lock, so no write lands between the count and the cache entry.
            var fresh = new Dictionary<string, int>(StringComparer.Ordinal);
            foreach (var (k, _) in _otkIds.Scan(KeysFamilies.OneTimeKeyIdsPrefix(userId, deviceId)))
            {
                var id = K.Split(k)[2];
                var alg = id[..id.IndexOf(':')];
                fresh[alg] = fresh.GetValueOrDefault(alg) + 1;
            }
            Memo(_counts, (userId, deviceId), fresh);
            return fresh;
        });
        // Clients expect signed_curve25519 even at zero (Synapse always sends it).
        var copy = new Dictionary<string, int>(StringComparer.Ordinal) { ["signed_curve25519"] = 0 };
        lock (_memo)
            foreach (var (alg, n) in counts) copy[alg] = n;
        return copy;
    }

    // Keeps a cached count in step with a committed change (a device not cached is counted when next asked).
    void AdjustCount(KeysBatch kb, string userId, string deviceId, string alg, int delta)
        => kb.CountsChanged(userId).OnCommitted(() =>
        {
            lock (_memo)
                if (_counts.TryGetValue((userId, deviceId), out var c)) c[alg] = c.GetValueOrDefault(alg) + delta;
        });

    public List<string> UnusedFallbackKeyTypes(string userId, string deviceId)
    {
        var list = new List<string>();
        foreach (var (k, v) in _fallback.Scan(KeysFamilies.FallbackKeysPrefix(userId, deviceId)))
            if (Parse(v)["used"]?.GetValue<bool>() != true) list.Add(K.Split(k)[2]);
        return list;
    }

    // ---- claims

    /// <summary>
    /// Hands out one key per request: the device's oldest one-time key of the algorithm (deleted as it goes), else
    /// its fallback key (marked used, kept and handed out again until replaced: MSC2732). All under the stream's lock
    /// and written as one batch, so concurrent claims never get the same one-time key.
    /// </summary>
    public JsonObject Claim(IReadOnlyList<ClaimRequest> requests)
    {
        return stream.Write(kb =>
        {
            var result = new JsonObject();
            var taken = new HashSet<string>(StringComparer.Ordinal);
            foreach (var (userId, deviceId, alg) in requests)
            {
                JsonNode? found = null;
                string? foundId = null;
                var prefix = KeysFamilies.OneTimeKeysPrefix(userId, deviceId, alg);
                byte[]? cursor;
                lock (_memo) _claimCursor.TryGetValue((userId, deviceId, alg), out cursor);
                foreach (var (k, v) in _otks.ScanFrom(cursor ?? prefix, prefix, reverse: false))
                {
                    var keyId = Encoding.UTF8.GetString(k.AsSpan(prefix.Length + 8));
                    if (!taken.Add(userId + "\n" + deviceId + "\n" + keyId)) continue;
                    kb.Batch.Delete(KeysFamilies.OneTimeKeys, k);
                    kb.Batch.Delete(KeysFamilies.OneTimeKeyIds, KeysFamilies.OneTimeKeyIdKey(userId, deviceId, keyId));
                    // Keys are claimed oldest first and new uploads sort after every older key, so the next claim can
                    // start right after this one.
                    kb.OnCommitted(() => Memo(_claimCursor, (userId, deviceId, alg), k));
                    AdjustCount(kb, userId, deviceId, alg, -1);
                    (found, foundId) = (Parse(v), keyId);
                    break;
                }
                if (found is null && _fallback.Get(KeysFamilies.FallbackKeyKey(userId, deviceId, alg)) is { } fb)
                {
                    var o = Parse(fb).AsObject();
                    (found, foundId) = (o["key"]!.DeepClone(), o["key_id"]!.GetValue<string>());
                    if (o["used"]?.GetValue<bool>() != true)
                    {
                        o["used"] = true;
                        kb.Batch.Put(KeysFamilies.FallbackKeys, KeysFamilies.FallbackKeyKey(userId, deviceId, alg), Bytes(o));
                        kb.CountsChanged(userId);
                    }
                }
                if (found is null) continue;
                var byUser = result[userId] as JsonObject ?? (JsonObject)(result[userId] = new JsonObject());
                var byDevice = byUser[deviceId] as JsonObject ?? (JsonObject)(byUser[deviceId] = new JsonObject());
                byDevice[foundId!] = found;
            }
            return result;
        });
    }

    // ---- to-device messages

    /// <summary>
    /// Queues a /sendToDevice request's messages for local devices, idempotent per sender device and transaction ID
    /// (returns false for a transaction already done). "*" means every device of the user; unknown users and devices
    /// are skipped, as the spec lets servers do.
    /// </summary>
    public bool SendToDevice(string sender, string senderDevice, string txnId, string type, IReadOnlyList<ToDeviceMessage> messages)
    {
        return stream.Write(kb =>
        {
            var txnKey = KeysFamilies.ToDeviceTxnKey(sender, senderDevice, txnId);
            if (_txns.Contains(txnKey)) return false;
            foreach (var m in messages)
            {
                IEnumerable<string> targets = m.DeviceId == "*"
                    ? _devices.Scan(K.Prefix(m.UserId)).Select(e => K.Split(e.Key)[1]).ToList()
                    : _devices.Contains(K.Join(m.UserId, m.DeviceId)) ? [m.DeviceId] : [];
                var ev = Bytes(new JsonObject { ["sender"] = sender, ["type"] = type, ["content"] = m.Content.DeepClone() });
                foreach (var d in targets)
                {
                    kb.Batch.Put(KeysFamilies.ToDevice, KeysFamilies.ToDeviceKey(m.UserId, d, kb.Next()), ev);
                    kb.Wake.Add(m.UserId);
                }
            }
            kb.Batch.Put(KeysFamilies.ToDeviceTxns, txnKey, []);
            return true;
        });
    }

    /// <summary>
    /// A device's part of /sync after keys-stream position <paramref name="since"/>: first deletes its to-device
    /// messages at or before <paramref name="since"/> (a client syncing from a token has received them), then reads
    /// up to <see cref="ToDevicePerSync"/> newer ones. When more wait, the position is the last one delivered, so the
    /// next sync continues from there. With <paramref name="toDevice"/> false the messages are left alone (neither
    /// acknowledged nor read); <paramref name="limit"/> (1 to <see cref="ToDevicePerSync"/>) delivers fewer.
    /// </summary>
    public KeysSync Sync(string userId, string deviceId, long since, bool incremental, bool toDevice = true, int limit = ToDevicePerSync)
    {
        var prefix = KeysFamilies.ToDevicePrefix(userId, deviceId);
        limit = Math.Clamp(limit, 1, ToDevicePerSync);
        if (since > 0 && toDevice)
        {
            // Everything at or before since is acknowledged and deleted, starting after what was acknowledged before.
            long done;
            lock (_memo) done = _ackedUpTo.GetValueOrDefault((userId, deviceId));
            if (since > done)
            {
                var acked = new List<byte[]>();
                foreach (var (k, _) in _toDevice.ScanFrom(KeysFamilies.ToDeviceKey(userId, deviceId, done + 1), prefix, reverse: false))
                {
                    if ((long)K.ReadBigEndian(k.AsSpan(prefix.Length)) > since) break;
                    acked.Add(k);
                }
                // Most syncs acknowledge nothing new: they only move the mark, without the stream's (writers') lock.
                if (acked.Count == 0) Memo(_ackedUpTo, (userId, deviceId), since);
                else
                    stream.Write(kb =>
                    {
                        acked.ForEach(k => kb.Batch.Delete(KeysFamilies.ToDevice, k));
                        kb.OnCommitted(() => Memo(_ackedUpTo, (userId, deviceId), since));
                    });
            }
        }
        var upTo = stream.Position;
        var position = upTo;
        var events = new List<string>();
        foreach (var (k, v) in toDevice ? _toDevice.ScanFrom(KeysFamilies.ToDeviceKey(userId, deviceId, since + 1), prefix, reverse: false) : [])
        {
            var pos = (long)K.ReadBigEndian(k.AsSpan(prefix.Length));
            if (pos > upTo) break;
            if (events.Count == limit)
            {
                position = (long)K.ReadBigEndian(k.AsSpan(prefix.Length)) - 1;
                break;
            }
            events.Add(Encoding.UTF8.GetString(v));
        }
        var changed = incremental ? ChangedUsers(since, position) : [];
        return new KeysSync(position, events, OneTimeKeyCounts(userId, deviceId), UnusedFallbackKeyTypes(userId, deviceId), changed);
    }

    // ---- device lists

    /// <summary>Records that a user's device list changed (keys, devices or cross-signing keys), once per batch.</summary>
    public void DeviceListChanged(KeysBatch kb, string userId)
    {
        if (!kb.Changed.Add(userId)) return;
        var pos = kb.Next();
        var posKey = KeysFamilies.DeviceListPosKey(userId);
        if (_logPos.Get(posKey) is { } old) kb.Batch.Delete(KeysFamilies.DeviceListLog, old);
        var p = K.BigEndian((ulong)pos);
        kb.Batch.Put(KeysFamilies.DeviceListLog, p, K.Utf8(userId));
        kb.Batch.Put(KeysFamilies.DeviceListPos, posKey, p);
    }

    /// <summary>Users whose device list changed in (from, to]: the log keeps only each user's latest change.</summary>
    public List<string> ChangedUsers(long from, long to)
    {
        var list = new List<string>();
        if (to <= from) return list;
        foreach (var (k, v) in _log.ScanFrom(KeysFamilies.DeviceListLogKey(from + 1), [], reverse: false))
        {
            if ((long)K.ReadBigEndian(k) > to) break;
            list.Add(Encoding.UTF8.GetString(v));
        }
        return list;
    }

    /// <summary>Adds to a batch the deletion of everything E2EE a device has, and records the device-list change.</summary>
    public void DeleteDevice(KeysBatch kb, string userId, string deviceId)
    {
        kb.Batch.Delete(KeysFamilies.DeviceKeys, KeysFamilies.DeviceKeysKey(userId, deviceId));
        DeletePrefix(kb, KeysFamilies.OneTimeKeys, KeysFamilies.OneTimeKeysPrefix(userId, deviceId));
        DeletePrefix(kb, KeysFamilies.OneTimeKeyIds, KeysFamilies.OneTimeKeyIdsPrefix(userId, deviceId));
        DeletePrefix(kb, KeysFamilies.FallbackKeys, KeysFamilies.FallbackKeysPrefix(userId, deviceId));
        DeletePrefix(kb, KeysFamilies.ToDevice, KeysFamilies.ToDevicePrefix(userId, deviceId));
        DeletePrefix(kb, KeysFamilies.ToDeviceTxns, KeysFamilies.ToDeviceTxnsPrefix(userId, deviceId));
        DeletePrefix(kb, KeysFamilies.Signatures, KeysFamilies.SignaturesPrefix(userId, deviceId));
        kb.OnCommitted(() => ForgetDevice(userId, deviceId));
        if (DehydratedDevice(userId)?["device_id"]?.GetValue<string>() == deviceId)
            kb.Batch.Delete(KeysFamilies.Dehydrated, KeysFamilies.DehydratedKey(userId));
        DeviceListChanged(kb, userId);
    }

    void ForgetDevice(string userId, string deviceId)
    {
        lock (_memo)
        {
            _counts.Remove((userId, deviceId));
            _ackedUpTo.Remove((userId, deviceId));
            foreach (var k in _claimCursor.Keys.Where(k => k.Item1 == userId && k.Item2 == deviceId).ToList()) _claimCursor.Remove(k);
        }
    }

    /// <summary>Adds the deletion of every key that starts with <paramref name="prefix"/> (a prefix ending in 0xFF).</summary>
    public static void DeletePrefix(KeysBatch kb, string family, byte[] prefix)
        => kb.Batch.DeleteRange(family, prefix, K.PrefixEnd(prefix) ?? throw new ArgumentException("A prefix of 0xFF bytes only", nameof(prefix)));

    // ---- dehydrated devices (MSC3814)

    /// <summary>The user's dehydrated device: {device_id, device_data}, or null.</summary>
    public JsonObject? DehydratedDevice(string userId)
        => stream.Store.Map(KeysFamilies.Dehydrated).Get(KeysFamilies.DehydratedKey(userId)) is { } v ? Parse(v).AsObject() : null;

    // ---- signatures by others (cross-signing), merged into the keys they sign when served

    /// <summary>Adds the stored signatures of a key (a device ID or a cross-signing public key) to its JSON.</summary>
    public void MergeSignatures(string userId, string keyId, JsonObject key)
    {
        foreach (var (k, v) in _signatures.Scan(KeysFamilies.SignaturesPrefix(userId, keyId)))
        {
            var parts = K.Split(k);
            var sigs = key["signatures"] as JsonObject ?? (JsonObject)(key["signatures"] = new JsonObject());
            var bySigner = sigs[parts[2]] as JsonObject ?? (JsonObject)(sigs[parts[2]] = new JsonObject());
            bySigner[parts[3]] = Encoding.UTF8.GetString(v);
        }
    }
}

using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Protos.Federation;
using Grpc.Core;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using K = Conduit.Common.Storage.Keys;

namespace Conduit.Keys.E2ee;

/// <summary>
/// Tells the servers sharing a room with a local user what changed in the user's device list (spec: server-server-api,
/// "Device Management"): one m.device_list_update per added, changed or deleted device, with the device's keys, and
/// an m.signing_key_update when the public cross-signing keys change. Each user's updates are numbered (stream_id)
/// and chained (prev_id), so a receiver that missed one sees the gap and fetches the list again. What was last said
/// of each user is kept (keys_device_lists_sent), and the change is found by comparing with it; the position of the
/// keys stream up to which changes were handled is kept too, so changes made while a send failed or the server was
/// down go out when it is back, and nothing is sent twice after a restart except the changes of the last unfinished
/// batch (same stream_id: a receiver ignores them).
/// </summary>
public sealed partial class DeviceListSender(E2eeStore e2ee, CrossSigning crossSigning, KeysEndpoints accounts, Protos.Rooms.Rooms.RoomsClient rooms,
    Protos.Federation.Federation.FederationClient federation, GlobalConfig config, ILogger<DeviceListSender> log) : BackgroundService
{
    static readonly TimeSpan RetryAfter = TimeSpan.FromSeconds(10);

    /// <summary>The stream_id of the last update sent for a local user (0: none): what GET /user/devices answers.</summary>
    public static long SentStreamId(Common.Storage.IKeyValueStore store, string userId)
        => Record(store, userId)?["stream_id"] is JsonValue v && v.TryGetValue(out long id) ? id : 0;

    static JsonObject? Record(Common.Storage.IKeyValueStore store, string userId)
        => store.Map(KeysFamilies.DeviceListsSent).Get(KeysFamilies.DeviceListsSentUserKey(userId)) is { } v ? JsonNode.Parse(v) as JsonObject : null;

    protected override async Task ExecuteAsync(CancellationToken ct)
    {
        if (!config.AllowFederation) return;
        await Task.Yield();
        var counters = e2ee.Stream.Store.Map(KeysFamilies.Counters);
        // First start with this sender: changes made before it are not replayed (other servers fetch lists when they
        // need them); from then on every change is handled exactly from where the last run stopped.
        long sent;
        if (counters.Get(KeysFamilies.DeviceListsSentKey) is { } saved) sent = (long)K.ReadBigEndian(saved);
        else counters.Put(KeysFamilies.DeviceListsSentKey, K.BigEndian((ulong)(sent = e2ee.Stream.Position)));
        try
        {
            await foreach (var advance in e2ee.Stream.Watch(ct))
            {
                if (advance.Position <= sent) continue;
                var users = e2ee.ChangedUsers(sent, advance.Position).Where(u => Ids.ServerOf(u) == config.ServerName).Distinct(StringComparer.Ordinal).ToList();
                while (true)
                {
                    try
                    {
                        foreach (var user in users) await AnnounceAsync(user, ct);
                        break;
                    }
                    catch (RpcException e) when (!ct.IsCancellationRequested)
                    {
                        LogFailed(log, e.Status.Detail);
                        await Task.Delay(RetryAfter, ct);
                    }
                }
                sent = advance.Position;
                counters.Put(KeysFamilies.DeviceListsSentKey, K.BigEndian((ulong)sent));
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested) { }
    }

    /// <summary>Compares the user's devices with what was last said of them and queues the updates for the servers in a room with them.</summary>
    async Task AnnounceAsync(string userId, CancellationToken ct)
    {
        var store = e2ee.Stream.Store;
        var record = Record(store, userId) ?? new JsonObject { ["stream_id"] = 0L, ["devices"] = new JsonObject(), ["cross_signing"] = "" };
        var said = record["devices"] as JsonObject ?? [];
        var id = record["stream_id"] is JsonValue sv && sv.TryGetValue(out long s) ? s : 0;
        var updates = new List<JsonObject>();
        var now = new JsonObject();

        JsonObject Update(string deviceId, bool deleted)
        {
            var content = new JsonObject
            {
                ["user_id"] = userId, ["device_id"] = deviceId, ["stream_id"] = ++id,
                ["prev_id"] = id > 1 ? new JsonArray((JsonNode)(id - 1)) : new JsonArray(), ["deleted"] = deleted,
            };
            updates.Add(new JsonObject { ["edu_type"] = "m.device_list_update", ["content"] = content });
            return content;
        }

        var names = accounts.DeviceNames(userId);
        var keys = e2ee.AllDeviceKeys(userId).ToDictionary(d => d.DeviceId, d => d.Keys, StringComparer.Ordinal);
        foreach (var deviceId in names.Keys.Union(keys.Keys, StringComparer.Ordinal))
        {
            var k = keys.GetValueOrDefault(deviceId);
            if (k is not null) e2ee.MergeSignatures(userId, deviceId, k);
            var name = names.GetValueOrDefault(deviceId);
            var hash = Hash(new JsonObject { ["keys"] = k?.DeepClone(), ["name"] = name });
            now[deviceId] = hash;
            if (said[deviceId] is JsonValue h && h.TryGetValue(out string? was) && was == hash) continue;
            var content = Update(deviceId, deleted: false);
            if (k is not null) content["keys"] = k;
            if (name is not null) content["device_display_name"] = name;
        }
        foreach (var (deviceId, _) in said)
            if (!now.ContainsKey(deviceId)) Update(deviceId, deleted: true);

        var master = crossSigning.Served(userId, "master");
        var selfSigning = crossSigning.Served(userId, "self_signing");
        var crossHash = master is null && selfSigning is null ? "" : Hash(new JsonObject { ["m"] = master?.DeepClone(), ["s"] = selfSigning?.DeepClone() });
        var crossSaid = record["cross_signing"] is JsonValue cv && cv.TryGetValue(out string? c) ? c : "";
        if (crossHash != crossSaid && crossHash.Length > 0)
        {
            var content = new JsonObject { ["user_id"] = userId };
            if (master is not null) content["master_key"] = master;
            if (selfSigning is not null) content["self_signing_key"] = selfSigning;
            updates.Add(new JsonObject { ["edu_type"] = "m.signing_key_update", ["content"] = content });
        }
        if (updates.Count == 0) return;

        var servers = (await rooms.SharedUsersAsync(new Protos.Rooms.SharedUsersRequest { UserIds = { userId } }, cancellationToken: ct)).UserIds
            .Select(Ids.ServerOf).Where(sv => sv != config.ServerName).Distinct(StringComparer.Ordinal).ToList();
        if (servers.Count > 0)
            foreach (var edu in updates)
                await federation.QueueEduAsync(new QueueEduRequest { Destinations = { servers }, Edu = edu.ToJsonString() }, cancellationToken: ct);
        // Queued (the federation queue is durable), then recorded: a crash in between repeats the same updates.
        var next = new JsonObject { ["stream_id"] = id, ["devices"] = now, ["cross_signing"] = crossHash };
        store.Map(KeysFamilies.DeviceListsSent).Put(KeysFamilies.DeviceListsSentUserKey(userId), Encoding.UTF8.GetBytes(next.ToJsonString()));
    }

    static string Hash(JsonObject o) => Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(o.ToJsonString())), 0, 16);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Device list updates not queued for other servers, retrying: {Error}")]
    static partial void LogFailed(ILogger log, string error);
}

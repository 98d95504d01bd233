using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Http;
using Conduit.Protos.Federation;
using Grpc.Core;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Conduit.Keys.E2ee;

/// <summary>
/// End-to-end encryption across servers (spec: server-server-api, "End-to-End Encryption", "Device Management",
/// "Send-to-device messaging"). Our users' devices and keys are served to other servers (user/devices,
/// user/keys/query, user/keys/claim). Other servers' users who share a room with one of ours have their device
/// lists cached (<see cref="RemoteDeviceLists"/>: fetched once, kept current by their server's update EDUs, fetched
/// again after a gap); other users' keys are asked of their server each time. To-device messages go out as
/// m.direct_to_device EDUs, and those that come in are queued for our devices; changes of our users' device lists
/// go out through <see cref="DeviceListSender"/>.
/// </summary>
public sealed class FederatedKeys(E2eeStore e2ee, CrossSigning crossSigning, KeysEndpoints accounts, RemoteDeviceLists remoteLists,
    Protos.Federation.Federation.FederationClient federation, Protos.Rooms.Rooms.RoomsClient rooms, GlobalConfig config)
{
    static readonly TimeSpan RemoteTimeout = TimeSpan.FromSeconds(10);

    public bool IsLocal(string userId) => Ids.ServerOf(userId) == config.ServerName;

    static JsonObject Child(JsonObject parent, string key)
        => parent[key] as JsonObject ?? (JsonObject)(parent[key] = new JsonObject());

    /// <summary>
    /// Adds a local user's device keys (with signatures and display names) and public cross-signing keys to a
    /// /keys/query answer; the user-signing key only when <paramref name="requester"/> is its owner.
    /// </summary>
    public void AddLocal(string userId, IReadOnlyCollection<string> devices, string? requester, JsonObject deviceKeys, JsonObject master, JsonObject selfSigning, JsonObject? userSigning)
    {
        var byDevice = Child(deviceKeys, userId);
        var names = accounts.DeviceNames(userId);
        foreach (var (deviceId, keys) in e2ee.AllDeviceKeys(userId))
        {
            if (devices.Count > 0 && !devices.Contains(deviceId)) continue;
            e2ee.MergeSignatures(userId, deviceId, keys);
            var unsigned = new JsonObject();
            if (names.TryGetValue(deviceId, out var name) && name is not null) unsigned["device_display_name"] = name;
            keys["unsigned"] = unsigned;
            byDevice[deviceId] = keys;
        }
        if (crossSigning.Served(userId, "master") is { } m) master[userId] = m;
        if (crossSigning.Served(userId, "self_signing") is { } s) selfSigning[userId] = s;
        if (userSigning is not null && userId == requester && crossSigning.Served(userId, "user_signing") is { } u) userSigning[userId] = u;
    }

    // ---- outbound

    async Task<(JsonObject? Body, JsonObject? Failure)> AskAsync(string server, string path, JsonObject body, CancellationToken ct)
    {
        if (!config.AllowFederation) return (null, new JsonObject { ["status"] = 403, ["message"] = "Federation is disabled" });
        var reply = await federation.SendRequestAsync(new OutboundRequest
        {
            Destination = server, Method = "POST", Path = path, Body = body.ToJsonString(), TimeoutMs = (int)RemoteTimeout.TotalMilliseconds,
        }, cancellationToken: ct);
        return Answer(reply);
    }

    static (JsonObject? Body, JsonObject? Failure) Answer(OutboundReply reply)
    {
        if (reply.Status != 200) return (null, new JsonObject { ["status"] = reply.Status == 0 ? 503 : reply.Status, ["message"] = reply.Error.Length > 0 ? reply.Error : "Refused" });
        try { return (RequestJson.ParseObject(reply.Body, "answer"), null); }
        catch (MatrixException) { return (null, new JsonObject { ["status"] = 502, ["message"] = "Not JSON" }); }
    }

    async Task<(JsonObject? Body, JsonObject? Failure)> GetAsync(string server, string path, CancellationToken ct)
    {
        if (!config.AllowFederation) return (null, new JsonObject { ["status"] = 403, ["message"] = "Federation is disabled" });
        var reply = await federation.SendRequestAsync(new OutboundRequest
        {
            Destination = server, Method = "GET", Path = path, TimeoutMs = (int)RemoteTimeout.TotalMilliseconds,
        }, cancellationToken: ct);
        return Answer(reply);
    }

    /// <summary>
    /// /keys/query for users of other servers. Users sharing a room with one of ours are served from the cache, their
    /// list fetched first (GET /user/devices) when it is not cached; the others are asked of their server, one
    /// request per server, all at once, and only what an answer says about that server's own users is taken.
    /// Unreachable servers go to <paramref name="failures"/>.
    /// </summary>
    public async Task QueryRemoteAsync(IEnumerable<(string UserId, List<string> Devices)> users, JsonObject deviceKeys, JsonObject master, JsonObject selfSigning,
        JsonObject failures, CancellationToken ct)
    {
        var all = users.ToList();
        var tracked = await TrackedAsync(all.Select(u => u.UserId), ct);
        var cached = await Task.WhenAll(all.Where(u => tracked.Contains(u.UserId)).Select(async u => (u, Entry: await CachedListAsync(u.UserId, ct))));
        var asked = all.Where(u => !tracked.Contains(u.UserId)).ToList();
        foreach (var ((userId, devices), (entry, failure)) in cached)
        {
            if (entry is not null) RemoteDeviceLists.Serve(userId, entry, devices, deviceKeys, master, selfSigning);
            else if (failure is not null) failures[Ids.ServerOf(userId)] = failure;
        }
        var byServer = asked.GroupBy(u => Ids.ServerOf(u.UserId)).ToList();
        var answers = await Task.WhenAll(byServer.Select(async g =>
        {
            var wanted = new JsonObject();
            foreach (var (u, d) in g) wanted[u] = new JsonArray(d.Select(x => (JsonNode)x).ToArray());
            return (g.Key, await AskAsync(g.Key, "/_matrix/federation/v1/user/keys/query", new JsonObject { ["device_keys"] = wanted }, ct));
        }));
        foreach (var (server, (body, failure)) in answers)
        {
            if (failure is not null) { failures[server] = failure; continue; }
            foreach (var (section, into) in new[] { ("device_keys", deviceKeys), ("master_keys", master), ("self_signing_keys", selfSigning) })
                if (body![section] is JsonObject part)
                    foreach (var (userId, value) in part)
                        if (value is JsonObject o && Ids.IsUserId(userId) && Ids.ServerOf(userId) == server) into[userId] = o.DeepClone();
        }
    }

    /// <summary>
    /// The remote users among <paramref name="userIds"/> who share a room with one of our users: their servers send us
    /// their updates, so their cached lists stay current. A cached list of any other user is dropped (its server no
    /// longer tells us of changes).
    /// </summary>
    async Task<HashSet<string>> TrackedAsync(IEnumerable<string> userIds, CancellationToken ct)
    {
        var all = userIds.Distinct(StringComparer.Ordinal).ToList();
        var tracked = new HashSet<string>((await rooms.SharingWithLocalAsync(new Protos.Rooms.SharedUsersRequest { UserIds = { all } }, cancellationToken: ct)).UserIds, StringComparer.Ordinal);
        foreach (var userId in all.Where(u => !tracked.Contains(u))) remoteLists.Forget(userId);
        return tracked;
    }

    /// <summary>A tracked user's cached list, fetched from their server (GET /user/devices) and cached when missing.</summary>
    async Task<(JsonObject? Entry, JsonObject? Failure)> CachedListAsync(string userId, CancellationToken ct)
    {
        if (remoteLists.Get(userId) is { } entry) return (entry, null);
        var (body, failure) = await GetAsync(Ids.ServerOf(userId), "/_matrix/federation/v1/user/devices/" + Uri.EscapeDataString(userId), ct);
        if (failure is not null) return (null, failure);
        if (RemoteDeviceLists.FromDevicesAnswer(userId, body!) is not { } fetched) return (null, new JsonObject { ["status"] = 502, ["message"] = "The answer is about another user" });
        remoteLists.Put(userId, fetched);
        return (fetched, null);
    }

    /// <summary>/keys/claim for users of other servers, one request per server.</summary>
    public async Task ClaimRemoteAsync(IEnumerable<ClaimRequest> claims, JsonObject oneTimeKeys, JsonObject failures, CancellationToken ct)
    {
        var byServer = claims.GroupBy(c => Ids.ServerOf(c.UserId)).ToList();
        var answers = await Task.WhenAll(byServer.Select(async g =>
        {
            var wanted = new JsonObject();
            foreach (var c in g) Child(wanted, c.UserId)[c.DeviceId] = c.Algorithm;
            return (g.Key, await AskAsync(g.Key, "/_matrix/federation/v1/user/keys/claim", new JsonObject { ["one_time_keys"] = wanted }, ct));
        }));
        foreach (var (server, (body, failure)) in answers)
        {
            if (failure is not null) { failures[server] = failure; continue; }
            if (body!["one_time_keys"] is JsonObject part)
                foreach (var (userId, value) in part)
                    if (value is JsonObject o && Ids.IsUserId(userId) && Ids.ServerOf(userId) == server) oneTimeKeys[userId] = o.DeepClone();
        }
    }

    /// <summary>To-device messages for users of other servers: one m.direct_to_device EDU per server.</summary>
    public async Task SendToDeviceAsync(string sender, string type, string txnId, IEnumerable<ToDeviceMessage> messages, CancellationToken ct)
    {
        if (!config.AllowFederation) return;
        foreach (var g in messages.GroupBy(m => Ids.ServerOf(m.UserId)))
        {
            var byUser = new JsonObject();
            foreach (var m in g) Child(byUser, m.UserId)[m.DeviceId] = m.Content.DeepClone();
            var edu = new JsonObject
            {
                ["edu_type"] = "m.direct_to_device",
                ["content"] = new JsonObject { ["sender"] = sender, ["type"] = type, ["message_id"] = $"{sender}|{txnId}", ["messages"] = byUser },
            };
            await federation.QueueEduAsync(new QueueEduRequest { Destinations = { g.Key }, Edu = edu.ToJsonString() }, cancellationToken: ct);
        }
    }

    // ---- inbound (protos/keys.proto, Federate)

    public JsonObject Handle(string origin, string operation, string userId, JsonObject body) => operation switch
    {
        "user_devices" => Devices(userId),
        "user_keys_query" => Query(body),
        "user_keys_claim" => Claim(body),
        "edus" => new JsonObject { ["applied"] = ReceiveEdus(origin, body["edus"] as JsonArray ?? []) },
        _ => throw Err.Unrecognized(),
    };

    /// <summary>GET /user/devices/{userId}: the devices of one of our users with keys and names, and the public cross-signing keys.</summary>
    JsonObject Devices(string userId)
    {
        if (!Ids.IsUserId(userId) || !IsLocal(userId)) throw Err.NotFound("Not a user of this server");
        var deviceKeys = new JsonObject();
        var master = new JsonObject();
        var selfSigning = new JsonObject();
        AddLocal(userId, [], null, deviceKeys, master, selfSigning, null);
        var names = accounts.DeviceNames(userId);
        var devices = new JsonArray();
        var withKeys = deviceKeys[userId] as JsonObject ?? [];
        foreach (var (deviceId, name) in names)
        {
            var d = new JsonObject { ["device_id"] = deviceId };
            if (withKeys[deviceId] is JsonObject k)
            {
                var keys = k.DeepClone().AsObject();
                keys.Remove("unsigned");
                d["keys"] = keys;
            }
            if (name is not null) d["device_display_name"] = name;
            devices.Add((JsonNode)d);
        }
        var answer = new JsonObject { ["user_id"] = userId, ["stream_id"] = DeviceListSender.SentStreamId(e2ee.Stream.Store, userId), ["devices"] = devices };
        if (master[userId] is JsonObject mk) answer["master_key"] = mk.DeepClone();
        if (selfSigning[userId] is JsonObject sk) answer["self_signing_key"] = sk.DeepClone();
        return answer;
    }

    JsonObject Query(JsonObject body)
    {
        var wanted = body["device_keys"] as JsonObject ?? throw Err.MissingParam("Missing 'device_keys'");
        if (wanted.Count > E2eeEndpoints.MaxKeysPerRequest) throw Err.InvalidParam("Too many users");
        var deviceKeys = new JsonObject();
        var master = new JsonObject();
        var selfSigning = new JsonObject();
        foreach (var (userId, devices) in wanted)
        {
            if (!Ids.IsUserId(userId) || !IsLocal(userId)) continue;
            var list = devices is JsonArray a ? a.OfType<JsonValue>().Select(v => v.TryGetValue(out string? s) ? s : null).OfType<string>().ToList() : [];
            AddLocal(userId, list, null, deviceKeys, master, selfSigning, null);
        }
        return new JsonObject { ["device_keys"] = deviceKeys, ["master_keys"] = master, ["self_signing_keys"] = selfSigning };
    }

    JsonObject Claim(JsonObject body)
    {
        var wanted = body["one_time_keys"] as JsonObject ?? throw Err.MissingParam("Missing 'one_time_keys'");
        var requests = new List<ClaimRequest>();
        foreach (var (userId, byDevice) in wanted)
        {
            if (!Ids.IsUserId(userId) || !IsLocal(userId) || byDevice is not JsonObject devices) continue;
            foreach (var (deviceId, alg) in devices)
                if (alg is JsonValue v && v.TryGetValue(out string? a) && KeyObjects.IsAlgorithm(a)) requests.Add(new ClaimRequest(userId, deviceId, a));
        }
        if (requests.Count > E2eeEndpoints.MaxKeysPerRequest) throw Err.InvalidParam("Too many keys");
        return new JsonObject { ["one_time_keys"] = requests.Count > 0 ? e2ee.Claim(requests) : new JsonObject() };
    }

    /// <summary>
    /// m.direct_to_device (the sender on the origin; messages for our users queued once per message_id) and
    /// m.device_list_update / m.signing_key_update (a user of the origin: the cached list, if any, is updated or, after
    /// a gap, dropped, and the user's device list is marked changed, so our users who share a room with them see it in
    /// /sync and ask again). The whole transaction's EDUs are applied in one batch.
    /// </summary>
    int ReceiveEdus(string origin, JsonArray edus)
    {
        var applied = 0;
        var deviceLists = new List<(string Type, string User, JsonObject Content)>();
        foreach (var edu in edus.OfType<JsonObject>())
        {
            var content = edu["content"] as JsonObject;
            switch (Str(edu, "edu_type"))
            {
                case "m.direct_to_device":
                    if (Str(content, "sender") is not { } sender || !Ids.IsUserId(sender) || Ids.ServerOf(sender) != origin) break;
                    if (Str(content, "type") is not { Length: > 0 and <= 255 } type || Str(content, "message_id") is not { Length: > 0 and <= 255 } messageId) break;
                    var list = new List<ToDeviceMessage>();
                    if (content!["messages"] is JsonObject byUser)
                        foreach (var (userId, byDevice) in byUser)
                            if (Ids.IsUserId(userId) && IsLocal(userId) && byDevice is JsonObject devices)
                                foreach (var (deviceId, c) in devices)
                                    if (c is JsonObject o) list.Add(new ToDeviceMessage(userId, deviceId, (JsonObject)o.DeepClone()));
                    if (list.Count > 0 && e2ee.SendToDevice(sender, "", messageId, type, list)) applied++;
                    break;
                case "m.device_list_update" or "m.signing_key_update":
                    if (Str(content, "user_id") is not { } user || !Ids.IsUserId(user) || Ids.ServerOf(user) != origin) break;
                    deviceLists.Add((Str(edu, "edu_type")!, user, content!));
                    break;
            }
        }
        if (deviceLists.Count == 0) return applied;
        // One batch for the transaction's device-list EDUs: each sees what those before it did to the cached lists.
        e2ee.Stream.Write(kb =>
        {
            var pending = new Dictionary<string, JsonObject?>(StringComparer.Ordinal);
            foreach (var (type, user, content) in deviceLists)
            {
                if (type == "m.device_list_update") remoteLists.ApplyDeviceUpdate(kb, pending, user, content);
                else remoteLists.ApplySigningKeyUpdate(kb, pending, user, content);
                e2ee.DeviceListChanged(kb, user);
            }
        });
        return applied + deviceLists.Count;
    }

    static string? Str(JsonObject? o, string key) => o?[key] is JsonValue v && v.TryGetValue(out string? s) ? s : null;
}

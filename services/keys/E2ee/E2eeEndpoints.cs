using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Http;
using Conduit.Common.Routing;
using Conduit.Protos.Rooms;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Conduit.Keys.E2ee;

/// <summary>
/// The keys service's end-to-end encryption endpoints (spec: client-server-api, "End-to-End Encryption",
/// "Send-to-Device messaging", "Cross-signing"; MSC3814 for dehydrated devices). Every request is checked whole
/// before anything is written, and each write is one batch.
/// </summary>
public sealed class E2eeEndpoints(E2eeStore e2ee, CrossSigning crossSigning, KeysEndpoints accountEndpoints, GlobalConfig config, Rooms.RoomsClient rooms,
    FederatedKeys federated)
{
    /// <summary>Keys one /keys/claim or /keys/query may name, so one request cannot hold the stream's lock for long.</summary>
    public const int MaxKeysPerRequest = 10_000;

    public void Map(IEndpointRouteBuilder app)
    {
        app.Map(RouteTable.KeysUpload, Upload);
        app.Map(RouteTable.KeysQuery, Query);
        app.Map(RouteTable.KeysClaim, Claim);
        app.Map(RouteTable.KeysChanges, Changes);
        app.Map(RouteTable.DeviceSigningUpload, DeviceSigningUpload);
        app.Map(RouteTable.SignaturesUpload, SignaturesUpload);
        app.Map(RouteTable.SendToDevice, SendToDevice);
        app.Map(RouteTable.DehydratedDevice, DehydratedDevice);
        app.Map(RouteTable.DehydratedDeviceEvents, DehydratedDeviceEvents);
    }

    bool IsLocal(string userId) => Ids.ServerOf(userId) == config.ServerName;

    static JsonObject Child(JsonObject parent, string key)
        => parent[key] as JsonObject ?? (JsonObject)(parent[key] = new JsonObject());

    // ---- POST /keys/upload

    async Task Upload(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var body = await ctx.Request.ReadJsonObjectAsync();
        var (deviceKeys, ed) = body.OptObject("device_keys") is { } dk ? KeyObjects.DeviceKeys(dk, c.UserId, c.DeviceId) : (null, null);
        ed ??= e2ee.DeviceEd25519(c.UserId, c.DeviceId);
        var (otks, fallbacks) = OneTimeAndFallback(body, c.UserId, c.DeviceId, ed);
        var counts = e2ee.Upload(c.UserId, c.DeviceId, deviceKeys, otks, fallbacks);
        await ctx.Response.WriteJsonAsync(new JsonObject { ["one_time_key_counts"] = Counts(counts) });
    }

    static (List<(string, string, JsonNode)> Otks, List<(string, string, JsonNode)> Fallbacks) OneTimeAndFallback(JsonObject body, string userId, string deviceId, byte[]? ed)
    {
        var otks = body.OptObject("one_time_keys") is { } o ? KeyObjects.OneTimeKeys(o, "one_time_keys", userId, deviceId, ed) : [];
        // The unstable name (MSC2732) is still sent by older clients.
        var fb = body.OptObject("fallback_keys") ?? body.OptObject("org.matrix.msc2732.fallback_keys");
        var fallbacks = fb is not null ? KeyObjects.OneTimeKeys(fb, "fallback_keys", userId, deviceId, ed) : [];
        if (fallbacks.GroupBy(f => f.Algorithm).Any(g => g.Count() > 1)) throw Err.InvalidParam("fallback_keys: one key per algorithm");
        return (otks, fallbacks);
    }

    static JsonObject Counts(Dictionary<string, int> counts)
    {
        var o = new JsonObject();
        foreach (var (alg, n) in counts) o[alg] = n;
        return o;
    }

    // ---- POST /keys/query

    async Task Query(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var body = await ctx.Request.ReadJsonObjectAsync();
        var wanted = body.OptObject("device_keys") ?? throw Err.MissingParam("Missing 'device_keys'");
        if (wanted.Count > MaxKeysPerRequest) throw Err.InvalidParam($"At most {MaxKeysPerRequest} users per query");
        var requests = new List<(string UserId, List<string> Devices)>();
        foreach (var (userId, devices) in wanted)
        {
            KeyObjects.UserId(userId, "device_keys");
            var list = devices is null ? [] : devices is JsonArray a
                ? a.Select(n => n is JsonValue v && v.TryGetValue<string>(out var s) ? s : throw Err.BadJson("device_keys: device IDs must be strings")).ToList()
                : throw Err.BadJson("device_keys: each user maps to a list of device IDs");
            requests.Add((userId, list));
        }
        var deviceKeys = new JsonObject();
        var master = new JsonObject();
        var selfSigning = new JsonObject();
        var userSigning = new JsonObject();
        var failures = new JsonObject();
        foreach (var (userId, devices) in requests)
            if (IsLocal(userId)) federated.AddLocal(userId, devices, c.UserId, deviceKeys, master, selfSigning, userSigning);
        // Users of other servers: their servers are asked (spec: server-server-api, POST /user/keys/query).
        var remote = requests.Where(r => !IsLocal(r.UserId)).ToList();
        if (remote.Count > 0) await federated.QueryRemoteAsync(remote, deviceKeys, master, selfSigning, failures, ctx.RequestAborted);
        await ctx.Response.WriteJsonAsync(new JsonObject
        {
            ["device_keys"] = deviceKeys,
            ["master_keys"] = master,
            ["self_signing_keys"] = selfSigning,
            ["user_signing_keys"] = userSigning,
            ["failures"] = failures,
        });
    }

    // ---- POST /keys/claim

    async Task Claim(HttpContext ctx)
    {
        Caller.Required(ctx);
        var body = await ctx.Request.ReadJsonObjectAsync();
        var wanted = body.OptObject("one_time_keys") ?? throw Err.MissingParam("Missing 'one_time_keys'");
        var requests = new List<ClaimRequest>();
        var failures = new JsonObject();
        foreach (var (userId, byDevice) in wanted)
        {
            KeyObjects.UserId(userId, "one_time_keys");
            if (byDevice is not JsonObject devices) throw Err.BadJson("one_time_keys: each user maps devices to algorithms");
            foreach (var (deviceId, algNode) in devices)
            {
                if (algNode is not JsonValue v || !v.TryGetValue<string>(out var alg)) throw Err.BadJson("one_time_keys: the algorithm must be a string");
                if (!KeyObjects.IsAlgorithm(alg)) throw Err.InvalidParam($"one_time_keys: '{alg}' is not an algorithm name");
                requests.Add(new ClaimRequest(userId, deviceId, alg));
            }
        }
        if (requests.Count > MaxKeysPerRequest) throw Err.InvalidParam($"At most {MaxKeysPerRequest} keys per claim");
        var local = requests.Where(r => IsLocal(r.UserId)).ToList();
        var claimed = local.Count > 0 ? e2ee.Claim(local) : [];
        var remote = requests.Where(r => !IsLocal(r.UserId)).ToList();
        if (remote.Count > 0) await federated.ClaimRemoteAsync(remote, claimed, failures, ctx.RequestAborted);
        await ctx.Response.WriteJsonAsync(new JsonObject { ["one_time_keys"] = claimed, ["failures"] = failures });
    }

    // ---- GET /keys/changes

    async Task Changes(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var from = SyncToken.Parse(ctx.Request.Query("from"), "from") ?? throw Err.MissingParam("Missing 'from'");
        var to = SyncToken.Parse(ctx.Request.Query("to"), "to") ?? throw Err.MissingParam("Missing 'to'");
        var candidates = e2ee.ChangedUsers(from.Keys, Math.Min(to.Keys, e2ee.Stream.Position));
        var delta = await rooms.DeviceListDeltaAsync(new DeviceListDeltaRequest
        {
            UserId = c.UserId, From = from.Rooms, To = to.Rooms, CandidateUserIds = { candidates },
        }, cancellationToken: ctx.RequestAborted);
        await ctx.Response.WriteJsonAsync(new JsonObject
        {
            ["changed"] = new JsonArray([.. delta.Changed.Select(u => (JsonNode)u)]),
            ["left"] = new JsonArray([.. delta.Left.Select(u => (JsonNode)u)]),
        });
    }

    // ---- POST /keys/device_signing/upload, POST /keys/signatures/upload

    static List<CrossSigningKey> ParseCrossSigning(JsonObject p, string userId)
    {
        var keys = new List<CrossSigningKey>();
        foreach (var usage in CrossSigning.Usages)
            if (p.OptObject(usage + "_key") is { } o) keys.Add(CrossSigning.Parse(o, usage, userId));
        return keys;
    }

    void StoreCrossSigning(string userId, List<CrossSigningKey> keys)
        => crossSigning.Upload(userId, keys.Find(k => k.Usage == "master"), keys.Find(k => k.Usage == "self_signing"), keys.Find(k => k.Usage == "user_signing"));

    async Task DeviceSigningUpload(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var body = await ctx.Request.ReadJsonObjectAsync();
        var keys = ParseCrossSigning(body, c.UserId);
        // A first upload, or the same keys again, needs no user-interactive auth (spec: "Cross-signing", MSC3967);
        // replacing keys does.
        if (!crossSigning.HasMaster(c.UserId) || crossSigning.SameAsStored(c.UserId, keys))
        {
            StoreCrossSigning(c.UserId, keys);
            await ctx.Response.WriteJsonAsync(new JsonObject());
            return;
        }
        await accountEndpoints.WithPassword(ctx, body, "device_signing", c, p => ParseCrossSigning(p, c.UserId), p =>
        {
            StoreCrossSigning(c.UserId, ParseCrossSigning(p, c.UserId));
            return Task.FromResult(new JsonObject());
        });
    }

    async Task SignaturesUpload(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var body = await ctx.Request.ReadJsonObjectAsync();
        foreach (var (userId, _) in body) KeyObjects.UserId(userId, "signatures");
        await ctx.Response.WriteJsonAsync(crossSigning.UploadSignatures(c.UserId, body));
    }

    // ---- PUT /sendToDevice/{eventType}/{txnId}

    async Task SendToDevice(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var type = ctx.Route("eventType");
        var txnId = ctx.Route("txnId");
        if (type.Length is 0 or > 255) throw Err.InvalidParam("Invalid event type");
        if (txnId.Length is 0 or > 255) throw Err.InvalidParam("Invalid transaction ID");
        var body = await ctx.Request.ReadJsonObjectAsync();
        var messages = body.OptObject("messages") ?? throw Err.MissingParam("Missing 'messages'");
        var list = new List<ToDeviceMessage>();
        var remote = new List<ToDeviceMessage>();
        foreach (var (userId, byDevice) in messages)
        {
            KeyObjects.UserId(userId, "messages");
            if (byDevice is not JsonObject devices) throw Err.BadJson("messages: each user maps device IDs to contents");
            foreach (var (deviceId, content) in devices)
            {
                if (content is not JsonObject o) throw Err.BadJson("messages: each message content must be an object");
                // Users of other servers get theirs as m.direct_to_device EDUs.
                (IsLocal(userId) ? list : remote).Add(new ToDeviceMessage(userId, deviceId, o));
            }
        }
        // A retried transaction (already done here) is not sent on again either.
        if (e2ee.SendToDevice(c.UserId, c.DeviceId, txnId, type, list) && remote.Count > 0)
            await federated.SendToDeviceAsync(c.UserId, type, $"{c.DeviceId}|{txnId}", remote, ctx.RequestAborted);
        await ctx.Response.WriteJsonAsync(new JsonObject());
    }

    // ---- dehydrated devices (MSC3814, org.matrix.msc3814.v1): a device whose keys live on the server, so that
    // messages sent while all of a user's devices are offline can still be decrypted when one comes back.

    async Task DehydratedDevice(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        switch (ctx.Request.Method)
        {
            case "GET":
            {
                var d = e2ee.DehydratedDevice(c.UserId) ?? throw Err.NotFound("No dehydrated device");
                await ctx.Response.WriteJsonAsync(d);
                return;
            }
            case "DELETE":
            {
                var d = e2ee.DehydratedDevice(c.UserId) ?? throw Err.NotFound("No dehydrated device");
                var id = d["device_id"]!.GetValue<string>();
                accountEndpoints.Accounts.DeleteDevices(c.UserId, [id]);
                await ctx.Response.WriteJsonAsync(new JsonObject { ["device_id"] = id });
                return;
            }
        }
        var body = await ctx.Request.ReadJsonObjectAsync();
        var deviceId = body.OptString("device_id") ?? throw Err.MissingParam("Missing 'device_id'");
        if (deviceId.Length is 0 or > 255) throw Err.InvalidParam("Invalid device_id");
        var data = body.OptObject("device_data") ?? throw Err.MissingParam("Missing 'device_data'");
        var name = body.OptString("initial_device_display_name");
        if (accountEndpoints.Accounts.Device(c.UserId, deviceId) is { Dehydrated: false })
            throw Err.InvalidParam("A device with that ID exists and is not dehydrated");
        var (deviceKeys, ed) = KeyObjects.DeviceKeys(body.OptObject("device_keys") ?? throw Err.MissingParam("Missing 'device_keys'"), c.UserId, deviceId);
        var (otks, fallbacks) = OneTimeAndFallback(body, c.UserId, deviceId, ed);
        e2ee.Stream.Write(kb =>
        {
            // The old dehydrated device goes with everything it had; the new one replaces it in the same batch.
            if (e2ee.DehydratedDevice(c.UserId)?["device_id"]?.GetValue<string>() is { } old)
            {
                kb.Batch.Delete(KeysFamilies.Devices, Conduit.Common.Storage.Keys.Join(c.UserId, old));
                e2ee.DeleteDevice(kb, c.UserId, old);
            }
            AccountStore.PutDehydratedDevice(kb.Batch, c.UserId, deviceId, name);
            e2ee.Upload(kb, c.UserId, deviceId, deviceKeys, otks, fallbacks, fresh: true);
            kb.Batch.Put(KeysFamilies.Dehydrated, KeysFamilies.DehydratedKey(c.UserId),
                Encoding.UTF8.GetBytes(new JsonObject { ["device_id"] = deviceId, ["device_data"] = data.DeepClone() }.ToJsonString()));
        });
        await ctx.Response.WriteJsonAsync(new JsonObject { ["device_id"] = deviceId });
    }

    async Task DehydratedDeviceEvents(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var deviceId = ctx.Route("deviceId");
        var body = await ctx.Request.ReadJsonObjectAsync();
        if (e2ee.DehydratedDevice(c.UserId)?["device_id"]?.GetValue<string>() != deviceId)
            throw Err.Forbidden("That is not your dehydrated device");
        long since = 0;
        if (body.OptString("next_batch") is { } nb && (!long.TryParse(nb, out since) || since < 0)) throw Err.InvalidParam("Invalid next_batch");
        var r = e2ee.Sync(c.UserId, deviceId, since, incremental: false);
        var events = new JsonArray([.. r.ToDevice.Select(e => JsonNode.Parse(e))]);
        await ctx.Response.WriteJsonAsync(new JsonObject { ["events"] = events, ["next_batch"] = r.Position.ToString() });
    }
}

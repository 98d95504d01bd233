using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Http;
using Conduit.Common.Storage;
using Conduit.Keys.E2ee;
using K = Conduit.Common.Storage.Keys;

namespace Conduit.Keys;

public sealed record DeviceInfo(string DeviceId, string? DisplayName, long LastSeenTs, string? LastSeenIp, bool Dehydrated = false);

public sealed record LoginResult(string UserId, string DeviceId, string AccessToken);

/// <summary>
/// Accounts, devices and access tokens. Every change that touches several families is one batch; token
/// revocations are published to <see cref="WatchRevocations"/> after the batch is durable. Deleting a device deletes
/// its E2EE keys and to-device messages in the same batch (through the keys stream, so the user's peers hear of it).
/// </summary>
public sealed class AccountStore(IKeyValueStore store, GlobalConfig config, E2eeStore e2ee, CrossSigning crossSigning)
{
    readonly IKvMap _users = store.Map(KeysFamilies.Users);
    readonly IKvMap _devices = store.Map(KeysFamilies.Devices);
    readonly IKvMap _tokens = store.Map(KeysFamilies.Tokens);
    // Serialises account creation and device changes; reads take no lock.
    readonly Lock _write = new();
    readonly Broadcast<string> _revocations = new();

    public string ServerName => config.ServerName;

    public JsonObject? GetUser(string userId)
    {
        var v = _users.Get(K.Utf8(userId));
        return v is null ? null : JsonNode.Parse(v)!.AsObject();
    }

    public bool Exists(string userId) => _users.Get(K.Utf8(userId)) is not null;

    /// <summary>Whether the account exists and has been deactivated.</summary>
    public bool IsDeactivated(string userId) => GetUser(userId)?["deactivated"]?.GetValue<bool>() == true;

    void PutUser(IWriteBatch b, string userId, JsonObject user) => b.Put(KeysFamilies.Users, K.Utf8(userId), Encoding.UTF8.GetBytes(user.ToJsonString()));

    /// <summary>Creates the account (M_USER_IN_USE if taken) and, unless inhibited, a first device.</summary>
    public LoginResult? Register(string localpart, string password, string? deviceId, string? deviceName, bool inhibitLogin, string? ip)
    {
        var userId = Ids.UserId(localpart, config.ServerName);
        var hash = PasswordHasher.Hash(password);
        lock (_write)
        {
            if (Exists(userId)) throw Err.UserInUse();
            using var b = store.CreateBatch();
            PutUser(b, userId, new JsonObject
            {
                ["password_hash"] = hash,
                ["created_ts"] = Ids.NowMs(),
                ["deactivated"] = false,
                ["displayname"] = localpart,
            });
            LoginResult? login = null;
            if (!inhibitLogin) login = AddDevice(b, userId, deviceId, deviceName, ip, out _);
            store.Write(b);
            return login;
        }
    }

    /// <summary>Checks a password; false for unknown or deactivated users.</summary>
    public bool CheckPassword(string userId, string password)
    {
        var u = GetUser(userId);
        if (u is null || u["deactivated"]?.GetValue<bool>() == true) return false;
        var hash = u["password_hash"]?.GetValue<string>();
        return hash is not null && PasswordHasher.Verify(password, hash);
    }

    public LoginResult Login(string userId, string? deviceId, string? deviceName, string? ip)
    {
        string? revoked;
        LoginResult r;
        lock (_write)
        {
            using var b = store.CreateBatch();
            r = AddDevice(b, userId, deviceId, deviceName, ip, out revoked);
            store.Write(b);
        }
        if (revoked is not null) Publish(revoked);
        return r;
    }

    // Adds or refreshes a device with a new access token; an existing device's old token is revoked.
    LoginResult AddDevice(IWriteBatch b, string userId, string? deviceId, string? deviceName, string? ip, out string? revoked)
    {
        deviceId = string.IsNullOrEmpty(deviceId) ? Ids.Random(10).ToUpperInvariant() : deviceId;
        var token = "syt_" + Ids.Random(40);
        var key = K.Join(userId, deviceId);
        revoked = null;
        var existing = _devices.Get(key) is { } d ? JsonNode.Parse(d)!.AsObject() : null;
        if (existing?["access_token"]?.GetValue<string>() is { } old)
        {
            revoked = old;
            b.Delete(KeysFamilies.Tokens, K.Utf8(old));
        }
        var device = new JsonObject
        {
            ["device_id"] = deviceId,
            ["display_name"] = deviceName ?? existing?["display_name"]?.GetValue<string>(),
            ["last_seen_ts"] = Ids.NowMs(),
            ["last_seen_ip"] = ip,
            ["access_token"] = token,
        };
        b.Put(KeysFamilies.Devices, key, Encoding.UTF8.GetBytes(device.ToJsonString()));
        b.Put(KeysFamilies.Tokens, K.Utf8(token), K.Join(userId, deviceId));
        return new LoginResult(userId, deviceId, token);
    }

    public (string UserId, string DeviceId)? ResolveToken(string token)
    {
        var v = _tokens.Get(K.Utf8(token));
        if (v is null) return null;
        var parts = K.Split(v);
        return (parts[0], parts[1]);
    }

    /// <summary>The user's devices; a dehydrated device (MSC3814) only when asked for, as Synapse hides it from /devices.</summary>
    public IReadOnlyList<DeviceInfo> Devices(string userId, bool withDehydrated = false)
    {
        var list = new List<DeviceInfo>();
        foreach (var (_, v) in _devices.Scan(K.Concat(K.Utf8(userId), [K.Sep])))
            if (ParseDevice(v) is var d && (withDehydrated || !d.Dehydrated)) list.Add(d);
        return list;
    }

    /// <summary>Adds to a batch the record of a dehydrated device: a device without an access token.</summary>
    public static void PutDehydratedDevice(IWriteBatch b, string userId, string deviceId, string? displayName)
        => b.Put(KeysFamilies.Devices, K.Join(userId, deviceId), Encoding.UTF8.GetBytes(new JsonObject
        {
            ["device_id"] = deviceId,
            ["display_name"] = displayName,
            ["last_seen_ts"] = Ids.NowMs(),
            ["dehydrated"] = true,
        }.ToJsonString()));

    public DeviceInfo? Device(string userId, string deviceId)
        => _devices.Get(K.Join(userId, deviceId)) is { } v ? ParseDevice(v) : null;

    static DeviceInfo ParseDevice(byte[] v)
    {
        var o = JsonNode.Parse(v)!.AsObject();
        return new DeviceInfo(o["device_id"]!.GetValue<string>(), o["display_name"]?.GetValue<string>(),
            o["last_seen_ts"]?.GetValue<long>() ?? 0, o["last_seen_ip"]?.GetValue<string>(), o["dehydrated"]?.GetValue<bool>() == true);
    }

    public bool RenameDevice(string userId, string deviceId, string? name)
    {
        lock (_write)
        {
            var key = K.Join(userId, deviceId);
            if (_devices.Get(key) is not { } v) return false;
            var o = JsonNode.Parse(v)!.AsObject();
            o["display_name"] = name;
            _devices.Put(key, Encoding.UTF8.GetBytes(o.ToJsonString()));
            return true;
        }
    }

    /// <summary>Deletes devices, their tokens and their E2EE state in one batch; unknown IDs are ignored.</summary>
    public void DeleteDevices(string userId, IEnumerable<string> deviceIds, bool crossSigningToo = false)
    {
        var revoked = new List<string>();
        lock (_write)
            e2ee.Stream.Write(kb =>
            {
                foreach (var id in deviceIds.Distinct())
                {
                    var key = K.Join(userId, id);
                    if (_devices.Get(key) is not { } v) continue;
                    if (JsonNode.Parse(v)!["access_token"]?.GetValue<string>() is { } t)
                    {
                        kb.Batch.Delete(KeysFamilies.Tokens, K.Utf8(t));
                        revoked.Add(t);
                    }
                    kb.Batch.Delete(KeysFamilies.Devices, key);
                    e2ee.DeleteDevice(kb, userId, id);
                }
                if (crossSigningToo) crossSigning.DeleteUser(kb, userId);
            });
        revoked.ForEach(Publish);
    }

    public void SetPassword(string userId, string password, bool logoutDevices, string? keepDevice)
    {
        var hash = PasswordHasher.Hash(password);
        lock (_write)
        {
            var u = GetUser(userId) ?? throw Err.NotFound("No such user");
            u["password_hash"] = hash;
            using var b = store.CreateBatch();
            PutUser(b, userId, u);
            store.Write(b);
        }
        if (logoutDevices)
            DeleteDevices(userId, Devices(userId).Select(d => d.DeviceId).Where(d => d != keepDevice));
    }

    /// <summary>Marks the account deactivated (it can never be registered again) and removes every device.</summary>
    public void Deactivate(string userId)
    {
        lock (_write)
        {
            var u = GetUser(userId) ?? throw Err.NotFound("No such user");
            u["deactivated"] = true;
            u["password_hash"] = "";
            u.Remove("displayname");
            u.Remove("avatar_url");
            u.Remove("profile_fields");
            using var b = store.CreateBatch();
            PutUser(b, userId, u);
            store.Write(b);
        }
        // Every device (the dehydrated one too), their keys, and the cross-signing keys: peers see the user's
        // device list change to nothing.
        DeleteDevices(userId, Devices(userId, withDehydrated: true).Select(d => d.DeviceId), crossSigningToo: true);
    }

    public void SetProfileField(string userId, string field, string? value)
        => UpdateProfile(userId, u => { if (value is null) u.Remove(field); else u[field] = value; });

    /// <summary>
    /// Changes the account's record under the write lock: <paramref name="change"/> sees the stored user JSON and
    /// may throw to refuse (nothing is written then). Custom profile fields live in its "profile_fields" object.
    /// </summary>
    public void UpdateProfile(string userId, Action<JsonObject> change)
    {
        lock (_write)
        {
            var u = GetUser(userId) ?? throw Err.NotFound("No such user");
            change(u);
            using var b = store.CreateBatch();
            PutUser(b, userId, u);
            store.Write(b);
        }
    }

    // ---- revocation stream: the edge's token cache listens here.

    public IAsyncEnumerable<string> WatchRevocations(CancellationToken ct) => _revocations.Watch(null, ct);

    void Publish(string token) => _revocations.Publish(token);
}

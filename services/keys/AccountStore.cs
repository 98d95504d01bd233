using Conduit.Common.Admin;
using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Http;
using Conduit.Common.Storage;
using Conduit.Keys.E2ee;
using K = Conduit.Common.Storage.Keys;

namespace Conduit.Keys;

public sealed record DeviceInfo(string DeviceId, string? DisplayName, long LastSeenTs, string? LastSeenIp, bool Dehydrated = false, string? UserAgent = null);

/// <summary>A new session's tokens: with a refresh token, the access token expires after <see cref="ExpiresInMs"/>.</summary>
public sealed record LoginResult(string UserId, string DeviceId, string AccessToken, string? RefreshToken = null, long? ExpiresInMs = null);

/// <summary>Where a session comes from (recorded on its device, as /devices and /admin/whois show it), and whether
/// the client takes a refresh token (spec: "Refreshing access tokens"; then its access token expires).</summary>
public sealed record SessionOrigin(string? Ip, string? UserAgent = null, bool Refreshable = false);

/// <summary>
/// What an access token stands for. <see cref="ExpiresTs"/> is 0 for a token that never expires; an expired token
/// still names its session (<see cref="Expired"/>), so a soft-logged-out client can log out.
/// </summary>
public sealed record TokenInfo(string UserId, string DeviceId, bool IsGuest, long ExpiresTs, bool Expired, bool IsAdmin = false);

/// <summary>
/// Accounts, devices and access tokens. Every change that touches several families is one batch; token
/// revocations are published to <see cref="WatchRevocations"/> after the batch is durable. Deleting a device deletes
/// its E2EE keys and to-device messages in the same batch (through the keys stream, so the user's peers hear of it).
/// <para>
/// Refresh tokens (spec: client-server-api, "Refreshing access tokens"). A device that logged in with
/// refresh_token: true holds one access token, which expires, and one refresh token (its record's
/// <c>refresh_token</c>). /refresh replaces both and revokes the old access token at once (the spec allows either);
/// the refresh token it used stays valid (the record's <c>previous_refresh_token</c>) until the new access token or
/// the new refresh token is first used, so a client that lost the answer can refresh again: the tokens it never
/// saw are then replaced. This is Synapse's rule (handlers/auth.py <c>refresh_token</c>,
/// storage registration.py <c>replace_refresh_token</c>), which keeps at most two refresh tokens per device.
/// </para>
/// </summary>
public sealed partial class AccountStore(IKeyValueStore store, GlobalConfig config, E2eeStore e2ee, CrossSigning crossSigning)
{
    readonly IKvMap _users = store.Map(KeysFamilies.Users);
    readonly IKvMap _devices = store.Map(KeysFamilies.Devices);
    readonly IKvMap _tokens = store.Map(KeysFamilies.Tokens);
    readonly IKvMap _refreshTokens = store.Map(KeysFamilies.RefreshTokens);

    /// <summary>Milliseconds since the epoch; tests move it to expire tokens.</summary>
    public Func<long> Clock { get; set; } = Ids.NowMs;
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

    /// <summary>
    /// Creates the account (M_USER_IN_USE if taken) and, unless inhibited, a first device. The first full account of
    /// the server (no other account but guests exists) becomes a server admin, as in Conduit. <paramref name="alongside"/>
    /// adds to the same batch (a registration token's use). <paramref name="displayname"/> (the localpart when null) and
    /// <paramref name="admin"/> are shared-secret registration's.
    /// </summary>
    public LoginResult? Register(string localpart, string password, string? deviceId, string? deviceName, bool inhibitLogin, string? ip, string? userAgent = null, bool refreshable = false,
        Action<IWriteBatch>? alongside = null, string? displayname = null, bool admin = false)
    {
        var userId = Ids.UserId(localpart, config.ServerName);
        var hash = PasswordHasher.Hash(password);
        lock (_write)
        {
            if (Exists(userId) || IsReserved(userId)) throw Err.UserInUse();
            using var b = store.CreateBatch();
            var user = NewUser(hash, displayname ?? localpart);
            if (admin || !AnyFullAccount()) user["admin"] = true;
            PutUser(b, userId, user);
            LoginResult? login = null;
            if (!inhibitLogin) login = AddDevice(b, userId, deviceId, deviceName, new SessionOrigin(ip, userAgent, refreshable), out _);
            alongside?.Invoke(b);
            store.Write(b);
            return login;
        }
    }

    JsonObject NewUser(string passwordHash, string? displayname)
    {
        var u = new JsonObject { ["password_hash"] = passwordHash, ["created_ts"] = Clock(), ["deactivated"] = false };
        if (displayname is not null) u["displayname"] = displayname;
        return u;
    }

    // Whether an account other than a guest's, an application service's or the admin bot's exists (stops at the first one found).
    bool AnyFullAccount()
    {
        var bot = K.Utf8(AdminBot.UserId(config.ServerName));
        return _users.Scan([]).Any(e => !e.Key.AsSpan().SequenceEqual(bot) && JsonNode.Parse(e.Value) is { } u
            && u["is_guest"]?.GetValue<bool>() != true && u[AppserviceField] is null);
    }

    /// <summary>The admin bot's ID (<see cref="AdminBot"/>): never registered by anyone, whether the bot exists yet or not.</summary>
    public bool IsReserved(string userId) => userId == AdminBot.UserId(config.ServerName);

    /// <summary>
    /// The admin API's account creation (PUT /_synapse/admin/v2/users/{userId}): no device, no password when
    /// <paramref name="password"/> is null (the account cannot log in until one is set), deactivated from the start if
    /// asked. M_USER_IN_USE if the ID is taken.
    /// </summary>
    public void CreateByAdmin(string userId, string? password, string? displayname, string? avatarUrl, bool admin, bool deactivated)
    {
        var hash = password is null || deactivated ? "" : PasswordHasher.Hash(password);
        lock (_write)
        {
            if (Exists(userId)) throw Err.UserInUse();
            var u = NewUser(hash, deactivated ? null : displayname);
            if (!deactivated && avatarUrl is not null) u["avatar_url"] = avatarUrl;
            if (deactivated) u["deactivated"] = true;
            if (admin) u["admin"] = true;
            using var b = store.CreateBatch();
            PutUser(b, userId, u);
            store.Write(b);
        }
    }

    /// <summary>Every account, ordered by user ID.</summary>
    public IEnumerable<(string UserId, JsonObject User)> AllUsers()
    {
        foreach (var (k, v) in _users.Scan([])) yield return (Encoding.UTF8.GetString(k), JsonNode.Parse(v)!.AsObject());
    }

    // ---- server admins

    /// <summary>Whether the user is a server admin: listed in the config's admins, or the account has the admin flag.</summary>
    public bool IsAdmin(string userId) => IsAdmin(userId, GetUser(userId));

    bool IsAdmin(string userId, JsonObject? user)
        => config.Admins.Contains(userId, StringComparer.Ordinal) || user?["admin"]?.GetValue<bool>() == true;

    /// <summary>Whether the config's admins list names the user (its admin status cannot be taken away at runtime).</summary>
    public bool IsConfigAdmin(string userId) => config.Admins.Contains(userId, StringComparer.Ordinal);

    /// <summary>
    /// Sets or clears the account's admin flag; the user's tokens are published as revoked (they stay valid) so the
    /// edge resolves them again with the new status. M_NOT_FOUND for an unknown account.
    /// </summary>
    public void SetAdmin(string userId, bool admin) => UpdateProfile(userId, u =>
    {
        if (admin) u["admin"] = true; else u.Remove("admin");
    });

    /// <summary>Publishes the user's access tokens as revoked (they stay valid): the edge drops what it cached about
    /// them (a guest upgraded, an admin flag changed) and resolves them again.</summary>
    public void ForgetCachedIdentities(string userId) => TokensOf(userId).ForEach(Publish);

    // ---- guests (spec: client-server-api, "Guest access")

    /// <summary>Whether the account is a guest account (false for unknown users).</summary>
    public bool IsGuest(string userId) => GetUser(userId)?["is_guest"]?.GetValue<bool>() == true;

    /// <summary>
    /// A guest account under a random localpart, with a device whose token never expires: the spec has the server
    /// ignore every parameter of a guest registration but the device's display name. A guest has no password, so it
    /// cannot log in again; it can upgrade (<see cref="UpgradeGuest"/>).
    /// </summary>
    public LoginResult RegisterGuest(string? deviceName, string? ip, string? userAgent)
    {
        lock (_write)
        {
            string userId, localpart;
            do
            {
                localpart = Ids.Random(12).ToLowerInvariant();
                userId = Ids.UserId(localpart, config.ServerName);
            } while (Exists(userId));
            using var b = store.CreateBatch();
            PutUser(b, userId, new JsonObject
            {
                ["password_hash"] = "",
                ["created_ts"] = Clock(),
                ["deactivated"] = false,
                ["is_guest"] = true,
                ["displayname"] = localpart,
            });
            var login = AddDevice(b, userId, null, deviceName, new SessionOrigin(ip, userAgent), out _);
            store.Write(b);
            return login;
        }
    }

    /// <summary>
    /// Turns the guest account that owns <paramref name="guestAccessToken"/> into a full account with a password
    /// (spec: "Guest access": register with guest_access_token and the guest's localpart as username). The guest's
    /// devices and tokens stay; they stop being a guest's, so cached identities are dropped. Unless inhibited, a
    /// device is added (or replaced) as any registration does.
    /// </summary>
    public (string UserId, LoginResult? Login) UpgradeGuest(string guestAccessToken, string? username, string password, string? deviceId, string? deviceName, bool inhibitLogin, SessionOrigin origin,
        Action<IWriteBatch>? alongside = null)
    {
        var hash = PasswordHasher.Hash(password);
        List<string> cached;
        LoginResult? login = null;
        string userId;
        lock (_write)
        {
            userId = GuestToUpgrade(guestAccessToken, username);
            var u = GetUser(userId)!;
            u["password_hash"] = hash;
            u.Remove("is_guest");
            u["upgrade_ts"] = Clock();
            cached = TokensOf(userId);
            using var b = store.CreateBatch();
            PutUser(b, userId, u);
            if (!inhibitLogin) login = AddDevice(b, userId, deviceId, deviceName, origin, out _);
            alongside?.Invoke(b);
            store.Write(b);
        }
        // The guest's tokens are still valid, but the edge cached them as a guest's.
        cached.ForEach(Publish);
        return (userId, login);
    }

    /// <summary>
    /// The guest account a guest_access_token upgrades, checked: M_UNKNOWN_TOKEN for a token that is not valid,
    /// M_FORBIDDEN for a full account's, M_INVALID_USERNAME when <paramref name="username"/> is not the guest's localpart.
    /// </summary>
    public string GuestToUpgrade(string guestAccessToken, string? username)
    {
        var owner = ResolveToken(guestAccessToken) ?? throw Err.UnknownToken("Unknown guest_access_token");
        var u = GetUser(owner.UserId) ?? throw Err.UnknownToken("Unknown guest_access_token");
        if (u["is_guest"]?.GetValue<bool>() != true || u["deactivated"]?.GetValue<bool>() == true)
            throw Err.Forbidden("guest_access_token is not a guest's: only guest accounts are upgraded");
        if (username is not null && Ids.UserId(username.ToLowerInvariant(), config.ServerName) != owner.UserId)
            throw Err.InvalidUsername("An upgraded guest keeps its user ID: username must be the guest's localpart");
        return owner.UserId;
    }

    List<string> TokensOf(string userId)
    {
        var list = new List<string>();
        foreach (var (_, v) in _devices.Scan(K.Concat(K.Utf8(userId), [K.Sep])))
            if (JsonNode.Parse(v)!["access_token"]?.GetValue<string>() is { } t) list.Add(t);
        return list;
    }

    /// <summary>Checks a password; false for unknown or deactivated users.</summary>
    public bool CheckPassword(string userId, string password)
    {
        var u = GetUser(userId);
        if (u is null || u["deactivated"]?.GetValue<bool>() == true) return false;
        var hash = u["password_hash"]?.GetValue<string>();
        return hash is not null && PasswordHasher.Verify(password, hash);
    }

    public LoginResult Login(string userId, string? deviceId, string? deviceName, string? ip, string? userAgent = null, bool refreshable = false)
    {
        string? revoked;
        LoginResult r;
        lock (_write)
        {
            using var b = store.CreateBatch();
            r = AddDevice(b, userId, deviceId, deviceName, new SessionOrigin(ip, userAgent, refreshable), out revoked);
            store.Write(b);
        }
        if (revoked is not null) Publish(revoked);
        return r;
    }

    // Adds or refreshes a device with a new access token (and refresh token, if asked for); an existing device's
    // old tokens are revoked (spec: "Relationship between access tokens and devices").
    LoginResult AddDevice(IWriteBatch b, string userId, string? deviceId, string? deviceName, SessionOrigin origin, out string? revoked)
    {
        deviceId = string.IsNullOrEmpty(deviceId) ? Ids.Random(10).ToUpperInvariant() : deviceId;
        var key = K.Join(userId, deviceId);
        var existing = _devices.Get(key) is { } d ? JsonNode.Parse(d)!.AsObject() : null;
        revoked = existing is null ? null : DeleteTokens(b, existing);
        var device = new JsonObject
        {
            ["device_id"] = deviceId,
            ["display_name"] = deviceName ?? existing?["display_name"]?.GetValue<string>(),
        };
        return IssueTokens(b, userId, device, origin);
    }

    // Puts a new access token (and, for a refreshable session, a refresh token) on the device record and writes both.
    LoginResult IssueTokens(IWriteBatch b, string userId, JsonObject device, SessionOrigin origin)
    {
        var deviceId = device["device_id"]!.GetValue<string>();
        var now = Clock();
        var token = "syt_" + Ids.Random(40);
        device["last_seen_ts"] = now;
        device["last_seen_ip"] = origin.Ip;
        if (origin.UserAgent is not null) device["user_agent"] = origin.UserAgent;
        device["access_token"] = token;
        string? refresh = null;
        long? lifetime = null;
        if (origin.Refreshable)
        {
            refresh = "syr_" + Ids.Random(40);
            lifetime = config.RefreshableAccessTokenLifetimeMs;
            device["refresh_token"] = refresh;
            b.Put(KeysFamilies.RefreshTokens, K.Utf8(refresh), K.Join(userId, deviceId));
        }
        b.Put(KeysFamilies.Devices, K.Join(userId, deviceId), Encoding.UTF8.GetBytes(device.ToJsonString()));
        b.Put(KeysFamilies.Tokens, K.Utf8(token), lifetime is { } ms
            ? K.Join(userId, deviceId, (now + ms).ToString(System.Globalization.CultureInfo.InvariantCulture))
            : K.Join(userId, deviceId));
        return new LoginResult(userId, deviceId, token, refresh, lifetime);
    }

    // Deletes every token a device record holds (access, refresh, and the refresh token kept for a retry); returns
    // the access token, for the revocation stream.
    static string? DeleteTokens(IWriteBatch b, JsonObject device)
    {
        foreach (var field in new[] { "refresh_token", "previous_refresh_token" })
            if (device[field]?.GetValue<string>() is { } r) b.Delete(KeysFamilies.RefreshTokens, K.Utf8(r));
        if (device["access_token"]?.GetValue<string>() is not { } access) return null;
        b.Delete(KeysFamilies.Tokens, K.Utf8(access));
        return access;
    }

    /// <summary>The user and device of a valid, unexpired access token.</summary>
    public (string UserId, string DeviceId)? ResolveToken(string token)
        => Authenticate(token) is { Expired: false } t ? (t.UserId, t.DeviceId) : null;

    /// <summary>
    /// What an access token stands for, expired or not; null for an unknown token. The first use of an access token
    /// from /refresh revokes the refresh token that was exchanged for it.
    /// </summary>
    public TokenInfo? Authenticate(string token)
    {
        var v = _tokens.Get(K.Utf8(token));
        if (v is null) return null;
        var parts = K.Split(v);
        var expiresTs = parts.Length > 2 ? long.Parse(parts[2], System.Globalization.CultureInfo.InvariantCulture) : 0;
        var expired = expiresTs != 0 && Clock() >= expiresTs;
        if (expiresTs != 0 && !expired) FirstUse(parts[0], parts[1], token);
        var user = GetUser(parts[0]);
        return new TokenInfo(parts[0], parts[1], user?["is_guest"]?.GetValue<bool>() == true, expiresTs, expired, IsAdmin(parts[0], user));
    }

    // The new access token is in use: the refresh token it was issued for is done with (spec: "The old refresh token
    // remains valid until the new access token or refresh token is used").
    void FirstUse(string userId, string deviceId, string token)
    {
        var key = K.Join(userId, deviceId);
        if (_devices.Get(key) is not { } v || JsonNode.Parse(v)!["previous_refresh_token"] is null) return;
        lock (_write)
        {
            if (_devices.Get(key) is not { } again) return;
            var device = JsonNode.Parse(again)!.AsObject();
            if (device["access_token"]?.GetValue<string>() != token || device["previous_refresh_token"]?.GetValue<string>() is not { } previous) return;
            device.Remove("previous_refresh_token");
            using var b = store.CreateBatch();
            b.Delete(KeysFamilies.RefreshTokens, K.Utf8(previous));
            b.Put(KeysFamilies.Devices, key, Encoding.UTF8.GetBytes(device.ToJsonString()));
            store.Write(b);
        }
    }

    /// <summary>
    /// POST /refresh: a new access token and refresh token for the refresh token's device; the device's old access
    /// token is revoked. Unknown, replaced or logged-out refresh tokens are M_UNKNOWN_TOKEN (the spec's 401 for "unknown,
    /// or has already been used"; Synapse answers a reused one 403 M_FORBIDDEN instead). Returns the new tokens and
    /// the access token revoked.
    /// </summary>
    public (LoginResult Tokens, string? Revoked) Refresh(string refreshToken, SessionOrigin origin)
    {
        string? revoked;
        LoginResult r;
        lock (_write)
        {
            var owner = _refreshTokens.Get(K.Utf8(refreshToken)) ?? throw Err.UnknownToken("Unknown refresh token");
            var parts = K.Split(owner);
            var (userId, deviceId) = (parts[0], parts[1]);
            var key = K.Join(userId, deviceId);
            var device = _devices.Get(key) is { } d ? JsonNode.Parse(d)!.AsObject() : null;
            using var b = store.CreateBatch();
            var current = device?["refresh_token"]?.GetValue<string>();
            var previous = device?["previous_refresh_token"]?.GetValue<string>();
            if (device is null || (refreshToken != current && refreshToken != previous))
            {
                // Left behind by a device that is gone; nothing refers to it any more.
                b.Delete(KeysFamilies.RefreshTokens, K.Utf8(refreshToken));
                store.Write(b);
                throw Err.UnknownToken("Unknown refresh token");
            }
            if (refreshToken == current)
            {
                // The current refresh token is used: the one before it is revoked, and it is kept in its place until
                // the tokens issued now are used.
                if (previous is not null) b.Delete(KeysFamilies.RefreshTokens, K.Utf8(previous));
                device["previous_refresh_token"] = refreshToken;
            }
            else if (current is not null)
            {
                // The previous one again: the client never used (or never got) the last refresh's tokens; they go.
                b.Delete(KeysFamilies.RefreshTokens, K.Utf8(current));
            }
            revoked = device["access_token"]?.GetValue<string>();
            if (revoked is not null) b.Delete(KeysFamilies.Tokens, K.Utf8(revoked));
            r = IssueTokens(b, userId, device, origin with { Refreshable = true });
            store.Write(b);
        }
        if (revoked is not null) Publish(revoked);
        return (r, revoked);
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
            o["last_seen_ts"]?.GetValue<long>() ?? 0, o["last_seen_ip"]?.GetValue<string>(), o["dehydrated"]?.GetValue<bool>() == true,
            o["user_agent"]?.GetValue<string>());
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

    /// <summary>Whether the user has the device.</summary>
    public bool DeviceExists(string userId, string deviceId) => _devices.Contains(K.Join(userId, deviceId));

    /// <summary>Deletes devices, their access and refresh tokens and their E2EE state in one batch; unknown IDs are ignored.</summary>
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
                    if (DeleteTokens(kb.Batch, JsonNode.Parse(v)!.AsObject()) is { } t) revoked.Add(t);
                    kb.Batch.Delete(KeysFamilies.Devices, key);
                    kb.Removed.Add((userId, id));
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

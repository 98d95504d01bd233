using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Appservices;
using Conduit.Common.Config;
using Conduit.Common.Http;
using Conduit.Common.Routing;
using Conduit.Protos.Rooms;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Conduit.Keys;

/// <summary>The keys service's Matrix endpoints: registration, login, devices, account, profile.</summary>
public sealed partial class KeysEndpoints(AccountStore accounts, KeyBackupStore backups, Uia uia, GlobalConfig config, Rooms.RoomsClient rooms, RateLimits limits,
    Protos.Federation.Federation.FederationClient federation, RegistrationTokens registrationTokens, AppserviceUsers appserviceUsers, Microsoft.Extensions.Logging.ILogger<KeysEndpoints> log)
{
    [Microsoft.Extensions.Logging.LoggerMessage(Level = Microsoft.Extensions.Logging.LogLevel.Warning, Message = "Could not ask for {UserId}'s invite into the admin room: {Error}")]
    partial void LogAdminInviteFailed(string userId, string error);

    static readonly string[][] PasswordFlow = [["m.login.password"]];

    public void Map(IEndpointRouteBuilder app)
    {
        app.Map(RouteTable.Register, Register);
        app.Map(RouteTable.RegisterAvailable, RegisterAvailable);
        app.Map(RouteTable.RegistrationTokenValidity, RegistrationTokenValidity);
        app.Map(RouteTable.Login, Login);
        app.Map(RouteTable.Refresh, Refresh);
        app.Map(RouteTable.RefreshV1, Refresh);
        app.Map(RouteTable.AdminWhois, Whois);
        app.Map(RouteTable.AppservicePing, AppservicePing);
        app.Map(RouteTable.Logout, Logout);
        app.Map(RouteTable.LogoutAll, LogoutAll);
        app.Map(RouteTable.WhoAmI, WhoAmI);
        app.Map(RouteTable.ChangePassword, ChangePassword);
        app.Map(RouteTable.Deactivate, Deactivate);
        app.Map(RouteTable.ThreePids, ThreePids);
        app.Map(RouteTable.LoginGetToken, GetLoginToken);
        app.Map(RouteTable.Devices, GetDevices);
        app.Map(RouteTable.Device, DeviceEndpoint);
        app.Map(RouteTable.DeleteDevices, DeleteDevices);
        app.Map(RouteTable.Profile, GetProfile);
        app.Map(RouteTable.ProfileField, ProfileField);
    }

    static Caller Auth(HttpContext ctx) => Caller.Required(ctx);

    /// <summary>Tells the edge that this response revoked tokens, so it drops cached ones before answering.</summary>
    public static void Revoked(HttpContext ctx) => ctx.Response.Headers[Caller.RevokedHeader] = "1";

    /// <summary>Tells the edge that this response revoked one access token, which it drops before answering.</summary>
    static void Revoked(HttpContext ctx, string accessToken) => ctx.Response.Headers[Caller.RevokedHeader] = Caller.RevokedTokenPrefix + accessToken;

    // The edge resolved the client's address (trusted_proxies); per-address limits key on it.
    static string Ip(HttpContext ctx) => ClientIp.Of(ctx) ?? "unknown";

    /// <summary>Where a new session comes from, as its device records it (the user agent bounded in length).</summary>
    internal static SessionOrigin Origin(HttpContext ctx, bool refreshable = false)
    {
        var ua = ctx.Request.Headers.UserAgent.ToString();
        return new SessionOrigin(Ip(ctx), ua.Length == 0 ? null : ua[..Math.Min(ua.Length, 512)], refreshable);
    }

    /// <summary>The answer of /login and /register: refresh_token and expires_in_ms when the client asked for them.</summary>
    internal JsonObject LoginJson(LoginResult r)
    {
        var o = new JsonObject
        {
            ["user_id"] = r.UserId,
            ["access_token"] = r.AccessToken,
            ["device_id"] = r.DeviceId,
            ["home_server"] = config.ServerName,
        };
        if (r.RefreshToken is not null) o["refresh_token"] = r.RefreshToken;
        if (r.ExpiresInMs is { } ms) o["expires_in_ms"] = ms;
        return o;
    }

    // ---- registration (spec: client-server-api, "Account registration")

    IReadOnlyList<string[]> RegistrationFlows()
        => config.RegistrationNeedsToken() ? [["m.login.registration_token"]] : [["m.login.dummy"]];

    /// <summary>The config's registration_token, compared in constant time.</summary>
    bool IsConfigToken(string token)
        => config.RegistrationToken is { Length: > 0 } configured
            && System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(System.Text.Encoding.UTF8.GetBytes(token), System.Text.Encoding.UTF8.GetBytes(configured));

    /// <summary>
    /// GET /_matrix/client/v1/register/m.login.registration_token/validity (spec: "Token-authenticated registration"):
    /// whether a token would pass the stage now, the config's or a stored one. No access token; limited per address
    /// (rate_limits.registration_token_validity) against guessing. 403 when registration is off.
    /// </summary>
    async Task RegistrationTokenValidity(HttpContext ctx)
    {
        limits.Take(ctx, null, new Charge(limits.RegistrationTokenValidity, Ip(ctx)));
        var token = ctx.Request.Query("token") ?? throw Err.MissingParam("Missing 'token'");
        if (!config.AllowRegistration) throw Err.Forbidden("Registration is not enabled on this homeserver");
        await ctx.Response.WriteJsonAsync(new JsonObject { ["valid"] = IsConfigToken(token) || registrationTokens.IsValid(token) });
    }

    async Task Register(HttpContext ctx)
    {
        var body = await ctx.Request.ReadJsonObjectAsync();
        var kind = ctx.Request.Query("kind") ?? "user";
        if (kind == "guest")
        {
            await RegisterGuest(ctx, body);
            return;
        }
        if (kind != "user") throw Err.InvalidParam("kind must be 'user' or 'guest'");
        if (body.OptString("type") == "m.login.application_service")
        {
            await RegisterForAppservice(ctx, body);
            return;
        }
        if (!config.AllowRegistration) throw Err.Forbidden("Registration is disabled");
        var ip = Ip(ctx);

        // The parameters of the session's first request count unless this one repeats them (a later stage may send
        // only auth). A session that already passed its flow skips to the operation, which replays its result.
        var session = uia.Begin(body, "register", null);
        var p = session.Params;
        var requested = p.OptString("username");
        var localpart = requested?.ToLowerInvariant();
        var password = p.OptString("password");
        // A guest upgrading its account (spec: "Guest access"): the account exists, under the guest's localpart.
        var guestToken = p.OptString("guest_access_token");
        if (!session.Authenticated)
        {
            // Refused before the auth dance once this address has made its fill of accounts (counted below, when one
            // is made, as Synapse does: challenges cost nothing but a bounded session).
            limits.Take(ctx, null, new Charge(limits.Registration, ip, Update: false));
            // Validate what can be validated before the auth dance, as Synapse does, so a client learns early.
            if (localpart is not null) ValidateUserLocalpart(localpart);
            if (guestToken is not null) accounts.GuestToUpgrade(guestToken, localpart);
            else if (localpart is not null && accounts.Exists(Ids.UserId(localpart, config.ServerName))) throw Err.UserInUse();
        }
        uia.Require(session, ip, RegistrationFlows(), (stage, auth) => stage switch
        {
            "m.login.dummy" => true,
            // The config's token, or a stored one, whose use by this session then counts as pending.
            "m.login.registration_token" => auth.OptString("token") is { } t && (IsConfigToken(t) || registrationTokens.UseInSession(t, session.SessionId!)),
            _ => false,
        });
        var result = await uia.Once(session, _ =>
        {
            if (string.IsNullOrEmpty(password)) throw Err.MissingParam("Missing 'password'");
            if (password.Length > 512) throw Err.InvalidParam("Password too long");
            if (localpart is not null) ValidateUserLocalpart(localpart);
            var inhibit = p.OptBool("inhibit_login") ?? false;
            var origin = Origin(ctx, p.OptBool("refresh_token") ?? false);
            string userId;
            LoginResult? login;
            if (guestToken is not null)
            {
                (userId, login) = registrationTokens.Complete(session.SessionId, alongside =>
                    accounts.UpgradeGuest(guestToken, localpart, password, p.OptString("device_id"), p.OptString("initial_device_display_name"), inhibit, origin, alongside));
                // The guest's tokens now stand for a full account: the edge drops what it cached about them.
                Revoked(ctx);
            }
            else
            {
                localpart ??= Ids.Random(12).ToLowerInvariant();
                limits.Take(ctx, null, new Charge(limits.Registration, ip));
                var lp = localpart;
                login = registrationTokens.Complete(session.SessionId, alongside =>
                    accounts.Register(lp, password, p.OptString("device_id"), p.OptString("initial_device_display_name"), inhibit, origin.Ip, origin.UserAgent, origin.Refreshable, alongside));
                userId = Ids.UserId(localpart, config.ServerName);
            }
            // inhibit_login: no device and no tokens (spec: POST /register).
            return Task.FromResult(login is null ? new JsonObject { ["user_id"] = userId, ["home_server"] = config.ServerName } : LoginJson(login));
        });
        // The first account (or one the config names) is a server admin: the admin bot invites it into the admin room.
        if (result["user_id"]?.GetValue<string>() is { } registered && accounts.IsAdmin(registered)) await AdminGranted(registered, ctx.RequestAborted);
        await ctx.Response.WriteJsonAsync(result);
    }

    /// <summary>
    /// Tells the rooms service that a user became a server admin, so the admin bot invites them into the admin room. The
    /// change itself is already made: a failure is logged, and the bot invites every admin when it next starts.
    /// </summary>
    public async Task AdminGranted(string userId, CancellationToken ct)
    {
        try
        {
            await rooms.AdminGrantedAsync(new AdminGrantedRequest { UserId = userId }, cancellationToken: ct);
        }
        catch (Exception e) when (e is Grpc.Core.RpcException or MatrixException)
        {
            LogAdminInviteFailed(userId, e.Message);
        }
    }

    /// <summary>
    /// POST /register?kind=guest (spec: "Guest access"), behind allow_guest_registration: no user-interactive auth, and
    /// every parameter but initial_device_display_name ignored, as the spec asks (so no refresh token either).
    /// Counted against the address's registration limit like any account.
    /// </summary>
    async Task RegisterGuest(HttpContext ctx, JsonObject body)
    {
        if (!config.AllowGuestRegistration) throw Err.GuestAccessForbidden("Guest registration is disabled on this server");
        var origin = Origin(ctx);
        limits.Take(ctx, null, new Charge(limits.Registration, origin.Ip!));
        var login = accounts.RegisterGuest(body.OptString("initial_device_display_name"), origin.Ip, origin.UserAgent);
        await ctx.Response.WriteJsonAsync(LoginJson(login));
    }

    public void ValidateLocalpart(string localpart)
    {
        if (!Ids.IsValidLocalpart(localpart))
            throw Err.InvalidUsername("User ID may only contain a-z, 0-9, '.', '_', '=', '-', '/' and '+'");
        if (Ids.UserId(localpart, config.ServerName).Length > 255)
            throw Err.InvalidUsername("User ID is too long");
    }

    /// <summary><see cref="ValidateLocalpart"/>, and not in an application service's exclusive namespace (spec:
    /// application-service-api, "Server admin style permissions"): for registration by anyone but the appservice.</summary>
    void ValidateUserLocalpart(string localpart)
    {
        ValidateLocalpart(localpart);
        if (accounts.ExclusiveOwnerOf(Ids.UserId(localpart, config.ServerName)) is not null)
            throw Err.Exclusive("This user ID is reserved by an application service");
    }

    /// <summary>The registration of the application service whose as_token made the request (m.login.application_service
    /// at /register and /login): 401 M_MISSING_TOKEN without a token, M_UNKNOWN_TOKEN with another token.</summary>
    AppserviceRegistration AppserviceCaller(HttpContext ctx)
    {
        if (Caller.Optional(ctx) is null) throw Err.MissingToken();
        var id = Caller.AppserviceOf(ctx);
        return config.Appservices().FirstOrDefault(a => a.Id == id) ?? throw Err.UnknownToken("The access token is not an application service's as_token");
    }

    /// <summary>The user ID an application service names, if in its user namespaces (M_EXCLUSIVE otherwise).</summary>
    string AppserviceUser(AppserviceRegistration r, string userId)
        => r.IsInterestedInUser(userId, config.ServerName) ? userId : throw Err.Exclusive("This user ID is not in the application service's namespace");

    /// <summary>
    /// POST /register with type m.login.application_service and the as_token: the account (no password), in the
    /// appservice's user namespaces, without user-interactive auth, whether registration is open or not.
    /// </summary>
    async Task RegisterForAppservice(HttpContext ctx, JsonObject body)
    {
        var r = AppserviceCaller(ctx);
        var localpart = (body.OptString("username") ?? throw Err.MissingParam("Missing 'username'")).ToLowerInvariant();
        ValidateLocalpart(localpart);
        var userId = AppserviceUser(r, Ids.UserId(localpart, config.ServerName));
        if (!accounts.CreateAppserviceUser(r, userId)) throw Err.UserInUse();
        var result = body.OptBool("inhibit_login") == true
            ? new JsonObject { ["user_id"] = userId, ["home_server"] = config.ServerName }
            : LoginJson(LoginWith(ctx, userId, body));
        await ctx.Response.WriteJsonAsync(result);
    }

    /// <summary>POST /login with type m.login.application_service and the as_token: a device of a registered user of
    /// the appservice's user namespaces, with no password.</summary>
    async Task LoginForAppservice(HttpContext ctx, JsonObject body)
    {
        var r = AppserviceCaller(ctx);
        var userId = AppserviceUser(r, UserFromIdentifier(body) ?? throw Err.Exclusive("This user ID is not in the application service's namespace"));
        if (!accounts.Exists(userId)) throw Err.Forbidden("This user has not been registered");
        if (accounts.IsDeactivated(userId)) throw Err.UserDeactivated();
        await ctx.Response.WriteJsonAsync(LoginJson(LoginWith(ctx, userId, body)));
    }

    async Task RegisterAvailable(HttpContext ctx)
    {
        var name = ctx.Request.Query("username") ?? throw Err.MissingParam("Missing 'username'");
        var localpart = name.ToLowerInvariant();
        ValidateUserLocalpart(localpart);
        var userId = Ids.UserId(localpart, config.ServerName);
        if (accounts.Exists(userId) || accounts.IsReserved(userId)) throw Err.UserInUse();
        await ctx.Response.WriteJsonAsync(new JsonObject { ["available"] = true });
    }

    // ---- login (spec: client-server-api, "Login")

    async Task Login(HttpContext ctx)
    {
        if (HttpMethods.IsGet(ctx.Request.Method))
        {
            var flows = new JsonArray(new JsonObject { ["type"] = "m.login.password" }, new JsonObject { ["type"] = "m.login.application_service" });
            if (config.LoginViaExistingSession.Enabled) flows.Add((JsonNode)new JsonObject { ["type"] = "m.login.token", ["get_login_token"] = true });
            await ctx.Response.WriteJsonAsync(new JsonObject { ["flows"] = flows });
            return;
        }
        var body = await ctx.Request.ReadJsonObjectAsync();
        var type = body.ReqString("type");
        if (type == "m.login.token" && config.LoginViaExistingSession.Enabled)
        {
            await TokenLogin(ctx, body);
            return;
        }
        if (type == "m.login.application_service")
        {
            await LoginForAppservice(ctx, body);
            return;
        }
        if (type != "m.login.password") throw Err.Unknown($"Login type '{type}' is not supported");
        var ip = Ip(ctx);
        // rc_login as Synapse applies it: every attempt counts against the address; a wrong password counts
        // against the account's failed attempts too (checked before the password, so guessing stops there);
        // a successful login counts against the account.
        limits.Take(ctx, null, new Charge(limits.LoginAddress, ip));
        var userId = UserFromIdentifier(body) ?? throw Err.Forbidden("Invalid username or password");
        var password = body.ReqString("password");
        limits.Take(ctx, null, new Charge(limits.LoginFailedAttempts, userId, Update: false));
        if (accounts.IsDeactivated(userId)) throw Err.UserDeactivated();
        if (!accounts.CheckPassword(userId, password))
        {
            limits.LoginFailedAttempts?.Record(userId);
            throw Err.Forbidden("Invalid username or password");
        }
        limits.Take(ctx, null, new Charge(limits.LoginAccount, userId));
        await ctx.Response.WriteJsonAsync(LoginJson(LoginWith(ctx, userId, body)));
    }

    LoginResult LoginWith(HttpContext ctx, string userId, JsonObject body)
    {
        var origin = Origin(ctx, body.OptBool("refresh_token") ?? false);
        return accounts.Login(userId, body.OptString("device_id"), body.OptString("initial_device_display_name"), origin.Ip, origin.UserAgent, origin.Refreshable);
    }

    // ---- refresh tokens (spec: client-server-api, "Refreshing access tokens"; POST /refresh)

    /// <summary>
    /// Exchanges a refresh token for a new access token and refresh token; no access token is read (the edge ignores
    /// one sent here, as it has usually expired). The device's old access token stops working before the answer
    /// leaves the edge.
    /// </summary>
    async Task Refresh(HttpContext ctx)
    {
        var body = await ctx.Request.ReadJsonObjectAsync();
        var token = body.ReqString("refresh_token");
        var (r, old) = accounts.Refresh(token, Origin(ctx));
        if (old is not null) Revoked(ctx, old);
        await ctx.Response.WriteJsonAsync(new JsonObject
        {
            ["access_token"] = r.AccessToken,
            ["refresh_token"] = r.RefreshToken,
            ["expires_in_ms"] = r.ExpiresInMs,
        });
    }

    // ---- login with a token from a signed-in device (spec: client-server-api, "POST /_matrix/client/v1/login/get_token")

    /// <summary>Single-use login tokens, in memory: they live minutes, and a restart only means asking for a new one.</summary>
    readonly System.Collections.Concurrent.ConcurrentDictionary<string, (string UserId, long ExpiresTs)> _loginTokens = new();

    async Task GetLoginToken(HttpContext ctx)
    {
        var c = Auth(ctx);
        if (!config.LoginViaExistingSession.Enabled) throw Err.Unrecognized(404, "Login tokens are disabled on this server (login_via_existing_session)");
        var body = await ctx.Request.ReadJsonObjectAsync();
        limits.Take(ctx, c, new Charge(limits.LoginAccount, c.UserId));
        Task<JsonObject> Issue(JsonObject request)
        {
            var now = Ids.NowMs();
            foreach (var (k, v) in _loginTokens) if (v.ExpiresTs <= now) _loginTokens.TryRemove(k, out _);
            var token = Ids.Random(32);
            var ttl = config.LoginViaExistingSession.TokenTimeoutSecs * 1000;
            _loginTokens[token] = (c.UserId, now + ttl);
            return Task.FromResult(new JsonObject { ["login_token"] = token, ["expires_in_ms"] = ttl });
        }
        if (config.LoginViaExistingSession.RequireUiAuth) await WithPassword(ctx, body, "get_login_token", c, _ => { }, Issue);
        else await ctx.Response.WriteJsonAsync(await Issue(body));
    }

    async Task TokenLogin(HttpContext ctx, JsonObject body)
    {
        var ip = Ip(ctx);
        limits.Take(ctx, null, new Charge(limits.LoginAddress, ip));
        var token = body.ReqString("token");
        if (!_loginTokens.TryRemove(token, out var t) || t.ExpiresTs <= Ids.NowMs()) throw Err.Forbidden("Invalid or expired login token");
        if (accounts.IsDeactivated(t.UserId)) throw Err.UserDeactivated();
        await ctx.Response.WriteJsonAsync(LoginJson(LoginWith(ctx, t.UserId, body)));
    }

    /// <summary>The user ID from identifier {type: m.id.user, user} or the legacy top-level "user".</summary>
    string? UserFromIdentifier(JsonObject body)
    {
        string? user;
        if (body.OptObject("identifier") is { } id)
        {
            if (id.OptString("type") != "m.id.user") throw Err.Unknown("Only m.id.user identifiers are supported");
            user = id.ReqString("user");
        }
        else user = body.OptString("user") ?? throw Err.MissingParam("Missing 'identifier'");
        if (user.StartsWith('@'))
            return Ids.ServerOf(user) == config.ServerName ? user.ToLowerInvariant() : null;
        return Ids.UserId(user.ToLowerInvariant(), config.ServerName);
    }

    async Task Logout(HttpContext ctx)
    {
        var c = Auth(ctx);
        accounts.DeleteDevices(c.UserId, [c.DeviceId]);
        Revoked(ctx);
        await ctx.Response.WriteJsonAsync(new JsonObject());
    }

    async Task LogoutAll(HttpContext ctx)
    {
        var c = Auth(ctx);
        accounts.DeleteDevices(c.UserId, accounts.Devices(c.UserId).Select(d => d.DeviceId));
        Revoked(ctx);
        await ctx.Response.WriteJsonAsync(new JsonObject());
    }

    // No identity server integration: an account has no third-party identifiers.
    static async Task ThreePids(HttpContext ctx)
    {
        Auth(ctx);
        await ctx.Response.WriteJsonAsync(new JsonObject { ["threepids"] = new JsonArray() });
    }

    async Task WhoAmI(HttpContext ctx)
    {
        var c = Auth(ctx);
        await ctx.Response.WriteJsonAsync(new JsonObject { ["user_id"] = c.UserId, ["device_id"] = c.DeviceId, ["is_guest"] = c.IsGuest });
    }

    // ---- server administration (spec: client-server-api, "Server Administration")

    /// <summary>
    /// GET /admin/whois/{userId}: a user's devices, each with one session whose one connection is what the server
    /// records of the device (its last login or refresh: address, time, user agent). Admins may ask about anyone,
    /// others about themselves only, as Synapse allows; that is checked before the account is looked up, so a non-admin
    /// learns nothing of other accounts.
    /// </summary>
    async Task Whois(HttpContext ctx)
    {
        var c = Auth(ctx);
        var userId = ctx.Route("userId");
        if (userId != c.UserId && !c.IsAdmin) throw Err.Forbidden("You are not a server admin");
        await ctx.Response.WriteJsonAsync(WhoisJson(userId));
    }

    /// <summary>The whois answer about a local user (M_INVALID_PARAM for a malformed or remote ID, M_NOT_FOUND for an unknown one).</summary>
    public JsonObject WhoisJson(string userId)
    {
        if (!Ids.IsUserId(userId)) throw Err.InvalidParam("Not a user ID");
        if (Ids.ServerOf(userId) != config.ServerName) throw Err.InvalidParam("Can only whois a local user");
        if (!accounts.Exists(userId)) throw Err.NotFound("No such user");
        var devices = new JsonObject();
        foreach (var d in accounts.Devices(userId))
        {
            var connection = new JsonObject { ["last_seen"] = d.LastSeenTs };
            if (d.LastSeenIp is not null) connection["ip"] = d.LastSeenIp;
            if (d.UserAgent is not null) connection["user_agent"] = d.UserAgent;
            devices[d.DeviceId] = new JsonObject { ["sessions"] = new JsonArray(new JsonObject { ["connections"] = new JsonArray(connection) }) };
        }
        return new JsonObject { ["user_id"] = userId, ["devices"] = devices };
    }

    // ---- account management behind UIA with the account's password

    /// <summary>
    /// Performs an operation behind UIA with the account's password, once per session: a client retrying with the
    /// completed session gets the first result. Wrong passwords count as failed login attempts (Synapse: the
    /// password stage shares rc_login.failed_attempts), so a stolen access token cannot guess the password.
    /// </summary>
    public AccountStore Accounts => accounts;

    /// <summary>Display names of a user's devices (dehydrated included), for /keys/query's unsigned.device_display_name.</summary>
    public Dictionary<string, string?> DeviceNames(string userId)
        => accounts.Devices(userId, withDehydrated: true).ToDictionary(d => d.DeviceId, d => d.DisplayName, StringComparer.Ordinal);

    /// <summary>Runs an operation behind user-interactive auth with the user's password (m.login.password).</summary>
    public async Task WithPassword(HttpContext ctx, JsonObject body, string operation, Caller c, Action<JsonObject> validate, Func<JsonObject, Task<JsonObject>> perform)
    {
        var session = uia.Begin(body, operation, c.UserId);
        if (!session.Authenticated) validate(session.Params);
        uia.Require(session, c.UserId, PasswordFlow, (stage, auth) =>
        {
            if (stage != "m.login.password" || UserFromIdentifier(auth) != c.UserId || auth.OptString("password") is not { } password) return false;
            limits.Take(ctx, c, new Charge(limits.LoginFailedAttempts, c.UserId, Update: false));
            if (accounts.CheckPassword(c.UserId, password)) return true;
            limits.LoginFailedAttempts?.Record(c.UserId);
            return false;
        });
        await ctx.Response.WriteJsonAsync(await uia.Once(session, perform));
    }

    async Task ChangePassword(HttpContext ctx)
    {
        var c = Auth(ctx);
        var body = await ctx.Request.ReadJsonObjectAsync();
        await WithPassword(ctx, body, "password", c, p => p.ReqString("new_password"), p =>
        {
            accounts.SetPassword(c.UserId, p.ReqString("new_password"), p.OptBool("logout_devices") ?? true, c.DeviceId);
            Revoked(ctx);
            return Task.FromResult(new JsonObject());
        });
    }

    async Task Deactivate(HttpContext ctx)
    {
        var c = Auth(ctx);
        var body = await ctx.Request.ReadJsonObjectAsync();
        await WithPassword(ctx, body, "deactivate", c, _ => { }, async _ =>
        {
            await DeactivateAccount(ctx, c.UserId);
            return new JsonObject { ["id_server_unbind_result"] = "no-support" };
        });
    }

    /// <summary>
    /// Deactivates an account (the client's /account/deactivate and the admin API): leaves every room, marks the account
    /// deactivated with its profile, devices, keys and key backups removed, and has the edge drop its cached tokens.
    /// </summary>
    public async Task DeactivateAccount(HttpContext ctx, string userId)
    {
        // Leave rooms first: if that fails the account is still whole and the client can retry.
        await rooms.LeaveAllRoomsAsync(new LeaveAllRoomsRequest { UserId = userId }, cancellationToken: ctx.RequestAborted);
        accounts.Deactivate(userId);
        // After the account is marked deactivated: a backup version created from now on is refused (checked under
        // the lock this deletion takes), so none outlives the account.
        backups.DeleteAll(userId);
        Revoked(ctx);
    }

    // ---- devices (spec: client-server-api, "Device management")

    static JsonObject DeviceJson(string userId, DeviceInfo d) => new()
    {
        ["device_id"] = d.DeviceId,
        ["display_name"] = d.DisplayName,
        ["last_seen_ip"] = d.LastSeenIp,
        ["last_seen_ts"] = d.LastSeenTs,
        ["user_id"] = userId,
    };

    async Task GetDevices(HttpContext ctx)
    {
        var c = Auth(ctx);
        var list = accounts.Devices(c.UserId).Select(d => (JsonNode)DeviceJson(c.UserId, d)).ToArray();
        await ctx.Response.WriteJsonAsync(new JsonObject { ["devices"] = new JsonArray(list) });
    }

    async Task DeviceEndpoint(HttpContext ctx)
    {
        var c = Auth(ctx);
        var deviceId = ctx.Route("deviceId");
        switch (ctx.Request.Method)
        {
            case "GET":
                var d = accounts.Device(c.UserId, deviceId) ?? throw Err.NotFound("No such device");
                await ctx.Response.WriteJsonAsync(DeviceJson(c.UserId, d));
                break;
            case "PUT":
                var body = await ctx.Request.ReadJsonObjectAsync();
                if (!accounts.RenameDevice(c.UserId, deviceId, body.OptString("display_name"))) throw Err.NotFound("No such device");
                await ctx.Response.WriteJsonAsync(new JsonObject());
                break;
            default:
                var del = await ctx.Request.ReadJsonObjectAsync();
                await WithPassword(ctx, del, "delete_device " + deviceId, c,
                    _ => { if (accounts.Device(c.UserId, deviceId) is null) throw Err.NotFound("No such device"); },
                    _ =>
                    {
                        accounts.DeleteDevices(c.UserId, [deviceId]);
                        Revoked(ctx);
                        return Task.FromResult(new JsonObject());
                    });
                break;
        }
    }

    async Task DeleteDevices(HttpContext ctx)
    {
        var c = Auth(ctx);
        var body = await ctx.Request.ReadJsonObjectAsync();
        await WithPassword(ctx, body, "delete_devices", c, p => DeviceIds(p), p =>
        {
            accounts.DeleteDevices(c.UserId, DeviceIds(p));
            Revoked(ctx);
            return Task.FromResult(new JsonObject());
        });
    }

    static List<string> DeviceIds(JsonObject p)
        => (p.OptArray("devices") ?? throw Err.MissingParam("Missing 'devices'"))
            .Select(n => n is JsonValue v && v.TryGetValue<string>(out var s) ? s : throw Err.BadJson("'devices' must be strings")).ToList();

    // ---- profile (spec: client-server-api, "Profiles"; v1.16 custom fields)

    /// <summary>The spec's limits: a key name of at most 255 bytes, the whole profile under 64 KiB of JSON.</summary>
    public const int MaxKeyBytes = 255, MaxProfileBytes = 64 * 1024;

    /// <summary>
    /// The spec's key grammar: displayname, avatar_url, m.tz, or a namespaced identifier (dotted lower-case words).
    /// </summary>
    static readonly System.Text.RegularExpressions.Regex KeyGrammar =
        new(@"^(avatar_url|displayname|m\.tz|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+)$", System.Text.RegularExpressions.RegexOptions.CultureInvariant);

    static bool IsMemberField(string key) => key is "displayname" or "avatar_url";

    static string CheckKey(string key)
    {
        if (System.Text.Encoding.UTF8.GetByteCount(key) > MaxKeyBytes)
            throw new MatrixException("M_KEY_TOO_LARGE", 400, $"Profile keys are at most {MaxKeyBytes} bytes");
        if (!KeyGrammar.IsMatch(key)) throw Err.InvalidParam("Invalid profile key: displayname, avatar_url, m.tz or a namespaced identifier");
        return key;
    }

    /// <summary>The whole profile as served: displayname, avatar_url, then the other fields in the order set.</summary>
    static JsonObject ProfileJson(JsonObject u)
    {
        var o = new JsonObject();
        if (u["displayname"]?.GetValue<string>() is { } dn) o["displayname"] = dn;
        if (u["avatar_url"]?.GetValue<string>() is { } av) o["avatar_url"] = av;
        if (u["profile_fields"] is JsonObject fields)
            foreach (var (k, v) in fields) o[k] = v?.DeepClone();
        return o;
    }

    JsonObject ProfileOf(string userId)
    {
        if (!Ids.IsUserId(userId)) throw Err.InvalidParam("Not a user ID");
        var u = accounts.GetUser(userId);
        if (u is null || u["deactivated"]?.GetValue<bool>() == true) throw Err.NotFound("Profile not found");
        return ProfileJson(u);
    }

    /// <summary>A local user's profile for GET /profile: one unknown here may be an application service's, which is
    /// asked first (<see cref="AppserviceUsers"/>).</summary>
    async Task<JsonObject> LocalProfileAsync(string userId, CancellationToken ct)
    {
        if (!Ids.IsUserId(userId)) throw Err.InvalidParam("Not a user ID");
        await appserviceUsers.GetUserAsync(userId, ct);
        return ProfileOf(userId);
    }

    async Task GetProfile(HttpContext ctx)
    {
        var userId = ctx.Route("userId");
        await ctx.Response.WriteJsonAsync(IsRemote(userId) ? await RemoteProfileAsync(userId, null, ctx.RequestAborted) : await LocalProfileAsync(userId, ctx.RequestAborted));
    }

    bool IsRemote(string userId) => Ids.IsUserId(userId) && Ids.ServerOf(userId) != config.ServerName && config.AllowFederation;

    /// <summary>
    /// The profile of a user of another server, asked of it (spec: server-server-api, GET /query/profile). Only string
    /// fields are taken from the answer; a server that does not know the user, or cannot be reached, is 404.
    /// </summary>
    async Task<JsonObject> RemoteProfileAsync(string userId, string? field, CancellationToken ct)
    {
        var path = "/_matrix/federation/v1/query/profile?user_id=" + Uri.EscapeDataString(userId) + (field is null ? "" : "&field=" + Uri.EscapeDataString(field));
        var reply = await federation.SendRequestAsync(new Protos.Federation.OutboundRequest { Destination = Ids.ServerOf(userId), Method = "GET", Path = path }, cancellationToken: ct);
        if (reply.Status != 200) throw Err.NotFound("Profile not found");
        JsonObject answer;
        try { answer = RequestJson.ParseObject(reply.Body, "answer"); }
        catch (MatrixException) { throw Err.NotFound("Profile not found"); }
        var profile = new JsonObject();
        foreach (var (k, v) in answer)
            if (v is JsonValue sv && sv.TryGetValue(out string? str) && (field is null || k == field)) profile[k] = str;
        return profile;
    }

    /// <summary>
    /// GET, PUT and DELETE /profile/{userId}/{keyName}. displayname and avatar_url are strings (null or "" clears, as
    /// before) and a change is re-sent as a member event in every joined room; m.tz is a string; custom keys hold any
    /// JSON, null included (stored, as the spec asks). The body holds exactly the one key of the path. Only the owner
    /// changes a profile; the whole profile stays under 64 KiB (M_PROFILE_TOO_LARGE), checked under the account lock.
    /// </summary>
    async Task ProfileField(HttpContext ctx)
    {
        var userId = ctx.Route("userId");
        var field = CheckKey(ctx.Route("field"));
        if (HttpMethods.IsGet(ctx.Request.Method))
        {
            var p = IsRemote(userId) ? await RemoteProfileAsync(userId, field, ctx.RequestAborted) : await LocalProfileAsync(userId, ctx.RequestAborted);
            if (!p.TryGetPropertyValue(field, out var value)) throw Err.NotFound($"No {field} set");
            await ctx.Response.WriteJsonAsync(new JsonObject { [field] = value?.DeepClone() });
            return;
        }
        var c = Auth(ctx);
        if (c.UserId != userId) throw Err.Forbidden("You may only change your own profile");
        // Spec, "Guest access": a guest may set or delete its display name, no other field.
        if (c.IsGuest && field != "displayname") throw Err.GuestAccessForbidden("Guest accounts may only change their display name");
        if (HttpMethods.IsDelete(ctx.Request.Method))
        {
            accounts.UpdateProfile(userId, u =>
            {
                if (IsMemberField(field)) u.Remove(field);
                else if (u["profile_fields"] is JsonObject f) f.Remove(field);
            });
        }
        else
        {
            var body = await ctx.Request.ReadJsonObjectAsync();
            if (!body.TryGetPropertyValue(field, out var value)) throw Err.MissingParam($"The body must hold '{field}'");
            if (body.Count != 1) throw Err.BadJson($"The body must hold '{field}' and nothing else");
            if (IsMemberField(field))
            {
                var text = body.OptString(field);
                if (text is { Length: > 1000 }) throw Err.InvalidParam($"{field} too long");
                value = string.IsNullOrEmpty(text) ? null : JsonValue.Create(text);
            }
            else if (field == "m.tz" && body.OptString(field) is null) throw Err.BadJson("'m.tz' must be a string");
            accounts.UpdateProfile(userId, u =>
            {
                if (IsMemberField(field))
                {
                    if (value is null) u.Remove(field); else u[field] = value.DeepClone();
                }
                else
                {
                    if (u["profile_fields"] is not JsonObject f) u["profile_fields"] = f = new JsonObject();
                    f[field] = value?.DeepClone();
                }
                if (System.Text.Encoding.UTF8.GetByteCount(ProfileJson(u).ToJsonString()) >= MaxProfileBytes)
                    throw new MatrixException("M_PROFILE_TOO_LARGE", 400, "The profile would be larger than 64 KiB");
            });
        }
        if (IsMemberField(field)) await ResendMemberProfile(userId, ctx.RequestAborted);
        await ctx.Response.WriteJsonAsync(new JsonObject());
    }

    /// <summary>Re-sends the user's display name and avatar as a member event in every room they are joined to.</summary>
    public async Task ResendMemberProfile(string userId, CancellationToken ct)
    {
        var profile = ProfileOf(userId);
        var req = new UpdateMemberProfileRequest { UserId = userId };
        if (profile["displayname"]?.GetValue<string>() is { } dn) req.Displayname = dn;
        if (profile["avatar_url"]?.GetValue<string>() is { } av) req.AvatarUrl = av;
        await rooms.UpdateMemberProfileAsync(req, cancellationToken: ct);
    }
}

using Conduit.Common.Admin;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Http;
using Conduit.Common.Routing;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Conduit.Keys;

/// <summary>
/// A subset of Synapse's admin API (element-hq.github.io/synapse, "Admin API"): server version, user accounts and
/// registration tokens, under /_synapse/admin. Every endpoint needs a server admin's access token: the edge resolved
/// it and says whether its user is an admin (<see cref="Caller.IsAdmin"/>); anyone else gets 403 M_FORBIDDEN "You are
/// not a server admin", a request without a token 401 M_MISSING_TOKEN. Each request's input is checked whole before
/// anything is written.
/// </summary>
public sealed class AdminEndpoints(AccountStore accounts, RegistrationTokens tokens, KeysEndpoints keys, GlobalConfig config)
{
    public void Map(IEndpointRouteBuilder app)
    {
        app.Map(RouteTable.AdminServerVersion, ServerVersionEndpoint);
        app.Map(RouteTable.AdminUsers, ListUsers);
        app.Map(RouteTable.AdminUser, UserEndpoint);
        app.Map(RouteTable.AdminUserAdmin, UserAdmin);
        app.Map(RouteTable.AdminDeactivate, Deactivate);
        app.Map(RouteTable.AdminResetPassword, ResetPassword);
        app.Map(RouteTable.AdminWhoisSynapse, Whois);
        app.Map(RouteTable.AdminRegistrationTokens, ListTokens);
        app.Map(RouteTable.AdminRegistrationTokenNew, NewToken);
        app.Map(RouteTable.AdminRegistrationToken, TokenEndpoint);
    }

    // ---- users

    /// <summary>The path's user ID: a user ID of this server (400 M_INVALID_PARAM otherwise, as Synapse answers).</summary>
    string LocalUser(HttpContext ctx)
    {
        var userId = ctx.Route("userId");
        if (!Ids.IsUserId(userId)) throw Err.InvalidParam("Not a user ID");
        if (Ids.ServerOf(userId) != config.ServerName) throw Err.InvalidParam("This endpoint can only be used with local users");
        return userId;
    }

    JsonObject ExistingUser(string userId) => accounts.GetUser(userId) ?? throw Err.NotFound("User not found");

    /// <summary>A user as Synapse's admin API shows one (v2: booleans, creation_ts in ms).</summary>
    JsonObject UserJson(string userId, JsonObject u, bool full)
    {
        var o = new JsonObject
        {
            ["name"] = userId,
            ["displayname"] = u["displayname"]?.GetValue<string>(),
            ["avatar_url"] = u["avatar_url"]?.GetValue<string>(),
            ["admin"] = accounts.IsAdmin(userId),
            ["deactivated"] = u["deactivated"]?.GetValue<bool>() == true,
            ["is_guest"] = u["is_guest"]?.GetValue<bool>() == true,
            ["user_type"] = null,
            ["creation_ts"] = u["created_ts"]?.GetValue<long>() ?? 0,
            ["locked"] = false,
            ["shadow_banned"] = false,
        };
        if (full)
        {
            o["erased"] = false;
            o["appservice_id"] = null;
            o["threepids"] = new JsonArray();
            o["external_ids"] = new JsonArray();
        }
        return o;
    }

    /// <summary>
    /// GET /_synapse/admin/v2/users: every account matching the filters (user_id: a substring of the ID; name: of the ID
    /// or the display name; guests, default true; deactivated, default false; admins: only admins or only others),
    /// ordered by name (or creation_ts, order_by), dir f or b, paged by from (an offset) and limit (default 100);
    /// next_token is the next page's from. The accounts are read whole for each request.
    /// </summary>
    async Task ListUsers(HttpContext ctx)
    {
        Caller.Admin(ctx);
        var from = (int)ctx.Request.QueryLong("from", 0, 0, int.MaxValue);
        var limit = (int)ctx.Request.QueryLong("limit", 100, 1, int.MaxValue);
        var guests = ctx.Request.QueryBool("guests") ?? true;
        var deactivated = ctx.Request.QueryBool("deactivated") ?? false;
        var admins = ctx.Request.QueryBool("admins");
        var idPart = ctx.Request.Query("user_id");
        var namePart = ctx.Request.Query("name");
        var orderBy = ctx.Request.Query("order_by") ?? "name";
        if (orderBy is not ("name" or "creation_ts")) throw Err.InvalidParam("order_by must be name or creation_ts (others are not supported here)");
        var forwards = ctx.Request.QueryForwards();

        var matching = accounts.AllUsers().Where(e =>
        {
            var u = e.User;
            if (!guests && u["is_guest"]?.GetValue<bool>() == true) return false;
            if (!deactivated && u["deactivated"]?.GetValue<bool>() == true) return false;
            if (admins is { } a && accounts.IsAdmin(e.UserId) != a) return false;
            if (idPart is not null && !e.UserId.Contains(idPart, StringComparison.OrdinalIgnoreCase)) return false;
            if (namePart is not null && !e.UserId.Contains(namePart, StringComparison.OrdinalIgnoreCase)
                && u["displayname"]?.GetValue<string>()?.Contains(namePart, StringComparison.OrdinalIgnoreCase) != true) return false;
            return true;
        });
        // Stored by user ID already; creation_ts ties are broken by it.
        var ordered = orderBy == "creation_ts" ? matching.OrderBy(e => e.User["created_ts"]?.GetValue<long>() ?? 0).ToList() : matching.ToList();
        if (!forwards) ordered.Reverse();
        var page = ordered.Skip(from).Take(limit).Select(e => (JsonNode)UserJson(e.UserId, e.User, full: false)).ToArray();
        var answer = new JsonObject { ["users"] = new JsonArray(page), ["total"] = ordered.Count };
        if ((long)from + limit < ordered.Count) answer["next_token"] = (from + limit).ToString(System.Globalization.CultureInfo.InvariantCulture);
        await ctx.Response.WriteJsonAsync(answer);
    }

    async Task UserEndpoint(HttpContext ctx)
    {
        var c = Caller.Admin(ctx);
        var userId = LocalUser(ctx);
        if (HttpMethods.IsGet(ctx.Request.Method))
        {
            await ctx.Response.WriteJsonAsync(UserJson(userId, ExistingUser(userId), full: true));
            return;
        }
        await PutUser(ctx, c, userId, await ctx.Request.ReadJsonObjectAsync());
    }

    /// <summary>The display name or avatar URL in a body: absent or null leaves it, "" clears it.</summary>
    static (bool Set, string? Value) ProfileString(JsonObject body, string key)
    {
        if (body.OptString(key) is not { } s) return (false, null);
        if (s.Length > 1000) throw Err.InvalidParam($"{key} too long");
        return (true, s.Length == 0 ? null : s);
    }

    static string? CheckedPassword(JsonObject body)
    {
        var password = body.OptString("password");
        if (password is { Length: 0 or > 512 }) throw Err.InvalidParam("password must be 1 to 512 characters");
        return password;
    }

    /// <summary>
    /// PUT /_synapse/admin/v2/users/{userId}: creates the account (201) or changes it (200): password (logging out its
    /// devices unless logout_devices is false), displayname, avatar_url, admin, deactivated (true deactivates it as
    /// the client's deactivation does; false on a deactivated account reactivates it, with a password). Other
    /// fields (threepids, external_ids, user_type, locked) are not supported and ignored.
    /// </summary>
    async Task PutUser(HttpContext ctx, Caller c, string userId, JsonObject body)
    {
        var password = CheckedPassword(body);
        var logoutDevices = body.OptBool("logout_devices") ?? true;
        var displayname = ProfileString(body, "displayname");
        var avatar = ProfileString(body, "avatar_url");
        var admin = body.OptBool("admin");
        var deactivate = body.OptBool("deactivated");
        if (admin == false && userId == c.UserId) throw Err.InvalidParam("You may not demote yourself.");
        if (admin == false && accounts.IsConfigAdmin(userId)) throw Err.InvalidParam("This user is an admin by the server's config (admins)");

        if (password is not null || deactivate == true || admin == false) NotTheBot(userId);
        var existing = accounts.GetUser(userId);
        if (existing is null)
        {
            if (!Ids.TrySplit(userId, '@', out var localpart, out _)) throw Err.InvalidParam("Not a user ID");
            keys.ValidateLocalpart(localpart);
            accounts.CreateByAdmin(userId, password, displayname.Set ? displayname.Value : localpart, avatar.Value, admin ?? false, deactivate ?? false);
            if (admin == true && deactivate != true && !accounts.IsReserved(userId)) await keys.AdminGranted(userId, ctx.RequestAborted);
            await ctx.Response.WriteJsonAsync(UserJson(userId, ExistingUser(userId), full: true), 201);
            return;
        }

        var wasDeactivated = existing["deactivated"]?.GetValue<bool>() == true;
        if (wasDeactivated && deactivate == false && password is null)
            throw Err.MissingParam("A password is needed to reactivate an account");
        if (deactivate == true && !wasDeactivated)
        {
            // Deactivation takes the profile and password with it: the other changes would be undone at once.
            await keys.DeactivateAccount(ctx, userId);
            if (admin is { } a) accounts.SetAdmin(userId, a);
            await ctx.Response.WriteJsonAsync(UserJson(userId, ExistingUser(userId), full: true));
            return;
        }
        var hash = password is null ? null : PasswordHasher.Hash(password);
        var adminChanged = admin is { } wanted && wanted != (existing["admin"]?.GetValue<bool>() == true);
        // One write of the account's record: password, profile, admin flag and reactivation together.
        accounts.UpdateProfile(userId, u =>
        {
            if (hash is not null) u["password_hash"] = hash;
            if (displayname.Set) SetOrRemove(u, "displayname", displayname.Value);
            if (avatar.Set) SetOrRemove(u, "avatar_url", avatar.Value);
            if (admin is { } a) SetOrRemove(u, "admin", a ? JsonValue.Create(true) : null);
            if (wasDeactivated && deactivate == false) u["deactivated"] = false;
        });
        if (hash is not null && logoutDevices)
        {
            accounts.DeleteDevices(userId, accounts.Devices(userId).Select(d => d.DeviceId));
            KeysEndpoints.Revoked(ctx);
        }
        if (adminChanged) Forget(ctx, userId);
        if (adminChanged && admin == true) await keys.AdminGranted(userId, ctx.RequestAborted);
        if ((displayname.Set || avatar.Set) && !wasDeactivated) await keys.ResendMemberProfile(userId, ctx.RequestAborted);
        await ctx.Response.WriteJsonAsync(UserJson(userId, ExistingUser(userId), full: true));
    }

    static void SetOrRemove(JsonObject u, string key, JsonNode? value)
    {
        if (value is null) u.Remove(key); else u[key] = value;
    }

    // The user's cached identities at the edge are dropped before the answer leaves it (the header) and through the
    // revocation stream (any other edge).
    void Forget(HttpContext ctx, string userId)
    {
        accounts.ForgetCachedIdentities(userId);
        KeysEndpoints.Revoked(ctx);
    }

    /// <summary>
    /// The admin bot (<see cref="AdminBot"/>) keeps its room: it may not be deactivated (which would make it leave),
    /// demoted, or given a password (which would let someone log in as it).
    /// </summary>
    void NotTheBot(string userId)
    {
        if (accounts.IsReserved(userId)) throw Err.Forbidden("This is the server's admin bot: it cannot be deactivated, demoted or given a password");
    }

    /// <summary>GET and PUT /_synapse/admin/v1/users/{userId}/admin: {admin}. An admin cannot demote themselves (400).</summary>
    async Task UserAdmin(HttpContext ctx)
    {
        var c = Caller.Admin(ctx);
        var userId = LocalUser(ctx);
        ExistingUser(userId);
        if (HttpMethods.IsGet(ctx.Request.Method))
        {
            await ctx.Response.WriteJsonAsync(new JsonObject { ["admin"] = accounts.IsAdmin(userId) });
            return;
        }
        var body = await ctx.Request.ReadJsonObjectAsync();
        var admin = body.OptBool("admin") ?? throw Err.MissingParam("Missing 'admin'");
        if (!admin) NotTheBot(userId);
        if (!admin && userId == c.UserId) throw Err.InvalidParam("You may not demote yourself.");
        if (!admin && accounts.IsConfigAdmin(userId)) throw Err.InvalidParam("This user is an admin by the server's config (admins)");
        accounts.SetAdmin(userId, admin);
        Forget(ctx, userId);
        if (admin) await keys.AdminGranted(userId, ctx.RequestAborted);
        await ctx.Response.WriteJsonAsync(new JsonObject());
    }

    /// <summary>
    /// POST /_synapse/admin/v1/deactivate/{userId}: as the user's own deactivation (rooms left, profile, devices, keys
    /// and backups removed; erase changes nothing more). A deactivated account is left as it is.
    /// </summary>
    async Task Deactivate(HttpContext ctx)
    {
        Caller.Admin(ctx);
        var userId = LocalUser(ctx);
        var body = await ctx.Request.ReadJsonObjectAsync();
        body.OptBool("erase");
        NotTheBot(userId);
        var u = ExistingUser(userId);
        if (u["deactivated"]?.GetValue<bool>() != true) await keys.DeactivateAccount(ctx, userId);
        await ctx.Response.WriteJsonAsync(new JsonObject { ["id_server_unbind_result"] = "no-support" });
    }

    /// <summary>POST /_synapse/admin/v1/reset_password/{userId}: {new_password, logout_devices (default true)}.</summary>
    async Task ResetPassword(HttpContext ctx)
    {
        Caller.Admin(ctx);
        var userId = LocalUser(ctx);
        var body = await ctx.Request.ReadJsonObjectAsync();
        var password = body.ReqString("new_password");
        if (password.Length > 512) throw Err.InvalidParam("Password too long");
        NotTheBot(userId);
        var logout = body.OptBool("logout_devices") ?? true;
        if (ExistingUser(userId)["deactivated"]?.GetValue<bool>() == true) throw Err.InvalidParam("The account is deactivated");
        accounts.SetPassword(userId, password, logout, keepDevice: null);
        if (logout) KeysEndpoints.Revoked(ctx);
        await ctx.Response.WriteJsonAsync(new JsonObject());
    }

    /// <summary>GET /_synapse/admin/v1/whois/{userId}: the client API's whois answer, for admins.</summary>
    async Task Whois(HttpContext ctx)
    {
        Caller.Admin(ctx);
        await ctx.Response.WriteJsonAsync(keys.WhoisJson(ctx.Route("userId")));
    }

    async Task ServerVersionEndpoint(HttpContext ctx)
    {
        Caller.Admin(ctx);
        await ctx.Response.WriteJsonAsync(new JsonObject { ["server_version"] = ServerVersion.Version });
    }

    // ---- registration tokens

    /// <summary>An optional integer field that may be null: (present, value).</summary>
    static (bool Set, long? Value) NullableLong(JsonObject body, string key)
    {
        if (!body.TryGetPropertyValue(key, out var n)) return (false, null);
        if (n is null) return (true, null);
        return n.TryGetInteger(out var l) ? (true, l) : throw Err.InvalidParam($"'{key}' must be an integer or null");
    }

    /// <summary>GET /_synapse/admin/v1/registration_tokens (valid=true|false filters): {registration_tokens: [...]}.</summary>
    async Task ListTokens(HttpContext ctx)
    {
        Caller.Admin(ctx);
        var valid = ctx.Request.QueryBool("valid");
        var list = tokens.List(valid).Select(t => (JsonNode)t.ToJson()).ToArray();
        await ctx.Response.WriteJsonAsync(new JsonObject { ["registration_tokens"] = new JsonArray(list) });
    }

    /// <summary>POST /_synapse/admin/v1/registration_tokens/new: {token?, length?, uses_allowed?, expiry_time?}.</summary>
    async Task NewToken(HttpContext ctx)
    {
        Caller.Admin(ctx);
        var body = await ctx.Request.ReadJsonObjectAsync();
        string? token = null;
        if (body.TryGetPropertyValue("token", out var t) && t is not null)
            token = t is JsonValue v && v.TryGetValue<string>(out var s) ? s : throw Err.InvalidParam("'token' must be a string");
        var length = NullableLong(body, "length").Value;
        if (length is < 1 or > RegistrationTokens.MaxLength) throw Err.InvalidParam($"length must be an integer from 1 to {RegistrationTokens.MaxLength}");
        var created = tokens.Create(token, (int?)length, NullableLong(body, "uses_allowed").Value, NullableLong(body, "expiry_time").Value);
        await ctx.Response.WriteJsonAsync(created.ToJson());
    }

    /// <summary>GET, PUT ({uses_allowed?, expiry_time?}) and DELETE /_synapse/admin/v1/registration_tokens/{token}.</summary>
    async Task TokenEndpoint(HttpContext ctx)
    {
        Caller.Admin(ctx);
        var token = ctx.Route("token");
        RegistrationToken? result;
        switch (ctx.Request.Method)
        {
            case "GET":
                result = tokens.Get(token);
                break;
            case "PUT":
                var body = await ctx.Request.ReadJsonObjectAsync();
                result = tokens.Update(token, NullableLong(body, "uses_allowed"), NullableLong(body, "expiry_time"));
                break;
            default:
                if (!tokens.Delete(token)) throw Err.NotFound($"No such registration token: {token}");
                await ctx.Response.WriteJsonAsync(new JsonObject());
                return;
        }
        await ctx.Response.WriteJsonAsync((result ?? throw Err.NotFound($"No such registration token: {token}")).ToJson());
    }
}

using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Http;
using Conduit.Common.Routing;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Conduit.Keys;

/// <summary>
/// Synapse's shared-secret registration (element-hq.github.io/synapse, "Shared-Secret Registration"), which
/// register_new_matrix_user and many deployment tools use: GET /_synapse/admin/v1/register answers a nonce, and a POST
/// with it creates an account if its mac is the hex HMAC-SHA1, keyed with registration_shared_secret, of nonce, username,
/// password, "admin" or "notadmin" and, if given, user_type, separated by NULs. No access token: the secret is the
/// authority, so it works with allow_registration off. A nonce lives 60 seconds and serves one POST, whatever its
/// outcome (as in Synapse); at most <see cref="MaxNonces"/> are kept, the oldest dropped first. The account gets a
/// device and an access token, as Synapse answers; user_type is part of the mac but not kept (user types are not
/// supported). Without the key both methods answer 400 "Shared secret registration is not enabled", as Synapse does.
/// </summary>
public sealed class SharedSecretRegistration(AccountStore accounts, KeysEndpoints keys, GlobalConfig config)
{
    const int MaxNonces = 1000;
    static readonly TimeSpan NonceLifetime = TimeSpan.FromSeconds(60);

    /// <summary>Nonces handed out, with when they expire (Environment.TickCount64).</summary>
    readonly ConcurrentDictionary<string, long> _nonces = new();

    public void Map(IEndpointRouteBuilder app) => app.Map(RouteTable.AdminRegister, Handle);

    string Secret() => config.RegistrationSharedSecret is { Length: > 0 } s ? s
        : throw new MatrixException("M_UNKNOWN", 400, "Shared secret registration is not enabled");

    void DropExpired()
    {
        var now = Environment.TickCount64;
        foreach (var (nonce, expires) in _nonces)
            if (expires <= now) _nonces.TryRemove(nonce, out _);
    }

    async Task Handle(HttpContext ctx)
    {
        var secret = Secret();
        DropExpired();
        if (HttpMethods.IsGet(ctx.Request.Method))
        {
            while (_nonces.Count >= MaxNonces && _nonces.MinBy(n => n.Value) is { Key: { } oldest }) _nonces.TryRemove(oldest, out _);
            var nonce = RandomNumberGenerator.GetHexString(64, lowercase: true);
            _nonces[nonce] = Environment.TickCount64 + (long)NonceLifetime.TotalMilliseconds;
            await ctx.Response.WriteJsonAsync(new JsonObject { ["nonce"] = nonce });
            return;
        }
        await ctx.Response.WriteJsonAsync(await RegisterAsync(ctx, secret));
    }

    static string Field(JsonObject body, string name)
    {
        if (body[name] is null) throw Err.BadJson($"{name} must be specified");
        var v = body.OptString(name);
        return v is not null && !v.Contains('\0') ? v : throw Err.InvalidParam($"Invalid {name}");
    }

    async Task<JsonObject> RegisterAsync(HttpContext ctx, string secret)
    {
        var body = await ctx.Request.ReadJsonObjectAsync();
        if (body["nonce"] is null) throw Err.BadJson("nonce must be specified");
        // Used up by this request whatever follows, so a nonce is never tried twice.
        if (body.OptString("nonce") is not { } nonce || !_nonces.TryRemove(nonce, out _))
            throw new MatrixException("M_UNKNOWN", 400, "unrecognised nonce");

        var username = Field(body, "username");
        var password = Field(body, "password");
        if (Encoding.UTF8.GetByteCount(password) > 512) throw Err.InvalidParam("Invalid password");
        var admin = body.OptBool("admin") ?? false;
        var userType = body["user_type"] is null ? null : Field(body, "user_type");
        var displayname = body["displayname"] is null ? null : body.OptString("displayname") ?? throw Err.InvalidParam("Invalid displayname");
        if (body.OptString("mac") is not { } mac) throw Err.BadJson("mac must be specified");

        var message = string.Join('\0', new[] { nonce, username, password, admin ? "admin" : "notadmin", userType }.OfType<string>());
        var want = Convert.ToHexStringLower(HMACSHA1.HashData(Encoding.UTF8.GetBytes(secret), Encoding.UTF8.GetBytes(message)));
        if (!CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(want), Encoding.UTF8.GetBytes(mac)))
            throw Err.Forbidden("HMAC incorrect");

        var localpart = username.ToLowerInvariant();
        keys.ValidateLocalpart(localpart);
        var origin = KeysEndpoints.Origin(ctx);
        var login = accounts.Register(localpart, password, null, null, inhibitLogin: false, origin.Ip, origin.UserAgent, displayname: displayname, admin: admin)!;
        // An admin (asked for, or the server's first account) is invited into the admin room, as every new admin is.
        if (accounts.IsAdmin(login.UserId)) await keys.AdminGranted(login.UserId, ctx.RequestAborted);
        return keys.LoginJson(login);
    }
}

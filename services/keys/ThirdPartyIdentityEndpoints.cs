using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Http;
using Conduit.Common.Routing;
using Conduit.Common.Storage;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Conduit.Keys;

/// <summary>
/// Identity beyond the account itself. OpenID tokens (spec: client-server-api, "OpenID"; server-server-api, "OpenID"):
/// a user asks for a short-lived token that a third party (a widget, an integration manager) exchanges at
/// /_matrix/federation/v1/openid/userinfo for the user's ID. Third-party identifiers (email, phone): this server sends
/// no verification emails or SMS and talks to no identity server, so the 3PID endpoints answer the spec's errors for
/// that (M_THREEPID_DENIED, M_THREEPID_AUTH_FAILED, M_THREEPID_NOT_FOUND) instead of M_UNRECOGNIZED.
/// </summary>
public sealed class ThirdPartyIdentityEndpoints(IKeyValueStore store, GlobalConfig config)
{
    /// <summary>Synapse's lifetime for OpenID tokens.</summary>
    static readonly TimeSpan OpenIdLifetime = TimeSpan.FromHours(1);
    readonly IKvMap _openId = store.Map(KeysFamilies.OpenIdTokens);

    public void Map(IEndpointRouteBuilder app)
    {
        app.Map(RouteTable.OpenIdRequestToken, RequestOpenIdToken);
        app.Map(RouteTable.OpenIdUserInfo, OpenIdUserInfo);
        app.Map(RouteTable.RegisterRequestToken, RequestToken);
        app.Map(RouteTable.PasswordRequestToken, RequestToken);
        app.Map(RouteTable.ThreePidRequestToken, RequestToken);
        app.Map(RouteTable.ThreePidAdd, AddOrBind);
        app.Map(RouteTable.ThreePidRemove, DeleteOrUnbind);
    }

    // ---- OpenID

    async Task RequestOpenIdToken(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        if (ctx.Route("userId") != c.UserId) throw Err.Forbidden("You may only request tokens for yourself");
        await ctx.Request.ReadJsonObjectAsync();
        var token = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(24));
        var expires = DateTimeOffset.UtcNow.Add(OpenIdLifetime).ToUnixTimeMilliseconds();
        using (var b = store.CreateBatch())
        {
            b.Put(KeysFamilies.OpenIdTokens, KeysFamilies.OpenIdTokenKey(token), Encoding.UTF8.GetBytes(new JsonObject { ["user_id"] = c.UserId, ["expires_ts"] = expires }.ToJsonString()));
            // Expired tokens go as new ones are made (a user asks for one per widget load at most).
            var now = Ids.NowMs();
            foreach (var (k, v) in _openId.Scan([]))
                if (JsonLimits.ParseInternal(v)!["expires_ts"]!.GetValue<long>() <= now) b.Delete(KeysFamilies.OpenIdTokens, k);
            store.Write(b);
        }
        await ctx.Response.WriteJsonAsync(new JsonObject
        {
            ["access_token"] = token,
            ["token_type"] = "Bearer",
            ["matrix_server_name"] = config.ServerName,
            ["expires_in"] = (long)OpenIdLifetime.TotalSeconds,
        });
    }

    /// <summary>Spec: server-server-api, "GET /_matrix/federation/v1/openid/userinfo": {sub} or 401 M_UNKNOWN_TOKEN.</summary>
    async Task OpenIdUserInfo(HttpContext ctx)
    {
        var token = ctx.Request.Query["access_token"].ToString();
        if (token.Length == 0) throw Err.MissingToken();
        var v = _openId.Get(KeysFamilies.OpenIdTokenKey(token));
        var o = v is null ? null : JsonLimits.ParseInternal(v)!.AsObject();
        if (o is null || o["expires_ts"]!.GetValue<long>() <= Ids.NowMs())
            throw Err.UnknownToken("Access token unknown or expired");
        await ctx.Response.WriteJsonAsync(new JsonObject { ["sub"] = o["user_id"]!.GetValue<string>() });
    }

    // ---- third-party identifiers

    /// <summary>The six requestToken endpoints (registration, password reset, adding a 3PID; email and msisdn).</summary>
    async Task RequestToken(HttpContext ctx)
    {
        var body = await ctx.Request.ReadJsonObjectAsync();
        body.ReqString("client_secret");
        if (ctx.Route("medium") == "email") body.ReqString("email");
        else
        {
            body.ReqString("country");
            body.ReqString("phone_number");
        }
        if (body.OptLong("send_attempt") is null) throw Err.MissingParam("Missing 'send_attempt'");
        throw new MatrixException("M_THREEPID_DENIED", 403, "This server does not verify email addresses or phone numbers");
    }

    async Task AddOrBind(HttpContext ctx)
    {
        Caller.Required(ctx);
        var body = await ctx.Request.ReadJsonObjectAsync();
        body.ReqString("client_secret");
        body.ReqString("sid");
        if (ctx.Route("action") == "bind")
        {
            body.ReqString("id_server");
            body.ReqString("id_access_token");
        }
        throw new MatrixException("M_THREEPID_AUTH_FAILED", 400, "No validated third-party identifier session: this server does not verify them");
    }

    async Task DeleteOrUnbind(HttpContext ctx)
    {
        Caller.Required(ctx);
        var body = await ctx.Request.ReadJsonObjectAsync();
        if (body.ReqString("medium") is not ("email" or "msisdn")) throw Err.InvalidParam("'medium' must be email or msisdn");
        body.ReqString("address");
        throw new MatrixException("M_THREEPID_NOT_FOUND", 400, "This account has no third-party identifiers");
    }
}

using Conduit.Common.Http;
using Conduit.Common.Routing;
using Microsoft.AspNetCore.Http;

namespace Conduit.Edge;

/// <summary>
/// Authentication happens once, here. Caller headers a client sends are dropped (EdgeClientIp already dropped every
/// X-Conduit-* header); a token (Authorization: Bearer
/// or the deprecated access_token query parameter) is resolved through <see cref="TokenCache"/>, and the
/// identity travels on as <see cref="Caller"/> headers that services trust. A token that does not resolve is
/// refused with M_UNKNOWN_TOKEN, whatever the endpoint, except on server-server paths (/_matrix/federation, /_matrix/key),
/// which carry no client token, and on /refresh, authenticated by the refresh token in its body.
/// An expired token (spec: "Soft logout") is M_UNKNOWN_TOKEN with soft_logout: true, except on /logout and
/// /logout/all, which may still end the session (as Synapse allows). A guest's token opens only the routes the route
/// table marks for guests (spec: "Guest access"); anything else is M_GUEST_ACCESS_FORBIDDEN, whichever service owns it.
/// The route is the matched endpoint's <see cref="MatrixRoute"/>, put there in both modes (RouteTable.Map, SplitProxy).
/// With allow_federation = false, every /_matrix/federation path and the notary's /_matrix/key/v2/query are 403
/// M_FORBIDDEN here, whichever service owns them (our own /_matrix/key/v2/server stays published).
/// </summary>
public sealed class EdgeAuth(RequestDelegate next, TokenCache tokens, bool allowFederation)
{
    public async Task InvokeAsync(HttpContext ctx)
    {
        if (!allowFederation && IsFederationPath(ctx.Request.Path)) throw Err.Forbidden("Federation is disabled on this server");
        var h = ctx.Request.Headers;
        h.Remove(Caller.UserHeader);
        h.Remove(Caller.DeviceHeader);
        h.Remove(Caller.GuestHeader);
        h.Remove(Caller.AdminHeader);
        h.Remove(Caller.AppserviceHeader);
        var route = ctx.GetEndpoint()?.Metadata.GetMetadata<MatrixRoute>();
        // Server-server paths carry no client access token: federation requests are signed (X-Matrix), and the OpenID
        // userinfo endpoint's access_token is an OpenID token, which its own service checks.
        var token = IsServerPath(ctx.Request.Path) || ReferenceEquals(route, RouteTable.Refresh) || ReferenceEquals(route, RouteTable.RefreshV1)
            ? null : TokenOf(ctx.Request);
        if (token is not null)
        {
            var q = ctx.Request.Query;
            // Identity assertion (an as_token's ?user_id=) does not apply to account management (spec:
            // application-service-api): /register and /login with m.login.application_service take the as_token
            // alone, so a user_id naming the user about to be registered (matrix-bot-sdk sends one) is ignored there.
            var asserts = !ReferenceEquals(route, RouteTable.Register) && !ReferenceEquals(route, RouteTable.Login);
            var id = await tokens.ResolveAsync(token, ctx.RequestAborted, asserts ? First(q, "user_id") : null,
                    asserts ? First(q, "org.matrix.msc3202.device_id") ?? First(q, "device_id") : null)
                ?? throw Err.UnknownToken();
            if (id.Forbidden is { } forbidden) throw Err.Forbidden(forbidden);
            if (id.ExpiredAt(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()) && !ReferenceEquals(route, RouteTable.Logout) && !ReferenceEquals(route, RouteTable.LogoutAll))
                throw Err.SoftLogout();
            // No route: an unknown path or method, which the routing answers (404/405) whoever asks.
            if (id.IsGuest && route is not null && !route.AllowsGuest(ctx.Request.Method, ctx.Request.RouteValues["action"] as string))
                throw Err.GuestAccessForbidden();
            h[Caller.UserHeader] = id.UserId;
            h[Caller.DeviceHeader] = id.DeviceId;
            if (id.IsGuest) h[Caller.GuestHeader] = "1";
            if (id.IsAdmin) h[Caller.AdminHeader] = "1";
            if (id.AppserviceId is { } appservice) h[Caller.AppserviceHeader] = appservice;
        }
        ctx.Response.OnStarting(() =>
        {
            // "token <access token>": that one token was revoked (a refresh); anything else: drop every cached token.
            if (ctx.Response.Headers.Remove(TokenCache.RevokedHeader, out var revoked))
            {
                var v = revoked.ToString();
                if (v.StartsWith(TokenCache.RevokedTokenPrefix, StringComparison.Ordinal)) tokens.Evict(v[TokenCache.RevokedTokenPrefix.Length..]);
                else tokens.Clear();
            }
            return Task.CompletedTask;
        });
        await next(ctx);
    }

    static bool IsServerPath(PathString path)
        => path.StartsWithSegments("/_matrix/federation", StringComparison.Ordinal) || path.StartsWithSegments("/_matrix/key", StringComparison.Ordinal);

    static bool IsFederationPath(PathString path)
        => path.StartsWithSegments("/_matrix/federation", StringComparison.OrdinalIgnoreCase) || path.StartsWithSegments("/_matrix/key/v2/query", StringComparison.OrdinalIgnoreCase);

    static string? First(IQueryCollection q, string key) => q.TryGetValue(key, out var v) && v.Count > 0 && !string.IsNullOrEmpty(v[0]) ? v[0] : null;

    static string? TokenOf(HttpRequest r)
    {
        var auth = r.Headers.Authorization.ToString();
        if (auth.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase)) return auth[7..].Trim();
        return r.Query.TryGetValue("access_token", out var q) && q.Count > 0 && !string.IsNullOrEmpty(q[0]) ? q[0] : null;
    }
}

/// <summary>
/// CORS on every path (spec: client-server-api, "Web Browser Clients"): any origin, and preflight answered here.
/// Also bounds bodies to max_request_size (<see cref="RequestBodyLimit"/>), and bounds concurrent requests; long-polling
/// /sync requests are idle most of the time and do not count against the bound.
/// </summary>
public sealed class EdgeGate(RequestDelegate next, long maxRequestSize, int maxConcurrent)
{
    readonly SemaphoreSlim _slots = new(maxConcurrent, maxConcurrent);

    public async Task InvokeAsync(HttpContext ctx)
    {
        var resp = ctx.Response.Headers;
        resp.AccessControlAllowOrigin = "*";
        resp.AccessControlAllowMethods = "GET, POST, PUT, DELETE, OPTIONS";
        resp.AccessControlAllowHeaders = "X-Requested-With, Content-Type, Authorization";
        if (HttpMethods.IsOptions(ctx.Request.Method))
        {
            ctx.Response.StatusCode = 200;
            return;
        }
        RequestBodyLimit.Apply(ctx, maxRequestSize);
        if (ctx.Request.Path.Value?.EndsWith("/sync", StringComparison.Ordinal) == true)
        {
            await next(ctx);
            return;
        }
        await _slots.WaitAsync(ctx.RequestAborted);
        try { await next(ctx); }
        finally { _slots.Release(); }
    }
}

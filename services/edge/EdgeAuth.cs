using Conduit.Common.Http;
using Microsoft.AspNetCore.Http;

namespace Conduit.Edge;

/// <summary>
/// Authentication happens once, here. Caller headers a client sends are dropped; a token (Authorization: Bearer
/// or the deprecated access_token query parameter) is resolved through <see cref="TokenCache"/>, and the
/// identity travels on as <see cref="Caller"/> headers that services trust. A token that does not resolve is
/// refused with M_UNKNOWN_TOKEN, whatever the endpoint, except on server-server paths (/_matrix/federation, /_matrix/key),
/// which carry no client token.
/// </summary>
public sealed class EdgeAuth(RequestDelegate next, TokenCache tokens)
{
    public async Task InvokeAsync(HttpContext ctx)
    {
        var h = ctx.Request.Headers;
        h.Remove(Caller.UserHeader);
        h.Remove(Caller.DeviceHeader);
        // Server-server paths carry no client access token: federation requests are signed (X-Matrix), and the OpenID
        // userinfo endpoint's access_token is an OpenID token, which its own service checks.
        var token = IsServerPath(ctx.Request.Path) ? null : TokenOf(ctx.Request);
        if (token is not null)
        {
            var id = await tokens.ResolveAsync(token, ctx.RequestAborted) ?? throw Err.UnknownToken();
            h[Caller.UserHeader] = id.UserId;
            h[Caller.DeviceHeader] = id.DeviceId;
        }
        ctx.Response.OnStarting(() =>
        {
            if (ctx.Response.Headers.Remove(TokenCache.RevokedHeader)) tokens.Clear();
            return Task.CompletedTask;
        });
        await next(ctx);
    }

    static bool IsServerPath(PathString path)
        => path.StartsWithSegments("/_matrix/federation", StringComparison.Ordinal) || path.StartsWithSegments("/_matrix/key", StringComparison.Ordinal);

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

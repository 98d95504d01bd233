using Conduit.Common.Http;
using Microsoft.AspNetCore.Http;

namespace Conduit.Edge;

/// <summary>
/// Resolves the client's address once, for every service: the connection's peer, or what a trusted proxy says in
/// X-Forwarded-For (<see cref="TrustedProxies"/>). The result replaces any <see cref="ClientIp.Header"/> the
/// client sent, so services can trust it.
/// </summary>
public sealed class EdgeClientIp(RequestDelegate next, TrustedProxies trusted)
{
    public Task InvokeAsync(HttpContext ctx)
    {
        var h = ctx.Request.Headers;
        h.Remove(ClientIp.Header);
        if (ctx.Connection.RemoteIpAddress is { } peer)
            h[ClientIp.Header] = trusted.Resolve(peer, h["X-Forwarded-For"]).ToString();
        return next(ctx);
    }
}

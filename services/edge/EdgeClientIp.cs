using Conduit.Common.Http;
using Microsoft.AspNetCore.Http;

namespace Conduit.Edge;

/// <summary>
/// Resolves the client's address once, for every service: the connection's peer, or what a trusted proxy says in
/// X-Forwarded-For (<see cref="TrustedProxies"/>). The result replaces any <see cref="ClientIp.Header"/> the
/// client sent, so services can trust it. As the first middleware to touch the request, it also drops every other
/// internal header (<see cref="Caller.InternalHeaderPrefix"/>: caller, guest, admin, internal secret) a client sent.
/// </summary>
public sealed class EdgeClientIp(RequestDelegate next, TrustedProxies trusted)
{
    public Task InvokeAsync(HttpContext ctx)
    {
        var h = ctx.Request.Headers;
        List<string>? forged = null;
        foreach (var (name, _) in h)
            if (name.StartsWith(Caller.InternalHeaderPrefix, StringComparison.OrdinalIgnoreCase)) (forged ??= []).Add(name);
        if (forged is not null) foreach (var name in forged) h.Remove(name);
        if (ctx.Connection.RemoteIpAddress is { } peer)
            h[ClientIp.Header] = trusted.Resolve(peer, h["X-Forwarded-For"]).ToString();
        return next(ctx);
    }
}

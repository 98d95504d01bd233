using System.Security.Cryptography;
using System.Text;
using Conduit.Common.Grpc;
using Microsoft.AspNetCore.Http;

namespace Conduit.Common.Http;

/// <summary>
/// Every request reaching a service listener (Matrix HTTP forwarded by the edge, or gRPC from a peer) must
/// carry the deployment's internal secret. Without it the request is refused, so a service port exposed by
/// mistake is not an open door and nobody can forge the caller headers. Only GET /health is answered without it.
/// </summary>
public sealed class InternalGate(RequestDelegate next, string secret)
{
    readonly byte[] _secret = Encoding.UTF8.GetBytes(secret);

    public async Task InvokeAsync(HttpContext ctx)
    {
        // Open without the secret, for container health checks: it says only that the process serves.
        if (ctx.Request.Path == Health.Path && (HttpMethods.IsGet(ctx.Request.Method) || HttpMethods.IsHead(ctx.Request.Method)))
        {
            await Health.Answer(ctx);
            return;
        }
        var given = Encoding.UTF8.GetBytes(ctx.Request.Headers[InternalAuth.HeaderName].ToString());
        if (!CryptographicOperations.FixedTimeEquals(given, _secret))
        {
            if (ctx.Request.ContentType?.StartsWith("application/grpc", StringComparison.Ordinal) == true)
            {
                ctx.Response.StatusCode = 200;
                ctx.Response.ContentType = "application/grpc";
                ctx.Response.AppendTrailer("grpc-status", "16");
                ctx.Response.AppendTrailer("grpc-message", "internal secret required");
                return;
            }
            await ctx.Response.WriteErrorAsync(Err.Forbidden("This is an internal service port"));
            return;
        }
        await next(ctx);
    }
}

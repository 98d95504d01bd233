using Microsoft.AspNetCore.Http;

namespace Conduit.Common.Http;

/// <summary>GET /health: 200 "OK" while the process serves (Conduit's, conduwuit's and Synapse's answer), for load
/// balancers and container health checks. Says nothing else, so it is open on every listener.</summary>
public static class Health
{
    public const string Path = "/health";

    public static Task Answer(HttpContext ctx)
    {
        ctx.Response.StatusCode = StatusCodes.Status200OK;
        ctx.Response.ContentType = "text/plain; charset=utf-8";
        return HttpMethods.IsHead(ctx.Request.Method) ? Task.CompletedTask : ctx.Response.WriteAsync("OK");
    }
}

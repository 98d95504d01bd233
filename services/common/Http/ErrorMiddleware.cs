using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Conduit.Common.Http;

/// <summary>
/// Turns every failure into Matrix error JSON: MatrixException as itself, malformed input as
/// M_NOT_JSON/M_BAD_JSON, unmatched routes as M_UNRECOGNIZED (404, or 405 for a known path with another
/// method), anything unexpected as a logged 500 M_UNKNOWN.
/// </summary>
public sealed partial class ErrorMiddleware(RequestDelegate next, ILogger<ErrorMiddleware> log)
{
    public async Task InvokeAsync(HttpContext ctx)
    {
        try
        {
            await next(ctx);
            if (!ctx.Response.HasStarted && ctx.Response.ContentType is null
                && ctx.Response.StatusCode is 404 or 405 && ctx.Response.ContentLength is null or 0)
                await ctx.Response.WriteErrorAsync(Err.Unrecognized(ctx.Response.StatusCode));
        }
        catch (MatrixException e) when (!ctx.Response.HasStarted)
        {
            await ctx.Response.WriteErrorAsync(e);
        }
        catch (JsonException) when (!ctx.Response.HasStarted)
        {
            await ctx.Response.WriteErrorAsync(Err.NotJson());
        }
        catch (BadHttpRequestException e) when (!ctx.Response.HasStarted)
        {
            await ctx.Response.WriteErrorAsync(e.StatusCode == 413 ? Err.TooLarge() : Err.BadJson(e.Message));
        }
        catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested)
        {
            // The client went away; nothing to answer.
        }
        catch (Exception e) when (!ctx.Response.HasStarted)
        {
            LogUnhandled(log, ctx.Request.Method, ctx.Request.Path, e);
            ctx.Response.Clear();
            await ctx.Response.WriteErrorAsync(new MatrixException("M_UNKNOWN", 500, "Internal server error"));
        }
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "Unhandled error on {Method} {Path}")]
    static partial void LogUnhandled(ILogger log, string method, PathString path, Exception e);
}

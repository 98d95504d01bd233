using System.Text.Json;
using Grpc.Core;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Conduit.Common.Http;

/// <summary>
/// Turns every failure into Matrix error JSON: MatrixException as itself, malformed input as
/// M_NOT_JSON/M_BAD_JSON, unmatched routes as M_UNRECOGNIZED (404, or 405 for a known path with another
/// method), any other error status left without a body as Matrix JSON for that status, anything unexpected as a
/// logged 500 M_UNKNOWN. (Errors Kestrel answers before any middleware runs: the edge's ServerErrorBodies.)
/// </summary>
public sealed partial class ErrorMiddleware(RequestDelegate next, ILogger<ErrorMiddleware> log)
{
    public async Task InvokeAsync(HttpContext ctx)
    {
        try
        {
            await next(ctx);
            // A status set without a body (routing's 404/405, the proxy's 400/502/504, ...) still gets Matrix error JSON.
            if (!ctx.Response.HasStarted && ctx.Response.ContentType is null && ctx.Response.ContentLength is null or 0 && ctx.Response.StatusCode >= 400)
                await ctx.Response.WriteErrorAsync(ErrorForStatus(ctx));
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
        catch (RpcException e) when (!ctx.Response.HasStarted && e.StatusCode is StatusCode.Unavailable or StatusCode.DeadlineExceeded)
        {
            // A peer service is down or restarting: the client may retry.
            LogPeerUnavailable(log, ctx.Request.Method, ctx.Request.Path, e.Status.Detail);
            await ctx.Response.WriteErrorAsync(Unavailable(503));
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

    static MatrixException ErrorForStatus(HttpContext ctx) => ctx.Response.StatusCode switch
    {
        404 or 405 => Err.Unrecognized(ctx.Response.StatusCode),
        502 or 503 or 504 => Unavailable(ctx.Response.StatusCode),
        413 => Err.TooLarge(),
        // The reverse proxy answers 400 when reading the client's body failed, also when it went past the limit.
        400 when ctx.Items.ContainsKey(BodyTooLargeItem) => Err.TooLarge(),
        >= 500 => new MatrixException("M_UNKNOWN", ctx.Response.StatusCode, "Internal server error"),
        var s => new MatrixException("M_UNKNOWN", s, "The request could not be processed"),
    };

    /// <summary>The HttpContext item set when a request body went past max_request_size (see the edge's RequestBodyLimit).</summary>
    public const string BodyTooLargeItem = "conduit.body_too_large";

    static MatrixException Unavailable(int status) => new("M_UNKNOWN", status, "A service of this homeserver is unavailable; try again shortly");

    [LoggerMessage(Level = LogLevel.Warning, Message = "A peer service was unavailable for {Method} {Path}: {Detail}")]
    static partial void LogPeerUnavailable(ILogger log, string method, PathString path, string detail);

    [LoggerMessage(Level = LogLevel.Error, Message = "Unhandled error on {Method} {Path}")]
    static partial void LogUnhandled(ILogger log, string method, PathString path, Exception e);
}

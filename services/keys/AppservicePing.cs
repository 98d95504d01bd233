using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Http;
using Microsoft.AspNetCore.Http;

namespace Conduit.Keys;

/// <summary>
/// POST /_matrix/client/v1/appservice/{appserviceId}/ping (spec: application-service-api, "Pinging"): the homeserver
/// POSTs /_matrix/app/v1/ping to the appservice's url with its hs_token and answers how long that took. The url is the
/// admin's own (the registration file), so loopback and private addresses are allowed, unlike federation's.
/// </summary>
public sealed partial class KeysEndpoints
{
    /// <summary>How long the appservice may take to answer a ping.</summary>
    public static readonly TimeSpan PingTimeout = TimeSpan.FromSeconds(10);

    static readonly HttpClient AppserviceHttp = new(new SocketsHttpHandler { AllowAutoRedirect = false, ConnectTimeout = PingTimeout })
    {
        Timeout = Timeout.InfiniteTimeSpan,
    };

    async Task AppservicePing(HttpContext ctx)
    {
        var id = ctx.Request.RouteValues["appserviceId"] as string;
        var r = config.Appservices().FirstOrDefault(a => a.Id == id && a.Id == Caller.AppserviceOf(ctx))
            ?? throw Err.Forbidden("Provided access token is not the appservice's as_token");
        var body = await ctx.Request.ReadJsonObjectAsync();
        if (r.Url is null) throw new MatrixException("M_URL_NOT_SET", 400, "Application service doesn't have a URL configured");
        var ping = new JsonObject();
        if (body.OptString("transaction_id") is { } txn) ping["transaction_id"] = txn;
        using var req = new HttpRequestMessage(HttpMethod.Post, r.Url.TrimEnd('/') + "/_matrix/app/v1/ping")
        {
            Content = new StringContent(ping.ToJsonString(), Encoding.UTF8, "application/json"),
        };
        req.Headers.Authorization = new AuthenticationHeaderValue("Bearer", r.HsToken);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ctx.RequestAborted);
        timeout.CancelAfter(PingTimeout);
        var clock = Stopwatch.StartNew();
        try
        {
            using var resp = await AppserviceHttp.SendAsync(req, timeout.Token);
            var text = await resp.Content.ReadAsStringAsync(timeout.Token);
            if (!resp.IsSuccessStatusCode)
                throw new MatrixException("M_BAD_STATUS", 502, $"Ping returned status {(int)resp.StatusCode}")
                {
                    Extra = new() { ["status"] = (int)resp.StatusCode, ["body"] = text.Length > 4096 ? text[..4096] : text },
                };
        }
        catch (OperationCanceledException) when (!ctx.RequestAborted.IsCancellationRequested)
        {
            throw new MatrixException("M_CONNECTION_TIMEOUT", 504, "Connection to the application service timed out");
        }
        catch (HttpRequestException e)
        {
            throw new MatrixException("M_CONNECTION_FAILED", 502, $"Connection to the application service failed: {e.Message}");
        }
        await ctx.Response.WriteJsonAsync(new JsonObject { ["duration_ms"] = clock.ElapsedMilliseconds });
    }
}

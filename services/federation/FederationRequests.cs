using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common.Config;
using Conduit.Common.Http;
using Microsoft.Extensions.Logging;

namespace Conduit.Federation;

/// <summary>What another server answered: its HTTP status and body, or status 0 and why it could not be reached.</summary>
public sealed record FederationReply(int Status, string Body, string? Error);

/// <summary>
/// Requests to other servers, signed by this one (spec: server-server-api, "Request Authentication": X-Matrix with
/// origin, destination, key and signature over method, target and body), through <see cref="FederationClient"/>
/// (server discovery, validated TLS). Every outbound federation request goes through here, so
/// <c>allow_federation = false</c> stops them all in one place.
/// </summary>
public sealed partial class FederationRequests(FederationClient client, ServerKeys keys, GlobalConfig config, ILogger<FederationRequests> log)
{
    /// <summary>The largest answer read (a send_join of a large room is tens of megabytes).</summary>
    public const long MaxResponseBytes = 64L * 1024 * 1024;

    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(60);

    public async Task<FederationReply> SendAsync(string destination, string method, string path, JsonNode? body, TimeSpan? timeout, CancellationToken ct)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(timeout ?? DefaultTimeout);
        var (response, failure) = await OpenAsync(destination, method, path, body, cts.Token, ct);
        if (response is null) return failure!;
        using (response)
        {
            try
            {
                if (response.Content.Headers.ContentLength > MaxResponseBytes) return new(0, "", "answer too large");
                await using var stream = await response.Content.ReadAsStreamAsync(cts.Token);
                using var ms = new MemoryStream();
                var buffer = new byte[81920];
                int n;
                while ((n = await stream.ReadAsync(buffer, cts.Token)) > 0)
                {
                    if (ms.Length + n > MaxResponseBytes) return new(0, "", "answer too large");
                    ms.Write(buffer, 0, n);
                }
                return new((int)response.StatusCode, Encoding.UTF8.GetString(ms.GetBuffer(), 0, (int)ms.Length), null);
            }
            catch (Exception e) when (e is HttpRequestException or OperationCanceledException or IOException)
            {
                if (ct.IsCancellationRequested) throw;
                LogUnreachable(log, destination, method, path, e.Message);
                return new(0, "", e is OperationCanceledException ? "timed out" : e.Message);
            }
        }
    }

    /// <summary>
    /// Sends a signed request and returns the response once its headers are in (the caller reads and disposes it),
    /// or why there is none. <paramref name="ct"/> bounds the whole exchange; <paramref name="callerCt"/> is the
    /// caller's own, whose cancellation is rethrown rather than reported.
    /// </summary>
    public async Task<(HttpResponseMessage? Response, FederationReply? Failure)> OpenAsync(string destination, string method, string path, JsonNode? body,
        CancellationToken ct, CancellationToken callerCt)
    {
        if (!config.AllowFederation) return (null, new(403, "", "federation is disabled (allow_federation = false)"));
        if (destination == config.ServerName) return (null, new(0, "", "a request to this server itself"));
        if (!Conduit.Common.Ids.IsValidServerName(destination)) return (null, new(0, "", "not a server name: " + destination));
        if (!path.StartsWith("/_matrix/", StringComparison.Ordinal)) return (null, new(0, "", "not a Matrix path: " + path));
        try
        {
            using var request = new HttpRequestMessage(new HttpMethod(method), $"{FederationHandler.Scheme}://{destination}{path}");
            request.Headers.TryAddWithoutValidation("Authorization", XMatrix.Authorization(keys.Key, config.ServerName, destination, method, path, body));
            if (body is not null)
                request.Content = new ByteArrayContent(Encoding.UTF8.GetBytes(body.ToJsonString())) { Headers = { ContentType = new MediaTypeHeaderValue("application/json") } };
            return (await client.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct), null);
        }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException or IOException or System.Security.Authentication.AuthenticationException or ArgumentException)
        {
            if (callerCt.IsCancellationRequested) throw;
            LogUnreachable(log, destination, method, path, e.Message);
            return (null, new(0, "", e is OperationCanceledException ? "timed out" : e.Message));
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Federation request to {Destination} failed: {Method} {Path}: {Error}")]
    static partial void LogUnreachable(ILogger log, string destination, string method, string path, string error);
}

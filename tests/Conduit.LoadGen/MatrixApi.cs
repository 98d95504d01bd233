using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json.Nodes;

namespace Conduit.LoadGen;

/// <summary>Result of one Client-Server API call. <see cref="Status"/> is 0 when no HTTP response arrived.</summary>
internal readonly record struct ApiResult(int Status, JsonNode? Json, string? Errcode, string? Error, TimeSpan? RetryAfter)
{
    public bool Ok => Status is >= 200 and < 300;

    /// <summary>Size of the response body in bytes.</summary>
    public long Bytes { get; init; }

    /// <summary>The response body as received.</summary>
    public byte[]? Body { get; init; }

    /// <summary>The response's media type (Content-Type without parameters).</summary>
    public string? ContentType { get; init; }

    /// <summary>From sending the request to the last byte of the body (before JSON parsing) of the final attempt.</summary>
    public TimeSpan Elapsed { get; init; }

    public string Describe() =>
        Status == 0 ? $"no response ({Error})" : $"HTTP {Status} {Errcode} {Error}".TrimEnd();
}

/// <summary>
/// Thin JSON-over-HTTP helper around one shared <see cref="HttpClient"/>; tallies every failure. Every call retries
/// 429 M_LIMIT_EXCEEDED honouring retry_after_ms (so rate limiting slows a run down instead of failing it) and counts
/// those 429s per operation.
/// </summary>
internal sealed class MatrixApi(HttpClient http, Uri baseUrl)
{
    const int MaxRateLimitedAttempts = 20;
    static readonly TimeSpan MaxRetryAfter = TimeSpan.FromSeconds(10);

    /// <summary>Failures keyed by "operation status errcode".</summary>
    public ConcurrentDictionary<string, int> Errors { get; } = new(StringComparer.Ordinal);

    /// <summary>429 answers that were waited out and retried, keyed by operation.</summary>
    public ConcurrentDictionary<string, int> RateLimited { get; } = new(StringComparer.Ordinal);

    public Uri BaseUrl => baseUrl;

    public static string Esc(string s) => Uri.EscapeDataString(s);

    /// <param name="op">short label used in the error tally, e.g. "send" or "sync"</param>
    /// <param name="path">path and query relative to the base URL, e.g. "_matrix/client/v3/sync?timeout=0"</param>
    /// <param name="timeout">per-request timeout; expiry is reported as status 0 "timeout"</param>
    /// <param name="record">whether a failure is added to <see cref="Errors"/></param>
    public async Task<ApiResult> CallAsync(string op, HttpMethod method, string path, JsonNode? body, string? accessToken,
        TimeSpan timeout, CancellationToken ct, bool record = true)
    {
        for (var attempt = 1; ; attempt++)
        {
            var r = await CallOnceAsync(method, path, body, accessToken, timeout, ct).ConfigureAwait(false);
            if (r.Status == 429 && attempt < MaxRateLimitedAttempts)
            {
                RateLimited.AddOrUpdate(op, 1, (_, n) => n + 1);
                var wait = r.RetryAfter ?? TimeSpan.FromSeconds(1);
                await Task.Delay(wait > MaxRetryAfter ? MaxRetryAfter : wait, ct).ConfigureAwait(false);
                continue;
            }
            if (!r.Ok && record && !IsUiaChallenge(op, r)) Tally(op, r);
            return r;
        }
    }

    Task<ApiResult> CallOnceAsync(HttpMethod method, string path, JsonNode? body, string? accessToken, TimeSpan timeout,
        CancellationToken ct) =>
        SendOnceAsync(method, path, body is null ? null : new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json"),
            accessToken, timeout, ct);

    /// <summary>
    /// One request with any body (the media scenario's uploads), not retried; a failure is tallied under
    /// <paramref name="op"/>. The response body is kept in <see cref="ApiResult.Body"/>.
    /// </summary>
    public async Task<ApiResult> SendAsync(string op, HttpMethod method, string path, HttpContent? content, string? accessToken,
        TimeSpan timeout, CancellationToken ct)
    {
        var r = await SendOnceAsync(method, path, content, accessToken, timeout, ct).ConfigureAwait(false);
        if (!r.Ok) Tally(op, r);
        return r;
    }

    async Task<ApiResult> SendOnceAsync(HttpMethod method, string path, HttpContent? content, string? accessToken, TimeSpan timeout,
        CancellationToken ct)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(timeout);
        using var req = new HttpRequestMessage(method, new Uri(baseUrl, path));
        if (accessToken is not null) req.Headers.Authorization = new AuthenticationHeaderValue("Bearer", accessToken);
        req.Content = content;

        var start = Stopwatch.GetTimestamp();
        try
        {
            using var resp = await http.SendAsync(req, HttpCompletionOption.ResponseContentRead, cts.Token).ConfigureAwait(false);
            var bytes = await resp.Content.ReadAsByteArrayAsync(cts.Token).ConfigureAwait(false);
            var elapsed = Stopwatch.GetElapsedTime(start);
            var contentType = resp.Content.Headers.ContentType?.MediaType;
            JsonNode? json = null;
            // Media bodies (downloads, thumbnails) are not JSON: only JSON, or a body of no stated type, is parsed.
            if (bytes.Length > 0 && (contentType is null || contentType.Contains("json", StringComparison.OrdinalIgnoreCase)))
            {
                try { json = JsonNode.Parse(bytes); }
                catch (System.Text.Json.JsonException) { /* non-JSON body: keep null */ }
            }

            var status = (int)resp.StatusCode;
            string? errcode = null, error = null;
            TimeSpan? retryAfter = null;
            if (!resp.IsSuccessStatusCode)
            {
                errcode = Str(json?["errcode"]) ?? (json is null ? "(non-JSON body)" : null);
                error = Str(json?["error"]);
                if (json?["retry_after_ms"] is JsonValue ra && ra.TryGetValue<long>(out var ms)) retryAfter = TimeSpan.FromMilliseconds(ms);
                else if (resp.Headers.RetryAfter?.Delta is { } d) retryAfter = d;
            }
            return new ApiResult(status, json, errcode, error, retryAfter) { Bytes = bytes.Length, Elapsed = elapsed, Body = bytes, ContentType = contentType };
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            throw; // the caller is shutting down: not an error
        }
        catch (OperationCanceledException)
        {
            return new ApiResult(0, null, "timeout", $"no response within {timeout.TotalSeconds:0.#} s", null) { Elapsed = Stopwatch.GetElapsedTime(start) };
        }
        catch (HttpRequestException e)
        {
            var code = e.HttpRequestError.ToString();
            return new ApiResult(0, null, code, e.InnerException?.Message ?? e.Message, null) { Elapsed = Stopwatch.GetElapsedTime(start) };
        }
    }

    /// <summary>Calls <see cref="CallAsync"/> (which already waits out 429s), retrying up to 8 times on connection failures, 502 and 503.</summary>
    public async Task<ApiResult> CallWithRetryAsync(string op, HttpMethod method, string path, JsonNode? body, string? accessToken,
        TimeSpan timeout, CancellationToken ct)
    {
        for (var attempt = 1; ; attempt++)
        {
            var r = await CallAsync(op, method, path, body, accessToken, timeout, ct).ConfigureAwait(false);
            var retriable = r.Status is 0 or 502 or 503;
            if (!retriable || attempt >= 8) return r;
            var wait = r.RetryAfter ?? TimeSpan.FromMilliseconds(200 * attempt);
            if (wait > TimeSpan.FromSeconds(10)) wait = TimeSpan.FromSeconds(10);
            await Task.Delay(wait, ct).ConfigureAwait(false);
        }
    }

    /// <summary>Counts a failed request in <see cref="Errors"/> ("operation status errcode").</summary>
    public void Tally(string op, ApiResult r)
    {
        var key = r.Status == 0 ? $"{op} no-response {r.Errcode}" : $"{op} {r.Status} {r.Errcode ?? "-"}";
        Errors.AddOrUpdate(key, 1, (_, n) => n + 1);
    }

    private static bool IsUiaChallenge(string op, ApiResult r) =>
        op == "register" && r.Status == 401 && r.Json?["session"] is not null && r.Errcode is null;

    public static string? Str(JsonNode? n) =>
        n is JsonValue v && v.TryGetValue<string>(out var s) ? s : null;

    /// <summary>
    /// POST /register with user-interactive auth: the first call returns 401 with flows and a session; then each stage of a
    /// flow made only of m.login.dummy (and m.login.registration_token when a token is given) is completed in turn.
    /// </summary>
    public async Task<(string UserId, string AccessToken, string DeviceId)> RegisterAsync(string localpart, string password, string? registrationToken,
        CancellationToken ct)
    {
        const string path = "_matrix/client/v3/register?kind=user";
        var timeout = TimeSpan.FromSeconds(60);
        JsonObject MakeBody(JsonObject? auth)
        {
            var b = new JsonObject
            {
                ["username"] = localpart,
                ["password"] = password,
                ["initial_device_display_name"] = "Conduit.LoadGen",
                ["inhibit_login"] = false,
            };
            if (auth is not null) b["auth"] = auth;
            return b;
        }

        var r = await CallWithRetryAsync("register", HttpMethod.Post, path, MakeBody(null), null, timeout, ct).ConfigureAwait(false);
        if (r.Ok) return Creds(r, localpart);
        if (r.Status != 401 || Str(r.Json?["session"]) is not { } session)
            throw new InvalidOperationException($"register {localpart}: expected 401 with a UIA session, got {r.Describe()}");

        var allowed = new HashSet<string>(StringComparer.Ordinal) { "m.login.dummy" };
        if (registrationToken is not null) allowed.Add("m.login.registration_token");
        var flows = r.Json?["flows"] as JsonArray ?? [];
        List<string>? stages = null;
        foreach (var f in flows)
        {
            var s = (f?["stages"] as JsonArray ?? []).Select(x => Str(x) ?? "").ToList();
            if (s.Count > 0 && s.All(allowed.Contains) && (stages is null || s.Count < stages.Count)) stages = s;
        }
        if (stages is null)
            throw new InvalidOperationException(
                $"register {localpart}: no flow usable with stages [{string.Join(", ", allowed)}]; server offers {flows.ToJsonString()}" +
                (registrationToken is null ? " (pass --registration-token if the server requires one)" : ""));

        foreach (var stage in stages)
        {
            var auth = new JsonObject { ["type"] = stage, ["session"] = session };
            if (stage == "m.login.registration_token") auth["token"] = registrationToken;
            r = await CallWithRetryAsync("register", HttpMethod.Post, path, MakeBody(auth), null, timeout, ct).ConfigureAwait(false);
            if (r.Ok) return Creds(r, localpart);
            if (r.Status != 401)
                throw new InvalidOperationException($"register {localpart}: stage {stage} failed: {r.Describe()}");
        }
        throw new InvalidOperationException($"register {localpart}: still 401 after completing [{string.Join(", ", stages)}]: {r.Describe()}");
    }

    private static (string, string, string) Creds(ApiResult r, string localpart)
    {
        var userId = Str(r.Json?["user_id"]);
        var token = Str(r.Json?["access_token"]);
        var deviceId = Str(r.Json?["device_id"]);
        if (userId is null || token is null || deviceId is null)
            throw new InvalidOperationException($"register {localpart}: 200 without user_id/access_token/device_id: {r.Json?.ToJsonString()}");
        return (userId, token, deviceId);
    }

    /// <param name="trustedCa">when given, HTTPS servers are trusted only with a certificate this CA issued (the
    /// federation scenario's own servers); the name is checked as usual</param>
    public static HttpClient CreateHttpClient(int users, X509Certificate2? trustedCa = null)
    {
        var handler = new SocketsHttpHandler
        {
            MaxConnectionsPerServer = Math.Max(64, users * 2 + 16),
            PooledConnectionIdleTimeout = TimeSpan.FromSeconds(90),
            ConnectTimeout = TimeSpan.FromSeconds(10),
            AutomaticDecompression = DecompressionMethods.None,
            UseProxy = false,
            UseCookies = false,
        };
        if (trustedCa is not null)
            handler.SslOptions = new SslClientAuthenticationOptions
            {
                CertificateChainPolicy = new X509ChainPolicy
                {
                    TrustMode = X509ChainTrustMode.CustomRootTrust,
                    CustomTrustStore = { trustedCa },
                    RevocationMode = X509RevocationMode.NoCheck,
                },
            };
        return new HttpClient(handler) { Timeout = Timeout.InfiniteTimeSpan };
    }
}

using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;

namespace Conduit.LoadGen;

/// <summary>Result of one Client-Server API call. <see cref="Status"/> is 0 when no HTTP response arrived.</summary>
internal readonly record struct ApiResult(int Status, JsonNode? Json, string? Errcode, string? Error, TimeSpan? RetryAfter)
{
    public bool Ok => Status is >= 200 and < 300;

    public string Describe() =>
        Status == 0 ? $"no response ({Error})" : $"HTTP {Status} {Errcode} {Error}".TrimEnd();
}

/// <summary>Thin JSON-over-HTTP helper around one shared <see cref="HttpClient"/>; tallies every failure.</summary>
internal sealed class MatrixApi(HttpClient http, Uri baseUrl)
{
    /// <summary>Failures keyed by "operation status errcode".</summary>
    public ConcurrentDictionary<string, int> Errors { get; } = new(StringComparer.Ordinal);

    public Uri BaseUrl => baseUrl;

    public static string Esc(string s) => Uri.EscapeDataString(s);

    /// <param name="op">short label used in the error tally, e.g. "send" or "sync"</param>
    /// <param name="path">path and query relative to the base URL, e.g. "_matrix/client/v3/sync?timeout=0"</param>
    /// <param name="timeout">per-request timeout; expiry is reported as status 0 "timeout"</param>
    /// <param name="record">whether a failure is added to <see cref="Errors"/></param>
    public async Task<ApiResult> CallAsync(string op, HttpMethod method, string path, JsonNode? body, string? accessToken,
        TimeSpan timeout, CancellationToken ct, bool record = true)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(timeout);
        using var req = new HttpRequestMessage(method, new Uri(baseUrl, path));
        if (accessToken is not null) req.Headers.Authorization = new AuthenticationHeaderValue("Bearer", accessToken);
        if (body is not null)
            req.Content = new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json");

        ApiResult result;
        try
        {
            using var resp = await http.SendAsync(req, HttpCompletionOption.ResponseContentRead, cts.Token).ConfigureAwait(false);
            var text = await resp.Content.ReadAsStringAsync(cts.Token).ConfigureAwait(false);
            JsonNode? json = null;
            if (text.Length > 0)
            {
                try { json = JsonNode.Parse(text); }
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
            result = new ApiResult(status, json, errcode, error, retryAfter);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            throw; // the caller is shutting down: not an error
        }
        catch (OperationCanceledException)
        {
            result = new ApiResult(0, null, "timeout", $"no response within {timeout.TotalSeconds:0.#} s", null);
        }
        catch (HttpRequestException e)
        {
            var code = e.HttpRequestError.ToString();
            result = new ApiResult(0, null, code, e.InnerException?.Message ?? e.Message, null);
        }

        if (!result.Ok && record && !IsUiaChallenge(op, result)) Tally(op, result);
        return result;
    }

    /// <summary>Calls <see cref="CallAsync"/>, retrying (up to 8 times) on 429 and on connection failures.</summary>
    public async Task<ApiResult> CallWithRetryAsync(string op, HttpMethod method, string path, JsonNode? body, string? accessToken,
        TimeSpan timeout, CancellationToken ct)
    {
        for (var attempt = 1; ; attempt++)
        {
            var r = await CallAsync(op, method, path, body, accessToken, timeout, ct).ConfigureAwait(false);
            var retriable = r.Status == 429 || r.Status == 0 || r.Status == 502 || r.Status == 503;
            if (!retriable || attempt >= 8) return r;
            var wait = r.RetryAfter ?? TimeSpan.FromMilliseconds(200 * attempt);
            if (wait > TimeSpan.FromSeconds(10)) wait = TimeSpan.FromSeconds(10);
            await Task.Delay(wait, ct).ConfigureAwait(false);
        }
    }

    private void Tally(string op, ApiResult r)
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
    public async Task<(string UserId, string AccessToken)> RegisterAsync(string localpart, string password, string? registrationToken,
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

    private static (string, string) Creds(ApiResult r, string localpart)
    {
        var userId = Str(r.Json?["user_id"]);
        var token = Str(r.Json?["access_token"]);
        if (userId is null || token is null)
            throw new InvalidOperationException($"register {localpart}: 200 without user_id/access_token: {r.Json?.ToJsonString()}");
        return (userId, token);
    }

    /// <summary>Sum of VmRSS (in kB) of the given processes, or null if none could be read.</summary>
    public static long? ReadRssKb(IReadOnlyList<int> pids)
    {
        long total = 0;
        var any = false;
        foreach (var pid in pids)
        {
            try
            {
                foreach (var line in File.ReadLines($"/proc/{pid}/status"))
                {
                    if (!line.StartsWith("VmRSS:", StringComparison.Ordinal)) continue;
                    var parts = line[6..].Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries);
                    if (parts.Length > 0 && long.TryParse(parts[0], NumberStyles.Integer, CultureInfo.InvariantCulture, out var kb))
                    {
                        total += kb;
                        any = true;
                    }
                    break;
                }
            }
            catch (IOException)
            {
                // process gone or not readable
            }
            catch (UnauthorizedAccessException)
            {
            }
        }
        return any ? total : null;
    }

    public static HttpClient CreateHttpClient(int users)
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
        return new HttpClient(handler) { Timeout = Timeout.InfiniteTimeSpan };
    }
}

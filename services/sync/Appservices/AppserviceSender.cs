using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common.Appservices;
using Conduit.Common.Config;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Conduit.Sync.Appservices;

/// <summary>
/// Sends each application service its queue as transactions (spec: application-service-api, "Pushing events":
/// PUT /_matrix/app/v1/transactions/{txnId} with the hs_token as the bearer token). One loop per appservice, so a
/// slow or unreachable one holds back only itself. A transaction that fails (no connection, a timeout, any non-2xx
/// answer) is resent unchanged after 2, 4, 8 ... 512 seconds (Synapse's recoverer; the spec: "backoff exponentially");
/// meanwhile new items wait in the queue and go in the following transactions, at most
/// <see cref="AppserviceQueue.MaxPerKind"/> events (and as many ephemeral events and to-device messages) each.
/// The legacy unversioned paths are not tried (Synapse dropped them too).
/// </summary>
public sealed partial class AppserviceSender : BackgroundService
{
    static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(60);
    /// <summary>The n-th consecutive failure waits 2^n seconds, n at most this.</summary>
    public const int MaxBackoffExponent = 9;

    readonly AppserviceQueue _queue;
    readonly GlobalConfig _config;
    readonly ILogger<AppserviceSender> _log;
    readonly HttpClient _http;
    readonly DrainLoops<string, string> _loops;
    CancellationToken _stopping;

    public AppserviceSender(AppserviceQueue queue, GlobalConfig config, ILogger<AppserviceSender> log)
    {
        _queue = queue;
        _config = config;
        _log = log;
        // The url is the admin's choice (a bridge usually listens on loopback): no outbound IP policy applies.
        _http = new HttpClient(new SocketsHttpHandler { AllowAutoRedirect = false, ConnectTimeout = TimeSpan.FromSeconds(10) }) { Timeout = RequestTimeout };
        _loops = new DrainLoops<string, string>(queue.AppservicesWithQueue, id => id, Drain);
        queue.Queued += _ => Signal();
    }

    public void Signal() => _loops.Signal();

    protected override async Task ExecuteAsync(CancellationToken ct)
    {
        _stopping = ct;
        try { await _loops.RunAsync(ct); }
        catch (Exception) when (ct.IsCancellationRequested) { }
    }

    async Task Drain(string id)
    {
        var failures = 0;
        try
        {
            while (!_stopping.IsCancellationRequested)
            {
                // Not (or not yet, in a process still learning the registrations) registered: its queue waits.
                if (_config.Appservices().FirstOrDefault(r => r.Id == id) is not { } reg) return;
                if (reg.Url is null)
                {
                    // Never to be contacted: nothing queued for it can go anywhere.
                    _queue.Drop(id);
                    return;
                }
                if (_queue.Current(id) is not { } txn) return;
                if (await Send(reg, txn))
                {
                    _queue.Acknowledge(id, txn);
                    failures = 0;
                    continue;
                }
                failures = Math.Min(failures + 1, MaxBackoffExponent);
                await Task.Delay(TimeSpan.FromSeconds(1 << failures), _stopping);
            }
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested) { }
        catch (Exception e)
        {
            LogDrainFailed(_log, id, e.Message);
            // Not at once again: the main loop would restart it straight away.
            try { await Task.Delay(TimeSpan.FromSeconds(5), _stopping); } catch (OperationCanceledException) { }
        }
        finally
        {
            Signal();
        }
    }

    async Task<bool> Send(AppserviceRegistration reg, AppserviceTxn txn)
    {
        var body = Body(txn.Items).ToJsonString();
        try
        {
            using var req = new HttpRequestMessage(HttpMethod.Put, reg.Url!.TrimEnd('/') + "/_matrix/app/v1/transactions/" + Uri.EscapeDataString(txn.TxnId.ToString(System.Globalization.CultureInfo.InvariantCulture)))
            {
                Content = new StringContent(body, Encoding.UTF8),
            };
            req.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
            req.Headers.Authorization = new AuthenticationHeaderValue("Bearer", reg.HsToken);
            using var res = await _http.SendAsync(req, _stopping);
            if (res.IsSuccessStatusCode) return true;
            LogRefused(_log, reg.Id, txn.TxnId, (int)res.StatusCode);
            return false;
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException && !_stopping.IsCancellationRequested)
        {
            LogSendFailed(_log, reg.Id, txn.TxnId, e.Message);
            return false;
        }
    }

    /// <summary>
    /// The transaction body: events, ephemeral (MSC2409, stable since v1.13), de.sorunome.msc2409.to_device, and
    /// MSC3202's device lists and key counts (a user's or device's latest entry wins).
    /// </summary>
    public static JsonObject Body(IReadOnlyList<JsonObject> items)
    {
        var events = new JsonArray();
        var ephemeral = new JsonArray();
        var toDevice = new JsonArray();
        var changed = new SortedSet<string>(StringComparer.Ordinal);
        var left = new SortedSet<string>(StringComparer.Ordinal);
        var otk = new JsonObject();
        var fallback = new JsonObject();
        foreach (var item in items)
        {
            var v = item["v"];
            switch (item["k"]?.GetValue<string>())
            {
                case "event": events.Add(v?.DeepClone()); break;
                case "ephemeral": ephemeral.Add(v?.DeepClone()); break;
                case "to_device": toDevice.Add(v?.DeepClone()); break;
                case "device_lists":
                    foreach (var u in Strings(v?["changed"])) { changed.Add(u); left.Remove(u); }
                    foreach (var u in Strings(v?["left"])) { left.Add(u); changed.Remove(u); }
                    break;
                case "otk":
                    Merge(otk, v?["counts"]);
                    Merge(fallback, v?["fallback"]);
                    break;
            }
        }
        var body = new JsonObject { ["events"] = events };
        if (ephemeral.Count > 0) body["ephemeral"] = ephemeral;
        if (toDevice.Count > 0) body["de.sorunome.msc2409.to_device"] = toDevice;
        if (changed.Count > 0 || left.Count > 0)
            body["org.matrix.msc3202.device_lists"] = new JsonObject
            {
                ["changed"] = new JsonArray([.. changed.Select(u => (JsonNode)u)]),
                ["left"] = new JsonArray([.. left.Select(u => (JsonNode)u)]),
            };
        if (otk.Count > 0) body["org.matrix.msc3202.device_one_time_keys_count"] = otk;
        if (fallback.Count > 0) body["org.matrix.msc3202.device_unused_fallback_key_types"] = fallback;
        return body;
    }

    static IEnumerable<string> Strings(JsonNode? n)
        => n is JsonArray a ? a.OfType<JsonValue>().Select(x => x.TryGetValue(out string? s) ? s : null).OfType<string>() : [];

    /// <summary>{user: {device: value}}: the later value of a device replaces the earlier one.</summary>
    static void Merge(JsonObject into, JsonNode? from)
    {
        if (from is not JsonObject users) return;
        foreach (var (user, devices) in users)
        {
            if (devices is not JsonObject d) continue;
            if (into[user] is not JsonObject target) into[user] = target = new JsonObject();
            foreach (var (device, value) in d) target[device] = value?.DeepClone();
        }
    }

    public override void Dispose()
    {
        _http.Dispose();
        base.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Appservice {Id} did not take transaction {TxnId}; will retry: {Reason}")]
    static partial void LogSendFailed(ILogger log, string id, long txnId, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Appservice {Id} answered transaction {TxnId} with status {Status}; will retry")]
    static partial void LogRefused(ILogger log, string id, long txnId, int status);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Transactions to appservice {Id} stopped: {Reason}")]
    static partial void LogDrainFailed(ILogger log, string id, string reason);
}

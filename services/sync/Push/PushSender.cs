using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Http;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Conduit.Sync.Push;

/// <summary>
/// Delivers queued pushes to push gateways (spec: push-gateway-api, POST /_matrix/push/v1/notify). Each pusher has its
/// own queue, sent in order by one loop per pusher, so a slow or failing gateway holds back only its own pushers. A
/// failure (no connection, a timeout, 5xx, 429) is retried with backoff, 1 s doubling up to an hour, and a push still
/// failing after a day is dropped (Synapse's figures); any other 4xx drops that push at once. A push the user has
/// read by the time it would go (a receipt, or their own later message in the thread) is dropped unsent. A pushkey
/// the gateway names in "rejected" removes its pusher. Connections obey ip_range_denylist/ip_range_allowlist.
/// </summary>
public sealed partial class PushSender : BackgroundService
{
    public static readonly TimeSpan InitialBackoff = TimeSpan.FromSeconds(1);
    public static readonly TimeSpan MaxBackoff = TimeSpan.FromHours(1);
    public static readonly TimeSpan GiveUpAfter = TimeSpan.FromDays(1);
    static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(15);

    readonly PushStore _store;
    readonly ILogger<PushSender> _log;
    readonly HttpClient _http;
    readonly DrainLoops<Pusher, (string, string, string)> _loops;
    CancellationToken _stopping;

    public PushSender(PushStore store, GlobalConfig config, ILogger<PushSender> log)
    {
        _store = store;
        _log = log;
        _loops = new DrainLoops<Pusher, (string, string, string)>(store.PushersWithQueue, p => (p.UserId, p.AppId, p.PushKey), Drain);
        var policy = new OutboundIpPolicy(new IpRangeList(config.IpRangeDenylist, "ip_range_denylist"), new IpRangeList(config.IpRangeAllowlist, "ip_range_allowlist"), "Push gateways");
        _http = policy.CreateClient(TimeSpan.FromSeconds(10), RequestTimeout);
    }

    /// <summary>New pushes are queued.</summary>
    public void Signal() => _loops.Signal();

    protected override async Task ExecuteAsync(CancellationToken ct)
    {
        _stopping = ct;
        try { await _loops.RunAsync(ct); }
        // Stopping, also when the host is disposed without having started (the store may be closed already).
        catch (Exception) when (ct.IsCancellationRequested) { }
    }

    /// <summary>Sends the pusher's queue in order until it is empty, the pusher is gone, or the service stops.</summary>
    async Task Drain(Pusher pusher)
    {
        var backoff = InitialBackoff;
        try
        {
            while (!_stopping.IsCancellationRequested)
            {
                var items = _store.Queue(pusher, 50).ToList();
                if (items.Count == 0) return;
                foreach (var (key, item) in items)
                {
                    // The pusher may have been replaced (new data) or removed since this loop started.
                    if (_store.FindPusher(pusher.UserId, pusher.AppId, pusher.PushKey) is not { } current) return;
                    pusher = current;
                    while (true)
                    {
                        var outcome = await Send(pusher, item);
                        if (outcome == Outcome.Retry)
                        {
                            if (Ids.NowMs() - (item["ts"]?.GetValue<long>() ?? 0) > (long)GiveUpAfter.TotalMilliseconds) break;
                            await Task.Delay(backoff, _stopping);
                            backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, MaxBackoff.Ticks));
                            if (_store.FindPusher(pusher.UserId, pusher.AppId, pusher.PushKey) is null) return;
                            continue;
                        }
                        backoff = InitialBackoff;
                        break;
                    }
                    _store.Dequeue(key);
                }
            }
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested) { }
        catch (Exception e)
        {
            LogDrainFailed(_log, pusher.UserId, pusher.AppId, e.Message);
        }
        finally
        {
            // A push queued while this loop was ending: the main loop looks again.
            Signal();
        }
    }

    enum Outcome { Done, Retry }

    async Task<Outcome> Send(Pusher pusher, JsonObject item)
    {
        var kind = item["kind"]?.GetValue<string>();
        JsonObject notification;
        if (kind == "event")
        {
            var n = item["notification"]!.AsObject();
            var roomId = n["room_id"]!.GetValue<string>();
            // Read already (spec: no pushes for what the user has read): nothing to say.
            if (_store.HasRead(pusher.UserId, roomId, item["thread"]?.GetValue<string>() ?? "main", item["pos"]?.GetValue<long>() ?? 0))
                return Outcome.Done;
            notification = pusher.EventIdOnly
                ? new JsonObject { ["event_id"] = n["event_id"]?.DeepClone(), ["room_id"] = roomId, ["prio"] = n["prio"]?.DeepClone() }
                : (JsonObject)n.DeepClone();
        }
        else
            // A badge update after a receipt (as Synapse sends): counts only.
            notification = new JsonObject { ["id"] = "", ["type"] = null, ["sender"] = "" };
        notification["counts"] = new JsonObject { ["unread"] = _store.RoomsWithUnread(pusher.UserId) };
        var data = pusher.Json["data"]?.DeepClone() as JsonObject ?? [];
        // The pusher's data goes to the gateway whole, but for url (spec: POST /pushers/set, "data").
        data.Remove("url");
        notification["devices"] = new JsonArray(new JsonObject
        {
            ["app_id"] = pusher.AppId,
            ["pushkey"] = pusher.PushKey,
            ["pushkey_ts"] = pusher.PushKeyTs / 1000,
            ["data"] = data,
            ["tweaks"] = item["tweaks"]?.DeepClone() ?? new JsonObject(),
        });
        var body = new JsonObject { ["notification"] = notification }.ToJsonString();
        try
        {
            using var content = new StringContent(body, Encoding.UTF8);
            content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
            using var res = await _http.PostAsync(pusher.Url, content, _stopping);
            var code = (int)res.StatusCode;
            if (code is >= 200 and < 300)
            {
                var text = await res.Content.ReadAsStringAsync(_stopping);
                if (TryParse(text)?["rejected"] is JsonArray rejected
                    && rejected.Any(r => r is JsonValue v && v.TryGetValue(out string? k) && k == pusher.PushKey))
                {
                    LogRejected(_log, pusher.UserId, pusher.AppId);
                    _store.DeletePusher(pusher.UserId, pusher.AppId, pusher.PushKey);
                }
                return Outcome.Done;
            }
            if (code >= 500 || code == 429) return Outcome.Retry;
            LogRefused(_log, pusher.UserId, pusher.AppId, code);
            return Outcome.Done;
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException or OutboundRefusedException or OutboundResolveException && !_stopping.IsCancellationRequested)
        {
            LogSendFailed(_log, pusher.UserId, pusher.AppId, e.Message);
            return Outcome.Retry;
        }
    }

    static JsonNode? TryParse(string text)
    {
        try { return JsonNode.Parse(text); } catch (System.Text.Json.JsonException) { return null; }
    }

    public override void Dispose()
    {
        _http.Dispose();
        base.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Push to a gateway failed (user {UserId}, app {AppId}); will retry: {Reason}")]
    static partial void LogSendFailed(ILogger log, string userId, string appId, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "A push gateway refused a push with status {Status} (user {UserId}, app {AppId}); dropped")]
    static partial void LogRefused(ILogger log, string userId, string appId, int status);

    [LoggerMessage(Level = LogLevel.Information, Message = "A push gateway rejected the pushkey of user {UserId}, app {AppId}; pusher removed")]
    static partial void LogRejected(ILogger log, string userId, string appId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Push delivery stopped for user {UserId}, app {AppId}: {Reason}")]
    static partial void LogDrainFailed(ILogger log, string userId, string appId, string reason);
}

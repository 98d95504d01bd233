using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Http;
using Conduit.Common.Routing;
using Conduit.Protos.Rooms;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Conduit.Sync.Push;

/// <summary>
/// Pushers and the notifications list (spec: client-server-api, "Push Notifications", "Client behaviour"):
/// GET /pushers, POST /pushers/set, GET /notifications.
/// </summary>
public sealed class PushEndpoints(PushStore store, PushSender sender, Rooms.RoomsClient rooms)
{
    const int MaxAppIdLength = 64, MaxPushKeyBytes = 512;
    /// <summary>The path a pusher's URL must have (spec: "data.url": "MUST be an HTTPS URL with a path of
    /// /_matrix/push/v1/notify"; http is accepted, as Synapse does, for gateways on a private network).</summary>
    const string NotifyPath = "/_matrix/push/v1/notify";

    public void Map(IEndpointRouteBuilder app)
    {
        app.Map(RouteTable.Pushers, GetPushers);
        app.Map(RouteTable.SetPusher, SetPusher);
        app.Map(RouteTable.Notifications, GetNotifications);
    }

    async Task GetPushers(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var list = new JsonArray();
        foreach (var p in store.PushersOf(c.UserId))
        {
            var o = (JsonObject)p.Json.DeepClone();
            o.Remove("pushkey_ts");
            o.Remove("device_id");
            list.Add((JsonNode)o);
        }
        await ctx.Response.WriteJsonAsync(new JsonObject { ["pushers"] = list });
    }

    async Task SetPusher(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var body = await ctx.Request.ReadJsonObjectAsync();
        var appId = body.ReqString("app_id");
        var pushKey = body.ReqString("pushkey");
        if (!body.ContainsKey("kind")) throw Err.MissingParam("Missing 'kind'");
        var kind = body.OptString("kind");
        if (appId.Length is 0 or > MaxAppIdLength) throw Err.InvalidParam($"app_id must be 1 to {MaxAppIdLength} characters");
        if (pushKey.Length == 0 || Encoding.UTF8.GetByteCount(pushKey) > MaxPushKeyBytes) throw Err.InvalidParam($"pushkey must be 1 to {MaxPushKeyBytes} bytes");
        if (kind is null)
        {
            // kind null deletes the pusher; deleting one that does not exist is not an error (as Synapse).
            store.DeletePusher(c.UserId, appId, pushKey);
            await ctx.Response.WriteJsonAsync(new JsonObject());
            return;
        }
        var missing = new[] { "app_display_name", "device_display_name", "lang", "data" }.Where(k => body[k] is null).ToList();
        if (missing.Count > 0) throw Err.MissingParam("Missing parameters: " + string.Join(", ", missing));
        var appName = body.ReqString("app_display_name");
        var deviceName = body.ReqString("device_display_name");
        var lang = body.ReqString("lang");
        var data = body.OptObject("data")!;
        var profileTag = body.OptString("profile_tag");
        var append = body.OptBool("append") ?? false;
        switch (kind)
        {
            case "http":
                var url = data.OptString("url") ?? throw Err.MissingParam("data.url is required for an http pusher");
                if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || uri.Scheme is not ("https" or "http") || uri.Host.Length == 0 || uri.UserInfo.Length > 0)
                    throw Err.InvalidParam("data.url must be an absolute https URL");
                if (uri.AbsolutePath != NotifyPath) throw Err.InvalidParam($"data.url must have the path {NotifyPath}");
                if (data.OptString("format") is { } format && format != "event_id_only") throw Err.InvalidParam("data.format must be event_id_only when given");
                break;
            case "email":
                // Email pushers need a validated email address, which this server never has (no 3PID verification).
                throw new MatrixException("M_THREEPID_NOT_FOUND", 400, "Email pushers need a verified email address, which this server does not support");
            default:
                throw Err.InvalidParam("kind must be http, email or null");
        }
        var json = new JsonObject
        {
            ["pushkey"] = pushKey, ["kind"] = kind, ["app_id"] = appId, ["app_display_name"] = appName,
            ["device_display_name"] = deviceName, ["lang"] = lang, ["data"] = data.DeepClone(),
        };
        if (profileTag is not null) json["profile_tag"] = profileTag;
        // The device that set it: its logout or deletion removes the pusher (as Synapse ties pushers to access tokens).
        if (c.DeviceId is { Length: > 0 } device) json["device_id"] = device;
        // pushkey_ts: when the pushkey was first set; an update of the same pusher keeps it.
        json["pushkey_ts"] = store.FindPusher(c.UserId, appId, pushKey)?.PushKeyTs is long ts and > 0 ? ts : Ids.NowMs();
        store.SetPusher(new Pusher(c.UserId, appId, pushKey, json), append);
        await ctx.Response.WriteJsonAsync(new JsonObject());
    }

    // ---- GET /notifications: newest first; `from` is the position of the last one returned (next_token).

    async Task GetNotifications(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var limit = 20L;
        if (ctx.Request.Query("limit") is { } l && (!long.TryParse(l, NumberStyles.None, CultureInfo.InvariantCulture, out limit) || limit < 0))
            throw Err.InvalidParam("limit must be a non-negative integer");
        limit = Math.Min(limit, 100);
        var before = long.MaxValue;
        if (ctx.Request.Query("from") is { Length: > 0 } from && (!long.TryParse(from, NumberStyles.None, CultureInfo.InvariantCulture, out before) || before <= 0))
            throw Err.InvalidParam("Invalid from token");
        var onlyHighlight = ctx.Request.Query("only") is { } only && only.Contains("highlight", StringComparison.Ordinal);
        var picked = new List<(long Pos, JsonObject Record)>();
        long? next = null;
        foreach (var (pos, record) in store.Notifications(c.UserId, before))
        {
            if (onlyHighlight && record["highlight"]?.GetValue<bool>() != true) continue;
            if (picked.Count == limit)
            {
                next = picked.Count > 0 ? picked[^1].Pos : null;
                break;
            }
            picked.Add((pos, record));
        }
        var events = picked.Count == 0 ? [] : (await rooms.ClientEventsAsync(new ClientEventsRequest
        {
            UserId = c.UserId, EventIds = { picked.Select(p => p.Record["event_id"]!.GetValue<string>()) },
        }, cancellationToken: ctx.RequestAborted)).Events.ToList();
        var list = new JsonArray();
        for (var i = 0; i < picked.Count; i++)
        {
            if (events[i].Length == 0 || JsonNode.Parse(events[i]) is not JsonObject ev) continue;
            var r = picked[i].Record;
            var roomId = r["room_id"]!.GetValue<string>();
            var n = new JsonObject
            {
                ["actions"] = r["actions"]?.DeepClone() ?? new JsonArray(),
                ["event"] = ev,
                ["read"] = store.HasRead(c.UserId, roomId, r["thread"]?.GetValue<string>() ?? "main", picked[i].Pos),
                ["room_id"] = roomId,
                ["ts"] = r["ts"]?.DeepClone(),
            };
            list.Add((JsonNode)n);
        }
        var res = new JsonObject { ["notifications"] = list };
        if (next is long t) res["next_token"] = t.ToString(CultureInfo.InvariantCulture);
        await ctx.Response.WriteJsonAsync(res);
    }

    /// <summary>After a receipt: a user with pushers gets a badge update (counts only), as Synapse sends.</summary>
    public void BadgeUpdate(string userId)
    {
        var pushers = store.PushersOf(userId);
        if (pushers.Count == 0) return;
        foreach (var p in pushers) store.EnqueueNow(p, new JsonObject { ["kind"] = "badge", ["ts"] = Ids.NowMs() });
        sender.Signal();
    }
}

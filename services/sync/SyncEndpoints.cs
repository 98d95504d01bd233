using System.Runtime.CompilerServices;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Events;
using Conduit.Common.Http;
using Conduit.Common.Routing;
using Conduit.Protos.Keys;
using Conduit.Protos.Rooms;
using Conduit.Sync.PushRules;
using Grpc.Core;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Conduit.Sync;

/// <summary>The sync service's Matrix endpoints: /sync, filters, account data, push rules.</summary>
public sealed class SyncEndpoints(AccountDataStore data, ReceiptStore receipts, TypingState typing, PresenceState presence, Conduit.Common.Config.GlobalConfig config, SyncNotifier notifier, Rooms.RoomsClient rooms, Keys.KeysClient keys,
    Push.PushStore pushStore, Push.PushWorker pushWorker, Push.PushEndpoints pushEndpoints, FederatedEphemeral federated, Appservices.AppserviceEphemeral appservices,
    System.Diagnostics.Metrics.IMeterFactory? meters = null)
{
    const int MaxTimeoutMs = 60_000;

    /// <summary>Long-polls waiting for news now; read by the conduit_sync_waiting gauge when metrics are scraped.</summary>
    readonly StrongBox<int> _waiting = WaitingGauge(meters);

    static StrongBox<int> WaitingGauge(System.Diagnostics.Metrics.IMeterFactory? meters)
    {
        var waiting = new StrongBox<int>();
        Common.Metrics.ConduitMeters.Create(meters, Common.Metrics.ConduitMeters.Sync)
            .CreateObservableGauge("conduit.sync.waiting", () => Volatile.Read(ref waiting.Value), null, "/sync long-polls waiting for news.");
        return waiting;
    }

    public void Map(IEndpointRouteBuilder app)
    {
        app.Map(RouteTable.Sync, Sync);
        app.Map(RouteTable.CreateFilter, CreateFilter);
        app.Map(RouteTable.GetFilter, GetFilter);
        app.Map(RouteTable.AccountData, GlobalAccountData);
        app.Map(RouteTable.RoomAccountData, RoomAccountData);
        app.Map(RouteTable.PushRules, PushRules);
        new EphemeralEndpoints(data, receipts, typing, notifier, rooms, pushStore, pushEndpoints, federated, appservices).Map(app);
        pushEndpoints.Map(app);
    }

    /// <summary>The user IDs in the user's m.ignored_user_list ({"ignored_users": {"@user:server": {}}}); anything
    /// malformed in it is skipped.</summary>
    internal static IEnumerable<string> IgnoredUsers(AccountDataStore data, string userId)
        => data.Get(userId, "", "m.ignored_user_list")?["ignored_users"] is JsonObject users
            ? users.Select(p => p.Key).Where(Conduit.Common.Ids.IsUserId)
            : [];

    static Caller Self(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        if (ctx.Route("userId") != c.UserId) throw Err.Forbidden("You may only access your own data");
        return c;
    }

    // ---- /sync (spec: client-server-api, "Syncing")

    async Task Sync(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var since = SyncToken.Parse(ctx.Request.Query("since"));
        var fullState = ctx.Request.Query("full_state") == "true";
        var timeout = 0;
        if (ctx.Request.Query("timeout") is { } ts && (!int.TryParse(ts, out timeout) || timeout < 0)) throw Err.InvalidParam("Invalid timeout");
        timeout = Math.Min(timeout, MaxTimeoutMs);
        var setPresence = ctx.Request.Query("set_presence");
        if (setPresence is not (null or "online" or "offline" or "unavailable")) throw Err.InvalidParam("Invalid set_presence");
        // The filter is parsed once, here; the rooms service gets its room part typed.
        var filter = ResolveFilter(c.UserId, ctx.Request.Query("filter"));
        var roomFilter = filter is null ? null : SyncRoomsFilter.From(filter);
        var s = since ?? new SyncToken(0, 0);
        var ct = ctx.RequestAborted;
        // The sync marks the user as syncing (and active, unless it says otherwise) before anything is read, so its
        // own token already covers the change (spec: "set_presence"; "offline" leaves presence alone).
        if (config.AllowPresence) presence.Synced(c.UserId, setPresence ?? PresenceStates.Online);
        // Only an incremental sync without full_state waits for news; the others answer at once.
        var canWait = since is not null && !fullState;
        var deadline = Environment.TickCount64 + timeout;
        try
        {
            while (true)
            {
                // Take the wake-up before reading, so an event landing during the read still wakes us.
                var wake = notifier.NextWake(c.UserId);
                var mayWait = canWait && deadline - Environment.TickCount64 > 0;
                var accountData = SyncAccountData.Read(data, c.UserId, s.AccountData, since is null, filter);
                var ephemeral = SyncEphemeral.Read(receipts, typing, c.UserId, since, filter);
                var presenceNews = await SyncPresence.Read(presence, rooms, config.AllowPresence, c.UserId, since, filter, ct);
                var e2ee = await keys.SyncKeysAsync(new SyncKeysRequest
                {
                    UserId = c.UserId, DeviceId = c.DeviceId, Since = s.Keys, Incremental = since is not null,
                }, cancellationToken: ct);
                var toDevice = e2ee.ToDevice.Count > 0;
                // The notifier's position may trail a write the client just made (the advance is still on its way),
                // so it may only save the rooms call when this request will wait for a wake-up anyway. Per-room
                // account data needs the rooms call too: it shows only in rooms the user is joined to, and so do
                // device-list changes: whether they concern this user depends on shared rooms.
                // Receipts and typing likewise: whether their rooms are joined rooms is for rooms to say.
                if (mayWait && s.Rooms >= notifier.RoomsPosition && notifier.RoomsPosition >= 0 && accountData.Rooms.Count == 0
                    && e2ee.ChangedUserIds.Count == 0 && !ephemeral.MayHaveNews)
                {
                    if (accountData.Global.Count > 0 || toDevice || presenceNews.Events.Count > 0)
                    {
                        await Respond(ctx, new SyncRoomsHead { Position = s.Rooms }, null, null, accountData, e2ee, null, ephemeral, presenceNews, since is not null, c.UserId, filter);
                        return;
                    }
                }
                else
                {
                    var request = new SyncRoomsRequest
                    {
                        UserId = c.UserId, DeviceId = c.DeviceId, Since = s.Rooms, FullState = fullState, Filter = roomFilter,
                        WantJoinedRoomIds = accountData.Rooms.Count > 0 || ephemeral.MayHaveNews,
                    };
                    request.IgnoredUsers.AddRange(IgnoredUsers(data, c.UserId));
                    using var call = rooms.SyncRooms(request, cancellationToken: ct);
                    var parts = call.ResponseStream;
                    // Read before the response starts, so a failing rooms service is still a Matrix error.
                    if (!await parts.MoveNext(ct) || parts.Current.Head is not { } head)
                        throw new InvalidOperationException("SyncRooms stream without a head");
                    // Device lists (incremental syncs only, as Synapse): the changed users this user shares a room
                    // with, and who started or stopped sharing one, over the same room positions as the rooms part.
                    DeviceListDeltaReply? lists = null;
                    if (since is not null && (head.Position > s.Rooms || e2ee.ChangedUserIds.Count > 0))
                        lists = await rooms.DeviceListDeltaAsync(new DeviceListDeltaRequest
                        {
                            UserId = c.UserId, From = s.Rooms, To = head.Position, CandidateUserIds = { e2ee.ChangedUserIds },
                        }, cancellationToken: ct);
                    if (!mayWait)
                    {
                        // This response will not wait: it is written as it comes, whatever its size.
                        await Respond(ctx, head, null, parts, accountData, e2ee, lists, ephemeral, presenceNews, since is not null, c.UserId, filter);
                        return;
                    }
                    // It waits unless there is news: read until the first room (incremental responses are small, and
                    // from that room on it is written as it comes) or the end of the stream.
                    var hasContent = accountData.HasContentFor(head.JoinedRoomIds) || toDevice || lists is { Changed.Count: > 0 } or { Left.Count: > 0 }
                        || ephemeral.RoomsWithNews(head.JoinedRoomIds).Any() || presenceNews.Events.Count > 0;
                    SyncRoomsPart? first = null;
                    while (!hasContent && await parts.MoveNext(ct))
                        if (parts.Current.Rooms.Count > 0) (first, hasContent) = (parts.Current, true);
                    if (hasContent || deadline - Environment.TickCount64 <= 0)
                    {
                        await Respond(ctx, head, first, hasContent ? parts : null, accountData, e2ee, lists, ephemeral, presenceNews, since is not null, c.UserId, filter);
                        return;
                    }
                }
                var remaining = deadline - Environment.TickCount64;
                // Time is up after a read that trusted the notifier: the next turn reads for real, without waiting.
                if (remaining <= 0) continue;
                Interlocked.Increment(ref _waiting.Value);
                try { await Task.WhenAny(wake, Task.Delay(TimeSpan.FromMilliseconds(remaining), ct)); }
                finally { Interlocked.Decrement(ref _waiting.Value); }
                ct.ThrowIfCancellationRequested();
            }
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.Cancelled && ct.IsCancellationRequested)
        {
            // The client went away while the rooms part was streaming.
            throw new OperationCanceledException(ct);
        }
    }

    /// <summary>
    /// Writes the response as the rooms stream delivers it (after <paramref name="first"/>, a part already read),
    /// flushing after each part: a large initial sync is never held whole in memory. The status goes out first, so
    /// a failure from here on aborts the connection (the client retries) instead of mixing an error into the body.
    /// </summary>
    async Task Respond(HttpContext ctx, SyncRoomsHead head, SyncRoomsPart? first, IAsyncStreamReader<SyncRoomsPart>? rest,
        SyncAccountData accountData, SyncKeysReply e2ee, DeviceListDeltaReply? lists, SyncEphemeral ephemeral, SyncPresence presenceNews, bool incremental,
        string userId, Filter? filter)
    {
        var ct = ctx.RequestAborted;
        // The counts of the events this response carries are in it (spec: "Receiving notifications").
        await pushWorker.WaitForAsync(head.Position, ct);
        var res = ctx.Response;
        res.StatusCode = 200;
        res.ContentType = "application/json";
        await res.StartAsync(ct);
        var body = res.BodyWriter;
        using var writer = new SyncResponseWriter(body, head, accountData, e2ee, lists, incremental, ephemeral, presenceNews,
            roomId => pushStore.Counts(userId, roomId), filter?.Room?.Timeline?.UnreadThreadNotifications == true);
        if (first is not null) writer.Write(first);
        if (rest is not null)
            while (await rest.MoveNext(ct))
            {
                writer.Write(rest.Current);
                await body.FlushAsync(ct);
            }
        writer.Finish();
        await body.FlushAsync(ct);
    }

    Filter? ResolveFilter(string userId, string? param)
    {
        if (string.IsNullOrEmpty(param)) return null;
        if (param.TrimStart().StartsWith('{')) return Filter.ParseText(param);
        return Filter.Parse(data.GetFilter(userId, param) ?? throw Err.NotFound("Unknown filter"));
    }

    // ---- filters (spec: client-server-api, "Filtering")

    async Task CreateFilter(HttpContext ctx)
    {
        var c = Self(ctx);
        var body = await ctx.Request.ReadJsonObjectAsync();
        Filter.Parse(body);
        var id = data.PutFilter(c.UserId, body);
        await ctx.Response.WriteJsonAsync(new JsonObject { ["filter_id"] = id });
    }

    async Task GetFilter(HttpContext ctx)
    {
        var c = Self(ctx);
        var f = data.GetFilter(c.UserId, ctx.Route("filterId")) ?? throw Err.NotFound("Unknown filter");
        await ctx.Response.WriteJsonAsync(f);
    }

    // ---- account data (spec: client-server-api, "Client Config")

    internal static void RefuseServerOwned(string type)
    {
        // These types are managed by the server through their own APIs.
        if (type is "m.fully_read" or "m.push_rules")
            throw new Conduit.Common.MatrixException("M_BAD_JSON", 405, $"{type} cannot be set through the account data API");
    }

    async Task GlobalAccountData(HttpContext ctx)
    {
        var c = Self(ctx);
        var type = ctx.Route("type");
        if (HttpMethods.IsGet(ctx.Request.Method))
        {
            var content = data.Get(c.UserId, "", type) ?? (type == "m.push_rules" ? DefaultPushRules.For(c.UserId) : null) ?? throw Err.NotFound("No account data of that type");
            await ctx.Response.WriteJsonAsync(content);
            return;
        }
        RefuseServerOwned(type);
        var body = await ctx.Request.ReadJsonObjectAsync();
        data.Put(c.UserId, "", type, body);
        if (type == "m.ignored_user_list") pushWorker.Invalidate(c.UserId);
        notifier.Wake(c.UserId);
        await ctx.Response.WriteJsonAsync(new JsonObject());
    }

    async Task RoomAccountData(HttpContext ctx)
    {
        var c = Self(ctx);
        var roomId = ctx.Route("roomId");
        var type = ctx.Route("type");
        if (!Conduit.Common.Ids.IsRoomId(roomId)) throw Err.InvalidParam("Invalid room ID");
        if (HttpMethods.IsGet(ctx.Request.Method))
        {
            await ctx.Response.WriteJsonAsync(data.Get(c.UserId, roomId, type) ?? throw Err.NotFound("No account data of that type"));
            return;
        }
        RefuseServerOwned(type);
        var body = await ctx.Request.ReadJsonObjectAsync();
        var m = await rooms.GetMembershipAsync(new GetMembershipRequest { UserId = c.UserId, RoomId = roomId }, cancellationToken: ctx.RequestAborted);
        if (!m.RoomExists || m.Membership.Length == 0) throw Err.Forbidden("You are not a member of this room");
        data.Put(c.UserId, roomId, type, body);
        notifier.Wake(c.UserId);
        await ctx.Response.WriteJsonAsync(new JsonObject());
    }

    // ---- push rules (spec: client-server-api, "Push Rules: API"). The ruleset lives in the m.push_rules account
    // data, so a change reaches the user's clients through /sync like any account data.

    /// <summary>
    /// The segments after /pushrules/, each percent-decoded on its own from the request target as the client sent it:
    /// a rule ID may hold an encoded '/' (or '%2F' itself), which the decoded path could no longer tell apart.
    /// </summary>
    static string[] PushRulePath(HttpContext ctx)
    {
        var raw = ctx.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpRequestFeature>()?.RawTarget ?? ctx.Request.Path.Value ?? "";
        var q = raw.IndexOf('?');
        if (q >= 0) raw = raw[..q];
        const string marker = "/pushrules/";
        var at = raw.IndexOf(marker, StringComparison.Ordinal);
        if (at < 0) return ctx.Route("rest").Split('/', StringSplitOptions.RemoveEmptyEntries);
        return [.. raw[(at + marker.Length)..].Split('/', StringSplitOptions.RemoveEmptyEntries).Select(Uri.UnescapeDataString)];
    }

    async Task PushRules(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var ruleset = data.Get(c.UserId, "", "m.push_rules") ?? DefaultPushRules.For(c.UserId);
        var path = PushRulePath(ctx);
        if (HttpMethods.IsGet(ctx.Request.Method))
        {
            var node = path.Length == 0 ? ruleset : DefaultPushRules.Select(ruleset, path) ?? throw Err.NotFound("Unknown push rule");
            await ctx.Response.WriteJsonAsync(node.DeepClone());
            return;
        }
        if (path.Length is < 3 or > 4 || path[0] != "global") throw Err.Unrecognized(400, "Push rules are changed at /pushrules/global/{kind}/{ruleId}");
        var (kind, ruleId) = (path[1], path[2]);
        var body = HttpMethods.IsPut(ctx.Request.Method) ? await ctx.Request.ReadJsonObjectAsync() : new JsonObject();
        switch (ctx.Request.Method, path.Length == 4 ? path[3] : null)
        {
            case ("PUT", null):
                PushRuleEditor.Put(ruleset, kind, ruleId, body, ctx.Request.Query("before"), ctx.Request.Query("after"));
                break;
            case ("DELETE", null):
                PushRuleEditor.Delete(ruleset, kind, ruleId);
                break;
            case ("PUT", "enabled"):
                PushRuleEditor.SetEnabled(ruleset, kind, ruleId, body.OptBool("enabled") ?? throw Err.MissingParam("Missing 'enabled'"));
                break;
            case ("PUT", "actions"):
                PushRuleEditor.SetActions(ruleset, kind, ruleId, body.OptArray("actions") ?? throw Err.MissingParam("Missing 'actions'"));
                break;
            default:
                throw Err.Unrecognized(405, "Unsupported push rule request");
        }
        data.Put(c.UserId, "", "m.push_rules", ruleset);
        pushWorker.Invalidate(c.UserId);
        notifier.Wake(c.UserId);
        await ctx.Response.WriteJsonAsync(new JsonObject());
    }
}

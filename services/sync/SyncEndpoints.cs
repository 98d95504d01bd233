using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Events;
using Conduit.Common.Http;
using Conduit.Common.Routing;
using Conduit.Protos.Rooms;
using Conduit.Sync.PushRules;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Conduit.Sync;

/// <summary>The sync service's Matrix endpoints: /sync, filters, account data, push rules.</summary>
public sealed class SyncEndpoints(AccountDataStore data, SyncNotifier notifier, Rooms.RoomsClient rooms)
{
    const int MaxTimeoutMs = 60_000;

    public void Map(IEndpointRouteBuilder app)
    {
        app.Map(RouteTable.Sync, Sync);
        app.Map(RouteTable.CreateFilter, CreateFilter);
        app.Map(RouteTable.GetFilter, GetFilter);
        app.Map(RouteTable.AccountData, GlobalAccountData);
        app.Map(RouteTable.RoomAccountData, RoomAccountData);
        app.Map(RouteTable.PushRules, PushRules);
    }

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
        var (filterJson, filter) = ResolveFilter(c.UserId, ctx.Request.Query("filter"));

        var deadline = Environment.TickCount64 + timeout;
        while (true)
        {
            // Take the wake-up before reading, so an event landing during the read still wakes us.
            var wake = notifier.NextWake(c.UserId);
            // The notifier's position may trail a write the client just made (the advance is still on its way),
            // so it may only save the rooms call when this request will wait for a wake-up anyway.
            var mayWait = deadline - Environment.TickCount64 > 0;
            var response = await Compute(c, since, fullState, filterJson, filter, mayWait, ctx.RequestAborted);
            var remaining = deadline - Environment.TickCount64;
            if (remaining <= 0 && mayWait && !HasContent(response))
                response = await Compute(c, since, fullState, filterJson, filter, mayWait: false, ctx.RequestAborted);
            if (since is null || fullState || HasContent(response) || remaining <= 0)
            {
                await ctx.Response.WriteJsonAsync(response);
                return;
            }
            await Task.WhenAny(wake, Task.Delay(TimeSpan.FromMilliseconds(remaining), ctx.RequestAborted));
            ctx.RequestAborted.ThrowIfCancellationRequested();
        }
    }

    (string Json, Filter? Filter) ResolveFilter(string userId, string? param)
    {
        if (string.IsNullOrEmpty(param)) return ("", null);
        JsonObject? o;
        if (param.TrimStart().StartsWith('{')) o = RequestJson.ParseObject(param, "filter");
        else o = data.GetFilter(userId, param) ?? throw Err.NotFound("Unknown filter");
        return (o.ToJsonString(), Filter.Parse(o));
    }

    async Task<JsonObject> Compute(Caller c, SyncToken? since, bool fullState, string filterJson, Filter? filter, bool mayWait, CancellationToken ct)
    {
        var s = since ?? new SyncToken(0, 0);
        JsonObject roomsJson;
        long roomsPos;
        IReadOnlyList<string> joinedRooms;
        if (mayWait && since is not null && !fullState && s.Rooms >= notifier.RoomsPosition && notifier.RoomsPosition >= 0)
        {
            // Nothing new in the room stream since this token: no need to ask the rooms service.
            roomsJson = new JsonObject { ["join"] = new JsonObject(), ["invite"] = new JsonObject(), ["leave"] = new JsonObject() };
            roomsPos = s.Rooms;
            joinedRooms = [];
        }
        else
        {
            var reply = await rooms.SyncRoomsAsync(new SyncRoomsRequest
            {
                UserId = c.UserId, DeviceId = c.DeviceId, Since = s.Rooms, FullState = fullState, FilterJson = filterJson,
            }, cancellationToken: ct);
            roomsJson = JsonLimits.ParseInternal(reply.RoomsJson)!.AsObject();
            roomsPos = reply.Position;
            joinedRooms = reply.JoinedRoomIds;
        }

        var adPos = data.Position;
        var global = new JsonArray();
        var accountFilter = filter?.AccountData;
        var roomAccountFilter = filter?.Room?.AccountData;
        var sawPushRules = false;
        foreach (var e in data.ChangedSince(c.UserId, s.AccountData))
        {
            if (e.Pos > adPos) continue;
            var ev = new JsonObject { ["type"] = e.Type, ["content"] = e.Content.DeepClone() };
            if (e.RoomId.Length == 0)
            {
                if (e.Type == "m.push_rules") sawPushRules = true;
                if (accountFilter is null || accountFilter.Matches(e.Type, c.UserId)) global.Add((JsonNode)ev);
                continue;
            }
            if (roomAccountFilter is not null && !roomAccountFilter.Matches(e.Type, c.UserId, e.RoomId)) continue;
            var join = roomsJson["join"]!.AsObject();
            if (join[e.RoomId] is not JsonObject room)
            {
                if (since is null || !joinedRooms.Contains(e.RoomId)) continue;
                join[e.RoomId] = room = new JsonObject
                {
                    ["timeline"] = new JsonObject { ["events"] = new JsonArray(), ["limited"] = false },
                    ["state"] = new JsonObject { ["events"] = new JsonArray() },
                };
            }
            if (room["account_data"] is not JsonObject ad) room["account_data"] = ad = new JsonObject { ["events"] = new JsonArray() };
            ad["events"]!.AsArray().Add((JsonNode)ev);
        }
        // Clients expect their push rules in the first sync; until a user changes them they are the defaults.
        if (since is null && !sawPushRules && (accountFilter is null || accountFilter.Matches("m.push_rules", c.UserId)))
            global.Add((JsonNode)new JsonObject { ["type"] = "m.push_rules", ["content"] = DefaultPushRules.For(c.UserId) });

        return new JsonObject
        {
            ["next_batch"] = new SyncToken(roomsPos, adPos).ToString(),
            ["rooms"] = roomsJson,
            ["account_data"] = new JsonObject { ["events"] = global },
            ["presence"] = new JsonObject { ["events"] = new JsonArray() },
            ["to_device"] = new JsonObject { ["events"] = new JsonArray() },
            ["device_lists"] = new JsonObject { ["changed"] = new JsonArray(), ["left"] = new JsonArray() },
            ["device_one_time_keys_count"] = new JsonObject(),
        };
    }

    static bool HasContent(JsonObject r)
    {
        var rooms = r["rooms"]!.AsObject();
        foreach (var (_, section) in rooms)
            if (section is JsonObject o && o.Count > 0) return true;
        return r["account_data"]!["events"]!.AsArray().Count > 0;
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

    static void RefuseServerOwned(string type)
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

    async Task PushRules(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var ruleset = data.Get(c.UserId, "", "m.push_rules") ?? DefaultPushRules.For(c.UserId);
        var path = ctx.Route("rest").Split('/', StringSplitOptions.RemoveEmptyEntries);
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
        notifier.Wake(c.UserId);
        await ctx.Response.WriteJsonAsync(new JsonObject());
    }
}

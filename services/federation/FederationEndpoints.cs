using System.Collections.Concurrent;
using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Http;
using Conduit.Common.Routing;
using Conduit.Protos.Rooms;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Logging;

namespace Conduit.Federation;

/// <summary>
/// The room endpoints of the server-server API. Each request is authenticated here (X-Matrix, <see cref="XMatrixVerifier"/>)
/// and handed to the rooms service with its verified origin (protos/rooms.proto, Federate), which answers with the
/// spec's status and body; the rooms service applies server ACLs and history visibility for servers.
/// </summary>
public sealed partial class FederationEndpoints(XMatrixVerifier verifier, Rooms.RoomsClient rooms, Protos.Sync.Sync.SyncClient sync, Protos.Keys.Keys.KeysClient keys,
    Conduit.Common.Config.GlobalConfig config, ILogger<FederationEndpoints> log)
{
    /// <summary>The spec's limits on one transaction (server-server-api, "Transactions").</summary>
    public const int MaxPdus = 50, MaxEdus = 100;

    /// <summary>Answers to the latest transactions, by origin and ID: a retried transaction gets the same answer without
    /// being processed again (Synapse keeps them for 30 minutes).</summary>
    readonly ConcurrentDictionary<(string Origin, string TxnId), (JsonObject Reply, long At)> _done = new();
    /// <summary>One transaction at a time per origin (a sender keeps one in flight per destination; Synapse answers a
    /// second concurrent one with 429).</summary>
    readonly ConcurrentDictionary<string, SemaphoreSlim> _origins = new(StringComparer.Ordinal);
    static readonly long TxnCacheMs = (long)TimeSpan.FromMinutes(30).TotalMilliseconds;

    /// <summary>Called with the origin of every authenticated request (the outbound queue stops backing off from it).</summary>
    public event Action<string>? Contacted;

    public void Map(IEndpointRouteBuilder app)
    {
        app.Map(RouteTable.FedSend, Authenticated(Send));
        Room(app, RouteTable.FedMakeJoin, "make_join");
        Room(app, RouteTable.FedSendJoin, "send_join");
        Room(app, RouteTable.FedMakeLeave, "make_leave");
        Room(app, RouteTable.FedSendLeave, "send_leave");
        Room(app, RouteTable.FedMakeKnock, "make_knock");
        Room(app, RouteTable.FedSendKnock, "send_knock");
        Room(app, RouteTable.FedInvite, "invite");
        Room(app, RouteTable.FedEvent, "event");
        Room(app, RouteTable.FedState, "state");
        Room(app, RouteTable.FedStateIds, "state_ids");
        Room(app, RouteTable.FedEventAuth, "event_auth");
        Room(app, RouteTable.FedBackfill, "backfill");
        Room(app, RouteTable.FedMissingEvents, "get_missing_events");
        Room(app, RouteTable.FedTimestampToEvent, "timestamp_to_event");
        Room(app, RouteTable.FedQueryDirectory, "query_directory");
        Room(app, RouteTable.FedPublicRooms, "public_rooms");
        Room(app, RouteTable.FedHierarchy, "hierarchy");
        Room(app, RouteTable.FedExchangeThirdPartyInvite, "exchange_third_party_invite");
        // Identity servers have no server keys: /3pid/onbind is the one room endpoint without X-Matrix (spec:
        // server-server-api, "Third-party invites"); what it asks for is checked against the rooms' own keys.
        app.Map(RouteTable.FedThirdPartyOnBind, ctx => Forward(ctx, "", "onbind"));
        app.Map(RouteTable.FedQueryProfile, Authenticated(QueryProfile));
        KeysRoute(app, RouteTable.FedUserDevices, "user_devices");
        KeysRoute(app, RouteTable.FedUserKeysQuery, "user_keys_query");
        KeysRoute(app, RouteTable.FedUserKeysClaim, "user_keys_claim");
    }

    RequestDelegate Authenticated(Func<HttpContext, string, Task> handler) => verifier.Authenticated(async (ctx, origin) =>
    {
        Contacted?.Invoke(origin);
        await handler(ctx, origin);
    });

    void Room(IEndpointRouteBuilder app, MatrixRoute route, string operation) => app.Map(route, Authenticated((ctx, origin) => Forward(ctx, origin, operation)));

    /// <summary>Hands the request to the rooms service (Federate) and writes its answer.</summary>
    async Task Forward(HttpContext ctx, string origin, string operation)
    {
        var request = new FederateRequest
        {
            Origin = origin,
            Operation = operation,
            RoomId = RouteValue(ctx, "roomId"),
            EventId = RouteValue(ctx, "eventId"),
            UserId = RouteValue(ctx, "userId"),
        };
        if (ctx.Request.ContentLength is > 0 || ctx.Request.Method is "PUT" or "POST")
        {
            var body = await ctx.Request.ReadJsonObjectAsync();
            request.Body = body.ToJsonString();
        }
        foreach (var (k, v) in ctx.Request.Query) request.Query[k] = string.Join(',', v.Where(s => s is not null));
        var reply = await rooms.FederateAsync(request, cancellationToken: ctx.RequestAborted);
        await WriteReply(ctx, reply);
    }

    /// <summary>GET /query/profile (spec: server-server-api, "Query Profile"): displayname and avatar_url of one of our users, or one of them with ?field=.</summary>
    async Task QueryProfile(HttpContext ctx, string origin)
    {
        var userId = ctx.Request.Query["user_id"].ToString();
        if (userId.Length == 0) throw Err.MissingParam("user_id is required");
        if (!Ids.IsUserId(userId) || Ids.ServerOf(userId) != config.ServerName) throw Err.NotFound("Profile not found");
        var field = ctx.Request.Query["field"].ToString();
        if (field.Length > 0 && field is not ("displayname" or "avatar_url")) throw Err.InvalidParam("field must be displayname or avatar_url");
        Protos.Keys.ProfileReply p;
        try { p = await keys.GetProfileAsync(new Protos.Keys.GetProfileRequest { UserId = userId }, cancellationToken: ctx.RequestAborted); }
        catch (MatrixException e) when (e.Status == 404) { throw Err.NotFound("Profile not found"); }
        if (p.Deactivated) throw Err.NotFound("Profile not found");
        var answer = new JsonObject();
        if (p.HasDisplayname && field is "" or "displayname") answer["displayname"] = p.Displayname;
        if (p.HasAvatarUrl && field is "" or "avatar_url") answer["avatar_url"] = p.AvatarUrl;
        await ctx.Response.WriteJsonAsync(answer);
    }

    /// <summary>Devices and keys of our users, answered by the keys service.</summary>
    void KeysRoute(IEndpointRouteBuilder app, MatrixRoute route, string operation) => app.Map(route, Authenticated(async (ctx, origin) =>
    {
        var request = new Protos.Keys.KeysFederateRequest { Origin = origin, Operation = operation, UserId = RouteValue(ctx, "userId") };
        if (ctx.Request.Method is "POST") request.Body = (await ctx.Request.ReadJsonObjectAsync()).ToJsonString();
        var reply = await keys.FederateAsync(request, cancellationToken: ctx.RequestAborted);
        ctx.Response.ContentType = "application/json";
        await ctx.Response.WriteAsync(reply.Body, ctx.RequestAborted);
    }));

    static string RouteValue(HttpContext ctx, string name) => ctx.Request.RouteValues[name] as string ?? "";

    static async Task WriteReply(HttpContext ctx, FederateReply reply)
    {
        ctx.Response.StatusCode = reply.Status;
        ctx.Response.ContentType = "application/json";
        await ctx.Response.WriteAsync(reply.Body.Length > 0 ? reply.Body : "{}", ctx.RequestAborted);
    }

    /// <summary>
    /// PUT /send/{txnId} (server-server-api, "Transactions"): at most 50 PDUs and 100 EDUs, the origin in the body the
    /// authenticated one. The PDUs of each room are checked by the rooms service in the order given; the answer lists
    /// an error for each PDU that was not accepted (a failure of one PDU never fails the transaction).
    /// </summary>
    async Task Send(HttpContext ctx, string origin)
    {
        var txnId = RouteValue(ctx, "txnId");
        // A transaction that breaks the rules is refused before it waits for anything.
        var body = await ctx.Request.ReadJsonObjectAsync();
        if (body["origin"] is JsonValue o && o.TryGetValue(out string? bodyOrigin) && bodyOrigin != origin)
            throw Err.Forbidden("The transaction's origin is not the server that signed the request");
        var pdus = body["pdus"] as JsonArray ?? (body.ContainsKey("pdus") ? throw Err.BadJson("pdus must be a list") : []);
        var edus = body["edus"] as JsonArray ?? (body["edus"] is null ? [] : throw Err.BadJson("edus must be a list"));
        if (pdus.Count > MaxPdus) throw Err.BadJson($"A transaction carries at most {MaxPdus} PDUs");
        if (edus.Count > MaxEdus) throw Err.BadJson($"A transaction carries at most {MaxEdus} EDUs");
        var gate = _origins.GetOrAdd(origin, _ => new SemaphoreSlim(1, 1));
        if (!await gate.WaitAsync(TimeSpan.Zero, ctx.RequestAborted))
            throw Err.LimitExceeded("A transaction from this server is already being processed", 1000);
        try
        {
            var now = Ids.NowMs();
            if (_done.TryGetValue((origin, txnId), out var earlier) && now - earlier.At < TxnCacheMs)
            {
                await ctx.Response.WriteJsonAsync(earlier.Reply);
                return;
            }

            var results = new JsonObject();
            // The PDUs of each room, in the order sent; rooms are independent of each other.
            var byRoom = pdus.OfType<JsonObject>().GroupBy(p => p["room_id"] is JsonValue r && r.TryGetValue(out string? id) ? id : "").ToList();
            var replies = await Task.WhenAll(byRoom.Where(g => g.Key.Length > 0).Select(g => rooms.FederateAsync(new FederateRequest
            {
                Origin = origin,
                Operation = "pdus",
                RoomId = g.Key,
                Body = new JsonObject { ["pdus"] = new JsonArray(g.Select(p => (JsonNode)p.DeepClone()).ToArray()) }.ToJsonString(),
            }, cancellationToken: ctx.RequestAborted).ResponseAsync));
            // Typing and receipts go to the sync service, which checks each one (the user on the origin, joined).
            var ephemeralEdus = edus.OfType<JsonObject>().Where(e => EduType(e) is "m.typing" or "m.receipt" or "m.presence").ToList();
            var ephemeral = (await WithoutDisabledRooms(ephemeralEdus, origin, ctx.RequestAborted)).Select(e => e.ToJsonString()).ToList();
            if (ephemeral.Count > 0)
            {
                // Ephemeral: one that cannot be applied now is not worth failing (and so repeating) the transaction.
                try { await sync.ReceiveEdusAsync(new Protos.Sync.ReceiveEdusRequest { Origin = origin, Edus = { ephemeral } }, cancellationToken: ctx.RequestAborted); }
                catch (Grpc.Core.RpcException e) when (!ctx.RequestAborted.IsCancellationRequested) { LogEdusFailed(log, origin, e.Status.Detail); }
            }
            // To-device messages and device list updates go to the keys service, which checks each one.
            var keyEdus = edus.OfType<JsonObject>().Where(e => e["edu_type"] is JsonValue t && t.TryGetValue(out string? type)
                && type is "m.direct_to_device" or "m.device_list_update" or "m.signing_key_update").Select(e => (JsonNode)e.DeepClone()).ToArray();
            if (keyEdus.Length > 0)
                await keys.FederateAsync(new Protos.Keys.KeysFederateRequest
                {
                    Origin = origin, Operation = "edus", Body = new JsonObject { ["edus"] = new JsonArray(keyEdus) }.ToJsonString(),
                }, cancellationToken: ctx.RequestAborted);
            foreach (var reply in replies)
                if (reply.Status == 200 && JsonNode.Parse(reply.Body)?["pdus"] is JsonObject perPdu)
                    foreach (var (id, r) in perPdu) results[id] = r?.DeepClone();
            LogTransaction(log, origin, txnId, pdus.Count, edus.Count);
            var answer = new JsonObject { ["pdus"] = results };
            _done[(origin, txnId)] = (answer, now);
            if (_done.Count > 10_000)
                foreach (var (k, v) in _done) if (now - v.At >= TxnCacheMs) _done.TryRemove(k, out _);
            await ctx.Response.WriteJsonAsync(answer);
        }
        finally
        {
            gate.Release();
        }
    }

    static string? EduType(JsonObject edu) => edu["edu_type"] is JsonValue t && t.TryGetValue(out string? type) ? type : null;

    /// <summary>The rooms a typing or receipt EDU is about.</summary>
    static IEnumerable<string> RoomsOf(JsonObject edu) => EduType(edu) switch
    {
        "m.typing" => edu["content"]?["room_id"] is JsonValue v && v.TryGetValue(out string? room) ? [room] : [],
        "m.receipt" => edu["content"] is JsonObject c ? c.Select(kv => kv.Key) : [],
        _ => [],
    };

    /// <summary>
    /// Typing and receipts of rooms an admin took off federation (Conduit's disable-room) are dropped: the rooms
    /// service says which of the EDUs' rooms are (one call per transaction that carries any).
    /// </summary>
    async Task<List<JsonObject>> WithoutDisabledRooms(List<JsonObject> edus, string origin, CancellationToken ct)
    {
        var asked = edus.SelectMany(RoomsOf).Distinct().ToList();
        if (asked.Count == 0) return edus;
        var reply = await rooms.FederateAsync(new FederateRequest
        {
            Origin = origin, Operation = "disabled_rooms", Body = new JsonObject { ["room_ids"] = new JsonArray([.. asked.Select(r => (JsonNode)r)]) }.ToJsonString(),
        }, cancellationToken: ct);
        var disabled = (JsonNode.Parse(reply.Body)?["room_ids"] as JsonArray ?? []).Select(n => n!.GetValue<string>()).ToHashSet(StringComparer.Ordinal);
        if (disabled.Count == 0) return edus;
        var kept = new List<JsonObject>();
        foreach (var e in edus)
        {
            if (!RoomsOf(e).Any(disabled.Contains)) kept.Add(e);
            else if (EduType(e) == "m.receipt")
            {
                // A receipt EDU may carry several rooms: only those off federation go.
                var copy = e.DeepClone().AsObject();
                foreach (var room in disabled) copy["content"]!.AsObject().Remove(room);
                kept.Add(copy);
            }
        }
        return kept;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "EDUs from {Origin} not delivered to sync: {Error}")]
    static partial void LogEdusFailed(ILogger log, string origin, string error);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Transaction {TxnId} from {Origin}: {Pdus} PDUs, {Edus} EDUs")]
    static partial void LogTransaction(ILogger log, string origin, string txnId, int pdus, int edus);
}

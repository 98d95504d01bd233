using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Http;
using Conduit.Common.Routing;
using Conduit.Protos.Keys;
using Conduit.Protos.Rooms;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Conduit.Sync.Sliding;

/// <summary>
/// Simplified sliding sync (MSC4186, as Synapse serves it to Element X):
/// POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync. The rooms service sorts and writes the rooms
/// (SlidingRooms); this service owns the connections, the DM rooms (m.direct), the notification counts and the
/// extensions (to_device and e2ee from keys, account_data, receipts, typing). A request with a pos answers only
/// what changed since, and waits (up to its timeout) until something in its scope does.
/// </summary>
public sealed class SlidingSyncEndpoint(AccountDataStore data, ReceiptStore receipts, TypingState typing, SyncNotifier notifier,
    Rooms.RoomsClient rooms, Keys.KeysClient keys, Push.PushStore pushStore, Push.PushWorker pushWorker, SlidingConnections connections)
{
    const int MaxTimeoutMs = 60_000;

    public void Map(IEndpointRouteBuilder app)
    {
        app.Map(RouteTable.SlidingSync, Handle);
        notifier.DevicesRemoved += connections.RemoveDevices;
    }

    async Task Handle(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var timeout = ctx.Request.QueryLong("timeout", 0);
        var pos = ctx.Request.Query("pos");
        var req = SlidingRequest.Parse(await ctx.Request.ReadJsonObjectAsync());
        var prev = string.IsNullOrEmpty(pos) ? null
            : connections.Find(c.UserId, c.DeviceId, req.ConnId, pos) ?? throw new MatrixException("M_UNKNOWN_POS", 400, "Unknown position; start the connection again");
        var ct = ctx.RequestAborted;
        var deadline = Environment.TickCount64 + Math.Min(timeout, MaxTimeoutMs);
        while (true)
        {
            // Taken before reading, so a change landing during the read still wakes us.
            var wake = notifier.NextWake(c.UserId);
            var answer = await Read(c, req, prev, prev is not null && deadline - Environment.TickCount64 > 0, ct);
            var remaining = deadline - Environment.TickCount64;
            if (prev is null || answer.HasNews || remaining <= 0)
            {
                var body = answer.Body;
                body["pos"] = connections.Save(c.UserId, c.DeviceId, req.ConnId, string.IsNullOrEmpty(pos) ? null : pos, answer.Snapshot);
                if (req.TxnId is not null) body["txn_id"] = req.TxnId;
                await ctx.Response.WriteJsonAsync(body);
                return;
            }
            await Task.WhenAny(wake, Task.Delay(TimeSpan.FromMilliseconds(remaining), ct));
            ct.ThrowIfCancellationRequested();
        }
    }

    sealed record Answer(JsonObject Body, SlidingSnapshot Snapshot, bool HasNews);

    /// <summary>One answer from the connection's snapshot. <paramref name="mayWait"/>: the request will wait for a
    /// wake-up if there is no news, so the rooms call may be saved when no room-stream advance concerned the user
    /// since the snapshot (the notifier may trail a write the client just made; its advance then wakes the request).</summary>
    async Task<Answer> Read(Caller c, SlidingRequest req, SlidingSnapshot? prev, bool mayWait, CancellationToken ct)
    {
        var userId = c.UserId;
        var accountDataPosition = data.Position;
        var ephemeral = req.Receipts.Enabled || req.Typing.Enabled
            ? SyncEphemeral.Read(receipts, typing, userId, prev is null ? null : new SyncToken(0, 0, 0, prev.Receipts, prev.Typing), null)
            : null;
        var roomsRequest = new SlidingRoomsRequest
        {
            UserId = userId, DeviceId = c.DeviceId,
            Lists = { req.Lists }, Subscriptions = { req.Subscriptions }, DmRoomIds = { DirectRooms(userId).Order(StringComparer.Ordinal) },
            IgnoredUsers = { SyncEndpoints.IgnoredUsers(data, userId) },
        };
        var shape = Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(Google.Protobuf.MessageExtensions.ToByteArray(roomsRequest)));
        SlidingRoomsReply reply;
        if (mayWait && prev is { Coverage: { } coverage } && prev.Shape == shape && notifier.RoomsPositionFor(userId) <= prev.Rooms)
            reply = coverage;
        else
        {
            roomsRequest.Since = prev?.Rooms ?? 0;
            if (prev is not null)
            {
                foreach (var (room, key) in prev.Sent) roomsRequest.Sent[room] = key;
                foreach (var (room, members) in prev.Lazy) roomsRequest.LazyMembers[room] = new StringList { Values = { members } };
                foreach (var (room, position) in prev.UpTo) roomsRequest.SentUpTo[room] = position;
            }
            reply = await rooms.SlidingRoomsAsync(roomsRequest, cancellationToken: ct);
            // The counts of the events this response carries are in it.
            await pushWorker.WaitForAsync(reply.Position, ct);
        }

        var news = reply.Rooms.Count > 0;
        var lists = new JsonObject();
        var counts = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var l in reply.Lists)
        {
            lists[l.Name] = new JsonObject { ["count"] = l.Count };
            counts[l.Name] = l.Count;
            if (prev is null || !prev.Counts.TryGetValue(l.Name, out var before) || before != l.Count) news = true;
        }
        var roomsJson = new JsonObject();
        var sent = prev is null ? new Dictionary<string, string>(StringComparer.Ordinal) : new Dictionary<string, string>(prev.Sent, StringComparer.Ordinal);
        var lazy = prev is null ? new Dictionary<string, string[]>(StringComparer.Ordinal) : new Dictionary<string, string[]>(prev.Lazy, StringComparer.Ordinal);
        // Rooms sent whole: the extensions send their data in full; receipts also with an expanded timeline (Synapse).
        var whole = new HashSet<string>(StringComparer.Ordinal);
        var wholeReceipts = new HashSet<string>(StringComparer.Ordinal);
        foreach (var r in reply.Rooms)
        {
            if (r.Initial) whole.Add(r.RoomId);
            if (r.Initial || r.ExpandedTimeline) wholeReceipts.Add(r.RoomId);
            if (r.LazyMembers.Count > 0) lazy[r.RoomId] = [.. r.LazyMembers];
            else lazy.Remove(r.RoomId);
            var entry = JsonLimits.ParseInternal(System.Text.Encoding.UTF8.GetBytes(r.Json))!.AsObject();
            var unread = pushStore.Counts(userId, r.RoomId);
            entry["notification_count"] = unread.Notifications;
            entry["highlight_count"] = unread.Highlights;
            roomsJson[r.RoomId] = entry;
            sent[r.RoomId] = r.ConfigKey;
        }

        var extensions = new JsonObject();
        var keysPosition = prev?.Keys ?? 0;
        if (req.ToDevice)
        {
            var since = 0L;
            if (req.ToDeviceSince is { Length: > 0 } s && (!long.TryParse(s, out since) || since < 0)) throw Err.InvalidParam("Invalid to_device since");
            var k = await keys.SyncKeysAsync(new SyncKeysRequest { UserId = userId, DeviceId = c.DeviceId, Since = since, ToDeviceLimit = req.ToDeviceLimit }, cancellationToken: ct);
            extensions["to_device"] = new JsonObject { ["next_batch"] = k.Position.ToString(), ["events"] = RawArray(k.ToDevice) };
            news |= k.ToDevice.Count > 0;
        }
        if (req.E2ee)
        {
            var k = await keys.SyncKeysAsync(new SyncKeysRequest
            {
                UserId = userId, DeviceId = c.DeviceId, Since = keysPosition, Incremental = prev is not null, SkipToDevice = true,
            }, cancellationToken: ct);
            keysPosition = k.Position;
            var e2ee = new JsonObject
            {
                ["device_one_time_keys_count"] = new JsonObject(k.OneTimeKeyCounts.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value))),
                ["device_unused_fallback_key_types"] = new JsonArray([.. k.UnusedFallbackKeyTypes.Select(t => (JsonNode)t)]),
            };
            if (prev is not null && (reply.Position > prev.Rooms || k.ChangedUserIds.Count > 0))
            {
                var delta = await rooms.DeviceListDeltaAsync(new DeviceListDeltaRequest
                {
                    UserId = userId, From = prev.Rooms, To = reply.Position, CandidateUserIds = { k.ChangedUserIds },
                }, cancellationToken: ct);
                if (delta.Changed.Count > 0 || delta.Left.Count > 0)
                {
                    e2ee["device_lists"] = new JsonObject
                    {
                        ["changed"] = new JsonArray([.. delta.Changed.Select(u => (JsonNode)u)]),
                        ["left"] = new JsonArray([.. delta.Left.Select(u => (JsonNode)u)]),
                    };
                    news = true;
                }
            }
            extensions["e2ee"] = e2ee;
        }

        var notJoined = reply.NotJoinedRoomIds.ToHashSet(StringComparer.Ordinal);
        // The joined rooms an extension covers: those in the ranges of its lists, and its subscribed rooms.
        IEnumerable<string> Covered(SlidingExtension ext)
            => reply.Lists.Where(l => ext.Covers(l.Name)).SelectMany(l => l.RoomIds)
                .Concat(reply.SubscribedRoomIds.Where(ext.CoversRoom))
                .Where(r => !notJoined.Contains(r)).Distinct();

        if (req.AccountData.Enabled)
        {
            var ad = SyncAccountData.Read(data, userId, prev?.AccountData ?? 0, prev is null, null);
            var global = new JsonArray([.. ad.Global.Select(e => (JsonNode)Event(e.Type, e.Content))]);
            var perRoom = new JsonObject();
            foreach (var roomId in Covered(req.AccountData))
            {
                var events = whole.Contains(roomId) ? data.InRoom(userId, roomId).ToList() : ad.Rooms.GetValueOrDefault(roomId);
                if (events is { Count: > 0 }) perRoom[roomId] = new JsonArray([.. events.Select(e => (JsonNode)Event(e.Type, e.Content))]);
            }
            if (global.Count > 0 || perRoom.Count > 0)
            {
                extensions["account_data"] = new JsonObject { ["global"] = global, ["rooms"] = perRoom };
                news = true;
            }
            accountDataPosition = ad.Position;
        }
        news |= Ephemeral(extensions, "receipts", "m.receipt", req.Receipts, ephemeral, Covered, wholeReceipts, r => ephemeral!.AllReceipts(r));
        news |= Ephemeral(extensions, "typing", "m.typing", req.Typing, ephemeral, Covered, whole,
            r => typing.UsersIn(r) is { Length: > 0 } users ? new JsonObject { ["user_ids"] = new JsonArray([.. users.Select(u => (JsonNode)u)]) } : null);

        // Unread counts: a room in view whose counts changed since they were last sent (a read receipt from another of
        // the user's devices clears them; a push rule change may move them) comes with its new counts alone.
        var unreadSent = new Dictionary<string, (long, long)>(StringComparer.Ordinal);
        foreach (var roomId in reply.Lists.SelectMany(l => l.RoomIds).Concat(reply.SubscribedRoomIds).Where(r => !notJoined.Contains(r)).Distinct())
        {
            long n, h;
            if (roomsJson[roomId] is JsonObject entry) (n, h) = (entry["notification_count"]!.GetValue<long>(), entry["highlight_count"]!.GetValue<long>());
            else
            {
                var now = pushStore.Counts(userId, roomId);
                (n, h) = (now.Notifications, now.Highlights);
            }
            unreadSent[roomId] = (n, h);
            if (roomsJson[roomId] is null && prev is not null && prev.Unread.TryGetValue(roomId, out var before) && before != (n, h))
            {
                roomsJson[roomId] = new JsonObject { ["notification_count"] = n, ["highlight_count"] = h };
                news = true;
            }
        }

        // Rooms sent before and now out of view keep the position they were last covered up to.
        var inView = reply.Lists.SelectMany(l => l.RoomIds).Concat(reply.SubscribedRoomIds).ToHashSet(StringComparer.Ordinal);
        var upTo = new Dictionary<string, long>(StringComparer.Ordinal);
        if (prev is not null)
            foreach (var room in sent.Keys)
                if (!inView.Contains(room)) upTo[room] = prev.UpTo.TryGetValue(room, out var before) ? before : prev.Rooms;

        var body = new JsonObject { ["lists"] = lists, ["rooms"] = roomsJson, ["extensions"] = extensions };
        var snapshot = new SlidingSnapshot(
            reply.Position,
            req.AccountData.Enabled ? accountDataPosition : prev?.AccountData ?? 0,
            keysPosition,
            ephemeral?.ReceiptsPosition ?? prev?.Receipts ?? 0,
            ephemeral?.TypingPosition ?? prev?.Typing ?? 0,
            sent, counts)
        {
            Lazy = lazy, UpTo = upTo, Shape = shape, Unread = unreadSent,
            Coverage = reply.ListsHoldLeftRooms ? null : Coverage(reply),
        };
        return new Answer(body, snapshot, news);
    }

    /// <summary>A reply's lists and rooms in view, without its rooms' entries: what a request with no news reuses.</summary>
    static SlidingRoomsReply Coverage(SlidingRoomsReply reply)
    {
        if (reply.Rooms.Count == 0) return reply;
        var c = reply.Clone();
        c.Rooms.Clear();
        return c;
    }

    /// <summary>The receipts or typing extension: {"rooms": {roomId: event}} for the covered rooms with news, and
    /// for the rooms in <paramref name="whole"/> (new to the connection) their current content in full.</summary>
    static bool Ephemeral(JsonObject extensions, string name, string type, SlidingExtension ext, SyncEphemeral? ephemeral,
        Func<SlidingExtension, IEnumerable<string>> covered, HashSet<string> whole, Func<string, JsonObject?> full)
    {
        if (!ext.Enabled || ephemeral is null) return false;
        var byRoom = new JsonObject();
        foreach (var roomId in covered(ext))
            if (whole.Contains(roomId))
            {
                if (full(roomId) is { } content) byRoom[roomId] = Event(type, content);
            }
            else
                foreach (var (t, content) in ephemeral.Events(roomId))
                    if (t == type) byRoom[roomId] = Event(t, content);
        if (byRoom.Count == 0) return false;
        extensions[name] = new JsonObject { ["rooms"] = byRoom };
        return true;
    }

    static JsonObject Event(string type, JsonObject content) => new() { ["type"] = type, ["content"] = content.DeepClone() };

    static JsonArray RawArray(IEnumerable<string> events)
        => new([.. events.Select(e => JsonLimits.ParseInternal(System.Text.Encoding.UTF8.GetBytes(e)))]);

    /// <summary>The rooms of the user's m.direct account data ({"@user": ["!room", ...]}); anything malformed is skipped.</summary>
    IEnumerable<string> DirectRooms(string userId)
    {
        if (data.Get(userId, "", "m.direct") is not { } direct) return [];
        var set = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (_, v) in direct)
            if (v is JsonArray a)
                foreach (var r in a)
                    if (r is JsonValue s && s.TryGetValue<string>(out var id) && Ids.IsRoomId(id)) set.Add(id);
        return set;
    }
}

using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Crypto;
using Conduit.Common.Events;
using Conduit.Rooms.Rules;
using Conduit.Common.Http;
using Microsoft.Extensions.Logging;

namespace Conduit.Rooms;

/// <summary>An event a local user asks to send.</summary>
public sealed record NewEvent(string Type, string? StateKey, JsonObject Content, string? Redacts = null);

/// <summary>Where a client's transaction ID is recorded, so a retry returns the same event.</summary>
public sealed record TxnRef(string UserId, string DeviceId, string TxnId);

/// <summary>
/// Builds, authorizes and signs the events local users send, and stores them through <see cref="RoomWriter"/>, the
/// one writer of the room graph. Events of one request are built, authorized against the state as it stands with the
/// earlier events of the same request applied, and signed; a request takes full effect or none.
///
/// Sends to one room queue up; whoever holds the room's lock builds every request queued by then, each on top of the
/// one before, and writes them in one batch, so concurrent sends to a room share one disk flush as sends to
/// different rooms do (their batches meet in <see cref="RoomWriter"/>'s group commit). A request refused by the rules
/// (or broken) fails alone; the others of its batch are written. The lock is held from reading the room's state until
/// the batch is durable. Signing is local (<see cref="EventSigner"/>), so no network round trip happens under it.
/// </summary>
public sealed partial class EventSender(RoomStore rooms, StateStore states, RoomWriter writer, EventSigner signer, GlobalConfig config, ILogger<EventSender> log)
{
    public string ServerName => config.ServerName;

    // Requests waiting for each room's lock. An entry is removed once drained empty; a request that went into a
    // removed queue is drained by its own sender, who holds that queue.
    readonly System.Collections.Concurrent.ConcurrentDictionary<string, System.Collections.Concurrent.ConcurrentQueue<Request>> _pending = new();

    sealed class Request(string sender, IReadOnlyList<NewEvent> events, TxnRef? txn)
    {
        public readonly string Sender = sender;
        public readonly IReadOnlyList<NewEvent> Events = events;
        public readonly TxnRef? Txn = txn;
        public readonly TaskCompletionSource<IReadOnlyList<StoredEvent>> Done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    /// <summary>
    /// Builds, authorizes, signs and stores <paramref name="events"/>, all or none. Creating a room whose version
    /// derives the room ID from the create event (v12) ignores <paramref name="roomId"/> (pass ""): the ID is
    /// computed from the create event, and the returned events carry it (<see cref="StoredEvent.RoomId"/>).
    /// </summary>
    public async Task<IReadOnlyList<StoredEvent>> SendAsync(string roomId, string sender, IReadOnlyList<NewEvent> events, TxnRef? txn, CancellationToken ct)
    {
        if (txn is not null && rooms.TxnEvent(txn.UserId, txn.DeviceId, txn.TxnId) is { } done)
            return [rooms.Event(done)!];
        var key = await signer.CurrentAsync(ct);
        var started = Environment.TickCount64;
        var request = new Request(sender, events, txn);
        if (roomId.Length == 0)
        {
            // A v12 room's ID is not known until its create event is built, and nobody else can know it before then:
            // that write needs no lock.
            await WriteAsync("", [request], key);
        }
        else
        {
            var queue = _pending.GetOrAdd(roomId, _ => new());
            queue.Enqueue(request);
            try
            {
                using var held = await writer.LockAsync(roomId, ct);
                if (!request.Done.Task.IsCompleted)
                {
                    var batch = new List<Request>();
                    while (queue.TryDequeue(out var r))
                        if (!r.Done.Task.IsCompleted) batch.Add(r);
                    if (queue.IsEmpty) _pending.TryRemove(new KeyValuePair<string, System.Collections.Concurrent.ConcurrentQueue<Request>>(roomId, queue));
                    await WriteAsync(roomId, batch, key);
                }
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                // Gave up waiting for the lock: a later holder skips this request (if it has not taken it already).
                request.Done.TrySetCanceled(ct);
                throw;
            }
        }
        var sent = await request.Done.Task;
        if (GuestAccessRevoked is { } revoked && sent.Any(e => e.Type == "m.room.guest_access" && e.StateKey == ""
            && ContentField.String(e.Content, "guest_access") != "can_join"))
            revoked(sent[0].RoomId);
        var ms = Environment.TickCount64 - started;
        if (ms > SlowMs) LogSlow(log, events.Count, sent[0].RoomId, ms);
        return sent;
    }

    /// <summary>Raised after an m.room.guest_access event that stops guests joining is stored (<see cref="GuestAccessEnforcer"/>).</summary>
    public event Action<string>? GuestAccessRevoked;

    /// <summary>A send slower than this (lock wait included) is logged as a warning.</summary>
    const long SlowMs = 1000;

    [LoggerMessage(Level = LogLevel.Debug, Message = "{Type} from {Sender} in {RoomId} refused by the auth rules: {Reason}")]
    static partial void LogRefused(ILogger log, string type, string sender, string roomId, string? reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Sending {Count} event(s) to {RoomId} took {Ms} ms")]
    static partial void LogSlow(ILogger log, int count, string roomId, long ms);

    /// <summary>
    /// The room as the requests of one batch see it: what is stored, with the batch's earlier requests applied.
    /// Nothing of the batch is visible to readers before the write is durable.
    /// </summary>
    sealed class RoomView(string roomId, JsonObject? info)
    {
        public string RoomId = roomId;
        public JsonObject? Info = info;
        public RoomVersion? Version = info is null ? null : RoomVersion.Find(info["room_version"]?.GetValue<string>() ?? "");
        public string? Creator = info?["creator"]?.GetValue<string>();
        public List<string> Prev = info?["forward_extremities"]?.AsArray().Select(n => n!.GetValue<string>()).ToList() ?? [];
        public long Depth = info?["depth"]?.GetValue<long>() ?? 0;
        public ulong Group = info?["state_group"]?.GetValue<ulong>() ?? 0;
        public readonly Dictionary<(string, string), (string EventId, JsonObject Pdu)> State = [];
        public readonly List<StoredEvent> Stored = [];
        public readonly Dictionary<(string, string, string), StoredEvent> Txns = [];
        public bool Exists => Info is not null || Version is not null;
    }

    /// <summary>An event of a request, built, signed and authorized, not yet applied.</summary>
    sealed record Planned(NewEvent Event, string EventId, JsonObject Pdu, string? Replaced, byte[] Canonical);

    async Task WriteAsync(string roomId, List<Request> requests, EventSigner.Key key)
    {
        var room = new RoomView(roomId, roomId.Length == 0 ? null : rooms.Info(roomId));
        using var write = writer.Begin(roomId);
        if (roomId.Length > 0) write.ConcernRoomMembers();
        var accepted = new List<(Request Request, IReadOnlyList<StoredEvent> Stored)>();
        try
        {
            foreach (var r in requests)
            {
                if (r.Txn is { } txn && TxnEventOf(room, txn) is { } earlier)
                {
                    accepted.Add((r, [earlier]));
                    continue;
                }
                List<Planned> planned;
                string planRoomId;
                RoomVersion version;
                try
                {
                    (planned, planRoomId, version) = Plan(room, r, key);
                }
                catch (Exception e)
                {
                    // This request alone is refused; the others of the batch go on.
                    r.Done.TrySetException(e);
                    continue;
                }
                accepted.Add((r, Apply(room, write, r, planned, planRoomId, version)));
            }
            // Only retried transactions, or nothing accepted: there is nothing to write.
            if (room.Stored.Count > 0)
            {
                write.SetInfo(NewInfo(room));
                await writer.CommitAsync(write);
            }
        }
        catch (Exception e)
        {
            foreach (var (r, _) in accepted) r.Done.TrySetException(e);
            throw;
        }
        foreach (var (r, stored) in accepted) r.Done.TrySetResult(stored);
    }

    StoredEvent? TxnEventOf(RoomView room, TxnRef txn)
        => room.Txns.TryGetValue((txn.UserId, txn.DeviceId, txn.TxnId), out var pending) ? pending
            : rooms.TxnEvent(txn.UserId, txn.DeviceId, txn.TxnId) is { } id ? rooms.Event(id) : null;

    /// <summary>
    /// Builds, signs and authorizes the events of one request against the room as the batch has left it; nothing
    /// is written. Throws (M_NOT_FOUND, M_FORBIDDEN, M_BAD_JSON, ...) when the request cannot take effect.
    /// </summary>
    (List<Planned> Planned, string RoomId, RoomVersion Version) Plan(RoomView room, Request request, EventSigner.Key key)
    {
        var events = request.Events;
        var sender = request.Sender;
        if (!room.Exists && events[0].Type != "m.room.create") throw Err.NotFound("Unknown room");
        var versionId = room.Version?.Id ?? events[0].Content["room_version"]?.GetValue<string>() ?? config.DefaultRoomVersion;
        var version = room.Version ?? RoomVersion.Find(versionId) ?? throw Err.UnsupportedRoomVersion($"Unsupported room version {versionId}");
        var roomId = room.RoomId;
        if (roomId.Length == 0 && !(!room.Exists && version.RoomIdFromCreateEvent)) throw Err.NotFound("Unknown room");
        var prev = room.Prev;
        var depth = room.Depth;

        // State set by this request's earlier events, then by the batch's earlier requests, then as stored.
        var local = new Dictionary<(string, string), (string EventId, JsonObject Pdu)>();
        var planned = new List<Planned>();
        bool TryPending(string type, string key, out (string EventId, JsonObject Pdu) e)
            => local.TryGetValue((type, key), out e) || room.State.TryGetValue((type, key), out e);
        // Full state events for the auth rules, with their event_id (which v3+ PDUs do not carry themselves).
        JsonObject? StatePdu(string type, string key)
        {
            if (TryPending(type, key, out var o))
            {
                var copy = o.Pdu.DeepClone().AsObject();
                copy["event_id"] = o.EventId;
                return copy;
            }
            if (rooms.StateEvent(roomId, type, key) is not { } e) return null;
            e.Pdu["event_id"] = e.EventId;
            return e.Pdu;
        }
        string? StateId(string type, string key) => TryPending(type, key, out var o) ? o.EventId : rooms.StateEventId(roomId, type, key);
        // The PDU of an event this request references: one of the batch's, or one already stored.
        JsonObject? PduOf(string eventId)
            => planned.Find(p => p.EventId == eventId)?.Pdu ?? room.Stored.Find(s => s.EventId == eventId)?.Pdu ?? rooms.Event(eventId)?.Pdu;

        foreach (var e in events)
        {
            EventContent.Validate(e, roomId, config.ServerName);
            var pdu = new JsonObject
            {
                ["content"] = e.Content.DeepClone(),
                ["depth"] = depth + 1,
                ["origin_server_ts"] = Ids.NowMs(),
                ["prev_events"] = EventRefs(prev, version, PduOf),
                ["room_id"] = roomId,
                ["sender"] = sender,
                ["type"] = e.Type,
            };
            if (e.StateKey is not null) pdu["state_key"] = e.StateKey;
            ApplyIdFormat(pdu, version);
            if (e.Redacts is not null)
            {
                // v11 moved "redacts" into content; earlier versions carry it at the top level.
                if (version.RedactsInContent) ((JsonObject)pdu["content"]!)["redacts"] = e.Redacts;
                else pdu["redacts"] = e.Redacts;
            }
            pdu["auth_events"] = EventRefs(EventAuth.AuthTypesFor(pdu, version)
                .Select(k => StateId(k.Type, k.StateKey)).Where(id => id is not null).Distinct().Select(id => id!), version, PduOf);
            EventHashing.AddContentHash(pdu);
            signer.Sign(pdu, version, key);
            // The one implementation of the auth rules, on the finished, signed event (a restricted join must carry
            // the authorising server's signature), against the state as it stands with the earlier events applied
            // (spec: rooms/vN "Authorization rules").
            var auth = EventAuth.Check(pdu, version, k => StatePdu(k.Type, k.StateKey));
            if (!auth.Allowed)
            {
                LogRefused(log, e.Type, sender, roomId, auth.Reason);
                throw Err.Forbidden(auth.Reason ?? "Not allowed by the room's rules");
            }
            var canonical = EventContent.RequireWithinLimits(pdu);
            var eventId = EventIdOf(pdu, version);
            if (!room.Exists && planned.Count == 0 && version.RoomIdFromCreateEvent) roomId = RoomIdFromCreateEvent(eventId);
            var replaced = e.StateKey is null ? null : StateId(e.Type, e.StateKey);
            planned.Add(new Planned(e, eventId, pdu, replaced, canonical));
            if (e.StateKey is not null) local[(e.Type, e.StateKey)] = (eventId, pdu);
            depth++;
            prev = [eventId];
        }
        return (planned, roomId, version);
    }

    /// <summary>Writes a planned request into the batch and moves the room view on past it.</summary>
    IReadOnlyList<StoredEvent> Apply(RoomView room, RoomWriter.RoomWrite write, Request request, List<Planned> planned, string roomId, RoomVersion version)
    {
        if (!room.Exists)
        {
            room.Version = version;
            room.Creator = request.Sender;
        }
        if (room.RoomId.Length == 0)
        {
            room.RoomId = roomId;
            write.SetRoomId(roomId);
        }
        var stored = new List<StoredEvent>();
        foreach (var (e, eventId, pdu, replaced, canonical) in planned)
        {
            // The state before every event is recorded (as a state group), so authorization history, /context and
            // history visibility can use the state at that point rather than today's.
            var meta = new JsonObject { ["room_id"] = roomId, ["sg"] = room.Group };
            if (request.Txn is { } txn && stored.Count == 0)
            {
                meta["sender_device"] = txn.DeviceId;
                meta["txn_id"] = txn.TxnId;
            }
            if (replaced is not null) meta["prev_content_event"] = replaced;
            if (e.StateKey is not null)
            {
                room.Group = states.Set(write.StateTx, room.Group, states.ShortStateKey(write.StateTx, e.Type, e.StateKey), states.ShortEventId(write.StateTx, eventId));
                meta["sg_after"] = room.Group;
                room.State[(e.Type, e.StateKey)] = (eventId, pdu);
            }
            write.AddEvent(eventId, pdu, meta, inTimeline: true, canonical);
            if (e.StateKey is not null)
                write.SetCurrentState(e.Type, e.StateKey, eventId, e.Type == "m.room.member" ? e.Content["membership"]!.GetValue<string>() : null);
            if (e.Redacts is not null)
            {
                // The target may be an event of this very batch, whose meta is written at commit.
                if (room.Stored.Find(s => s.EventId == e.Redacts) is { } pending) pending.Meta["redacted_by"] = eventId;
                else if (rooms.Event(e.Redacts) is { } target && target.RoomId == roomId) write.MarkRedacted(target, eventId);
            }
            var ev = new StoredEvent(eventId, pdu, meta);
            stored.Add(ev);
            room.Stored.Add(ev);
        }
        room.Depth += planned.Count;
        room.Prev = [planned[^1].EventId];
        if (request.Txn is { } t)
        {
            write.SetTxn(t, stored[0].EventId);
            room.Txns[(t.UserId, t.DeviceId, t.TxnId)] = stored[0];
        }
        return stored;
    }

    /// <summary>The room's info after the batch: version and creator (set when the batch created the room), forward extremities, depth, current state.</summary>
    static JsonObject NewInfo(RoomView room)
    {
        var info = room.Info ?? new JsonObject
        {
            ["room_version"] = room.Version!.Id,
            ["creator"] = room.Creator,
            ["created_ts"] = Ids.NowMs(),
        };
        info["forward_extremities"] = new JsonArray(room.Prev.Select(id => (JsonNode)id).ToArray());
        info["depth"] = room.Depth;
        info["state_group"] = room.Group;
        return info;
    }

    // ---- the event format of each room version (spec: rooms/vN.md "Event format", "Event IDs")

    /// <summary>
    /// v1, v2: the server chooses the event ID ("$opaque:server") and the PDU carries it as event_id (rooms/v1.md
    /// "Event IDs"). v12: the create event has no room_id (rooms/v12.md "Event format").
    /// </summary>
    void ApplyIdFormat(JsonObject pdu, RoomVersion version)
    {
        if (version.EventIdFormat == EventIdFormat.ServerGenerated) pdu["event_id"] = $"${Ids.Random(24)}:{config.ServerName}";
        if (version.RoomIdFromCreateEvent && pdu["type"]?.GetValue<string>() == "m.room.create") pdu.Remove("room_id");
    }

    /// <summary>The event ID of a finished (hashed and signed) PDU: the carried event_id in v1/v2, else the reference hash.</summary>
    static string EventIdOf(JsonObject pdu, RoomVersion version)
        => version.EventIdFormat == EventIdFormat.ServerGenerated ? pdu["event_id"]!.GetValue<string>() : EventHashing.ComputeEventId(pdu, version);

    /// <summary>v12: "!" + the create event's reference hash, the same URL-safe Base64 as its event ID (rooms/v12.md "Room IDs").</summary>
    public static string RoomIdFromCreateEvent(string createEventId) => "!" + createEventId[1..];

    /// <summary>
    /// prev_events and auth_events: event IDs (v3+), or [event_id, {"sha256": reference hash}] pairs in v1 and v2
    /// (rooms/v1.md "Event format"; the hash is the referenced event's reference hash, server-server API
    /// "Calculating the reference hash for an event").
    /// </summary>
    static JsonArray EventRefs(IEnumerable<string> ids, RoomVersion version, Func<string, JsonObject?> pduOf)
    {
        if (version.EventIdFormat != EventIdFormat.ServerGenerated) return new JsonArray(ids.Select(id => (JsonNode)id).ToArray());
        return new JsonArray(ids.Select(id =>
        {
            var referenced = pduOf(id) ?? throw new InvalidOperationException($"Referenced event {id} is not stored");
            var hash = UnpaddedBase64.Encode(EventHashing.ReferenceHash(referenced, version));
            return (JsonNode)new JsonArray(id, new JsonObject { ["sha256"] = hash });
        }).ToArray());
    }
}

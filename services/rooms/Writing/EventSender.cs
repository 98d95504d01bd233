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
/// one writer of the room graph. Events of one call are built, authorized against the state as it stands with the
/// earlier events of the same call applied, signed, and written in ONE batch: a request takes full effect or none.
/// The room's lock is held from reading its state until the batch is durable; other rooms are written meanwhile.
/// Signing is local (<see cref="EventSigner"/>), so no network round trip happens under the lock.
/// </summary>
public sealed partial class EventSender(RoomStore rooms, StateStore states, RoomWriter writer, EventSigner signer, GlobalConfig config, ILogger<EventSender> log)
{
    public string ServerName => config.ServerName;

    /// <summary>
    /// Builds, authorizes, signs and stores <paramref name="events"/> in one batch. Creating a room whose version
    /// derives the room ID from the create event (v12) ignores <paramref name="roomId"/> (pass ""): the ID is
    /// computed from the create event, and the returned events carry it (<see cref="StoredEvent.RoomId"/>).
    /// </summary>
    public async Task<IReadOnlyList<StoredEvent>> SendAsync(string roomId, string sender, IReadOnlyList<NewEvent> events, TxnRef? txn, CancellationToken ct)
    {
        if (txn is not null && rooms.TxnEvent(txn.UserId, txn.DeviceId, txn.TxnId) is { } done)
            return [rooms.Event(done)!];
        var key = await signer.CurrentAsync(ct);
        // A v12 room's ID is not known until its create event is built, and nobody else can know it before then:
        // that write needs no lock.
        var started = Environment.TickCount64;
        using var held = roomId.Length == 0 ? null : await writer.LockAsync(roomId, ct);
        if (txn is not null && rooms.TxnEvent(txn.UserId, txn.DeviceId, txn.TxnId) is { } again)
            return [rooms.Event(again)!];
        var sent = await SendLockedAsync(roomId, sender, events, txn, key, ct);
        var ms = Environment.TickCount64 - started;
        if (ms > SlowMs) LogSlow(log, events.Count, sent[0].RoomId, ms);
        return sent;
    }

    /// <summary>A send slower than this (lock wait included) is logged as a warning.</summary>
    const long SlowMs = 1000;

    [LoggerMessage(Level = LogLevel.Debug, Message = "{Type} from {Sender} in {RoomId} refused by the auth rules: {Reason}")]
    static partial void LogRefused(ILogger log, string type, string sender, string roomId, string? reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Sending {Count} event(s) to {RoomId} took {Ms} ms")]
    static partial void LogSlow(ILogger log, int count, string roomId, long ms);

    async Task<IReadOnlyList<StoredEvent>> SendLockedAsync(string roomId, string sender, IReadOnlyList<NewEvent> events, TxnRef? txn, EventSigner.Key key, CancellationToken ct)
    {
        var info = roomId.Length == 0 ? null : rooms.Info(roomId);
        if (info is null && events[0].Type != "m.room.create") throw Err.NotFound("Unknown room");
        var versionId = info?["room_version"]?.GetValue<string>() ?? events[0].Content["room_version"]?.GetValue<string>() ?? config.DefaultRoomVersion;
        var version = RoomVersion.Find(versionId) ?? throw Err.UnsupportedRoomVersion($"Unsupported room version {versionId}");
        if (roomId.Length == 0 && !(info is null && version.RoomIdFromCreateEvent)) throw Err.NotFound("Unknown room");
        var creator = info?["creator"]?.GetValue<string>() ?? sender;
        var prev = info?["forward_extremities"]?.AsArray().Select(n => n!.GetValue<string>()).ToList() ?? [];
        var depth = info?["depth"]?.GetValue<long>() ?? 0;

        // State written by this call, seen by its later events before anything is stored.
        var overlay = new Dictionary<(string, string), (string EventId, JsonObject Pdu)>();
        // Full state events for the auth rules, with their event_id (which v3+ PDUs do not carry themselves).
        JsonObject? StatePdu(string type, string key)
        {
            if (overlay.TryGetValue((type, key), out var o))
            {
                var copy = o.Pdu.DeepClone().AsObject();
                copy["event_id"] = o.EventId;
                return copy;
            }
            if (rooms.StateEvent(roomId, type, key) is not { } e) return null;
            e.Pdu["event_id"] = e.EventId;
            return e.Pdu;
        }
        string? StateId(string type, string key)
            => overlay.TryGetValue((type, key), out var o) ? o.EventId : rooms.StateEventId(roomId, type, key);

        using var write = writer.Begin(roomId);
        if (roomId.Length > 0) write.ConcernRoomMembers();
        var group = info?["state_group"]?.GetValue<ulong>() ?? 0;
        var stored = new List<StoredEvent>();
        // The stored PDU of an event this call references: one of its own earlier events, or one already stored.
        JsonObject? PduOf(string eventId) => stored.Find(s => s.EventId == eventId)?.Pdu ?? rooms.Event(eventId)?.Pdu;

        foreach (var e in events)
        {
            ct.ThrowIfCancellationRequested();
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
            // the authorising server's signature), against the state as it stands with this call's earlier events
            // applied (spec: rooms/vN "Authorization rules").
            var auth = EventAuth.Check(pdu, version, k => StatePdu(k.Type, k.StateKey));
            if (!auth.Allowed)
            {
                LogRefused(log, e.Type, sender, roomId, auth.Reason);
                throw Err.Forbidden(auth.Reason ?? "Not allowed by the room's rules");
            }
            EventContent.RequireWithinLimits(pdu);
            var eventId = EventIdOf(pdu, version);
            if (info is null && stored.Count == 0 && version.RoomIdFromCreateEvent)
            {
                roomId = RoomIdFromCreateEvent(eventId);
                write.SetRoomId(roomId);
            }

            depth++;
            prev = [eventId];
            // The state before every event is recorded (as a state group), so authorization history, /context and
            // history visibility can use the state at that point rather than today's.
            var meta = new JsonObject { ["room_id"] = roomId, ["sg"] = group };
            if (txn is not null && stored.Count == 0)
            {
                meta["sender_device"] = txn.DeviceId;
                meta["txn_id"] = txn.TxnId;
            }
            if (e.StateKey is not null && StateId(e.Type, e.StateKey) is { } replaced) meta["prev_content_event"] = replaced;
            if (e.StateKey is not null)
            {
                group = states.Set(write.StateTx, group, states.ShortStateKey(write.StateTx, e.Type, e.StateKey), states.ShortEventId(write.StateTx, eventId));
                meta["sg_after"] = group;
                overlay[(e.Type, e.StateKey)] = (eventId, pdu);
            }
            write.AddEvent(eventId, pdu, meta, inTimeline: true);
            if (e.StateKey is not null)
                write.SetCurrentState(e.Type, e.StateKey, eventId, e.Type == "m.room.member" ? e.Content["membership"]!.GetValue<string>() : null);
            if (e.Redacts is not null && rooms.Event(e.Redacts) is { } target && target.RoomId == roomId)
                write.MarkRedacted(target, eventId);
            stored.Add(new StoredEvent(eventId, pdu, meta));
        }

        if (txn is not null) write.SetTxn(txn, stored[0].EventId);
        var newInfo = info ?? new JsonObject
        {
            ["room_version"] = version.Id,
            ["creator"] = creator,
            ["created_ts"] = Ids.NowMs(),
        };
        newInfo["forward_extremities"] = new JsonArray(prev.Select(id => (JsonNode)id).ToArray());
        newInfo["depth"] = depth;
        newInfo["state_group"] = group;
        write.SetInfo(newInfo);
        await writer.CommitAsync(write);
        return stored;
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

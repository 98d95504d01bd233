using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Crypto;
using Conduit.Common.Events;
using Conduit.Rooms.Rules;
using Conduit.Common.Http;
using Conduit.Common.Storage;
using Conduit.Protos.Federation;
using Google.Protobuf;
using K = Conduit.Common.Storage.Keys;

namespace Conduit.Rooms;

/// <summary>An event a local user asks to send.</summary>
public sealed record NewEvent(string Type, string? StateKey, JsonObject Content, string? Redacts = null);

/// <summary>Where a client's transaction ID is recorded, so a retry returns the same event.</summary>
public sealed record TxnRef(string UserId, string DeviceId, string TxnId);

/// <summary>
/// The one writer of room events. Events of one call are built, authorized against the state as it stands
/// with the earlier events of the same call applied, signed, and written in ONE batch: a request takes full
/// effect or none. Writes are serialised by one lock, so stream positions are assigned in order and a position
/// is published only after everything at or below it is durable.
/// </summary>
public sealed partial class EventSender(RoomStore rooms, StateStore states, RoomStream stream, Federation.FederationClient federation, GlobalConfig config)
{
    // Lock order: this is the only lock held across a write; nothing else is taken while holding it.
    readonly SemaphoreSlim _write = new(1, 1);

    public string ServerName => config.ServerName;

    // Local users joined to each room, kept up to date by this writer (under its lock) so that publishing an
    // event does not scan a big room's membership every time.
    readonly Dictionary<string, HashSet<string>> _localJoined = [];

    HashSet<string> LocalJoined(string roomId)
    {
        if (!_localJoined.TryGetValue(roomId, out var set))
            _localJoined[roomId] = set = rooms.JoinedMembers(roomId).Where(u => AuthRules.IsLocal(u, config.ServerName)).ToHashSet();
        return set;
    }

    /// <summary>
    /// Builds, authorizes, signs and stores <paramref name="events"/> in one batch. Creating a room whose version
    /// derives the room ID from the create event (v12) ignores <paramref name="roomId"/> (pass ""): the ID is
    /// computed from the create event, and the returned events carry it (<see cref="StoredEvent.RoomId"/>).
    /// </summary>
    public async Task<IReadOnlyList<StoredEvent>> SendAsync(string roomId, string sender, IReadOnlyList<NewEvent> events, TxnRef? txn, CancellationToken ct)
    {
        if (txn is not null && rooms.TxnEvent(txn.UserId, txn.DeviceId, txn.TxnId) is { } done)
            return [rooms.Event(done)!];
        await _write.WaitAsync(ct);
        try
        {
            if (txn is not null && rooms.TxnEvent(txn.UserId, txn.DeviceId, txn.TxnId) is { } again)
                return [rooms.Event(again)!];
            return await SendLockedAsync(roomId, sender, events, txn, ct);
        }
        finally
        {
            _write.Release();
        }
    }

    async Task<IReadOnlyList<StoredEvent>> SendLockedAsync(string roomId, string sender, IReadOnlyList<NewEvent> events, TxnRef? txn, CancellationToken ct)
    {
        var info = roomId.Length == 0 ? null : rooms.Info(roomId);
        if (info is null && events[0].Type != "m.room.create") throw Err.NotFound("Unknown room");
        var versionId = info?["room_version"]?.GetValue<string>() ?? events[0].Content["room_version"]?.GetValue<string>() ?? config.DefaultRoomVersion;
        var version = RoomVersion.Find(versionId) ?? throw Err.UnsupportedRoomVersion($"Unsupported room version {versionId}");
        if (roomId.Length == 0 && !(info is null && version.RoomIdFromCreateEvent)) throw Err.NotFound("Unknown room");
        var creator = info?["creator"]?.GetValue<string>() ?? sender;
        var prev = info?["forward_extremities"]?.AsArray().Select(n => n!.GetValue<string>()).ToList() ?? [];
        var depth = info?["depth"]?.GetValue<long>() ?? 0;
        var pos = rooms.StreamPosition;

        // State written by this call, seen by its later events before anything is stored.
        var overlay = new Dictionary<(string, string), (string EventId, JsonObject Pdu)>();
        var memberOverlay = new Dictionary<string, string>();
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

        using var batch = rooms.Store.CreateBatch();
        var stateTx = states.Begin(batch);
        var group = info?["state_group"]?.GetValue<ulong>() ?? 0;
        var stored = new List<StoredEvent>();
        // The stored PDU of an event this call references: one of its own earlier events, or one already stored.
        JsonObject? PduOf(string eventId) => stored.Find(s => s.EventId == eventId)?.Pdu ?? rooms.Event(eventId)?.Pdu;
        var concerned = new HashSet<string>(LocalJoined(roomId));

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
            if (e.Type == "m.room.power_levels" && version.IntegerOnlyPowerLevels && !PowerLevels.AllIntegers(e.Content))
                throw Err.BadJson("Power levels must be integers in this room version");
            pdu["auth_events"] = EventRefs(EventAuth.AuthTypesFor(pdu, version)
                .Select(k => StateId(k.Type, k.StateKey)).Where(id => id is not null).Distinct().Select(id => id!), version, PduOf);
            EventHashing.AddContentHash(pdu);
            var sig = await federation.SignAsync(new SignRequest { CanonicalJson = ByteString.CopyFrom(EventHashing.SigningBytes(pdu, version)) }, cancellationToken: ct);
            JsonSigning.AddSignature(pdu, sig.ServerName, sig.KeyId, sig.Signature);
            // The one implementation of the auth rules, on the finished, signed event (a restricted join must carry
            // the authorising server's signature), against the state as it stands with this call's earlier events
            // applied (spec: rooms/vN "Authorization rules").
            var auth = EventAuth.Check(pdu, version, key => StatePdu(key.Type, key.StateKey));
            if (!auth.Allowed) throw Err.Forbidden(auth.Reason ?? "Not allowed by the room's rules");
            EventContent.RequireWithinLimits(pdu);
            var eventId = EventIdOf(pdu, version);
            if (info is null && stored.Count == 0 && version.RoomIdFromCreateEvent) roomId = RoomIdFromCreateEvent(eventId);

            pos++;
            depth++;
            prev = [eventId];
            // The state before every event is recorded (as a state group), so authorization history, /context and
            // history visibility can use the state at that point rather than today's.
            var meta = new JsonObject { ["pos"] = pos, ["room_id"] = roomId, ["sg"] = group };
            if (txn is not null && stored.Count == 0)
            {
                meta["sender_device"] = txn.DeviceId;
                meta["txn_id"] = txn.TxnId;
            }
            if (e.StateKey is not null && StateId(e.Type, e.StateKey) is { } replaced) meta["prev_content_event"] = replaced;

            batch.Put(RoomsFamilies.Pdus, K.Utf8(eventId), Encoding.UTF8.GetBytes(CanonicalJson.Serialize(pdu)));
            batch.Put(RoomsFamilies.Timeline, K.Concat(K.Utf8(roomId), [K.Sep], K.BigEndian((ulong)pos)), K.Utf8(eventId));
            if (e.StateKey is not null)
            {
                group = states.Set(stateTx, group, states.ShortStateKey(stateTx, e.Type, e.StateKey), states.ShortEventId(stateTx, eventId));
                meta["sg_after"] = group;
                batch.Put(RoomsFamilies.State, K.Join(roomId, e.Type, e.StateKey), K.Utf8(eventId));
                overlay[(e.Type, e.StateKey)] = (eventId, pdu);
            }
            if (e.Type == "m.room.member" && e.StateKey is { } target)
            {
                var membership = e.Content["membership"]!.GetValue<string>();
                memberOverlay[target] = membership;
                batch.Put(RoomsFamilies.UserRooms, K.Join(target, roomId), RoomStore.Json(new JsonObject { ["membership"] = membership, ["pos"] = pos, ["event_id"] = eventId }));
                batch.Put(RoomsFamilies.MembershipLog, K.Concat(K.Utf8(target), [K.Sep], K.BigEndian((ulong)pos)), K.Utf8(roomId));
                batch.Put(RoomsFamilies.Members, K.Join(roomId, target), K.Utf8(membership));
                concerned.Add(target);
            }
            if (e.Redacts is not null && rooms.Event(e.Redacts) is { } target2 && target2.RoomId == roomId)
            {
                target2.Meta["redacted_by"] = eventId;
                batch.Put(RoomsFamilies.EventMeta, K.Utf8(e.Redacts), RoomStore.Json(target2.Meta));
            }
            // Written last: the state handling above adds to it.
            batch.Put(RoomsFamilies.EventMeta, K.Utf8(eventId), RoomStore.Json(meta));
            stored.Add(new StoredEvent(eventId, pdu, meta));
        }

        if (txn is not null) batch.Put(RoomsFamilies.Txns, K.Join(txn.UserId, txn.DeviceId, txn.TxnId), K.Utf8(stored[0].EventId));
        batch.Put(RoomsFamilies.Counters, K.Utf8("stream"), K.BigEndian((ulong)pos));
        var newInfo = info ?? new JsonObject
        {
            ["room_version"] = version.Id,
            ["creator"] = creator,
            ["created_ts"] = Ids.NowMs(),
        };
        newInfo["forward_extremities"] = new JsonArray(prev.Select(id => (JsonNode)id).ToArray());
        newInfo["depth"] = depth;
        newInfo["state_group"] = group;
        batch.Put(RoomsFamilies.Info, K.Utf8(roomId), RoomStore.Json(newInfo));
        rooms.Store.Write(batch);
        states.Committed(stateTx);

        foreach (var (user, m) in memberOverlay)
        {
            if (!AuthRules.IsLocal(user, config.ServerName)) continue;
            if (m == "join") { concerned.Add(user); LocalJoined(roomId).Add(user); }
            else LocalJoined(roomId).Remove(user);
        }
        stream.Publish(new StreamAdvance(pos, concerned.Where(u => AuthRules.IsLocal(u, config.ServerName)).ToList()));
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

using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Crypto;
using Conduit.Common.Events;
using Conduit.Common.Http;
using Conduit.Rooms.Rules;

namespace Conduit.Rooms;

/// <summary>
/// Membership handshakes with other servers (spec: server-server-api, "Joining Rooms", "Leaving Rooms", "Inviting to
/// a room"): the event templates this server hands out as the resident server, and the import of a room this
/// server joins through another one.
/// </summary>
public sealed partial class EventSender
{
    /// <summary>
    /// A membership event for <paramref name="userId"/> built on the room's current extremities and state, as make_join,
    /// make_leave and make_knock return it: unsigned, without hashes, the joining server fills in and signs it. Throws
    /// M_FORBIDDEN when the auth rules would refuse it against the current state.
    /// </summary>
    public Task<JsonObject> TemplateAsync(string roomId, string userId, string membership, JsonObject content, CancellationToken ct)
        => TemplateAsync(roomId, userId, userId, membership, content, ct);

    /// <summary>
    /// A membership event of <paramref name="sender"/> for <paramref name="stateKey"/> (an invite of a user of another
    /// server), built, hashed and signed by this server but not stored: the invitee's server signs it too before it is.
    /// </summary>
    public async Task<(JsonObject Pdu, string EventId, RoomVersion Version)> BuildSignedAsync(string roomId, string sender, string stateKey, string membership,
        JsonObject content, CancellationToken ct)
    {
        var pdu = await TemplateAsync(roomId, sender, stateKey, membership, content, ct);
        var version = rooms.VersionOf(roomId)!;
        if (version.EventIdFormat == EventIdFormat.ServerGenerated) pdu["event_id"] = $"${Ids.Random(24)}:{ServerName}";
        EventHashing.AddContentHash(pdu);
        signer.Sign(pdu, version, await signer.CurrentAsync(ct));
        EventContent.RequireWithinLimits(pdu);
        return (pdu, EventIdOf(pdu, version), version);
    }

    /// <summary>Why the signatures of a PDU do not hold (the sender's server's, and the others the room version asks for), or null.</summary>
    public static string? CheckSignatures(JsonObject pdu, RoomVersion version, string eventId, Func<string, string, byte[]?> verifyKey)
        => SignatureFailure(pdu, version, eventId, verifyKey);

    /// <summary>
    /// Stores a membership event of a room this server is not in (spec: server-server-api, "Inviting to a room": an
    /// invite of a local user, or the rejection of one): in the room's timeline, so /sync reports it at a position,
    /// and as the user's membership, without any other state. <paramref name="strippedState"/> (the invite's
    /// invite_room_state, a knock's knock_room_state, as the other server sent it) is kept with it for /sync, as far
    /// as its entries have the stripped-state shape (at most 50; the others are left out).
    /// </summary>
    public async Task StoreOutOfBandAsync(string roomId, JsonObject pdu, string eventId, string userId, string membership, JsonNode? strippedState, CancellationToken ct)
    {
        using var held = await writer.LockAsync(roomId, ct);
        if (rooms.Event(eventId) is not null) return;
        using var write = writer.Begin(roomId);
        var meta = new JsonObject { ["room_id"] = roomId, ["outlier"] = true, ["out_of_band"] = true };
        if (strippedState is JsonArray sent)
        {
            var kept = new JsonArray();
            foreach (var e in sent.OfType<JsonObject>().Take(50))
                if (Str(e, "type") is { } t && Str(e, "state_key") is { } k && Str(e, "sender") is { } s && e["content"] is JsonObject c)
                    kept.Add((JsonNode)new JsonObject { ["content"] = c.DeepClone(), ["sender"] = s, ["state_key"] = k, ["type"] = t });
            meta["invite_room_state"] = kept;
        }
        var stored = pdu.DeepClone().AsObject();
        stored.Remove("unsigned");
        write.AddEvent(eventId, stored, meta, inTimeline: true);
        write.SetCurrentState("m.room.member", userId, eventId, membership);
        await writer.CommitAsync(write);
    }

    async Task<JsonObject> TemplateAsync(string roomId, string userId, string stateKey, string membership, JsonObject content, CancellationToken ct)
    {
        var info = rooms.Info(roomId) ?? throw Err.NotFound("Unknown room");
        var version = RoomVersion.Find(info["room_version"]!.GetValue<string>())!;
        var key = await signer.CurrentAsync(ct);
        content["membership"] = membership;
        var prev = info["forward_extremities"]?.AsArray().Select(n => n!.GetValue<string>()).ToList() ?? [];
        var template = new JsonObject
        {
            ["content"] = content,
            ["depth"] = (info["depth"]?.GetValue<long>() ?? 0) + 1,
            ["origin"] = ServerName,
            ["origin_server_ts"] = Ids.NowMs(),
            ["prev_events"] = EventRefs(prev, version, id => rooms.Event(id)?.Pdu),
            ["room_id"] = roomId,
            ["sender"] = userId,
            ["state_key"] = stateKey,
            ["type"] = "m.room.member",
        };
        template["auth_events"] = EventRefs(EventAuth.AuthTypesFor(template, version)
            .Select(k => rooms.StateEventId(roomId, k.Type, k.StateKey)).OfType<string>().Distinct(), version, id => rooms.Event(id)?.Pdu);
        // The rules are checked on a copy signed by this server (a restricted join needs the authorising server's
        // signature, which is ours); the joining server's own signature is not part of the auth rules.
        var probe = template.DeepClone().AsObject();
        if (version.EventIdFormat == EventIdFormat.ServerGenerated) probe["event_id"] = $"${Ids.Random(24)}:{ServerName}";
        EventHashing.AddContentHash(probe);
        signer.Sign(probe, version, key);
        var auth = EventAuth.Check(probe, version, k => rooms.StateEvent(roomId, k.Type, k.StateKey) is { } e ? WithId(e) : null);
        if (!auth.Allowed) throw Err.Forbidden(auth.Reason ?? "Not allowed by the room's rules");
        return template;
    }

    static JsonObject WithId(StoredEvent e)
    {
        e.Pdu["event_id"] = e.EventId;
        return e.Pdu;
    }

    /// <summary>Adds this server's signature to a PDU of another server (a restricted join we authorise, an invite of one of our users).</summary>
    public async Task SignForeignAsync(JsonObject pdu, RoomVersion version, CancellationToken ct) => signer.Sign(pdu, version, await signer.CurrentAsync(ct));

    /// <summary>
    /// Stores a room this server has just joined through another server (spec: "Joining Rooms", the joining server's
    /// side of send_join): the auth chain and the state are checked (format, signatures, hashes, each event against
    /// its own auth events) and kept as outliers; the state they give is the state before our join event, which is
    /// checked against it and becomes the room's first timeline event here and its only forward extremity.
    /// </summary>
    public async Task<StoredEvent> ImportJoinAsync(string roomId, RoomVersion version, JsonObject joinPdu, IReadOnlyList<JsonObject> state,
        IReadOnlyList<JsonObject> authChain, KeyRing keys, CancellationToken ct)
    {
        using var held = await writer.LockAsync(roomId, ct);
        var stateMap = await StoreStateLockedAsync(roomId, version, state, authChain, keys);
        if (!stateMap.ContainsKey(("m.room.create", ""))) throw Err.Forbidden("The resident server's state has no usable create event");
        JsonObject? Full(string id) => rooms.Event(id) is { } e ? WithId(e) : null;
        using var write = writer.Begin(roomId);
        write.ConcernRoomMembers();
        var tx = write.StateTx;

        var join = joinPdu.DeepClone().AsObject();
        join.Remove("unsigned");
        if (WellFormed(join, version) is { } malformed) throw Err.Forbidden("The join event is malformed: " + malformed);
        var joinId = EventHashing.TryEventId(join, version) ?? throw Err.Forbidden("The join event has no event ID");
        if (version.EventIdFormat != EventIdFormat.ServerGenerated) join.Remove("event_id");
        if (SignatureFailure(join, version, joinId, keys.For(join, version)) is { } badSig) throw Err.Forbidden("The join event's signatures: " + badSig);
        var joinAuth = EventAuth.Check(WithIdOf(join, joinId), version, k => stateMap.TryGetValue(k, out var sid) ? Full(sid) : null);
        if (!joinAuth.Allowed) throw Err.Forbidden("The join is not allowed by the room's state: " + joinAuth.Reason);

        var before = GroupOf(tx, 0, stateMap);
        var sender = Str(join, "sender")!;
        var after = states.Set(tx, before, states.ShortStateKey(tx, "m.room.member", sender), states.ShortEventId(tx, joinId));
        var joinMeta = new JsonObject { ["room_id"] = roomId, ["sg"] = before, ["sg_after"] = after };
        if (stateMap.TryGetValue(("m.room.member", sender), out var replaced)) joinMeta["prev_content_event"] = replaced;
        write.AddEvent(joinId, join, joinMeta, inTimeline: true);

        var oldState = rooms.CurrentState(roomId);
        var newState = new Dictionary<(string Type, string StateKey), string>(stateMap) { [("m.room.member", sender)] = joinId };
        foreach (var ((t, k), id) in newState)
        {
            if (oldState.TryGetValue((t, k), out var old) && old == id) continue;
            var membership = t != "m.room.member" ? null : (id == joinId ? join : Full(id))?["content"]?["membership"]?.GetValue<string>();
            write.SetCurrentState(t, k, id, membership);
        }
        foreach (var k in oldState.Keys) if (!newState.ContainsKey(k)) write.SetCurrentState(k.Type, k.StateKey, null);

        var create = Full(stateMap[("m.room.create", "")])!;
        var info = rooms.Info(roomId) ?? new JsonObject
        {
            ["room_version"] = version.Id,
            ["creator"] = Str(create, "sender"),
            ["created_ts"] = Ids.NowMs(),
        };
        info["forward_extremities"] = new JsonArray(joinId);
        info["depth"] = Math.Max(info["depth"]?.GetValue<long>() ?? 0, join["depth"]!.GetValue<long>());
        info["state_group"] = after;
        write.SetInfo(info);
        await writer.CommitAsync(write);
        return rooms.Event(joinId)!;
    }

    /// <summary>
    /// Checks and stores, as outliers, the events another server sent as a room's state and its auth chain (format,
    /// signatures, hashes with the redacted form on a mismatch, each event against its own auth events, in an order
    /// where those come first; a cycle leaves the rest rejected), and returns the state they give: the state events
    /// that passed, by key. Called under the room's lock; commits its own write.
    /// </summary>
    async Task<Dictionary<(string Type, string StateKey), string>> StoreStateLockedAsync(string roomId, RoomVersion version, IReadOnlyList<JsonObject> state,
        IReadOnlyList<JsonObject> authChain, KeyRing keys)
    {
        var received = new Dictionary<string, JsonObject>(StringComparer.Ordinal);
        var stateIds = new List<string>();
        foreach (var (pdu0, isState) in authChain.Select(p => (p, false)).Concat(state.Select(p => (p, true))))
        {
            var pdu = pdu0.DeepClone().AsObject();
            pdu.Remove("unsigned");
            if (WellFormed(pdu, version) is not null) continue;
            var pduRoom = Str(pdu, "room_id") ?? (version.RoomIdFromCreateEvent && Str(pdu, "type") == "m.room.create" ? roomId : null);
            if (pduRoom != roomId) continue;
            if (EventHashing.TryEventId(pdu, version) is not { } id) continue;
            if (version.RoomIdFromCreateEvent && Str(pdu, "type") == "m.room.create" && RoomIdFromCreateEvent(id) != roomId) continue;
            if (version.EventIdFormat != EventIdFormat.ServerGenerated) pdu.Remove("event_id");
            if (!received.ContainsKey(id))
            {
                if (SignatureFailure(pdu, version, id, keys.For(pdu, version)) is not null) continue;
                if (!EventHashing.VerifyContentHash(pdu)) pdu = Redaction.Redact(pdu, version);
                received[id] = pdu;
            }
            if (isState) stateIds.Add(id);
        }

        using var write = writer.Begin(roomId);
        var outcome = new Dictionary<string, string?>(StringComparer.Ordinal); // ID -> rejection reason (null: accepted)
        JsonObject? Full(string id)
        {
            if (received.TryGetValue(id, out var p)) { var c = p.DeepClone().AsObject(); c["event_id"] = id; return c; }
            return rooms.Event(id) is { } e ? WithId(e) : null;
        }
        bool Usable(string id) => outcome.TryGetValue(id, out var r) ? r is null : rooms.Event(id) is { Rejected: null } e && e.RoomId == roomId;
        var pending = received.Keys.Where(id => rooms.Event(id) is null).OrderBy(id => received[id]["depth"]!.GetValue<long>()).ThenBy(id => id, StringComparer.Ordinal).ToList();
        for (var progress = true; pending.Count > 0 && progress;)
        {
            progress = false;
            foreach (var id in pending.ToList())
            {
                var pdu = received[id];
                var authIds = EventAuth.AuthEventIds(pdu);
                if (authIds.Any(a => received.ContainsKey(a) && !outcome.ContainsKey(a) && rooms.Event(a) is null)) continue; // not checked yet
                string? reason = authIds.FirstOrDefault(a => !Usable(a)) is { } bad ? $"auth event {bad} is missing or rejected" : null;
                if (reason is null)
                {
                    var authState = new Dictionary<(string, string), JsonObject>();
                    foreach (var a in authIds)
                        if (Full(a) is { } ap && Str(ap, "state_key") is { } sk) authState[(Str(ap, "type")!, sk)] = ap;
                    if (version.RoomIdFromCreateEvent && Full("$" + roomId[1..]) is { } createPdu) authState.TryAdd(("m.room.create", ""), createPdu);
                    var check = EventAuth.Check(WithIdOf(pdu, id), version, k => authState.GetValueOrDefault(k));
                    if (!check.Allowed) reason = "not allowed by its auth events: " + check.Reason;
                }
                outcome[id] = reason;
                var meta = new JsonObject { ["room_id"] = roomId, ["outlier"] = true };
                if (reason is not null) meta["rejected"] = reason;
                write.AddEvent(id, pdu, meta, inTimeline: false);
                pending.Remove(id);
                progress = true;
            }
        }
        foreach (var id in pending)
        {
            outcome[id] = "its auth events form a cycle";
            write.AddEvent(id, received[id], new JsonObject { ["room_id"] = roomId, ["outlier"] = true, ["rejected"] = "its auth events form a cycle" }, inTimeline: false);
        }
        if (outcome.Count > 0) await writer.CommitAsync(write);

        var stateMap = new Dictionary<(string Type, string StateKey), string>();
        foreach (var id in stateIds.Distinct())
            if (Usable(id) && Full(id) is { } p && Str(p, "state_key") is { } sk) stateMap[(Str(p, "type")!, sk)] = id;
        return stateMap;
    }

    /// <summary>
    /// Keeps history events fetched with /backfill (and the auth events they need) as checked outliers; returns the
    /// history events that passed, with their depths.
    /// </summary>
    public async Task<List<(string EventId, long Depth)>> StoreHistoryAsync(string roomId, RoomVersion version, IReadOnlyList<JsonObject> events,
        IReadOnlyList<JsonObject> authEvents, KeyRing keys, CancellationToken ct)
    {
        using var held = await writer.LockAsync(roomId, ct);
        // Checked and kept like an auth chain (each against its own auth events); the state this returns is not needed.
        await StoreStateLockedAsync(roomId, version, [], authEvents.Concat(events).ToList(), keys);
        var result = new List<(string, long)>();
        foreach (var pdu in events)
        {
            if (EventHashing.TryEventId(pdu, version) is not { } id) continue;
            if (rooms.Event(id) is { Rejected: null } e && e.RoomId == roomId && e.Pdu["depth"] is JsonValue d && d.TryGetValue(out long depth)) result.Add((id, depth));
        }
        return result;
    }

    static JsonObject WithIdOf(JsonObject pdu, string id)
    {
        var c = pdu.DeepClone().AsObject();
        c["event_id"] = id;
        return c;
    }
}

using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Crypto;
using Conduit.Common.Events;
using Conduit.Rooms.Rules;
using Microsoft.Extensions.Logging;

namespace Conduit.Rooms;

/// <summary>What became of a PDU received from another server.</summary>
public enum IngestOutcome
{
    /// <summary>Stored, in the timeline, part of the room's state and forward extremities.</summary>
    Accepted,
    /// <summary>Stored and part of the graph (its state group is kept), but not in client timelines and not an extremity.</summary>
    SoftFailed,
    /// <summary>Stored (so it is not fetched again), marked rejected; never in any state or timeline.</summary>
    Rejected,
    /// <summary>Not stored: malformed, unknown room, or signatures that do not verify.</summary>
    Dropped,
}

/// <summary>The result of <see cref="EventSender.AcceptRemoteAsync"/>; EventId is null when the PDU is too broken to have one.</summary>
public sealed record IngestResult(string? EventId, IngestOutcome Outcome, string? Reason = null);

/// <summary>
/// The receiving side of the room graph (spec: server-server-api, "Checks performed on receipt of a PDU",
/// "Rejection", "Soft failure"; state resolution: rooms/v2.md onwards, rooms/v12.md). Fetching missing prev or
/// auth events is the federation service's job: here an event whose prev or auth events are unknown is rejected.
/// </summary>
public sealed partial class EventSender
{
    /// <summary>Largest PDU accepted, in bytes of canonical JSON (server-server-api, "Size limits").</summary>
    const int MaxPduBytes = EventContent.MaxPduBytes;

    /// <summary>
    /// Runs the receipt checks on a PDU from another server and stores it with its outcome, in one batch under the
    /// room's lock. <paramref name="verifyKey"/> returns the public key of (server, key ID), or null if unknown.
    /// </summary>
    public Task<IngestResult> AcceptRemoteAsync(JsonObject pdu, Func<string, string, byte[]?> verifyKey, CancellationToken ct)
        => AcceptRemoteAsync(pdu, verifyKey, null, ct);

    /// <summary>The state before an event, as another server gave it (/state), with its auth chain and the keys to check both.</summary>
    public sealed record StateHint(IReadOnlyList<JsonObject> State, IReadOnlyList<JsonObject> AuthChain, KeyRing Keys);

    /// <summary>
    /// As <see cref="AcceptRemoteAsync(JsonObject, Func{string, string, byte[]}, CancellationToken)"/>, but with the state before the event given
    /// (spec: server-server-api, "Checks performed on receipt of a PDU", where the prev events cannot be had: the state
    /// at the event is asked of another server): the state and auth chain are checked and kept as outliers, and the
    /// event is checked against that state instead of one computed from its prev events.
    /// </summary>
    public async Task<IngestResult> AcceptRemoteAsync(JsonObject pdu, Func<string, string, byte[]?> verifyKey, StateHint? stateBefore, CancellationToken ct)
    {
        var result = await AcceptRemoteCoreAsync(pdu, verifyKey, stateBefore, ct);
        switch (result.Outcome)
        {
            case IngestOutcome.Dropped: LogDropped(log, result.EventId ?? "(no ID)", result.Reason); break;
            case IngestOutcome.Rejected: LogRejected(log, result.EventId!, result.Reason); break;
            case IngestOutcome.SoftFailed: LogSoftFailed(log, result.EventId!, result.Reason); break;
        }
        return result;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Remote event {EventId} dropped: {Reason}")]
    static partial void LogDropped(ILogger log, string eventId, string? reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Remote event {EventId} rejected: {Reason}")]
    static partial void LogRejected(ILogger log, string eventId, string? reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Remote event {EventId} soft-failed: {Reason}")]
    static partial void LogSoftFailed(ILogger log, string eventId, string? reason);

    async Task<IngestResult> AcceptRemoteCoreAsync(JsonObject pdu, Func<string, string, byte[]?> verifyKey, StateHint? stateBefore, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(pdu);
        ArgumentNullException.ThrowIfNull(verifyKey);
        pdu = pdu.DeepClone().AsObject();
        pdu.Remove("unsigned");

        // 1. The room and the event format (checks 1 and 2 need no lock: they read only the PDU and the room version).
        if (Str(pdu, "room_id") is not { } roomId) return Dropped(null, "no room_id");
        if (rooms.Info(roomId) is not { } info0) return Dropped(null, "unknown room");
        var version = RoomVersion.Find(info0["room_version"]!.GetValue<string>())!;
        if (WellFormed(pdu, version) is { } malformed) return Dropped(null, malformed);
        string eventId;
        try
        {
            eventId = version.EventIdFormat == EventIdFormat.ServerGenerated ? Str(pdu, "event_id")! : EventHashing.ComputeEventId(pdu, version);
        }
        catch (CanonicalJsonException e)
        {
            return Dropped(null, "not canonical JSON: " + e.Message);
        }
        if (rooms.Event(eventId) is { } known) return OutcomeOf(known);
        // From v3 the ID is the reference hash and not part of the format; stored PDUs are kept uniform without it.
        if (version.EventIdFormat != EventIdFormat.ServerGenerated) pdu.Remove("event_id");

        // 2. Signatures (server-server-api, "Validating hashes and signatures on received events").
        if (SignatureFailure(pdu, version, eventId, verifyKey) is { } badSig) return Dropped(eventId, badSig);

        // 3. A content hash mismatch: the event is used in its redacted form from here on.
        if (!EventHashing.VerifyContentHash(pdu)) pdu = Redaction.Redact(pdu, version);

        using var held = await writer.LockAsync(roomId, ct);
        if (rooms.Event(eventId) is { } again) return OutcomeOf(again);
        Dictionary<(string Type, string StateKey), string>? given = null;
        if (stateBefore is not null)
        {
            given = await StoreStateLockedAsync(roomId, version, stateBefore.State, stateBefore.AuthChain, stateBefore.Keys);
            if (!given.ContainsKey(("m.room.create", ""))) return Dropped(eventId, "the state given for it has no usable create event");
        }
        return await IngestLockedAsync(roomId, eventId, pdu, version, given);
    }

    static IngestResult Dropped(string? eventId, string reason) => new(eventId, IngestOutcome.Dropped, reason);

    static IngestResult OutcomeOf(StoredEvent e)
        => e.Rejected is { } r ? new(e.EventId, IngestOutcome.Rejected, r)
        : e.SoftFailed ? new(e.EventId, IngestOutcome.SoftFailed, e.Meta["soft_fail_reason"]?.GetValue<string>())
        : new(e.EventId, IngestOutcome.Accepted);

    static string? Str(JsonObject o, string key) => o[key] is JsonValue v && v.TryGetValue(out string? s) ? s : null;

    /// <summary>The event format of the room version (rooms/vN.md "Event format"), or why the PDU does not fit it.</summary>
    static string? WellFormed(JsonObject pdu, RoomVersion version)
    {
        if (Str(pdu, "type") is null) return "type is missing or not a string";
        if (EventContent.LimitViolation(pdu) is { } beyond) return beyond;
        if (Str(pdu, "sender") is not { } sender || !Ids.IsUserId(sender)) return "sender is not a user ID";
        if (pdu["content"] is not JsonObject) return "content is not an object";
        if (pdu.ContainsKey("state_key") && Str(pdu, "state_key") is null) return "state_key is not a string";
        if (pdu["depth"] is not JsonValue d || !d.TryGetValue(out long depth) || depth < 0) return "depth is not a non-negative integer";
        if (pdu["origin_server_ts"] is not JsonValue ts || !ts.TryGetValue(out long _)) return "origin_server_ts is not an integer";
        if (pdu["hashes"] is not JsonObject) return "hashes is missing";
        if (pdu["signatures"] is not JsonObject) return "signatures is missing";
        if (version.EventIdFormat == EventIdFormat.ServerGenerated && (Str(pdu, "event_id") is not { } id || !id.StartsWith('$') || Ids.ServerOf(id).Length == 0))
            return "event_id is missing or malformed";
        foreach (var field in new[] { "prev_events", "auth_events" })
        {
            if (pdu[field] is not JsonArray refs) return field + " is not an array";
            // The PDU definition bounds both lists (spec data/api/server-server/definitions/pdu_v1.yaml, pdu_v3.yaml).
            if (refs.Count > (field == "prev_events" ? 20 : 10)) return field + " has too many entries";
            foreach (var r in refs)
            {
                var ok = version.EventIdFormat == EventIdFormat.ServerGenerated
                    ? r is JsonArray pair && pair.Count == 2 && pair[0] is JsonValue pv && pv.TryGetValue(out string? _)
                    : r is JsonValue sv && sv.TryGetValue(out string? s) && s.StartsWith('$');
                if (!ok) return field + " has an entry of the wrong format";
            }
        }
        try
        {
            if (Encoding.UTF8.GetByteCount(CanonicalJson.Serialize(pdu)) > MaxPduBytes) return "larger than 65536 bytes";
        }
        catch (CanonicalJsonException e)
        {
            return "not canonical JSON: " + e.Message;
        }
        return null;
    }

    /// <summary>
    /// The servers that must have signed the event: the sender's; in v1/v2 also the event ID's; for a restricted
    /// join, the server of the authorising user. Null when every one has a valid signature.
    /// </summary>
    static string? SignatureFailure(JsonObject pdu, RoomVersion version, string eventId, Func<string, string, byte[]?> verifyKey)
    {
        var servers = new HashSet<string> { Ids.ServerOf(Str(pdu, "sender")!) };
        if (version.EventIdFormat == EventIdFormat.ServerGenerated) servers.Add(Ids.ServerOf(eventId));
        if (version.RestrictedJoins && Str(pdu, "type") == "m.room.member" && pdu["content"] is JsonObject c
            && Str(c, "membership") == "join" && Str(c, "join_authorised_via_users_server") is { } via)
            servers.Add(Ids.ServerOf(via));
        var signatures = (JsonObject)pdu["signatures"]!;
        foreach (var server in servers)
        {
            var ok = false;
            if (signatures[server] is JsonObject byServer)
                foreach (var (keyId, _) in byServer)
                {
                    if (!keyId.StartsWith(SigningKey.Algorithm + ":", StringComparison.Ordinal)) continue;
                    if (verifyKey(server, keyId) is { } key && EventHashing.VerifySignature(pdu, version, server, keyId, key)) { ok = true; break; }
                }
            if (!ok) return $"no valid signature from {server}";
        }
        return null;
    }

    async Task<IngestResult> IngestLockedAsync(string roomId, string eventId, JsonObject pdu, RoomVersion version,
        Dictionary<(string Type, string StateKey), string>? givenStateBefore = null)
    {
        var info = rooms.Info(roomId)!;
        using var write = writer.Begin(roomId);
        var tx = write.StateTx;
        var type = Str(pdu, "type")!;
        var stateKey = Str(pdu, "state_key");
        var sender = Str(pdu, "sender")!;
        var prevIds = EventAuth.PrevEventIds(pdu);
        var authIds = EventAuth.AuthEventIds(pdu);

        // Full PDUs with their event_id, for the auth rules and state resolution; this event too, before it is stored.
        JsonObject? FetchPdu(string id)
        {
            if (id == eventId) { var self = pdu.DeepClone().AsObject(); self["event_id"] = id; return self; }
            if (rooms.Event(id) is not { } e) return null;
            e.Pdu["event_id"] = id;
            return e.Pdu;
        }
        string? InGroup(ulong group, string t, string k)
            => group != 0 && (tx.Keys.TryGetValue((t, k), out var sk) || states.TryShortStateKey(t, k, out sk)) && states.Lookup(group, sk, tx) is { } se
                ? states.EventIdOf(se, tx) : null;

        // 5a. The state before the event, from its prev events (needed for rejected events too, as their state group).
        ulong? groupBefore = null;
        string? prevProblem = null;
        if (prevIds.Count == 0) prevProblem = "no prev_events";
        var prevGroups = new List<ulong>();
        if (givenStateBefore is not null && prevIds.Count > 0) groupBefore = GroupOf(tx, 0, givenStateBefore);
        else foreach (var id in prevIds.Distinct())
        {
            if (rooms.Event(id) is not { } p) { prevProblem ??= $"missing prev event {id}"; continue; }
            if (p.RoomId != roomId) { prevProblem ??= $"prev event {id} is in another room"; continue; }
            // A rejected event changes no state; one stored without any state (its own prevs were missing) cannot be built on.
            if (p.Meta["sg"] is null) { prevProblem ??= $"the state at prev event {id} is unknown"; continue; }
            prevGroups.Add(p.StateAfter);
        }
        if (prevProblem is null && groupBefore is null)
        {
            if (prevGroups.Distinct().Count() == 1) groupBefore = prevGroups[0];
            else
            {
                Dictionary<(string, string), string> resolved;
                try
                {
                    resolved = StateResolution.Resolve(version, prevGroups.Distinct().Select(g => (IReadOnlyDictionary<(string Type, string StateKey), string>)states.Full(g, tx)).ToList(), FetchPdu);
                }
                catch (NotSupportedException e)
                {
                    return Dropped(eventId, e.Message);
                }
                groupBefore = GroupOf(tx, prevGroups[0], resolved);
            }
        }

        // 4. The auth events: known, not rejected, each a distinct state entry the auth events selection picks
        // (rooms/vN.md "Authorization rules", the rules on auth_events), and the event passes the rules against them.
        var reason = AuthEventsFailure(roomId, pdu, version, authIds, out var authState);
        if (reason is null)
        {
            var auth = EventAuth.Check(pdu, version, k => authState.TryGetValue(k, out var id) ? FetchPdu(id) : null);
            if (!auth.Allowed) reason = "not allowed by its auth events: " + auth.Reason;
        }
        // 5b. ... and passes the rules against the state before it.
        reason ??= prevProblem;
        string? StateBeforeId(string t, string k) => InGroup(groupBefore!.Value, t, k);
        if (reason is null)
        {
            var auth = EventAuth.Check(pdu, version, k => StateBeforeId(k.Type, k.StateKey) is { } id ? FetchPdu(id) : null);
            if (!auth.Allowed) reason = "not allowed by the state before it: " + auth.Reason;
        }

        var meta = new JsonObject { ["room_id"] = roomId };
        if (groupBefore is { } gb) meta["sg"] = gb;
        if (reason is not null)
        {
            // Rejected events are kept (spec: "Rejection") but change nothing: no timeline, no state, no extremity.
            meta["rejected"] = reason;
            write.AddEvent(eventId, pdu, meta, inTimeline: false);
            await writer.CommitAsync(write);
            return new IngestResult(eventId, IngestOutcome.Rejected, reason);
        }

        var before = groupBefore!.Value;
        var groupAfter = before;
        if (stateKey is not null)
        {
            groupAfter = states.Set(tx, before, states.ShortStateKey(tx, type, stateKey), states.ShortEventId(tx, eventId));
            meta["sg_after"] = groupAfter;
            if (StateBeforeId(type, stateKey) is { } replaced) meta["prev_content_event"] = replaced;
        }

        // 6. Soft failure: checked against the room's current state (spec: "Soft failure").
        var current = EventAuth.Check(pdu, version, k => rooms.StateEventId(roomId, k.Type, k.StateKey) is { } id ? FetchPdu(id) : null);
        if (!current.Allowed)
        {
            meta["soft_failed"] = true;
            meta["soft_fail_reason"] = current.Reason;
            write.AddEvent(eventId, pdu, meta, inTimeline: false);
            await writer.CommitAsync(write);
            return new IngestResult(eventId, IngestOutcome.SoftFailed, current.Reason);
        }

        // 7. Accepted: a timeline position (given at commit), forward extremities, and the room's new current state.
        var oldExtremities = info["forward_extremities"]?.AsArray().Select(n => n!.GetValue<string>()).ToList() ?? [];
        var extremities = oldExtremities.Where(id => !prevIds.Contains(id)).Append(eventId).Distinct().ToList();
        var oldGroup = info["state_group"]?.GetValue<ulong>() ?? 0;
        ulong newGroup;
        Dictionary<(string, string), string?> changes;
        if (extremities.Count == 1 && oldGroup == before)
        {
            // The common case: the event extends the room's only extremity.
            newGroup = groupAfter;
            changes = stateKey is null ? [] : new() { [(type, stateKey)] = eventId };
        }
        else
        {
            Dictionary<(string Type, string StateKey), string> newState;
            if (extremities.Count == 1) newState = states.Full(groupAfter, tx);
            else
            {
                var sets = extremities.Select(id => id == eventId ? groupAfter : rooms.Event(id)!.StateAfter).Distinct()
                    .Select(g => (IReadOnlyDictionary<(string Type, string StateKey), string>)states.Full(g, tx)).ToList();
                try
                {
                    newState = sets.Count == 1 ? new(sets[0]) : StateResolution.Resolve(version, sets, FetchPdu);
                }
                catch (NotSupportedException e)
                {
                    return Dropped(eventId, e.Message);
                }
            }
            newGroup = GroupOf(tx, groupAfter, newState);
            var oldState = rooms.CurrentState(roomId);
            changes = [];
            foreach (var (k, id) in newState) if (!oldState.TryGetValue(k, out var o) || o != id) changes[k] = id;
            foreach (var k in oldState.Keys) if (!newState.ContainsKey(k)) changes[k] = null;
        }

        // The event, then the difference to the current state (the state table and the memberships, as local sends do).
        if (newGroup != groupAfter) meta["sg_room"] = newGroup;
        write.ConcernRoomMembers();
        write.AddEvent(eventId, pdu, meta, inTimeline: true);
        foreach (var ((t, k), id) in changes)
        {
            var membership = t != "m.room.member" || id is null ? null
                : (id == eventId ? pdu : rooms.Event(id)?.Pdu)?["content"]?["membership"]?.GetValue<string>();
            write.SetCurrentState(t, k, id, membership);
        }
        if (type == "m.room.redaction") ApplyRemoteRedaction(write, roomId, eventId, pdu, version, sender, StateBeforeId, FetchPdu);
        info["forward_extremities"] = new JsonArray(extremities.Select(id => (JsonNode)id).ToArray());
        info["depth"] = Math.Max(info["depth"]?.GetValue<long>() ?? 0, pdu["depth"]!.GetValue<long>());
        info["state_group"] = newGroup;
        write.SetInfo(info);
        await writer.CommitAsync(write);
        return new IngestResult(eventId, IngestOutcome.Accepted);
    }

    /// <summary>
    /// Checks the event's auth_events list itself: every entry known, in this room, not rejected, a state event,
    /// no (type, state_key) twice, and each one the auth events selection picks (server-server-api, "Auth events
    /// selection"; rooms/vN.md "Authorization rules"). <paramref name="authState"/> maps the entries by key; in v12
    /// it also holds the create event, which the room ID names.
    /// </summary>
    string? AuthEventsFailure(string roomId, JsonObject pdu, RoomVersion version, List<string> authIds, out Dictionary<(string Type, string StateKey), string> authState)
    {
        authState = [];
        var allowed = EventAuth.AuthTypesFor(pdu, version).ToHashSet();
        foreach (var id in authIds)
        {
            if (rooms.Event(id) is not { } a) return $"missing auth event {id}";
            if (a.Rejected is not null) return $"auth event {id} was rejected";
            if (a.RoomId != roomId) return $"auth event {id} is in another room";
            if (a.StateKey is not { } sk) return $"auth event {id} is not a state event";
            if (!allowed.Contains((a.Type, sk))) return $"auth event {id} ({a.Type}, {sk}) is not one the event needs";
            if (!authState.TryAdd((a.Type, sk), id)) return $"auth_events has two entries for ({a.Type}, {sk})";
        }
        if (version.RoomIdFromCreateEvent) authState.TryAdd(("m.room.create", ""), "$" + roomId[1..]);
        return null;
    }

    /// <summary>
    /// Marks the target of an accepted redaction as redacted when the redaction may take effect: the same server
    /// sent both (v3+ leaves this check to the server applying it, rooms/v3.md "Handling redactions"), or the
    /// sender has the redact level in the state before the redaction. A redaction of an event not stored yet is
    /// not applied later (not yet: federation would re-check it when the target arrives).
    /// </summary>
    void ApplyRemoteRedaction(RoomWriter.RoomWrite write, string roomId, string eventId, JsonObject pdu, RoomVersion version, string sender,
        Func<string, string, string?> stateBeforeId, Func<string, JsonObject?> fetchPdu)
    {
        var targetId = version.RedactsInContent ? (pdu["content"] is JsonObject c ? Str(c, "redacts") : null) : Str(pdu, "redacts");
        if (targetId is null || rooms.Event(targetId) is not { } target || target.RoomId != roomId || target.Rejected is not null) return;
        var allowed = Ids.ServerOf(target.Sender) == Ids.ServerOf(sender);
        if (!allowed)
        {
            var pl = stateBeforeId("m.room.power_levels", "") is { } plId ? fetchPdu(plId) : null;
            var create = stateBeforeId("m.room.create", "") is { } createId ? fetchPdu(createId) : null;
            var levels = PowerLevels.FromEvents(version, create, pl);
            allowed = levels.UserLevel(sender) >= levels.Redact;
        }
        if (!allowed) return;
        write.MarkRedacted(target, eventId);
    }

    /// <summary>A state group holding exactly <paramref name="state"/>, built as a diff on <paramref name="baseGroup"/>.</summary>
    ulong GroupOf(StateStore.Tx tx, ulong baseGroup, IReadOnlyDictionary<(string Type, string StateKey), string> state)
    {
        var baseState = states.Full(baseGroup, tx);
        var changes = new Dictionary<ulong, ulong?>();
        foreach (var ((t, k), id) in state)
            if (!baseState.TryGetValue((t, k), out var old) || old != id)
                changes[states.ShortStateKey(tx, t, k)] = states.ShortEventId(tx, id);
        foreach (var (t, k) in baseState.Keys)
            if (!state.ContainsKey((t, k))) changes[states.ShortStateKey(tx, t, k)] = null;
        return states.Apply(tx, baseGroup, changes);
    }
}

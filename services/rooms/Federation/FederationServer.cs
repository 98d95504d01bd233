using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Events;
using Conduit.Common.Http;
using Conduit.Protos.Rooms;
using Conduit.Rooms.Rules;
using Microsoft.Extensions.Logging;

namespace Conduit.Rooms;

/// <summary>
/// The rooms service's answers to other servers (protos/rooms.proto, Federate): the membership handshakes as the
/// resident server, the room reads (/event, /state, /state_ids, /event_auth, /backfill, /get_missing_events,
/// /timestamp_to_event), the
/// PDUs of transactions and the alias query. The origin is the one the federation service authenticated. A server
/// denied by the room's m.room.server_acl gets 403 for everything about the room; reads need a member of the
/// origin in the room (or history it may see).
/// </summary>
public sealed partial class FederationServer(RoomStore rooms, StateStore states, EventSender sender, RemoteServers remote, ClientEvents format, DirectoryEndpoints directory, AliasLookup aliases, SpaceEndpoints spaces, ThirdPartyInvites thirdParty, GlobalConfig config, ILogger<FederationServer> log)
{
    /// <summary>Most events one /backfill or /get_missing_events answer carries (Synapse serves at most 100 and 20).</summary>
    const int MaxBackfill = 100, MaxMissing = 20;

    public async Task<FederateReply> HandleAsync(FederateRequest r, CancellationToken ct)
    {
        JsonObject body = r.Body.Length > 0 ? RequestJson.ParseObject(r.Body, "Request body") : [];
        RefuseDisabled(r);
        JsonObject answer = r.Operation switch
        {
            "make_join" => await MakeAsync(r, "join", ct),
            "make_leave" => await MakeAsync(r, "leave", ct),
            "make_knock" => await MakeAsync(r, "knock", ct),
            "send_join" => await SendMembershipAsync(r, body, "join", ct),
            "send_leave" => await SendMembershipAsync(r, body, "leave", ct),
            "send_knock" => await SendMembershipAsync(r, body, "knock", ct),
            "event" => GetEvent(r),
            "state" => State(r, ids: false),
            "state_ids" => State(r, ids: true),
            "event_auth" => EventAuthChain(r),
            "backfill" => Backfill(r),
            "get_missing_events" => MissingEvents(r, body),
            "timestamp_to_event" => TimestampToEvent(r),
            "pdus" => await PdusAsync(r, body, ct),
            "invite" => await InviteAsync(r, body, ct),
            "query_directory" => await QueryDirectoryAsync(r, ct),
            "public_rooms" => PublicRooms(r, body),
            "hierarchy" => Hierarchy(r),
            "exchange_third_party_invite" => await ExchangeThirdPartyInviteAsync(r, body, ct),
            "onbind" => await OnBindAsync(body, ct),
            "disabled_rooms" => DisabledRooms(body),
            _ => throw Err.Unrecognized(),
        };
        return new FederateReply { Status = 200, Body = answer.ToJsonString() };
    }

    // ---- access

    const string DisabledMessage = "Federation of this room is disabled on this server";

    /// <summary>
    /// A room an admin took off federation (Conduit's disable-room) is refused to other servers: every request about it
    /// (an /event of it included) is 403. A transaction's PDUs of it each get an error instead (<see cref="PdusAsync"/>).
    /// </summary>
    void RefuseDisabled(FederateRequest r)
    {
        if (r.Operation is "pdus" or "query_directory" or "public_rooms" or "onbind" or "disabled_rooms") return;
        var roomId = r.Operation == "event" ? rooms.Event(r.EventId)?.RoomId : r.RoomId;
        if (!string.IsNullOrEmpty(roomId) && rooms.FederationDisabled(roomId) is not null) throw Err.Forbidden(DisabledMessage);
    }

    /// <summary>The federation service asks which rooms of a transaction's EDUs are off federation (their EDUs are dropped).</summary>
    JsonObject DisabledRooms(JsonObject body)
    {
        var asked = Strings(body["room_ids"]).Take(1000);
        return new JsonObject { ["room_ids"] = new JsonArray([.. asked.Distinct().Where(id => rooms.FederationDisabled(id) is not null).Select(id => (JsonNode)id)]) };
    }

    RoomVersion KnownRoom(string roomId, string origin)
    {
        if (!Ids.IsRoomId(roomId) || rooms.VersionOf(roomId) is not { } version || rooms.Info(roomId)?["state_group"] is null) throw Err.NotFound("Unknown room");
        if (!ServerAcl.Allows(rooms.StateContent(roomId, "m.room.server_acl"), origin)) throw Err.Forbidden("Server is banned from this room");
        return version;
    }

    /// <summary>Whether <paramref name="server"/> has a joined member in the room now.</summary>
    bool HostInRoom(string roomId, string server) => rooms.JoinedMembers(roomId).Any(u => Ids.ServerOf(u) == server);

    void RequireHostInRoom(string roomId, string origin)
    {
        if (!HostInRoom(roomId, origin)) throw Err.Forbidden("Your server has no member in this room");
    }

    /// <summary>
    /// History visibility for servers (spec: client-server-api, "History visibility", as Synapse applies it to servers):
    /// world_readable and shared history is visible to any server in the room; otherwise the server must have had a
    /// member joined (or, for "invited", invited) in the state at the event. The answer depends on the state only, so
    /// one walk of events (backfill: consecutive messages share their state) keeps it per state group in <paramref name="seen"/>.
    /// </summary>
    bool ServerMaySee(string server, StoredEvent e, Dictionary<ulong, bool>? seen = null)
    {
        if (!e.HasState) return HostInRoom(e.RoomId, server);
        var group = e.StateBefore;
        if (seen is not null && seen.TryGetValue(group, out var known)) return known;
        var hv = HistoryVisibility.Of(states.LookupEventId(group, "m.room.history_visibility", "") is { } hvId ? rooms.Event(hvId)?.Content : null);
        bool may;
        if (hv == HistoryVisibility.WorldReadable) may = true;
        else if (hv == HistoryVisibility.Shared) may = HostInRoom(e.RoomId, server);
        else
            may = states.Full(group).Any(kv => kv.Key.Type == "m.room.member" && Ids.ServerOf(kv.Key.StateKey) == server
                && ContentField.String(rooms.Event(kv.Value)?.Content, "membership") is { } m && (m == "join" || (hv == "invited" && m == "invite")));
        if (seen is not null) seen[group] = may;
        return may;
    }

    StoredEvent EventIn(string roomId, string eventId)
        => rooms.Event(eventId) is { Rejected: null } e && e.RoomId == roomId ? e : throw Err.NotFound("Unknown event");

    // ---- membership handshakes (spec: server-server-api, "Joining Rooms", "Leaving Rooms", "Knocking on rooms")

    async Task<JsonObject> MakeAsync(FederateRequest r, string membership, CancellationToken ct)
    {
        var version = KnownRoom(r.RoomId, r.Origin);
        if (!Ids.IsUserId(r.UserId) || Ids.ServerOf(r.UserId) != r.Origin) throw Err.Forbidden("The user is not on the requesting server");
        if (rooms.JoinedMembers(r.RoomId).All(u => Ids.ServerOf(u) != config.ServerName)) throw Err.NotFound("This server is not in the room");
        // The versions the joining server supports: "ver" (repeated); without it, only version 1 (spec: make_join).
        var supported = r.Query.TryGetValue("ver", out var vers) ? vers.Split(',') : ["1"];
        if (membership != "leave" && !supported.Contains(version.Id))
            throw new MatrixException("M_INCOMPATIBLE_ROOM_VERSION", 400, "Your server does not support this room's version") { Extra = new() { ["room_version"] = version.Id } };
        var content = new JsonObject();
        if (membership == "join") RestrictedJoin.Authorise(rooms, config.ServerName, r.RoomId, r.UserId, content);
        var template = await sender.TemplateAsync(r.RoomId, r.UserId, membership, content, ct);
        return new JsonObject { ["room_version"] = version.Id, ["event"] = template };
    }

    async Task<JsonObject> SendMembershipAsync(FederateRequest r, JsonObject pdu, string membership, CancellationToken ct)
    {
        var version = KnownRoom(r.RoomId, r.Origin);
        if (ContentField.String(pdu, "type") != "m.room.member" || ContentField.String(pdu["content"] as JsonObject, "membership") != membership)
            throw Err.BadJson($"Not an m.room.member event with membership {membership}");
        var userId = ContentField.String(pdu, "sender");
        if (userId is null || ContentField.String(pdu, "state_key") != userId || Ids.ServerOf(userId) != r.Origin)
            throw Err.Forbidden("The event's sender must be its state_key and on the requesting server");
        if (ContentField.String(pdu, "room_id") != r.RoomId) throw Err.BadJson("The event is for another room");
        // TryEventId is null for a body that is not canonical JSON (floats, out-of-range integers): refused, never a 500.
        if (EventHashing.TryEventId(pdu, version) != r.EventId) throw Err.BadJson("The event ID does not match the event");
        var signed = false;
        // A restricted join we authorise carries our signature too (spec: send_join v2, "event").
        if (membership == "join" && ContentField.String(pdu["content"] as JsonObject, "join_authorised_via_users_server") is { } via
            && AuthRules.IsLocal(via, config.ServerName))
        {
            await sender.SignForeignAsync(pdu, version, ct);
            signed = true;
        }
        var keys = await remote.KeysForAsync([pdu], ct);
        var result = await sender.AcceptRemoteAsync(pdu, keys.For(pdu, version), ct);
        if (result.Outcome != IngestOutcome.Accepted) throw Err.Forbidden($"The {membership} event was not accepted: {result.Reason}");
        if (membership == "leave") return [];
        var stored = rooms.Event(result.EventId!)!;
        if (membership == "knock") return new JsonObject { ["knock_room_state"] = format.StrippedState(r.RoomId, userId) };
        var stateIds = states.Full(stored.StateBefore).Values.ToList();
        var answer = new JsonObject
        {
            ["origin"] = config.ServerName,
            ["state"] = Pdus(stateIds),
            ["auth_chain"] = Pdus(AuthChainOf(stateIds.Concat(EventAuth.AuthEventIds(stored.Pdu)))),
            ["members_omitted"] = false,
            ["servers_in_room"] = new JsonArray(ServersInRoom(r.RoomId).Select(s => (JsonNode)s).ToArray()),
        };
        if (signed) answer["event"] = stored.Pdu.DeepClone();
        return answer;
    }

    List<string> ServersInRoom(string roomId)
        => rooms.JoinedMembers(roomId).Select(Ids.ServerOf).Distinct().OrderBy(s => s == config.ServerName ? 0 : 1).ThenBy(s => s, StringComparer.Ordinal).ToList();

    /// <summary>The union of the auth chains of <paramref name="eventIds"/> (the events themselves not included unless
    /// one is in another's chain).</summary>
    List<string> AuthChainOf(IEnumerable<string> eventIds)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var queue = new Queue<string>();
        foreach (var id in eventIds)
            if (rooms.Event(id) is { } e)
                foreach (var a in EventAuth.AuthEventIds(e.Pdu)) if (seen.Add(a)) queue.Enqueue(a);
        var order = new List<string>();
        while (queue.TryDequeue(out var id))
        {
            if (rooms.Event(id) is not { } e) continue;
            order.Add(id);
            foreach (var a in EventAuth.AuthEventIds(e.Pdu)) if (seen.Add(a)) queue.Enqueue(a);
        }
        return order;
    }

    JsonArray Pdus(IEnumerable<string> ids)
        => new(ids.Select(id => rooms.Event(id)?.Pdu).OfType<JsonObject>().Select(p => (JsonNode)p).ToArray());

    /// <summary>
    /// PUT /v2/invite (spec: server-server-api, "Inviting to a room"): an invite of one of our users, which we sign
    /// and keep. In a room this server is in, it goes through the PDU checks like any event; otherwise it is stored
    /// out of band with the stripped state sent along, for the invitee's /sync.
    /// </summary>
    async Task<JsonObject> InviteAsync(FederateRequest r, JsonObject body, CancellationToken ct)
    {
        var versionId = ContentField.String(body, "room_version") ?? "1";
        if (RoomVersion.Find(versionId) is not { } version)
            throw new MatrixException("M_INCOMPATIBLE_ROOM_VERSION", 400, $"Room version {versionId} is not supported here") { Extra = new() { ["room_version"] = versionId } };
        if (body["event"] is not JsonObject pdu) throw Err.BadJson("event is required");
        if (ContentField.String(pdu, "room_id") is { } invitedTo && rooms.Blocked(invitedTo) is not null) throw Err.Forbidden("This room has been blocked on this server");
        pdu = pdu.DeepClone().AsObject();
        pdu.Remove("unsigned");
        if (ContentField.String(pdu, "type") != "m.room.member" || ContentField.String(pdu["content"] as JsonObject, "membership") != "invite")
            throw Err.BadJson("Not an invite");
        var invitee = ContentField.String(pdu, "state_key");
        if (invitee is null || !Ids.IsUserId(invitee) || Ids.ServerOf(invitee) != config.ServerName) throw Err.BadJson("The invitee is not a user of this server");
        if (ContentField.String(pdu, "sender") is not { } inviter || Ids.ServerOf(inviter) != r.Origin) throw Err.Forbidden("The inviter is not on the requesting server");
        if (ContentField.String(pdu, "room_id") != r.RoomId) throw Err.BadJson("The event is for another room");
        if (EventHashing.TryEventId(pdu, version) != r.EventId) throw Err.BadJson("The event ID does not match the event");
        var known = rooms.VersionOf(r.RoomId) is not null && rooms.Info(r.RoomId)?["state_group"] is not null;
        if (known) KnownRoom(r.RoomId, r.Origin);
        var keys = await remote.KeysForAsync([pdu], ct);
        if (EventSender.CheckSignatures(pdu, version, r.EventId, keys.For(pdu, version)) is { } bad) throw Err.Forbidden("The invite's signatures: " + bad);
        if (rooms.MembershipOf(invitee, r.RoomId)?.State is "join" or "ban") throw Err.Forbidden("The user is already in the room or banned from it");
        await sender.SignForeignAsync(pdu, version, ct);
        if (known && EventAuth.PrevEventIds(pdu).Concat(EventAuth.AuthEventIds(pdu)).All(id => rooms.Event(id) is not null))
        {
            var result = await sender.AcceptRemoteAsync(pdu, keys.For(pdu, version), ct);
            if (result.Outcome != IngestOutcome.Accepted) throw Err.Forbidden("The invite is not allowed: " + result.Reason);
        }
        else await sender.StoreOutOfBandAsync(r.RoomId, pdu, r.EventId, invitee, "invite", body["invite_room_state"], ct);
        return new JsonObject { ["event"] = pdu };
    }

    /// <summary>PUT /exchange_third_party_invite/{roomId} (spec: server-server-api, "Third-party invites"): 404 for a room
    /// not known here, 403 for an origin the room's ACL denies, then <see cref="ThirdPartyInvites.ExchangeAsync"/>.</summary>
    async Task<JsonObject> ExchangeThirdPartyInviteAsync(FederateRequest r, JsonObject body, CancellationToken ct)
    {
        KnownRoom(r.RoomId, r.Origin);
        await thirdParty.ExchangeAsync(r.Origin, r.RoomId, body, ct);
        return [];
    }

    /// <summary>PUT /3pid/onbind, from an identity server (no origin): always {} once the body has its invites list.</summary>
    async Task<JsonObject> OnBindAsync(JsonObject body, CancellationToken ct)
    {
        await thirdParty.OnBindAsync(body, ct);
        return [];
    }

    // ---- reads

    JsonObject GetEvent(FederateRequest r)
    {
        if (rooms.Event(r.EventId) is not { Rejected: null } e) throw Err.NotFound("Unknown event");
        KnownRoom(e.RoomId, r.Origin);
        if (!ServerMaySee(r.Origin, e)) throw Err.Forbidden("Your server may not see this event");
        return Envelope(new JsonArray(e.Pdu));
    }

    JsonObject Envelope(JsonArray pdus) => new() { ["origin"] = config.ServerName, ["origin_server_ts"] = Ids.NowMs(), ["pdus"] = pdus };

    /// <summary>/state and /state_ids: the state before the event (as Synapse answers) and its auth chain.</summary>
    JsonObject State(FederateRequest r, bool ids)
    {
        KnownRoom(r.RoomId, r.Origin);
        RequireHostInRoom(r.RoomId, r.Origin);
        if (!r.Query.TryGetValue("event_id", out var eventId) || eventId.Length == 0) throw Err.MissingParam("event_id is required");
        var e = EventIn(r.RoomId, eventId);
        if (e.Meta["sg"] is null) throw Err.NotFound("The state at this event is not known here");
        var stateIds = states.Full(e.StateBefore).Values.ToList();
        var chain = AuthChainOf(stateIds);
        return ids
            ? new JsonObject { ["pdu_ids"] = new JsonArray(stateIds.Select(i => (JsonNode)i).ToArray()), ["auth_chain_ids"] = new JsonArray(chain.Select(i => (JsonNode)i).ToArray()) }
            : new JsonObject { ["pdus"] = Pdus(stateIds), ["auth_chain"] = Pdus(chain) };
    }

    JsonObject EventAuthChain(FederateRequest r)
    {
        KnownRoom(r.RoomId, r.Origin);
        RequireHostInRoom(r.RoomId, r.Origin);
        var e = EventIn(r.RoomId, r.EventId);
        return new JsonObject { ["auth_chain"] = Pdus(AuthChainOf([e.EventId])) };
    }

    /// <summary>/backfill: the given events and those before them (breadth first over prev_events, highest depth first).</summary>
    JsonObject Backfill(FederateRequest r)
    {
        KnownRoom(r.RoomId, r.Origin);
        RequireHostInRoom(r.RoomId, r.Origin);
        if (!r.Query.TryGetValue("v", out var v) || v.Length == 0) throw Err.MissingParam("v is required");
        if (!r.Query.TryGetValue("limit", out var l) || !int.TryParse(l, out var limit) || limit < 1) throw Err.InvalidParam("limit must be a positive integer");
        limit = Math.Min(limit, MaxBackfill);
        var found = Walk(r.RoomId, v.Split(','), [], limit, includeStart: true, minDepth: 0);
        var seen = new Dictionary<ulong, bool>();
        return Envelope(new JsonArray(found.Where(e => ServerMaySee(r.Origin, e, seen)).Select(e => (JsonNode)e.Pdu.DeepClone()).ToArray()));
    }

    /// <summary>/get_missing_events: the events before latest_events back to earliest_events, oldest first.</summary>
    JsonObject MissingEvents(FederateRequest r, JsonObject body)
    {
        KnownRoom(r.RoomId, r.Origin);
        RequireHostInRoom(r.RoomId, r.Origin);
        var limit = body["limit"] is JsonValue lv && lv.TryGetValue(out int li) ? Math.Clamp(li, 1, MaxMissing) : 10;
        var minDepth = body["min_depth"] is JsonValue dv && dv.TryGetValue(out long md) ? md : 0;
        var earliest = Strings(body["earliest_events"]);
        var latest = Strings(body["latest_events"]);
        if (latest.Count == 0) throw Err.BadJson("latest_events is required");
        var seen = new Dictionary<ulong, bool>();
        var found = Walk(r.RoomId, latest, earliest.ToHashSet(StringComparer.Ordinal), limit, includeStart: false, minDepth)
            .Where(e => ServerMaySee(r.Origin, e, seen)).OrderBy(e => e.Pdu["depth"]!.GetValue<long>()).ThenBy(e => e.EventId, StringComparer.Ordinal);
        return new JsonObject { ["events"] = new JsonArray(found.Select(e => (JsonNode)e.Pdu.DeepClone()).ToArray()) };
    }

    /// <summary>
    /// GET /timestamp_to_event (spec: server-server-api, "Timestamp to event"): the closest event here on the asked side
    /// of ts that the origin may see (history visibility for servers, as /event); 403 when there are events on that
    /// side but none it may see, 404 when there are none. Only what this server holds is searched (as Synapse answers).
    /// </summary>
    JsonObject TimestampToEvent(FederateRequest r)
    {
        KnownRoom(r.RoomId, r.Origin);
        var q = TimestampQuery.Parse(r.Query.TryGetValue("ts", out var ts) ? ts : null, r.Query.TryGetValue("dir", out var dir) ? dir : null);
        var seen = new Dictionary<ulong, bool>();
        var (found, hidden) = TimestampLookup.Closest(rooms, r.RoomId, q, 0, long.MaxValue, e => ServerMaySee(r.Origin, e, seen));
        if (found is null) throw hidden ? Err.Forbidden("Your server may not see the events of this room on that side of the time") : q.NotFound();
        return TimestampLookup.Answer(found);
    }

    static List<string> Strings(JsonNode? n) => n is JsonArray a ? a.OfType<JsonValue>().Select(v => v.TryGetValue(out string? s) ? s : null).OfType<string>().ToList() : [];

    List<StoredEvent> Walk(string roomId, IEnumerable<string> start, HashSet<string> stop, int limit, bool includeStart, long minDepth)
    {
        var result = new List<StoredEvent>();
        var seen = new HashSet<string>(stop, StringComparer.Ordinal);
        var frontier = new PriorityQueue<StoredEvent, long>();
        foreach (var id in start)
        {
            if (!seen.Add(id) || rooms.Event(id) is not { } e || e.RoomId != roomId) continue;
            if (includeStart) frontier.Enqueue(e, -e.Pdu["depth"]!.GetValue<long>());
            else
                foreach (var p in EventAuth.PrevEventIds(e.Pdu))
                    if (seen.Add(p) && rooms.Event(p) is { } pe && pe.RoomId == roomId) frontier.Enqueue(pe, -pe.Pdu["depth"]!.GetValue<long>());
        }
        while (result.Count < limit && frontier.TryDequeue(out var e, out _))
        {
            if (e.Pdu["depth"]!.GetValue<long>() < minDepth) continue;
            if (e.Rejected is null) result.Add(e);
            foreach (var p in EventAuth.PrevEventIds(e.Pdu))
                if (seen.Add(p) && rooms.Event(p) is { } pe && pe.RoomId == roomId) frontier.Enqueue(pe, -pe.Pdu["depth"]!.GetValue<long>());
        }
        return result;
    }

    /// <summary>GET /query/directory: an alias of this server, which an appservice may be asked about (as Synapse does).</summary>
    async Task<JsonObject> QueryDirectoryAsync(FederateRequest r, CancellationToken ct)
    {
        if (!r.Query.TryGetValue("room_alias", out var alias) || alias.Length == 0) throw Err.MissingParam("room_alias is required");
        if (!Ids.TrySplit(alias, '#', out _, out var server) || server != config.ServerName) throw Err.NotFound("Room alias not found");
        var roomId = await aliases.TargetAsync(alias, ct) ?? throw Err.NotFound("Room alias not found");
        return new JsonObject { ["room_id"] = roomId, ["servers"] = new JsonArray(ServersInRoom(roomId).Select(s => (JsonNode)s).ToArray()) };
    }

    JsonObject Hierarchy(FederateRequest r)
    {
        KnownRoom(r.RoomId, r.Origin);
        return spaces.ForServer(r.RoomId, r.Query.TryGetValue("suggested_only", out var so) && so == "true");
    }

    /// <summary>GET and POST /publicRooms (spec: server-server-api, "Public Room Directory"): this server's published rooms.</summary>
    JsonObject PublicRooms(FederateRequest r, JsonObject body)
    {
        int? limit = null;
        string? since = null, term = null;
        HashSet<string?>? roomTypes = null;
        DirectoryNetwork network;
        if (body.Count > 0)
        {
            if (body["limit"] is JsonValue lv && lv.TryGetValue(out int l)) limit = Math.Clamp(l, 0, 500);
            since = ContentField.String(body, "since");
            if (body["filter"] is JsonObject f)
            {
                term = ContentField.String(f, "generic_search_term");
                if (f["room_types"] is JsonArray types) roomTypes = types.Select(t => t is JsonValue v && v.TryGetValue(out string? s) ? s : null).ToHashSet();
            }
            network = DirectoryNetwork.Parse(body["include_all_networks"] is JsonValue all && all.TryGetValue(out bool a) && a, ContentField.String(body, "third_party_instance_id"));
        }
        else
        {
            if (r.Query.TryGetValue("limit", out var ls) && int.TryParse(ls, out var l)) limit = Math.Clamp(l, 0, 500);
            if (r.Query.TryGetValue("since", out var s)) since = s;
            network = DirectoryNetwork.Parse(r.Query.TryGetValue("include_all_networks", out var all) && all == "true", r.Query.TryGetValue("third_party_instance_id", out var id) ? id : null);
        }
        return directory.LocalDirectory(limit, since, term, roomTypes, network);
    }

    // ---- PDUs of a transaction (spec: server-server-api, "Checks performed on receipt of a PDU")

    /// <summary>
    /// Checks and stores the room's PDUs in order. Missing prev_events are asked of the origin first
    /// (/get_missing_events, back to our forward extremities, at most 10); a PDU whose prev or auth events are still
    /// unknown is not stored (so it can arrive again later) and gets an error. The answer maps each event ID to {} or
    /// {"error": ...}.
    /// </summary>
    async Task<JsonObject> PdusAsync(FederateRequest r, JsonObject body, CancellationToken ct)
    {
        var results = new JsonObject();
        var pdus = (body["pdus"] as JsonArray)?.OfType<JsonObject>().ToList() ?? [];
        if (rooms.VersionOf(r.RoomId) is not { } version || rooms.Info(r.RoomId)?["state_group"] is null)
        {
            LogUnknownRoom(log, r.Origin, r.RoomId, pdus.Count);
            return new JsonObject { ["pdus"] = results };
        }
        if (rooms.FederationDisabled(r.RoomId) is not null)
        {
            foreach (var pdu in pdus)
                if (EventHashing.TryEventId(pdu, version) is { } id) results[id] = new JsonObject { ["error"] = DisabledMessage };
            return new JsonObject { ["pdus"] = results };
        }
        var aclDenied = !ServerAcl.Allows(rooms.StateContent(r.RoomId, "m.room.server_acl"), r.Origin);
        var keys = await remote.KeysForAsync(pdus, ct);
        foreach (var pdu in pdus)
        {
            var eventId = EventHashing.TryEventId(pdu, version);
            if (eventId is null) continue;
            if (aclDenied || ContentField.String(pdu, "sender") is { } s && !ServerAcl.Allows(rooms.StateContent(r.RoomId, "m.room.server_acl"), Ids.ServerOf(s)))
            {
                results[eventId] = new JsonObject { ["error"] = "Server is banned from this room" };
                continue;
            }
            // A prev event we do not have, or have without the state at it (an outlier): first the events in between
            // (get_missing_events), then, if a gap remains, the state before this event from the origin (/state).
            bool Gap() => EventAuth.PrevEventIds(pdu).Any(p => rooms.Event(p) is not { } pe || pe.Meta["sg"] is null);
            EventSender.StateHint? hint = null;
            if (rooms.Event(eventId) is null && Gap())
            {
                await FetchMissingAsync(r.Origin, r.RoomId, version, eventId, pdu, ct);
                if (Gap()) hint = await FetchStateAsync(r.Origin, r.RoomId, eventId, ct);
            }
            var missing = EventAuth.AuthEventIds(pdu).FirstOrDefault(p => rooms.Event(p) is null && hint is null)
                ?? (hint is null ? EventAuth.PrevEventIds(pdu).FirstOrDefault(p => rooms.Event(p) is not { } pe || pe.Meta["sg"] is null) : null);
            if (rooms.Event(eventId) is null && missing is not null)
            {
                results[eventId] = new JsonObject { ["error"] = $"Event {missing} it references is unknown here" };
                continue;
            }
            var result = await sender.AcceptRemoteAsync(pdu, keys.For(pdu, version), hint, ct);
            results[result.EventId ?? eventId] = result.Outcome is IngestOutcome.Accepted or IngestOutcome.SoftFailed
                ? new JsonObject() : new JsonObject { ["error"] = result.Reason ?? result.Outcome.ToString() };
        }
        return new JsonObject { ["pdus"] = results };
    }

    /// <summary>Asks the origin for the events between our forward extremities and <paramref name="eventId"/> and stores them, oldest first.</summary>
    async Task FetchMissingAsync(string origin, string roomId, RoomVersion version, string eventId, JsonObject pdu, CancellationToken ct)
    {
        var info = rooms.Info(roomId)!;
        var extremities = info["forward_extremities"]?.AsArray().Select(n => n!.GetValue<string>()).ToList() ?? [];
        var reply = await remote.SendAsync(origin, "POST", $"/_matrix/federation/v1/get_missing_events/{Uri.EscapeDataString(roomId)}", new JsonObject
        {
            ["earliest_events"] = new JsonArray(extremities.Select(e => (JsonNode)e).ToArray()),
            ["latest_events"] = new JsonArray(eventId),
            ["limit"] = 10,
            ["min_depth"] = Math.Max(0, (info["depth"]?.GetValue<long>() ?? 0) - 100),
        }, ct);
        if (!reply.Ok || reply.Body!["events"] is not JsonArray events)
        {
            LogMissingFailed(log, origin, roomId, reply.ToString());
            return;
        }
        var list = events.OfType<JsonObject>().Where(e => ContentField.String(e, "room_id") == roomId)
            .OrderBy(e => e["depth"] is JsonValue d && d.TryGetValue(out long dd) ? dd : 0).ToList();
        var keys = await remote.KeysForAsync(list, ct);
        foreach (var e in list)
        {
            // Ingested only on known ground: a prev event without its state would get it rejected for good.
            if (EventAuth.PrevEventIds(e).Any(p => rooms.Event(p) is not { } pe || pe.Meta["sg"] is null)
                || EventAuth.AuthEventIds(e).Any(p => rooms.Event(p) is null)) continue;
            await sender.AcceptRemoteAsync(e, keys.For(e, version), ct);
        }
    }

    /// <summary>The state before an event and its auth chain, asked of <paramref name="origin"/> (GET /state), or null.</summary>
    async Task<EventSender.StateHint?> FetchStateAsync(string origin, string roomId, string eventId, CancellationToken ct)
    {
        var reply = await remote.SendAsync(origin, "GET", $"/_matrix/federation/v1/state/{Uri.EscapeDataString(roomId)}?event_id={Uri.EscapeDataString(eventId)}", null, ct,
            TimeSpan.FromMinutes(2));
        if (!reply.Ok || reply.Body!["pdus"] is not JsonArray pdus)
        {
            LogStateFailed(log, origin, roomId, reply.ToString());
            return null;
        }
        var state = pdus.OfType<JsonObject>().ToList();
        var chain = (reply.Body["auth_chain"] as JsonArray)?.OfType<JsonObject>().ToList() ?? [];
        return new EventSender.StateHint(state, chain, await remote.KeysForAsync(state.Concat(chain), ct));
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "/state from {Origin} for {RoomId} failed: {Error}")]
    static partial void LogStateFailed(ILogger log, string origin, string roomId, string error);

    [LoggerMessage(Level = LogLevel.Information, Message = "{Count} PDUs from {Origin} for unknown room {RoomId} ignored")]
    static partial void LogUnknownRoom(ILogger log, string origin, string roomId, int count);

    [LoggerMessage(Level = LogLevel.Information, Message = "get_missing_events to {Origin} for {RoomId} failed: {Error}")]
    static partial void LogMissingFailed(ILogger log, string origin, string roomId, string error);
}

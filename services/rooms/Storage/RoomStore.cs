using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Storage;
using K = Conduit.Common.Storage.Keys;

namespace Conduit.Rooms;

/// <summary>A stored event: the PDU and what this server knows about it locally.</summary>
public sealed record StoredEvent(string EventId, JsonObject Pdu, JsonObject Meta)
{
    /// <summary>The stream position; 0 for events outside the timeline (rejected or soft-failed remote events).</summary>
    public long Pos => Meta["pos"]?.GetValue<long>() ?? 0;
    public bool InTimeline => Meta["pos"] is not null;
    public string? Rejected => Meta["rejected"]?.GetValue<string>();
    public bool SoftFailed => Meta["soft_failed"]?.GetValue<bool>() ?? false;
    public string Type => Pdu["type"]!.GetValue<string>();
    public string Sender => Pdu["sender"]!.GetValue<string>();
    // A v12 create event has no room_id (rooms/v12.md "Event format"); the meta always records it.
    public string RoomId => Pdu["room_id"]?.GetValue<string>() ?? Meta["room_id"]!.GetValue<string>();
    public string? StateKey => Pdu["state_key"]?.GetValue<string>();
    public JsonObject Content => Pdu["content"] as JsonObject ?? [];
    /// <summary>The state group before this event, and after it (the same for non-state events).</summary>
    public ulong StateBefore => Meta["sg"]?.GetValue<ulong>() ?? 0;
    /// <summary>Whether the state at the event is known here: not for a membership event of a room this server was not
    /// in (an invite of a local user, a knock or its rejection: EventSender.StoreOutOfBandAsync), which is in the
    /// timeline with no state, nor for an outlier.</summary>
    public bool HasState => Meta["sg"] is not null;
    public ulong StateAfter => Meta["sg_after"]?.GetValue<ulong>() ?? StateBefore;
}

public sealed record Membership(string State, long Pos, string EventId);

/// <summary>Read access to the rooms service's families; all writes go through <see cref="EventSender"/>.</summary>
public sealed class RoomStore(IKeyValueStore store)
{
    public IKeyValueStore Store => store;
    readonly IKvMap _pdus = store.Map(RoomsFamilies.Pdus);
    readonly IKvMap _meta = store.Map(RoomsFamilies.EventMeta);
    readonly IKvMap _timeline = store.Map(RoomsFamilies.Timeline);
    readonly IKvMap _state = store.Map(RoomsFamilies.State);
    readonly IKvMap _info = store.Map(RoomsFamilies.Info);
    readonly IKvMap _userRooms = store.Map(RoomsFamilies.UserRooms);
    readonly IKvMap _membershipLog = store.Map(RoomsFamilies.MembershipLog);
    readonly IKvMap _members = store.Map(RoomsFamilies.Members);
    readonly IKvMap _aliases = store.Map(RoomsFamilies.Aliases);
    readonly IKvMap _roomAliases = store.Map(RoomsFamilies.RoomAliases);
    readonly IKvMap _txns = store.Map(RoomsFamilies.Txns);
    readonly IKvMap _counters = store.Map(RoomsFamilies.Counters);

    public static byte[] Json(JsonNode n) => Encoding.UTF8.GetBytes(n.ToJsonString());
    static JsonObject Obj(byte[] v) => JsonLimits.ParseInternal(v)!.AsObject();

    /// <summary>
    /// The room stream position of the last durable write, as stored. Readers use <see cref="RoomStream.Position"/>,
    /// which is published only once everything at or below it is durable.
    /// </summary>
    public long StreamPosition => _counters.Get(RoomsFamilies.StreamCounterKey) is { } v ? (long)K.ReadBigEndian(v) : 0;

    public JsonObject? Info(string roomId) => _info.Get(RoomsFamilies.InfoKey(roomId)) is { } v ? Obj(v) : null;

    // A room's version never changes: cached, since every event formatted for a client needs it.
    readonly System.Collections.Concurrent.ConcurrentDictionary<string, Conduit.Common.Events.RoomVersion> _versions = new();

    /// <summary>The room's version, or null for a room this server does not know.</summary>
    public Conduit.Common.Events.RoomVersion? VersionOf(string roomId)
    {
        if (_versions.TryGetValue(roomId, out var v)) return v;
        var found = Conduit.Common.Events.RoomVersion.Find(Info(roomId)?["room_version"]?.GetValue<string>() ?? "");
        if (found is not null) _versions[roomId] = found;
        return found;
    }

    /// <summary>Forgets the cached version of a room whose storage was purged.</summary>
    internal void Purged(string roomId) => _versions.TryRemove(roomId, out _);

    public StoredEvent? Event(string eventId)
    {
        var pdu = _pdus.Get(RoomsFamilies.PduKey(eventId));
        var meta = _meta.Get(RoomsFamilies.EventMetaKey(eventId));
        return pdu is null || meta is null ? null : new StoredEvent(eventId, Obj(pdu), Obj(meta));
    }

    public string? StateEventId(string roomId, string type, string stateKey)
        => _state.Get(RoomsFamilies.StateKey(roomId, type, stateKey)) is { } v ? Encoding.UTF8.GetString(v) : null;

    public StoredEvent? StateEvent(string roomId, string type, string stateKey)
        => StateEventId(roomId, type, stateKey) is { } id ? Event(id) : null;

    public JsonObject? StateContent(string roomId, string type, string stateKey = "")
        => StateEvent(roomId, type, stateKey)?.Content;

    /// <summary>The current state as (type, state_key) → event_id.</summary>
    public Dictionary<(string Type, string StateKey), string> CurrentState(string roomId)
    {
        var d = new Dictionary<(string, string), string>();
        foreach (var (k, v) in _state.Scan(RoomsFamilies.StatePrefix(roomId)))
        {
            var parts = K.Split(k);
            d[(parts[1], parts[2])] = Encoding.UTF8.GetString(v);
        }
        return d;
    }

    public Membership? MembershipOf(string userId, string roomId)
    {
        if (_userRooms.Get(RoomsFamilies.UserRoomKey(userId, roomId)) is not { } v) return null;
        var o = Obj(v);
        return new Membership(o["membership"]!.GetValue<string>(), o["pos"]!.GetValue<long>(), o["event_id"]!.GetValue<string>());
    }

    public IEnumerable<(string RoomId, Membership M)> RoomsOf(string userId)
    {
        foreach (var (k, v) in _userRooms.Scan(RoomsFamilies.UserRoomsPrefix(userId)))
        {
            var o = Obj(v);
            yield return (K.Split(k)[1], new Membership(o["membership"]!.GetValue<string>(), o["pos"]!.GetValue<long>(), o["event_id"]!.GetValue<string>()));
        }
    }

    /// <summary>Rooms whose membership for the user changed after <paramref name="since"/>.</summary>
    public HashSet<string> MembershipChangedSince(string userId, long since)
    {
        var set = new HashSet<string>();
        foreach (var (_, v) in _membershipLog.ScanFrom(RoomsFamilies.MembershipLogKey(userId, since + 1), RoomsFamilies.MembershipLogPrefix(userId), reverse: false))
            set.Add(Encoding.UTF8.GetString(v));
        return set;
    }

    readonly IKvMap _stream = store.Map(RoomsFamilies.Stream);

    public IEnumerable<(string UserId, string Membership)> Members(string roomId)
    {
        foreach (var (k, v) in _members.Scan(RoomsFamilies.MembersPrefix(roomId)))
            yield return (K.Split(k)[1], Encoding.UTF8.GetString(v));
    }

    public IEnumerable<string> JoinedMembers(string roomId) => Members(roomId).Where(m => m.Membership == "join").Select(m => m.UserId);

    /// <summary>
    /// The timeline events of every room with a room-stream position in (after, upTo], in stream order (through
    /// <c>rooms_stream</c>): what the push worker and the federation sender follow. An entry whose event is gone is
    /// passed over.
    /// </summary>
    public IEnumerable<(long Pos, string RoomId, StoredEvent Event)> StreamAfter(long after, long upTo)
    {
        foreach (var (k, v) in _stream.ScanFrom(RoomsFamilies.StreamKey(after + 1), [], reverse: false))
        {
            var pos = (long)K.ReadBigEndian(k);
            if (pos > upTo) yield break;
            var parts = K.Split(v);
            if (parts.Length == 2 && Event(parts[1]) is { } e) yield return (pos, parts[0], e);
        }
    }

    /// <summary>Timeline event IDs with pos in (after, upTo], newest first when <paramref name="backwards"/>.</summary>
    public IEnumerable<(long Pos, string EventId)> Timeline(string roomId, long after, long upTo, bool backwards)
    {
        var prefix = RoomsFamilies.TimelinePrefix(roomId);
        var start = RoomsFamilies.TimelineKey(roomId, backwards ? upTo : after + 1);
        foreach (var (k, v) in _timeline.ScanFrom(start, prefix, backwards))
        {
            var pos = (long)K.ReadBigEndian(k.AsSpan(prefix.Length));
            if (pos <= after || pos > upTo) yield break;
            yield return (pos, Encoding.UTF8.GetString(v));
        }
    }

    public string? AliasTarget(string alias) => _aliases.Get(RoomsFamilies.AliasKey(alias)) is { } v ? Obj(v)["room_id"]!.GetValue<string>() : null;
    public JsonObject? Alias(string alias) => _aliases.Get(RoomsFamilies.AliasKey(alias)) is { } v ? Obj(v) : null;

    public IEnumerable<string> AliasesOf(string roomId)
    {
        foreach (var (k, _) in _roomAliases.Scan(RoomsFamilies.RoomAliasesPrefix(roomId))) yield return K.Split(k)[1];
    }

    public string? TxnEvent(string userId, string deviceId, string txnId)
        => _txns.Get(RoomsFamilies.TxnKey(userId, deviceId, txnId)) is { } v ? Encoding.UTF8.GetString(v) : null;

    // ---- writes that are not events (aliases, directory, forgetting); events go through EventSender.

    readonly Lock _aliasLock = new();

    public bool TryPutAlias(string alias, string roomId, string creator)
    {
        lock (_aliasLock)
        {
            if (_aliases.Get(RoomsFamilies.AliasKey(alias)) is not null) return false;
            PutAlias(alias, roomId, creator);
            return true;
        }
    }

    public void PutAlias(string alias, string roomId, string creator)
    {
        using var b = store.CreateBatch();
        b.Put(RoomsFamilies.Aliases, RoomsFamilies.AliasKey(alias), Json(new JsonObject { ["room_id"] = roomId, ["creator"] = creator }));
        b.Put(RoomsFamilies.RoomAliases, RoomsFamilies.RoomAliasKey(roomId, alias), []);
        store.Write(b);
    }

    public void DeleteAlias(string alias, string roomId)
    {
        using var b = store.CreateBatch();
        b.Delete(RoomsFamilies.Aliases, RoomsFamilies.AliasKey(alias));
        b.Delete(RoomsFamilies.RoomAliases, RoomsFamilies.RoomAliasKey(roomId, alias));
        store.Write(b);
    }

    public void SetDirectoryVisibility(string roomId, bool published)
    {
        var map = store.Map(RoomsFamilies.Directory);
        if (published) map.Put(RoomsFamilies.DirectoryKey(roomId), []); else map.Delete(RoomsFamilies.DirectoryKey(roomId));
    }

    public bool IsPublished(string roomId) => store.Map(RoomsFamilies.Directory).Get(RoomsFamilies.DirectoryKey(roomId)) is not null;

    /// <summary>Publishes or hides the room in an application service's network room list (one write either way).</summary>
    public void SetAppserviceDirectoryVisibility(string roomId, string appserviceId, string networkId, bool published)
    {
        var map = store.Map(RoomsFamilies.AppserviceDirectory);
        var key = RoomsFamilies.AppserviceDirectoryKey(roomId, appserviceId, networkId);
        if (published) map.Put(key, []); else map.Delete(key);
    }

    /// <summary>Every (room, appservice, network) of the application services' room lists.</summary>
    public IEnumerable<(string RoomId, string AppserviceId, string NetworkId)> AppserviceDirectoryEntries()
    {
        foreach (var (k, _) in store.Map(RoomsFamilies.AppserviceDirectory).Scan([]))
        {
            var parts = K.Split(k);
            if (parts.Length == 3) yield return (parts[0], parts[1], parts[2]);
        }
    }

    /// <summary>Takes the room out of the public room directory and out of every appservice's room list, in one batch.</summary>
    public void UnpublishEverywhere(string roomId)
    {
        using var b = store.CreateBatch();
        b.Delete(RoomsFamilies.Directory, RoomsFamilies.DirectoryKey(roomId));
        foreach (var (k, _) in store.Map(RoomsFamilies.AppserviceDirectory).Scan(RoomsFamilies.RoomPrefix(roomId)))
            b.Delete(RoomsFamilies.AppserviceDirectory, k);
        store.Write(b);
    }

    /// <summary>Every room this server has state of (joined now or before; not rooms only invited to over federation).</summary>
    public IEnumerable<string> AllRoomIds()
    {
        foreach (var (k, v) in _info.Scan([]))
            if (Obj(v)["state_group"] is not null) yield return Encoding.UTF8.GetString(k);
    }

    /// <summary>Who blocked the room and when (admin API), or null.</summary>
    public JsonObject? Blocked(string roomId) => Flag(RoomsFamilies.Blocked, RoomsFamilies.BlockedKey(roomId));

    public void SetBlocked(string roomId, string? byUser) => SetFlag(RoomsFamilies.Blocked, RoomsFamilies.BlockedKey(roomId), byUser);

    /// <summary>Who took the room off federation and when (Conduit admin API), or null while it federates.</summary>
    public JsonObject? FederationDisabled(string roomId) => Flag(RoomsFamilies.FederationDisabled, RoomsFamilies.FederationDisabledKey(roomId));

    public void SetFederationDisabled(string roomId, string? byUser) => SetFlag(RoomsFamilies.FederationDisabled, RoomsFamilies.FederationDisabledKey(roomId), byUser);

    /// <summary>An admin's flag on a room: {user_id, ts} of who set it, or null when not set.</summary>
    JsonObject? Flag(string family, byte[] key) => store.Map(family).Get(key) is { } v ? Obj(v) : null;

    /// <summary>Sets the flag as set by <paramref name="byUser"/> now, or clears it (null).</summary>
    void SetFlag(string family, byte[] key, string? byUser)
    {
        var map = store.Map(family);
        if (byUser is null) map.Delete(key);
        else map.Put(key, Json(new JsonObject { ["user_id"] = byUser, ["ts"] = Ids.NowMs() }));
    }

    /// <summary>Forgetting drops the user's record of a room they left, so it leaves their /sync.</summary>
    public void Forget(string userId, string roomId) => _userRooms.Delete(RoomsFamilies.UserRoomKey(userId, roomId));

    /// <summary>
    /// The auth chain of an event (spec: server-server-api, "Auth chain"): its auth events, theirs, and so on,
    /// each once, nearest first. Events this server does not have are left out.
    /// </summary>
    public IReadOnlyList<string> AuthChain(string eventId)
    {
        var seen = new HashSet<string>();
        var order = new List<string>();
        var queue = new Queue<string>();
        void Enqueue(StoredEvent e)
        {
            foreach (var id in EventAuth.AuthEventIds(e.Pdu))
                if (seen.Add(id)) queue.Enqueue(id);
        }
        if (Event(eventId) is { } start) Enqueue(start);
        while (queue.TryDequeue(out var id))
        {
            if (Event(id) is not { } e) continue;
            order.Add(id);
            Enqueue(e);
        }
        return order;
    }

    /// <summary>The membership the user had before their current one (from its prev_content), if any.</summary>
    public string? PreviousMembership(Membership m) => PreviousMembership(Event(m.EventId));

    /// <summary>The membership a member event replaced, or null if it was the target's first.</summary>
    public string? PreviousMembership(StoredEvent? memberEvent)
        => memberEvent?.Meta["prev_content_event"]?.GetValue<string>() is { } prevId
            ? MemberContent.MembershipOf(Event(prevId)?.Content)
            : null;

    /// <summary>The room's current power levels, read as the auth rules read them (v12 creators included).</summary>
    public PowerLevels PowerLevelsOf(string roomId)
        => PowerLevels.FromEvents(VersionOf(roomId) ?? Conduit.Common.Events.RoomVersion.V11, StateEvent(roomId, "m.room.create", "")?.Pdu, StateEvent(roomId, "m.room.power_levels", "")?.Pdu);
}

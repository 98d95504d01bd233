using System.Buffers;
using System.Text.Json;
using Conduit.Common.Events;
using Conduit.Protos.Rooms;
using Google.Protobuf;

namespace Conduit.Rooms;

/// <summary>
/// Builds the "rooms" part of a /sync response between two room-stream positions (spec: client-server-api,
/// "GET /sync") as the SyncRooms stream of protos/rooms.proto: a head (position, joined rooms), then each room's
/// JSON written once with a <see cref="Utf8JsonWriter"/> as it is built and sent in parts of about
/// <see cref="PartBytes"/>, so memory stays bounded by one room whatever the number of rooms. Everything is read
/// as of one position taken at the start (the published <see cref="RoomStream.Position"/>: every event at or
/// before it is durable and visible), which becomes the next since.
/// </summary>
public sealed class SyncBuilder(RoomStore rooms, StateStore states, ClientEvents format, Visibility visibility, RoomStream stream)
{
    public const int DefaultTimelineLimit = 10;

    /// <summary>
    /// Rooms' JSON is sent in messages of at most this many bytes of JSON, or one piece when a room is larger (a
    /// room is cut into pieces at the first event boundary past this size, so a piece exceeds it by one event at
    /// most): far below gRPC's message limit, and each piece's bytes stay out of the large object heap.
    /// </summary>
    internal int PartBytes { get; init; } = 32 * 1024;

    static readonly SyncSection[] Sections = [SyncSection.Join, SyncSection.Invite, SyncSection.Leave, SyncSection.Knock];

    static SyncSection? SectionOf(string membership) => membership switch
    {
        "join" => SyncSection.Join,
        "invite" => SyncSection.Invite,
        "leave" or "ban" => SyncSection.Leave,
        "knock" => SyncSection.Knock,
        _ => null,
    };

    /// <summary>
    /// The SyncRooms stream for a user: the head first (listing the joined rooms if <paramref name="withJoinedRoomIds"/>),
    /// then the parts, each yielded as soon as it is full (or the last one at the end). The caller sends each before
    /// asking for the next, so a slow reader slows the build.
    /// </summary>
    public IEnumerable<SyncRoomsPart> Build(string userId, string? deviceId, long since, bool fullState, Filter? filter, bool withJoinedRoomIds = true,
        IReadOnlySet<string>? ignored = null)
    {
        var upTo = stream.Position;
        var memberships = rooms.RoomsOf(userId).ToList();
        var head = new SyncRoomsHead { Position = upTo };
        if (withJoinedRoomIds)
            foreach (var (roomId, m) in memberships)
                if (m.State == "join") head.JoinedRoomIds.Add(roomId);
        yield return new SyncRoomsPart { Head = head };

        var roomFilter = filter?.Room;
        var limit = roomFilter?.Timeline?.Limit ?? DefaultTimelineLimit;
        using var output = new PartWriter(PartBytes);
        // Sections in the order the contract promises; a user's membership list is small next to their rooms' JSON.
        foreach (var section in Sections)
            foreach (var (roomId, m) in memberships)
            {
                if (SectionOf(m.State) != section) continue;
                // A membership newer than the snapshot is reported by the next sync.
                if (m.Pos > upTo) continue;
                if (roomFilter is not null && !roomFilter.IncludesRoom(roomId)) continue;
                WriteRoom(output, section, roomId, m, userId, deviceId, since, upTo, fullState, limit, filter, ignored);
                while (output.TakeReady() is { } part) yield return part;
            }
        if (output.TakeRest() is { } rest) yield return rest;
    }

    void WriteRoom(PartWriter output, SyncSection section, string roomId, Membership m, string userId, string? deviceId,
        long since, long upTo, bool fullState, int limit, Filter? filter, IReadOnlySet<string>? ignored)
    {
        var changed = m.Pos > since;
        var w = output.Json;
        switch (m.State)
        {
            case "join":
            {
                // A room joined since the last sync is sent whole, like an initial sync of that room.
                var roomSince = changed && rooms.PreviousMembership(m) != "join" ? 0 : since;
                if (PlanSection(roomId, userId, roomSince, upTo, fullState || roomSince == 0, limit, filter, ignored) is not { } plan) return;
                output.BeginRoom(section, roomId);
                WriteSection(output, plan, roomId, userId, deviceId, filter);
                Summary(w, roomId, userId);
                // "ephemeral", "account_data" and the notification counts are the sync service's to add
                // (protos/rooms.proto, SyncRoomPiece).
                output.EndRoom();
                return;
            }
            case "invite" when changed || since == 0:
                // Invites from ignored users are never sent (spec: "Ignoring Users"); the invite stays, unanswered.
                if (ignored is not null && rooms.Event(m.EventId) is { } invite && ignored.Contains(invite.Sender)) return;
                output.BeginRoom(section, roomId);
                StrippedState(output, "invite_state", roomId, userId);
                output.EndRoom();
                return;
            case "knock" when changed || since == 0:
                output.BeginRoom(section, roomId);
                StrippedState(output, "knock_state", roomId, userId);
                output.EndRoom();
                return;
            case "leave" or "ban" when (changed && since > 0) || (since == 0 && filter?.Room?.IncludeLeave == true) || fullState && changed:
            {
                // The timeline ends with the user's own leave; nothing after it is theirs to see.
                var wasMember = rooms.PreviousMembership(m) == "join";
                var plan = wasMember ? PlanSection(roomId, userId, since, m.Pos, fullState || since == 0, limit, filter, ignored) : null;
                output.BeginRoom(section, roomId);
                if (plan is not null) WriteSection(output, plan, roomId, userId, deviceId, filter);
                else
                {
                    w.WriteStartObject("timeline");
                    w.WriteStartArray("events");
                    if (rooms.Event(m.EventId) is { } le) format.Format(le, deviceId, false).WriteTo(w);
                    w.WriteEndArray();
                    w.WriteBoolean("limited", false);
                    w.WriteEndObject();
                    EmptyEvents(w, "state");
                }
                if (plan is not null) EmptyEvents(w, "account_data");
                output.EndRoom();
                return;
            }
        }
    }

    static void EmptyEvents(Utf8JsonWriter w, string name)
    {
        w.WriteStartObject(name);
        w.WriteStartArray("events");
        w.WriteEndArray();
        w.WriteEndObject();
    }

    void StrippedState(PartWriter output, string name, string roomId, string userId)
    {
        var w = output.Json;
        w.WriteStartObject(name);
        w.WritePropertyName("events");
        format.StrippedState(roomId, userId).WriteTo(w);
        w.WriteEndObject();
    }

    /// <summary>The room's state group after the last event at or before <paramref name="pos"/>.</summary>
    ulong GroupAt(string roomId, long pos)
    {
        foreach (var (_, id) in rooms.Timeline(roomId, 0, pos, backwards: true))
            // "sg_room": the room's state after a remote event when it differs from the state after that event
            // alone (forward extremities merged by state resolution). Events without state here are passed over.
            if (rooms.Event(id) is { HasState: true } e) return e.Meta["sg_room"]?.GetValue<ulong>() ?? e.StateAfter;
        return 0;
    }

    /// <summary>What a room's timeline and state sections hold: the timeline's events, and the state's event IDs
    /// (read and written one at a time, since a large room's state is most of its JSON).</summary>
    sealed record SectionPlan(List<StoredEvent> Timeline, bool Limited, string PrevBatch, IEnumerable<string> StateIds, HashSet<string> InTimeline);

    /// <summary>Timeline (newest <paramref name="limit"/> events in (since, upTo]) and the state not in it; null when
    /// an incremental sync has nothing to say about the room.</summary>
    SectionPlan? PlanSection(string roomId, string userId, long since, long upTo, bool wholeState, int limit, Filter? filter,
        IReadOnlySet<string>? ignored = null)
    {
        var timelineFilter = filter?.Room?.Timeline;
        // History visibility bounds the timeline like /messages: nothing before what the user may see.
        var window = visibility.ReadableWindow(userId, roomId);
        if (window is null) return null;
        var picked = new List<StoredEvent>();
        var limited = false;
        long firstPos = upTo;
        foreach (var (pos, id) in rooms.Timeline(roomId, Math.Max(since, window.After), Math.Min(upTo, window.UpTo), backwards: true))
        {
            if (picked.Count >= limit)
            {
                limited = true;
                break;
            }
            firstPos = pos;
            if (rooms.Event(id) is not { } e || !visibility.CanSee(userId, e, window)) continue;
            if (timelineFilter is not null && !timelineFilter.Matches(e.Type, e.Sender, roomId)) continue;
            // An ignored user's messages are left out; their state events are not (spec: "Ignoring Users").
            if (ignored is not null && e.StateKey is null && ignored.Contains(e.Sender)) continue;
            picked.Add(e);
        }
        if (picked.Count == 0 && !wholeState && since > 0) return null;
        picked.Reverse();

        // "state" is the state at the start of the timeline (spec: "Syncing"): all of it for an initial or
        // full-state sync; for a limited incremental sync, what changed in the gap the timeline skipped. Entries are
        // chosen by short state key and short event ID; only those chosen are resolved to event IDs and loaded.
        IEnumerable<KeyValuePair<ulong, ulong>> entries = [];
        // An event without state here at the start (an invite of a room joined over federation after it) is passed
        // over: the state is the one before the first event that has some (our join: the state the resident sent).
        var startGroup = picked.FirstOrDefault(e => e.HasState) is { } first ? first.StateBefore : GroupAt(roomId, Math.Min(upTo, window.UpTo));
        if (wholeState) entries = states.Entries(startGroup);
        else if (limited)
        {
            var atSince = states.Entries(GroupAt(roomId, since));
            entries = states.Entries(startGroup).Where(kv => !atSince.TryGetValue(kv.Key, out var old) || old != kv.Value);
        }
        var prevBatch = $"t{(picked.Count > 0 ? picked[0].Pos - 1 : firstPos)}";
        // Lazy-loaded members (spec: client-server-api, "Lazy-loading room members"): of the m.room.member events, only
        // those of the timeline's senders and of the user, taken from the state at the start of the timeline, and sent
        // whenever those senders appear (the spec allows these "redundant" members; the client needs them to show names).
        // Chosen by key before any event is read: a large room's state is mostly member events that are not sent.
        if (filter?.Room?.State?.LazyLoadMembers == true)
        {
            var lazyKeys = new List<ulong>();
            foreach (var u in picked.Select(e => e.Sender).Append(userId).Distinct())
                if (states.TryShortStateKey("m.room.member", u, out var k)) lazyKeys.Add(k);
            var chosen = entries.Where(kv => lazyKeys.Contains(kv.Key) || states.StateKeyOf(kv.Key).Type != "m.room.member").ToList();
            foreach (var k in lazyKeys)
                if (!chosen.Exists(kv => kv.Key == k) && startGroup != 0 && states.Lookup(startGroup, k) is { } e) chosen.Add(new(k, e));
            entries = chosen;
        }
        var stateIds = entries.Select(kv => states.EventIdOf(kv.Value));
        return new SectionPlan(picked, limited, prevBatch, stateIds, picked.Select(e => e.EventId).ToHashSet());
    }

    void WriteSection(PartWriter output, SectionPlan plan, string roomId, string userId, string? deviceId, Filter? filter)
    {
        var w = output.Json;
        w.WriteStartObject("timeline");
        w.WriteStartArray("events");
        foreach (var e in plan.Timeline)
        {
            format.Format(e, deviceId, false, userId).WriteTo(w);
            output.MayCut();
        }
        w.WriteEndArray();
        w.WriteBoolean("limited", plan.Limited);
        w.WriteString("prev_batch", plan.PrevBatch);
        w.WriteEndObject();

        var stateFilter = filter?.Room?.State;
        w.WriteStartObject("state");
        w.WriteStartArray("events");
        foreach (var id in plan.StateIds)
        {
            if (plan.InTimeline.Contains(id) || rooms.Event(id) is not { } ev) continue;
            if (stateFilter is not null && !stateFilter.Matches(ev.Type, ev.Sender, roomId)) continue;
            format.Format(ev, deviceId, false).WriteTo(w);
            output.MayCut();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }

    void Summary(Utf8JsonWriter w, string roomId, string userId)
    {
        int joinedCount = 0, invitedCount = 0;
        var heroes = new List<string>(5);
        foreach (var (u, m) in rooms.Members(roomId))
        {
            if (m == "join") joinedCount++;
            else if (m == "invite") invitedCount++;
            if (u != userId && m is "join" or "invite" && heroes.Count < 5) heroes.Add(u);
        }
        w.WriteStartObject("summary");
        w.WriteNumber("m.joined_member_count", joinedCount);
        w.WriteNumber("m.invited_member_count", invitedCount);
        // Heroes only matter to clients when the room has neither a name nor a canonical alias.
        if (rooms.StateContent(roomId, "m.room.name") is null && rooms.StateContent(roomId, "m.room.canonical_alias") is null)
        {
            w.WriteStartArray("m.heroes");
            foreach (var h in heroes) w.WriteStringValue(h);
            w.WriteEndArray();
        }
        w.WriteEndObject();
    }

    /// <summary>
    /// Writes rooms' JSON once into one pooled buffer and cuts it into SyncRoomsPart messages: each room is written
    /// as an object whose members (the bytes between its braces) become one or more pieces. The buffer holds at most
    /// about one part; a piece's bytes are copied out into its message, so the buffer is reused at once and returned
    /// to the pool at the end. The messages of a room cut into several wait in <see cref="_ready"/> until the room
    /// is done (a synchronous builder cannot yield from inside a room), so memory is bounded by the largest room.
    /// </summary>
    sealed class PartWriter : IBufferWriter<byte>, IDisposable
    {
        readonly int _partBytes;
        readonly Queue<SyncRoomsPart> _ready = new();
        byte[] _buffer;
        int _written;
        int _roomStart = -1;
        SyncSection _section;
        string _roomId = "";
        SyncRoomsPart _part = new();
        int _partSize;

        public PartWriter(int partBytes)
        {
            _partBytes = partBytes;
            // A part and the event that crosses its size fit without growing (a room is cut after that event).
            _buffer = ArrayPool<byte>.Shared.Rent(partBytes + 16 * 1024);
            Json = new Utf8JsonWriter(this);
        }

        public Utf8JsonWriter Json { get; }

        public void BeginRoom(SyncSection section, string roomId)
        {
            (_section, _roomId) = (section, roomId);
            Json.Reset();
            _written = 0;
            Json.WriteStartObject();
            Json.Flush();
            _roomStart = _written;
        }

        /// <summary>At an event boundary: once the room's pending bytes fill a part, they go out as a piece.</summary>
        public void MayCut()
        {
            if (_written - _roomStart + Json.BytesPending >= _partBytes) Cut(last: false);
        }

        public void EndRoom()
        {
            Cut(last: true);
            // The closing brace is not part of the contract's members: drop it with the writer's state.
            Json.Reset();
            _written = 0;
            _roomStart = -1;
        }

        void Cut(bool last)
        {
            Json.Flush();
            var length = _written - _roomStart;
            // A part stays within the part size unless a single piece is larger (one event past it, at most).
            if (_partSize > 0 && _partSize + length > _partBytes) Seal();
            _part.Rooms.Add(new SyncRoomPiece
            {
                Section = _section,
                RoomId = _roomId,
                Json = ByteString.CopyFrom(_buffer, _roomStart, length),
                Last = last,
            });
            _partSize += length;
            // The rest of the room is written from the same place; the writer keeps its own state (depth, commas).
            _written = _roomStart;
            if (_partSize >= _partBytes) Seal();
        }

        void Seal()
        {
            _ready.Enqueue(_part);
            _part = new SyncRoomsPart();
            _partSize = 0;
        }

        public SyncRoomsPart? TakeReady() => _ready.TryDequeue(out var p) ? p : null;

        /// <summary>The last, partly filled part, if it has any room.</summary>
        public SyncRoomsPart? TakeRest()
        {
            if (_part.Rooms.Count > 0) Seal();
            return TakeReady();
        }

        public void Advance(int count) => _written += count;

        public Memory<byte> GetMemory(int sizeHint = 0)
        {
            Ensure(sizeHint);
            return _buffer.AsMemory(_written);
        }

        public Span<byte> GetSpan(int sizeHint = 0)
        {
            Ensure(sizeHint);
            return _buffer.AsSpan(_written);
        }

        void Ensure(int sizeHint)
        {
            var need = _written + Math.Max(sizeHint, 256);
            if (need <= _buffer.Length) return;
            // Grows only for a single event larger than the buffer; the buffer goes back to the pool at the end.
            var bigger = ArrayPool<byte>.Shared.Rent(Math.Max(need, _buffer.Length * 2));
            _buffer.AsSpan(0, _written).CopyTo(bigger);
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = bigger;
        }

        public void Dispose()
        {
            Json.Dispose();
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = [];
        }
    }
}

using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Protos.Rooms;
using Conduit.Rooms.Rules;

namespace Conduit.Rooms;

/// <summary>
/// The rooms part of simplified sliding sync (MSC4186, as Synapse speaks it to Element X): sorts the user's rooms
/// by bump_stamp into the requested lists, and writes the entry of each room in a list range or subscription that
/// is new to the connection, whose config changed, or that has news after the connection's position. Everything
/// is read as of one published stream position, which becomes the connection's next one.
/// </summary>
public sealed class SlidingBuilder(RoomStore rooms, ClientEvents format, Visibility visibility, RoomStream stream)
{
    public const int MaxTimelineLimit = 1000;

    /// <summary>Events that move a room up the list (Synapse's bump event types).</summary>
    static readonly HashSet<string> BumpTypes =
        ["m.room.create", "m.room.message", "m.room.encrypted", "m.sticker", "m.call.invite", "m.poll.start", "m.beacon_info"];

    /// <summary>
    /// Bump stamps without reading every room of the user on every request: the room stream is scanned once for all
    /// requests, from where the first one found it (the scan's floor) on, keeping per room its newest bump event
    /// after the floor; what lies at or below the floor is read from the room's own timeline once. A request then
    /// costs the stream's new events, not one timeline read per room (a user in 1,000 rooms woken by every message).
    /// Positions are contiguous and published only once durable (RoomWriter), so the shared scan misses nothing.
    /// </summary>
    sealed class BumpScan(long floor)
    {
        public readonly long Floor = floor;
        public long UpTo = floor;
        /// <summary>Per room: the newest bump event's position in (Floor, UpTo].</summary>
        public readonly ConcurrentDictionary<string, long> After = new(StringComparer.Ordinal);
        /// <summary>Per room: the newest bump event's position at or before Floor (0: none).</summary>
        public readonly ConcurrentDictionary<string, long> Below = new(StringComparer.Ordinal);
    }

    readonly Lock _scanLock = new();
    BumpScan? _scan;
    /// <summary>A shared scan this far behind starts over at the stream's position instead of catching up.</summary>
    const long MaxStreamCatchUp = 100_000;

    /// <summary>At most this many events after the connection's position are scanned for state changes per room.</summary>
    const int StateScanLimit = 2000;

    sealed record Candidate(string RoomId, Membership M, long BumpStamp);

    /// <summary>A room's merged config: the largest timeline limit, and every required_state entry.</summary>
    sealed class Config
    {
        public int TimelineLimit;
        public readonly SortedSet<(string Type, string Key)> RequiredState = [];

        public void Add(SlidingRoomConfig? c)
        {
            if (c is null) return;
            TimelineLimit = Math.Max(TimelineLimit, Math.Clamp(c.TimelineLimit, 0, MaxTimelineLimit));
            foreach (var s in c.RequiredState) RequiredState.Add((s.Type, s.StateKey));
        }

        /// <summary>The config as JSON, [timeline_limit, [[type, state_key], ...]]: what the connection records.</summary>
        public string Key => KeyOf(TimelineLimit, RequiredState);

        public static string KeyOf(int timelineLimit, IEnumerable<(string Type, string Key)> requiredState)
            => new JsonArray(timelineLimit, new JsonArray([.. requiredState.Select(s => (JsonNode)new JsonArray(s.Type, s.Key))])).ToJsonString();

        /// <summary>The config a key records; null when it cannot be read (the room is then sent whole again).</summary>
        public static Config? Parse(string key)
        {
            try
            {
                if (JsonNode.Parse(key) is not JsonArray { Count: 2 } old || !old[0]!.TryGetInteger(out var limit) || old[1] is not JsonArray specs) return null;
                var c = new Config { TimelineLimit = (int)Math.Clamp(limit, 0, MaxTimelineLimit) };
                foreach (var p in specs.OfType<JsonArray>()) c.RequiredState.Add((p[0]?.GetValue<string>() ?? "", p[1]?.GetValue<string>() ?? ""));
                return c;
            }
            catch (Exception e) when (e is System.Text.Json.JsonException or InvalidOperationException or FormatException)
            {
                return null;
            }
        }
    }

    /// <summary>How a room is written: whole (initial), with its timeline expanded to the newest events, or with
    /// what is new after <see cref="Since"/>; <see cref="LazySent"/>: the $LAZY members the connection has.</summary>
    sealed record Sending(string RoomId, Membership? M, Config Config, bool Initial, bool Expanded, long Since, IReadOnlyCollection<string> LazySent);

    /// <summary>A written entry, whether its timeline was limited, and the $LAZY members the connection has after it.</summary>
    sealed record Written(JsonObject Json, bool Limited, List<string> Lazy);

    /// <summary>At most this many $LAZY members are remembered per room and connection (Synapse's bound); one
    /// forgotten is sent again with their next event.</summary>
    const int LazyRemembered = 100;

    /// <summary>Room types (m.room.create never changes) and rooms known encrypted (encryption is never turned
    /// off), read from current state: the list filters read them for every room of the user on every request.</summary>
    readonly ConcurrentDictionary<string, string> _roomTypes = new(StringComparer.Ordinal);
    readonly ConcurrentDictionary<string, bool> _encrypted = new(StringComparer.Ordinal);

    public SlidingRoomsReply Build(SlidingRoomsRequest req)
    {
        var upTo = stream.Position;
        var userId = req.UserId;
        var since = req.Since;
        var dms = req.DmRoomIds.ToHashSet(StringComparer.Ordinal);
        var ignored = req.IgnoredUsers.ToHashSet(StringComparer.Ordinal);
        var reply = new SlidingRoomsReply { Position = upTo };

        // The rooms lists are made of: joined, invited and knocked, and those left or banned after the connection's
        // position that it was sent (so the client hears of the leave).
        var candidates = new List<Candidate>();
        var memberships = new Dictionary<string, Membership>(StringComparer.Ordinal);
        foreach (var (roomId, m) in rooms.RoomsOf(userId))
        {
            memberships[roomId] = m;
            var left = !(m.State is "join" or "invite" or "knock");
            if (left && !(since > 0 && req.Sent.ContainsKey(roomId) && m.Pos > Math.Min(since, req.SentUpTo.GetValueOrDefault(roomId, since)))) continue;
            reply.ListsHoldLeftRooms |= left;
            if (m.State == "invite" && ignored.Count > 0 && rooms.Event(m.EventId) is { } invite && ignored.Contains(invite.Sender)) continue;
            candidates.Add(new Candidate(roomId, m, BumpStamp(roomId, m, upTo)));
        }
        candidates.Sort((a, b) => b.BumpStamp != a.BumpStamp ? b.BumpStamp.CompareTo(a.BumpStamp) : string.CompareOrdinal(a.RoomId, b.RoomId));

        var bumps = candidates.ToDictionary(c => c.RoomId, c => c.BumpStamp, StringComparer.Ordinal);
        var configs = new Dictionary<string, Config>(StringComparer.Ordinal);
        Config ConfigOf(string roomId) => configs.TryGetValue(roomId, out var c) ? c : configs[roomId] = new Config();
        foreach (var list in req.Lists)
        {
            var matching = candidates.Where(c => Matches(c, userId, list.Filters, dms)).ToList();
            var lr = new SlidingListReply { Name = list.Name, Count = matching.Count };
            var inRange = new SortedSet<int>();
            foreach (var r in list.Ranges)
                for (var i = Math.Max(0, r.Start); i <= Math.Min(r.End, matching.Count - 1); i++) inRange.Add((int)i);
            foreach (var i in inRange)
            {
                lr.RoomIds.Add(matching[i].RoomId);
                ConfigOf(matching[i].RoomId).Add(list.Config);
            }
            reply.Lists.Add(lr);
        }
        foreach (var sub in req.Subscriptions)
        {
            // A subscription to a room the user may not see is left out, as Synapse does.
            if (!memberships.ContainsKey(sub.RoomId) && visibility.ReadableWindow(userId, sub.RoomId) is null) continue;
            if (rooms.Info(sub.RoomId) is null) continue;
            reply.SubscribedRoomIds.Add(sub.RoomId);
            ConfigOf(sub.RoomId).Add(sub.Config);
        }

        foreach (var (roomId, config) in configs)
        {
            var m = memberships.GetValueOrDefault(roomId);
            if (m?.State != "join") reply.NotJoinedRoomIds.Add(roomId);
            // As Synapse: a room sent before is sent whole again only when its config asks for state it was not sent
            // with; a larger timeline_limit expands its timeline to the newest events (unstable_expanded_timeline).
            // A room that was out of every range and subscription picks up from where the connection left it.
            var prev = req.Sent.TryGetValue(roomId, out var sentKey) ? Config.Parse(sentKey) : null;
            var initial = prev is null || config.RequiredState.Any(s => !prev.RequiredState.Contains(s));
            var expanded = !initial && config.TimelineLimit > prev!.TimelineLimit;
            var roomSince = initial ? 0 : req.SentUpTo.TryGetValue(roomId, out var upToBefore) && upToBefore < since ? upToBefore : since;
            if (!initial && !expanded && !HasNews(userId, roomId, m, roomSince, upTo)) continue;
            var bump = bumps.TryGetValue(roomId, out var b) ? b : BumpStamp(roomId, m, upTo);
            IReadOnlyCollection<string> lazySent = !initial && req.LazyMembers.TryGetValue(roomId, out var lazy) ? lazy.Values : [];
            var sending = new Sending(roomId, m, config, initial, expanded, roomSince, lazySent);
            var written = Entry(userId, req.DeviceId, sending, since, upTo, bump, dms.Contains(roomId), ignored);
            // The config recorded: the one sent with; a timeline_limit lowered is recorded when the timeline was
            // limited (the client has a gap, so raising it again expands the timeline again), as Synapse does.
            var key = initial ? config.Key
                : expanded || (written.Limited && config.TimelineLimit < prev!.TimelineLimit) ? Config.KeyOf(config.TimelineLimit, prev!.RequiredState)
                : sentKey!;
            var room = new SlidingRoom { RoomId = roomId, Json = written.Json.ToJsonString(), ConfigKey = key, Initial = initial, ExpandedTimeline = expanded };
            room.LazyMembers.AddRange(written.Lazy);
            reply.Rooms.Add(room);
        }
        return reply;
    }

    bool Matches(Candidate c, string userId, SlidingFilters? f, HashSet<string> dms)
    {
        if (f is null) return true;
        if (f.HasIsDm && f.IsDm != dms.Contains(c.RoomId)) return false;
        if (f.HasIsInvite && f.IsInvite != (c.M.State == "invite")) return false;
        return MatchesState(c.RoomId, userId, f);
    }

    /// <summary>The filters that read the room's state (after the cheap ones passed).</summary>
    bool MatchesState(string roomId, string userId, SlidingFilters f)
    {
        if (f.HasIsEncrypted && f.IsEncrypted != IsEncrypted(roomId, userId)) return false;
        if (f.RoomTypes is not null || f.NotRoomTypes is not null)
        {
            var type = RoomType(roomId, userId);
            if (f.RoomTypes is { } yes && !yes.Values.Contains(type)) return false;
            if (f.NotRoomTypes is { } no && no.Values.Contains(type)) return false;
        }
        if (f.Spaces is { } spaces && !spaces.Values.Any(s => rooms.StateEvent(s, "m.space.child", roomId) is { } child && child.Content.Count > 0))
            return false;
        return true;
    }

    bool IsEncrypted(string roomId, string userId)
    {
        if (_encrypted.ContainsKey(roomId)) return true;
        if (rooms.StateContent(roomId, "m.room.encryption") is not null) return _encrypted[roomId] = true;
        return StrippedOrCurrent(roomId, userId, "m.room.encryption") is not null;
    }

    /// <summary>The room's type ("" for none).</summary>
    string RoomType(string roomId, string userId)
    {
        if (_roomTypes.TryGetValue(roomId, out var type)) return type;
        if (rooms.StateContent(roomId, "m.room.create") is { } create) return _roomTypes[roomId] = ContentField.String(create, "type") ?? "";
        return ContentField.String(StrippedOrCurrent(roomId, userId, "m.room.create"), "type") ?? "";
    }

    /// <summary>A state event's content from the room's current state, or for a room this server has no state of
    /// (an invite over federation), from the invite's stripped state.</summary>
    JsonObject? StrippedOrCurrent(string roomId, string userId, string type)
    {
        if (rooms.StateContent(roomId, type) is { } content) return content;
        if (rooms.StateEvent(roomId, "m.room.member", userId) is { } invite && invite.Meta["invite_room_state"] is JsonArray sent)
            foreach (var e in sent)
                if (e is JsonObject o && ContentField.String(o, "type") == type && ContentField.String(o, "state_key") == "")
                    return o["content"] as JsonObject;
        return null;
    }

    /// <summary>bump_stamp (Synapse): the position of the room's newest bump event for a joined room (the membership's
    /// when there is none), the membership's position otherwise; as of <paramref name="upTo"/>.</summary>
    long BumpStamp(string roomId, Membership? m, long upTo)
    {
        if (m is null) return 0;
        if (m.State != "join") return m.Pos;
        var scan = ScanStream(upTo);
        // A request that read the stream's position before this scan began: the room's timeline alone (rare).
        if (upTo < scan.Floor) return Or(NewestBump(roomId, 0, upTo), m.Pos);
        var bump = scan.Below.GetOrAdd(roomId, r => NewestBump(r, 0, scan.Floor));
        // The newest bump after the floor, unless a later request already scanned past this one's position.
        if (scan.After.TryGetValue(roomId, out var newer))
            bump = newer <= upTo ? newer : Math.Max(bump, NewestBump(roomId, scan.Floor, upTo));
        return Or(bump, m.Pos);

        static long Or(long bump, long membership) => bump > 0 ? bump : membership;
    }

    /// <summary>Brings the shared scan of the room stream up to <paramref name="upTo"/> (a new one when there is none
    /// or it is too far behind) and returns it: complete up to at least <paramref name="upTo"/> or from above it.</summary>
    BumpScan ScanStream(long upTo)
    {
        lock (_scanLock)
        {
            if (_scan is null || upTo - _scan.UpTo > MaxStreamCatchUp) return _scan = new BumpScan(upTo);
            if (upTo > _scan.UpTo)
            {
                foreach (var (pos, roomId, e) in rooms.StreamAfter(_scan.UpTo, upTo))
                    if (BumpTypes.Contains(e.Type)) _scan.After[roomId] = pos;
                _scan.UpTo = upTo;
            }
            return _scan;
        }
    }

    /// <summary>The position of the room's newest bump event in (after, upTo], 0 when none.</summary>
    long NewestBump(string roomId, long after, long upTo)
    {
        foreach (var (pos, id) in rooms.Timeline(roomId, after, upTo, backwards: true))
            if (rooms.Event(id) is { } e && BumpTypes.Contains(e.Type)) return pos;
        return 0;
    }

    /// <summary>Whether a room sent before has anything after <paramref name="since"/>: a membership change or an
    /// event the user may read.</summary>
    bool HasNews(string userId, string roomId, Membership? m, long since, long upTo)
    {
        if (m is not null && m.Pos > since && m.Pos <= upTo) return true;
        if (m?.State is "invite" or "knock" || visibility.ReadableWindow(userId, roomId) is not { } window) return false;
        return rooms.Timeline(roomId, Math.Max(since, window.After), Math.Min(upTo, window.UpTo), backwards: true).Any();
    }

    Written Entry(string userId, string deviceId, Sending s, long since, long upTo, long bump, bool isDm, HashSet<string> ignored)
    {
        var (roomId, m, config, initial) = (s.RoomId, s.M, s.Config, s.Initial);
        var o = new JsonObject();
        var state = m?.State ?? "";
        if (initial || NameChanged(roomId, s.Since, upTo)) Naming(o, roomId, userId);
        if (initial) o["initial"] = true;
        if (state is "invite" or "knock")
        {
            o[state == "invite" ? "invite_state" : "knock_state"] = format.StrippedState(roomId, userId);
            o["membership"] = state;
            o["bump_stamp"] = bump;
            o["is_dm"] = isDm;
            return new Written(o, false, []);
        }
        if (state != "join" && state.Length > 0) o["membership"] = state;

        var window = visibility.ReadableWindow(userId, roomId);
        var timeline = new JsonArray();
        var picked = new List<StoredEvent>();
        var limited = false;
        string? prevBatch = null;
        if (window is not null)
        {
            var top = Math.Min(upTo, window.UpTo);
            long lastPos = top;
            var timelineSince = initial || s.Expanded ? 0 : s.Since;
            foreach (var (pos, id) in rooms.Timeline(roomId, Math.Max(timelineSince, window.After), top, backwards: true))
            {
                if (picked.Count >= config.TimelineLimit)
                {
                    limited = true;
                    break;
                }
                lastPos = pos - 1;
                if (rooms.Event(id) is not { } e || !visibility.CanSee(userId, e, window)) continue;
                if (e.StateKey is null && ignored.Contains(e.Sender)) continue;
                picked.Add(e);
            }
            picked.Reverse();
            prevBatch = $"t{(picked.Count > 0 ? picked[0].Pos - 1 : lastPos)}";
            foreach (var e in picked) timeline.Add((JsonNode)format.Format(e, deviceId.Length > 0 ? deviceId : null, false, userId));
        }
        o["timeline"] = timeline;
        var lazy = new List<string>();
        o["required_state"] = RequiredState(userId, s, picked, upTo, window, lazy);
        if (prevBatch is not null) o["prev_batch"] = prevBatch;
        o["limited"] = limited;
        if (s.Expanded) o["unstable_expanded_timeline"] = true;
        // Events new to the connection: none on its first response for the room, as Synapse counts.
        o["num_live"] = since == 0 ? 0 : picked.Count(e => e.Pos > since);
        o["bump_stamp"] = bump;
        var (joined, invited) = Counts(roomId);
        o["joined_count"] = joined;
        o["invited_count"] = invited;
        o["is_dm"] = isDm;
        return new Written(o, limited, lazy);
    }

    bool NameChanged(string roomId, long since, long upTo)
        => new[] { "m.room.name", "m.room.avatar", "m.room.canonical_alias" }.Any(t => rooms.StateEvent(roomId, t, "") is { } e && e.Pos > since && e.Pos <= upTo)
           || (rooms.StateContent(roomId, "m.room.name") is null && rooms.Timeline(roomId, since, upTo, true).Any(x => rooms.Event(x.EventId)?.Type == "m.room.member"));

    /// <summary>name, avatar and, for a room without a name, heroes (up to 5 other members, with their profile).</summary>
    void Naming(JsonObject o, string roomId, string userId)
    {
        if (ContentField.String(StrippedOrCurrent(roomId, userId, "m.room.name"), "name") is { Length: > 0 } name) o["name"] = name;
        if (ContentField.String(StrippedOrCurrent(roomId, userId, "m.room.avatar"), "url") is { Length: > 0 } avatar) o["avatar"] = avatar;
        if (o["name"] is not null) return;
        var heroes = new JsonArray();
        foreach (var (u, m) in rooms.Members(roomId))
        {
            if (heroes.Count >= 5) break;
            if (u == userId || m is not ("join" or "invite")) continue;
            var hero = new JsonObject { ["user_id"] = u };
            var content = rooms.StateContent(roomId, "m.room.member", u);
            if (ContentField.String(content, "displayname") is { } dn) hero["displayname"] = dn;
            if (ContentField.String(content, "avatar_url") is { } av) hero["avatar_url"] = av;
            heroes.Add((JsonNode)hero);
        }
        if (heroes.Count > 0) o["heroes"] = heroes;
    }

    (int Joined, int Invited) Counts(string roomId)
    {
        int joined = 0, invited = 0;
        foreach (var (_, m) in rooms.Members(roomId))
            if (m == "join") joined++;
            else if (m == "invite") invited++;
        return (joined, invited);
    }

    static bool Wanted(IEnumerable<(string Type, string Key)> specs, string type, string key, string userId, HashSet<string> lazy)
    {
        foreach (var (t, k) in specs)
        {
            if (t != "*" && t != type) continue;
            if (k == "*" || k == key || (k == "$ME" && key == userId) || (k == "$LAZY" && type == "m.room.member" && lazy.Contains(key))) return true;
        }
        return false;
    }

    /// <summary>
    /// The room's state the config asks for: on a room's first sending, from its current state (as the user may see
    /// it: as it was at their leave for a former member); later, the matching state events after the connection's
    /// position that are still current. $LAZY members (the senders and member targets of the timeline) are sent
    /// with the timeline unless the connection has them already (<see cref="Sending.LazySent"/>); <paramref name="lazyAfter"/>
    /// gets the members it has after this entry.
    /// </summary>
    JsonArray RequiredState(string userId, Sending s, List<StoredEvent> timeline, long upTo, ReadWindow? window, List<string> lazyAfter)
    {
        var (roomId, config, initial) = (s.RoomId, s.Config, s.Initial);
        var arr = new JsonArray();
        var lazyOn = config.RequiredState.Contains(("m.room.member", "$LAZY"));
        if (config.RequiredState.Count == 0 || window is null || (!initial && window.UpTo != long.MaxValue))
        {
            if (lazyOn) lazyAfter.AddRange(s.LazySent);
            return arr;
        }
        var lazy = timeline.Select(e => e.Sender).Concat(timeline.Where(e => e.Type == "m.room.member" && e.StateKey is not null).Select(e => e.StateKey!))
            .ToHashSet(StringComparer.Ordinal);
        var had = s.LazySent.ToHashSet(StringComparer.Ordinal);
        var ids = new List<string>();
        var sentMembers = new HashSet<string>(StringComparer.Ordinal);
        var changedMembers = new HashSet<string>(StringComparer.Ordinal);
        void Send(string type, string key, string id)
        {
            ids.Add(id);
            if (type == "m.room.member") sentMembers.Add(key);
        }
        if (window.UpTo == long.MaxValue)
        {
            var current = rooms.CurrentState(roomId);
            var recent = initial ? null : RecentStateIds(roomId, s.Since, upTo);
            foreach (var ((type, key), id) in current)
            {
                var changed = recent?.Contains(id) == true;
                if (changed && type == "m.room.member") changedMembers.Add(key);
                if (!Wanted(config.RequiredState, type, key, userId, lazy)) continue;
                // Asked for by name ($ME, a user ID, "*"): sent first and when it changes; $LAZY only: also when the
                // connection does not have it yet.
                var lazyOnly = type == "m.room.member" && lazy.Contains(key) && !Wanted(config.RequiredState, type, key, userId, []);
                if (initial || changed || (lazyOnly && !had.Contains(key))) Send(type, key, id);
            }
        }
        else
            foreach (var e in visibility.VisibleState(userId, roomId) ?? [])
                if (Wanted(config.RequiredState, e.Type, e.StateKey!, userId, lazy)) Send(e.Type, e.StateKey!, e.EventId);
        foreach (var id in ids)
            if (rooms.Event(id) is { } e) arr.Add((JsonNode)format.Format(e, null, false));
        if (lazyOn)
        {
            // Kept: those the connection had whose membership did not change unsent; then those of this timeline.
            foreach (var u in s.LazySent)
                if ((!changedMembers.Contains(u) || sentMembers.Contains(u)) && !lazy.Contains(u)) lazyAfter.Add(u);
            foreach (var u in lazy)
                if (had.Contains(u) ? !changedMembers.Contains(u) || sentMembers.Contains(u) : sentMembers.Contains(u)) lazyAfter.Add(u);
            if (lazyAfter.Count > LazyRemembered) lazyAfter.RemoveRange(0, lazyAfter.Count - LazyRemembered);
        }
        return arr;
    }

    /// <summary>The state events of the room's timeline after <paramref name="since"/> (at most <see cref="StateScanLimit"/>
    /// events scanned, newest first).</summary>
    HashSet<string> RecentStateIds(string roomId, long since, long upTo)
    {
        var set = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (_, id) in rooms.Timeline(roomId, since, upTo, backwards: true).Take(StateScanLimit))
            if (rooms.Event(id) is { StateKey: not null }) set.Add(id);
        return set;
    }
}

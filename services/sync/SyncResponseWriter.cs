using System.Buffers;
using System.Text.Json;
using System.Text.Json.Nodes;
using Conduit.Common.Events;
using Conduit.Common;
using Conduit.Protos.Keys;
using Conduit.Protos.Rooms;
using Conduit.Sync.PushRules;

namespace Conduit.Sync;

/// <summary>The account data one /sync returns (the sync service owns it): global events and per-room events.</summary>
public sealed class SyncAccountData
{
    /// <summary>The account-data stream position the response covers up to (the next since).</summary>
    public long Position { get; private init; }
    public List<(string Type, JsonObject Content)> Global { get; } = [];
    public Dictionary<string, List<(string Type, JsonObject Content)>> Rooms { get; } = new(StringComparer.Ordinal);

    /// <summary>Whether the response has news for a user joined to <paramref name="joined"/> (per-room account
    /// data counts only for joined rooms, the only ones it is shown in).</summary>
    public bool HasContentFor(IEnumerable<string> joined) => Global.Count > 0 || (Rooms.Count > 0 && joined.Any(Rooms.ContainsKey));

    /// <summary>The user's account data changed since the token (all of it for an initial sync), as the filter lets through.</summary>
    public static SyncAccountData Read(AccountDataStore data, string userId, long since, bool initial, Filter? filter)
    {
        var r = new SyncAccountData { Position = data.Position };
        var accountFilter = filter?.AccountData;
        var roomAccountFilter = filter?.Room?.AccountData;
        var sawPushRules = false;
        foreach (var e in data.ChangedSince(userId, since))
        {
            if (e.Pos > r.Position) continue;
            if (e.RoomId.Length == 0)
            {
                if (e.Type == "m.push_rules") sawPushRules = true;
                if (accountFilter is null || accountFilter.Matches(e.Type, userId)) r.Global.Add((e.Type, e.Content));
                continue;
            }
            if (roomAccountFilter is not null && !roomAccountFilter.Matches(e.Type, userId, e.RoomId)) continue;
            if (!r.Rooms.TryGetValue(e.RoomId, out var list)) r.Rooms[e.RoomId] = list = [];
            list.Add((e.Type, e.Content));
        }
        // Clients expect their push rules in the first sync; until a user changes them they are the defaults.
        if (initial && !sawPushRules && (accountFilter is null || accountFilter.Matches("m.push_rules", userId)))
            r.Global.Add(("m.push_rules", DefaultPushRules.For(userId)));
        return r;
    }
}

/// <summary>
/// Writes a /sync response as it arrives: the head of the rooms service's SyncRooms stream, then its parts, whose
/// room pieces are copied to the output as the raw JSON they are (protos/rooms.proto, SyncRoomPiece), never
/// parsed; around them this writer puts the room IDs, the sections, each joined room's "ephemeral" (receipts,
/// typing) and "account_data", and the rest of the response. The caller flushes the output between parts, so nothing holds the whole response.
/// </summary>
public sealed class SyncResponseWriter : IDisposable
{
    static readonly byte[][] SectionOpen = ["\"join\":{"u8.ToArray(), ",\"invite\":{"u8.ToArray(), ",\"leave\":{"u8.ToArray(), ",\"knock\":{"u8.ToArray()];
    const int Join = (int)SyncSection.Join, Knock = (int)SyncSection.Knock, End = Knock + 1;

    readonly IBufferWriter<byte> _out;
    readonly Utf8JsonWriter _json;
    readonly SyncAccountData _accountData;
    readonly SyncKeysReply _e2ee;
    readonly DeviceListDeltaReply? _lists;
    readonly SyncEphemeral? _ephemeral;
    readonly SyncPresence? _presence;
    readonly Func<string, Push.UnreadCounts>? _counts;
    readonly bool _threadCounts;
    readonly bool _incremental;
    readonly HashSet<string> _joined;
    readonly HashSet<string> _joinWritten = new(StringComparer.Ordinal);
    int _section = -1;
    bool _sectionOpen;
    int _roomsInSection;
    string? _room;
    bool _roomHasMembers;

    /// <param name="incremental">A sync with a since token: a joined room whose only news is account data or
    /// ephemeral events gets a section.</param>
    public SyncResponseWriter(IBufferWriter<byte> output, SyncRoomsHead head, SyncAccountData accountData, SyncKeysReply e2ee,
        DeviceListDeltaReply? lists, bool incremental, SyncEphemeral? ephemeral = null, SyncPresence? presence = null,
        Func<string, Push.UnreadCounts>? counts = null, bool threadCounts = false)
    {
        _counts = counts;
        _threadCounts = threadCounts;
        _presence = presence;
        _ephemeral = ephemeral;
        _out = output;
        _json = new Utf8JsonWriter(output);
        _accountData = accountData;
        _e2ee = e2ee;
        _lists = lists;
        _incremental = incremental;
        _joined = [.. head.JoinedRoomIds];
        Raw("{\"next_batch\":"u8);
        Value(w => w.WriteStringValue(new SyncToken(head.Position, accountData.Position, e2ee.Position,
            ephemeral?.ReceiptsPosition ?? 0, ephemeral?.TypingPosition ?? 0, presence?.Position ?? 0).ToString()));
        Raw(",\"rooms\":{"u8);
    }

    /// <summary>Whether any room was written so far (account-data-only rooms count once their section closed).</summary>
    public bool HasRooms { get; private set; }

    public void Write(SyncRoomsPart part)
    {
        foreach (var piece in part.Rooms) Write(piece);
    }

    public void Write(SyncRoomPiece piece)
    {
        var section = (int)piece.Section;
        if (_room is null)
        {
            if (section < _section || section > Knock) throw new InvalidOperationException($"SyncRooms: room {piece.RoomId} out of section order");
            MoveTo(section);
            if (_roomsInSection++ > 0) Raw(","u8);
            Value(w => w.WriteStringValue(piece.RoomId));
            Raw(":{"u8);
            (_room, _roomHasMembers) = (piece.RoomId, false);
        }
        else if (piece.RoomId != _room || section != _section)
            throw new InvalidOperationException($"SyncRooms: room {_room} not finished before {piece.RoomId}");
        if (!piece.Json.IsEmpty)
        {
            _out.Write(piece.Json.Span);
            _roomHasMembers = true;
        }
        if (!piece.Last) return;
        if (section == Join)
        {
            if (_roomHasMembers) Raw(","u8);
            SyncOwned(_room);
        }
        Raw("}"u8);
        _room = null;
        HasRooms = true;
    }

    /// <summary>Closes the rooms and writes the rest of the response.</summary>
    public void Finish()
    {
        if (_room is not null) throw new InvalidOperationException($"SyncRooms: the stream ended inside room {_room}");
        MoveTo(End);
        Raw("},\"account_data\":"u8);
        Value(w => Events(w, _accountData.Global));
        Raw(",\"presence\":"u8);
        Value(w =>
        {
            w.WriteStartObject();
            w.WriteStartArray("events");
            foreach (var (sender, content) in _presence?.Events ?? [])
            {
                w.WriteStartObject();
                w.WriteString("sender", sender);
                w.WriteString("type", "m.presence");
                w.WritePropertyName("content");
                content.WriteTo(w);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        });
        Raw(""","to_device":{"events":["""u8);
        // Each to-device event is JSON text the keys service wrote; it goes out as it is.
        for (var i = 0; i < _e2ee.ToDevice.Count; i++)
        {
            if (i > 0) Raw(","u8);
            Raw(System.Text.Encoding.UTF8.GetBytes(_e2ee.ToDevice[i]));
        }
        Raw("]},\"device_lists\":"u8);
        Value(w =>
        {
            w.WriteStartObject();
            w.WriteStartArray("changed");
            foreach (var u in _lists?.Changed ?? []) w.WriteStringValue(u);
            w.WriteEndArray();
            w.WriteStartArray("left");
            foreach (var u in _lists?.Left ?? []) w.WriteStringValue(u);
            w.WriteEndArray();
            w.WriteEndObject();
        });
        Raw(",\"device_one_time_keys_count\":"u8);
        Value(w =>
        {
            w.WriteStartObject();
            foreach (var (alg, n) in _e2ee.OneTimeKeyCounts) w.WriteNumber(alg, n);
            w.WriteEndObject();
        });
        Raw(",\"device_unused_fallback_key_types\":"u8);
        Value(w =>
        {
            w.WriteStartArray();
            foreach (var t in _e2ee.UnusedFallbackKeyTypes) w.WriteStringValue(t);
            w.WriteEndArray();
        });
        Raw("}"u8);
    }

    /// <summary>Closes sections up to <paramref name="target"/> and opens it. "join", "invite" and "leave" are
    /// always written (as {} when empty); "knock" only when it has a room.</summary>
    void MoveTo(int target)
    {
        while (_section < target)
        {
            if (_sectionOpen)
            {
                if (_section == Join) SyncOwnedOnlyRooms();
                Raw("}"u8);
                _sectionOpen = false;
            }
            _section++;
            if (_section < End && (_section < Knock || _section == target))
            {
                _out.Write(SectionOpen[_section]);
                (_sectionOpen, _roomsInSection) = (true, 0);
            }
        }
    }

    /// <summary>The members of a joined room this service owns: "ephemeral", "account_data" and the notification
    /// counts. With the filter's unread_thread_notifications, "unread_notifications" counts the main timeline and
    /// "unread_thread_notifications" each thread with unread notifications (spec: "Receiving notifications");
    /// without it, "unread_notifications" counts the whole room.</summary>
    void SyncOwned(string roomId)
    {
        _joinWritten.Add(roomId);
        Raw("\"ephemeral\":"u8);
        Value(w => Events(w, _ephemeral?.Events(roomId)));
        Raw(",\"account_data\":"u8);
        _accountData.Rooms.TryGetValue(roomId, out var events);
        Value(w => Events(w, events));
        var c = _counts?.Invoke(roomId) ?? Push.UnreadCounts.None;
        Raw(",\"unread_notifications\":"u8);
        Value(w =>
        {
            w.WriteStartObject();
            w.WriteNumber("highlight_count", _threadCounts ? c.MainHighlights : c.Highlights);
            w.WriteNumber("notification_count", _threadCounts ? c.MainNotifications : c.Notifications);
            w.WriteEndObject();
        });
        if (!_threadCounts) return;
        Raw(",\"unread_thread_notifications\":"u8);
        Value(w =>
        {
            w.WriteStartObject();
            foreach (var (thread, (n, h)) in c.Threads)
            {
                w.WriteStartObject(thread);
                w.WriteNumber("highlight_count", h);
                w.WriteNumber("notification_count", n);
                w.WriteEndObject();
            }
            w.WriteEndObject();
        });
    }

    /// <summary>In an incremental sync, a joined room with new account data or ephemeral events and nothing else
    /// still gets a join section, to carry them.</summary>
    void SyncOwnedOnlyRooms()
    {
        if (!_incremental) return;
        IEnumerable<string> rooms = _accountData.Rooms.Keys;
        if (_ephemeral is not null) rooms = rooms.Concat(_ephemeral.RoomsWithNews(_joined));
        foreach (var roomId in rooms)
        {
            if (_joinWritten.Contains(roomId) || !_joined.Contains(roomId)) continue;
            if (_roomsInSection++ > 0) Raw(","u8);
            Value(w => w.WriteStringValue(roomId));
            Raw(""":{"timeline":{"events":[],"limited":false},"state":{"events":[]},"""u8);
            SyncOwned(roomId);
            Raw("}"u8);
            HasRooms = true;
        }
    }

    static void Events(Utf8JsonWriter w, List<(string Type, JsonObject Content)>? events)
    {
        w.WriteStartObject();
        w.WriteStartArray("events");
        foreach (var (type, content) in events ?? [])
        {
            w.WriteStartObject();
            w.WriteString("type", type);
            w.WritePropertyName("content");
            content.WriteTo(w);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }

    void Raw(ReadOnlySpan<byte> bytes) => _out.Write(bytes);

    /// <summary>One JSON value through the writer (escaping, nesting), between raw structure bytes.</summary>
    void Value(Action<Utf8JsonWriter> write)
    {
        write(_json);
        _json.Flush();
        _json.Reset();
    }

    public void Dispose() => _json.Dispose();
}

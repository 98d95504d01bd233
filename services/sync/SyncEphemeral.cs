using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Events;

namespace Conduit.Sync;

/// <summary>
/// The ephemeral events of one /sync (spec: client-server-api, "GET /sync", rooms.join.*.ephemeral): m.receipt and
/// m.typing, owned by this service. An initial sync gets each joined room's current receipts and typing users; an
/// incremental one what changed after the token. Positions are read first and bound every later read, so the
/// response's token never skips a change. Events are built per room on demand, once.
/// </summary>
public sealed class SyncEphemeral
{
    readonly ReceiptStore _receipts;
    readonly string _userId;
    readonly long _receiptsSince;
    readonly bool _initial;
    readonly bool _wantReceipts, _wantTyping;
    readonly RoomFilter? _roomFilter;
    // Incremental: the rooms with a changed receipt; null for an initial sync (every room).
    readonly HashSet<string>? _receiptRooms;
    readonly TypingSnapshot _typing;
    // A typing slot from before a restart: every joined room gets its current typing state.
    readonly bool _typingReset;
    readonly Dictionary<string, List<(string Type, JsonObject Content)>> _built = new(StringComparer.Ordinal);

    public long ReceiptsPosition { get; }
    public long TypingPosition => _typing.Position;

    SyncEphemeral(ReceiptStore receipts, TypingState typing, string userId, SyncToken? since, Filter? filter)
    {
        _receipts = receipts;
        _userId = userId;
        _initial = since is null;
        _roomFilter = filter?.Room;
        var f = _roomFilter?.Ephemeral;
        var off = f?.Limit == 0;
        _wantReceipts = !off && (f is null || f.Matches("m.receipt", ""));
        _wantTyping = !off && (f is null || f.Matches("m.typing", ""));
        ReceiptsPosition = receipts.Position;
        _receiptsSince = since?.Receipts ?? 0;
        if (since is { } t && _wantReceipts) _receiptRooms = receipts.RoomsChanged(t.Receipts, ReceiptsPosition);
        else if (since is not null) _receiptRooms = [];
        var typingSince = since?.Typing ?? 0;
        _typingReset = since is not null && typingSince > typing.Position;
        _typing = typing.Snapshot(_typingReset ? 0 : typingSince, _typingReset);
    }

    public static SyncEphemeral Read(ReceiptStore receipts, TypingState typing, string userId, SyncToken? since, Filter? filter)
        => new(receipts, typing, userId, since, filter);

    /// <summary>Whether an incremental sync may have ephemeral news in some joined room (which only the rooms
    /// service knows: the caller asks it for the joined rooms then).</summary>
    public bool MayHaveNews => !_initial && ((_receiptRooms?.Count ?? 0) > 0 || (_wantTyping && (_typing.Rooms.Count > 0 || _typingReset)));

    /// <summary>The joined rooms that have ephemeral events in this response (incremental syncs).</summary>
    public IEnumerable<string> RoomsWithNews(IEnumerable<string> joined)
        => MayHaveNews ? joined.Where(r => Events(r).Count > 0) : [];

    /// <summary>The room's ephemeral events for this user (empty when none or the filter excludes them).</summary>
    public List<(string Type, JsonObject Content)> Events(string roomId)
    {
        if (_built.TryGetValue(roomId, out var events)) return events;
        _built[roomId] = events = [];
        if (_roomFilter is not null && !_roomFilter.IncludesRoom(roomId)) return events;
        var f = _roomFilter?.Ephemeral;
        if (_wantReceipts && (f is null || f.Matches("m.receipt", "", roomId)) && (_receiptRooms is null || _receiptRooms.Contains(roomId)))
            if (ReceiptContent(roomId) is { } content) events.Add(("m.receipt", content));
        if (_wantTyping && (f is null || f.Matches("m.typing", "", roomId)))
        {
            string[]? users = _typing.Rooms.TryGetValue(roomId, out var u) ? u : _typingReset ? [] : null;
            if (users is not null) events.Add(("m.typing", new JsonObject { ["user_ids"] = new JsonArray([.. users.Select(x => (JsonNode)x)]) }));
        }
        return events;
    }

    /// <summary>The room's receipts in full (a room new to a sliding sync connection), up to this read's position.</summary>
    public JsonObject? AllReceipts(string roomId) => ReceiptContent(roomId, 0);

    /// <summary>{"$event": {"m.read": {"@user": {"ts": ..., "thread_id"?: ...}}}}; m.read.private only for its owner.</summary>
    JsonObject? ReceiptContent(string roomId) => ReceiptContent(roomId, _initial ? 0 : _receiptsSince);

    JsonObject? ReceiptContent(string roomId, long since)
    {
        JsonObject? content = null;
        foreach (var r in _receipts.InRoom(roomId, since, ReceiptsPosition))
        {
            if (r.Type == ReceiptTypes.ReadPrivate && r.UserId != _userId) continue;
            content ??= [];
            var byEvent = content[r.EventId] as JsonObject ?? (JsonObject)(content[r.EventId] = new JsonObject());
            var byType = byEvent[r.Type] as JsonObject ?? (JsonObject)(byEvent[r.Type] = new JsonObject());
            var receipt = new JsonObject { ["ts"] = r.Ts };
            if (r.ThreadId.Length > 0) receipt["thread_id"] = r.ThreadId;
            // A user's unthreaded and threaded receipts on one event: the unthreaded one is shown (one entry per user).
            if (byType[r.UserId] is null || r.ThreadId.Length == 0) byType[r.UserId] = receipt;
        }
        return content;
    }
}

/// <summary>The receipt types of the spec.</summary>
public static class ReceiptTypes
{
    public const string Read = "m.read";
    public const string ReadPrivate = "m.read.private";
    public const string FullyRead = "m.fully_read";
}

using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Events;
using Conduit.Common.Http;
using Conduit.Common.Storage;
using Conduit.Rooms.Rules;
using Microsoft.Extensions.Logging;
using K = Conduit.Common.Storage.Keys;

namespace Conduit.Rooms;

/// <summary>
/// History from before this server joined a room (spec: server-server-api, "Backfilling and retrieving missing
/// events"): when a client pages back past the room's first event here, the events before it are asked of a server
/// in the room (GET /backfill from the prev events of the oldest one known), checked (signatures, hashes, each against
/// its own auth events, the missing ones of which are fetched with /event) and kept as outliers in
/// <c>rooms_history</c>, ordered by depth. One event can be fetched alone too (<see cref="FetchEventAsync"/>, for
/// timestamp_to_event). Shown only where the room's history visibility is shared or world_readable
/// (what came before a joined or invited member's join is not theirs to see).
/// </summary>
public sealed partial class RemoteHistory(RoomStore rooms, EventSender sender, RemoteServers remote, GlobalConfig config, ILogger<RemoteHistory> log)
{
    /// <summary>Missing auth events fetched for one page at the most.</summary>
    const int MaxAuthFetches = 50;

    readonly IKvMap _history = rooms.Store.Map(RoomsFamilies.History);

    /// <summary>Whether a client may page into history from before this server's first event of the room.</summary>
    public static string Token(StoredEvent e) => $"h{e.Pdu["depth"]!.GetValue<long>()}_{e.EventId}";

    /// <summary>The cursor of an "h" token (depth, event ID), or null for another kind of token.</summary>
    public static (long Depth, string EventId)? ParseToken(string? token)
    {
        if (token is null || !token.StartsWith('h')) return null;
        var cut = token.IndexOf('_');
        if (cut < 2 || !long.TryParse(token.AsSpan(1, cut - 1), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var depth))
            throw Err.InvalidParam("Invalid pagination token");
        return (depth, token[(cut + 1)..]);
    }

    public bool Visible(string roomId)
        => config.AllowFederation && HistoryVisibility.Of(rooms.StateContent(roomId, "m.room.history_visibility")) is "shared" or "world_readable";

    /// <summary>
    /// Up to <paramref name="limit"/> events below <paramref name="beforeDepth"/>, newest first, fetching more from
    /// another server when what is kept runs out; <c>More</c> is false once the create event is reached (or no
    /// server has more).
    /// </summary>
    public async Task<(List<StoredEvent> Events, bool More)> PageAsync(string roomId, long beforeDepth, string? afterId, int limit, CancellationToken ct)
    {
        var page = Stored(roomId, beforeDepth, afterId, limit);
        if (page.Count < limit && !page.Any(e => e.Type == "m.room.create") && Frontier(roomId, page) is { Count: > 0 } frontier)
        {
            await FetchAsync(roomId, frontier, Math.Max(limit, 20), ct);
            page = Stored(roomId, beforeDepth, afterId, limit);
        }
        var more = page.Count > 0 && page[^1].Type != "m.room.create" && (page.Count == limit || Frontier(roomId, page).Count > 0);
        return (page, more);
    }

    /// <summary>Kept history after the cursor: below <paramref name="depth"/>, or at it after <paramref name="afterId"/> (a page can end mid-depth).</summary>
    List<StoredEvent> Stored(string roomId, long depth, string? afterId, int limit)
    {
        var list = new List<StoredEvent>();
        var prefix = RoomsFamilies.HistoryPrefix(roomId);
        var start = afterId is null ? RoomsFamilies.HistoryKey(roomId, depth - 1, "") : RoomsFamilies.HistoryKey(roomId, depth, afterId);
        foreach (var (k, _) in _history.ScanFrom(start, prefix, reverse: false))
        {
            var id = RoomsFamilies.HistoryEventId(k, prefix);
            if (afterId is not null && id == afterId && k.AsSpan().SequenceEqual(start)) continue;
            if (rooms.Event(id) is { Rejected: null } e) list.Add(e);
            if (list.Count >= limit) break;
        }
        return list;
    }

    /// <summary>
    /// Kept history newer than the cursor (above <paramref name="depth"/>, or at it before <paramref name="eventId"/>),
    /// oldest first: what follows an event of the history, up to this server's first timeline event. Nothing is fetched
    /// (kept history is contiguous from its oldest event up to the join).
    /// </summary>
    public List<StoredEvent> Newer(string roomId, long depth, string eventId, int limit)
    {
        var list = new List<StoredEvent>();
        var prefix = RoomsFamilies.HistoryPrefix(roomId);
        var start = RoomsFamilies.HistoryKey(roomId, depth, eventId);
        foreach (var (k, _) in _history.ScanFrom(start, prefix, reverse: true))
        {
            if (k.AsSpan().SequenceEqual(start)) continue;
            if (rooms.Event(RoomsFamilies.HistoryEventId(k, prefix)) is { Rejected: null } e) list.Add(e);
            if (list.Count >= limit) break;
        }
        return list;
    }

    /// <summary>Whether <paramref name="e"/> is an accepted event of the room held outside its timeline here: history from before this server's join.</summary>
    public static bool IsHistory(string roomId, StoredEvent e) => !e.InTimeline && AcceptedIn(e, roomId) is not null;

    /// <summary>Most pages of 100 fetched to bring an event fetched alone (timestamp_to_event) into the kept history.</summary>
    const int MaxReachPages = 10;

    /// <summary>
    /// Brings an event of the room's history that was fetched alone (<see cref="FetchEventAsync"/>) into the kept
    /// history, so that what comes before and after it can be paged (/context): pages back from the oldest kept event
    /// (at most <see cref="MaxReachPages"/> /backfill requests of 100) until it is among them. False if it is not reached.
    /// </summary>
    public async Task<bool> ReachAsync(string roomId, StoredEvent e, CancellationToken ct)
    {
        for (var i = 0; i < MaxReachPages && !Indexed(roomId, e.EventId); i++)
        {
            var frontier = Frontier(roomId, []);
            if (frontier.Count == 0) break;
            await FetchAsync(roomId, frontier, 100, ct);
            if (Frontier(roomId, []).SequenceEqual(frontier)) break;
        }
        return Indexed(roomId, e.EventId);
    }

    /// <summary>The prev events not held of the oldest event known: the oldest kept history event, else the room's first timeline event.</summary>
    List<string> Frontier(string roomId, List<StoredEvent> page)
    {
        StoredEvent? oldest = null;
        var prefix = RoomsFamilies.HistoryPrefix(roomId);
        // The last key under the prefix: the lowest depth.
        foreach (var (k, _) in _history.ScanFrom(K.Concat(prefix, [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]), prefix, reverse: true))
        {
            oldest = rooms.Event(RoomsFamilies.HistoryEventId(k, prefix));
            break;
        }
        if (oldest is null && rooms.Timeline(roomId, 0, long.MaxValue, backwards: false).FirstOrDefault() is { EventId: { } first }) oldest = rooms.Event(first);
        if (oldest is null || oldest.Type == "m.room.create") return [];
        return EventAuth.PrevEventIds(oldest.Pdu).Where(id => rooms.Event(id) is not { Rejected: null } || !Indexed(roomId, id)).Take(20).ToList();
    }

    bool Indexed(string roomId, string eventId)
        => rooms.Event(eventId) is { } e && e.Pdu["depth"] is JsonValue d && d.TryGetValue(out long depth)
            && _history.Get(RoomsFamilies.HistoryKey(roomId, depth, eventId)) is not null;

    async Task FetchAsync(string roomId, List<string> frontier, int limit, CancellationToken ct)
    {
        if (rooms.VersionOf(roomId) is not { } version) return;
        var servers = rooms.JoinedMembers(roomId).Select(Ids.ServerOf).Where(s => s != config.ServerName).Distinct().ToList();
        var query = string.Join('&', frontier.Select(id => "v=" + Uri.EscapeDataString(id))) + "&limit=" + Math.Min(limit, 100);
        foreach (var server in servers)
        {
            var reply = await remote.SendAsync(server, "GET", $"/_matrix/federation/v1/backfill/{Uri.EscapeDataString(roomId)}?{query}", null, ct, TimeSpan.FromSeconds(30));
            if (!reply.Ok || reply.Body!["pdus"] is not JsonArray pdus)
            {
                LogFailed(log, server, roomId, reply.ToString());
                continue;
            }
            var events = pdus.OfType<JsonObject>().Where(p => ContentField.String(p, "room_id") == roomId || (version.RoomIdFromCreateEvent && ContentField.String(p, "type") == "m.room.create")).ToList();
            if (events.Count == 0) return;
            var stored = await KeepAsync(server, roomId, version, events, ct);
            using var b = rooms.Store.CreateBatch();
            foreach (var (id, depth) in stored) b.Put(RoomsFamilies.History, RoomsFamilies.HistoryKey(roomId, depth, id), []);
            rooms.Store.Write(b);
            LogFetched(log, stored.Count, roomId, server);
            return;
        }
    }

    /// <summary>
    /// One event of the room asked of <paramref name="server"/> (GET /event), checked as fetched history is (see
    /// <see cref="KeepAsync"/>) and kept as an outlier, but not put in <c>rooms_history</c>: alone, it would leave a hole
    /// in the pages before it. Null unless it is an accepted event of this room; an event held already is not fetched.
    /// </summary>
    public async Task<StoredEvent?> FetchEventAsync(string server, string roomId, string eventId, CancellationToken ct)
    {
        if (rooms.Event(eventId) is { } held) return AcceptedIn(held, roomId);
        if (!Ids.IsEventId(eventId) || rooms.VersionOf(roomId) is not { } version) return null;
        var reply = await remote.SendAsync(server, "GET", $"/_matrix/federation/v1/event/{Uri.EscapeDataString(eventId)}", null, ct, TimeSpan.FromSeconds(30));
        if (!reply.Ok || reply.Body!["pdus"] is not JsonArray { Count: 1 } got || got[0] is not JsonObject pdu) return null;
        // The answer must be the event asked for: its ID is the hash of its content (v3 and later), so none other fits.
        if (EventHashing.TryEventId(pdu, version) != eventId) return null;
        await KeepAsync(server, roomId, version, [pdu], ct);
        return rooms.Event(eventId) is { } e ? AcceptedIn(e, roomId) : null;
    }

    static StoredEvent? AcceptedIn(StoredEvent e, string roomId) => e is { Rejected: null, SoftFailed: false } && e.RoomId == roomId ? e : null;

    /// <summary>
    /// Checks and keeps events of the room received from <paramref name="server"/> as outliers (signatures, hashes,
    /// each against its own auth events: <see cref="EventSender.StoreHistoryAsync"/>), with the auth events they need
    /// that are not held yet asked of the same server one by one (a page needs few: senders' member events, older
    /// power levels); returns those that passed, with their depths.
    /// </summary>
    async Task<List<(string EventId, long Depth)>> KeepAsync(string server, string roomId, RoomVersion version, List<JsonObject> events, CancellationToken ct)
    {
        var authEvents = new List<JsonObject>();
        var wanted = new Queue<string>(events.SelectMany(EventAuth.AuthEventIds).Distinct().Where(id => rooms.Event(id) is null));
        var asked = new HashSet<string>(StringComparer.Ordinal);
        while (wanted.TryDequeue(out var id) && asked.Count < MaxAuthFetches)
        {
            if (!asked.Add(id) || events.Any(e => Ids.IsEventId(id) && EventHashing.TryEventId(e, version) == id)) continue;
            var one = await remote.SendAsync(server, "GET", $"/_matrix/federation/v1/event/{Uri.EscapeDataString(id)}", null, ct);
            if (one.Ok && one.Body!["pdus"] is JsonArray got && got.Count == 1 && got[0] is JsonObject e)
            {
                authEvents.Add(e);
                foreach (var a in EventAuth.AuthEventIds(e)) if (rooms.Event(a) is null) wanted.Enqueue(a);
            }
        }
        var keys = await remote.KeysForAsync(events.Concat(authEvents), ct);
        return await sender.StoreHistoryAsync(roomId, version, events, authEvents, keys, ct);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Backfill from {Server} for {RoomId} failed: {Error}")]
    static partial void LogFailed(ILogger log, string server, string roomId, string error);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Backfilled {Count} events of {RoomId} from {Server}")]
    static partial void LogFetched(ILogger log, int count, string roomId, string server);
}

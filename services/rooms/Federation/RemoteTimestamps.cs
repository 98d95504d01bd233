using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Rooms.Rules;
using Microsoft.Extensions.Logging;

namespace Conduit.Rooms;

/// <summary>
/// timestamp_to_event with other servers' help. The client-server spec (getEventByTimestamp) lets a server that "does not
/// have all of the room history and does not have an event suitably close" ask others with the federation endpoint;
/// server-server-api ("Timestamp to event") leaves the heuristic to the server, suggesting extremities next to a gap.
/// Here, other servers are asked when nothing was found locally, or for dir=f when the event found comes right after a
/// gap (<see cref="TimestampLookup.AfterGap"/>: history from before this server joined, typically), as Synapse checks a
/// backward gap. A forward gap (for dir=b) is not looked for: new events reach this server by transactions, their
/// missing prev events fetched then, so the newest events here are the room's end rather than a gap.
/// Only where history from before this server's join may be shown (<see cref="RemoteHistory.Visible"/>: shared or
/// world_readable), since what comes back is kept as such history. At most 3 servers of joined members (not this one),
/// one after another, 10 s each: the first answer whose event checks out (fetched with /event and checked as history is,
/// <see cref="RemoteHistory.FetchEventAsync"/>) decides, taken only if its own origin_server_ts is on the asked side of
/// ts and closer than the local event (the spec: "determine, using the origin_server_ts property, whether the returned
/// event is closer"). Anything else keeps the local answer.
/// </summary>
public sealed partial class RemoteTimestamps(RoomStore rooms, RemoteHistory history, RemoteServers remote, GlobalConfig config, ILogger<RemoteTimestamps> log)
{
    const int MaxServers = 3;
    static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(10);

    /// <summary>Whether other servers may have an event closer to ts than <paramref name="local"/> (null: none found here).</summary>
    public bool WorthAsking(string roomId, TimestampQuery q, StoredEvent? local)
        => history.Visible(roomId) && (local is null || (q.Forward && TimestampLookup.AfterGap(rooms, local)));

    /// <summary>An event of the room closer to ts than <paramref name="local"/>, from another server and checked, or null.</summary>
    public async Task<StoredEvent?> CloserAsync(string roomId, TimestampQuery q, StoredEvent? local, CancellationToken ct)
    {
        foreach (var server in Servers(roomId))
        {
            var reply = await remote.SendAsync(server, "GET", $"/_matrix/federation/v1/timestamp_to_event/{Uri.EscapeDataString(roomId)}?ts={q.Ts}&dir={q.Dir}",
                null, ct, AskTimeout);
            if (!reply.Ok || ContentField.String(reply.Body, "event_id") is not { } eventId)
            {
                LogAskFailed(log, server, roomId, reply.ToString());
                continue;
            }
            // The answer's origin_server_ts is the remote's word; the event's own is what counts.
            if (await history.FetchEventAsync(server, roomId, eventId, ct) is not { } e || TimestampLookup.TimestampOf(e) is not { } ts || !q.Includes(ts))
            {
                LogUnverified(log, server, eventId, roomId);
                continue;
            }
            return local is null || TimestampLookup.TimestampOf(local) is not { } localTs || q.Closer(ts, localTs) ? e : null;
        }
        return null;
    }

    /// <summary>
    /// The servers of the room's joined members other than this one, at most <see cref="MaxServers"/>: those whose
    /// member has been in the room longest (lowest depth of their current member event) first, as the spec suggests.
    /// </summary>
    List<string> Servers(string roomId)
        => rooms.JoinedMembers(roomId).Where(u => Ids.ServerOf(u) != config.ServerName)
            .Select(u => (Server: Ids.ServerOf(u), Depth: rooms.StateEvent(roomId, "m.room.member", u)?.Pdu["depth"]?.GetValue<long>() ?? long.MaxValue))
            .GroupBy(s => s.Server).Select(g => (g.Key, Depth: g.Min(s => s.Depth)))
            .OrderBy(s => s.Depth).ThenBy(s => s.Key, StringComparer.Ordinal).Take(MaxServers).Select(s => s.Key).ToList();

    [LoggerMessage(Level = LogLevel.Information, Message = "timestamp_to_event to {Server} for {RoomId} failed: {Error}")]
    static partial void LogAskFailed(ILogger log, string server, string roomId, string error);

    [LoggerMessage(Level = LogLevel.Information, Message = "timestamp_to_event answer {EventId} of {Server} for {RoomId} not taken: not an event of the room on the asked side")]
    static partial void LogUnverified(ILogger log, string server, string eventId, string roomId);
}

using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Events;
using Conduit.Protos.Rooms;

namespace Conduit.Sync;

/// <summary>
/// The top-level "presence" of one /sync (spec: client-server-api, "GET /sync", "Presence"): m.presence events of
/// the users who share a room with the syncing user (rooms SharedUsers; the user's own included) whose presence
/// changed after the token's presence slot; an initial sync gets those not offline (as Synapse). The position is read
/// first and bounds the read. The filter's "presence" applies (types, senders, limit). With presence off: nothing,
/// and the slot stays as it was.
/// </summary>
public sealed class SyncPresence
{
    public long Position { get; private init; }
    public List<(string Sender, JsonObject Content)> Events { get; } = [];

    public static readonly SyncPresence None = new();

    public static async Task<SyncPresence> Read(PresenceState presence, Rooms.RoomsClient rooms, bool enabled, string userId,
        SyncToken? since, Filter? filter, CancellationToken ct)
    {
        if (!enabled) return new SyncPresence { Position = since?.Presence ?? 0 };
        var r = new SyncPresence { Position = presence.Position };
        var from = since?.Presence ?? 0;
        // A slot above the position cannot come from this server's stream (it is durable): read everything.
        if (from > r.Position) from = 0;
        var f = filter?.Presence;
        if (f?.Limit == 0 || r.Position <= from) return r;
        var shared = await rooms.SharedUsersAsync(new SharedUsersRequest { UserIds = { userId } }, cancellationToken: ct);
        var now = presence.Now;
        foreach (var p in presence.ChangedSince(shared.UserIds, from, r.Position).OrderBy(p => p.Pos))
        {
            if (since is null && p.Presence == PresenceStates.Offline) continue;
            if (f is not null && !f.Matches("m.presence", p.UserId)) continue;
            r.Events.Add((p.UserId, p.Content(now)));
        }
        if (f?.Limit is int limit && r.Events.Count > limit) r.Events.RemoveRange(0, r.Events.Count - limit);
        return r;
    }
}

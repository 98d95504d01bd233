using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Http;
using Conduit.Common.Routing;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Conduit.Rooms;

/// <summary>
/// The user directory (spec: client-server-api, "User directory", POST /user_directory/search), with Synapse's default
/// <c>search_all_users: false</c>: the local users who share a joined room with the caller, or who are joined to a
/// room anyone may see into (join rule <c>public</c>, history visibility <c>world_readable</c>, or published in the
/// room directory). A user matches when the term is in their user ID or in a display name they carry in one of those
/// rooms (case-insensitive). Names and avatars are read from the candidate rooms' current <c>m.room.member</c> state,
/// so no call to the keys service is made per user; deactivated accounts have left every room, so they are never
/// candidates. Bounded: at most <see cref="MaxRoomsScanned"/> rooms are looked at (the caller's joined rooms first,
/// then the server's rooms in room-ID order) and at most <see cref="MaxCandidates"/> distinct members.
/// </summary>
public sealed class UserDirectoryEndpoint(RoomStore rooms, GlobalConfig config)
{
    public const int DefaultLimit = 10, MaxLimit = 50, MaxRoomsScanned = 10_000, MaxCandidates = 50_000;

    public void Map(IEndpointRouteBuilder app) => app.Map(RouteTable.UserDirectorySearch, Search);

    sealed record Candidate(string UserId, string? DisplayName, string? AvatarUrl);

    async Task Search(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        var body = await ctx.Request.ReadJsonObjectAsync();
        var term = body.ReqString("search_term").Trim();
        var requested = body.OptLong("limit") ?? DefaultLimit;
        if (requested < 0) throw Err.InvalidParam("'limit' must not be negative");
        var limit = (int)Math.Min(requested, MaxLimit);

        var candidates = new Dictionary<string, Candidate>(StringComparer.Ordinal);
        var scanned = new HashSet<string>(StringComparer.Ordinal);
        void AddRoom(string roomId)
        {
            if (candidates.Count >= MaxCandidates || !scanned.Add(roomId)) return;
            foreach (var userId in rooms.JoinedMembers(roomId))
            {
                if (candidates.Count >= MaxCandidates) return;
                if (Ids.ServerOf(userId) != config.ServerName) continue;
                var member = rooms.StateContent(roomId, "m.room.member", userId);
                var name = Str(member, "displayname");
                var avatar = Str(member, "avatar_url");
                if (candidates.TryGetValue(userId, out var known))
                {
                    // A name seen in another room also matches; the first one found is shown.
                    if (known.DisplayName is null && name is not null) candidates[userId] = known with { DisplayName = name, AvatarUrl = avatar ?? known.AvatarUrl };
                    if (name is not null && known.DisplayName is not null && name != known.DisplayName && Matches(name, term) && !Matches(known.DisplayName, term))
                        candidates[userId] = known with { DisplayName = name, AvatarUrl = avatar ?? known.AvatarUrl };
                    continue;
                }
                candidates[userId] = new Candidate(userId, name, avatar);
            }
        }

        foreach (var (roomId, m) in rooms.RoomsOf(c.UserId))
            if (m.State == "join" && scanned.Count < MaxRoomsScanned) AddRoom(roomId);
        var directory = rooms.Store.Map(RoomsFamilies.Directory);
        foreach (var (k, _) in rooms.Store.Map(RoomsFamilies.Info).Scan([]))
        {
            if (scanned.Count >= MaxRoomsScanned || candidates.Count >= MaxCandidates) break;
            var roomId = Encoding.UTF8.GetString(k);
            if (scanned.Contains(roomId)) continue;
            var open = Str(rooms.StateContent(roomId, "m.room.join_rules"), "join_rule") == "public"
                || Str(rooms.StateContent(roomId, "m.room.history_visibility"), "history_visibility") == "world_readable"
                || directory.Contains(RoomsFamilies.DirectoryKey(roomId));
            if (open) AddRoom(roomId);
        }

        var matches = candidates.Values
            .Where(u => Matches(u.UserId, term) || (u.DisplayName is not null && Matches(u.DisplayName, term)))
            // Rank: a name or localpart that starts with the term (or a word of it) first, then those with a display name.
            .OrderBy(u => PrefixRank(u, term))
            .ThenBy(u => u.DisplayName is null ? 1 : 0)
            .ThenBy(u => u.UserId, StringComparer.Ordinal)
            .ToList();
        var results = new JsonArray();
        foreach (var u in matches.Take(limit))
        {
            var o = new JsonObject { ["user_id"] = u.UserId };
            if (u.DisplayName is not null) o["display_name"] = u.DisplayName;
            if (u.AvatarUrl is not null) o["avatar_url"] = u.AvatarUrl;
            results.Add((JsonNode)o);
        }
        await ctx.Response.WriteJsonAsync(new JsonObject { ["results"] = results, ["limited"] = matches.Count > limit });
    }

    static string? Str(JsonObject? o, string key) => o?[key] is JsonValue v && v.TryGetValue<string>(out var s) ? s : null;

    static bool Matches(string s, string term) => s.Contains(term, StringComparison.OrdinalIgnoreCase);

    static int PrefixRank(Candidate u, string term)
    {
        var local = u.UserId.AsSpan(1);
        if (local.StartsWith(term, StringComparison.OrdinalIgnoreCase)) return 0;
        if (u.DisplayName is { } n && (n.StartsWith(term, StringComparison.OrdinalIgnoreCase)
            || n.Split(' ', StringSplitOptions.RemoveEmptyEntries).Any(w => w.StartsWith(term, StringComparison.OrdinalIgnoreCase)))) return 0;
        return 1;
    }
}

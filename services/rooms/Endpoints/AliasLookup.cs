using Conduit.Common;
using Conduit.Common.Appservices;
using Conduit.Common.Config;

namespace Conduit.Rooms;

/// <summary>
/// The room of an alias of this server, for every way of resolving one (GET /directory/room, joining and knocking by
/// alias, the room summary, federation's query/directory): from the directory, else asked of the application services
/// whose alias namespace holds it (spec: application-service-api, "Query Room Alias": one that answers 200 has created
/// the room and the alias meanwhile) and looked up again, as Synapse's <c>get_association_from_room_alias</c>.
/// </summary>
public sealed class AliasLookup(RoomStore rooms, GlobalConfig config, AppserviceQueries appservices)
{
    /// <summary>The room ID, or null when not found (an appservice that fails counts as not knowing the alias).</summary>
    public async Task<string?> TargetAsync(string alias, CancellationToken ct)
    {
        if (rooms.AliasTarget(alias) is { } roomId) return roomId;
        if (!Ids.TrySplit(alias, '#', out _, out var server) || server != config.ServerName) return null;
        return await appservices.AliasExistsAsync(config.Appservices(), alias, ct) ? rooms.AliasTarget(alias) : null;
    }
}

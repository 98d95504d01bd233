using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Appservices;
using Conduit.Common.Config;

namespace Conduit.Keys;

/// <summary>
/// A user of this server looked up (a profile, or the invitee of an invite, which the rooms service checks with
/// <c>GetProfile</c>) who has no account here but is in an application service's user namespace is asked of that
/// appservice (spec: application-service-api, "Query User": a 200 means it has registered the user meanwhile), and the
/// account read again. An appservice that fails, or answers 200 without registering the user, leaves the user unknown.
/// Synapse asks only before pushing an event that names such a user to the appservice (element-hq/synapse#4310 asks
/// for profiles too); the spec's example is an invite.
/// </summary>
public sealed class AppserviceUsers(AccountStore accounts, GlobalConfig config, AppserviceQueries queries)
{
    /// <summary>The account record of <paramref name="userId"/>, after asking the appservices if there is none.</summary>
    public async Task<JsonObject?> GetUserAsync(string userId, CancellationToken ct)
    {
        if (accounts.GetUser(userId) is { } user) return user;
        if (!Ids.IsUserId(userId) || Ids.ServerOf(userId) != config.ServerName) return null;
        return await queries.UserExistsAsync(config.Appservices(), userId, ct) ? accounts.GetUser(userId) : null;
    }
}

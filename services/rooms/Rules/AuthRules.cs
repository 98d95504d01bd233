using Conduit.Common;

namespace Conduit.Rooms;

/// <summary>
/// Checks the client endpoints make before an event is built. The authorization rules themselves have one
/// implementation, <see cref="Conduit.Common.Events.Auth.EventAuth"/>, which <see cref="EventSender"/> applies to
/// every event.
/// </summary>
public static class AuthRules
{
    /// <summary>Redacting someone else's event needs the redact level (v11: checked by the server that applies it).</summary>
    public static bool MayRedact(string sender, string originalSender, PowerLevels pl)
        => sender == originalSender || pl.UserLevel(sender) >= pl.Redact;

    /// <summary>Which server may have created a user: ours only, until federation lands.</summary>
    public static bool IsLocal(string userId, string serverName) => Ids.ServerOf(userId) == serverName;
}

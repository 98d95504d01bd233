using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Appservices;

namespace Conduit.Keys;

/// <summary>
/// Application services' identity (spec: application-service-api, "Identity assertion"): an as_token acts as the
/// appservice's sender, or with user_id as a local user of its user namespaces, and with device_id as one of that
/// user's devices.
/// </summary>
public sealed partial class AccountStore
{
    /// <summary>The user record's field naming the application service that made the account (no password; never
    /// counted as the server's first account).</summary>
    internal const string AppserviceField = "appservice_id";

    /// <summary>The registration whose as_token this is; null for any other token.</summary>
    public AppserviceRegistration? AppserviceOf(string token)
        => config.Appservices().FirstOrDefault(r => System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(
            System.Text.Encoding.UTF8.GetBytes(r.AsToken), System.Text.Encoding.UTF8.GetBytes(token)));

    /// <summary>Whether some application service claims the user ID exclusively (others may not register it).</summary>
    public AppserviceRegistration? ExclusiveOwnerOf(string userId)
        => config.Appservices().FirstOrDefault(r => r.ClaimsUserExclusively(userId));

    /// <summary>
    /// Who the appservice acts as: the sender (created on demand) without <paramref name="userId"/>, else that user,
    /// who must be local, registered and in its user namespaces; <paramref name="deviceId"/>, when given, must be one
    /// of the user's devices. Errors are the message of a 403 M_FORBIDDEN.
    /// </summary>
    public (TokenInfo? Identity, string? Forbidden) ResolveAppservice(AppserviceRegistration r, string? userId, string? deviceId)
    {
        var sender = r.SenderUserId(config.ServerName);
        userId = string.IsNullOrEmpty(userId) ? sender : userId;
        if (!Ids.TrySplit(userId, '@', out _, out var server) || server != config.ServerName)
            return (null, "Application service cannot masquerade as a user of another server");
        if (!r.IsInterestedInUser(userId, config.ServerName))
            return (null, "Application service cannot masquerade as this user");
        if (userId == sender) CreateAppserviceUser(r, sender);
        else if (!Exists(userId)) return (null, "Application service has not registered this user");
        if (IsDeactivated(userId)) return (null, "This account has been deactivated");
        if (!string.IsNullOrEmpty(deviceId) && !DeviceExists(userId, deviceId))
            return (null, "Application service has not registered this device for this user");
        return (new TokenInfo(userId, deviceId ?? "", false, 0, false, IsAdmin(userId)), null);
    }

    /// <summary>Creates an account with no password for the application service (its sender, or a user of its
    /// namespace registered with m.login.application_service); false if the ID is taken.</summary>
    public bool CreateAppserviceUser(AppserviceRegistration r, string userId)
    {
        if (Exists(userId)) return false;
        lock (_write)
        {
            if (Exists(userId) || IsReserved(userId)) return false;
            var u = NewUser("", Ids.TrySplit(userId, '@', out var localpart, out _) ? localpart : null);
            u[AppserviceField] = r.Id;
            using var b = store.CreateBatch();
            PutUser(b, userId, u);
            store.Write(b);
            return true;
        }
    }
}

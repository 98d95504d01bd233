namespace Conduit.Common.Admin;

/// <summary>
/// The server's own account and room for administration, as in Conduit: the bot @conduit:{server_name}, which owns the
/// admin room #admins:{server_name} and answers the commands server admins type there. Its localpart is reserved: no
/// one may register it, and it has no password, so no one can log in as it.
/// </summary>
public static class AdminBot
{
    public const string Localpart = "conduit";
    public const string DisplayName = "Conduit";

    public static string UserId(string serverName) => $"@{Localpart}:{serverName}";
    public static string RoomAlias(string serverName) => $"#admins:{serverName}";
}

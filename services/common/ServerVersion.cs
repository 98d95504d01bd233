namespace Conduit.Common;

/// <summary>What the server calls itself: /_matrix/federation/v1/version and the admin API's server_version.</summary>
public static class ServerVersion
{
    public const string Name = "Conduit.Services";

    public static readonly string Version = typeof(ServerVersion).Assembly.GetName().Version?.ToString(3) ?? "0.1.0";
}

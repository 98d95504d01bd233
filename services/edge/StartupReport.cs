using System.Net;
using System.Net.Sockets;
using Conduit.Common.Config;
using Microsoft.AspNetCore.Connections;

namespace Conduit.Edge;

/// <summary>The server cannot start for a reason outside the config file (its database, its listener): one line, exit 2.</summary>
public sealed class StartupException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// What the server says at start, whatever the log level: the config it read, the server name, the database,
/// whether registration is open, and the address it actually listens on (with port 0, the port the system gave).
/// Scripts and tests find a server started on port 0 by the line beginning with <see cref="ListeningPrefix"/>.
/// </summary>
public static class StartupReport
{
    public const string ListeningPrefix = "conduit: listening on ";
    /// <summary>The line giving the metrics listener's URL ([global.metrics]); /metrics is under it.</summary>
    public const string MetricsPrefix = "conduit: metrics on ";

    public static IEnumerable<string> Lines(LoadedConfig loaded, string role, IEnumerable<string> addresses, string? metricsUrl = null)
    {
        var c = loaded.Global;
        var mode = role == ConduitHost.AllInOne ? "all-in-one" : $"split mode, role {role}";
        var source = loaded.IsEmbeddedDefault ? "the embedded default (CONDUIT_CONFIG is not set)" : loaded.Source;
        if (loaded.Overrides.Count > 0) source += $", with {string.Join(", ", loaded.Overrides)} from the environment";
        yield return $"conduit: {mode}; config: {source}";
        yield return $"conduit: server name: {c.ServerName}";
        yield return ConduitHost.DatabasePathFor(c, role) is { } db
            ? $"conduit: database: {c.DatabaseBackend} at {Path.GetFullPath(db)}"
            : "conduit: database: none in this part (the services keep the data)";
        yield return "conduit: registration: " + (!c.AllowRegistration ? "closed (allow_registration = false)"
            : c.RegistrationNeedsToken() ? "open to holders of a registration token"
            : IPAddress.TryParse(c.Address, out var a) && IPAddress.IsLoopback(a) ? "open to anyone who can reach the server"
            : $"open to anyone who can reach {c.Address}: set allow_registration = false or a registration_token");
        if (role == "edge")
            yield return "conduit: services: " + string.Join(", ", Enum.GetValues<Common.Routing.Service>()
                .Where(s => s != Common.Routing.Service.Edge).Select(s => $"{s.ToString().ToLowerInvariant()} {c.Services.AddressOf(s)}"));
        var what = role is ConduitHost.AllInOne or "edge" ? "" : " (internal listener: gRPC and forwarded Matrix paths over HTTP/2, internal secret required)";
        foreach (var address in addresses.Select(a => a.TrimEnd('/')).Where(a => a != metricsUrl))
            yield return address.StartsWith("http://unix:", StringComparison.Ordinal)
                ? $"conduit: control socket: {address["http://unix:".Length..]} (conduit backup)"
                : ListeningPrefix + address + what;
        if (metricsUrl is not null) yield return MetricsPrefix + metricsUrl + " (GET /metrics, Prometheus text format)";
    }

    /// <summary>
    /// Why a listener could not be opened, in a few words, or null when the exception is something else. Kestrel
    /// wraps "in use" as IOException(AddressInUseException(SocketException)) and lets other bind errors through
    /// as the SocketException itself.
    /// </summary>
    public static string? ListenFailure(Exception e)
    {
        for (var x = e; x is not null; x = x.InnerException)
        {
            if (x is AddressInUseException) return "address already in use";
            if (x is SocketException s)
                return s.SocketErrorCode switch
                {
                    SocketError.AddressAlreadyInUse => "address already in use",
                    SocketError.AccessDenied => "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)",
                    SocketError.AddressNotAvailable => "the address is not one of this machine's (see 'address' in the config)",
                    _ => null,
                };
        }
        return null;
    }
}

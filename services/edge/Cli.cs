using System.Text.Json.Nodes;
using Conduit.Common.Config;

namespace Conduit.Edge;

/// <summary>
/// The command line's verbs besides running the server (Program.cs dispatches): each answers an exit code, 0 for
/// success, 1 when the operation failed, 2 for a configuration or usage error, with one line per outcome.
/// </summary>
public static class Cli
{
    public const string Usage = """
        usage: conduit [--role ROLE]                  run the server (all-in-one, or one part of a split deployment)
               conduit backup [DIR] [--role ROLE]     back up the running server (or a stopped one's database)
               conduit check-config                   check the configuration (CONDUIT_CONFIG) and exit
               conduit create-user NAME [PASSWORD] [--admin] [--role keys]
                                                      with the server stopped: an account (a password is made if none)
               conduit healthcheck [--role ROLE]      exit 0 if the running server answers (container healthchecks)
               conduit --rotate-signing-key [--role federation]
                                                      with the server stopped: a new federation signing key
               conduit --help                         this text

        The configuration is read from the file CONDUIT_CONFIG names (Conduit's conduit.toml keys), else the embedded
        default; CONDUIT_<KEY> environment variables override keys (CONDUIT_SERVICES__KEYS for [global.services] keys).
        ROLE: edge, keys, rooms, sync, federation or media. Backups go to DIR, else [global.backup] path (default
        database_path/backups), one folder each that is itself a database_path: to restore, stop the server and point
        database_path at it (or copy it there).
        """;

    /// <summary>conduit check-config: loads and checks the configuration (and the TLS files it names).</summary>
    public static int CheckConfig()
    {
        try
        {
            var loaded = ConfigLoader.Load();
            EdgeTls.FromConfig(loaded.Global, loaded.Source);
            foreach (var w in loaded.Warnings) Console.Error.WriteLine($"conduit: warning: {w}");
            Console.WriteLine($"conduit: the configuration is valid ({(loaded.IsEmbeddedDefault ? "the embedded default" : loaded.Source)}; server name {loaded.Global.ServerName})");
            return 0;
        }
        catch (Exception e) when (e is ConfigException or StartupException)
        {
            Console.Error.WriteLine($"conduit: {e.Message}");
            return 2;
        }
    }

    /// <summary>
    /// conduit backup [DIR]: through the control socket of each running process that has a database (all-in-one: one;
    /// split on one machine: each service's; <paramref name="role"/>: that one), else, for a stopped server, by opening
    /// the database itself (which fails, saying so, when a server holds it).
    /// </summary>
    public static async Task<int> BackupAsync(LoadedConfig loaded, string? role, string? dir)
    {
        var config = loaded.Global;
        var target = dir is null ? null : Path.GetFullPath(dir);
        string[] roles = role is not null ? [role] : Roles(config);
        var failed = false;
        foreach (var r in roles)
        {
            if (ConduitHost.DatabasePathFor(config, r) is not { } path)
            {
                Console.Error.WriteLine($"conduit: the {r} part keeps no data: back up the services");
                return 2;
            }
            try
            {
                string? written = null;
                // A socket left by a server that was killed refuses connections: then the database is backed up directly.
                if (ControlSocket.PathFor(path) is { } socket && File.Exists(socket))
                    try { written = await OnlineAsync(socket, target); }
                    catch (HttpRequestException e) when (e.InnerException is System.Net.Sockets.SocketException) { }
                written ??= await ConduitHost.OfflineBackupAsync(loaded, r, target);
                Console.WriteLine($"conduit: backup{(r == ConduitHost.AllInOne ? "" : " of " + r)} written to {written}");
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or HttpRequestException or System.Net.Sockets.SocketException or StartupException or NotSupportedException)
            {
                Console.Error.WriteLine($"conduit: backup{(r == ConduitHost.AllInOne ? "" : " of " + r)} failed: {e.Message}");
                failed = true;
            }
        }
        return failed ? 1 : 0;
    }

    /// <summary>conduit create-user NAME [PASSWORD] [--admin] (the server stopped; split: --role keys).</summary>
    public static int CreateUser(LoadedConfig loaded, string role, string? name, string? password, bool admin)
    {
        if (name is null)
        {
            Console.Error.WriteLine("conduit: usage: conduit create-user NAME [PASSWORD] [--admin]");
            return 2;
        }
        try
        {
            var (userId, pw) = ConduitHost.CreateUser(loaded, role, name, password, admin);
            Console.WriteLine($"conduit: created {userId}{(admin ? ", a server admin" : "")}{(password is null ? $", password {pw}" : "")}");
            return 0;
        }
        catch (Common.MatrixException e)
        {
            Console.Error.WriteLine($"conduit: {e.Message}");
            return 1;
        }
        catch (Exception e) when (e is ConfigException or StartupException)
        {
            Console.Error.WriteLine($"conduit: {e.Message}");
            return 2;
        }
    }

    /// <summary>
    /// conduit healthcheck [--role R] (a container's HEALTHCHECK): exit 0 when the process answers. All-in-one and the
    /// edge: GET /health on the public listener (over loopback; with [global.tls], the certificate it
    /// presents must be the configured one, since the name 127.0.0.1 is not on it). A service: GET /health on its
    /// control socket (its internal listener needs the internal secret).
    /// </summary>
    public static async Task<int> HealthCheckAsync(LoadedConfig loaded, string role)
    {
        var config = loaded.Global;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        try
        {
            if (role is ConduitHost.AllInOne or "edge")
            {
                using var handler = new SocketsHttpHandler();
                var scheme = "http";
                if (config.Tls is { Certs: { Length: > 0 } certs })
                {
                    scheme = "https";
                    using var expected = System.Security.Cryptography.X509Certificates.X509Certificate2.CreateFromPemFile(certs, config.Tls.Key);
                    var thumbprint = expected.Thumbprint;
                    handler.SslOptions.RemoteCertificateValidationCallback = (_, cert, _, _) => cert is not null && new System.Security.Cryptography.X509Certificates.X509Certificate2(cert).Thumbprint == thumbprint;
                }
                var host = System.Net.IPAddress.TryParse(config.Address, out var ip) && !ip.Equals(System.Net.IPAddress.Any) && !ip.Equals(System.Net.IPAddress.IPv6Any) ? config.Address : "127.0.0.1";
                if (host.Contains(':')) host = $"[{host}]";
                using var http = new HttpClient(handler);
                using var response = await http.GetAsync($"{scheme}://{host}:{config.Port}/health", timeout.Token);
                if (!response.IsSuccessStatusCode) throw new IOException($"the server answered {(int)response.StatusCode}");
            }
            else
            {
                var path = ConduitHost.DatabasePathFor(config, role) ?? throw new ConfigException($"unknown role '{role}'");
                var socket = ControlSocket.PathFor(path) ?? throw new IOException("the database path is too long for a control socket");
                var (status, _) = await ControlSocket.CallAsync(socket, "/health", null, timeout.Token);
                if (status != 200) throw new IOException($"the server answered {status}");
            }
            return 0;
        }
        catch (Exception e) when (e is IOException or HttpRequestException or OperationCanceledException or System.Security.Cryptography.CryptographicException)
        {
            Console.Error.WriteLine($"conduit: unhealthy: {e.Message}");
            return 1;
        }
    }

    /// <summary>All-in-one unless database_path holds the services' folders (a split deployment on this machine).</summary>
    static string[] Roles(GlobalConfig config)
    {
        var split = new[] { "keys", "rooms", "sync", "federation", "media" }
            .Where(r => ConduitHost.DatabasePathFor(config, r) is { } p && Directory.Exists(p)).ToArray();
        var allInOne = ControlSocket.PathFor(config.DatabasePath) is { } s && File.Exists(s);
        return split.Length > 0 && !allInOne ? split : [ConduitHost.AllInOne];
    }

    static async Task<string> OnlineAsync(string socket, string? target)
    {
        var body = new JsonObject();
        if (target is not null) body["dir"] = target;
        var (status, answer) = await ControlSocket.CallAsync(socket, "/backup", body, CancellationToken.None);
        if (status == 200 && answer?["path"] is JsonValue v && v.TryGetValue(out string? path)) return path;
        throw new IOException(answer?["error"]?.ToString() ?? $"the server answered {status}");
    }
}

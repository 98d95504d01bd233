using System.Diagnostics.Metrics;
using System.Net;
using Conduit.Common.Admin;
using Conduit.Common.Config;
using Conduit.Common.Grpc;
using Conduit.Common.Http;
using Conduit.Common.Routing;
using Conduit.Common.Storage;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Grpc.Net.Client;
using Grpc.Net.Client.Configuration;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Routing.Constraints;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Conduit.Edge;

/// <summary>
/// Composes the executable. All-in-one (role "all"): the edge and every service in one process, services
/// calling each other in process and the edge mapping their endpoints directly. Split: "edge" proxies the
/// route table's paths to the services over HTTP/2; a service role serves its Matrix paths and gRPC on its
/// internal listener, behind <see cref="InternalGate"/>, and reaches its peers over gRPC.
/// </summary>
public static class ConduitHost
{
    public static readonly ServiceModule[] Modules =
    [
        Keys.KeysService.Module, Rooms.RoomsService.Module, Sync.SyncService.Module,
        Federation.FederationService.Module, Media.MediaService.Module,
    ];

    public const string AllInOne = "all";

    static IKeyValueStore OpenStore(GlobalConfig config, string path, IEnumerable<ServiceModule> modules)
    {
        try
        {
            Directory.CreateDirectory(path);
            return KvStore.Open(config.DatabaseBackend, path, modules.SelectMany(m => m.Families), new StoreOptions
            {
                CacheCapacity = config.CacheCapacity,
                Progress = line => Console.Error.WriteLine($"conduit: database: {line}"),
            });
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Most often another server already has it open (RocksDB's LOCK file), or the folder is not writable.
            throw new StartupException($"cannot open the {config.DatabaseBackend} database at {Path.GetFullPath(path)}: {e.Message}", e);
        }
    }

    /// <summary>
    /// conduit --rotate-signing-key: replaces the server's Ed25519 signing key with a new one while the server is
    /// stopped (the database is opened as the server would open it). The old key stays published under
    /// old_verify_keys with the time it expired, so what it signed still verifies (spec: server-server-api,
    /// "Publishing Keys"). Other servers use the new key once their cached copy of the old one expires (valid_until_ts,
    /// a day at most). The key lives in the federation service's database: all-in-one, or --role federation.
    /// </summary>
    public static string RotateSigningKey(LoadedConfig loaded, string role)
    {
        var config = loaded.Global;
        if (role is not (AllInOne or "federation"))
            throw new ConfigException("the signing key is in the federation service's database: run --rotate-signing-key all-in-one or with --role federation");
        var modules = role == AllInOne ? Modules : Modules.Where(m => m.Service == Service.Federation).ToArray();
        using var store = OpenStore(config, DatabasePathFor(config, role)!, modules);
        using var keys = new Federation.ServerKeys(store, config);
        var old = keys.Key.KeyId;
        return $"signing key {old} replaced by {keys.Rotate().KeyId}; {old} is kept as an old verify key";
    }

    /// <summary>
    /// conduit create-user NAME [PASSWORD] [--admin], for a server that is not running (the keys service's database:
    /// all-in-one, or --role keys): the account as registration makes it, without a device. Answers the user ID and
    /// the password (generated when none is given).
    /// </summary>
    public static (string UserId, string Password) CreateUser(LoadedConfig loaded, string role, string localpart, string? password, bool admin)
    {
        var config = loaded.Global;
        if (role is not (AllInOne or "keys")) throw new ConfigException("accounts are in the keys service's database: run create-user all-in-one or with --role keys");
        var modules = role == AllInOne ? Modules : Modules.Where(m => m.Service == Service.Keys).ToArray();
        var path = DatabasePathFor(config, role)!;
        using var store = OpenStore(config, path, modules);
        var collection = new ServiceCollection().AddSingleton(store).AddSingleton(config).AddLogging();
        Keys.KeysService.AddKeysService(collection);
        using var services = collection.BuildServiceProvider();
        // The runtime application service registrations too: their exclusive namespaces hold here as well.
        services.GetRequiredService<Keys.AppserviceRegistry>().Load();
        var accounts = services.GetRequiredService<Keys.AccountStore>();
        // "@name:server" is taken as its localpart.
        if (localpart.StartsWith('@')) localpart = localpart.IndexOf(':') is var c and > 0 ? localpart[1..c] : localpart[1..];
        localpart = localpart.ToLowerInvariant();
        if (!Common.Ids.IsValidLocalpart(localpart) || Common.Ids.UserId(localpart, config.ServerName).Length > 255)
            throw Err.InvalidUsername("A user name may only contain a-z, 0-9, '.', '_', '=', '-', '/' and '+', and a user ID is at most 255 characters");
        password ??= Common.Ids.Random(24);
        accounts.Register(localpart, password, null, null, inhibitLogin: true, ip: null);
        var userId = Common.Ids.UserId(localpart, config.ServerName);
        if (admin) accounts.SetAdmin(userId, true);
        return (userId, password);
    }

    /// <summary>conduit backup for a server that is not running: the database opened as the server would open it.</summary>
    public static async Task<string> OfflineBackupAsync(LoadedConfig loaded, string role, string? target)
    {
        var config = loaded.Global;
        var modules = role == AllInOne ? Modules : Modules.Where(m => string.Equals(m.Service.ToString(), role, StringComparison.OrdinalIgnoreCase)).ToArray();
        var path = DatabasePathFor(config, role) ?? throw new ConfigException($"the {role} part keeps no data");
        if (!Directory.Exists(path)) throw new StartupException($"there is no database at {Path.GetFullPath(path)}", null);
        using var store = OpenStore(config, path, modules);
        return await new Backups(store, config, role, path).CreateAsync(target, CancellationToken.None);
    }

    /// <param name="ownsProcess">whether the server is the whole process (the conduit executable), so that it may
    /// act on the whole process's memory (<see cref="MemoryTrimmer.Options"/>); false where tests host it.</param>
    public static WebApplication Build(LoadedConfig loaded, string role, string[]? args = null, bool ownsProcess = false)
    {
        var config = loaded.Global;
        // The slim builder leaves out what this server never uses (IIS integration, Kestrel's HTTPS and QUIC
        // configuration, the EventLog/EventSource/Debug log providers): less code loaded, less memory.
        // The configuration is conduit.toml; appsettings.json (which the builder would also read) is not watched for
        // changes: no inotify instance and watcher thread per process (containers cap inotify instances at 128).
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = ["--hostBuilder:reloadConfigOnChange=false", .. args ?? []] });
        // The route table's action segments ({action:oneof(join|invite|...)}).
        builder.Services.Configure<RouteOptions>(o => o.SetParameterPolicy<Common.Routing.OneOfRouteConstraint>(Common.Routing.OneOfRouteConstraint.Name));
        builder.Logging.ClearProviders();
        if (config.LogFormat == "json")
            // One JSON object per line (timestamp, level, category, message, the template's values), for log collectors.
            builder.Logging.AddJsonConsole(o => { o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ"; o.UseUtcTimestamp = true; });
        else
            builder.Logging.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss "; });
        var logWarnings = LogConfig.Apply(builder.Logging, config.Log);
        builder.Services.AddSingleton(config);
        // Meters come from the host's factory (see ConduitMeters); without a collector nothing listens to them.
        builder.Services.AddMetrics();
        builder.Services.Configure<Microsoft.Extensions.Hosting.HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(5));
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Limits.MaxRequestBodySize = config.MaxRequestSize;
            k.AddServerHeader = false;
        });

        var selfService = role switch
        {
            AllInOne or "edge" => (Service?)null,
            _ => Enum.TryParse<Service>(role, ignoreCase: true, out var s) && s != Service.Edge ? s : throw new ConfigException($"Unknown role '{role}': use edge, keys, rooms, sync, federation or media"),
        };
        var modules = role == AllInOne ? Modules : Modules.Where(m => m.Service == selfService).ToArray();
        var secret = config.Services.InternalSecret;
        if (role != AllInOne && string.IsNullOrEmpty(secret))
            throw new ConfigException($"{loaded.Source}: split mode needs 'global.services.internal_secret' (or CONDUIT_SERVICES__INTERNAL_SECRET), shared by every part");

        if (role != AllInOne)
            foreach (var s in Enum.GetValues<Service>().Where(s => s != Service.Edge))
                ServiceEndpoint(config, s, loaded.Source);
        // Before the database opens: a start that fails on its certificate leaves no database held.
        var tls = role is AllInOne or "edge" ? EdgeTls.FromConfig(config, loaded.Source) : null;

        string? controlSocket = null;
        if (DatabasePathFor(config, role) is { } path)
        {
            // One database all-in-one; in split mode each service process has its own, under database_path/<service>,
            // each with the whole cache_capacity (the processes may run on different machines).
            builder.Services.AddSingleton(OpenStore(config, path, modules));
            builder.Services.AddSingleton(sp => new Backups(sp.GetRequiredService<IKeyValueStore>(), config, role, path));
            // After the database (its lock shows no other server uses this folder, so a stale socket can go).
            controlSocket = ControlSocket.PathFor(path);
            // Media bytes live beside the database, as in Conduit: database_path/media.
            builder.Services.AddSingleton(new Media.MediaDirectory(Path.Combine(path, "media")));
        }
        foreach (var m in modules) m.Add(builder.Services);

        RegisterClients(builder.Services, config, role);
        // Split mode: the keys service holds the application services registered at runtime; the others follow it.
        if (role != AllInOne && selfService != Service.Keys) builder.Services.AddHostedService<Keys.AppserviceFollower>();
        var memory = new MemoryTrimmer.Options(OwnsProcess: ownsProcess);
        builder.Services.AddSingleton(memory);
        builder.Services.AddSingleton<IProcessOps>(sp => new ProcessOps(sp, role, memory));
        builder.Services.AddSingleton<DeploymentOps>();
        builder.Services.AddSingleton<InternalCalls>();

        if (role is AllInOne or "edge")
        {
            builder.Services.AddSingleton<TokenCache>();
            builder.Services.AddHostedService(sp => sp.GetRequiredService<TokenCache>());
            builder.Services.AddSingleton<IClearableCache>(sp => new ClearableCache("access_tokens", sp.GetRequiredService<TokenCache>().Clear));
            builder.WebHost.ConfigureKestrel(k => k.Listen(ListenEndpoint(config, role), l =>
            {
                l.Protocols = HttpProtocols.Http1;
                // TLS first: the middleware after it sees the plaintext HTTP/1.1 bytes.
                if (tls is not null) l.UseHttps(tls.HandshakeOptions());
                l.Use(ServerErrorBodies.Middleware);
            }));
            if (role == "edge") SplitProxy.Add(builder.Services, config);
        }
        else
        {
            builder.WebHost.ConfigureKestrel(k => k.Listen(ListenEndpoint(config, role), l => l.Protocols = HttpProtocols.Http2));
            builder.Services.AddGrpc(o =>
            {
                o.Interceptors.Add<MatrixErrorServerInterceptor>();
                o.MaxReceiveMessageSize = 64 * 1024 * 1024;
            });
        }

        // After the main listener, so Kestrel binds (and lists) that one first.
        if (config.Metrics.Enabled) MetricsEndpoint.Add(builder, config, role);

        // After the public or internal listener, so that it stays the first of the server's addresses.
        if (controlSocket is { } socketPath) builder.WebHost.ConfigureKestrel(k => ControlSocket.Listen(k, socketPath));
        // What starting leaves behind (garbage in the managed heap, freed pages in the C heap) goes back to the system.
        builder.Services.AddHostedService<MemoryTrimmer>();
        var app = builder.Build();
        var log = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Conduit");
        foreach (var w in loaded.Warnings.Concat(logWarnings)) log.LogWarning("{Warning}", w);
        tls?.UseLogger(log);
        // Once Kestrel has bound (so port 0 reads as the real port), and whatever the log level.
        app.Lifetime.ApplicationStarted.Register(() =>
        {
            if (controlSocket is not null) ControlSocket.Protect(controlSocket);
            var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses ?? [];
            var metrics = app.Services.GetService<MetricsEndpoint.Listener>()?.Url;
            foreach (var line in StartupReport.Lines(loaded, role, addresses, metrics)) Console.Out.WriteLine(line);
        });
        if (controlSocket is not null) app.Use(ControlSocket.Middleware);

        // First: the metrics listener's requests never reach the Matrix pipeline, and a request's time includes all of it.
        if (config.Metrics.Enabled) MetricsEndpoint.Use(app, measureRequests: role is AllInOne or "edge");
        if (role is AllInOne or "edge")
        {
            app.UseMiddleware<ErrorMiddleware>();
            app.UseMiddleware<EdgeGate>(config.MaxRequestSize, config.MaxConcurrentRequests);
            app.UseMiddleware<EdgeClientIp>(TrustedProxies.Parse(config.TrustedProxies));
            app.UseMiddleware<EdgeAuth>(config.AllowFederation);
            app.MapEdge(config);
            if (role == AllInOne) foreach (var m in modules) m.MapHttp(app);
            else app.MapSplitProxy();
        }
        else
        {
            app.UseMiddleware<InternalGate>(secret!);
            app.UseMiddleware<ErrorMiddleware>();
            foreach (var m in modules)
            {
                m.MapHttp(app);
                m.MapGrpc?.Invoke(app);
            }
            ProcessOps.MapInternal(app);
        }
        return app;
    }

    /// <summary>Where this process listens: the public address all-in-one and for the edge, else the service's
    /// internal listener from [global.services].</summary>
    public static IPEndPoint ListenEndpoint(GlobalConfig config, string role)
    {
        if (role is AllInOne or "edge") return new IPEndPoint(IPAddress.Parse(config.Address), config.Port);
        return Enum.TryParse<Service>(role, ignoreCase: true, out var s) && s != Service.Edge
            ? ServiceEndpoint(config, s, "config")
            : throw new ConfigException($"Unknown role '{role}': use edge, keys, rooms, sync, federation or media");
    }

    /// <summary>Where a split part keeps its data: one database all-in-one; each service process its own, under
    /// database_path/&lt;service&gt;; none for the edge.</summary>
    public static string? DatabasePathFor(GlobalConfig config, string role) =>
        role == AllInOne ? config.DatabasePath
        : Modules.Any(m => string.Equals(m.Service.ToString(), role, StringComparison.OrdinalIgnoreCase) && m.Families.Count > 0) ? Path.Combine(config.DatabasePath, role)
        : null;

    // A service's address in [global.services] is both what it binds and what its peers dial, so it needs a fixed
    // port: with port 0 nobody could find it. An IP is bound as given; a host name (a container's name in
    // docker-compose) means "the address peers reach me by", so listen on every interface.
    static IPEndPoint ServiceEndpoint(GlobalConfig config, Service s, string source)
    {
        var key = $"global.services.{s.ToString().ToLowerInvariant()}";
        var value = config.Services.AddressOf(s);
        if (!Uri.TryCreate(value, UriKind.Absolute, out var uri) || uri.Scheme != "http" || uri.Port <= 0)
            throw new ConfigException($"{source}: key '{key}' must be an address with a fixed port such as http://127.0.0.1:6172, not \"{value}\"");
        var bind = uri.Host == "localhost" ? IPAddress.Loopback : IPAddress.TryParse(uri.Host, out var ip) ? ip : IPAddress.Any;
        return new IPEndPoint(bind, uri.Port);
    }

    /// <summary>
    /// Clients of every gRPC service. All-in-one: in process, bound on first call. Split: HTTP/2 to the peer's
    /// internal listener with the shared secret, gRPC's own retry policy (peers may start later or restart),
    /// and Matrix errors rebuilt from trailers.
    /// </summary>
    static void RegisterClients(IServiceCollection services, GlobalConfig config, string role)
    {
        if (config.Metrics.Enabled)
            services.AddSingleton(sp => new GrpcClientMetrics(sp.GetRequiredService<IMeterFactory>().Create(Common.Metrics.ConduitMeters.Grpc)));

        CallInvoker For(IServiceProvider sp, Service s)
        {
            // Inside the Matrix-error interceptor, so the metrics see gRPC statuses.
            var metrics = sp.GetService<GrpcClientMetrics>();
            CallInvoker Measured(CallInvoker i) => metrics is null ? i : i.Intercept(metrics);
            if (role == AllInOne)
            {
                var module = Modules.Single(m => m.Service == s);
                return Measured(new LazyCallInvoker(() => InProcessCallInvoker.Create(sp, b => module.BindInProcess!(b, sp)))).WithMatrixErrors();
            }
            var channel = GrpcChannel.ForAddress(config.Services.AddressOf(s), new GrpcChannelOptions
            {
                HttpHandler = new SocketsHttpHandler
                {
                    EnableMultipleHttp2Connections = true,
                    KeepAlivePingDelay = TimeSpan.FromSeconds(30),
                    KeepAlivePingTimeout = TimeSpan.FromSeconds(10),
                    PooledConnectionIdleTimeout = Timeout.InfiniteTimeSpan,
                },
                MaxReceiveMessageSize = 64 * 1024 * 1024,
                ServiceConfig = new ServiceConfig
                {
                    MethodConfigs =
                    {
                        new MethodConfig
                        {
                            Names = { MethodName.Default },
                            RetryPolicy = new RetryPolicy
                            {
                                MaxAttempts = 5,
                                InitialBackoff = TimeSpan.FromMilliseconds(100),
                                MaxBackoff = TimeSpan.FromSeconds(2),
                                BackoffMultiplier = 2,
                                RetryableStatusCodes = { StatusCode.Unavailable },
                            },
                        },
                    },
                },
            });
            return Measured(channel.CreateCallInvoker().WithInternalSecret(config.Services.InternalSecret!)).WithMatrixErrors();
        }

        services.AddSingleton(sp => new Protos.Keys.Keys.KeysClient(For(sp, Service.Keys)));
        services.AddSingleton(sp => new Protos.Rooms.Rooms.RoomsClient(For(sp, Service.Rooms)));
        services.AddSingleton(sp => new Protos.Federation.Federation.FederationClient(For(sp, Service.Federation)));
        services.AddSingleton(sp => new Protos.Sync.Sync.SyncClient(For(sp, Service.Sync)));
    }
}

using System.Net;
using Conduit.Common.Config;
using Conduit.Common.Grpc;
using Conduit.Common.Http;
using Conduit.Common.Routing;
using Conduit.Common.Storage;
using Grpc.Core;
using Grpc.Net.Client;
using Grpc.Net.Client.Configuration;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
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

    public static WebApplication Build(LoadedConfig loaded, string role, string[]? args = null)
    {
        var config = loaded.Global;
        // The slim builder leaves out what this server never uses (IIS integration, Kestrel's HTTPS and QUIC
        // configuration, the EventLog/EventSource/Debug log providers): less code loaded, less memory.
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = args ?? [] });
        // RouteTable.Membership constrains {action} with a regex, which the slim builder does not register.
        builder.Services.Configure<RouteOptions>(o => o.SetParameterPolicy<RegexInlineRouteConstraint>("regex"));
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss "; });
        var logWarnings = LogConfig.Apply(builder.Logging, config.Log);
        builder.Services.AddSingleton(config);
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

        // Storage: one database all-in-one; in split mode each service process has its own, under
        // database_path/<service>, each with the whole cache_capacity (the processes may run on different machines).
        if (modules.Any(m => m.Families.Count > 0))
        {
            var path = role == AllInOne ? config.DatabasePath : Path.Combine(config.DatabasePath, role);
            Directory.CreateDirectory(path);
            var store = KvStore.Open(config.DatabaseBackend, path, modules.SelectMany(m => m.Families), new StoreOptions { CacheCapacity = config.CacheCapacity });
            builder.Services.AddSingleton(store);
        }
        foreach (var m in modules) m.Add(builder.Services);

        RegisterClients(builder.Services, config, role);

        if (role is AllInOne or "edge")
        {
            builder.Services.AddSingleton<TokenCache>();
            builder.Services.AddHostedService(sp => sp.GetRequiredService<TokenCache>());
            builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Parse(config.Address), config.Port, l => l.Protocols = HttpProtocols.Http1));
            if (role == "edge") SplitProxy.Add(builder.Services, config);
        }
        else
        {
            var uri = new Uri(config.Services.AddressOf(selfService!.Value));
            // An IP in the service's address is bound as given; a host name (a container's name in
            // docker-compose) means "the address peers reach me by", so listen on every interface.
            var bind = uri.Host == "localhost" ? IPAddress.Loopback : IPAddress.TryParse(uri.Host, out var ip) ? ip : IPAddress.Any;
            builder.WebHost.ConfigureKestrel(k => k.Listen(bind, uri.Port, l => l.Protocols = HttpProtocols.Http2));
            builder.Services.AddGrpc(o =>
            {
                o.Interceptors.Add<MatrixErrorServerInterceptor>();
                o.MaxReceiveMessageSize = 64 * 1024 * 1024;
            });
        }

        var app = builder.Build();
        // Starting up (config, DI, route tables, gRPC descriptors, opening the database) leaves megabytes of
        // garbage in heap regions the GC would otherwise keep committed until later collections: collect once the
        // server listens and give the free regions back, so an idle server's memory is what it actually holds.
        app.Lifetime.ApplicationStarted.Register(() => GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true));
        var log = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Conduit");
        foreach (var w in loaded.Warnings.Concat(logWarnings)) log.LogWarning("{Warning}", w);

        if (role is AllInOne or "edge")
        {
            app.UseMiddleware<ErrorMiddleware>();
            app.UseMiddleware<EdgeGate>(config.MaxRequestSize, config.MaxConcurrentRequests);
            app.UseMiddleware<EdgeAuth>();
            app.MapEdge(config);
            if (role == AllInOne) foreach (var m in modules) m.MapHttp(app);
            else app.MapReverseProxy();
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
        }
        return app;
    }

    /// <summary>
    /// Clients of every gRPC service. All-in-one: in process, bound on first call. Split: HTTP/2 to the peer's
    /// internal listener with the shared secret, gRPC's own retry policy (peers may start later or restart),
    /// and Matrix errors rebuilt from trailers.
    /// </summary>
    static void RegisterClients(IServiceCollection services, GlobalConfig config, string role)
    {
        CallInvoker For(IServiceProvider sp, Service s)
        {
            if (role == AllInOne)
            {
                var module = Modules.Single(m => m.Service == s);
                return new LazyCallInvoker(() => InProcessCallInvoker.Create(sp, b => module.BindInProcess!(b, sp))).WithMatrixErrors();
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
            return channel.CreateCallInvoker().WithInternalSecret(config.Services.InternalSecret!).WithMatrixErrors();
        }

        services.AddSingleton(sp => new Protos.Keys.Keys.KeysClient(For(sp, Service.Keys)));
        services.AddSingleton(sp => new Protos.Rooms.Rooms.RoomsClient(For(sp, Service.Rooms)));
        services.AddSingleton(sp => new Protos.Federation.Federation.FederationClient(For(sp, Service.Federation)));
    }
}

using Microsoft.AspNetCore.Builder;
using Conduit.Common.Routing;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Conduit.Sync;

/// <summary>Composition entry points of the sync service. It calls rooms, keys and federation; federation calls it with EDUs.</summary>
public static class SyncService
{
    public static IServiceCollection AddSyncService(this IServiceCollection services)
    {
        services.AddSingleton<AccountDataStore>().AddSingleton<ReceiptStore>().AddSingleton<TypingState>().AddSingleton(sp => new PresenceState(sp.GetRequiredService<Conduit.Common.Storage.IKeyValueStore>())).AddSingleton<PresenceEndpoints>().AddSingleton<SyncNotifier>().AddSingleton<SyncEndpoints>().AddSingleton<TagEndpoints>()
            .AddSingleton<Push.PushStore>().AddSingleton<Push.PushSender>().AddSingleton<Push.PushWorker>().AddSingleton<Push.PushEndpoints>()
            .AddSingleton<FederatedEphemeral>().AddSingleton<SyncGrpcService>()
            .AddSingleton<Appservices.AppserviceQueue>().AddSingleton<Appservices.AppserviceSender>().AddSingleton<Appservices.AppserviceFeed>().AddSingleton<Appservices.AppserviceEphemeral>()
            .AddSingleton<Sliding.SlidingConnections>().AddSingleton<Sliding.SlidingSyncEndpoint>();
        services.AddHostedService(sp => sp.GetRequiredService<SyncNotifier>());
        services.AddHostedService<PresenceTimer>();
        services.AddHostedService(sp => sp.GetRequiredService<Push.PushWorker>());
        services.AddHostedService(sp => sp.GetRequiredService<Push.PushSender>());
        services.AddHostedService(sp => sp.GetRequiredService<Appservices.AppserviceFeed>());
        services.AddHostedService(sp => sp.GetRequiredService<Appservices.AppserviceSender>());
        return services;
    }

    public static IEndpointRouteBuilder MapSyncService(this IEndpointRouteBuilder app)
    {
        app.ServiceProvider.GetRequiredService<SyncEndpoints>().Map(app);
        app.ServiceProvider.GetRequiredService<TagEndpoints>().Map(app);
        app.ServiceProvider.GetRequiredService<PresenceEndpoints>().Map(app);
        app.ServiceProvider.GetRequiredService<Sliding.SlidingSyncEndpoint>().Map(app);
        return app;
    }

    public static readonly ServiceModule Module = new(
        Service.Sync,
        SyncFamilies.All,
        s => s.AddSyncService(),
        app => app.MapSyncService(),
        app => app.MapGrpcService<SyncGrpcService>(),
        (binder, sp) => Protos.Sync.Sync.BindService(binder, sp.GetRequiredService<SyncGrpcService>()));
}

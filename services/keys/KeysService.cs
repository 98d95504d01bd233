using Conduit.Common.Appservices;
using Conduit.Common.Http;
using Conduit.Common.Routing;
using Conduit.Keys.E2ee;
using Grpc.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Conduit.Keys;

/// <summary>Composition entry points of the keys service.</summary>
public static class KeysService
{
    public static IServiceCollection AddKeysService(this IServiceCollection services)
        => services.AddRateLimits().AddAppserviceQueries().AddSingleton<AccountStore>().AddSingleton<AppserviceUsers>().AddSingleton<KeyBackupStore>().AddSingleton<Uia>()
            .AddSingleton<KeysEndpoints>().AddSingleton<RegistrationTokens>().AddSingleton<AdminEndpoints>().AddSingleton<SharedSecretRegistration>().AddSingleton<KeyBackupEndpoints>().AddSingleton<ThirdPartyIdentityEndpoints>().AddSingleton<KeysGrpcService>()
            .AddSingleton<KeysStream>().AddSingleton<E2eeStore>().AddSingleton<CrossSigning>().AddSingleton<E2eeEndpoints>()
            // The first hosted service (they start in order, before the listeners): the runtime registrations are in
            // the config before anything runs.
            .AddSingleton<AppserviceRegistry>().AddHostedService(sp => sp.GetRequiredService<AppserviceRegistry>())
            .AddSingleton<AppserviceAdminEndpoints>()
            .AddSingleton<RemoteDeviceLists>().AddSingleton<FederatedKeys>().AddHostedService<DeviceListSender>();

    public static IEndpointRouteBuilder MapKeysService(this IEndpointRouteBuilder app)
    {
        app.ServiceProvider.GetRequiredService<KeysEndpoints>().Map(app);
        app.ServiceProvider.GetRequiredService<AdminEndpoints>().Map(app);
        app.ServiceProvider.GetRequiredService<AppserviceAdminEndpoints>().Map(app);
        app.ServiceProvider.GetRequiredService<SharedSecretRegistration>().Map(app);
        app.ServiceProvider.GetRequiredService<E2eeEndpoints>().Map(app);
        app.ServiceProvider.GetRequiredService<KeyBackupEndpoints>().Map(app);
        app.ServiceProvider.GetRequiredService<ThirdPartyIdentityEndpoints>().Map(app);
        return app;
    }

    public static readonly ServiceModule Module = new(
        Service.Keys,
        KeysFamilies.All,
        s => s.AddKeysService(),
        app => app.MapKeysService(),
        app => app.MapGrpcService<KeysGrpcService>(),
        (binder, sp) => Protos.Keys.Keys.BindService(binder, sp.GetRequiredService<KeysGrpcService>()));
}

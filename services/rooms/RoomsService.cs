using Conduit.Common.Routing;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Conduit.Rooms;

/// <summary>Composition entry points of the rooms service.</summary>
public static class RoomsService
{
    public static IServiceCollection AddRoomsService(this IServiceCollection services)
        => services.AddSingleton<RoomStore>().AddSingleton<StateStore>().AddSingleton<RoomStream>().AddSingleton<EventSender>().AddSingleton<ClientEvents>()
            .AddSingleton<Visibility>().AddSingleton<SyncBuilder>().AddSingleton<RoomsEndpoints>().AddSingleton<RoomFeatures>().AddSingleton<Search>().AddSingleton<RoomsGrpcService>();

    public static IEndpointRouteBuilder MapRoomsService(this IEndpointRouteBuilder app)
    {
        app.ServiceProvider.GetRequiredService<RoomsEndpoints>().Map(app);
        app.ServiceProvider.GetRequiredService<RoomFeatures>().Map(app);
        app.ServiceProvider.GetRequiredService<Search>().Map(app);
        return app;
    }

    public static readonly ServiceModule Module = new(
        Service.Rooms,
        RoomsFamilies.All,
        s => s.AddRoomsService(),
        app => app.MapRoomsService(),
        app => app.MapGrpcService<RoomsGrpcService>(),
        (binder, sp) => Protos.Rooms.Rooms.BindService(binder, sp.GetRequiredService<RoomsGrpcService>()));
}

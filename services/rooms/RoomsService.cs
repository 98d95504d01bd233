using Conduit.Common.Appservices;
using Conduit.Common.Http;
using Conduit.Common.Routing;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Conduit.Rooms;

/// <summary>Composition entry points of the rooms service.</summary>
public static class RoomsService
{
    public static IServiceCollection AddRoomsService(this IServiceCollection services)
        => services.AddRateLimits().AddAppserviceQueries().AddSingleton<RoomStore>().AddSingleton<StateStore>().AddSingleton<RoomStream>().AddSingleton<RoomWriter>().AddSingleton<RoomPurger>()
            .AddSingleton<EventSigner>().AddHostedService(sp => sp.GetRequiredService<EventSigner>()).AddSingleton<EventSender>().AddSingleton<GuestAccessEnforcer>().AddHostedService(sp => sp.GetRequiredService<GuestAccessEnforcer>())
            .AddSingleton<Relations>().AddSingleton<ClientEvents>().AddSingleton<Visibility>().AddSingleton<SyncBuilder>().AddSingleton<SlidingBuilder>().AddSingleton<PushFeed>().AddSingleton<DeviceLists>().AddSingleton<RoomParams>().AddSingleton<AliasLookup>()
            .AddSingleton<CreateRoomEndpoint>().AddSingleton<MembershipEndpoints>().AddSingleton<EventEndpoints>().AddSingleton<ReadEndpoints>()
            .AddSingleton<AliasEndpoints>().AddSingleton<UpgradeEndpoint>().AddSingleton<SearchEndpoint>().AddSingleton<RoomSummaries>().AddSingleton<RoomInfoEndpoints>().AddSingleton<SpaceEndpoints>().AddSingleton<DirectoryEndpoints>().AddSingleton<ThirdPartyEndpoints>().AddSingleton<AdminRoomEndpoints>().AddSingleton<AdminReportEndpoints>().AddSingleton<RelationEndpoints>().AddSingleton<UserDirectoryEndpoint>().AddSingleton<RoomsGrpcService>()
            .AddSingleton<RemoteServers>().AddSingleton<FederationServer>().AddSingleton<RemoteMembership>().AddSingleton<IdentityKeyCheck>().AddSingleton<ThirdPartyInvites>().AddSingleton<FederationFeed>().AddSingleton<RemoteHistory>().AddSingleton<RemoteTimestamps>()
            .AddSingleton<Admin.AdminCommands>().AddSingleton<Admin.AdminRoom>().AddHostedService(sp => sp.GetRequiredService<Admin.AdminRoom>());

    public static IEndpointRouteBuilder MapRoomsService(this IEndpointRouteBuilder app)
    {
        var sp = app.ServiceProvider;
        sp.GetRequiredService<CreateRoomEndpoint>().Map(app);
        sp.GetRequiredService<MembershipEndpoints>().Map(app);
        sp.GetRequiredService<EventEndpoints>().Map(app);
        sp.GetRequiredService<ReadEndpoints>().Map(app);
        sp.GetRequiredService<AdminRoomEndpoints>().Map(app);
        sp.GetRequiredService<AdminReportEndpoints>().Map(app);
        sp.GetRequiredService<AliasEndpoints>().Map(app);
        sp.GetRequiredService<UpgradeEndpoint>().Map(app);
        sp.GetRequiredService<SearchEndpoint>().Map(app);
        sp.GetRequiredService<RoomInfoEndpoints>().Map(app);
        sp.GetRequiredService<SpaceEndpoints>().Map(app);
        sp.GetRequiredService<DirectoryEndpoints>().Map(app);
        sp.GetRequiredService<ThirdPartyEndpoints>().Map(app);
        sp.GetRequiredService<RelationEndpoints>().Map(app);
        sp.GetRequiredService<UserDirectoryEndpoint>().Map(app);
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

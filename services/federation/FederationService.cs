using System.Text.Json.Nodes;
using Conduit.Common.Http;
using Conduit.Common.Routing;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Conduit.Federation;

/// <summary>
/// Composition entry points of the federation service. It owns the signing key and /_matrix/key; the
/// server-server API beyond the version and key endpoints is not implemented yet (it answers M_UNRECOGNIZED).
/// </summary>
public static class FederationService
{
    public static IServiceCollection AddFederationService(this IServiceCollection services)
        => services.AddSingleton<ServerKeys>().AddSingleton<FederationGrpcService>();

    public static IEndpointRouteBuilder MapFederationService(this IEndpointRouteBuilder app)
    {
        var keys = app.ServiceProvider.GetRequiredService<ServerKeys>();
        // The keyId path parameter is deprecated; any value answers with all current keys, as Synapse does.
        app.Map(RouteTable.ServerKeys, ctx => ctx.Response.WriteJsonAsync(keys.KeyResponse()));
        app.Map(RouteTable.FederationVersion, ctx => ctx.Response.WriteJsonAsync(new JsonObject
        {
            ["server"] = new JsonObject { ["name"] = "Conduit.Services", ["version"] = typeof(FederationService).Assembly.GetName().Version?.ToString(3) ?? "0.1.0" },
        }));
        return app;
    }

    public static readonly ServiceModule Module = new(
        Service.Federation,
        FederationFamilies.All,
        s => s.AddFederationService(),
        app => app.MapFederationService(),
        app => app.MapGrpcService<FederationGrpcService>(),
        (binder, sp) => Protos.Federation.Federation.BindService(binder, sp.GetRequiredService<FederationGrpcService>()));
}

using System.Diagnostics.Metrics;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Http;
using Conduit.Common.Routing;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;

namespace Conduit.Federation;

/// <summary>
/// Composition entry points of the federation service. It owns the signing key, /_matrix/key and the server-server
/// API: requests are authenticated here and the rooms service answers what concerns rooms; outbound requests of
/// every service go through <see cref="FederationRequests"/>.
/// </summary>
public static class FederationService
{
    /// <summary>The outbound queue's depth and its destinations per state, read when scraped (one queue scan for both).</summary>
    static void AddQueueInstruments(IMeterFactory meters, Outbound.FederationQueue queue)
    {
        var m = meters.Create(Common.Metrics.ConduitMeters.Federation);
        // Both gauges are read in the same scrape (scrapes take turns): the second reuses the first's count.
        (long At, (int Destinations, long Items)[] Depths) last = (0, []);
        IEnumerable<Measurement<long>> Read(bool items)
        {
            if (last.Depths.Length == 0 || Environment.TickCount64 - last.At > 1000) last = (Environment.TickCount64, queue.Depths());
            var depths = last.Depths;
            for (var i = 0; i < depths.Length; i++)
                yield return new(items ? depths[i].Items : depths[i].Destinations, new KeyValuePair<string, object?>("state", Outbound.FederationQueue.States[i]));
        }
        m.CreateObservableGauge("conduit.federation.queue.depth", () => Read(items: true), null, "Items (PDUs and EDUs) queued for other servers, by the state of their destination.");
        m.CreateObservableGauge("conduit.federation.destinations", () => Read(items: false), null, "Destinations with something queued or failing, by state (backoff: failing, waiting to retry).");
    }

    public static IServiceCollection AddFederationService(this IServiceCollection services)
    {
        // Keys are fetched through the federation client (server name resolution, validated TLS); tests put a fake here.
        services.TryAddSingleton<IRemoteKeyFetcher>(sp => new HttpRemoteKeyFetcher(sp.GetRequiredService<FederationClient>().Http,
            (name, _) => ValueTask.FromResult(new Uri($"matrix-federation://{name}/"))));
        // Transactions go out over HTTP, signed (tests may put another sender here).
        services.TryAddSingleton<Outbound.ITransactionSender, Outbound.HttpTransactionSender>();
        services.TryAddSingleton(Outbound.FederationQueueOptions.Default);
        services.AddSingleton(sp =>
        {
            var queue = new Outbound.FederationQueue(sp.GetRequiredService<Common.Storage.IKeyValueStore>(), sp.GetService<Outbound.ITransactionSender>(),
                sp.GetRequiredService<Outbound.FederationQueueOptions>(), sp.GetService<TimeProvider>(), sp.GetService<ILogger<Outbound.FederationQueue>>());
            if (sp.GetService<IMeterFactory>() is { } meters) AddQueueInstruments(meters, queue);
            return queue;
        });
        services.AddHostedService(sp => sp.GetRequiredService<Outbound.FederationQueue>());
        services.AddHostedService<Outbound.FederationFeedWorker>();
        services.AddSingleton<Common.Admin.IClearableCache>(sp => new Common.Admin.ClearableCache("federation_well_known", sp.GetRequiredService<FederationClient>().Resolver.ClearCache));
        services.AddSingleton<Common.Admin.IClearableCache>(sp => new Common.Admin.ClearableCache("federation_key_fetch_failures", sp.GetRequiredService<RemoteKeyStore>().ClearFailures));
        return services.AddSingleton<ServerKeys>().AddSingleton<RemoteKeyStore>().AddSingleton<KeyNotary>().AddSingleton<XMatrixVerifier>()
            .AddSingleton<FederationGrpcService>().AddSingleton<FederationClient>()
            .AddSingleton<FederationRequests>().AddSingleton<FederationEndpoints>().AddSingleton<FederationAdminEndpoints>();
    }

    public static IEndpointRouteBuilder MapFederationService(this IEndpointRouteBuilder app)
    {
        var keys = app.ServiceProvider.GetRequiredService<ServerKeys>();
        var endpoints = app.ServiceProvider.GetRequiredService<FederationEndpoints>();
        endpoints.Map(app);
        app.ServiceProvider.GetRequiredService<FederationAdminEndpoints>().Map(app);
        // A server that reaches us is up: its queue stops backing off (as Synapse does on any authenticated request).
        var queue = app.ServiceProvider.GetRequiredService<Outbound.FederationQueue>();
        endpoints.Contacted += queue.Wake;
        // The keyId path parameter is deprecated; any value answers with all current keys, as Synapse does.
        app.Map(RouteTable.ServerKeys, ctx => ctx.Response.WriteJsonAsync(keys.KeyResponse()));
        var notary = app.ServiceProvider.GetRequiredService<KeyNotary>();
        app.Map(RouteTable.KeyQuery, async ctx =>
        {
            long? min = null;
            if (ctx.Request.Query.TryGetValue("minimum_valid_until_ts", out var q))
                min = long.TryParse(q.ToString(), System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out var ts)
                    ? ts : throw Err.InvalidParam("minimum_valid_until_ts must be an integer");
            var server = (string)ctx.Request.RouteValues["serverName"]!;
            await ctx.Response.WriteJsonAsync(await notary.QueryAsync(new Dictionary<string, long?> { [server] = min }, ctx.RequestAborted));
        });
        app.Map(RouteTable.KeyQueryBatch, async ctx =>
        {
            var criteria = KeyNotary.ParseCriteria(await ctx.Request.ReadJsonObjectAsync());
            await ctx.Response.WriteJsonAsync(await notary.QueryAsync(criteria, ctx.RequestAborted));
        });
        app.Map(RouteTable.FederationVersion, ctx => ctx.Response.WriteJsonAsync(new JsonObject
        {
            ["server"] = new JsonObject { ["name"] = ServerVersion.Name, ["version"] = ServerVersion.Version },
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

using Conduit.Common.Config;
using Conduit.Common.Grpc;
using Conduit.Common.Routing;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.DependencyInjection;
using Yarp.ReverseProxy.Configuration;
using Yarp.ReverseProxy.Forwarder;
using Yarp.ReverseProxy.Transforms;

namespace Conduit.Edge;

/// <summary>
/// Split mode: the route table becomes YARP routes (no method match: the owning service answers 405 itself,
/// as in all-in-one), one cluster per service over HTTP/2 to its internal listener.
/// </summary>
public static class SplitProxy
{
    /// <summary>Each YARP route's ID with the route table entry it comes from (one per concrete template).</summary>
    static readonly Dictionary<string, (MatrixRoute Route, string Template)> Entries = RouteTable.All
        .Where(r => r.Owner != Service.Edge)
        .SelectMany(r => RouteTable.Templates(r).Select(t => (Route: r, Template: t)))
        .Select((e, i) => (Id: $"r{i}", e))
        .ToDictionary(x => x.Id, x => x.e);

    /// <summary>
    /// Puts the route table entry on each proxied endpoint, as all-in-one mapping does (RouteTable.Map), so the edge
    /// reads one <see cref="MatrixRoute"/> from the matched endpoint in both modes (the guest rules, /refresh).
    /// </summary>
    public static void MapReverseProxyWithRoutes(this Microsoft.AspNetCore.Routing.IEndpointRouteBuilder app)
        => app.MapReverseProxy().ConfigureEndpoints((b, route) => b.WithMetadata(Entries[route.RouteId].Route));

    public static void Add(IServiceCollection services, GlobalConfig config)
    {
        var routes = Entries.Select(e => new RouteConfig
        {
            RouteId = e.Key,
            ClusterId = e.Value.Route.Owner.ToString(),
            Match = new RouteMatch { Path = e.Value.Template },
        }).ToList();
        var clusters = Enum.GetValues<Service>().Where(s => s != Service.Edge).Select(s => new ClusterConfig
        {
            ClusterId = s.ToString(),
            HttpRequest = new ForwarderRequestConfig
            {
                Version = System.Net.HttpVersion.Version20,
                VersionPolicy = HttpVersionPolicy.RequestVersionExact,
                // /sync long-polls for up to a minute.
                ActivityTimeout = TimeSpan.FromMinutes(3),
            },
            Destinations = new Dictionary<string, DestinationConfig> { ["d"] = new() { Address = config.Services.AddressOf(s) } },
        }).ToList();

        services.AddSingleton<IForwarderHttpClientFactory, ProxyClientFactory>();
        services.AddReverseProxy()
            .LoadFromMemory(routes, clusters)
            .AddTransforms(ctx =>
            {
                ctx.AddRequestHeader(InternalAuth.HeaderName, config.Services.InternalSecret!, append: false);
                ctx.AddRequestTransform(t =>
                {
                    // Forward the path exactly as the client sent it: YARP would re-escape an encoded '/'
                    // (microsoft/reverse-proxy#1419), and Matrix IDs and state keys may contain one.
                    var raw = t.HttpContext.Features.Get<IHttpRequestFeature>()?.RawTarget;
                    if (raw is not null && raw.StartsWith('/'))
                        t.ProxyRequest.RequestUri = new Uri(t.DestinationPrefix.TrimEnd('/') + raw);
                    return ValueTask.CompletedTask;
                });
            });
    }

    /// <summary>
    /// The proxy's HTTP/2 connections to the services: a 1 MiB receive window per stream (the default 64 KiB would
    /// throttle large responses; the dynamic window is off, see Conduit.Edge.csproj), so a large download buffers at
    /// most 1 MiB in the edge however slowly its client reads.
    /// </summary>
    sealed class ProxyClientFactory : ForwarderHttpClientFactory
    {
        protected override void ConfigureHandler(ForwarderHttpClientContext context, System.Net.Http.SocketsHttpHandler handler)
        {
            base.ConfigureHandler(context, handler);
            handler.InitialHttp2StreamWindowSize = 1024 * 1024;
        }
    }
}

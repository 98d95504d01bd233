using Conduit.Common.Config;
using Conduit.Common.Grpc;
using Conduit.Common.Routing;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Yarp.ReverseProxy.Configuration;
using Yarp.ReverseProxy.Forwarder;

namespace Conduit.Edge;

/// <summary>
/// Split mode: every route table path a service owns is mapped on the edge, as all-in-one maps it, and forwarded with
/// YARP's direct forwarder (<see cref="IHttpForwarder"/>) over HTTP/2 to the owner's internal listener. No method
/// match: the owning service answers 405 itself, as in all-in-one. YARP's configuration-driven proxy
/// (<c>AddReverseProxy</c>) is not used: its routes, clusters, load balancing, health checks and session affinity
/// (which brings ASP.NET Core's data protection and an XML stack with it) serve nothing here, and cost the Native AOT
/// build 3.2 MB of code and type data whether or not it runs split.
/// </summary>
public static class SplitProxy
{
    public static void Add(IServiceCollection services, GlobalConfig config)
    {
        services.AddHttpForwarder();
        services.AddSingleton(new Forwarding(config));
    }

    /// <summary>
    /// Maps each route's templates to the forwarder, with the route table entry on the endpoint (as
    /// <see cref="RouteTable.Map"/> does all-in-one), so the edge reads one <see cref="MatrixRoute"/> from the matched
    /// endpoint in both modes (the guest rules, /refresh).
    /// </summary>
    public static void MapSplitProxy(this IEndpointRouteBuilder app)
    {
        var forwarding = app.ServiceProvider.GetRequiredService<Forwarding>();
        var forwarder = app.ServiceProvider.GetRequiredService<IHttpForwarder>();
        foreach (var route in RouteTable.All.Where(r => r.Owner != Service.Edge))
        {
            var prefix = forwarding.Prefix(route.Owner);
            RequestDelegate handler = ctx => forwarding.ForwardAsync(ctx, forwarder, prefix);
            foreach (var t in RouteTable.Templates(route))
                app.Map(t, handler).WithMetadata(new OwnedBy(route.Owner), route);
        }
    }

    /// <summary>The client, request settings and transform shared by every forwarded request.</summary>
    sealed class Forwarding(GlobalConfig config)
    {
        readonly HttpMessageInvoker _client = CreateClient();
        readonly ForwarderRequestConfig _request = new()
        {
            Version = System.Net.HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            // /sync long-polls for up to a minute.
            ActivityTimeout = TimeSpan.FromMinutes(3),
        };
        readonly Transformer _transformer = new(config.Services.InternalSecret!);

        public string Prefix(Service s) => config.Services.AddressOf(s);

        /// <summary>
        /// Forwards the request. When the service cannot be reached the forwarder sets 502 or 504 (the response has not
        /// started), and <see cref="Common.Http.ErrorMiddleware"/> gives it a Matrix error body.
        /// </summary>
        public async Task ForwardAsync(HttpContext ctx, IHttpForwarder forwarder, string prefix) =>
            await forwarder.SendAsync(ctx, prefix, _client, _request, _transformer);

        static HttpMessageInvoker CreateClient() =>
            new ProxyClientFactory().CreateClient(new ForwarderHttpClientContext { NewConfig = HttpClientConfig.Empty });
    }

    /// <summary>
    /// YARP's own client settings, with a 1 MiB receive window per stream (the default 64 KiB would throttle large
    /// responses; the dynamic window is off, see Conduit.Edge.csproj), so a large download buffers at most 1 MiB in the
    /// edge however slowly its client reads.
    /// </summary>
    sealed class ProxyClientFactory : ForwarderHttpClientFactory
    {
        protected override void ConfigureHandler(ForwarderHttpClientContext context, SocketsHttpHandler handler)
        {
            base.ConfigureHandler(context, handler);
            handler.InitialHttp2StreamWindowSize = 1024 * 1024;
        }
    }

    sealed class Transformer(string secret) : HttpTransformer
    {
        public override async ValueTask TransformRequestAsync(HttpContext httpContext, HttpRequestMessage proxyRequest, string destinationPrefix,
            CancellationToken cancellationToken)
        {
            await base.TransformRequestAsync(httpContext, proxyRequest, destinationPrefix, cancellationToken);
            // The services believe this header only from the edge: whatever a client sent under its name is replaced.
            proxyRequest.Headers.Remove(InternalAuth.HeaderName);
            proxyRequest.Headers.TryAddWithoutValidation(InternalAuth.HeaderName, secret);
            // Forward the path exactly as the client sent it: YARP would re-escape an encoded '/'
            // (microsoft/reverse-proxy#1419), and Matrix IDs and state keys may contain one.
            var raw = httpContext.Features.Get<IHttpRequestFeature>()?.RawTarget;
            if (raw is not null && raw.StartsWith('/'))
                proxyRequest.RequestUri = new Uri(destinationPrefix.TrimEnd('/') + raw);
        }
    }
}

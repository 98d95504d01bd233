using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Net;
using Conduit.Common.Config;
using Conduit.Common.Http;
using Conduit.Common.Metrics;
using Conduit.Common.Routing;
using Conduit.Common.Storage;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;

namespace Conduit.Edge;

/// <summary>
/// [global.metrics]: GET /metrics (Prometheus text format) on a Kestrel listener of its own, never on the public one.
/// Connections to it are marked when accepted, and the first middleware answers them (/metrics, /health, else 404)
/// before anything of the Matrix pipeline runs; on the other listeners /metrics is just an unknown path. Every
/// process serves its own metrics, each series labelled with the process's role ("all" all-in-one).
/// </summary>
public static class MetricsEndpoint
{
    /// <summary>The key, in a connection's items, of a connection to the metrics listener.</summary>
    static readonly object MetricsConnection = new();

    /// <summary>The metrics listener, once Kestrel has bound it (with port 0, the port the system gave).</summary>
    public sealed class Listener
    {
        internal ListenOptions? Options;

        public IPEndPoint? EndPoint => Options?.IPEndPoint;
        public string? Url => EndPoint is { } e ? $"http://{e}" : null;
    }

    public static void Add(WebApplicationBuilder builder, GlobalConfig config, string role)
    {
        var listener = new Listener();
        builder.Services.AddSingleton(listener);
        builder.Services.AddSingleton(sp =>
        {
            var factory = sp.GetRequiredService<IMeterFactory>();
            return new MetricsCollector(m => m.Scope == factory && m.Name.StartsWith(ConduitMeters.Prefix, StringComparison.Ordinal),
                new KeyValuePair<string, string>("role", role));
        });
        builder.Services.AddSingleton<HttpMetrics>();
        var bind = new IPEndPoint(IPAddress.Parse(config.Metrics.Address), config.Metrics.Port);
        builder.WebHost.ConfigureKestrel(k => k.Listen(bind, l =>
        {
            l.Protocols = HttpProtocols.Http1;
            l.Use(next => connection =>
            {
                connection.Items[MetricsConnection] = MetricsConnection;
                return next(connection);
            });
            listener.Options = l;
        }));
    }

    /// <summary>The first middleware: the metrics listener's own answers; on the others, the request measured.</summary>
    public static void Use(WebApplication app, bool measureRequests)
    {
        var collector = app.Services.GetRequiredService<MetricsCollector>();
        ConduitMeters.AddProcessInstruments(app.Services.GetRequiredService<IMeterFactory>());
        if (app.Services.GetService<IKeyValueStore>() is { } store) ConduitMeters.AddStorageInstruments(app.Services.GetRequiredService<IMeterFactory>(), store);
        var http = measureRequests ? app.Services.GetRequiredService<HttpMetrics>() : null;
        app.Use((ctx, next) =>
        {
            if (ctx.Features.Get<IConnectionItemsFeature>()?.Items.ContainsKey(MetricsConnection) == true) return Answer(ctx, collector);
            return http is null ? next(ctx) : http.Measure(ctx, next);
        });
    }

    static Task Answer(HttpContext ctx, MetricsCollector collector)
    {
        var res = ctx.Response;
        var get = HttpMethods.IsGet(ctx.Request.Method) || HttpMethods.IsHead(ctx.Request.Method);
        if (get && ctx.Request.Path == "/metrics")
        {
            res.ContentType = MetricsCollector.ContentType;
            return res.WriteAsync(collector.Scrape());
        }
        if (get && ctx.Request.Path == "/health") return Health.Answer(ctx);
        res.StatusCode = StatusCodes.Status404NotFound;
        res.ContentType = "text/plain; charset=utf-8";
        return res.WriteAsync("Not found: this listener serves /metrics and /health\n");
    }
}

/// <summary>
/// Requests on the public listener: conduit_http_requests_total by route, method and status, and
/// conduit_http_request_duration_seconds by route and method. The route is the route table's template
/// (<see cref="MatrixRoute.Label"/>: "/_matrix/client/{version}/rooms/{roomId}/send/{eventType}/{txnId}" for v3 and r0
/// alike), never the path, so the series stay few; a path no route matches is "unmatched". Tag values are preallocated strings: recording
/// allocates nothing once a series exists.
/// </summary>
public sealed class HttpMetrics
{
    const string Unmatched = "unmatched";
    static readonly string[] Codes = [.. Enumerable.Range(0, 600).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture))];

    readonly Counter<long> _requests;
    readonly Histogram<double> _duration;

    public HttpMetrics(IMeterFactory meters)
    {
        var m = meters.Create(ConduitMeters.Http);
        _requests = m.CreateCounter<long>("conduit.http.requests", null, "HTTP requests answered, by route template, method and status code.");
        _duration = m.CreateHistogram<double>("conduit.http.request.duration", "s", "Time from the request to the end of its response, by route template and method.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = MetricsCollector.DefaultBuckets });
    }

    public async Task Measure(HttpContext ctx, RequestDelegate next)
    {
        var started = Stopwatch.GetTimestamp();
        var failed = false;
        try
        {
            await next(ctx);
        }
        catch
        {
            failed = true;
            throw;
        }
        finally
        {
            var route = ctx.GetEndpoint()?.Metadata.GetMetadata<MatrixRoute>()?.Label ?? Unmatched;
            var method = Method(ctx.Request.Method);
            var code = failed && !ctx.Response.HasStarted ? 500 : ctx.Response.StatusCode;
            _requests.Add(1, new TagList { { "route", route }, { "method", method }, { "status", code is >= 0 and < 600 ? Codes[code] : "other" } });
            _duration.Record(Stopwatch.GetElapsedTime(started).TotalSeconds, new KeyValuePair<string, object?>("route", route), new KeyValuePair<string, object?>("method", method));
        }
    }

    // Kestrel gives the known methods as interned strings; anything else is one value, so clients cannot add series.
    static string Method(string m) =>
        HttpMethods.IsGet(m) ? HttpMethods.Get : HttpMethods.IsPost(m) ? HttpMethods.Post : HttpMethods.IsPut(m) ? HttpMethods.Put
        : HttpMethods.IsDelete(m) ? HttpMethods.Delete : HttpMethods.IsOptions(m) ? HttpMethods.Options : HttpMethods.IsHead(m) ? HttpMethods.Head
        : HttpMethods.IsPatch(m) ? HttpMethods.Patch : "other";
}

using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Conduit.Common.Config;
using Conduit.Common.Grpc;
using Conduit.Common.Http;
using Conduit.Common.Routing;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Routing.Template;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Conduit.Common.Admin;

/// <summary>An internal call's answer: the HTTP status and the JSON body (null when there was none).</summary>
public sealed record InternalAnswer(int Status, JsonNode? Body)
{
    public bool Ok => Status is >= 200 and < 300;
    public JsonObject Object => Body as JsonObject ?? [];
    /// <summary>The Matrix error's message (or errcode, or status) of a failed call.</summary>
    public string Error => Object["error"]?.GetValue<string>() ?? Object["errcode"]?.GetValue<string>() ?? $"HTTP {Status}{(Body is JsonValue v ? ": " + v : "")}";
}

/// <summary>
/// Requests to the server's own HTTP API made from inside the server, as a given caller, without a token: the admin
/// room's commands are admin API calls, so each command does exactly what the same request to the admin API does. The
/// endpoint is found by the route table: one this process maps (all-in-one: all of them) runs in-process, through the
/// same error handling as a client's request; in split mode one another service owns is sent to that service's
/// internal listener with the internal secret and the caller headers, as the edge forwards a client's request.
/// </summary>
public sealed class InternalCalls(IServiceProvider services, GlobalConfig config, ILogger<ErrorMiddleware> log)
{
    sealed record Local(TemplateMatcher Matcher, RouteEndpoint Endpoint, MatrixRoute Route, int Literals);

    List<Local>? _local;

    /// <summary>Every route template another service owns, parsed once, most literal segments first: the owner of a
    /// path this process does not map (split mode).</summary>
    static readonly List<(MatrixRoute Route, TemplateMatcher Matcher)> Remote = [.. RouteTable.All.Where(r => r.Owner != Service.Edge)
        .SelectMany(r => RouteTable.Templates(r).Select(t => (Route: r, Template: t)))
        .OrderByDescending(x => LiteralSegments(x.Template))
        .Select(x => (x.Route, new TemplateMatcher(TemplateParser.Parse(x.Template.TrimStart('/')), [])))];

    static int LiteralSegments(string template) => template.Split('/').Count(s => s.Length > 0 && !s.Contains('{'));

    // Read once the host has built its pipeline (before that the data source is empty, and is not cached).
    List<Local> LocalEndpoints() => _local is { Count: > 0 } known ? known : _local = services.GetRequiredService<EndpointDataSource>().Endpoints
        .OfType<RouteEndpoint>()
        // OwnedBy: mapped by a service here (the split edge's proxy endpoints carry the route, not the owner).
        .Where(e => e.Metadata.GetMetadata<OwnedBy>() is not null && e.Metadata.GetMetadata<MatrixRoute>() is not null && e.RoutePattern.RawText is not null)
        .Select(e => new Local(new TemplateMatcher(TemplateParser.Parse(e.RoutePattern.RawText!.TrimStart('/')), []), e, e.Metadata.GetMetadata<MatrixRoute>()!, LiteralSegments(e.RoutePattern.RawText!)))
        .ToList();

    /// <summary>
    /// Makes the request <paramref name="method"/> <paramref name="pathAndQuery"/> (path segments escaped as a client
    /// would) with an optional JSON body as <paramref name="caller"/>, and answers its status and JSON body.
    /// </summary>
    public async Task<InternalAnswer> SendAsync(string method, string pathAndQuery, JsonNode? body, Caller caller, CancellationToken ct)
    {
        var q = pathAndQuery.IndexOf('?');
        var rawPath = q < 0 ? pathAndQuery : pathAndQuery[..q];
        var query = q < 0 ? "" : pathAndQuery[q..];
        var path = PathString.FromUriComponent(rawPath);

        Local? best = null;
        RouteValueDictionary? bestValues = null;
        foreach (var l in LocalEndpoints())
        {
            var values = new RouteValueDictionary();
            if (!l.Matcher.TryMatch(path, values)) continue;
            if (l.Endpoint.Metadata.GetMetadata<IHttpMethodMetadata>() is { } m && !m.HttpMethods.Contains(method, StringComparer.OrdinalIgnoreCase)) continue;
            if (best is null || l.Literals > best.Literals) (best, bestValues) = (l, values);
        }
        if (best is not null) return await RunLocal(best, bestValues!, method, path, query, body, caller, ct);

        var owner = Remote.Where(x => x.Route.Methods.Contains(method, StringComparer.OrdinalIgnoreCase) && x.Matcher.TryMatch(path, []))
            .Select(x => x.Route).FirstOrDefault();
        if (owner is null || string.IsNullOrEmpty(config.Services.InternalSecret))
            return new InternalAnswer(404, MatrixHttp.ErrorBody(Err.Unrecognized(404)));
        return await RunRemote(owner.Owner, method, pathAndQuery, body, caller, ct);
    }

    async Task<InternalAnswer> RunLocal(Local l, RouteValueDictionary values, string method, PathString path, string query, JsonNode? body, Caller caller, CancellationToken ct)
    {
        var ctx = new DefaultHttpContext { RequestServices = services };
        ctx.RequestAborted = ct;
        ctx.Request.Method = method;
        ctx.Request.Path = path;
        ctx.Request.QueryString = new QueryString(query.Length > 0 ? query : null);
        ctx.Request.RouteValues = values;
        SetCaller(ctx.Request.Headers, caller);
        if (body is not null)
        {
            var bytes = Encoding.UTF8.GetBytes(body.ToJsonString());
            ctx.Request.Body = new MemoryStream(bytes);
            ctx.Request.ContentType = "application/json";
            ctx.Request.ContentLength = bytes.Length;
        }
        var response = new MemoryStream();
        ctx.Response.Body = response;
        ctx.SetEndpoint(l.Endpoint);
        await new ErrorMiddleware(l.Endpoint.RequestDelegate!, log).InvokeAsync(ctx);
        return new InternalAnswer(ctx.Response.StatusCode, Parse(response.ToArray()));
    }

    async Task<InternalAnswer> RunRemote(Service owner, string method, string pathAndQuery, JsonNode? body, Caller caller, CancellationToken ct)
    {
        using var request = InternalHttp.Request(config, owner, new HttpMethod(method), pathAndQuery);
        request.Headers.Add(Caller.UserHeader, caller.UserId);
        request.Headers.Add(Caller.DeviceHeader, caller.DeviceId);
        if (caller.IsAdmin) request.Headers.Add(Caller.AdminHeader, "1");
        if (body is not null)
            request.Content = new StringContent(body.ToJsonString(), Encoding.UTF8, new MediaTypeHeaderValue("application/json"));
        using var response = await InternalHttp.Client.SendAsync(request, ct);
        return new InternalAnswer((int)response.StatusCode, Parse(await response.Content.ReadAsByteArrayAsync(ct)));
    }

    static void SetCaller(IHeaderDictionary h, Caller caller)
    {
        h[Caller.UserHeader] = caller.UserId;
        h[Caller.DeviceHeader] = caller.DeviceId;
        if (caller.IsGuest) h[Caller.GuestHeader] = "1";
        if (caller.IsAdmin) h[Caller.AdminHeader] = "1";
    }

    static JsonNode? Parse(byte[] bytes)
    {
        if (bytes.Length == 0) return null;
        try { return JsonNode.Parse(bytes); }
        catch (JsonException) { return JsonValue.Create(Encoding.UTF8.GetString(bytes)); }
    }
}

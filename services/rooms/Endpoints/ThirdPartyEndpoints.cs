using System.Text.Json.Nodes;
using Conduit.Common.Appservices;
using Conduit.Common.Config;
using Conduit.Common.Http;
using Conduit.Common.Routing;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Extensions;
using Microsoft.AspNetCore.Routing;

namespace Conduit.Rooms;

/// <summary>
/// Third-party lookups (spec: client-server-api, "Third-party Networks"), answered by asking the application services
/// whose registration lists the protocol (<see cref="AppserviceQueries"/>), as Synapse's <c>thirdparty.py</c>:
/// /thirdparty/protocols and /thirdparty/protocol/{protocol} (metadata merged across appservices, instances with an
/// <c>instance_id</c>), /thirdparty/location/{protocol} and /thirdparty/user/{protocol} (the query string passed on,
/// the appservices' lists put together), and the reverse lookups /thirdparty/location?alias= and
/// /thirdparty/user?userid= (asked of every appservice that lists a protocol). A protocol no registration lists is
/// 404 M_NOT_FOUND; a known one that finds nothing is an empty list (as Synapse; an appservice that fails counts as
/// finding nothing). Kept here beside the public room directory, whose network lists use the instance IDs.
/// </summary>
public sealed class ThirdPartyEndpoints(GlobalConfig config, AppserviceQueries appservices)
{
    public void Map(IEndpointRouteBuilder app)
    {
        app.Map(RouteTable.ThirdPartyProtocols, Protocols);
        app.Map(RouteTable.ThirdPartyProtocol, Protocol);
        app.Map(RouteTable.ThirdPartyLocations, ctx => Lookup(ctx, AppserviceQueries.Kind.Location));
        app.Map(RouteTable.ThirdPartyUsers, ctx => Lookup(ctx, AppserviceQueries.Kind.User));
        app.Map(RouteTable.ThirdPartyLocationByAlias, ctx => ReverseLookup(ctx, AppserviceQueries.Kind.Location, "alias"));
        app.Map(RouteTable.ThirdPartyUserById, ctx => ReverseLookup(ctx, AppserviceQueries.Kind.User, "userid"));
    }

    async Task Protocols(HttpContext ctx)
    {
        Caller.Required(ctx);
        await ctx.Response.WriteJsonAsync(await appservices.ProtocolsAsync(config.Appservices(), null, ctx.RequestAborted));
    }

    async Task Protocol(HttpContext ctx)
    {
        Caller.Required(ctx);
        var protocol = KnownProtocol(ctx);
        var merged = await appservices.ProtocolsAsync(config.Appservices(), protocol, ctx.RequestAborted);
        // Listed, but no appservice answered with valid metadata: Synapse's 404 as well.
        var info = merged[protocol] as JsonObject ?? throw Err.NotFound("Unknown protocol");
        await ctx.Response.WriteJsonAsync(info.DeepClone());
    }

    async Task Lookup(HttpContext ctx, AppserviceQueries.Kind kind)
    {
        Caller.Required(ctx);
        var protocol = KnownProtocol(ctx);
        await ctx.Response.WriteJsonAsync(await appservices.LookupAsync(config.Appservices(), kind, protocol, ForwardedQuery(ctx), ctx.RequestAborted));
    }

    async Task ReverseLookup(HttpContext ctx, AppserviceQueries.Kind kind, string required)
    {
        Caller.Required(ctx);
        if (string.IsNullOrEmpty(ctx.Request.Query(required))) throw Err.MissingParam($"Missing '{required}'");
        await ctx.Response.WriteJsonAsync(await appservices.LookupAsync(config.Appservices(), kind, null, ForwardedQuery(ctx), ctx.RequestAborted));
    }

    /// <summary>The {protocol} path parameter, if some registration lists it; 404 M_NOT_FOUND otherwise.</summary>
    string KnownProtocol(HttpContext ctx)
    {
        var protocol = ctx.Route("protocol");
        return config.Appservices().Any(a => a.Protocols.Contains(protocol)) ? protocol : throw Err.NotFound("Unknown protocol");
    }

    /// <summary>The client's query string for the appservice (its fields), without an access token.</summary>
    static string ForwardedQuery(HttpContext ctx)
    {
        var q = new QueryBuilder();
        foreach (var (key, values) in ctx.Request.Query)
            if (key != "access_token")
                foreach (var v in values) q.Add(key, v ?? "");
        return q.ToString();
    }
}

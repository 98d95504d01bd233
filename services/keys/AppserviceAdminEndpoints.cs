using System.Text.Json.Nodes;
using Conduit.Common.Appservices;
using Conduit.Common.Config;
using Conduit.Common.Http;
using Conduit.Common.Routing;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Conduit.Keys;

/// <summary>
/// Conduit's admin API for application services (admins only, as the rest of /_conduit/admin; what the admin room's
/// <c>appservices</c> commands call):
/// <list type="bullet">
/// <item><c>GET /_conduit/admin/v1/appservices</c>: {appservices: [...]}, every registered one (config files first, then
/// runtime ones by id), each as <see cref="Summary"/>.</item>
/// <item><c>POST /_conduit/admin/v1/appservices</c> {registration: "YAML"}: registers it (or replaces the runtime one of its
/// id): {id, replaced}. Errors: 400 M_INVALID_PARAM naming the fault (<see cref="AppserviceRegistry.Register"/>).</item>
/// <item><c>GET /_conduit/admin/v1/appservices/{id}</c>: the summary with <c>registration</c>, its YAML with as_token and
/// hs_token redacted (the admin room's history stays readable by every later admin; conduwuit's
/// show-appservice-config prints them, Conduit has no such command).</item>
/// <item><c>DELETE /_conduit/admin/v1/appservices/{id}</c>: unregisters a runtime one ({}); a config file's is 403.</item>
/// </list>
/// </summary>
public sealed class AppserviceAdminEndpoints(AppserviceRegistry registry, GlobalConfig config)
{
    public void Map(IEndpointRouteBuilder app)
    {
        app.Map(RouteTable.AdminAppservices, Collection);
        app.Map(RouteTable.AdminAppservice, One);
    }

    async Task Collection(HttpContext ctx)
    {
        var c = Caller.Admin(ctx);
        if (HttpMethods.IsGet(ctx.Request.Method))
        {
            await ctx.Response.WriteJsonAsync(new JsonObject { ["appservices"] = new JsonArray([.. config.Appservices().Select(a => (JsonNode)Summary(a))]) });
            return;
        }
        var body = await ctx.Request.ReadJsonObjectAsync();
        var yaml = body.ReqString("registration");
        var (r, replaced) = registry.Register(yaml, c.UserId);
        await ctx.Response.WriteJsonAsync(new JsonObject { ["id"] = r.Id, ["replaced"] = replaced });
    }

    async Task One(HttpContext ctx)
    {
        var c = Caller.Admin(ctx);
        var id = ctx.Route("appserviceId");
        if (HttpMethods.IsDelete(ctx.Request.Method))
        {
            registry.Unregister(id, c.UserId);
            await ctx.Response.WriteJsonAsync(new JsonObject());
            return;
        }
        var r = config.Appservices().FirstOrDefault(a => a.Id == id) ?? throw Err.NotFound($"No application service '{id}' is registered");
        var o = Summary(r);
        o["registration"] = AppserviceLoader.Redacted(r.Yaml);
        await ctx.Response.WriteJsonAsync(o);
    }

    /// <summary>What an admin needs to recognise a registration; never its tokens.</summary>
    JsonObject Summary(AppserviceRegistration r)
    {
        static JsonArray Namespaces(IReadOnlyList<AppserviceNamespace> list)
            => new([.. list.Select(n => (JsonNode)new JsonObject { ["exclusive"] = n.Exclusive, ["regex"] = AppserviceLoader.Pattern(n.Regex.ToString()) })]);
        var o = new JsonObject
        {
            ["id"] = r.Id,
            ["runtime"] = r.Runtime,
            ["source"] = r.Source,
            ["url"] = r.Url,
            ["sender"] = r.SenderUserId(config.ServerName),
            ["rate_limited"] = r.RateLimited,
            ["namespaces"] = new JsonObject { ["users"] = Namespaces(r.Users), ["aliases"] = Namespaces(r.Aliases), ["rooms"] = Namespaces(r.Rooms) },
        };
        if (r.Runtime && registry.Stored(r.Id) is { } s)
        {
            o["registered_by"] = s.RegisteredBy;
            o["registered_ts"] = s.RegisteredTs;
        }
        return o;
    }
}

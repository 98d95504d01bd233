using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Admin;
using Conduit.Common.Config;
using Conduit.Common.Events;
using Conduit.Common.Http;
using Conduit.Common.Routing;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Conduit.Edge;

/// <summary>What the edge answers itself: versions, .well-known, and endpoints that only reflect configuration.</summary>
public static class EdgeEndpoints
{
    static readonly string[] SpecVersions =
        ["r0.0.1", "r0.1.0", "r0.2.0", "r0.3.0", "r0.4.0", "r0.5.0", "r0.6.0", "r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11"];

    /// <summary>Conduit's server admin API: memory, caches, backups and the config of every process (<see cref="DeploymentOps"/>).</summary>
    static void MapServerAdmin(IEndpointRouteBuilder app, GlobalConfig config)
    {
        var ops = app.ServiceProvider.GetRequiredService<DeploymentOps>();
        app.Map(RouteTable.AdminServerMemory, async ctx =>
        {
            Caller.Admin(ctx);
            await ctx.Response.WriteJsonAsync(new JsonObject { ["processes"] = await ops.MemoryAsync(ctx.RequestAborted) });
        });
        app.Map(RouteTable.AdminServerClearCaches, async ctx =>
        {
            Caller.Admin(ctx);
            await ctx.Response.WriteJsonAsync(new JsonObject { ["processes"] = await ops.ClearCachesAsync(ctx.RequestAborted) });
        });
        app.Map(RouteTable.AdminServerBackup, async ctx =>
        {
            Caller.Admin(ctx);
            await ctx.Response.WriteJsonAsync(new JsonObject { ["backups"] = await ops.BackupAsync(ctx.RequestAborted) });
        });
        app.Map(RouteTable.AdminServerConfig, ctx =>
        {
            Caller.Admin(ctx);
            return ctx.Response.WriteJsonAsync(new JsonObject { ["config"] = ConfigDisplay.Redacted(config) });
        });
    }

    public static void MapEdge(this IEndpointRouteBuilder app, GlobalConfig config)
    {
        app.Map(RouteTable.Versions, ctx => ctx.Response.WriteJsonAsync(new JsonObject
        {
            ["versions"] = new JsonArray(SpecVersions.Select(v => (JsonNode)v).ToArray()),
            // What is implemented beyond the stable spec: dehydrated devices (MSC3814, which Element X looks for).
            ["unstable_features"] = new JsonObject { ["org.matrix.msc3814"] = true, ["org.matrix.simplified_msc3575"] = true },
        }));
        app.Map(RouteTable.Health, Health.Answer);
        MapServerAdmin(app, config);
        app.Map(RouteTable.WellKnownClient, ctx => config.WellKnown.Client is { } client
            ? ctx.Response.WriteJsonAsync(new JsonObject { ["m.homeserver"] = new JsonObject { ["base_url"] = client } })
            : throw Err.NotFound("No client well-known is configured"));
        app.Map(RouteTable.WellKnownServer, ctx => config.WellKnown.Server is { } server
            ? ctx.Response.WriteJsonAsync(new JsonObject { ["m.server"] = server })
            : throw Err.NotFound("No server well-known is configured"));
        app.Map(RouteTable.WellKnownSupport, ctx =>
        {
            // Spec: client-server-api, "Getting the support information": contacts and/or a support page.
            var w = config.WellKnown;
            var o = new JsonObject();
            if (w.SupportMxid is not null || w.SupportEmail is not null)
            {
                var contact = new JsonObject();
                if (w.SupportMxid is not null) contact["matrix_id"] = w.SupportMxid;
                if (w.SupportEmail is not null) contact["email_address"] = w.SupportEmail;
                contact["role"] = w.SupportRole;
                o["contacts"] = new JsonArray(contact);
            }
            if (w.SupportPage is not null) o["support_page"] = w.SupportPage;
            return o.Count > 0 ? ctx.Response.WriteJsonAsync(o) : throw Err.NotFound("No support information is configured");
        });
        // Capabilities reflect configuration and the room versions of Conduit.Common, not any service's data.
        app.Map(RouteTable.Capabilities, ctx =>
        {
            Caller.Required(ctx);
            var available = new JsonObject();
            foreach (var v in RoomVersion.All) available[v.Id] = "stable";
            return ctx.Response.WriteJsonAsync(new JsonObject
            {
                ["capabilities"] = new JsonObject
                {
                    ["m.change_password"] = new JsonObject { ["enabled"] = true },
                    ["m.get_login_token"] = new JsonObject { ["enabled"] = config.LoginViaExistingSession.Enabled },
                    ["m.room_versions"] = new JsonObject { ["default"] = config.DefaultRoomVersion, ["available"] = available },
                    ["m.set_displayname"] = new JsonObject { ["enabled"] = true },
                    ["m.set_avatar_url"] = new JsonObject { ["enabled"] = true },
                    // Spec v1.16: every profile field may be changed by its owner (displayname, avatar_url, m.tz, custom keys).
                    ["m.profile_fields"] = new JsonObject { ["enabled"] = true },
                    ["m.3pid_changes"] = new JsonObject { ["enabled"] = false },
                },
            });
        });
        app.Map(RouteTable.TurnServer, ctx => ctx.Response.WriteJsonAsync(TurnCredentials(Caller.Required(ctx).UserId, config)));
    }

    /// <summary>TURN credentials (spec: client-server-api, "Voice over IP"): an empty object when unconfigured;
    /// with turn_secret, time-limited credentials in the TURN REST API scheme that coturn verifies.</summary>
    static JsonObject TurnCredentials(string userId, GlobalConfig c)
    {
        if (c.TurnUris.Count == 0) return new JsonObject();
        string username, password;
        if (!string.IsNullOrEmpty(c.TurnSecret))
        {
            username = $"{DateTimeOffset.UtcNow.ToUnixTimeSeconds() + c.TurnTtl}:{userId}";
            password = Convert.ToBase64String(HMACSHA1.HashData(Encoding.UTF8.GetBytes(c.TurnSecret), Encoding.UTF8.GetBytes(username)));
        }
        else
        {
            username = c.TurnUsername ?? "";
            password = c.TurnPassword ?? "";
        }
        return new JsonObject
        {
            ["username"] = username,
            ["password"] = password,
            ["uris"] = new JsonArray(c.TurnUris.Select(u => (JsonNode)u).ToArray()),
            ["ttl"] = c.TurnTtl,
        };
    }
}

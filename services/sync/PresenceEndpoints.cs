using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Http;
using Conduit.Common.Routing;
using Conduit.Protos.Keys;
using Conduit.Protos.Rooms;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Conduit.Sync;

/// <summary>
/// GET/PUT /presence/{userId}/status (spec: client-server-api, "Presence"). PUT only for yourself; GET for yourself
/// or a user you share a room with (rooms SharedUsers), else 403; an unknown or deactivated user is 404 (keys
/// GetProfile). With allow_presence = false both answer 403.
/// </summary>
public sealed class PresenceEndpoints(PresenceState presence, GlobalConfig config, Rooms.RoomsClient rooms, Keys.KeysClient keys)
{
    public void Map(IEndpointRouteBuilder app) => app.Map(RouteTable.PresenceStatus, Status);

    async Task Status(HttpContext ctx)
    {
        var c = Caller.Required(ctx);
        if (!config.AllowPresence) throw Err.Forbidden("Presence is disabled on this server");
        var userId = ctx.Route("userId");
        if (!Ids.IsUserId(userId)) throw Err.InvalidParam("Invalid user ID");
        if (HttpMethods.IsPut(ctx.Request.Method))
        {
            if (userId != c.UserId) throw Err.Forbidden("You may only set your own presence");
            var body = await ctx.Request.ReadJsonObjectAsync();
            var state = body.OptString("presence") ?? throw Err.MissingParam("Missing 'presence'");
            if (!PresenceStates.IsValid(state)) throw Err.InvalidParam("presence must be online, offline or unavailable");
            string? statusMsg = null;
            if (body.TryGetPropertyValue("status_msg", out var node) && node is not null)
            {
                if (node is not JsonValue v || !v.TryGetValue(out statusMsg)) throw Err.InvalidParam("status_msg must be a string");
            }
            presence.Set(c.UserId, state, statusMsg);
            await ctx.Response.WriteJsonAsync(new JsonObject());
            return;
        }
        var ct = ctx.RequestAborted;
        if (userId != c.UserId)
        {
            // A user of another server is known here only through the rooms shared with them.
            if (Ids.ServerOf(userId) == config.ServerName)
            {
                var p = await keys.GetProfileAsync(new GetProfileRequest { UserId = userId }, cancellationToken: ct);
                if (p.Deactivated) throw Err.NotFound("Unknown user");
            }
            var shared = await rooms.SharedUsersAsync(new SharedUsersRequest { UserIds = { c.UserId } }, cancellationToken: ct);
            if (!shared.UserIds.Contains(userId)) throw Err.Forbidden("You do not share a room with this user");
        }
        var info = presence.Get(userId);
        var now = presence.Now;
        await ctx.Response.WriteJsonAsync(info?.Content(now) ?? new JsonObject { ["presence"] = PresenceStates.Offline });
    }
}

/// <summary>
/// Runs <see cref="PresenceState.Tick"/> every 10 s, and wakes, on every presence change, the waiting /sync of the
/// user and of everyone who shares a room with them (rooms SharedUsers).
/// </summary>
public sealed class PresenceTimer(PresenceState presence, SyncNotifier notifier, Rooms.RoomsClient rooms, GlobalConfig config, FederatedEphemeral federated,
    ILogger<PresenceTimer> log, Appservices.AppserviceEphemeral appservices) : BackgroundService
{
    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(10);

    protected override async Task ExecuteAsync(CancellationToken ct)
    {
        if (!config.AllowPresence) return;
        presence.Changed += u => _ = WakeShared(u, ct);
        using var timer = new PeriodicTimer(Interval);
        try
        {
            while (await timer.WaitForNextTickAsync(ct))
            {
                try { presence.Tick(); }
                catch (Exception e) { log.LogWarning(e, "presence timer"); }
            }
        }
        catch (OperationCanceledException) { }
    }

    async Task WakeShared(string userId, CancellationToken ct)
    {
        notifier.Wake(userId);
        try
        {
            var shared = await rooms.SharedUsersAsync(new SharedUsersRequest { UserIds = { userId } }, cancellationToken: ct);
            foreach (var u in shared.UserIds) notifier.Wake(u);
            if (presence.Get(userId) is { } info) appservices.Presence(userId, info.Content(presence.Now), shared.UserIds);
            // The same answer names the other servers that hear of our users' changes.
            await federated.PresenceChangedAsync(userId, shared.UserIds, ct);
        }
        catch (Exception e) when (!ct.IsCancellationRequested)
        {
            log.LogWarning(e, "presence: could not wake the users sharing a room with {User}", userId);
        }
        catch (OperationCanceledException) { }
    }
}

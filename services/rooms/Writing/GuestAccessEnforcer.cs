using System.Text.Json.Nodes;
using Conduit.Protos.Keys;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Conduit.Rooms;

/// <summary>
/// Spec, "Guest access", server behaviour: when a room's m.room.guest_access stops being can_join, "the server MUST set
/// those users' m.room.member state to leave". After such an event is stored (<see cref="EventSender.GuestAccessRevoked"/>)
/// each local joined member the keys service says is a guest leaves, as their own leave event. Runs after the change
/// is acknowledged, in the background; a guest who cannot be checked (keys unreachable) is logged and stays.
/// </summary>
public sealed partial class GuestAccessEnforcer(EventSender sender, RoomStore rooms, Keys.KeysClient keys, Conduit.Common.Config.GlobalConfig config,
    ILogger<GuestAccessEnforcer> log) : IHostedService
{
    CancellationToken _stopping;
    readonly CancellationTokenSource _cts = new();

    public Task StartAsync(CancellationToken cancellationToken)
    {
        _stopping = _cts.Token;
        sender.GuestAccessRevoked += Revoked;
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        sender.GuestAccessRevoked -= Revoked;
        _cts.Cancel();
        return Task.CompletedTask;
    }

    void Revoked(string roomId) => _ = Task.Run(() => EnforceAsync(roomId), _stopping);

    /// <summary>Makes the room's local guests leave; returns how many left.</summary>
    public async Task<int> EnforceAsync(string roomId)
    {
        var left = 0;
        foreach (var user in rooms.JoinedMembers(roomId).Where(u => AuthRules.IsLocal(u, config.ServerName)).ToList())
        {
            try
            {
                var profile = await keys.GetProfileAsync(new GetProfileRequest { UserId = user }, cancellationToken: _stopping);
                if (!profile.IsGuest) continue;
                await sender.SendAsync(roomId, user, [new NewEvent("m.room.member", user, new JsonObject { ["membership"] = "leave" })], null, _stopping);
                left++;
            }
            catch (Exception e) when (!_stopping.IsCancellationRequested)
            {
                LogFailed(log, user, roomId, e.Message);
            }
        }
        return left;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not make guest {UserId} leave {RoomId} after guest access ended: {Reason}")]
    static partial void LogFailed(ILogger log, string userId, string roomId, string reason);
}

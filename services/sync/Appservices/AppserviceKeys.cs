using System.Text.Json.Nodes;
using System.Threading.Channels;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Protos.Rooms;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using K = Conduit.Common.Storage.Keys;

namespace Conduit.Sync.Appservices;

/// <summary>
/// What encrypted bridges need besides events, queued from the keys stream: to-device messages for the devices of an
/// appservice's users (MSC2409, de.sorunome.msc2409.to_device, each with to_user_id and to_device_id; for a
/// registration with receive_ephemeral), and for one with org.matrix.msc3202: its users' devices' one-time key counts
/// and unused fallback key types, and the users whose device lists changed who share a room with one of its users.
/// Each device's to-device cursor is kept with the items it queued (<see cref="SyncFamilies.AppserviceDevices"/>), so
/// after a restart the next read acknowledges exactly what was queued. Advances are handled one at a time, in order.
/// MSC3202's device_lists.left is queued by <see cref="AppserviceFeed"/>, which sees the membership events.
/// </summary>
public sealed partial class AppserviceKeys(AppserviceQueue queue, SyncNotifier notifier, Protos.Keys.Keys.KeysClient keys, Rooms.RoomsClient rooms,
    GlobalConfig config, ILogger<AppserviceKeys> log) : BackgroundService
{
    readonly Channel<(IReadOnlyList<string> Wake, IReadOnlyList<string> Changed)> _advances = Channel.CreateUnbounded<(IReadOnlyList<string>, IReadOnlyList<string>)>();

    protected override async Task ExecuteAsync(CancellationToken ct)
    {
        notifier.KeysAdvanced += (wake, changed) => _advances.Writer.TryWrite((wake, changed));
        try
        {
            await foreach (var (wake, changed) in _advances.Reader.ReadAllAsync(ct))
            {
                try
                {
                    await ToDeviceAndCounts(wake, ct);
                    await DeviceLists(changed, ct);
                }
                catch (Exception e) when (!ct.IsCancellationRequested)
                {
                    LogFailed(log, e.Message);
                }
            }
        }
        catch (OperationCanceledException) { }
    }

    async Task ToDeviceAndCounts(IReadOnlyList<string> wake, CancellationToken ct)
    {
        var server = config.ServerName;
        var regs = config.Appservices().Where(r => r.Url is not null && (r.ReceiveEphemeral || r.Msc3202)).ToList();
        if (regs.Count == 0) return;
        var users = wake.Where(u => regs.Any(r => r.IsInterestedInUser(u, server))).Distinct().ToList();
        if (users.Count == 0) return;
        // A device with more messages waiting than one read carries is read again.
        for (var round = 0; round < 20; round++)
        {
            var request = new Protos.Keys.AppserviceKeysRequest { UserIds = { users } };
            foreach (var (user, device, pos) in queue.DeviceCursors(users)) request.Cursors[user + "|" + device] = pos;
            var reply = await keys.AppserviceKeysAsync(request, cancellationToken: ct);
            var items = new List<(string, string, JsonNode)>();
            var cursors = new List<(string, string, long)>();
            var more = new List<string>();
            foreach (var d in reply.Devices)
            {
                var old = request.Cursors.TryGetValue(d.UserId + "|" + d.DeviceId, out var c) ? c : 0;
                foreach (var r in regs.Where(r => r.IsInterestedInUser(d.UserId, server)))
                {
                    if (r.ReceiveEphemeral)
                        foreach (var m in d.ToDevice)
                            if (JsonLimits.ParseInternal(System.Text.Encoding.UTF8.GetBytes(m)) is JsonObject msg)
                            {
                                msg["to_user_id"] = d.UserId;
                                msg["to_device_id"] = d.DeviceId;
                                items.Add((r.Id, "to_device", msg));
                            }
                    if (r.Msc3202)
                    {
                        var counts = new JsonObject();
                        foreach (var (alg, n) in d.OneTimeKeyCounts) counts[alg] = n;
                        items.Add((r.Id, "otk", new JsonObject
                        {
                            ["counts"] = new JsonObject { [d.UserId] = new JsonObject { [d.DeviceId] = counts } },
                            ["fallback"] = new JsonObject { [d.UserId] = new JsonObject { [d.DeviceId] = new JsonArray([.. d.UnusedFallbackKeyTypes.Select(t => (JsonNode)t)]) } },
                        }));
                    }
                }
                if (d.Position != old) cursors.Add((d.UserId, d.DeviceId, d.Position));
                if (d.ToDevice.Count >= 100) more.Add(d.UserId);
            }
            queue.Append(items, cursors: cursors);
            if (more.Count == 0) return;
            users = [.. more.Distinct()];
        }
    }

    async Task DeviceLists(IReadOnlyList<string> changed, CancellationToken ct)
    {
        var server = config.ServerName;
        var regs = config.Appservices().Where(r => r.Url is not null && r.Msc3202).ToList();
        if (regs.Count == 0 || changed.Count == 0) return;
        var items = new List<(string, string, JsonNode)>();
        foreach (var user in changed.Distinct())
        {
            var shared = await rooms.SharedUsersAsync(new SharedUsersRequest { UserIds = { user } }, cancellationToken: ct);
            foreach (var r in regs)
                if (r.IsInterestedInUser(user, server) || shared.UserIds.Any(u => r.IsInterestedInUser(u, server)))
                    items.Add((r.Id, "device_lists", new JsonObject { ["changed"] = new JsonArray(user) }));
        }
        queue.Append(items);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Appservice to-device/key updates could not be queued: {Reason}")]
    static partial void LogFailed(ILogger log, string reason);
}

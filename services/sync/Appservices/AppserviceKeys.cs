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
        // Only an appservice that takes to-device messages (receive_ephemeral) consumes them: the devices of users no
        // such appservice claims are read for their key counts alone, their messages left for their own /sync.
        var withMessages = users.Where(u => regs.Any(r => r.ReceiveEphemeral && r.IsInterestedInUser(u, server))).ToList();
        var countsOnly = users.Except(withMessages).ToList();
        if (countsOnly.Count > 0) await ReadAsync(countsOnly, toDevice: false);
        // A device with more messages waiting than one read carries is read again.
        for (var round = 0; round < 20 && withMessages.Count > 0; round++) withMessages = await ReadAsync(withMessages, toDevice: true);

        // Queues what the devices of the users have for the appservices; answers the users with more to read.
        async Task<List<string>> ReadAsync(List<string> userIds, bool toDevice)
        {
            var request = new Protos.Keys.AppserviceKeysRequest { UserIds = { userIds }, SkipToDevice = !toDevice };
            if (toDevice)
                foreach (var (user, device, pos) in queue.DeviceCursors(userIds)) request.Cursors[user + "|" + device] = pos;
            var reply = await keys.AppserviceKeysAsync(request, cancellationToken: ct);
            var items = new List<AppserviceItem>();
            var cursors = new List<(string, string, long)>();
            var more = new List<string>();
            foreach (var d in reply.Devices)
            {
                var messages = toDevice ? d.ToDevice.Select(m => WithRecipient(m, d.UserId, d.DeviceId)).OfType<string>().ToList() : [];
                string? keyCounts = null;
                foreach (var r in regs.Where(r => r.IsInterestedInUser(d.UserId, server)))
                {
                    if (r.ReceiveEphemeral) items.AddRange(messages.Select(m => new AppserviceItem(r.Id, "to_device", m)));
                    if (r.Msc3202) items.Add(new AppserviceItem(r.Id, "otk", keyCounts ??= KeyCounts(d)));
                }
                if (!toDevice) continue;
                var old = request.Cursors.TryGetValue(d.UserId + "|" + d.DeviceId, out var c) ? c : 0;
                if (d.Position != old) cursors.Add((d.UserId, d.DeviceId, d.Position));
                if (d.ToDevice.Count >= 100) more.Add(d.UserId);
            }
            queue.Append(items, cursors: cursors);
            return [.. more.Distinct()];
        }
    }

    /// <summary>A to-device message as MSC2409 puts it in a transaction: with its recipient.</summary>
    static string? WithRecipient(string message, string userId, string deviceId)
    {
        if (JsonLimits.ParseInternal(System.Text.Encoding.UTF8.GetBytes(message)) is not JsonObject msg) return null;
        msg["to_user_id"] = userId;
        msg["to_device_id"] = deviceId;
        return msg.ToJsonString();
    }

    static string KeyCounts(Protos.Keys.AppserviceDeviceKeys d)
    {
        var counts = new JsonObject();
        foreach (var (alg, n) in d.OneTimeKeyCounts) counts[alg] = n;
        return new JsonObject
        {
            ["counts"] = new JsonObject { [d.UserId] = new JsonObject { [d.DeviceId] = counts } },
            ["fallback"] = new JsonObject { [d.UserId] = new JsonObject { [d.DeviceId] = new JsonArray([.. d.UnusedFallbackKeyTypes.Select(t => (JsonNode)t)]) } },
        }.ToJsonString();
    }

    async Task DeviceLists(IReadOnlyList<string> changed, CancellationToken ct)
    {
        var server = config.ServerName;
        var regs = config.Appservices().Where(r => r.Url is not null && r.Msc3202).ToList();
        if (regs.Count == 0 || changed.Count == 0) return;
        var items = new List<AppserviceItem>();
        foreach (var user in changed.Distinct())
        {
            var shared = await rooms.SharedUsersAsync(new SharedUsersRequest { UserIds = { user } }, cancellationToken: ct);
            foreach (var r in regs)
                if (r.IsInterestedInUser(user, server) || shared.UserIds.Any(u => r.IsInterestedInUser(u, server)))
                    items.Add(new AppserviceItem(r.Id, "device_lists", new JsonObject { ["changed"] = new JsonArray(user) }.ToJsonString()));
        }
        queue.Append(items);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Appservice to-device/key updates could not be queued: {Reason}")]
    static partial void LogFailed(ILogger log, string reason);
}

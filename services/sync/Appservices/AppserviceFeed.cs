using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Protos.Rooms;
using Grpc.Core;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Conduit.Sync.Appservices;

/// <summary>
/// Queues for each application service the room events it is interested in (spec: application-service-api,
/// "Pushing events": "linearised, as if they were from the event stream"). It follows the room stream through rooms'
/// AppserviceFeed, in order, a batch at a time, and writes each batch's items with the new position in one durable
/// write, so after a crash it resumes where it stopped: nothing is queued twice or skipped. An appservice is
/// interested in an event whose sender is its user, a membership event whose target is its user, or any event of a
/// room it is interested in (<see cref="Common.Appservices.AppserviceRegistration.IsInterestedInRoom"/>). A first
/// start queues from then on, not the history. While no appservice with a url is registered the position simply
/// follows the stream.
/// </summary>
public sealed partial class AppserviceFeed(AppserviceQueue queue, SyncNotifier notifier, Rooms.RoomsClient rooms, GlobalConfig config,
    ILogger<AppserviceFeed> log) : BackgroundService
{
    const int BatchLimit = 200;

    protected override async Task ExecuteAsync(CancellationToken ct)
    {
        await Task.Yield();
        var delay = TimeSpan.FromMilliseconds(100);
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await Follow(ct);
            }
            catch (Exception) when (ct.IsCancellationRequested) { return; }
            catch (Exception e)
            {
                LogFailed(log, delay.TotalMilliseconds, e.Message);
                try { await Task.Delay(delay, ct); } catch (OperationCanceledException) { return; }
                delay = TimeSpan.FromMilliseconds(Math.Min(delay.TotalMilliseconds * 2, 5000));
            }
        }
    }

    async Task Follow(CancellationToken ct)
    {
        var pos = queue.FeedPosition ?? -1;
        if (pos < 0)
        {
            var now = await rooms.AppserviceFeedAsync(new PushFeedRequest { After = -1 }, cancellationToken: ct);
            queue.Append([], now.Position);
            pos = now.Position;
        }
        while (!ct.IsCancellationRequested)
        {
            var advance = notifier.NextAdvance();
            var targets = config.Appservices().Where(r => r.Url is not null).ToList();
            var from = pos;
            if (targets.Count == 0)
            {
                if (notifier.RoomsPosition > pos)
                {
                    pos = notifier.RoomsPosition;
                    queue.Append([], pos);
                }
            }
            else
            {
                var reply = await rooms.AppserviceFeedAsync(new PushFeedRequest { After = from, Limit = BatchLimit }, cancellationToken: ct);
                if (reply.Position > from || reply.Events.Count > 0)
                {
                    queue.Append(Items(reply, targets), reply.Position);
                    pos = reply.Position;
                }
                if (reply.Events.Count >= BatchLimit || pos > from && notifier.RoomsPosition > pos) continue;
            }
            await Task.WhenAny(advance, Task.Delay(TimeSpan.FromSeconds(5), ct));
            ct.ThrowIfCancellationRequested();
        }
    }

    List<(string, string, JsonNode)> Items(AppserviceFeedReply reply, List<Common.Appservices.AppserviceRegistration> targets)
    {
        var server = config.ServerName;
        var roomsById = reply.Rooms.ToDictionary(r => r.RoomId, StringComparer.Ordinal);
        var interestedInRoom = new Dictionary<(string, string), bool>();
        var items = new List<(string, string, JsonNode)>();
        foreach (var ev in reply.Events)
        {
            JsonNode? json = null;
            foreach (var r in targets)
            {
                var interested = r.IsInterestedInUser(ev.Sender, server)
                    || ev.HasStateKey && ev.StateKey.StartsWith('@') && r.IsInterestedInUser(ev.StateKey, server) && IsMember(ev)
                    || RoomInterest(r, ev.RoomId);
                if (!interested) continue;
                json ??= JsonLimits.ParseInternal(System.Text.Encoding.UTF8.GetBytes(ev.Json));
                if (json is not null) items.Add((r.Id, "event", json));
            }
        }
        return items;

        bool RoomInterest(Common.Appservices.AppserviceRegistration r, string roomId)
        {
            if (interestedInRoom.TryGetValue((r.Id, roomId), out var known)) return known;
            var room = roomsById.GetValueOrDefault(roomId);
            return interestedInRoom[(r.Id, roomId)] = r.IsInterestedInRoom(roomId, room?.Aliases ?? [], room?.LocalJoinedUserIds ?? [], server);
        }
    }

    // Only a membership event's state key is a user the event concerns.
    static bool IsMember(AppserviceFeedEvent ev) => ev.Json.Contains("\"type\":\"m.room.member\"", StringComparison.Ordinal);

    [LoggerMessage(Level = LogLevel.Warning, Message = "The appservice event feed stopped; retrying in {DelayMs} ms: {Reason}")]
    static partial void LogFailed(ILogger log, double delayMs, string reason);
}

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
/// start queues from then on, not the history. While no appservice with a url is registered the position follows the
/// stream in memory only (<see cref="AppserviceQueue.FeedPosition"/>).
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
                // The first tries are quiet: at start (split mode) rooms may not be listening yet.
                if (delay.TotalMilliseconds < 1000) LogRetrying(log, delay.TotalMilliseconds, e.Message);
                else LogFailed(log, delay.TotalMilliseconds, e.Message);
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
        var idle = false;
        while (!ct.IsCancellationRequested)
        {
            var advance = notifier.NextAdvance();
            var targets = config.Appservices().Where(r => r.Url is not null).ToList();
            var from = pos;
            if (targets.Count == 0)
            {
                // Nothing to queue: the position follows the stream in memory only (no write per event).
                if (!idle) queue.MarkFeedIdle();
                idle = true;
                if (notifier.RoomsPosition > pos) pos = notifier.RoomsPosition;
            }
            else
            {
                var reply = await rooms.AppserviceFeedAsync(new PushFeedRequest { After = from, Limit = BatchLimit }, cancellationToken: ct);
                if (reply.Position > from || reply.Events.Count > 0 || idle)
                {
                    idle = false;
                    var items = Items(reply, targets);
                    items.AddRange(await Departures(reply, targets, ct));
                    queue.Append(items, reply.Position);
                    pos = reply.Position;
                }
                if (reply.Events.Count >= BatchLimit || pos > from && notifier.RoomsPosition > pos) continue;
            }
            await Task.WhenAny(advance, Task.Delay(TimeSpan.FromSeconds(5), ct));
            ct.ThrowIfCancellationRequested();
        }
    }

    List<AppserviceItem> Items(AppserviceFeedReply reply, List<Common.Appservices.AppserviceRegistration> targets)
    {
        var server = config.ServerName;
        var roomsById = reply.Rooms.ToDictionary(r => r.RoomId, StringComparer.Ordinal);
        var interestedInRoom = new Dictionary<(string, string), bool>();
        var items = new List<AppserviceItem>();
        foreach (var ev in reply.Events)
            foreach (var r in targets)
            {
                var interested = r.IsInterestedInUser(ev.Sender, server)
                    || ev.Type == "m.room.member" && r.IsInterestedInUser(ev.StateKey, server)
                    || RoomInterest(r, ev.RoomId);
                // The event's JSON as rooms wrote it goes into the queue as it is.
                if (interested) items.Add(new AppserviceItem(r.Id, "event", ev.Json));
            }
        return items;

        bool RoomInterest(Common.Appservices.AppserviceRegistration r, string roomId)
        {
            if (interestedInRoom.TryGetValue((r.Id, roomId), out var known)) return known;
            var room = roomsById.GetValueOrDefault(roomId);
            return interestedInRoom[(r.Id, roomId)] = r.IsInterestedInRoom(roomId, room?.Aliases ?? [], room?.LocalJoinedUserIds ?? [], server);
        }
    }

    /// <summary>
    /// MSC3202's device_lists.left: a user who left (or was kicked or banned from) a room an appservice with
    /// org.matrix.msc3202 had one of its users in, and now shares no room with any of its users, is no longer one
    /// whose devices it tracks. (A room its own user leaves is not followed up: its other members are not known here.)
    /// </summary>
    async Task<List<AppserviceItem>> Departures(AppserviceFeedReply reply, List<Common.Appservices.AppserviceRegistration> targets, CancellationToken ct)
    {
        var items = new List<AppserviceItem>();
        var regs = targets.Where(r => r.Msc3202).ToList();
        if (regs.Count == 0) return items;
        var server = config.ServerName;
        var roomsById = reply.Rooms.ToDictionary(r => r.RoomId, StringComparer.Ordinal);
        var candidates = new Dictionary<string, HashSet<string>>(StringComparer.Ordinal);
        foreach (var ev in reply.Events)
        {
            if (ev.Membership is not ("leave" or "ban")) continue;
            var members = roomsById.GetValueOrDefault(ev.RoomId)?.LocalJoinedUserIds ?? [];
            foreach (var r in regs)
                if (!r.IsInterestedInUser(ev.StateKey, server) && members.Any(u => r.IsInterestedInUser(u, server)))
                {
                    if (!candidates.TryGetValue(ev.StateKey, out var ids)) candidates[ev.StateKey] = ids = new HashSet<string>(StringComparer.Ordinal);
                    ids.Add(r.Id);
                }
        }
        foreach (var (user, ids) in candidates)
        {
            var shared = await rooms.SharedUsersAsync(new SharedUsersRequest { UserIds = { user } }, cancellationToken: ct);
            foreach (var r in regs.Where(r => ids.Contains(r.Id)))
                if (!shared.UserIds.Any(u => u != user && r.IsInterestedInUser(u, server)))
                    items.Add(new AppserviceItem(r.Id, "device_lists", new JsonObject { ["left"] = new JsonArray(user) }.ToJsonString()));
        }
        return items;
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "The appservice event feed is waiting for rooms; retrying in {DelayMs} ms: {Reason}")]
    static partial void LogRetrying(ILogger log, double delayMs, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "The appservice event feed stopped; retrying in {DelayMs} ms: {Reason}")]
    static partial void LogFailed(ILogger log, double delayMs, string reason);
}

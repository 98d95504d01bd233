using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Storage;
using Conduit.Protos.Rooms;
using Conduit.Sync.PushRules;
using Grpc.Core;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Conduit.Sync.Push;

/// <summary>
/// Evaluates push rules server-side on every event (spec: client-server-api, "Push Notifications", "Server behaviour":
/// "for each of the local users in the room (excluding the sender)"). It follows the room stream through rooms'
/// PushFeed, in order, a batch at a time; for each event and each local joined user (and a local invitee) it runs the
/// user's rules, and for a notifying match records the unread entry, the GET /notifications entry and a push per pusher,
/// all with its new position in one durable batch. After a crash it resumes from the last batch written, so nothing is
/// evaluated twice or skipped. /sync waits for it (<see cref="WaitForAsync"/>) up to the position it answers with, so
/// "the updated notification count from a new event" appears "in the same /sync response as the event itself".
/// </summary>
public sealed partial class PushWorker(PushStore store, AccountDataStore data, SyncNotifier notifier, Rooms.RoomsClient rooms,
    PushSender sender, GlobalConfig config, ILogger<PushWorker> log, Protos.Keys.Keys.KeysClient keys) : BackgroundService
{
    const int BatchLimit = 200;
    /// <summary>How long a /sync waits for the worker before answering with the counts it has.</summary>
    static readonly TimeSpan MaxSyncWait = TimeSpan.FromSeconds(5);

    readonly Lock _lock = new();
    readonly List<(long Pos, TaskCompletionSource Done)> _waiters = [];
    long _position = -1;

    // Compiled rules and ignored users per user, invalidated by the endpoints that change them (this service owns
    // both): an entry is good while its generation is the user's current one.
    readonly ConcurrentDictionary<string, (long Gen, PushEvaluator Rules, HashSet<string> Ignored)> _users = new(StringComparer.Ordinal);
    readonly ConcurrentDictionary<string, long> _generations = new(StringComparer.Ordinal);

    /// <summary>The room-stream position evaluated up to (-1 before the first read).</summary>
    public long Position { get { lock (_lock) return _position; } }

    /// <summary>Time spent writing batches (for the benchmark).</summary>
    public TimeSpan WriteTime { get; private set; }

    /// <summary>The user's push rules or ignored users changed.</summary>
    public void Invalidate(string userId)
    {
        _generations.AddOrUpdate(userId, 1, (_, g) => g + 1);
        _users.TryRemove(userId, out _);
    }

    /// <summary>Waits until events up to <paramref name="pos"/> are evaluated (at most a few seconds).</summary>
    public async Task WaitForAsync(long pos, CancellationToken ct)
    {
        TaskCompletionSource tcs;
        lock (_lock)
        {
            if (_position >= pos) return;
            tcs = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _waiters.Add((pos, tcs));
        }
        await Task.WhenAny(tcs.Task, Task.Delay(MaxSyncWait, ct));
        ct.ThrowIfCancellationRequested();
    }

    void Advance(long pos)
    {
        List<TaskCompletionSource> done = [];
        lock (_lock)
        {
            if (pos > _position) _position = pos;
            for (var i = _waiters.Count - 1; i >= 0; i--)
                if (_waiters[i].Pos <= _position)
                {
                    done.Add(_waiters[i].Done);
                    _waiters.RemoveAt(i);
                }
        }
        foreach (var t in done) t.TrySetResult();
    }

    protected override async Task ExecuteAsync(CancellationToken ct)
    {
        try { await Run(ct); }
        // Stopping, also when the host is disposed without having started (the store may be closed already).
        catch (Exception) when (ct.IsCancellationRequested) { }
    }

    async Task Run(CancellationToken ct)
    {
        // A deleted device's pushers go with it (Synapse deletes a pusher with its access token): at once when keys
        // announces it, and by a check of every pusher's device whenever the keys stream (re)connects, in case an
        // announcement was missed (sync not running, a broken stream).
        notifier.DevicesRemoved += removed =>
        {
            foreach (var (user, device) in removed) store.DeleteDevicePushers(user, device);
        };
        notifier.KeysConnected += () => _ = Task.Run(() => RemoveOrphanPushersAsync(ct), ct);
        await Task.Yield();
        var delay = TimeSpan.FromMilliseconds(100);
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await Follow(ct);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested) { return; }
            catch (RpcException) when (ct.IsCancellationRequested) { return; }
            catch (Exception e)
            {
                LogFailed(log, delay.TotalMilliseconds, e.Message);
                try { await Task.Delay(delay, ct); } catch (OperationCanceledException) { return; }
                delay = TimeSpan.FromMilliseconds(Math.Min(delay.TotalMilliseconds * 2, 5000));
                continue;
            }
        }
    }

    async Task Follow(CancellationToken ct)
    {
        var stored = store.Position;
        if (stored is null)
        {
            // A first start evaluates from now on: events from before push existed are not notified.
            var now = await rooms.PushFeedAsync(new PushFeedRequest { After = -1 }, cancellationToken: ct);
            using var b = store.Store.CreateBatch();
            PushStore.SetPosition(b, now.Position);
            store.Store.Write(b);
            stored = now.Position;
        }
        Advance(stored.Value);
        while (!ct.IsCancellationRequested)
        {
            var advance = notifier.NextAdvance();
            var from = Position;
            var reply = await rooms.PushFeedAsync(new PushFeedRequest { After = from, Limit = BatchLimit }, cancellationToken: ct);
            if (reply.Events.Count > 0) Process(reply);
            Advance(reply.Position);
            if (reply.Events.Count >= BatchLimit || reply.Position > from && notifier.RoomsPosition > reply.Position) continue;
            // Caught up: wait for the stream to move (a poll every few seconds covers a follower that is reconnecting).
            await Task.WhenAny(advance, Task.Delay(TimeSpan.FromSeconds(5), ct));
            ct.ThrowIfCancellationRequested();
        }
    }

    /// <summary>Removes the pushers whose device no longer exists.</summary>
    internal async Task RemoveOrphanPushersAsync(CancellationToken ct)
    {
        try
        {
            var withDevice = store.AllPushers().Select(p => (Pusher: p, Device: PushStore.DeviceOf(p))).Where(x => x.Device is not null).ToList();
            if (withDevice.Count == 0) return;
            var request = new Protos.Keys.DevicesExistRequest();
            request.Devices.AddRange(withDevice.Select(x => new Protos.Keys.DeviceRef { UserId = x.Pusher.UserId, DeviceId = x.Device! }));
            var reply = await keys.DevicesExistAsync(request, cancellationToken: ct);
            for (var i = 0; i < withDevice.Count && i < reply.Exists.Count; i++)
                if (!reply.Exists[i]) store.DeletePusher(withDevice[i].Pusher.UserId, withDevice[i].Pusher.AppId, withDevice[i].Pusher.PushKey);
        }
        catch (Exception e) when (!ct.IsCancellationRequested)
        {
            LogOrphanCheckFailed(log, e.Message);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not check the devices of pushers: {Reason}")]
    static partial void LogOrphanCheckFailed(ILogger log, string reason);

    (PushEvaluator Rules, HashSet<string> Ignored) UserRules(string userId)
    {
        var gen = _generations.GetValueOrDefault(userId);
        if (_users.TryGetValue(userId, out var u) && u.Gen == gen) return (u.Rules, u.Ignored);
        var rules = PushEvaluator.Compile(data.Get(userId, "", "m.push_rules") ?? DefaultPushRules.For(userId));
        var ignored = data.Get(userId, "", "m.ignored_user_list")?["ignored_users"] is JsonObject list
            ? list.Select(p => p.Key).ToHashSet(StringComparer.Ordinal) : [];
        if (_users.Count > 100_000) _users.Clear();
        _users[userId] = (gen, rules, ignored);
        return (rules, ignored);
    }

    bool IsLocal(string userId) => userId.EndsWith(":" + config.ServerName, StringComparison.Ordinal);

    /// <summary>Evaluates one feed reply and writes everything it caused, with the new position, in one batch.</summary>
    public void Process(PushFeedReply reply)
    {
        var roomsById = reply.Rooms.ToDictionary(r => r.RoomId, StringComparer.Ordinal);
        var now = Ids.NowMs();
        var notified = new HashSet<string>(StringComparer.Ordinal);
        var pushed = false;
        _names.Clear();
        using var b = store.Store.CreateBatch();
        foreach (var ev in reply.Events)
        {
            try
            {
                pushed |= Evaluate(b, ev, roomsById, now, notified);
            }
            catch (Exception x) when (x is not OperationCanceledException and not RpcException)
            {
                // One event that cannot be evaluated must not stop every later one.
                LogEventFailed(log, ev.EventId, x.Message);
            }
        }
        foreach (var u in notified) store.PruneNotifications(b, u, now);
        PushStore.SetPosition(b, reply.Position);
        var write = System.Diagnostics.Stopwatch.StartNew();
        store.Store.Write(b);
        WriteTime += write.Elapsed;
        if (pushed) sender.Signal();
    }

    bool Evaluate(IWriteBatch b, PushFeedEvent ev, Dictionary<string, PushFeedRoom> roomsById, long now, HashSet<string> notified)
    {
        var pushed = false;
        {
            if (!roomsById.TryGetValue(ev.RoomId, out var room)) return false;
            if (JsonLimits.ParseInternal(System.Text.Encoding.UTF8.GetBytes(ev.Json)) is not JsonObject json) return false;
            var e = new PushEvent(json);
            var senderId = e.Sender ?? "";
            var isState = json.ContainsKey("state_key");
            if (IsLocal(senderId)) PushStore.SetImplicitRead(b, senderId, ev.RoomId, ev.ThreadId, ev.Position);
            var ctx = new PushRoomContext(room.JoinedMemberCount, ev.SenderPowerLevel, room.NotificationLevels);
            string? eventPart = null;
            foreach (var userId in room.LocalJoinedUserIds.Concat(ev.ExtraUserIds).Distinct())
            {
                // Never for the sender's own events (spec: "Homeservers MUST NOT notify ... events that the user has sent").
                if (userId == senderId) continue;
                var (rules, ignored) = UserRules(userId);
                // An ignored user's messages notify no one (Synapse); their state events still apply to the room.
                if (!isState && ignored.Contains(senderId)) continue;
                var actions = rules.Evaluate(e, ctx, userId, () => DisplayName(ev.RoomId, userId));
                if (actions is not { Notify: true }) continue;
                PushStore.AddUnread(b, userId, ev.RoomId, ev.Position, ev.ThreadId, actions.Highlight);
                eventPart ??= PushStore.NotificationEventPart(ev.RoomId, ev.EventId, ev.ThreadId, now);
                PushStore.AddNotification(b, userId, ev.Position, eventPart, actions.ActionsJson, actions.Highlight);
                notified.Add(userId);
                foreach (var p in store.PushersOf(userId))
                {
                    store.Enqueue(b, p, PushItem(ev, room, json, actions, userId));
                    pushed = true;
                }
            }
        }
        return pushed;
    }

    // Display names asked within one batch (contains_display_name); the worker is the only thread that uses it.
    readonly Dictionary<(string, string), string?> _names = [];

    string? DisplayName(string roomId, string userId)
    {
        if (_names.TryGetValue((roomId, userId), out var name)) return name;
        var reply = rooms.MemberDisplayNames(new MemberDisplayNamesRequest { RoomId = roomId, UserIds = { userId } });
        name = reply.DisplayNames.TryGetValue(userId, out var n) ? n : null;
        _names[(roomId, userId)] = name;
        return name;
    }

    /// <summary>What a push of this event to this user carries (the push gateway API's notification, less counts
    /// and devices, which the sender adds when it sends).</summary>
    static JsonObject PushItem(PushFeedEvent ev, PushFeedRoom room, JsonObject json, PushActions actions, string userId)
    {
        var tweaks = actions.Tweaks();
        var type = json["type"]?.GetValue<string>();
        // Synapse's priority: high for encrypted events and for anything that sounds or highlights.
        var high = type == "m.room.encrypted" || tweaks.ContainsKey("sound") || actions.Highlight;
        var n = new JsonObject
        {
            ["event_id"] = ev.EventId,
            ["room_id"] = ev.RoomId,
            ["type"] = type,
            ["sender"] = json["sender"]?.DeepClone(),
            ["prio"] = high ? "high" : "low",
            ["content"] = json["content"]?.DeepClone(),
        };
        if (ev.SenderDisplayName.Length > 0) n["sender_display_name"] = ev.SenderDisplayName;
        if (room.Name.Length > 0) n["room_name"] = room.Name;
        if (room.CanonicalAlias.Length > 0) n["room_alias"] = room.CanonicalAlias;
        if (json["state_key"] is JsonValue sk && sk.TryGetValue(out string? target) && type == "m.room.member") n["user_is_target"] = target == userId;
        return new JsonObject
        {
            ["kind"] = "event", ["pos"] = ev.Position, ["thread"] = ev.ThreadId, ["ts"] = Ids.NowMs(),
            ["notification"] = n, ["tweaks"] = tweaks,
        };
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Push rules could not be evaluated for {EventId}: {Reason}")]
    static partial void LogEventFailed(ILogger log, string eventId, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Push rule evaluation stopped; retrying in {DelayMs} ms: {Reason}")]
    static partial void LogFailed(ILogger log, double delayMs, string reason);
}

using Conduit.Protos.Rooms;
using Grpc.Core;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Conduit.Sync;

/// <summary>
/// Wakes waiting /sync requests without polling storage: it follows the rooms service's stream of positions
/// (gRPC server streaming; in process in all-in-one mode) and wakes exactly the users each advance names.
/// It follows the keys service's stream the same way: a to-device message wakes its recipient, a device-list
/// change wakes everyone who shares a room with the user it concerns (rooms' SharedUsers says who).
/// Account-data writes wake their user directly. If a stream breaks it reconnects with backoff and wakes
/// everyone once, since an advance may have been missed in between.
/// </summary>
public sealed partial class SyncNotifier(Rooms.RoomsClient rooms, Protos.Keys.Keys.KeysClient keys, ILogger<SyncNotifier> log) : BackgroundService
{
    readonly Lock _lock = new();
    readonly Dictionary<string, TaskCompletionSource> _waiters = [];
    long _roomsPosition = -1;
    // Per local user: the newest room-stream advance that concerned them; below _everyoneFrom, every user counts as
    // concerned (an advance for "*", or the stream's (re)connection, when advances may have been missed).
    readonly Dictionary<string, long> _userPositions = new(StringComparer.Ordinal);
    long _everyoneFrom = long.MaxValue;
    TaskCompletionSource _advance = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Devices deleted in the keys service (logout, deletion, deactivation), as they are announced.</summary>
    public event Action<IReadOnlyList<(string UserId, string DeviceId)>>? DevicesRemoved;

    /// <summary>Each keys-stream advance: the users it wakes or whose key counts changed, and those whose device
    /// lists changed (the appservice sender follows both).</summary>
    public event Action<IReadOnlyList<string>, IReadOnlyList<string>>? KeysAdvanced;

    /// <summary>The keys stream (re)connected: announcements may have been missed in between.</summary>
    public event Action? KeysConnected;

    /// <summary>A task that completes when the room stream next advances (or its follower reconnects).</summary>
    public Task NextAdvance()
    {
        lock (_lock) return _advance.Task;
    }

    void Advanced()
    {
        TaskCompletionSource t;
        lock (_lock)
        {
            t = _advance;
            _advance = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        t.TrySetResult();
    }

    /// <summary>The latest durable room-stream position seen, or -1 before the stream is connected.</summary>
    public long RoomsPosition { get { lock (_lock) return _roomsPosition; } }

    /// <summary>The newest room-stream position whose advance concerned the user (an event in one of their rooms, a
    /// membership of theirs), or long.MaxValue before the stream is connected: a connection at this position or
    /// beyond has nothing new from the rooms service.</summary>
    public long RoomsPositionFor(string userId)
    {
        lock (_lock)
        {
            if (_roomsPosition < 0) return long.MaxValue;
            return Math.Max(_everyoneFrom, _userPositions.GetValueOrDefault(userId));
        }
    }

    /// <summary>A task that completes at the user's next wake-up. Take it BEFORE reading, so nothing slips between.</summary>
    public Task NextWake(string userId)
    {
        lock (_lock)
        {
            if (!_waiters.TryGetValue(userId, out var tcs))
                _waiters[userId] = tcs = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return tcs.Task;
        }
    }

    public void Wake(string userId)
    {
        TaskCompletionSource? tcs;
        lock (_lock)
            if (_waiters.Remove(userId, out tcs)) { }
        tcs?.TrySetResult();
    }

    void WakeAll()
    {
        Advanced();
        List<TaskCompletionSource> all;
        lock (_lock)
        {
            all = [.. _waiters.Values];
            _waiters.Clear();
        }
        foreach (var t in all) t.TrySetResult();
    }

    protected override Task ExecuteAsync(CancellationToken stoppingToken)
        => Task.WhenAll(Follow("rooms", stoppingToken, FollowRooms), Follow("keys", stoppingToken, FollowKeys));

    async Task FollowRooms(CancellationToken ct, Action connected)
    {
        using var call = rooms.WatchStream(new WatchStreamRequest(), cancellationToken: ct);
        var first = true;
        await foreach (var a in call.ResponseStream.ReadAllAsync(ct))
        {
            lock (_lock)
            {
                if (a.Position > _roomsPosition) _roomsPosition = a.Position;
                if (first || a.UserIds.Contains("*"))
                {
                    _everyoneFrom = a.Position;
                    _userPositions.Clear();
                }
                else
                    foreach (var u in a.UserIds)
                        if (a.Position > _userPositions.GetValueOrDefault(u)) _userPositions[u] = a.Position;
            }
            Advanced();
            if (first || a.UserIds.Contains("*")) WakeAll();
            else foreach (var u in a.UserIds) Wake(u);
            first = false;
            connected();
        }
    }

    async Task FollowKeys(CancellationToken ct, Action connected)
    {
        using var call = keys.WatchKeys(new Protos.Keys.WatchKeysRequest(), cancellationToken: ct);
        var first = true;
        await foreach (var a in call.ResponseStream.ReadAllAsync(ct))
        {
            if (first)
            {
                WakeAll();
                KeysConnected?.Invoke();
            }
            if (a.RemovedDevices.Count > 0) DevicesRemoved?.Invoke([.. a.RemovedDevices.Select(d => (d.UserId, d.DeviceId))]);
            foreach (var u in a.WakeUserIds) Wake(u);
            if (a.ChangedUserIds.Count > 0)
            {
                foreach (var u in a.ChangedUserIds) Wake(u);
                var shared = await rooms.SharedUsersAsync(new SharedUsersRequest { UserIds = { a.ChangedUserIds } }, cancellationToken: ct);
                foreach (var u in shared.UserIds) Wake(u);
            }
            if (a.WakeUserIds.Count > 0 || a.ChangedUserIds.Count > 0 || a.CountedUserIds.Count > 0)
                KeysAdvanced?.Invoke([.. a.WakeUserIds.Union(a.CountedUserIds)], [.. a.ChangedUserIds]);
            first = false;
            connected();
        }
    }

    /// <summary>Runs a stream follower until shutdown, reconnecting with backoff and waking everyone after a break.</summary>
    async Task Follow(string name, CancellationToken stoppingToken, Func<CancellationToken, Action, Task> follow)
    {
        var delay = TimeSpan.FromMilliseconds(100);
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await follow(stoppingToken, () => delay = TimeSpan.FromMilliseconds(100));
            }
            catch (Exception e) when (!stoppingToken.IsCancellationRequested)
            {
                LogStreamBroken(log, name, delay.TotalMilliseconds, e.Message);
            }
            catch (OperationCanceledException) { return; }
            catch (RpcException) when (stoppingToken.IsCancellationRequested) { return; }
            WakeAll();
            try { await Task.Delay(delay, stoppingToken); } catch (OperationCanceledException) { return; }
            delay = TimeSpan.FromMilliseconds(Math.Min(delay.TotalMilliseconds * 2, 5000));
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "The {Stream} stream broke; reconnecting in {DelayMs} ms: {Reason}")]
    static partial void LogStreamBroken(ILogger log, string stream, double delayMs, string reason);
}

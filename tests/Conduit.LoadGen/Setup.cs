using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text.Json.Nodes;

namespace Conduit.LoadGen;

/// <summary>
/// Registration, rooms and first syncs, shared by every scenario. Users are <c>lg_RUNID_i</c> with a random run id,
/// so reruns against the same database never collide.
/// </summary>
internal sealed class Setup(MatrixApi api, Options o)
{
    static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(60);

    public string RunId { get; } = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4));
    readonly string _password = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(12));

    /// <summary>GET /versions; logs and returns false when the server does not answer.</summary>
    public async Task<bool> CheckReachableAsync(CancellationToken ct)
    {
        var r = await api.CallAsync("versions", HttpMethod.Get, "_matrix/client/versions", null, null,
            TimeSpan.FromSeconds(5), ct, record: false).ConfigureAwait(false);
        if (r.Ok && r.Json?["versions"] is JsonArray) return true;
        Out.Log($"error: homeserver not reachable at {o.Url}: GET /_matrix/client/versions gave {r.Describe()}");
        return false;
    }

    /// <summary>
    /// The server keeps at most 10 user-interactive auth sessions per client address before login and drops the
    /// oldest beyond that, so more registrations at once from this one address fail with "Unknown user-interactive
    /// auth session".
    /// </summary>
    const int MaxConcurrentRegistrations = 8;

    /// <summary>
    /// Registers <paramref name="count"/> users (indices from <paramref name="first"/>), --setup-concurrency at a time
    /// (at most <see cref="MaxConcurrentRegistrations"/>); returns those that succeeded.
    /// </summary>
    public async Task<List<User>> RegisterAsync(int count, CancellationToken ct, int first = 0)
    {
        var all = Enumerable.Range(first, count).Select(i => new User(i, $"lg_{RunId}_{i}")).ToList();
        var ok = new ConcurrentBag<User>();
        var firstFailures = new ConcurrentQueue<string>();
        await Parallel.ForEachAsync(all, new ParallelOptions { MaxDegreeOfParallelism = Math.Min(o.SetupConcurrency, MaxConcurrentRegistrations), CancellationToken = ct },
            async (u, token) =>
            {
                try
                {
                    var (userId, accessToken, deviceId) = await api.RegisterAsync(u.Localpart, _password, o.RegistrationToken, token).ConfigureAwait(false);
                    u.UserId = userId;
                    u.Token = accessToken;
                    u.DeviceId = deviceId;
                    ok.Add(u);
                }
                catch (InvalidOperationException e)
                {
                    if (firstFailures.Count < 3) firstFailures.Enqueue(e.Message);
                }
            }).ConfigureAwait(false);
        foreach (var f in firstFailures) Out.Log($"  {f}");
        return ok.OrderBy(u => u.Index).ToList();
    }

    /// <summary>
    /// <paramref name="creator"/> creates a private_chat room, invites each of <paramref name="others"/> and they join.
    /// Returns the room ID (null when createRoom failed) and the members that joined, creator first.
    /// </summary>
    public async Task<(string? RoomId, List<User> Joined)> CreateRoomAsync(User creator, IEnumerable<User> others, string name,
        ConcurrentQueue<string> problems, CancellationToken ct)
    {
        var body = new JsonObject { ["preset"] = "private_chat" };
        if (name.Length > 0) body["name"] = name;
        var r = await api.CallWithRetryAsync("createRoom", HttpMethod.Post, "_matrix/client/v3/createRoom", body, creator.Token,
            RequestTimeout, ct).ConfigureAwait(false);
        var roomId = MatrixApi.Str(r.Json?["room_id"]);
        if (!r.Ok || roomId is null)
        {
            problems.Enqueue($"createRoom by {creator.UserId}: {r.Describe()}");
            return (null, []);
        }

        var joined = new List<User> { creator };
        var roomPath = $"_matrix/client/v3/rooms/{MatrixApi.Esc(roomId)}";
        foreach (var m in others)
        {
            var inv = await api.CallWithRetryAsync("invite", HttpMethod.Post, $"{roomPath}/invite",
                new JsonObject { ["user_id"] = m.UserId }, creator.Token, RequestTimeout, ct).ConfigureAwait(false);
            if (!inv.Ok)
            {
                problems.Enqueue($"invite {m.UserId} to {roomId}: {inv.Describe()}");
                continue;
            }
            var join = await api.CallWithRetryAsync("join", HttpMethod.Post, $"{roomPath}/join",
                new JsonObject(), m.Token, RequestTimeout, ct).ConfigureAwait(false);
            if (!join.Ok)
            {
                problems.Enqueue($"join {m.UserId} to {roomId}: {join.Describe()}");
                continue;
            }
            joined.Add(m);
        }
        return (roomId, joined);
    }

    /// <summary>GET /sync?timeout=0 for each user, --setup-concurrency at a time; sets <see cref="User.Since"/>.</summary>
    public async Task InitialSyncAsync(List<User> users, CancellationToken ct)
    {
        var failures = new ConcurrentQueue<string>();
        await Parallel.ForEachAsync(users, new ParallelOptions { MaxDegreeOfParallelism = o.SetupConcurrency, CancellationToken = ct },
            async (u, token) =>
            {
                var r = await api.CallWithRetryAsync("initial sync", HttpMethod.Get, "_matrix/client/v3/sync?timeout=0", null, u.Token,
                    TimeSpan.FromSeconds(120), token).ConfigureAwait(false);
                var next = MatrixApi.Str(r.Json?["next_batch"]);
                if (!r.Ok || next is null)
                {
                    failures.Enqueue($"initial sync of {u.UserId}: {(r.Ok ? "no next_batch" : r.Describe())}");
                    return;
                }
                u.Since = next;
            }).ConfigureAwait(false);
        foreach (var f in failures.Take(3)) Out.Log($"  {f}");
    }
}

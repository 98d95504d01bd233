using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Conduit.LoadGen;

// Conduit.LoadGen: a load generator (not a test). See README.md beside this file.

Options? options;
try
{
    options = Options.Parse(args);
}
catch (ArgumentException e)
{
    Console.Error.WriteLine($"error: {e.Message}");
    Console.Error.WriteLine();
    Console.Error.WriteLine(Options.Usage);
    return 2;
}
if (options is null)
{
    Console.WriteLine(Options.Usage);
    return 0;
}

return await new LoadRun(options).RunAsync().ConfigureAwait(false);

namespace Conduit.LoadGen
{
    internal sealed class User(int index, string localpart)
    {
        public int Index { get; } = index;
        public string Localpart { get; } = localpart;
        public string UserId { get; set; } = "";
        public string Token { get; set; } = "";
        public int RoomSlot { get; set; } = -1;
        public string? RoomId { get; set; }
        public bool Joined { get; set; }
        public string? Since { get; set; }
    }

    internal sealed class RoomInfo(int slot)
    {
        public int Slot { get; } = slot;
        public string? RoomId { get; set; }
        public List<User> Members { get; } = [];
        public int JoinedCount => Members.Count(m => m.Joined);
    }

    internal sealed record SentMessage(string Body, int Sender, string RoomId, string EventId, long SendStartTs, long SendOkTs, int ExpectedDeliveries);

    internal sealed record Delivery(string Body, string EventId, int Receiver, long ArrivalTs);

    internal sealed class LoadRun(Options o)
    {
        private static readonly TimeSpan SyncServerTimeout = TimeSpan.FromMilliseconds(30_000);
        private static readonly TimeSpan SyncRequestTimeout = SyncServerTimeout + TimeSpan.FromSeconds(15);

        private readonly string _runId = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4));
        private readonly string _password = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(12));
        private MatrixApi _api = null!;

        private readonly ConcurrentDictionary<string, SentMessage> _sent = new(StringComparer.Ordinal);
        private readonly ConcurrentQueue<Delivery> _deliveries = new();
        private readonly ConcurrentDictionary<(string Body, int Receiver), byte> _seenPairs = new();
        private readonly ConcurrentQueue<double> _sendMs = new();
        private long _deliveryCount;
        private long _duplicateCount;
        private long _limitedTimelines;
        private long _syncsCompleted;
        private long _sendAttempts;
        private long _expectedDeliveries;

        private long? _rssIdleKb;
        private long _rssPeakKb = -1;
        private int _rssSamples;

        public async Task<int> RunAsync()
        {
            using var http = MatrixApi.CreateHttpClient(o.Users);
            _api = new MatrixApi(http, o.Url);

            // Hard upper bound for the whole run, whatever the server does.
            var hardLimit = TimeSpan.FromSeconds(o.SetupTimeoutSeconds + o.Seconds + o.DrainSeconds + 90);
            using var hard = new CancellationTokenSource(hardLimit);
            Console.CancelKeyPress += (_, e) =>
            {
                e.Cancel = true;
                Log("interrupted: stopping");
                try { hard.Cancel(); } catch (ObjectDisposedException) { }
            };

            Log($"run {_runId}: {o.Users} users, {o.Rooms} rooms, {o.Seconds} s at one message per ~{o.IntervalMs} ms per user, target {o.Url}");
            if (o.Pids.Count > 0 && MatrixApi.ReadRssKb(o.Pids) is null)
                Log($"warning: cannot read VmRSS of pid(s) {string.Join(",", o.Pids)}; RSS will be reported as n/a");

            // ---------------- setup ----------------
            if (!await CheckReachableAsync(hard.Token).ConfigureAwait(false)) return 1;

            List<User> users;
            List<RoomInfo> rooms;
            using (var setup = CancellationTokenSource.CreateLinkedTokenSource(hard.Token))
            {
                setup.CancelAfter(TimeSpan.FromSeconds(o.SetupTimeoutSeconds));
                var phase = "registration";
                try
                {
                    var sw = Stopwatch.StartNew();
                    users = await RegisterAllAsync(setup.Token).ConfigureAwait(false);
                    Log($"registered {users.Count}/{o.Users} users in {sw.Elapsed.TotalSeconds:0.0} s");
                    if (users.Count < 2)
                    {
                        Log("error: fewer than 2 users registered; nothing to measure");
                        PrintErrors();
                        return 1;
                    }

                    phase = "room setup";
                    sw.Restart();
                    rooms = await SetUpRoomsAsync(users, setup.Token).ConfigureAwait(false);
                    var joined = users.Count(u => u.Joined);
                    Log($"set up {rooms.Count(r => r.RoomId is not null)}/{rooms.Count} rooms, {joined} users joined, in {sw.Elapsed.TotalSeconds:0.0} s");
                    if (rooms.All(r => r.JoinedCount < 2))
                    {
                        Log("error: no room has two joined members; nothing to measure");
                        PrintErrors();
                        return 1;
                    }

                    phase = "initial sync";
                    sw.Restart();
                    await InitialSyncAllAsync(users.Where(u => u.Joined).ToList(), setup.Token).ConfigureAwait(false);
                    Log($"initial /sync done for {users.Count(u => u.Since is not null)} users in {sw.Elapsed.TotalSeconds:0.0} s");
                }
                catch (OperationCanceledException) when (!hard.IsCancellationRequested)
                {
                    Log($"error: setup did not finish within --setup-timeout-seconds {o.SetupTimeoutSeconds} (during {phase})");
                    PrintErrors();
                    return 1;
                }
                catch (OperationCanceledException)
                {
                    Log($"error: run stopped during {phase}");
                    PrintErrors();
                    return 1;
                }
            }

            var active = users.Where(u => u.Joined && u.Since is not null).ToList();
            var roomMembers = rooms.Where(r => r.RoomId is not null)
                .ToDictionary(r => r.RoomId!, r => r.Members.Count(m => m.Joined && m.Since is not null), StringComparer.Ordinal);

            // ---------------- idle RSS ----------------
            if (o.Pids.Count > 0)
            {
                await Task.Delay(1000, hard.Token).ConfigureAwait(false);
                _rssIdleKb = MatrixApi.ReadRssKb(o.Pids);
            }

            // ---------------- load ----------------
            using var syncStop = CancellationTokenSource.CreateLinkedTokenSource(hard.Token);
            using var samplerStop = CancellationTokenSource.CreateLinkedTokenSource(hard.Token);
            var sampler = SampleRssAsync(samplerStop.Token);

            var syncTasks = active.Select(u => SyncLoopAsync(u, syncStop.Token)).ToList();
            Log($"load: {active.Count} users syncing and sending for {o.Seconds} s");

            var loadStart = Stopwatch.GetTimestamp();
            var sendEnd = loadStart + (long)(o.Seconds * (double)Stopwatch.Frequency);
            var senderTasks = active.Select(u => SenderLoopAsync(u, roomMembers, sendEnd, hard.Token)).ToList();
            try
            {
                await Task.WhenAll(senderTasks).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                Log("send phase cut short");
            }
            var sendPhase = Stopwatch.GetElapsedTime(loadStart);

            // ---------------- drain ----------------
            var drainStart = Stopwatch.GetTimestamp();
            var drainLimit = TimeSpan.FromSeconds(o.DrainSeconds);
            while (!hard.IsCancellationRequested && Stopwatch.GetElapsedTime(drainStart) < drainLimit
                   && CountMatchedDeliveries() < Interlocked.Read(ref _expectedDeliveries))
            {
                try { await Task.Delay(100, hard.Token).ConfigureAwait(false); }
                catch (OperationCanceledException) { break; }
            }
            var drain = Stopwatch.GetElapsedTime(drainStart);

            // ---------------- stop ----------------
            await syncStop.CancelAsync().ConfigureAwait(false);
            await samplerStop.CancelAsync().ConfigureAwait(false);
            var allLoops = Task.WhenAll(syncTasks.Append(sampler));
            try
            {
                await allLoops.WaitAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                Log("warning: some /sync loops did not stop within 10 s of cancellation");
            }
            catch (OperationCanceledException)
            {
                // expected
            }

            PrintReport(users, rooms, active, sendPhase, drain);
            return 0;
        }

        // ================= setup =================

        private async Task<bool> CheckReachableAsync(CancellationToken ct)
        {
            var r = await _api.CallAsync("versions", HttpMethod.Get, "_matrix/client/versions", null, null,
                TimeSpan.FromSeconds(5), ct, record: false).ConfigureAwait(false);
            if (r.Ok && r.Json?["versions"] is JsonArray) return true;
            Log($"error: homeserver not reachable at {o.Url}: GET /_matrix/client/versions gave {r.Describe()}");
            return false;
        }

        private async Task<List<User>> RegisterAllAsync(CancellationToken ct)
        {
            var all = Enumerable.Range(0, o.Users).Select(i => new User(i, $"lg_{_runId}_{i}")).ToList();
            var ok = new ConcurrentBag<User>();
            var firstFailures = new ConcurrentQueue<string>();
            await Parallel.ForEachAsync(all, new ParallelOptions { MaxDegreeOfParallelism = o.SetupConcurrency, CancellationToken = ct },
                async (u, token) =>
                {
                    try
                    {
                        var (userId, accessToken) = await _api.RegisterAsync(u.Localpart, _password, o.RegistrationToken, token).ConfigureAwait(false);
                        u.UserId = userId;
                        u.Token = accessToken;
                        ok.Add(u);
                    }
                    catch (InvalidOperationException e)
                    {
                        if (firstFailures.Count < 3) firstFailures.Enqueue(e.Message);
                    }
                }).ConfigureAwait(false);
            foreach (var f in firstFailures) Log($"  {f}");
            return ok.OrderBy(u => u.Index).ToList();
        }

        private async Task<List<RoomInfo>> SetUpRoomsAsync(List<User> users, CancellationToken ct)
        {
            var roomCount = Math.Min(o.Rooms, users.Count);
            var rooms = Enumerable.Range(0, roomCount).Select(i => new RoomInfo(i)).ToList();
            for (var i = 0; i < users.Count; i++)
            {
                users[i].RoomSlot = i % roomCount;
                rooms[i % roomCount].Members.Add(users[i]);
            }

            var setupTimeout = TimeSpan.FromSeconds(60);
            var problems = new ConcurrentQueue<string>();
            await Parallel.ForEachAsync(rooms, new ParallelOptions { MaxDegreeOfParallelism = o.SetupConcurrency, CancellationToken = ct },
                async (room, token) =>
                {
                    var creator = room.Members[0];
                    var body = new JsonObject
                    {
                        ["name"] = $"loadgen {_runId} room {room.Slot}",
                        ["preset"] = "private_chat",
                    };
                    var r = await _api.CallWithRetryAsync("createRoom", HttpMethod.Post, "_matrix/client/v3/createRoom", body, creator.Token,
                        setupTimeout, token).ConfigureAwait(false);
                    var roomId = MatrixApi.Str(r.Json?["room_id"]);
                    if (!r.Ok || roomId is null)
                    {
                        problems.Enqueue($"createRoom by {creator.UserId}: {r.Describe()}");
                        return;
                    }
                    room.RoomId = roomId;
                    creator.RoomId = roomId;
                    creator.Joined = true;

                    var roomPath = $"_matrix/client/v3/rooms/{MatrixApi.Esc(roomId)}";
                    foreach (var m in room.Members.Skip(1))
                    {
                        m.RoomId = roomId;
                        var inv = await _api.CallWithRetryAsync("invite", HttpMethod.Post, $"{roomPath}/invite",
                            new JsonObject { ["user_id"] = m.UserId }, creator.Token, setupTimeout, token).ConfigureAwait(false);
                        if (!inv.Ok)
                        {
                            problems.Enqueue($"invite {m.UserId} to {roomId}: {inv.Describe()}");
                            continue;
                        }
                        var join = await _api.CallWithRetryAsync("join", HttpMethod.Post, $"{roomPath}/join",
                            new JsonObject(), m.Token, setupTimeout, token).ConfigureAwait(false);
                        if (!join.Ok)
                        {
                            problems.Enqueue($"join {m.UserId} to {roomId}: {join.Describe()}");
                            continue;
                        }
                        m.Joined = true;
                    }
                }).ConfigureAwait(false);
            foreach (var p in problems.Take(5)) Log($"  {p}");
            return rooms;
        }

        private async Task InitialSyncAllAsync(List<User> users, CancellationToken ct)
        {
            var failures = new ConcurrentQueue<string>();
            await Parallel.ForEachAsync(users, new ParallelOptions { MaxDegreeOfParallelism = o.SetupConcurrency, CancellationToken = ct },
                async (u, token) =>
                {
                    var r = await _api.CallWithRetryAsync("initial sync", HttpMethod.Get, "_matrix/client/v3/sync?timeout=0", null, u.Token,
                        TimeSpan.FromSeconds(120), token).ConfigureAwait(false);
                    var next = MatrixApi.Str(r.Json?["next_batch"]);
                    if (!r.Ok || next is null)
                    {
                        failures.Enqueue($"initial sync of {u.UserId}: {(r.Ok ? "no next_batch" : r.Describe())}");
                        return;
                    }
                    u.Since = next;
                }).ConfigureAwait(false);
            foreach (var f in failures.Take(3)) Log($"  {f}");
        }

        // ================= load =================

        private async Task SyncLoopAsync(User u, CancellationToken stop)
        {
            var prefix = $"lg {_runId} ";
            try
            {
                while (!stop.IsCancellationRequested)
                {
                    var path = $"_matrix/client/v3/sync?since={MatrixApi.Esc(u.Since!)}&timeout={(int)SyncServerTimeout.TotalMilliseconds}";
                    var r = await _api.CallAsync("sync", HttpMethod.Get, path, null, u.Token, SyncRequestTimeout, stop).ConfigureAwait(false);
                    var arrival = Stopwatch.GetTimestamp();
                    if (!r.Ok)
                    {
                        await Task.Delay(r.RetryAfter ?? TimeSpan.FromSeconds(1), stop).ConfigureAwait(false);
                        continue;
                    }
                    Interlocked.Increment(ref _syncsCompleted);
                    if (MatrixApi.Str(r.Json?["next_batch"]) is { } next) u.Since = next;

                    if (r.Json?["rooms"]?["join"] is not JsonObject joinedRooms) continue;
                    foreach (var (_, roomNode) in joinedRooms)
                    {
                        var timeline = roomNode?["timeline"];
                        if (timeline?["limited"] is JsonValue lim && lim.TryGetValue<bool>(out var limited) && limited)
                            Interlocked.Increment(ref _limitedTimelines);
                        if (timeline?["events"] is not JsonArray events) continue;
                        foreach (var ev in events)
                        {
                            if (MatrixApi.Str(ev?["type"]) != "m.room.message") continue;
                            if (MatrixApi.Str(ev?["sender"]) == u.UserId) continue;
                            var body = MatrixApi.Str(ev?["content"]?["body"]);
                            if (body is null || !body.StartsWith(prefix, StringComparison.Ordinal)) continue;
                            if (!_seenPairs.TryAdd((body, u.Index), 0))
                            {
                                Interlocked.Increment(ref _duplicateCount);
                                continue;
                            }
                            _deliveries.Enqueue(new Delivery(body, MatrixApi.Str(ev?["event_id"]) ?? "", u.Index, arrival));
                            Interlocked.Increment(ref _deliveryCount);
                        }
                    }
                }
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                // stopping
            }
        }

        private async Task SenderLoopAsync(User u, Dictionary<string, int> roomMembers, long sendEnd, CancellationToken ct)
        {
            var rnd = new Random(HashCode.Combine(_runId, u.Index));
            var roomId = u.RoomId!;
            var others = Math.Max(0, roomMembers.GetValueOrDefault(roomId) - 1);
            var roomPath = $"_matrix/client/v3/rooms/{MatrixApi.Esc(roomId)}/send/m.room.message/";
            var seq = 0;

            // Spread the first sends over one interval so users don't fire in lockstep.
            await Task.Delay(rnd.Next(o.IntervalMs), ct).ConfigureAwait(false);
            while (Stopwatch.GetTimestamp() < sendEnd && !ct.IsCancellationRequested)
            {
                seq++;
                var body = $"lg {_runId} {u.Index} {seq}";
                var txn = $"lg{_runId}.{seq}";
                var content = new JsonObject { ["msgtype"] = "m.text", ["body"] = body };
                var t0 = Stopwatch.GetTimestamp();
                Interlocked.Increment(ref _sendAttempts);
                var r = await _api.CallAsync("send", HttpMethod.Put, roomPath + MatrixApi.Esc(txn), content, u.Token,
                    TimeSpan.FromSeconds(30), ct).ConfigureAwait(false);
                var t1 = Stopwatch.GetTimestamp();
                if (r.Ok && MatrixApi.Str(r.Json?["event_id"]) is { } eventId)
                {
                    _sent[body] = new SentMessage(body, u.Index, roomId, eventId, t0, t1, others);
                    Interlocked.Add(ref _expectedDeliveries, others);
                    _sendMs.Enqueue(Stopwatch.GetElapsedTime(t0, t1).TotalMilliseconds);
                }
                else if (r.Ok)
                {
                    _api.Errors.AddOrUpdate("send 200 without event_id", 1, (_, n) => n + 1);
                }

                var wait = o.IntervalMs * (0.75 + 0.5 * rnd.NextDouble());
                var next = t0 + (long)(wait / 1000.0 * Stopwatch.Frequency);
                var delay = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), Math.Min(next, sendEnd));
                if (r.RetryAfter is { } ra && ra > delay) delay = ra;
                if (delay > TimeSpan.Zero) await Task.Delay(delay, ct).ConfigureAwait(false);
            }
        }

        private async Task SampleRssAsync(CancellationToken stop)
        {
            if (o.Pids.Count == 0) return;
            try
            {
                using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(250));
                do
                {
                    if (MatrixApi.ReadRssKb(o.Pids) is { } kb)
                    {
                        _rssSamples++;
                        if (kb > _rssPeakKb) _rssPeakKb = kb;
                    }
                }
                while (await timer.WaitForNextTickAsync(stop).ConfigureAwait(false));
            }
            catch (OperationCanceledException)
            {
                // stopping
            }
        }

        /// <summary>Deliveries whose message's send returned 200 (so they count towards the expected total).</summary>
        private long CountMatchedDeliveries() => _deliveries.Count(d => _sent.ContainsKey(d.Body));

        // ================= report =================

        private void PrintReport(List<User> users, List<RoomInfo> rooms, List<User> active, TimeSpan sendPhase, TimeSpan drain)
        {
            var sent = _sent.Values.ToList();
            var all = new List<double>();
            var fromStart = new List<double>();
            var firstPerMessage = new Dictionary<string, double>(StringComparer.Ordinal);
            var early = 0;
            var unmatched = 0;
            var wrongId = 0;
            foreach (var d in _deliveries)
            {
                if (!_sent.TryGetValue(d.Body, out var s))
                {
                    unmatched++;
                    continue;
                }
                if (d.EventId != s.EventId) wrongId++;
                fromStart.Add(Stopwatch.GetElapsedTime(s.SendStartTs, d.ArrivalTs).TotalMilliseconds);
                var ms = Stopwatch.GetElapsedTime(s.SendOkTs, d.ArrivalTs).TotalMilliseconds;
                if (d.ArrivalTs < s.SendOkTs)
                {
                    early++;
                    ms = 0; // the event reached /sync before the send's 200 did
                }
                all.Add(ms);
                if (!firstPerMessage.TryGetValue(d.Body, out var f) || ms < f) firstPerMessage[d.Body] = ms;
            }

            var expected = Interlocked.Read(ref _expectedDeliveries);
            var inv = CultureInfo.InvariantCulture;
            string Mb(long? kb) => kb is { } v && v >= 0 ? (v / 1024.0).ToString("0.0", inv) + " MB" : "n/a";

            Console.WriteLine();
            Console.WriteLine("== Conduit.LoadGen results ==");
            Line("url", o.Url.ToString());
            Line("users", $"{o.Users} requested, {users.Count} registered, {active.Count} joined and syncing");
            Line("rooms", $"{rooms.Count(r => r.RoomId is not null)} created of {o.Rooms} (members per room: {string.Join("/", rooms.Select(r => r.JoinedCount).Distinct().OrderBy(x => x))})");
            Line("duration", $"{sendPhase.TotalSeconds.ToString("0.0", inv)} s sending (requested {o.Seconds} s), {drain.TotalSeconds.ToString("0.0", inv)} s draining");
            Line("messages sent", $"{sent.Count} ok of {Interlocked.Read(ref _sendAttempts)} attempts");
            Line("events/s sent", (sent.Count / Math.Max(0.001, sendPhase.TotalSeconds)).ToString("0.0", inv));
            Line("send request (ms)", Dist(_sendMs.ToList()));
            Line("deliveries expected", expected.ToString(inv));
            Line("deliveries observed",
                $"{all.Count}" + (expected > 0 ? $" ({(100.0 * all.Count / expected).ToString("0.0", inv)} %)" : "") +
                $"; duplicates {Interlocked.Read(ref _duplicateCount)}, of failed/unknown sends {unmatched}, event_id mismatch {wrongId}, limited timelines {Interlocked.Read(ref _limitedTimelines)}");
            Line("latency all (ms)", Dist(all) + (early > 0 ? $"; {early} arrived before the send's 200 (counted as 0)" : ""));
            Line("from send start (ms)", Dist(fromStart) + "  (send request start -> /sync, all deliveries)");
            Line("latency first (ms)", Dist(firstPerMessage.Values.ToList()) + "  (first other member to see each message)");
            Line("syncs completed", Interlocked.Read(ref _syncsCompleted).ToString(inv));
            if (o.Pids.Count > 0)
                Line("server RSS", $"idle {Mb(_rssIdleKb)}, peak {Mb(_rssPeakKb)} (pids {string.Join(",", o.Pids)}, {_rssSamples} samples every 250 ms)");
            else
                Line("server RSS", "n/a (pass --pid or --pids)");
            PrintErrors();
        }

        private void PrintErrors()
        {
            if (_api is null || _api.Errors.IsEmpty)
            {
                Line("errors", "none");
                return;
            }
            Line("errors", _api.Errors.Values.Sum().ToString(CultureInfo.InvariantCulture));
            foreach (var (key, n) in _api.Errors.OrderByDescending(kv => kv.Value).ThenBy(kv => kv.Key, StringComparer.Ordinal))
                Console.WriteLine($"  {n,8}  {key}");
        }

        private static string Dist(List<double> values)
        {
            if (values.Count == 0) return "n/a (no samples)";
            values.Sort();
            double P(double p) => values[Math.Clamp((int)Math.Ceiling(p * values.Count) - 1, 0, values.Count - 1)];
            var inv = CultureInfo.InvariantCulture;
            return $"p50 {P(0.50).ToString("0.0", inv)}  p90 {P(0.90).ToString("0.0", inv)}  p99 {P(0.99).ToString("0.0", inv)}  " +
                   $"max {values[^1].ToString("0.0", inv)}  (n={values.Count})";
        }

        private static void Line(string key, string value) => Console.WriteLine($"{key + ":",-22}{value}");

        private static void Log(string message) =>
            Console.Error.WriteLine($"[{DateTime.Now.ToString("HH:mm:ss.fff", CultureInfo.InvariantCulture)}] {message}");
    }
}

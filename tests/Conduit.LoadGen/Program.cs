using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Conduit.LoadGen;
using static Conduit.LoadGen.Out;

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

return options.Scenario switch
{
    Scenario.Mixed or Scenario.Saturate => await new LoadRun(options).RunAsync().ConfigureAwait(false),
    Scenario.Federation => await new FederationRun(options).RunAsync().ConfigureAwait(false),
    Scenario.Appservice => await new AppserviceRun(options).RunAsync().ConfigureAwait(false),
    _ => await new ScenarioRun(options).RunAsync().ConfigureAwait(false),
};

namespace Conduit.LoadGen
{
    internal sealed class User(int index, string localpart)
    {
        public int Index { get; } = index;
        public string Localpart { get; } = localpart;
        public string UserId { get; set; } = "";
        public string Token { get; set; } = "";
        public string DeviceId { get; set; } = "";
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

    /// <summary>The mixed and saturate scenarios: every user syncs in a loop and sends at its own pace.</summary>
    internal sealed class LoadRun(Options o)
    {
        private static readonly TimeSpan SyncServerTimeout = TimeSpan.FromMilliseconds(30_000);
        private static readonly TimeSpan SyncRequestTimeout = SyncServerTimeout + TimeSpan.FromSeconds(15);

        private MatrixApi _api = null!;
        private Setup _setup = null!;
        private string _runId = "";

        private readonly ConcurrentDictionary<string, SentMessage> _sent = new(StringComparer.Ordinal);
        private readonly ConcurrentQueue<Delivery> _deliveries = new();
        private readonly ConcurrentDictionary<(string Body, int Receiver), byte> _seenPairs = new();
        private readonly ConcurrentQueue<double> _sendMs = new();
        private long _deliveryCount;
        private long _duplicateCount;
        private long _limitedTimelines;
        private long _syncsCompleted;
        private long _sendAttempts;
        private long _warmupSends;
        private long _expectedDeliveries;

        private long? _rssIdleKb;

        public async Task<int> RunAsync()
        {
            using var http = MatrixApi.CreateHttpClient(o.Users);
            _api = new MatrixApi(http, o.Url);
            _setup = new Setup(_api, o);
            _runId = _setup.RunId;

            // Hard upper bound for the whole run, whatever the server does.
            var hardLimit = TimeSpan.FromSeconds(o.SetupTimeoutSeconds + o.WarmupSeconds + o.Seconds + o.DrainSeconds + 90);
            using var hard = new CancellationTokenSource(hardLimit);
            Console.CancelKeyPress += (_, e) =>
            {
                e.Cancel = true;
                Log("interrupted: stopping");
                try { hard.Cancel(); } catch (ObjectDisposedException) { }
            };

            Log($"run {_runId} ({Options.ScenarioName(o.Scenario)}): {o.Users} users, {o.Rooms} rooms, {o.Seconds} s at one message per " +
                (o.IntervalMs == 0 ? "user back to back" : $"~{o.IntervalMs} ms per user") + $", target {o.Url}");
            if (o.Pids.Count > 0 && Rss.ReadKb(o.Pids) is null)
                Log($"warning: cannot read VmRSS of pid(s) {string.Join(",", o.Pids)}; RSS will be reported as n/a");

            // ---------------- setup ----------------
            if (!await _setup.CheckReachableAsync(hard.Token).ConfigureAwait(false)) return 1;

            List<User> users;
            List<RoomInfo> rooms;
            using (var setup = CancellationTokenSource.CreateLinkedTokenSource(hard.Token))
            {
                setup.CancelAfter(TimeSpan.FromSeconds(o.SetupTimeoutSeconds));
                var phase = "registration";
                try
                {
                    var sw = Stopwatch.StartNew();
                    users = await _setup.RegisterAsync(o.Users, setup.Token).ConfigureAwait(false);
                    Log($"registered {users.Count}/{o.Users} users in {sw.Elapsed.TotalSeconds:0.0} s");
                    if (users.Count < 2)
                    {
                        Log("error: fewer than 2 users registered; nothing to measure");
                        PrintErrors(_api);
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
                        PrintErrors(_api);
                        return 1;
                    }

                    phase = "initial sync";
                    sw.Restart();
                    await _setup.InitialSyncAsync(users.Where(u => u.Joined).ToList(), setup.Token).ConfigureAwait(false);
                    Log($"initial /sync done for {users.Count(u => u.Since is not null)} users in {sw.Elapsed.TotalSeconds:0.0} s");
                }
                catch (OperationCanceledException) when (!hard.IsCancellationRequested)
                {
                    Log($"error: setup did not finish within --setup-timeout-seconds {o.SetupTimeoutSeconds} (during {phase})");
                    PrintErrors(_api);
                    return 1;
                }
                catch (OperationCanceledException)
                {
                    Log($"error: run stopped during {phase}");
                    PrintErrors(_api);
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
                _rssIdleKb = Rss.ReadKb(o.Pids);
            }

            // ---------------- load ----------------
            using var syncStop = CancellationTokenSource.CreateLinkedTokenSource(hard.Token);
            var sampler = new RssSampler(o.Pids, TimeSpan.FromMilliseconds(250), hard.Token);

            var syncTasks = active.Select(u => SyncLoopAsync(u, syncStop.Token)).ToList();
            Log($"load: {active.Count} users syncing and sending for {o.WarmupSeconds} s of warm-up + {o.Seconds} s");

            // Sends started during the warm-up are not counted: their bodies do not carry the run's prefix, so the
            // /sync loops ignore them too.
            var measureStart = Stopwatch.GetTimestamp() + (long)(o.WarmupSeconds * (double)Stopwatch.Frequency);
            var sendEnd = measureStart + (long)(o.Seconds * (double)Stopwatch.Frequency);
            var senderTasks = active.Select(u => SenderLoopAsync(u, roomMembers, measureStart, sendEnd, hard.Token)).ToList();
            Dictionary<int, double?>? cpuStart = null, cpuEnd = null;
            try
            {
                var untilMeasured = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), measureStart);
                if (untilMeasured > TimeSpan.Zero) await Task.Delay(untilMeasured, hard.Token).ConfigureAwait(false);
                cpuStart = Cpu.ReadEach(o.Pids);
                await Task.WhenAll(senderTasks).ConfigureAwait(false);
                cpuEnd = Cpu.ReadEach(o.Pids);
            }
            catch (OperationCanceledException)
            {
                Log("send phase cut short");
            }
            var sendPhase = Stopwatch.GetElapsedTime(measureStart);

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
            await sampler.DisposeAsync().ConfigureAwait(false);
            var allLoops = Task.WhenAll(syncTasks);
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

            PrintReport(users, rooms, active, sendPhase, drain, sampler, cpuStart, cpuEnd);
            return 0;
        }

        // ================= setup =================

        private async Task<List<RoomInfo>> SetUpRoomsAsync(List<User> users, CancellationToken ct)
        {
            var roomCount = Math.Min(o.Rooms, users.Count);
            var rooms = Enumerable.Range(0, roomCount).Select(i => new RoomInfo(i)).ToList();
            for (var i = 0; i < users.Count; i++)
            {
                users[i].RoomSlot = i % roomCount;
                rooms[i % roomCount].Members.Add(users[i]);
            }

            var problems = new ConcurrentQueue<string>();
            await Parallel.ForEachAsync(rooms, new ParallelOptions { MaxDegreeOfParallelism = o.SetupConcurrency, CancellationToken = ct },
                async (room, token) =>
                {
                    var (roomId, joined) = await _setup.CreateRoomAsync(room.Members[0], room.Members.Skip(1),
                        $"loadgen {_runId} room {room.Slot}", problems, token).ConfigureAwait(false);
                    room.RoomId = roomId;
                    foreach (var m in room.Members) m.RoomId = roomId;
                    foreach (var m in joined) m.Joined = true;
                }).ConfigureAwait(false);
            foreach (var p in problems.Take(5)) Log($"  {p}");
            return rooms;
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

        /// <summary>--ack-log: acknowledged sends, written as they are acknowledged (flushed each line).</summary>
        private readonly StreamWriter? _ackLog = o.AckLogPath is { } ack ? new StreamWriter(ack, append: true) : null;

        private async Task SenderLoopAsync(User u, Dictionary<string, int> roomMembers, long measureStart, long sendEnd, CancellationToken ct)
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
                var t0 = Stopwatch.GetTimestamp();
                var warmUp = t0 < measureStart;
                var body = $"{(warmUp ? "lgw" : "lg")} {_runId} {u.Index} {seq}";
                var txn = $"lg{_runId}.{seq}";
                var content = new JsonObject { ["msgtype"] = "m.text", ["body"] = body };
                if (warmUp) Interlocked.Increment(ref _warmupSends);
                else Interlocked.Increment(ref _sendAttempts);
                var r = await _api.CallAsync("send", HttpMethod.Put, roomPath + MatrixApi.Esc(txn), content, u.Token,
                    TimeSpan.FromSeconds(30), ct).ConfigureAwait(false);
                var t1 = Stopwatch.GetTimestamp();
                var eventId = r.Ok ? MatrixApi.Str(r.Json?["event_id"]) : null;
                if (eventId is not null && _ackLog is not null)
                    lock (_ackLog)
                    {
                        _ackLog.WriteLine($"{DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()}\t{roomId}\t{eventId}\t{u.Token}");
                        _ackLog.Flush();
                    }
                if (!warmUp && eventId is not null)
                {
                    _sent[body] = new SentMessage(body, u.Index, roomId, eventId, t0, t1, others);
                    Interlocked.Add(ref _expectedDeliveries, others);
                    _sendMs.Enqueue(Stopwatch.GetElapsedTime(t0, t1).TotalMilliseconds);
                }
                else if (!warmUp && r.Ok)
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

        /// <summary>Deliveries whose message's send returned 200 (so they count towards the expected total).</summary>
        private long CountMatchedDeliveries() => _deliveries.Count(d => _sent.ContainsKey(d.Body));

        // ================= report =================

        private void PrintReport(List<User> users, List<RoomInfo> rooms, List<User> active, TimeSpan sendPhase, TimeSpan drain, RssSampler rss,
            Dictionary<int, double?>? cpuStart, Dictionary<int, double?>? cpuEnd)
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
            var sendMs = _sendMs.ToList();
            var eventsPerSecond = sent.Count / Math.Max(0.001, sendPhase.TotalSeconds);

            Console.WriteLine();
            Console.WriteLine("== Conduit.LoadGen results ==");
            Line("scenario", Options.ScenarioName(o.Scenario));
            Line("url", o.Url.ToString());
            Line("users", $"{o.Users} requested, {users.Count} registered, {active.Count} joined and syncing");
            Line("rooms", $"{rooms.Count(r => r.RoomId is not null)} created of {o.Rooms} (members per room: {string.Join("/", rooms.Select(r => r.JoinedCount).Distinct().OrderBy(x => x))})");
            Line("duration", $"{sendPhase.TotalSeconds.ToString("0.0", inv)} s sending (requested {o.Seconds} s)" +
                (o.WarmupSeconds > 0 ? $" after {o.WarmupSeconds} s of warm-up ({Interlocked.Read(ref _warmupSends)} sends, not counted)" : "") +
                $", {drain.TotalSeconds.ToString("0.0", inv)} s draining");
            Line("messages sent", $"{sent.Count} ok of {Interlocked.Read(ref _sendAttempts)} attempts");
            Line("events/s sent", eventsPerSecond.ToString("0.0", inv));
            Line("send request (ms)", Dist(sendMs));
            Line("deliveries expected", expected.ToString(inv));
            Line("deliveries observed",
                $"{all.Count}" + (expected > 0 ? $" ({(100.0 * all.Count / expected).ToString("0.0", inv)} %)" : "") +
                $"; duplicates {Interlocked.Read(ref _duplicateCount)}, of failed/unknown sends {unmatched}, event_id mismatch {wrongId}, limited timelines {Interlocked.Read(ref _limitedTimelines)}");
            Line("latency all (ms)", Dist(all) + (early > 0 ? $"; {early} arrived before the send's 200 (counted as 0)" : ""));
            Line("from send start (ms)", Dist(fromStart) + "  (send request start -> /sync, all deliveries)");
            Line("latency first (ms)", Dist(firstPerMessage.Values.ToList()) + "  (first other member to see each message)");
            Line("syncs completed", Interlocked.Read(ref _syncsCompleted).ToString(inv));
            var serverCpu = cpuStart is not null && cpuEnd is not null ? Cpu.Used(cpuStart, cpuEnd) : null;
            var cpuPerEvent = serverCpu is { } cpu && sent.Count > 0 ? cpu * 1000 / sent.Count : (double?)null;
            Line("server CPU", cpuPerEvent is { } c
                ? $"{serverCpu!.Value.ToString("0.0", inv)} s while sending: {c.ToString("0.00", inv)} ms per event sent (sends and their /sync deliveries)" +
                  (o.Pids.Count > 1 ? $"; {Cpu.PerProcess(o, cpuStart!, cpuEnd!)}" : "")
                : "n/a (pass --pid or --pids)");
            if (o.Pids.Count > 0)
                Line("server RSS", $"idle {Rss.Mb(_rssIdleKb)}, peak {Rss.Mb(rss.PeakKb)} (pids {string.Join(",", o.Pids)}, {rss.Samples} samples every 250 ms)");
            else
                Line("server RSS", "n/a (pass --pid or --pids)");
            PrintErrors(_api);

            var results = new Results();
            results.Add("users x rooms", $"{active.Count}x{rooms.Count(r => r.RoomId is not null)}");
            results.Add("events/s", eventsPerSecond);
            results.Add("send p50 ms", Percentile(sendMs, 0.50));
            results.Add("send p99 ms", Percentile(sendMs, 0.99));
            results.Add("send->sync p50 ms", Percentile(all, 0.50));
            results.Add("send->sync p99 ms", Percentile(all, 0.99));
            results.Add("delivered %", expected > 0 ? 100.0 * all.Count / expected : null);
            results.Add("CPU ms/event", cpuPerEvent, "0.00");
            results.Add("RSS idle MB", Rss.MbValue(_rssIdleKb));
            results.Add("RSS peak MB", Rss.MbValue(rss.PeakKb));
            results.AddRequestCounts(_api);
            results.Save(o.ResultsPath);
        }
    }
}

using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json.Nodes;
using static Conduit.LoadGen.Out;

namespace Conduit.LoadGen;

/// <summary>
/// The scenarios that measure one thing each: write throughput into one room and across rooms, the first /sync of a
/// user in many rooms, idle memory, and the E2EE endpoints (E2eeScenario.cs). Apart from e2ee's to-device figure, none
/// of them runs /sync loops while writing: they time the write path alone (delivery to syncing clients is what mixed
/// and saturate measure).
/// </summary>
internal sealed partial class ScenarioRun(Options o)
{
    static readonly TimeSpan SendTimeout = TimeSpan.FromSeconds(30);
    /// <summary>How long after the big /sync the server's RSS is read again, to see whether memory is given back.</summary>
    static readonly TimeSpan AfterSyncDelay = TimeSpan.FromSeconds(5);

    MatrixApi _api = null!;
    HttpClient _http = null!;
    Setup _setup = null!;
    readonly Results _results = new();
    int _seq;

    public async Task<int> RunAsync()
    {
        using var http = MatrixApi.CreateHttpClient(Math.Max(o.Users, o.Senders));
        _http = http;
        _api = new MatrixApi(http, o.Url);
        _setup = new Setup(_api, o);

        // Hard upper bound for the whole run: setup, the bounded phases (two warm-ups and 2 x --repeat timed ones at
        // most; e2ee: its three long setup steps for --users (registration, key uploads, rooms), two warm-ups and
        // 3 x --repeat + 1 timed phases, each to-device run up to --seconds + --drain-seconds more; media: six phases and
        // a wait for idle CPU of at most 2 minutes per run, and a warm-up of five phases), and slack.
        var bound = o.Scenario switch
        {
            Scenario.E2ee => 3 * o.SetupTimeoutSeconds + (3 * o.Repeat + 3) * o.PhaseTimeoutSeconds + (o.Repeat + 1) * (o.Seconds + o.DrainSeconds),
            Scenario.Media => o.SetupTimeoutSeconds + (6 * o.Repeat + 5) * o.PhaseTimeoutSeconds + (o.Repeat + 1) * 120,
            // lazy-sync: the setup timeout bounds each setup step, the longest being the joins; then two waits for an
            // idle server, --repeat timed syncs, one without lazy loading, the checks of two rooms' members.
            Scenario.LazySync => 2 * o.SetupTimeoutSeconds + (o.Repeat + 3) * o.PhaseTimeoutSeconds + 240,
            Scenario.SyncLoad => o.SetupTimeoutSeconds + o.WarmupSeconds + o.Seconds + o.DrainSeconds + 30,
            // sliding-sync: setup, an idle wait, --repeat first responses, the live phase (its timeout + 0.1 s a send).
            Scenario.SlidingSync => o.SetupTimeoutSeconds + (o.Repeat + 3) * o.PhaseTimeoutSeconds + o.Events / 10 + 60,
            _ => o.SetupTimeoutSeconds + (2 * o.Repeat + 2) * o.PhaseTimeoutSeconds,
        };
        using var hard = new CancellationTokenSource(TimeSpan.FromSeconds(bound + 90));
        Console.CancelKeyPress += (_, e) =>
        {
            e.Cancel = true;
            Log("interrupted: stopping");
            try { hard.Cancel(); } catch (ObjectDisposedException) { }
        };

        var name = Options.ScenarioName(o.Scenario);
        Log($"run {_setup.RunId} ({name}), target {o.Url}");
        if (o.Pids.Count > 0 && Rss.ReadKb(o.Pids) is null)
            Log($"warning: cannot read VmRSS of pid(s) {string.Join(",", o.Pids)}; RSS will be reported as n/a");
        if (!await _setup.CheckReachableAsync(hard.Token).ConfigureAwait(false)) return 1;

        var report = new List<(string Key, string Value)>();
        int rc;
        try
        {
            rc = o.Scenario switch
            {
                Scenario.OneRoom => await OneRoomAsync(report, hard.Token).ConfigureAwait(false),
                Scenario.RoomsParallel => await RoomsParallelAsync(report, hard.Token).ConfigureAwait(false),
                Scenario.BigSync => await BigSyncAsync(report, hard.Token).ConfigureAwait(false),
                Scenario.Idle => await IdleAsync(report, hard.Token).ConfigureAwait(false),
                Scenario.E2ee => await E2eeAsync(report, hard.Token).ConfigureAwait(false),
                Scenario.Media => await MediaAsync(report, hard.Token).ConfigureAwait(false),
                Scenario.LazySync => await LazySyncAsync(report, hard.Token).ConfigureAwait(false),
                Scenario.SyncLoad => await SyncLoadAsync(report, hard.Token).ConfigureAwait(false),
                Scenario.SlidingSync => await SlidingSyncAsync(report, hard.Token).ConfigureAwait(false),
                _ => throw new InvalidOperationException($"{name} is run by LoadRun"),
            };
        }
        catch (OperationCanceledException)
        {
            Log("error: run stopped (time limit or Ctrl-C)");
            rc = 1;
        }

        Console.WriteLine();
        Console.WriteLine("== Conduit.LoadGen results ==");
        Line("scenario", name);
        Line("url", o.Url.ToString());
        foreach (var (key, value) in report) Line(key, value);
        PrintErrors(_api);
        _results.AddRequestCounts(_api);
        _results.Save(o.ResultsPath);
        return rc;
    }

    // ================= one-room =================

    async Task<int> OneRoomAsync(List<(string, string)> report, CancellationToken hard)
    {
        var users = await RegisterAsync(o.Users, o.Senders, hard).ConfigureAwait(false);
        if (users is null) return 1;
        var problems = new ConcurrentQueue<string>();
        var (roomId, joined) = await InSetupAsync(ct => _setup.CreateRoomAsync(users[0], users.Skip(1), $"loadgen {_setup.RunId} one-room", problems, ct), hard)
            .ConfigureAwait(false);
        foreach (var p in problems.Take(5)) Log($"  {p}");
        if (roomId is null || joined.Count < o.Senders)
        {
            Log($"error: room setup failed ({joined.Count} of {o.Senders} senders joined)");
            return 1;
        }
        var senders = joined.Take(o.Senders).Select(u => (u, roomId)).ToList();
        report.Add(("room", $"1 room, {joined.Count} members"));

        await CompareAsync(report, "sequential", [senders[0]], $"{o.Senders}-way", senders, $"{o.Senders}-way / sequential", hard)
            .ConfigureAwait(false);
        return 0;
    }

    // ================= rooms-parallel =================

    async Task<int> RoomsParallelAsync(List<(string, string)> report, CancellationToken hard)
    {
        var users = await RegisterAsync(o.Users, o.Rooms, hard).ConfigureAwait(false);
        if (users is null) return 1;

        // Room 0 is the one shared room; room i (1..R) is written by sender i-1. Every room has every user as a
        // member, so the two phases differ only in how many rooms the same senders write.
        var problems = new ConcurrentQueue<string>();
        var roomIds = new string?[o.Rooms + 1];
        var sw = Stopwatch.StartNew();
        await InSetupAsync(ct => Parallel.ForEachAsync(Enumerable.Range(0, o.Rooms + 1),
            new ParallelOptions { MaxDegreeOfParallelism = o.SetupConcurrency, CancellationToken = ct },
            async (i, token) =>
            {
                var creator = users[i == 0 ? 0 : i - 1];
                var (roomId, joined) = await _setup.CreateRoomAsync(creator, users.Where(u => u != creator),
                    $"loadgen {_setup.RunId} room {i}", problems, token).ConfigureAwait(false);
                if (joined.Count == users.Count) roomIds[i] = roomId;
            }), hard).ConfigureAwait(false);
        foreach (var p in problems.Take(5)) Log($"  {p}");
        if (roomIds.Any(r => r is null))
        {
            Log($"error: room setup failed ({roomIds.Count(r => r is not null)} of {o.Rooms + 1} rooms with every member)");
            return 1;
        }
        Log($"set up {o.Rooms + 1} rooms of {users.Count} members in {sw.Elapsed.TotalSeconds:0.0} s");
        report.Add(("rooms", $"{o.Rooms} + 1 shared, {users.Count} members each"));

        var senders = users.Take(o.Rooms).ToList();
        var oneRoom = senders.Select(u => (u, roomIds[0]!)).ToList();
        var ownRooms = senders.Select((u, i) => (u, roomIds[i + 1]!)).ToList();

        await CompareAsync(report, $"1 room, {o.Rooms} senders", oneRoom, $"{o.Rooms} rooms, {o.Rooms} senders", ownRooms,
            $"{o.Rooms} rooms / 1 room", hard).ConfigureAwait(false);
        return 0;
    }

    // ================= big-sync =================

    async Task<int> BigSyncAsync(List<(string, string)> report, CancellationToken hard)
    {
        var users = await RegisterAsync(1, 1, hard).ConfigureAwait(false);
        if (users is null) return 1;
        var user = users[0];

        // The user creates every room itself: one createRoom each, a few at a time.
        var problems = new ConcurrentQueue<string>();
        var created = 0;
        var sw = Stopwatch.StartNew();
        var progressStep = Math.Max(1, o.Rooms / 10);
        await InSetupAsync(ct => Parallel.ForEachAsync(Enumerable.Range(0, o.Rooms),
            new ParallelOptions { MaxDegreeOfParallelism = o.SetupConcurrency, CancellationToken = ct },
            async (_, token) =>
            {
                var (roomId, _) = await _setup.CreateRoomAsync(user, [], "", problems, token).ConfigureAwait(false);
                if (roomId is not null && Interlocked.Increment(ref created) % progressStep == 0)
                    Log($"  {created}/{o.Rooms} rooms created, {created / sw.Elapsed.TotalSeconds:0} rooms/s");
            }), hard).ConfigureAwait(false);
        var createTime = sw.Elapsed;
        foreach (var p in problems.Take(5)) Log($"  {p}");
        Log($"created {created}/{o.Rooms} rooms in {createTime.TotalSeconds:0.0} s");
        report.Add(("rooms created", $"{created} of {o.Rooms} in {F(createTime.TotalSeconds)} s ({F(created / createTime.TotalSeconds)} rooms/s, concurrency {o.SetupConcurrency})"));
        _results.Add("rooms created", created, "0");
        _results.Add("createRoom/s", created / createTime.TotalSeconds);

        await Task.Delay(TimeSpan.FromSeconds(2), hard).ConfigureAwait(false);
        var before = Rss.ReadKb(o.Pids);
        var beforeEach = Rss.PerProcess(o);

        ApiResult r;
        Dictionary<int, double?> cpu0, cpu1;
        long? after;
        string afterEach;
        long? peak;
        await using (var sampler = new RssSampler(o.Pids, TimeSpan.FromMilliseconds(50), hard))
        {
            cpu0 = Cpu.ReadEach(o.Pids);
            r = await _api.CallAsync("big sync", HttpMethod.Get, "_matrix/client/v3/sync?timeout=0", null, user.Token,
                TimeSpan.FromSeconds(o.PhaseTimeoutSeconds), hard).ConfigureAwait(false);
            cpu1 = Cpu.ReadEach(o.Pids);
            after = Rss.ReadKb(o.Pids);
            afterEach = Rss.PerProcess(o);
            peak = sampler.PeakKb;
        }
        peak = new[] { peak, before, after }.Max();
        var rooms = (r.Json?["rooms"]?["join"] as JsonObject)?.Count ?? 0;
        Log($"first /sync: {r.Describe()} in {r.Elapsed.TotalSeconds:0.00} s, {r.Bytes / 1e6:0.0} MB, {rooms} joined rooms");

        await Task.Delay(AfterSyncDelay, hard).ConfigureAwait(false);
        var later = Rss.ReadKb(o.Pids);
        var laterEach = Rss.PerProcess(o);

        // The next syncs of the same user: nothing changed, but every room is looked at. Median of three.
        var nextMs = new List<double>();
        string? nextProblem = null;
        var since = MatrixApi.Str(r.Json?["next_batch"]);
        for (var i = 0; i < 3 && since is not null && nextProblem is null; i++)
        {
            var n = await _api.CallAsync("incremental sync", HttpMethod.Get, $"_matrix/client/v3/sync?timeout=0&since={MatrixApi.Esc(since)}",
                null, user.Token, TimeSpan.FromSeconds(o.PhaseTimeoutSeconds), hard).ConfigureAwait(false);
            if (n.Ok) nextMs.Add(n.Elapsed.TotalMilliseconds);
            else nextProblem = n.Describe();
            since = MatrixApi.Str(n.Json?["next_batch"]) ?? since;
        }
        var nextMedian = Percentile(nextMs, 0.5);

        report.Add(("first /sync", r.Ok
            ? $"{F(r.Elapsed.TotalSeconds, "0.00")} s, {F(r.Bytes / 1e6, "0.00")} MB, {rooms} joined rooms"
            : r.Describe()));
        var syncCpu = Cpu.Used(cpu0, cpu1);
        report.Add(("first /sync CPU", syncCpu is { } c ? $"{F(c, "0.00")} s" + (o.Pids.Count > 1 ? $" ({Cpu.PerProcess(o, cpu0, cpu1)})" : "") : "n/a"));
        report.Add(("next /sync", nextProblem ?? (nextMedian is { } nm ? $"{F(nm)} ms (median of {string.Join(", ", nextMs.Select(x => F(x)))}; nothing new)" : "n/a")));
        report.Add(("server RSS before", $"{Rss.Mb(before)} ({beforeEach})"));
        report.Add(("server RSS peak", $"{Rss.Mb(peak)} (sampled every 50 ms during the /sync)"));
        report.Add(("server RSS after", $"{Rss.Mb(after)} ({afterEach})"));
        report.Add(("server RSS 5 s later", $"{Rss.Mb(later)} ({laterEach})"));
        _results.Add("first /sync s", r.Ok ? r.Elapsed.TotalSeconds : null, "0.00");
        _results.Add("first /sync MB", r.Ok ? r.Bytes / 1e6 : null, "0.00");
        _results.Add("rooms in /sync", rooms, "0");
        _results.Add("first /sync CPU s", syncCpu, "0.00");
        _results.Add("next /sync ms", nextMedian);
        _results.Add("RSS before MB", Rss.MbValue(before));
        _results.Add("RSS peak MB", Rss.MbValue(peak));
        _results.Add("RSS after MB", Rss.MbValue(after));
        _results.Add("RSS 5 s later MB", Rss.MbValue(later));
        return r.Ok && rooms == created ? 0 : 1;
    }

    // ================= idle =================

    async Task<int> IdleAsync(List<(string, string)> report, CancellationToken hard)
    {
        var start = Rss.ReadKb(o.Pids);
        var startEach = Rss.PerProcess(o);
        var users = await RegisterAsync(1, 1, hard).ConfigureAwait(false);
        if (users is null) return 1;
        await InSetupAsync(ct => _setup.InitialSyncAsync(users, ct), hard).ConfigureAwait(false);
        if (users[0].Since is null) return 1;
        await Task.Delay(TimeSpan.FromSeconds(3), hard).ConfigureAwait(false);
        var idle = Rss.ReadKb(o.Pids);
        var idleEach = Rss.PerProcess(o);
        // Past the server's settling (MemoryTrimmer: a collection and a trim of the C heap 5 s after it listens, and a
        // trim within 5-10 s of the server turning quiet after work).
        await Task.Delay(TimeSpan.FromSeconds(7), hard).ConfigureAwait(false);
        var settled = Rss.ReadKb(o.Pids);
        var settledEach = Rss.PerProcess(o);
        // Then some use, as one client's first minutes after the start: a room created, ten messages sent, an
        // incremental /sync; what stays resident 10 s later is the idle server's working set (the settle handed back
        // the pages of code only the start ran, and this reads back what requests run).
        var problems = new ConcurrentQueue<string>();
        var (roomId, _) = await InSetupAsync(ct => _setup.CreateRoomAsync(users[0], [], "", problems, ct), hard).ConfigureAwait(false);
        if (roomId is null)
        {
            foreach (var p in problems.Take(3)) Log($"  {p}");
            return 1;
        }
        for (var i = 0; i < 10; i++)
        {
            var sent = await _api.CallAsync("send", HttpMethod.Put,
                $"_matrix/client/v3/rooms/{MatrixApi.Esc(roomId)}/send/m.room.message/idle-{_setup.RunId}-{i}",
                new JsonObject { ["msgtype"] = "m.text", ["body"] = $"idle {i}" }, users[0].Token, TimeSpan.FromSeconds(30), hard).ConfigureAwait(false);
            if (!sent.Ok)
            {
                Log($"error: send: {sent.Describe()}");
                return 1;
            }
        }
        var synced = await _api.CallAsync("sync", HttpMethod.Get, $"_matrix/client/v3/sync?timeout=0&since={MatrixApi.Esc(users[0].Since!)}",
            null, users[0].Token, TimeSpan.FromSeconds(30), hard).ConfigureAwait(false);
        if (!synced.Ok)
        {
            Log($"error: sync: {synced.Describe()}");
            return 1;
        }
        await Task.Delay(TimeSpan.FromSeconds(10), hard).ConfigureAwait(false);
        var used = Rss.ReadKb(o.Pids);
        report.Add(("server RSS at start", $"{Rss.Mb(start)} ({startEach})"));
        report.Add(("server RSS idle", $"{Rss.Mb(idle)} ({idleEach}), 3 s after one registration and one /sync"));
        report.Add(("server RSS settled", $"{Rss.Mb(settled)} ({settledEach}), 10 s after them"));
        report.Add(("server RSS after use", $"{Rss.Mb(used)} ({Rss.PerProcess(o)}), 10 s after a createRoom, 10 sends and a /sync"));
        _results.Add("RSS at start MB", Rss.MbValue(start));
        _results.Add("RSS idle MB", Rss.MbValue(idle));
        _results.Add("RSS settled MB", Rss.MbValue(settled));
        _results.Add("RSS after use MB", Rss.MbValue(used));
        return 0;
    }

    // ================= helpers =================

    /// <summary>Runs a setup step within --setup-timeout-seconds (an expired setup stops the run).</summary>
    async Task<T> InSetupAsync<T>(Func<CancellationToken, Task<T>> step, CancellationToken hard)
    {
        using var setup = CancellationTokenSource.CreateLinkedTokenSource(hard);
        setup.CancelAfter(TimeSpan.FromSeconds(o.SetupTimeoutSeconds));
        return await step(setup.Token).ConfigureAwait(false);
    }

    async Task InSetupAsync(Func<CancellationToken, Task> step, CancellationToken hard) =>
        await InSetupAsync(async ct => { await step(ct).ConfigureAwait(false); return 0; }, hard).ConfigureAwait(false);

    /// <summary>
    /// Awaits a timed phase's workers; true when the phase's timeout cut them short (logged), false when they finished.
    /// Stopping the whole run (<paramref name="hard"/>) is not caught.
    /// </summary>
    async Task<bool> CutShortAsync(Task workers, string label, CancellationToken hard)
    {
        try
        {
            await workers.ConfigureAwait(false);
            return false;
        }
        catch (OperationCanceledException) when (!hard.IsCancellationRequested)
        {
            Log($"{label}: cut short after --phase-timeout-seconds {o.PhaseTimeoutSeconds}");
            return true;
        }
    }

    /// <summary>A timed phase: linked to the whole run, cut after --phase-timeout-seconds (+ <paramref name="extra"/>).</summary>
    CancellationTokenSource Phase(CancellationToken hard, TimeSpan extra = default)
    {
        var phase = CancellationTokenSource.CreateLinkedTokenSource(hard);
        phase.CancelAfter(TimeSpan.FromSeconds(o.PhaseTimeoutSeconds) + extra);
        return phase;
    }

    /// <summary>
    /// Public rooms (so others join without an invite) created by <paramref name="creator"/>, <paramref name="concurrency"/>
    /// at a time, named "loadgen RUN LABEL i"; null (the failures logged) unless all were created.
    /// </summary>
    async Task<string[]?> CreatePublicRoomsAsync(User creator, int count, int concurrency, string label, CancellationToken hard)
    {
        var problems = new ConcurrentQueue<string>();
        var roomIds = new string?[count];
        var sw = Stopwatch.StartNew();
        var created = 0;
        var progressStep = Math.Max(1, count / 5);
        await InSetupAsync(ct => Parallel.ForEachAsync(Enumerable.Range(0, count),
            new ParallelOptions { MaxDegreeOfParallelism = concurrency, CancellationToken = ct },
            async (i, token) =>
            {
                var body = new JsonObject { ["preset"] = "public_chat", ["name"] = $"loadgen {_setup.RunId} {label} {i}" };
                var r = await _api.CallWithRetryAsync("createRoom", HttpMethod.Post, "_matrix/client/v3/createRoom", body, creator.Token,
                    TimeSpan.FromSeconds(60), token).ConfigureAwait(false);
                roomIds[i] = MatrixApi.Str(r.Json?["room_id"]);
                if (roomIds[i] is null) problems.Enqueue($"createRoom: {r.Describe()}");
                else if (Interlocked.Increment(ref created) % progressStep == 0 && count >= 100)
                    Log($"  {created}/{count} rooms created, {created / sw.Elapsed.TotalSeconds:0} rooms/s");
            }), hard).ConfigureAwait(false);
        foreach (var p in problems.Take(5)) Log($"  {p}");
        if (roomIds.Any(r => r is null))
        {
            Log($"error: {roomIds.Count(r => r is null)} of {count} rooms not created");
            return null;
        }
        Log($"created {count} rooms in {sw.Elapsed.TotalSeconds:0.0} s");
        return roomIds!;
    }

    /// <summary>Each user joins its room, --setup-concurrency at a time; false (the first failures logged) unless all did.</summary>
    async Task<bool> JoinAllAsync(IEnumerable<(User User, string RoomId)> joins, CancellationToken hard)
    {
        var failed = 0;
        await InSetupAsync(ct => Parallel.ForEachAsync(joins, new ParallelOptions { MaxDegreeOfParallelism = o.SetupConcurrency, CancellationToken = ct },
            async (pair, token) =>
            {
                var r = await _api.CallWithRetryAsync("join", HttpMethod.Post, $"_matrix/client/v3/join/{MatrixApi.Esc(pair.RoomId)}", new JsonObject(),
                    pair.User.Token, TimeSpan.FromSeconds(60), token).ConfigureAwait(false);
                if (!r.Ok && Interlocked.Increment(ref failed) <= 3) Log($"  join {pair.User.UserId}: {r.Describe()}");
            }), hard).ConfigureAwait(false);
        if (failed > 0) Log($"error: {failed} joins failed");
        return failed == 0;
    }

    async Task<List<User>?> RegisterAsync(int count, int needed, CancellationToken hard)
    {
        var sw = Stopwatch.StartNew();
        var users = await InSetupAsync(ct => _setup.RegisterAsync(count, ct), hard).ConfigureAwait(false);
        Log($"registered {users.Count}/{count} users in {sw.Elapsed.TotalSeconds:0.0} s");
        if (users.Count >= needed) return users;
        Log($"error: {users.Count} users registered, {needed} needed");
        return null;
    }

    /// <summary>
    /// Untimed sends shaped like the timed phases, so that neither phase pays for the server's JIT warm-up (a cold
    /// split deployment sends several times slower than a warm one); then a pause for background tier-1 compiles.
    /// </summary>
    async Task WarmUpAsync(List<(User, string)> first, List<(User, string)> second, CancellationToken hard)
    {
        if (o.Warmup == 0) return;
        var a = await BurstAsync("warm-up", first, hard, o.Warmup).ConfigureAwait(false);
        var b = await BurstAsync("warm-up", second, hard, o.Warmup).ConfigureAwait(false);
        Log($"warm-up: {a.Ok + b.Ok} sends, {a.EventsPerSecond:0} and {b.EventsPerSecond:0} events/s");
        await Task.Delay(TimeSpan.FromSeconds(1), hard).ConfigureAwait(false);
    }

    sealed record Burst(string Label, int Senders, int Ok, int Attempts, TimeSpan Wall, List<double> SendMs, bool CutShort, double? CpuMsPerEvent)
    {
        public double EventsPerSecond => Ok / Math.Max(0.001, Wall.TotalSeconds);

        /// <summary>events/s of every repetition, when this is the median of several.</summary>
        public IReadOnlyList<double> Runs { get; init; } = [];
    }

    /// <summary>
    /// Two send patterns A and B after a warm-up of both, alternated --repeat times (A B A B ...) so that drift in the
    /// machine's load touches both alike; each is reported by its median run (by events/s), then B's events/s over A's.
    /// </summary>
    async Task CompareAsync(List<(string, string)> report, string labelA, List<(User, string)> a, string labelB, List<(User, string)> b,
        string ratioLabel, CancellationToken hard)
    {
        await WarmUpAsync(a, b, hard).ConfigureAwait(false);
        var runsA = new List<Burst>();
        var runsB = new List<Burst>();
        for (var i = 0; i < o.Repeat; i++)
        {
            runsA.Add(await BurstAsync(labelA, a, hard).ConfigureAwait(false));
            runsB.Add(await BurstAsync(labelB, b, hard).ConfigureAwait(false));
        }
        static Burst Median(List<Burst> runs) =>
            runs.OrderBy(r => r.EventsPerSecond).ElementAt(runs.Count / 2) with { Runs = runs.Select(r => r.EventsPerSecond).ToList() };
        var (medianA, medianB) = (Median(runsA), Median(runsB));

        AddBurst(report, medianA);
        AddBurst(report, medianB);
        var ratio = medianA.EventsPerSecond > 0 ? medianB.EventsPerSecond / medianA.EventsPerSecond : (double?)null;
        report.Add((ratioLabel, ratio is { } x ? $"{F(x, "0.00")}x events/s" : "n/a"));
        _results.Add(ratioLabel, ratio, "0.00");
    }

    /// <summary>
    /// Sends <paramref name="events"/> (default --events) messages split evenly over <paramref name="senders"/>, each
    /// sender back to back, all senders at once; the wall time runs from the first send to the last 200.
    /// Bounded by --phase-timeout-seconds.
    /// </summary>
    async Task<Burst> BurstAsync(string label, List<(User User, string RoomId)> senders, CancellationToken hard, int? events = null)
    {
        var total = events ?? o.Events;
        using var phase = Phase(hard);
        var sendMs = new ConcurrentQueue<double>();
        var ok = 0;
        var attempts = 0;

        async Task SendAll(User user, string roomId, int count)
        {
            var path = $"_matrix/client/v3/rooms/{MatrixApi.Esc(roomId)}/send/m.room.message/";
            for (var k = 0; k < count; k++)
            {
                var seq = Interlocked.Increment(ref _seq);
                var content = new JsonObject { ["msgtype"] = "m.text", ["body"] = $"lg {_setup.RunId} {label} {seq}" };
                var t0 = Stopwatch.GetTimestamp();
                Interlocked.Increment(ref attempts);
                var r = await _api.CallAsync("send", HttpMethod.Put, path + MatrixApi.Esc($"lg{_setup.RunId}.{seq}"), content, user.Token,
                    SendTimeout, phase.Token).ConfigureAwait(false);
                if (r.Ok && MatrixApi.Str(r.Json?["event_id"]) is not null)
                {
                    Interlocked.Increment(ref ok);
                    sendMs.Enqueue(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
                }
            }
        }

        var cpu0 = Cpu.ReadSeconds(o.Pids);
        var start = Stopwatch.GetTimestamp();
        var cut = await CutShortAsync(Task.WhenAll(senders.Select((s, i) => SendAll(s.User, s.RoomId, total / senders.Count + (i < total % senders.Count ? 1 : 0)))),
            label, hard).ConfigureAwait(false);
        var wall = Stopwatch.GetElapsedTime(start);
        var burst = new Burst(label, senders.Count, ok, attempts, wall, sendMs.ToList(), cut, Cpu.MsPerEvent(cpu0, Cpu.ReadSeconds(o.Pids), ok));
        if (label != "warm-up")
            Log($"{label}: {burst.Ok}/{total} sends in {burst.Wall.TotalSeconds:0.00} s, {burst.EventsPerSecond:0.0} events/s");
        return burst;
    }

    void AddBurst(List<(string, string)> report, Burst b)
    {
        report.Add((b.Label, $"{b.Ok} of {b.Attempts} sends ok in {F(b.Wall.TotalSeconds, "0.00")} s, {F(b.EventsPerSecond)} events/s" +
            (b.CutShort ? " (cut short by --phase-timeout-seconds)" : "") +
            (b.Runs.Count > 1 ? $"; median of {b.Runs.Count} runs: {string.Join(", ", b.Runs.Select(x => F(x)))} events/s" : "")));
        report.Add(($"  send (ms)", Dist(b.SendMs)));
        report.Add(($"  server CPU", b.CpuMsPerEvent is { } c ? $"{F(c, "0.00")} ms per event" : "n/a"));
        _results.Add($"{b.Label} s", b.Wall.TotalSeconds, "0.00");
        _results.Add($"{b.Label} ev/s", b.EventsPerSecond);
        _results.Add($"{b.Label} send p50 ms", Percentile(b.SendMs, 0.50));
        _results.Add($"{b.Label} send p99 ms", Percentile(b.SendMs, 0.99));
        _results.Add($"{b.Label} CPU ms/ev", b.CpuMsPerEvent, "0.00");
    }
}

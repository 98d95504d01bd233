using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json.Nodes;
using static Conduit.LoadGen.Out;

namespace Conduit.LoadGen;

/// <summary>
/// Three sync scenarios. lazy-sync: the initial /sync of a user in many large rooms with lazy-loaded members (setting up
/// --rooms rooms of --users members is rooms x members joins, made concurrently into different rooms, then --events
/// messages a room). sync-load:
/// incremental /sync under a load of messages, typing notifications and read receipts, timed from each action to
/// the /sync response that brings it to each other member. sliding-sync: simplified sliding sync (MSC4186) for a user
/// in many rooms with Element X's room list: (a) the time to the first response of a new connection; (b) the latency
/// from a message send's 200 to its arrival in the user's waiting sliding sync request (pos + timeout), while other
/// users send messages into other rooms.
/// </summary>
internal sealed partial class ScenarioRun
{
    /// <summary>The spec's lazy-loading filter, inline.</summary>
    const string LazyFilter = """{"room":{"state":{"lazy_load_members":true}}}""";

    // ================= lazy-sync =================

    async Task<int> LazySyncAsync(List<(string, string)> report, CancellationToken hard)
    {
        var total = Stopwatch.StartNew();
        var users = await RegisterAsync(o.Users, o.Users, hard).ConfigureAwait(false);
        if (users is null) return 1;
        var registerTime = total.Elapsed;
        var user = users[0];

        // The measured user creates every room, public so the others join without an invite.
        var sw = Stopwatch.StartNew();
        if (await CreatePublicRoomsAsync(user, o.Rooms, Math.Min(o.SetupConcurrency, 8), "lazy", hard).ConfigureAwait(false) is not { } roomIds)
            return 1;
        var createTime = sw.Elapsed;

        // Every other user joins every room. In round k, room r is joined by user 1 + (k + r) mod (members - 1): the
        // joins in flight at any moment go to consecutive rooms, each by another user, so they take different room
        // locks, while each room grows evenly.
        var joiners = users.Count - 1;
        var joinsWanted = (long)joiners * o.Rooms;
        long joined = 0, failedJoins = 0;
        var progressStep = Math.Max(1, joinsWanted / 10);
        IEnumerable<(User User, string RoomId)> Pairs()
        {
            for (var k = 0; k < joiners; k++)
                for (var r = 0; r < o.Rooms; r++)
                    yield return (users[1 + (k + r) % joiners], roomIds[r]);
        }
        sw.Restart();
        await InSetupAsync(ct => Parallel.ForEachAsync(Pairs(), new ParallelOptions { MaxDegreeOfParallelism = o.SetupConcurrency, CancellationToken = ct },
            async (pair, token) =>
            {
                var r = await _api.CallWithRetryAsync("join", HttpMethod.Post, $"_matrix/client/v3/join/{MatrixApi.Esc(pair.RoomId)}", new JsonObject(),
                    pair.User.Token, TimeSpan.FromSeconds(60), token).ConfigureAwait(false);
                if (!r.Ok)
                {
                    if (Interlocked.Increment(ref failedJoins) <= 3) Log($"  join {pair.User.UserId} to {pair.RoomId}: {r.Describe()}");
                    return;
                }
                var n = Interlocked.Increment(ref joined);
                if (n % progressStep == 0)
                    Log($"  {n}/{joinsWanted} joins, {n / sw.Elapsed.TotalSeconds:0} joins/s");
            }), hard).ConfigureAwait(false);
        var joinTime = sw.Elapsed;
        Log($"{joined}/{joinsWanted} joins in {joinTime.TotalSeconds:0.0} s");

        // Then --events messages in each room, each by another member (spread over the members), so that each room's
        // timeline ends with messages and lazy loading has their senders' member events to send.
        sw.Restart();
        var messages = 0;
        await InSetupAsync(ct => Parallel.ForEachAsync(Enumerable.Range(0, o.Rooms), new ParallelOptions { MaxDegreeOfParallelism = o.SetupConcurrency, CancellationToken = ct },
            async (r, token) =>
            {
                var path = $"_matrix/client/v3/rooms/{MatrixApi.Esc(roomIds[r])}/send/m.room.message/";
                for (var j = 0; j < o.Events; j++)
                {
                    var sender = users[joiners == 0 ? 0 : 1 + (r + j * 37) % joiners];
                    var content = new JsonObject { ["msgtype"] = "m.text", ["body"] = $"lg {_setup.RunId} room {r} message {j}" };
                    var m = await _api.CallWithRetryAsync("send", HttpMethod.Put, path + MatrixApi.Esc($"lg{_setup.RunId}.{r}.{j}"), content, sender.Token,
                        SendTimeout, token).ConfigureAwait(false);
                    if (m.Ok) Interlocked.Increment(ref messages);
                }
            }), hard).ConfigureAwait(false);
        var messageTime = sw.Elapsed;
        var setupTime = total.Elapsed;
        Log($"{messages} messages in {messageTime.TotalSeconds:0.0} s; setup {setupTime.TotalSeconds:0.0} s in all");
        report.Add(("setup", $"{F(setupTime.TotalSeconds)} s: {users.Count} users registered in {F(registerTime.TotalSeconds)} s, " +
            $"{o.Rooms} public rooms created in {F(createTime.TotalSeconds)} s, {joined} of {joinsWanted} joins in {F(joinTime.TotalSeconds)} s " +
            $"({F(joined / Math.Max(0.001, joinTime.TotalSeconds))} joins/s, {o.SetupConcurrency} at once), " +
            $"{messages} messages ({o.Events} a room) in {F(messageTime.TotalSeconds)} s"));
        _results.Add("rooms x members", $"{o.Rooms}x{users.Count}");
        _results.Add("setup s", setupTime.TotalSeconds);
        _results.Add("joins/s", joined / Math.Max(0.001, joinTime.TotalSeconds));
        if (failedJoins > 0 || joined < joinsWanted || messages < o.Rooms * o.Events)
        {
            Log($"error: {joinsWanted - joined} joins and {o.Rooms * o.Events - messages} messages missing");
            return 1;
        }

        // Two rooms' joined members, read back: every user is in them.
        foreach (var roomId in new[] { roomIds[0], roomIds[^1] })
        {
            var m = await _api.CallAsync("joined_members", HttpMethod.Get, $"_matrix/client/v3/rooms/{MatrixApi.Esc(roomId)}/joined_members", null,
                user.Token, TimeSpan.FromSeconds(o.PhaseTimeoutSeconds), hard).ConfigureAwait(false);
            var count = (m.Json?["joined"] as JsonObject)?.Count ?? -1;
            if (count != users.Count)
            {
                Log($"error: {roomId} has {count} joined members, not {users.Count}");
                return 1;
            }
        }

        // Whatever background work the joins leave (RocksDB flushes and compactions, whose threads count in the
        // server's CPU) is kept out of the figures: wait until the server is idle.
        var (idleWait, idle) = await WaitForIdleAsync(hard).ConfigureAwait(false);
        Log($"waited {idleWait.TotalSeconds:0.0} s for the server's CPU to go idle" + (idle ? "" : " (it did not; measuring anyway)"));
        report.Add(("idle wait", $"{F(idleWait.TotalSeconds)} s after the setup until the server's CPU was idle" +
            (idle ? "" : $"; not idle within {IdleWaitLimit.TotalSeconds:0} s, measured anyway")));
        _results.Add("idle wait s", idleWait.TotalSeconds);
        var before = Rss.ReadKb(o.Pids);
        var beforeEach = Rss.PerProcess(o);

        // The timed initial syncs, one after the other, each a new initial sync (no since).
        var runs = new List<(ApiResult R, SyncShape Shape, double? Cpu, string CpuEach)>();
        long? after, peak;
        string afterEach;
        var lazyPath = $"_matrix/client/v3/sync?timeout=0&filter={MatrixApi.Esc(LazyFilter)}";
        await using (var sampler = new RssSampler(o.Pids, TimeSpan.FromMilliseconds(50), hard))
        {
            for (var i = 0; i < o.Repeat; i++)
            {
                var cpu0 = Cpu.ReadEach(o.Pids);
                var r = await _api.CallAsync("lazy initial sync", HttpMethod.Get, lazyPath, null, user.Token,
                    TimeSpan.FromSeconds(o.PhaseTimeoutSeconds), hard).ConfigureAwait(false);
                var cpu1 = Cpu.ReadEach(o.Pids);
                var shape = SyncShape.Of(r.Json);
                runs.Add((r, shape, Cpu.Used(cpu0, cpu1), o.Pids.Count > 1 ? $" ({Cpu.PerProcess(o, cpu0, cpu1)})" : ""));
                Log($"lazy initial /sync {i + 1}/{o.Repeat}: {r.Describe()} in {r.Elapsed.TotalSeconds:0.000} s, {r.Bytes / 1e6:0.00} MB, {shape}");
                if (!r.Ok) break;
            }
            after = Rss.ReadKb(o.Pids);
            afterEach = Rss.PerProcess(o);
            peak = new[] { sampler.PeakKb, before, after }.Max();
        }

        // For comparison: one initial sync without lazy loading (every member event of every room).
        await WaitForIdleAsync(hard).ConfigureAwait(false);
        var fullCpu0 = Cpu.ReadEach(o.Pids);
        var full = await _api.CallAsync("full initial sync", HttpMethod.Get, "_matrix/client/v3/sync?timeout=0", null, user.Token,
            TimeSpan.FromSeconds(o.PhaseTimeoutSeconds), hard).ConfigureAwait(false);
        var fullCpu1 = Cpu.ReadEach(o.Pids);
        var fullCpu = Cpu.Used(fullCpu0, fullCpu1);
        var fullCpuEach = o.Pids.Count > 1 ? $" ({Cpu.PerProcess(o, fullCpu0, fullCpu1)})" : "";
        var fullShape = SyncShape.Of(full.Json);
        Log($"initial /sync without lazy loading: {full.Describe()} in {full.Elapsed.TotalSeconds:0.000} s, {full.Bytes / 1e6:0.00} MB, {fullShape}");

        var ok = runs.Where(x => x.R.Ok).ToList();
        var times = ok.Select(x => x.R.Elapsed.TotalSeconds).ToList();
        var median = ok.OrderBy(x => x.R.Elapsed).ElementAtOrDefault(ok.Count / 2);
        var medianCpu = median.Cpu;
        var complete = ok.Count == o.Repeat && ok.All(x => x.Shape.Rooms == o.Rooms && x.Shape.Lazy(users.Count));
        report.Add(("lazy initial /sync", median.R.Ok
            ? $"{F(median.R.Elapsed.TotalSeconds, "0.000")} s median of {string.Join(", ", times.Select(t => F(t, "0.000")))} s; " +
              $"{F(median.R.Bytes / 1e6, "0.00")} MB; server CPU {(medianCpu is { } mc ? F(mc, "0.00") + " s" + median.CpuEach : "n/a")}"
            : runs.LastOrDefault().R.Describe()));
        report.Add(("  what it holds", median.R.Ok ? median.Shape.Describe() : "n/a"));
        report.Add(("without lazy loading", full.Ok
            ? $"{F(full.Elapsed.TotalSeconds, "0.000")} s, {F(full.Bytes / 1e6, "0.00")} MB, server CPU {(fullCpu is { } fc ? F(fc, "0.00") + " s" + fullCpuEach : "n/a")}; {fullShape.Describe()}"
            : full.Describe()));
        report.Add(("server RSS before", $"{Rss.Mb(before)} ({beforeEach})"));
        report.Add(("server RSS peak", $"{Rss.Mb(peak)} (sampled every 50 ms during the lazy syncs)"));
        report.Add(("server RSS after", $"{Rss.Mb(after)} ({afterEach})"));
        if (!complete)
            report.Add(("check", $"FAILED: each lazy /sync must answer 200 with all {o.Rooms} rooms and lazy-loaded members only"));
        _results.Add("lazy /sync s", median.R.Ok ? median.R.Elapsed.TotalSeconds : null, "0.000");
        _results.Add("lazy /sync MB", median.R.Ok ? median.R.Bytes / 1e6 : null, "0.00");
        _results.Add("lazy /sync CPU s", medianCpu, "0.00");
        _results.Add("members/room in state", median.R.Ok ? median.Shape.StateMembersPerRoom : null, "0.0");
        _results.Add("full /sync s", full.Ok ? full.Elapsed.TotalSeconds : null, "0.000");
        _results.Add("full /sync MB", full.Ok ? full.Bytes / 1e6 : null, "0.00");
        _results.Add("RSS before MB", Rss.MbValue(before));
        _results.Add("RSS peak MB", Rss.MbValue(peak));
        _results.Add("RSS after MB", Rss.MbValue(after));
        return complete && full.Ok ? 0 : 1;
    }

    /// <summary>What an initial /sync's joined rooms hold: rooms, member events in state and timeline.</summary>
    readonly record struct SyncShape(int Rooms, long StateMembers, long TimelineMembers, long TimelineEvents, int MaxStateMembers)
    {
        public double? StateMembersPerRoom => Rooms > 0 ? (double)StateMembers / Rooms : null;

        /// <summary>Lazy loading at work: no room's state carries every member (the timeline's senders and the user only).</summary>
        public bool Lazy(int members) => Rooms > 0 && MaxStateMembers < members;

        public static SyncShape Of(JsonNode? sync)
        {
            if (sync?["rooms"]?["join"] is not JsonObject join) return default;
            long state = 0, timelineMembers = 0, timeline = 0;
            var max = 0;
            foreach (var (_, room) in join)
            {
                var s = (room?["state"]?["events"] as JsonArray ?? []).Count(e => MatrixApi.Str(e?["type"]) == "m.room.member");
                var t = room?["timeline"]?["events"] as JsonArray ?? [];
                state += s;
                max = Math.Max(max, s);
                timeline += t.Count;
                timelineMembers += t.Count(e => MatrixApi.Str(e?["type"]) == "m.room.member");
            }
            return new SyncShape(join.Count, state, timelineMembers, timeline, max);
        }

        public string Describe() =>
            $"{Rooms} joined rooms; member events in state {F((double)StateMembers / Math.Max(1, Rooms))} a room (at most {MaxStateMembers}), " +
            $"timeline {F((double)TimelineEvents / Math.Max(1, Rooms))} events a room ({F((double)TimelineMembers / Math.Max(1, Rooms))} of them member events)";

        public override string ToString() => $"{Rooms} rooms, {F((double)StateMembers / Math.Max(1, Rooms))} member events a room in state";
    }

    // ================= sync-load =================

    enum ActionKind { Message, TypingOn, TypingOff, Receipt }

    static string KindName(ActionKind k) => k switch
    {
        ActionKind.Message => "message",
        ActionKind.TypingOn => "typing on",
        ActionKind.TypingOff => "typing off",
        _ => "read receipt",
    };

    /// <summary>One action of a sender. Registered before its request goes out, so a /sync that brings it before the
    /// request's 200 does is still matched.</summary>
    sealed class LiveAction(long id, ActionKind kind, string roomId, int sender, long startTs, bool measured)
    {
        public long Id { get; } = id;
        public ActionKind Kind { get; } = kind;
        public string RoomId { get; } = roomId;
        public int Sender { get; } = sender;
        public long StartTs { get; } = startTs;
        public bool Measured { get; } = measured;
        public long OkTs { get; set; }
        public bool Ok { get; set; }
    }

    sealed record Wake(long ActionId, int Syncer, long ArrivalTs);

    /// <summary>The state of a sync-load run: the actions, and what the /sync loops saw.</summary>
    sealed class LiveRun
    {
        public readonly ConcurrentDictionary<long, LiveAction> Actions = new();
        /// <summary>The typing actions of each (room, user, on or off), oldest first: a change in that user's typing state
        /// is matched to the newest of its kind that started before the /sync response arrived.</summary>
        public readonly ConcurrentDictionary<(string Room, string User, bool On), List<LiveAction>> Typing = new();

        public void AddTyping(string room, string user, LiveAction a)
        {
            var list = Typing.GetOrAdd((room, user, a.Kind == ActionKind.TypingOn), _ => []);
            lock (list) list.Add(a);
        }

        public LiveAction? TypingAt(string room, string user, bool on, long arrival)
        {
            if (!Typing.TryGetValue((room, user, on), out var list)) return null;
            lock (list)
                for (var i = list.Count - 1; i >= 0; i--)
                    if (list[i].StartTs <= arrival) return list[i];
            return null;
        }
        /// <summary>Receipt actions by (event ID, user).</summary>
        public readonly ConcurrentDictionary<(string EventId, string User), long> Receipts = new();
        /// <summary>The newest message of each room (its event ID and the order its 200 came back in), for receipts.</summary>
        public readonly ConcurrentDictionary<string, (string EventId, long Seq)> LastMessage = new(StringComparer.Ordinal);
        public readonly ConcurrentQueue<Wake> Wakes = new();
        public readonly ConcurrentDictionary<(long, int), byte> Seen = new();
        public long NextId;
        public long MessageSeq;
        public long Duplicates;
        public long UnmatchedTyping;
        public long Syncs;
        public long SyncsWithUpdates;
        public long Limited;
        public long SkippedReceipts;
    }

    async Task<int> SyncLoadAsync(List<(string, string)> report, CancellationToken hard)
    {
        var all = await RegisterAsync(o.Users + o.Senders, o.Users + o.Senders, hard).ConfigureAwait(false);
        if (all is null) return 1;
        var syncers = all.Take(o.Users).ToList();
        var senders = all.Skip(o.Users).ToList();
        var run = new LiveRun();
        var prefix = $"lg {_setup.RunId} a";

        // Rooms: the first sender creates them (public), the senders join every room, syncer i joins room i mod R.
        var sw = Stopwatch.StartNew();
        if (await CreatePublicRoomsAsync(senders[0], o.Rooms, o.SetupConcurrency, "sync-load", hard).ConfigureAwait(false) is not { } roomIds)
            return 1;
        for (var i = 0; i < syncers.Count; i++) syncers[i].RoomId = roomIds[i % o.Rooms];
        var joins = syncers.Select(u => (u, u.RoomId!))
            .Concat(senders.Skip(1).SelectMany(s => roomIds.Select(r => (s, r))))
            .ToList();
        if (!await JoinAllAsync(joins, hard).ConfigureAwait(false)) return 1;
        await InSetupAsync(ct => _setup.InitialSyncAsync(syncers, ct), hard).ConfigureAwait(false);
        if (syncers.Any(u => u.Since is null))
        {
            Log("error: initial syncs failed");
            return 1;
        }
        var syncersPerRoom = syncers.GroupBy(u => u.RoomId!).ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);
        Log($"set up {o.Rooms} rooms ({syncers.Count} syncing users, {senders.Count} senders in every room) in {sw.Elapsed.TotalSeconds:0.0} s");

        long? rssIdle = null;
        if (o.Pids.Count > 0)
        {
            await Task.Delay(1000, hard).ConfigureAwait(false);
            rssIdle = Rss.ReadKb(o.Pids);
        }

        using var syncStop = CancellationTokenSource.CreateLinkedTokenSource(hard);
        var sampler = new RssSampler(o.Pids, TimeSpan.FromMilliseconds(250), hard);
        var loops = syncers.Select((u, i) => LiveSyncLoopAsync(u, i, run, prefix, syncStop.Token)).ToList();

        var measureStart = Stopwatch.GetTimestamp() + (long)(o.WarmupSeconds * (double)Stopwatch.Frequency);
        var sendEnd = measureStart + (long)(o.Seconds * (double)Stopwatch.Frequency);
        Log($"load: {syncers.Count} users long-polling /sync, {senders.Count} senders acting every ~{o.IntervalMs} ms, for {o.WarmupSeconds} s of warm-up + {o.Seconds} s");
        var senderTasks = senders.Select((s, i) => LiveSenderAsync(s, i, roomIds, run, prefix, measureStart, sendEnd, hard)).ToList();
        Dictionary<int, double?>? cpuStart = null, cpuEnd = null;
        long syncsAtStart = 0, syncsAtEnd = 0, updatesAtStart = 0, updatesAtEnd = 0;
        try
        {
            var untilMeasured = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), measureStart);
            if (untilMeasured > TimeSpan.Zero) await Task.Delay(untilMeasured, hard).ConfigureAwait(false);
            cpuStart = Cpu.ReadEach(o.Pids);
            syncsAtStart = Interlocked.Read(ref run.Syncs);
            updatesAtStart = Interlocked.Read(ref run.SyncsWithUpdates);
            await Task.WhenAll(senderTasks).ConfigureAwait(false);
            cpuEnd = Cpu.ReadEach(o.Pids);
            syncsAtEnd = Interlocked.Read(ref run.Syncs);
            updatesAtEnd = Interlocked.Read(ref run.SyncsWithUpdates);
        }
        catch (OperationCanceledException)
        {
            Log("send phase cut short");
        }
        var sendPhase = Stopwatch.GetElapsedTime(measureStart);

        // Drain: until every measured action reached every syncing member of its room, or --drain-seconds.
        long Expected() => run.Actions.Values.Where(a => a.Measured && a.Ok).Sum(a => (long)syncersPerRoom.GetValueOrDefault(a.RoomId));
        long Observed() => run.Wakes.Count(w => run.Actions.TryGetValue(w.ActionId, out var a) && a.Measured && a.Ok);
        var drainStart = Stopwatch.GetTimestamp();
        while (!hard.IsCancellationRequested && Stopwatch.GetElapsedTime(drainStart) < TimeSpan.FromSeconds(o.DrainSeconds) && Observed() < Expected())
        {
            try { await Task.Delay(100, hard).ConfigureAwait(false); }
            catch (OperationCanceledException) { break; }
        }
        var drain = Stopwatch.GetElapsedTime(drainStart);
        await syncStop.CancelAsync().ConfigureAwait(false);
        await sampler.DisposeAsync().ConfigureAwait(false);
        try { await Task.WhenAll(loops).WaitAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(false); }
        catch (TimeoutException) { Log("warning: some /sync loops did not stop within 10 s"); }
        catch (OperationCanceledException) { }

        // ---------------- report ----------------
        var measured = run.Actions.Values.Where(a => a.Measured).ToList();
        var okActions = measured.Where(a => a.Ok).ToList();
        var byKind = Enum.GetValues<ActionKind>().ToDictionary(k => k, _ => (Latency: new List<double>(), Expected: 0L));
        foreach (var a in okActions)
        {
            var e = byKind[a.Kind];
            byKind[a.Kind] = e with { Expected = e.Expected + syncersPerRoom.GetValueOrDefault(a.RoomId) };
        }
        // Latency: from the start of the action's request to the arrival of the /sync response that brings it (never
        // negative; the wake-up happens while the request is served); also from the request's 200.
        var latency = new List<double>();
        var afterOk = new List<double>();
        var early = 0;
        foreach (var w in run.Wakes)
        {
            if (!run.Actions.TryGetValue(w.ActionId, out var a) || !a.Measured || !a.Ok) continue;
            var ms = Stopwatch.GetElapsedTime(a.OkTs, w.ArrivalTs).TotalMilliseconds;
            if (w.ArrivalTs < a.OkTs)
            {
                early++;
                ms = 0;
            }
            var fs = Stopwatch.GetElapsedTime(a.StartTs, w.ArrivalTs).TotalMilliseconds;
            latency.Add(fs);
            afterOk.Add(ms);
            byKind[a.Kind].Latency.Add(fs);
        }
        var expected = byKind.Values.Sum(v => v.Expected);
        var seconds = Math.Max(0.001, sendPhase.TotalSeconds);
        var actionsPerSecond = okActions.Count / seconds;
        var measuredSyncs = syncsAtEnd - syncsAtStart;
        var syncsPerSecond = measuredSyncs / seconds;
        var serverCpu = cpuStart is not null && cpuEnd is not null ? Cpu.Used(cpuStart, cpuEnd) : null;
        var cpuPerAction = serverCpu is { } cpu && okActions.Count > 0 ? cpu * 1000 / okActions.Count : (double?)null;

        report.Add(("users", $"{syncers.Count} syncing, {senders.Count} senders; {o.Rooms} rooms of {string.Join("/", syncersPerRoom.Values.Distinct().Order())} syncing members + the senders"));
        report.Add(("duration", $"{F(sendPhase.TotalSeconds)} s measured (requested {o.Seconds} s) after {o.WarmupSeconds} s of warm-up, {F(drain.TotalSeconds)} s draining"));
        report.Add(("actions", $"{okActions.Count} ok of {measured.Count}, {F(actionsPerSecond)}/s: " +
            string.Join(", ", Enum.GetValues<ActionKind>().Select(k => $"{measured.Count(a => a.Kind == k && a.Ok)} {KindName(k)}")) +
            (run.SkippedReceipts > 0 ? $"; {run.SkippedReceipts} receipts skipped (no newer message in the room)" : "")));
        report.Add(("wake-ups expected", $"{expected} (each action x the syncing members of its room)"));
        report.Add(("wake-ups observed", $"{latency.Count}" + (expected > 0 ? $" ({F(100.0 * latency.Count / expected)} %)" : "") +
            $"; duplicates {run.Duplicates}, unmatched typing changes {run.UnmatchedTyping}, limited timelines {run.Limited}"));
        report.Add(("action -> /sync (ms)", Dist(latency) + "  (action request start -> /sync response, all wake-ups)"));
        foreach (var k in Enum.GetValues<ActionKind>())
        {
            var v = byKind[k];
            report.Add(($"  {KindName(k)}", Dist(v.Latency) + (v.Expected > 0 ? $"; {F(100.0 * v.Latency.Count / v.Expected)} % seen" : "")));
        }
        report.Add(("after the 200 (ms)", Dist(afterOk) + (early > 0 ? $"; {early} arrived before the action's 200 (counted as 0)" : "")));
        report.Add(("syncs", $"{measuredSyncs} completed while measuring, {F(syncsPerSecond)}/s ({updatesAtEnd - updatesAtStart} brought an action of this run)"));
        report.Add(("server CPU", cpuPerAction is { } c
            ? $"{F(serverCpu!.Value)} s while measuring: {F(c, "0.00")} ms per action (with its /sync deliveries)" +
              (o.Pids.Count > 1 ? $"; {Cpu.PerProcess(o, cpuStart!, cpuEnd!)}" : "")
            : "n/a (pass --pid or --pids)"));
        report.Add(("server RSS", o.Pids.Count > 0 ? $"idle {Rss.Mb(rssIdle)}, peak {Rss.Mb(sampler.PeakKb)} ({sampler.Samples} samples every 250 ms)" : "n/a (pass --pid or --pids)"));

        _results.Add("syncers x rooms", $"{syncers.Count}x{o.Rooms}");
        _results.Add("actions/s", actionsPerSecond);
        _results.Add("wake p50 ms", Percentile(latency, 0.50));
        _results.Add("wake p99 ms", Percentile(latency, 0.99));
        foreach (var (k, label) in new[] { (ActionKind.Message, "message"), (ActionKind.TypingOn, "typing on"), (ActionKind.TypingOff, "typing off"), (ActionKind.Receipt, "receipt") })
        {
            _results.Add($"{label} p50 ms", Percentile(byKind[k].Latency, 0.50));
            _results.Add($"{label} p99 ms", Percentile(byKind[k].Latency, 0.99));
        }
        _results.Add("woken %", expected > 0 ? 100.0 * latency.Count / expected : null);
        _results.Add("syncs/s", syncsPerSecond);
        _results.Add("CPU ms/action", cpuPerAction, "0.00");
        _results.Add("RSS idle MB", Rss.MbValue(rssIdle));
        _results.Add("RSS peak MB", Rss.MbValue(sampler.PeakKb));
        return 0;
    }

    /// <summary>
    /// One sender: in a room picked at random, typing on, a message, typing off, a read receipt on the room's newest
    /// message (often its own, just sent: the server sets no receipt for a send, so it still moves the sender's read
    /// receipt forward); each about --interval-ms (+-25 %) after the last started; then another room.
    /// </summary>
    async Task LiveSenderAsync(User s, int index, string[] roomIds, LiveRun run, string prefix, long measureStart, long sendEnd, CancellationToken ct)
    {
        var rnd = new Random(HashCode.Combine(_setup.RunId, index));
        var lastReceipt = new Dictionary<string, long>(StringComparer.Ordinal);
        var txn = 0;
        await Task.Delay(rnd.Next(o.IntervalMs), ct).ConfigureAwait(false);
        while (Stopwatch.GetTimestamp() < sendEnd && !ct.IsCancellationRequested)
        {
            var roomId = roomIds[rnd.Next(roomIds.Length)];
            var room = $"_matrix/client/v3/rooms/{MatrixApi.Esc(roomId)}";
            foreach (var kind in new[] { ActionKind.TypingOn, ActionKind.Message, ActionKind.TypingOff, ActionKind.Receipt })
            {
                var t0 = Stopwatch.GetTimestamp();
                if (t0 >= sendEnd || ct.IsCancellationRequested) break;
                var measured = t0 >= measureStart;
                var a = new LiveAction(Interlocked.Increment(ref run.NextId), kind, roomId, index, t0, measured);
                string op, path;
                JsonObject body;
                HttpMethod method;
                switch (kind)
                {
                    case ActionKind.TypingOn:
                    case ActionKind.TypingOff:
                        (op, method, path) = ("typing", HttpMethod.Put, $"{room}/typing/{MatrixApi.Esc(s.UserId)}");
                        body = kind == ActionKind.TypingOn ? new JsonObject { ["typing"] = true, ["timeout"] = 30000 } : new JsonObject { ["typing"] = false };
                        run.AddTyping(roomId, s.UserId, a);
                        break;
                    case ActionKind.Message:
                        (op, method, path) = ("send", HttpMethod.Put, $"{room}/send/m.room.message/{MatrixApi.Esc($"lg{_setup.RunId}.{index}.{++txn}")}");
                        body = new JsonObject { ["msgtype"] = "m.text", ["body"] = $"{prefix}{a.Id}" };
                        break;
                    default:
                        // Receipts never move back (the server ignores those): only a message newer than this sender's
                        // last receipt in the room.
                        if (!run.LastMessage.TryGetValue(roomId, out var last) || last.Seq <= lastReceipt.GetValueOrDefault(roomId))
                        {
                            if (measured) Interlocked.Increment(ref run.SkippedReceipts);
                            continue;
                        }
                        lastReceipt[roomId] = last.Seq;
                        (op, method, path) = ("receipt", HttpMethod.Post, $"{room}/receipt/m.read/{MatrixApi.Esc(last.EventId)}");
                        body = new JsonObject();
                        run.Receipts[(last.EventId, s.UserId)] = a.Id;
                        break;
                }
                run.Actions[a.Id] = a;
                var r = await _api.CallAsync(op, method, path, body, s.Token, SendTimeout, ct).ConfigureAwait(false);
                a.OkTs = Stopwatch.GetTimestamp();
                a.Ok = r.Ok;
                if (kind == ActionKind.Message && r.Ok && MatrixApi.Str(r.Json?["event_id"]) is { } eventId)
                {
                    var seq = Interlocked.Increment(ref run.MessageSeq);
                    run.LastMessage.AddOrUpdate(roomId, (eventId, seq), (_, old) => old.Seq > seq ? old : (eventId, seq));
                }
                var wait = o.IntervalMs * (0.75 + 0.5 * rnd.NextDouble());
                var next = t0 + (long)(wait / 1000.0 * Stopwatch.Frequency);
                var delay = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), Math.Min(next, sendEnd));
                if (delay > TimeSpan.Zero) await Task.Delay(delay, ct).ConfigureAwait(false);
            }
        }
    }

    /// <summary>
    /// One syncing user's /sync long-poll loop: each response is searched for this run's messages (timeline), typing
    /// changes (m.typing, against the user IDs typing in its previous m.typing) and read receipts (m.receipt).
    /// </summary>
    async Task LiveSyncLoopAsync(User u, int index, LiveRun run, string prefix, CancellationToken stop)
    {
        var typing = new Dictionary<string, HashSet<string>>(StringComparer.Ordinal);
        void Saw(long actionId, long arrival)
        {
            if (run.Seen.TryAdd((actionId, index), 0)) run.Wakes.Enqueue(new Wake(actionId, index, arrival));
            else Interlocked.Increment(ref run.Duplicates);
        }
        try
        {
            while (!stop.IsCancellationRequested)
            {
                var r = await _api.CallAsync("sync", HttpMethod.Get, $"_matrix/client/v3/sync?since={MatrixApi.Esc(u.Since!)}&timeout=30000", null,
                    u.Token, TimeSpan.FromSeconds(45), stop).ConfigureAwait(false);
                var arrival = Stopwatch.GetTimestamp();
                if (!r.Ok)
                {
                    await Task.Delay(r.RetryAfter ?? TimeSpan.FromSeconds(1), stop).ConfigureAwait(false);
                    continue;
                }
                Interlocked.Increment(ref run.Syncs);
                if (MatrixApi.Str(r.Json?["next_batch"]) is { } next) u.Since = next;
                if (r.Json?["rooms"]?["join"] is not JsonObject rooms) continue;
                var before = run.Seen.Count;
                foreach (var (roomId, room) in rooms)
                {
                    if (room?["timeline"]?["limited"] is JsonValue lim && lim.TryGetValue<bool>(out var limited) && limited)
                        Interlocked.Increment(ref run.Limited);
                    foreach (var ev in room?["timeline"]?["events"] as JsonArray ?? [])
                    {
                        if (MatrixApi.Str(ev?["type"]) != "m.room.message") continue;
                        if (MatrixApi.Str(ev?["content"]?["body"]) is { } body && body.StartsWith(prefix, StringComparison.Ordinal)
                            && long.TryParse(body.AsSpan(prefix.Length), out var id))
                            Saw(id, arrival);
                    }
                    foreach (var ev in room?["ephemeral"]?["events"] as JsonArray ?? [])
                    {
                        switch (MatrixApi.Str(ev?["type"]))
                        {
                            case "m.typing":
                                var now = (ev?["content"]?["user_ids"] as JsonArray ?? []).Select(x => MatrixApi.Str(x)).OfType<string>().ToHashSet(StringComparer.Ordinal);
                                var was = typing.GetValueOrDefault(roomId) ?? [];
                                foreach (var (user, on) in now.Except(was).Select(x => (x, true)).Concat(was.Except(now).Select(x => (x, false))))
                                {
                                    if (run.TypingAt(roomId, user, on, arrival) is { } a) Saw(a.Id, arrival);
                                    else Interlocked.Increment(ref run.UnmatchedTyping);
                                }
                                typing[roomId] = now;
                                break;
                            case "m.receipt":
                                if (ev?["content"] is not JsonObject receipts) break;
                                foreach (var (eventId, byType) in receipts)
                                    foreach (var (user, _) in byType?["m.read"] as JsonObject ?? [])
                                        if (run.Receipts.TryGetValue((eventId, user), out var id)) Saw(id, arrival);
                                break;
                        }
                    }
                }
                if (run.Seen.Count > before) Interlocked.Increment(ref run.SyncsWithUpdates);
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            // stopping
        }
    }

    // ================= sliding-sync =================

    const string SlidingPath = "_matrix/client/unstable/org.matrix.simplified_msc3575/sync";
    /// <summary>Rooms the measured sender writes into, and rooms the background senders write into (others again).</summary>
    const int SlidingSenderRooms = 10;
    /// <summary>Untimed sends of the measured sender before the timed ones.</summary>
    const int SlidingWarmupSends = 20;
    static readonly TimeSpan SlidingArrivalLimit = TimeSpan.FromSeconds(10);

    /// <summary>Element X's room-list connection: one list, the newest 20 rooms, the last event of each, the state a
    /// room list shows; the extensions it enables.</summary>
    static JsonObject ElementXRoomList(string connId)
    {
        static JsonArray Pair(string type, string key) => new(type, key);
        return new JsonObject
        {
            ["conn_id"] = connId,
            ["lists"] = new JsonObject
            {
                ["all"] = new JsonObject
                {
                    ["ranges"] = new JsonArray(new JsonArray(0, 19)),
                    ["timeline_limit"] = 1,
                    ["required_state"] = new JsonArray(
                        Pair("m.room.name", ""), Pair("m.room.topic", ""), Pair("m.room.avatar", ""), Pair("m.room.canonical_alias", ""),
                        Pair("m.room.encryption", ""), Pair("m.room.join_rules", ""), Pair("m.room.power_levels", ""), Pair("m.room.create", ""),
                        Pair("m.room.member", "$LAZY"), Pair("m.room.member", "$ME"), Pair("m.room.history_visibility", ""),
                        Pair("m.space.parent", "*"), Pair("m.room.pinned_events", ""), Pair("m.call.member", "*")),
                },
            },
            ["extensions"] = new JsonObject
            {
                ["to_device"] = new JsonObject { ["enabled"] = true },
                ["e2ee"] = new JsonObject { ["enabled"] = true },
                ["account_data"] = new JsonObject { ["enabled"] = true },
                ["receipts"] = new JsonObject { ["enabled"] = true },
                ["typing"] = new JsonObject { ["enabled"] = true },
            },
        };
    }

    Task<ApiResult> SlideAsync(User u, JsonObject body, string? pos, int timeoutMs, TimeSpan requestTimeout, CancellationToken ct) =>
        _api.CallAsync("sliding sync", HttpMethod.Post, $"{SlidingPath}?timeout={timeoutMs}" + (pos is null ? "" : $"&pos={MatrixApi.Esc(pos)}"),
            body, u.Token, requestTimeout, ct);

    async Task<int> SlidingSyncAsync(List<(string, string)> report, CancellationToken hard)
    {
        // The viewer (in every room), the measured sender, the background senders.
        var users = await RegisterAsync(2 + o.Senders, 2 + o.Senders, hard).ConfigureAwait(false);
        if (users is null) return 1;
        var viewer = users[0];
        var sender = users[1];
        var background = users.Skip(2).ToList();

        // The viewer creates every room (public, so the senders join without an invite).
        var sw = Stopwatch.StartNew();
        if (await CreatePublicRoomsAsync(viewer, o.Rooms, o.SetupConcurrency, "sliding", hard).ConfigureAwait(false) is not { } roomIds)
            return 1;
        var createTime = sw.Elapsed;
        // The measured sender's rooms are the oldest ten, the background senders' the next ten: both start far outside
        // the list's range [0, 19] and enter it with their first message.
        var senderRooms = roomIds.Take(SlidingSenderRooms).ToArray();
        var backgroundRooms = roomIds.Skip(SlidingSenderRooms).Take(SlidingSenderRooms).ToArray();
        var joins = senderRooms.Select(r => (sender, r)).Concat(background.SelectMany(b => backgroundRooms.Select(r => (b, r))));
        if (!await JoinAllAsync(joins, hard).ConfigureAwait(false)) return 1;
        Log($"setup {sw.Elapsed.TotalSeconds:0.0} s in all");
        report.Add(("setup", $"{o.Rooms} rooms created by the viewer in {F(createTime.TotalSeconds)} s ({F(o.Rooms / createTime.TotalSeconds)} rooms/s); " +
            $"the measured sender in {SlidingSenderRooms} of them, {background.Count} background senders in {SlidingSenderRooms} others"));
        _results.Add("rooms", o.Rooms, "0");
        _results.Add("createRoom/s", o.Rooms / createTime.TotalSeconds);

        // ---------------- (a) first response of a new connection ----------------
        var (idleWait, idle) = await WaitForIdleAsync(hard).ConfigureAwait(false);
        Log($"waited {idleWait.TotalSeconds:0.0} s for the server's CPU to go idle" + (idle ? "" : " (it did not; measuring anyway)"));
        var firsts = new List<(ApiResult R, double? Cpu, int Rooms, long Count)>();
        for (var i = 0; i < o.Repeat; i++)
        {
            var cpu0 = Cpu.ReadEach(o.Pids);
            var r = await SlideAsync(viewer, ElementXRoomList($"first-{i}"), null, 0, TimeSpan.FromSeconds(o.PhaseTimeoutSeconds), hard).ConfigureAwait(false);
            var cpu1 = Cpu.ReadEach(o.Pids);
            var rooms = (r.Json?["rooms"] as JsonObject)?.Count ?? 0;
            var count = r.Json?["lists"]?["all"]?["count"] is JsonValue c && c.TryGetValue<long>(out var n) ? n : -1;
            firsts.Add((r, Cpu.Used(cpu0, cpu1), rooms, count));
            Log($"first sliding sync {i + 1}/{o.Repeat}: {r.Describe()} in {r.Elapsed.TotalMilliseconds:0.0} ms, {r.Bytes / 1e3:0.0} KB, {rooms} rooms, list count {count}");
            if (!r.Ok) return 1;
        }
        var firstTimes = firsts.Select(f => f.R.Elapsed.TotalMilliseconds).ToList();
        var median = firsts.OrderBy(f => f.R.Elapsed).ElementAt(firsts.Count / 2);
        // At least the rooms made: the server's first account (the viewer, when it registers first) also holds the
        // admin room's invite.
        var firstOk = firsts.All(f => f.Rooms == 20 && f.Count >= o.Rooms);
        // The mean over the runs: one response takes about a /proc clock tick (10 ms).
        var cpuPerFirst = firsts.All(f => f.Cpu is not null) ? firsts.Sum(f => f.Cpu!.Value) / firsts.Count : (double?)null;
        report.Add(("first response", $"{F(median.R.Elapsed.TotalMilliseconds)} ms median of {string.Join(", ", firstTimes.Select(t => F(t)))} ms " +
            $"(the first on a cold connection cache); {F(median.R.Bytes / 1e3)} KB, {median.Rooms} rooms, list count {median.Count}; " +
            $"server CPU {(cpuPerFirst is { } mc ? F(mc * 1000) + " ms a response (mean)" : "n/a")}"));
        _results.Add("first response ms", median.R.Elapsed.TotalMilliseconds);
        _results.Add("first response (cold) ms", firsts[0].R.Elapsed.TotalMilliseconds);
        _results.Add("first response KB", median.R.Bytes / 1e3);
        _results.Add("first response CPU ms", cpuPerFirst * 1000);

        // ---------------- (b) send 200 -> waiting sliding sync ----------------
        var prefix = $"lg {_setup.RunId} m";
        var waiting = new ConcurrentDictionary<long, TaskCompletionSource<long>>();
        long responses = 0, limited = 0, bgSent = 0;
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(hard);
        var body0 = ElementXRoomList("room-list");
        var start = await SlideAsync(viewer, body0, null, 0, TimeSpan.FromSeconds(o.PhaseTimeoutSeconds), hard).ConfigureAwait(false);
        if (MatrixApi.Str(start.Json?["pos"]) is not { } firstPos)
        {
            Log($"error: sliding sync gave no pos: {start.Describe()}");
            return 1;
        }

        async Task ViewerLoopAsync()
        {
            var pos = firstPos;
            // Sticky parameters are sent on every request, as matrix-js-sdk does.
            while (!stop.IsCancellationRequested)
            {
                var r = await SlideAsync(viewer, body0, pos, 30_000, TimeSpan.FromSeconds(45), stop.Token).ConfigureAwait(false);
                var arrival = Stopwatch.GetTimestamp();
                if (!r.Ok)
                {
                    if (stop.IsCancellationRequested) break;
                    Log($"viewer's sliding sync: {r.Describe()}");
                    await Task.Delay(r.RetryAfter ?? TimeSpan.FromSeconds(1), stop.Token).ConfigureAwait(false);
                    continue;
                }
                Interlocked.Increment(ref responses);
                pos = MatrixApi.Str(r.Json?["pos"]) ?? pos;
                foreach (var (_, room) in r.Json?["rooms"] as JsonObject ?? [])
                {
                    if (room?["limited"] is JsonValue l && l.TryGetValue<bool>(out var lim) && lim) Interlocked.Increment(ref limited);
                    foreach (var ev in room?["timeline"] as JsonArray ?? [])
                        if (MatrixApi.Str(ev?["content"]?["body"]) is { } b && b.StartsWith(prefix, StringComparison.Ordinal)
                            && long.TryParse(b.AsSpan(prefix.Length), out var id) && waiting.TryGetValue(id, out var tcs))
                            tcs.TrySetResult(arrival);
                }
            }
        }

        async Task BackgroundAsync(User b, int index)
        {
            var rnd = new Random(HashCode.Combine(_setup.RunId, index));
            var n = 0;
            await Task.Delay(rnd.Next(o.IntervalMs), stop.Token).ConfigureAwait(false);
            while (!stop.IsCancellationRequested)
            {
                var t0 = Stopwatch.GetTimestamp();
                var room = backgroundRooms[rnd.Next(backgroundRooms.Length)];
                var r = await _api.CallAsync("send", HttpMethod.Put,
                    $"_matrix/client/v3/rooms/{MatrixApi.Esc(room)}/send/m.room.message/{MatrixApi.Esc($"lg{_setup.RunId}.bg{index}.{++n}")}",
                    new JsonObject { ["msgtype"] = "m.text", ["body"] = $"lg {_setup.RunId} background {index} {n}" }, b.Token, SendTimeout, stop.Token)
                    .ConfigureAwait(false);
                if (r.Ok) Interlocked.Increment(ref bgSent);
                var delay = TimeSpan.FromMilliseconds(o.IntervalMs * (0.75 + 0.5 * rnd.NextDouble())) - Stopwatch.GetElapsedTime(t0);
                if (delay > TimeSpan.Zero) await Task.Delay(delay, stop.Token).ConfigureAwait(false);
            }
        }

        static async Task Quietly(Task t)
        {
            try { await t.ConfigureAwait(false); }
            catch (OperationCanceledException) { }
        }

        var viewerTask = Quietly(ViewerLoopAsync());
        var backgroundTasks = background.Select((b, i) => Quietly(BackgroundAsync(b, i))).ToList();
        Log($"live: {background.Count} background senders each sending every ~{o.IntervalMs} ms; {SlidingWarmupSends} untimed + {o.Events} timed sends");

        var afterOk = new List<double>();
        var fromStart = new List<double>();
        var sendMs = new List<double>();
        int early = 0, missed = 0, failedSends = 0;
        var rnd = new Random(HashCode.Combine(_setup.RunId, -1));
        var cpuStart = new Dictionary<int, double?>();
        long responsesAtStart = 0, bgAtStart = 0;
        var phase = Stopwatch.StartNew();
        var measuredTime = Stopwatch.StartNew();
        using (var timed = Phase(hard, TimeSpan.FromSeconds(o.Events / 10.0)))
        {
            try
            {
                for (var i = 0; i < SlidingWarmupSends + o.Events; i++)
                {
                    var measured = i >= SlidingWarmupSends;
                    if (i == SlidingWarmupSends)
                    {
                        cpuStart = Cpu.ReadEach(o.Pids);
                        responsesAtStart = Interlocked.Read(ref responses);
                        bgAtStart = Interlocked.Read(ref bgSent);
                        measuredTime.Restart();
                    }
                    var tcs = new TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously);
                    waiting[i] = tcs;
                    var room = senderRooms[i % senderRooms.Length];
                    var t0 = Stopwatch.GetTimestamp();
                    var r = await _api.CallAsync("send", HttpMethod.Put,
                        $"_matrix/client/v3/rooms/{MatrixApi.Esc(room)}/send/m.room.message/{MatrixApi.Esc($"lg{_setup.RunId}.m.{i}")}",
                        new JsonObject { ["msgtype"] = "m.text", ["body"] = $"{prefix}{i}" }, sender.Token, SendTimeout, timed.Token).ConfigureAwait(false);
                    var okTs = Stopwatch.GetTimestamp();
                    if (!r.Ok)
                    {
                        if (measured) failedSends++;
                        continue;
                    }
                    long arrival;
                    try
                    {
                        arrival = await tcs.Task.WaitAsync(SlidingArrivalLimit, timed.Token).ConfigureAwait(false);
                    }
                    catch (TimeoutException)
                    {
                        if (measured) missed++;
                        continue;
                    }
                    finally
                    {
                        waiting.TryRemove(i, out _);
                    }
                    if (!measured) continue;
                    sendMs.Add(Stopwatch.GetElapsedTime(t0, okTs).TotalMilliseconds);
                    fromStart.Add(Stopwatch.GetElapsedTime(t0, arrival).TotalMilliseconds);
                    if (arrival < okTs) early++;
                    afterOk.Add(arrival < okTs ? 0 : Stopwatch.GetElapsedTime(okTs, arrival).TotalMilliseconds);
                    // A pause of 0-50 ms, so that sends do not fall in step with the viewer's requests.
                    await Task.Delay(rnd.Next(50), timed.Token).ConfigureAwait(false);
                }
            }
            catch (OperationCanceledException) when (!hard.IsCancellationRequested)
            {
                Log($"live phase cut short after {phase.Elapsed.TotalSeconds:0} s");
            }
        }
        var cpuEnd = Cpu.ReadEach(o.Pids);
        var seconds = Math.Max(0.001, measuredTime.Elapsed.TotalSeconds);
        var measuredResponses = Interlocked.Read(ref responses) - responsesAtStart;
        var bgMeasured = Interlocked.Read(ref bgSent) - bgAtStart;
        await stop.CancelAsync().ConfigureAwait(false);
        try { await Task.WhenAll(backgroundTasks.Append(viewerTask)).WaitAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(false); }
        catch (TimeoutException) { Log("warning: the viewer's loop or a background sender did not stop within 10 s"); }

        var serverCpu = cpuStart.Count > 0 ? Cpu.Used(cpuStart, cpuEnd) : null;
        report.Add(("send 200 -> sliding", Dist(afterOk) + (early > 0 ? $"; {early} arrived before the send's 200 (counted as 0)" : "")));
        report.Add(("from send start", Dist(fromStart) + "  (send request start -> sliding sync response)"));
        report.Add(("send request (ms)", Dist(sendMs)));
        report.Add(("arrivals", $"{afterOk.Count} of {o.Events} timed sends ({failedSends} sends failed, {missed} not seen within {SlidingArrivalLimit.TotalSeconds:0} s)"));
        report.Add(("load meanwhile", $"{F(bgMeasured / seconds)} background messages/s by {background.Count} senders, " +
            $"{F(afterOk.Count / seconds)} measured/s; {measuredResponses} sliding sync responses to the viewer ({F(measuredResponses / seconds)}/s), " +
            $"{limited} room entries limited"));
        report.Add(("server CPU", serverCpu is { } cpu
            ? $"{F(cpu)} s in {F(seconds)} s measured ({F(100 * cpu / seconds)} % of a core)" + (o.Pids.Count > 1 ? $"; {Cpu.PerProcess(o, cpuStart, cpuEnd)}" : "")
            : "n/a (pass --pid or --pids)"));
        if (!firstOk)
            report.Add(("check", $"FAILED: each first response must hold 20 rooms and count at least the {o.Rooms} rooms made"));
        _results.Add("send->sliding p50 ms", Percentile(afterOk, 0.50));
        _results.Add("send->sliding p99 ms", Percentile(afterOk, 0.99));
        _results.Add("arrived %", 100.0 * afterOk.Count / o.Events);
        _results.Add("background msgs/s", bgMeasured / seconds);
        _results.Add("viewer responses/s", measuredResponses / seconds);
        return firstOk && missed == 0 && failedSends == 0 ? 0 : 1;
    }
}

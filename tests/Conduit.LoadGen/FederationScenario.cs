using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json.Nodes;
using static Conduit.LoadGen.Out;

namespace Conduit.LoadGen;

/// <summary>
/// The federation scenario: it starts its own all-in-one servers (child processes of the conduit build, HTTPS with a
/// CA of the run's own, fresh databases in a work directory) and measures, in parts (--parts):
/// one-peer, messages through PUT /send between two servers each way; dead-peers, the room's server sending to one
/// live peer while the room's other servers are dead; big-join, a remote join of a room of 1,000 members and 10,000
/// events. See README.md.
/// </summary>
internal sealed class FederationRun(Options o)
{
    static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(60);
    static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(180);
    /// <summary>Servers started at once in the dead-peers part: a server's start is a few seconds of CPU.</summary>
    const int StartConcurrency = 4;

    readonly Results _results = new();
    readonly List<(string Key, string Value)> _report = [];
    readonly List<ConduitServer> _servers = [];
    readonly List<(string Label, MatrixApi Api)> _apis = [];
    HttpClient _http = null!;
    ScenarioCa _ca = null!;
    string _work = "";
    string _build = "";
    string _runId = "";
    int _seq;
    /// <summary>The one-peer part's A to B end-to-end events/s, what the dead-peers part compares with.</summary>
    double? _onePeerRate;

    public async Task<int> RunAsync()
    {
        _build = OwnServer.FindBuild(o);
        if (!File.Exists(_build))
        {
            Log($"error: the server build {_build} does not exist (dotnet build Conduit.Services.sln -c Release, or pass --conduit)");
            return 1;
        }
        var ownWork = o.WorkDir is null;
        _work = o.WorkDir ?? Directory.CreateTempSubdirectory("conduit-fedbench-").FullName;
        Directory.CreateDirectory(_work);
        _ca = ScenarioCa.Create();
        _http = MatrixApi.CreateHttpClient(Math.Max(o.Users, 64), _ca.Certificate);
        _runId = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(4));

        // Bound on the whole run: per part its server starts, its setup steps and its timed phases, and slack.
        var bound = TimeSpan.FromSeconds(2 * StartTimeout.TotalSeconds + o.Parts.Count * (4 * o.SetupTimeoutSeconds + 5 * o.PhaseTimeoutSeconds)
            + (o.Parts.Contains("dead-peers") ? (o.Peers / StartConcurrency + 1) * StartTimeout.TotalSeconds : 0) + 90);
        using var hard = new CancellationTokenSource(bound);
        // Ctrl-C and SIGTERM (timeout(1), kill): the servers are stopped on the way out rather than left running.
        using var signals = Out.CancelOnSignals(hard);

        Log($"run {_runId} (federation): parts {string.Join(", ", o.Parts)}; server {_build}; work dir {_work}");
        var rc = 0;
        try
        {
            var sw = Stopwatch.StartNew();
            var ab = await Task.WhenAll(StartAsync("A", hard.Token), StartAsync("B", hard.Token)).ConfigureAwait(false);
            var (a, b) = (ab[0], ab[1]);
            Log($"started A ({a.ServerName}, pid {a.Pid}) and B ({b.ServerName}, pid {b.Pid}) in {sw.Elapsed.TotalSeconds:0.0} s");
            _report.Add(("servers", $"all-in-one, HTTPS; A = {a.ServerName} (pid {a.Pid}), B = {b.ServerName} (pid {b.Pid}); started in {F(sw.Elapsed.TotalSeconds)} s"));
            foreach (var part in o.Parts)
            {
                var ok = part switch
                {
                    "one-peer" => await OnePeerAsync(a, b, hard.Token).ConfigureAwait(false),
                    "dead-peers" => await DeadPeersAsync(a, b, hard.Token).ConfigureAwait(false),
                    _ => await BigJoinAsync(a, b, hard.Token).ConfigureAwait(false),
                };
                if (!ok) rc = 1;
            }
        }
        catch (OperationCanceledException)
        {
            Log("error: run stopped (time limit or Ctrl-C)");
            rc = 1;
        }
        catch (InvalidOperationException e)
        {
            Log($"error: {e.Message}");
            rc = 1;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            Log($"error: {e}");
            rc = 1;
        }
        finally
        {
            foreach (var s in _servers) await s.DisposeAsync().ConfigureAwait(false);
            _http.Dispose();
            _ca.Dispose();
            if (ownWork) Directory.Delete(_work, recursive: true);
        }

        Console.WriteLine();
        Console.WriteLine("== Conduit.LoadGen results ==");
        Line("scenario", "federation");
        foreach (var (key, value) in _report) Line(key, value);
        // Every server's failures under one tally, each labelled with the server it came from.
        var all = new MatrixApi(_http, new Uri("https://127.0.0.1/"));
        foreach (var (label, api) in _apis)
        {
            foreach (var (k, n) in api.Errors) all.Errors.AddOrUpdate($"{label}: {k}", n, (_, m) => m + n);
            foreach (var (k, n) in api.RateLimited) all.RateLimited.AddOrUpdate($"{label}: {k}", n, (_, m) => m + n);
        }
        PrintErrors(all);
        if (!ownWork) Line("server logs", _work);
        _results.AddRequestCounts(all);
        _results.Save(o.ResultsPath);
        return rc;
    }

    async Task<ConduitServer> StartAsync(string label, CancellationToken ct)
    {
        var s = await ConduitServer.StartAsync(label, _build, _work, _ca, _http, StartTimeout, ct).ConfigureAwait(false);
        lock (_servers) _servers.Add(s);
        return s;
    }

    MatrixApi Api(ConduitServer s)
    {
        var api = new MatrixApi(_http, s.Url);
        lock (_apis) _apis.Add((s.Label, api));
        return api;
    }

    /// <summary>Runs a setup step within --setup-timeout-seconds.</summary>
    async Task<T> InSetupAsync<T>(string what, Func<CancellationToken, Task<T>> step, CancellationToken hard)
    {
        using var setup = CancellationTokenSource.CreateLinkedTokenSource(hard);
        setup.CancelAfter(TimeSpan.FromSeconds(o.SetupTimeoutSeconds));
        try
        {
            return await step(setup.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!hard.IsCancellationRequested)
        {
            throw new InvalidOperationException($"{what} did not finish within --setup-timeout-seconds {o.SetupTimeoutSeconds}");
        }
    }

    Task InSetupAsync(string what, Func<CancellationToken, Task> step, CancellationToken hard) =>
        InSetupAsync(what, async ct => { await step(ct).ConfigureAwait(false); return 0; }, hard);

    async Task<List<User>> RegisterAsync(MatrixApi api, int count, CancellationToken hard)
    {
        var sw = Stopwatch.StartNew();
        var users = await InSetupAsync("registration", ct => new Setup(api, o).RegisterAsync(count, ct), hard).ConfigureAwait(false);
        if (users.Count < count) throw new InvalidOperationException($"{users.Count} of {count} users registered on {api.BaseUrl}");
        if (count > 1) Log($"  registered {count} users on {api.BaseUrl} in {sw.Elapsed.TotalSeconds:0.0} s");
        return users;
    }

    async Task<string> CreatePublicRoomAsync(MatrixApi api, User creator, string name, CancellationToken ct)
    {
        var r = await api.CallWithRetryAsync("createRoom", HttpMethod.Post, "_matrix/client/v3/createRoom",
            new JsonObject { ["preset"] = "public_chat", ["name"] = name }, creator.Token, RequestTimeout, ct).ConfigureAwait(false);
        return MatrixApi.Str(r.Json?["room_id"]) ?? throw new InvalidOperationException($"createRoom: {r.Describe()}");
    }

    /// <summary>POST /join/{roomId} (with ?via= for a remote room); throws when it fails.</summary>
    static async Task<ApiResult> JoinAsync(MatrixApi api, User user, string roomId, string? via, TimeSpan timeout, CancellationToken ct)
    {
        var path = $"_matrix/client/v3/join/{MatrixApi.Esc(roomId)}" + (via is null ? "" : $"?via={MatrixApi.Esc(via)}");
        var r = await api.CallWithRetryAsync(via is null ? "join" : "remote join", HttpMethod.Post, path, new JsonObject(), user.Token, timeout, ct)
            .ConfigureAwait(false);
        return r.Ok ? r : throw new InvalidOperationException($"join of {user.UserId} to {roomId}{(via is null ? "" : " via " + via)}: {r.Describe()}");
    }

    static async Task<int> JoinedMembersAsync(MatrixApi api, User user, string roomId, CancellationToken ct)
    {
        var r = await api.CallAsync("joined_members", HttpMethod.Get, $"_matrix/client/v3/rooms/{MatrixApi.Esc(roomId)}/joined_members", null,
            user.Token, RequestTimeout, ct).ConfigureAwait(false);
        return (r.Json?["joined"] as JsonObject)?.Count ?? -1;
    }

    /// <summary>Polls joined_members until it reaches <paramref name="expected"/> (within the setup timeout).</summary>
    async Task WaitForMembersAsync(MatrixApi api, User user, string roomId, int expected, string where, CancellationToken hard)
    {
        await InSetupAsync($"waiting for {expected} members on {where}", async ct =>
        {
            while (await JoinedMembersAsync(api, user, roomId, ct).ConfigureAwait(false) < expected)
                await Task.Delay(200, ct).ConfigureAwait(false);
            return 0;
        }, hard).ConfigureAwait(false);
    }

    sealed record Sent(int Ok, int Attempts, long Start, long LastOk, List<double> SendMs)
    {
        public double Seconds => Stopwatch.GetElapsedTime(Start, LastOk).TotalSeconds;
        public double Rate => Ok / Math.Max(0.001, Seconds);
    }

    /// <summary>
    /// <paramref name="n"/> messages into the room, split over the senders, each sending back to back with its own
    /// transaction IDs; bodies "fed RUNID TAG SEQ". Bounded by <paramref name="ct"/>.
    /// </summary>
    async Task<Sent> SendMessagesAsync(MatrixApi api, IReadOnlyList<User> senders, string roomId, int n, string tag, CancellationToken ct)
    {
        var path = $"_matrix/client/v3/rooms/{MatrixApi.Esc(roomId)}/send/m.room.message/";
        var sendMs = new ConcurrentQueue<double>();
        int ok = 0, attempts = 0;
        long lastOk = 0;
        var start = Stopwatch.GetTimestamp();
        await Task.WhenAll(senders.Select((u, i) => Task.Run(async () =>
        {
            for (var k = 0; k < n / senders.Count + (i < n % senders.Count ? 1 : 0); k++)
            {
                var seq = Interlocked.Increment(ref _seq);
                var t0 = Stopwatch.GetTimestamp();
                Interlocked.Increment(ref attempts);
                var r = await api.CallAsync("send", HttpMethod.Put, path + $"fed{_runId}.{seq}",
                    new JsonObject { ["msgtype"] = "m.text", ["body"] = $"fed {_runId} {tag} {seq}" }, u.Token, RequestTimeout, ct).ConfigureAwait(false);
                if (!r.Ok) continue;
                var t1 = Stopwatch.GetTimestamp();
                sendMs.Enqueue(Stopwatch.GetElapsedTime(t0, t1).TotalMilliseconds);
                Interlocked.Increment(ref ok);
                long seen;
                while ((seen = Interlocked.Read(ref lastOk)) < t1 && Interlocked.CompareExchange(ref lastOk, t1, seen) != seen) { }
            }
        }, ct))).ConfigureAwait(false);
        return new Sent(ok, attempts, start, lastOk == 0 ? Stopwatch.GetTimestamp() : lastOk, [.. sendMs]);
    }

    /// <summary>
    /// A user long-polling /sync for one room (timeline limit 1000, the server's maximum), noting when each message
    /// of this run with a given tag first shows up: the time at which a server holds messages, as its clients see them.
    /// </summary>
    sealed class Arrivals(MatrixApi api, User user, string roomId, string prefix)
    {
        readonly HashSet<string> _seen = new(StringComparer.Ordinal);
        readonly List<long> _times = [];
        string _filter = "";
        string? _since;
        public int Limited { get; private set; }
        public int Duplicates { get; private set; }

        public int Count { get { lock (_seen) return _seen.Count; } }

        /// <summary>When the n-th distinct message arrived (1-based), or null.</summary>
        public long? TimeOf(int n) { lock (_seen) return n >= 1 && n <= _times.Count ? _times[n - 1] : null; }

        /// <summary>The position to start from: an initial /sync of the room, before anything is sent.</summary>
        public async Task StartAsync(CancellationToken ct)
        {
            _filter = MatrixApi.Esc(new JsonObject
            {
                ["room"] = new JsonObject { ["rooms"] = new JsonArray(roomId), ["timeline"] = new JsonObject { ["limit"] = 1000 } },
            }.ToJsonString());
            var r = await api.CallWithRetryAsync("initial sync", HttpMethod.Get, $"_matrix/client/v3/sync?timeout=0&filter={_filter}", null,
                user.Token, RequestTimeout, ct).ConfigureAwait(false);
            _since = MatrixApi.Str(r.Json?["next_batch"]) ?? throw new InvalidOperationException($"initial /sync of {user.UserId}: {r.Describe()}");
        }

        public async Task LoopAsync(CancellationToken stop)
        {
            try
            {
                while (!stop.IsCancellationRequested)
                {
                    var r = await api.CallAsync("sync", HttpMethod.Get, $"_matrix/client/v3/sync?timeout=10000&filter={_filter}&since={MatrixApi.Esc(_since!)}",
                        null, user.Token, TimeSpan.FromSeconds(40), stop).ConfigureAwait(false);
                    var arrival = Stopwatch.GetTimestamp();
                    if (!r.Ok)
                    {
                        await Task.Delay(200, stop).ConfigureAwait(false);
                        continue;
                    }
                    _since = MatrixApi.Str(r.Json?["next_batch"]) ?? _since;
                    var timeline = r.Json?["rooms"]?["join"]?[roomId]?["timeline"];
                    if (timeline?["limited"] is JsonValue l && l.TryGetValue<bool>(out var limited) && limited) Limited++;
                    foreach (var ev in timeline?["events"] as JsonArray ?? [])
                    {
                        if (MatrixApi.Str(ev?["content"]?["body"]) is not { } body || !body.StartsWith(prefix, StringComparison.Ordinal)) continue;
                        lock (_seen)
                        {
                            if (_seen.Add(body)) _times.Add(arrival);
                            else Duplicates++;
                        }
                    }
                }
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                // stopping
            }
        }
    }

    sealed record Flow(string Label, Sent Sent, int Arrived, double? EndToEndSeconds, double? LagSeconds, double? CpuFrom, double? CpuTo, int Limited, int Duplicates)
    {
        public double? EndToEndRate => EndToEndSeconds is { } s ? Sent.Ok / Math.Max(0.001, s) : null;
    }

    /// <summary>
    /// One timed flow: <paramref name="n"/> messages sent on <paramref name="from"/> by the senders, watched arriving
    /// through <paramref name="watcher"/>'s /sync on the other server. The send is bounded by --phase-timeout-seconds,
    /// and so is the wait for the last arrival after it.
    /// </summary>
    async Task<Flow> FlowAsync(string label, ConduitServer from, MatrixApi fromApi, IReadOnlyList<User> senders, ConduitServer to, MatrixApi toApi,
        User watcher, string roomId, int n, CancellationToken hard, bool quiet = false)
    {
        var tag = label.Replace(' ', '_');
        var arrivals = new Arrivals(toApi, watcher, roomId, $"fed {_runId} {tag} ");
        await arrivals.StartAsync(hard).ConfigureAwait(false);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(hard);
        var loop = arrivals.LoopAsync(stop.Token);

        var cpu0 = Cpu.ReadEach([from.Pid, to.Pid]);
        Sent sent;
        using (var phase = CancellationTokenSource.CreateLinkedTokenSource(hard))
        {
            phase.CancelAfter(TimeSpan.FromSeconds(o.PhaseTimeoutSeconds));
            try
            {
                sent = await SendMessagesAsync(fromApi, senders, roomId, n, tag, phase.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!hard.IsCancellationRequested)
            {
                throw new InvalidOperationException($"{label}: the sends did not finish within --phase-timeout-seconds {o.PhaseTimeoutSeconds}");
            }
        }
        if (!quiet) Log($"  {label}: {sent.Ok}/{n} sent on {from.Label} in {sent.Seconds:0.00} s ({sent.Rate:0} events/s); waiting for {to.Label}");
        var waitStart = Stopwatch.GetTimestamp();
        while (arrivals.Count < sent.Ok && Stopwatch.GetElapsedTime(waitStart).TotalSeconds < o.PhaseTimeoutSeconds)
            await Task.Delay(20, hard).ConfigureAwait(false);
        var cpu1 = Cpu.ReadEach([from.Pid, to.Pid]);
        await stop.CancelAsync().ConfigureAwait(false);
        await loop.ConfigureAwait(false);

        var arrived = arrivals.Count;
        var last = arrivals.TimeOf(sent.Ok);
        double? e2e = last is { } t && arrived >= sent.Ok ? Stopwatch.GetElapsedTime(sent.Start, t).TotalSeconds : null;
        double? lag = last is { } t2 && arrived >= sent.Ok ? Stopwatch.GetElapsedTime(sent.LastOk, t2).TotalSeconds : null;
        var flow = new Flow(label, sent, arrived, e2e, lag,
            cpu1[from.Pid] - cpu0[from.Pid], cpu1[to.Pid] - cpu0[to.Pid], arrivals.Limited, arrivals.Duplicates);
        if (!quiet)
            Log(e2e is { } s
                ? $"  {label}: all {sent.Ok} on {to.Label} {s:0.00} s after the first send ({flow.EndToEndRate:0} events/s end to end; last one {lag:0.00} s after the last 200)"
                : $"  {label}: only {arrived} of {sent.Ok} reached {to.Label} within {o.PhaseTimeoutSeconds} s");
        return flow;
    }

    void AddFlow(Flow f, string key)
    {
        _report.Add((f.Label, $"{f.Sent.Ok} of {f.Sent.Attempts} sends ok in {F(f.Sent.Seconds, "0.00")} s: {F(f.Sent.Rate)} events/s sent"));
        _report.Add(("  send (ms)", Dist(f.Sent.SendMs)));
        _report.Add(("  end to end", f.EndToEndSeconds is { } s
            ? $"all {f.Sent.Ok} on the other server {F(s, "0.00")} s after the first send: {F(f.EndToEndRate!.Value)} events/s; the last {F(f.LagSeconds!.Value, "0.00")} s after the last send's 200"
            : $"only {f.Arrived} of {f.Sent.Ok} arrived within {o.PhaseTimeoutSeconds} s"));
        _report.Add(("  server CPU", $"sender {F(f.CpuFrom ?? 0, "0.0")} s, receiver {F(f.CpuTo ?? 0, "0.0")} s " +
            $"({F((f.CpuFrom ?? 0) * 1000 / Math.Max(1, f.Sent.Ok), "0.00")} + {F((f.CpuTo ?? 0) * 1000 / Math.Max(1, f.Sent.Ok), "0.00")} ms per event)" +
            (f.Limited + f.Duplicates > 0 ? $"; limited timelines {f.Limited}, duplicates {f.Duplicates}" : "")));
        _results.Add($"{key} send ev/s", f.Sent.Rate);
        _results.Add($"{key} e2e ev/s", f.EndToEndRate);
        _results.Add($"{key} lag s", f.LagSeconds, "0.00");
    }

    // ================= one-peer =================

    async Task<bool> OnePeerAsync(ConduitServer a, ConduitServer b, CancellationToken hard)
    {
        Log($"one-peer: a room on A with {o.Senders} users of A and {o.Senders} of B; {o.Events} messages each way");
        var (apiA, apiB) = (Api(a), Api(b));
        var usersA = await RegisterAsync(apiA, o.Senders, hard).ConfigureAwait(false);
        var usersB = await RegisterAsync(apiB, o.Senders, hard).ConfigureAwait(false);
        var sw = Stopwatch.StartNew();
        var roomId = await InSetupAsync("room setup", async ct =>
        {
            var room = await CreatePublicRoomAsync(apiA, usersA[0], $"fed {_runId} one-peer", ct).ConfigureAwait(false);
            foreach (var u in usersA.Skip(1)) await JoinAsync(apiA, u, room, null, RequestTimeout, ct).ConfigureAwait(false);
            foreach (var u in usersB) await JoinAsync(apiB, u, room, a.ServerName, RequestTimeout, ct).ConfigureAwait(false);
            return room;
        }, hard).ConfigureAwait(false);
        await WaitForMembersAsync(apiA, usersA[0], roomId, 2 * o.Senders, "A", hard).ConfigureAwait(false);
        await WaitForMembersAsync(apiB, usersB[0], roomId, 2 * o.Senders, "B", hard).ConfigureAwait(false);
        Log($"  room {roomId}: {2 * o.Senders} members on both servers after {sw.Elapsed.TotalSeconds:0.0} s ({o.Senders} remote joins)");
        _report.Add(("one-peer room", $"{o.Senders} users of A + {o.Senders} of B (joined through A) in {F(sw.Elapsed.TotalSeconds)} s"));

        if (o.Warmup > 0)
        {
            var w1 = await FlowAsync("warm-up A to B", a, apiA, usersA, b, apiB, usersB[0], roomId, o.Warmup, hard, quiet: true).ConfigureAwait(false);
            var w2 = await FlowAsync("warm-up B to A", b, apiB, usersB, a, apiA, usersA[0], roomId, o.Warmup, hard, quiet: true).ConfigureAwait(false);
            Log($"  warm-up: {o.Warmup} messages each way, {w1.EndToEndRate:0} and {w2.EndToEndRate:0} events/s end to end");
            await Task.Delay(1000, hard).ConfigureAwait(false);
        }
        var ab = await FlowAsync("A to B", a, apiA, usersA, b, apiB, usersB[0], roomId, o.Events, hard).ConfigureAwait(false);
        var ba = await FlowAsync("B to A", b, apiB, usersB, a, apiA, usersA[0], roomId, o.Events, hard).ConfigureAwait(false);
        _onePeerRate = ab.EndToEndRate;
        AddFlow(ab, "A->B");
        AddFlow(ba, "B->A");
        return ab.EndToEndSeconds is not null && ba.EndToEndSeconds is not null;
    }

    // ================= dead-peers =================

    async Task<bool> DeadPeersAsync(ConduitServer a, ConduitServer b, CancellationToken hard)
    {
        Log($"dead-peers: starting {o.Peers - 1} more servers ({StartConcurrency} at a time); B is the one that stays alive");
        var sw = Stopwatch.StartNew();
        var extra = new ConduitServer[o.Peers - 1];
        await Parallel.ForEachAsync(Enumerable.Range(0, o.Peers - 1), new ParallelOptions { MaxDegreeOfParallelism = StartConcurrency, CancellationToken = hard },
            async (i, ct) =>
            {
                extra[i] = await StartAsync($"P{i + 2}", ct).ConfigureAwait(false);
                Log($"  started {extra[i].Label} ({extra[i].ServerName}, pid {extra[i].Pid})");
            }).ConfigureAwait(false);
        var startTime = sw.Elapsed;
        Log($"  {o.Peers - 1} servers started in {startTime.TotalSeconds:0.0} s");

        var apiA = Api(a);
        var usersA = await RegisterAsync(apiA, o.Senders, hard).ConfigureAwait(false);
        var peers = new List<(ConduitServer Server, MatrixApi Api)> { (b, Api(b)) };
        peers.AddRange(extra.Select(s => (s, Api(s))));
        sw.Restart();
        var roomId = await CreatePublicRoomAsync(apiA, usersA[0], $"fed {_runId} dead-peers", hard).ConfigureAwait(false);
        foreach (var u in usersA.Skip(1)) await JoinAsync(apiA, u, roomId, null, RequestTimeout, hard).ConfigureAwait(false);
        var peerUsers = new User[peers.Count];
        await InSetupAsync("the peers' registrations", ct => Parallel.ForEachAsync(Enumerable.Range(0, peers.Count),
            new ParallelOptions { MaxDegreeOfParallelism = StartConcurrency, CancellationToken = ct }, async (i, token) =>
            {
                peerUsers[i] = (await new Setup(peers[i].Api, o).RegisterAsync(1, token).ConfigureAwait(false)).SingleOrDefault()
                    ?? throw new InvalidOperationException($"registration on {peers[i].Server.Label} failed");
            }), hard).ConfigureAwait(false);
        // One join at a time (--join-concurrency 1, the default): remote joins into one room at once leave the
        // joining servers unable to accept the room's later events (README.md, "Findings").
        await InSetupAsync("the peers' joins", ct => Parallel.ForEachAsync(Enumerable.Range(0, peers.Count),
            new ParallelOptions { MaxDegreeOfParallelism = o.JoinConcurrency, CancellationToken = ct },
            async (i, token) => await JoinAsync(peers[i].Api, peerUsers[i], roomId, a.ServerName, RequestTimeout, token).ConfigureAwait(false)), hard)
            .ConfigureAwait(false);
        var members = o.Senders + peers.Count;
        await WaitForMembersAsync(apiA, usersA[0], roomId, members, "A", hard).ConfigureAwait(false);
        Log($"  room {roomId}: {members} members ({o.Senders} of A, one of each of {peers.Count} servers) after {sw.Elapsed.TotalSeconds:0.0} s");
        _report.Add(("dead-peers room", $"{o.Senders} users of A + one of each of {peers.Count} other servers ({o.Peers - 1} started in {F(startTime.TotalSeconds)} s, {StartConcurrency} at a time)"));

        // All alive first, the same load: the figure the dead peers are compared with.
        var alive = await FlowAsync($"{peers.Count} live peers", a, apiA, usersA, b, peers[0].Api, peerUsers[0], roomId, o.PeerEvents, hard).ConfigureAwait(false);
        await Task.Delay(1000, hard).ConfigureAwait(false);
        var rss = Rss.ReadKb(_servers.Where(s => s.Alive).Select(s => s.Pid).ToList());
        foreach (var s in extra) await s.KillAsync().ConfigureAwait(false);
        Log($"  killed {extra.Length} servers (SIGKILL); B alone is alive (all servers' RSS before: {Rss.Mb(rss)})");
        var dead = await FlowAsync($"1 live + {extra.Length} dead", a, apiA, usersA, b, peers[0].Api, peerUsers[0], roomId, o.PeerEvents, hard).ConfigureAwait(false);
        // And once more: by now every dead peer is in backoff.
        var later = await FlowAsync($"1 live + {extra.Length} dead, again", a, apiA, usersA, b, peers[0].Api, peerUsers[0], roomId, o.PeerEvents, hard).ConfigureAwait(false);
        AddFlow(alive, $"{peers.Count} live");
        AddFlow(dead, $"{extra.Length} dead");
        AddFlow(later, $"{extra.Length} dead again");
        // With every peer alive, 21 servers share the machine and each peer ingests every message: that baseline is
        // mostly the machine's CPU. The one-peer part's A to B (two servers) is the fairer one.
        string Ratio(double? baseline) => dead.EndToEndRate is { } d && later.EndToEndRate is { } l2 && baseline is { } b0
            ? $"{F(d / b0, "0.00")}x, then {F(l2 / b0, "0.00")}x" : "n/a";
        _report.Add(("  dead / one peer", $"{Ratio(_onePeerRate)} the end-to-end events/s of one-peer's A to B (two servers alone)"));
        _report.Add(("  dead / all live", $"{Ratio(alive.EndToEndRate)} the end-to-end events/s with all {peers.Count} alive ({peers.Count + 1} servers on the machine)"));
        _results.Add($"{extra.Length} dead / one peer", dead.EndToEndRate is { } dr && _onePeerRate is { } op ? dr / op : null, "0.00");
        return alive.EndToEndSeconds is not null && dead.EndToEndSeconds is not null && later.EndToEndSeconds is not null;
    }

    // ================= big-join =================

    async Task<bool> BigJoinAsync(ConduitServer a, ConduitServer b, CancellationToken hard)
    {
        Log($"big-join: a room on A with {o.Users} members and {o.RoomEvents} messages, then a user of B joins it");
        var (apiA, apiB) = (Api(a), Api(b));
        var total = Stopwatch.StartNew();
        var users = await RegisterAsync(apiA, o.Users, hard).ConfigureAwait(false);
        var registerTime = total.Elapsed;
        var roomId = await CreatePublicRoomAsync(apiA, users[0], $"fed {_runId} big room", hard).ConfigureAwait(false);
        var sw = Stopwatch.StartNew();
        var joined = 1;
        var step = Math.Max(1, o.Users / 5);
        await InSetupAsync("the big room's joins", ct => Parallel.ForEachAsync(users.Skip(1),
            new ParallelOptions { MaxDegreeOfParallelism = o.SetupConcurrency, CancellationToken = ct }, async (u, token) =>
            {
                await JoinAsync(apiA, u, roomId, null, RequestTimeout, token).ConfigureAwait(false);
                var n = Interlocked.Increment(ref joined);
                if (n % step == 0) Log($"  {n}/{o.Users} members, {n / sw.Elapsed.TotalSeconds:0} joins/s");
            }), hard).ConfigureAwait(false);
        var joinsTime = sw.Elapsed;
        sw.Restart();
        var sent = await InSetupAsync("the big room's messages", ct => SendMessagesAsync(apiA, users.Take(o.Senders).ToList(), roomId, o.RoomEvents, "big", ct), hard)
            .ConfigureAwait(false);
        if (sent.Ok < o.RoomEvents) throw new InvalidOperationException($"{sent.Ok} of {o.RoomEvents} messages sent into the big room");
        var setupTime = total.Elapsed;
        Log($"  {o.RoomEvents} messages in {sw.Elapsed.TotalSeconds:0.0} s ({sent.Rate:0} events/s); setup {setupTime.TotalSeconds:0.0} s in all");
        _report.Add(("big room", $"{o.Users} members of A, {o.RoomEvents} messages; set up in {F(setupTime.TotalSeconds)} s " +
            $"(registrations {F(registerTime.TotalSeconds)} s, joins {F(joinsTime.TotalSeconds)} s at {F((o.Users - 1) / Math.Max(0.001, joinsTime.TotalSeconds))}/s, " +
            $"messages {F(sent.Seconds)} s at {F(sent.Rate)}/s by {o.Senders} senders)"));
        _results.Add("big room setup s", setupTime.TotalSeconds);

        var joiner = (await RegisterAsync(apiB, 1, hard).ConfigureAwait(false))[0];
        await Task.Delay(1000, hard).ConfigureAwait(false);
        var cpu0 = Cpu.ReadEach([a.Pid, b.Pid]);
        var join = await JoinAsync(apiB, joiner, roomId, a.ServerName, TimeSpan.FromSeconds(o.PhaseTimeoutSeconds), hard).ConfigureAwait(false);
        var cpu1 = Cpu.ReadEach([a.Pid, b.Pid]);
        Log($"  remote join: {join.Elapsed.TotalSeconds:0.00} s");
        var membersOnB = await JoinedMembersAsync(apiB, joiner, roomId, hard).ConfigureAwait(false);
        var sync = await apiB.CallAsync("first sync", HttpMethod.Get, "_matrix/client/v3/sync?timeout=0", null, joiner.Token,
            TimeSpan.FromSeconds(o.PhaseTimeoutSeconds), hard).ConfigureAwait(false);
        var room = sync.Json?["rooms"]?["join"]?[roomId];
        var state = (room?["state"]?["events"] as JsonArray)?.Count ?? 0;
        var timeline = (room?["timeline"]?["events"] as JsonArray)?.Count ?? 0;
        Log($"  joined_members on B: {membersOnB}; first /sync on B: {sync.Describe()} in {sync.Elapsed.TotalSeconds:0.00} s, {sync.Bytes / 1e6:0.00} MB");
        _report.Add(("remote join", $"{F(join.Elapsed.TotalSeconds, "0.00")} s (POST /join on B, via A); server CPU A {F(cpu1[a.Pid] - cpu0[a.Pid] ?? 0)} s, B {F(cpu1[b.Pid] - cpu0[b.Pid] ?? 0)} s"));
        _report.Add(("  members on B", $"{membersOnB} joined (expected {o.Users + 1})"));
        _report.Add(("  first /sync on B", sync.Ok
            ? $"{F(sync.Elapsed.TotalSeconds, "0.00")} s, {F(sync.Bytes / 1e6, "0.00")} MB; the room with {state} state and {timeline} timeline events"
            : sync.Describe()));
        _results.Add("remote join s", join.Elapsed.TotalSeconds, "0.00");
        _results.Add("members on B", membersOnB, "0");
        _results.Add("first /sync on B s", sync.Ok ? sync.Elapsed.TotalSeconds : null, "0.00");
        _results.Add("first /sync on B MB", sync.Ok ? sync.Bytes / 1e6 : null, "0.00");
        return membersOnB == o.Users + 1 && sync.Ok;
    }
}

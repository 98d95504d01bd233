using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using static Conduit.LoadGen.Out;

namespace Conduit.LoadGen;

/// <summary>One event of a transaction the listener received, in arrival order (<see cref="Seq"/>).</summary>
internal sealed record AsArrival(long Seq, string EventId, string Type, string? Body, string? StateKey, long Ts, int Txn);

/// <summary>One transaction the listener received.</summary>
internal sealed record AsTxn(int Index, string TxnId, long Ts, int Events, int Ephemeral);

/// <summary>
/// The appservice's side: a Kestrel listener on 127.0.0.1, port 0 (the system's choice, read back once it listens),
/// answering every <c>PUT /_matrix/app/v1/transactions/{txnId}</c> that carries the hs_token with 200 <c>{}</c> as soon as
/// its body is read, and recording the arrival time of each event in it. Anything else is answered 404 (counted), a
/// wrong token 403 (counted).
/// </summary>
internal sealed class AppserviceListener : IAsyncDisposable
{
    const string TxnPrefix = "/_matrix/app/v1/transactions/";
    readonly WebApplication _app;
    readonly string _authorization;
    readonly List<AsArrival> _arrivals = [];
    readonly List<AsTxn> _txns = [];
    readonly HashSet<string> _txnIds = new(StringComparer.Ordinal);
    long _forbidden, _other, _repeatedTxnIds;

    AppserviceListener(WebApplication app, string hsToken)
    {
        _app = app;
        _authorization = "Bearer " + hsToken;
    }

    public string Url { get; private set; } = "";
    public long Forbidden => Interlocked.Read(ref _forbidden);
    public long OtherRequests => Interlocked.Read(ref _other);
    /// <summary>Transactions whose ID came again (a resend: the server did not see our 200).</summary>
    public long RepeatedTxnIds => Interlocked.Read(ref _repeatedTxnIds);

    public static async Task<AppserviceListener> StartAsync(string hsToken, CancellationToken ct)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(k => k.Listen(IPAddress.Loopback, 0));
        var app = builder.Build();
        var listener = new AppserviceListener(app, hsToken);
        app.Run(listener.HandleAsync);
        await app.StartAsync(ct).ConfigureAwait(false);
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses.FirstOrDefault()
            ?? throw new InvalidOperationException("the appservice listener has no address");
        listener.Url = address.Replace("[::1]", "127.0.0.1", StringComparison.Ordinal).TrimEnd('/');
        return listener;
    }

    async Task HandleAsync(HttpContext ctx)
    {
        var path = ctx.Request.Path.Value ?? "";
        if (!HttpMethods.IsPut(ctx.Request.Method) || !path.StartsWith(TxnPrefix, StringComparison.Ordinal))
        {
            Interlocked.Increment(ref _other);
            ctx.Response.StatusCode = 404;
            ctx.Response.ContentType = "application/json";
            await ctx.Response.WriteAsync("""{"errcode":"M_NOT_FOUND"}""").ConfigureAwait(false);
            return;
        }
        if (ctx.Request.Headers.Authorization.ToString() != _authorization)
        {
            Interlocked.Increment(ref _forbidden);
            ctx.Response.StatusCode = 403;
            ctx.Response.ContentType = "application/json";
            await ctx.Response.WriteAsync("""{"errcode":"M_FORBIDDEN"}""").ConfigureAwait(false);
            return;
        }
        var body = await JsonNode.ParseAsync(ctx.Request.Body, cancellationToken: ctx.RequestAborted).ConfigureAwait(false);
        var ts = Stopwatch.GetTimestamp();
        var txnId = Uri.UnescapeDataString(path[TxnPrefix.Length..]);
        var events = body?["events"] as JsonArray ?? [];
        lock (_arrivals)
        {
            if (!_txnIds.Add(txnId)) _repeatedTxnIds++;
            var index = _txns.Count;
            _txns.Add(new AsTxn(index, txnId, ts, events.Count, (body?["ephemeral"] as JsonArray)?.Count ?? 0));
            foreach (var ev in events)
                _arrivals.Add(new AsArrival(_arrivals.Count, MatrixApi.Str(ev?["event_id"]) ?? "", MatrixApi.Str(ev?["type"]) ?? "",
                    MatrixApi.Str(ev?["content"]?["body"]), MatrixApi.Str(ev?["state_key"]), ts, index));
        }
        ctx.Response.StatusCode = 200;
        ctx.Response.ContentType = "application/json";
        await ctx.Response.WriteAsync("{}").ConfigureAwait(false);
    }

    /// <summary>A copy of the events received so far, in arrival order.</summary>
    public List<AsArrival> Arrivals()
    {
        lock (_arrivals) return [.. _arrivals];
    }

    public List<AsTxn> Transactions()
    {
        lock (_arrivals) return [.. _txns];
    }

    /// <summary>How many of the events received so far satisfy <paramref name="match"/>.</summary>
    public int Count(Func<AsArrival, bool> match)
    {
        lock (_arrivals) return _arrivals.Count(match);
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync(CancellationToken.None).ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
    }
}

/// <summary>
/// The appservice scenario: transactions from the server to one application service, end to end. It starts the
/// appservice's listener, writes the registration naming it, starts its own server (all-in-one or split) with that
/// registration, and measures how fast the events sent into a room where a puppet of the appservice is joined reach
/// the appservice, and that each arrives exactly once and in order. See README.md.
/// </summary>
internal sealed class AppserviceRun(Options o)
{
    static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(60);
    static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(180);
    const string ServerName = "asbench.test";

    sealed record Send(int Sender, int Seq, string Body, long StartTs, long AckTs, string? EventId);

    readonly string _runId = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4));
    readonly string _asToken = "asbench_as_" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
    readonly string _hsToken = "asbench_hs_" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
    MatrixApi _api = null!;

    public async Task<int> RunAsync()
    {
        var build = OwnServer.FindBuild(o);
        if (!File.Exists(build))
        {
            Log($"error: the server build {build} does not exist (dotnet build Conduit.Services.sln -c Release, or pass --conduit)");
            return 1;
        }
        var ownWork = o.WorkDir is null;
        var work = o.WorkDir ?? Directory.CreateTempSubdirectory("conduit-asbench-").FullName;
        Directory.CreateDirectory(work);

        var bound = TimeSpan.FromSeconds(StartTimeout.TotalSeconds + 2 * o.SetupTimeoutSeconds + 3 * o.PhaseTimeoutSeconds + o.DrainSeconds + 90);
        using var hard = new CancellationTokenSource(bound);
        // Ctrl-C and SIGTERM (timeout(1), kill): the servers are stopped on the way out rather than left running.
        using var signals = Out.CancelOnSignals(hard);

        using var http = MatrixApi.CreateHttpClient(o.Users + 4);
        AppserviceListener? listener = null;
        OwnServer? server = null;
        var report = new List<(string, string)>();
        var results = new Results();
        var rc = 0;
        try
        {
            // The appservice listens first: its port goes into the registration the server reads at start.
            listener = await AppserviceListener.StartAsync(_hsToken, hard.Token).ConfigureAwait(false);
            var registration = Path.Combine(work, "registration.yaml");
            File.WriteAllText(registration, $"""
                id: loadgen-asbench
                url: "{listener.Url}"
                as_token: {_asToken}
                hs_token: {_hsToken}
                sender_localpart: bench_as_bot
                rate_limited: false
                namespaces:
                  users:
                    - exclusive: true
                      regex: "@bench_as_.*:{ServerName.Replace(".", "\\\\.", StringComparison.Ordinal)}"
                  aliases: []
                  rooms: []

                """);
            Log($"run {_runId} (appservice, {o.Mode}): listener on {listener.Url}; server {build}; work dir {work}");

            var sw = Stopwatch.StartNew();
            server = await OwnServer.StartAsync(o, build, work, ServerName, $"app_service_config_files = [\"{registration}\"]",
                StartTimeout, hard.Token).ConfigureAwait(false);
            Log($"server ({o.Mode}) at {server.Url} in {sw.Elapsed.TotalSeconds:0.0} s, pids {string.Join(",", server.Processes.Select(p => $"{p.Pid}:{p.Name}"))}");
            report.Add(("server", $"{(o.Mode == "split" ? "split (split-up.sh)" : "all-in-one")} at {server.Url}, started in {F(sw.Elapsed.TotalSeconds)} s"));
            report.Add(("appservice", $"listener at {listener.Url}"));
            _api = new MatrixApi(http, server.Url);
            var pids = server.Processes.Select(p => p.Pid).ToList();
            foreach (var (pid, name) in server.Processes) _names[pid] = name;

            var (senders, roomId, joinDelayMs) = await SetUpAsync(listener, report, hard.Token).ConfigureAwait(false);

            if (o.Warmup > 0)
            {
                sw.Restart();
                var warm = await SendAllAsync(senders, roomId, $"asbw {_runId} ", o.Warmup, hard.Token).ConfigureAwait(false);
                var ids = warm.Where(s => s.EventId is not null).Select(s => s.EventId!).ToHashSet(StringComparer.Ordinal);
                await WaitForAsync(listener, ids, hard.Token).ConfigureAwait(false);
                Log($"warm-up: {o.Warmup} messages sent and delivered in {sw.Elapsed.TotalSeconds:0.0} s (not counted)");
                report.Add(("warm-up", $"{o.Warmup} messages, sent and delivered in {F(sw.Elapsed.TotalSeconds)} s (not counted)"));
            }

            // ---------------- the timed phase ----------------
            var prefix = $"asb {_runId} ";
            Log($"sending {o.Events} messages from {senders.Count} users " + (o.Rate > 0 ? $"at {o.Rate}/s" : "back to back"));
            var cpuStart = Cpu.ReadEach(pids);
            var sends = await SendAllAsync(senders, roomId, prefix, o.Events, hard.Token).ConfigureAwait(false);
            var acked = sends.Where(s => s.EventId is not null).ToList();
            var ackedIds = acked.Select(s => s.EventId!).ToHashSet(StringComparer.Ordinal);
            var (allArrived, waited) = await WaitForAsync(listener, ackedIds, hard.Token).ConfigureAwait(false);
            var cpuEnd = Cpu.ReadEach(pids);
            // Late duplicates: a second's grace after the last expected arrival.
            await Task.Delay(1000, hard.Token).ConfigureAwait(false);
            if (!allArrived) Log($"warning: not every acknowledged event arrived ({waited.TotalSeconds:0.0} s after the last send)");

            var serverOrder = await RoomOrderAsync(senders[0], roomId, prefix, hard.Token).ConfigureAwait(false);
            rc = Analyse(listener, sends, acked, prefix, serverOrder, Cpu.Used(cpuStart, cpuEnd), cpuStart, cpuEnd, joinDelayMs, report, results);
        }
        catch (OperationCanceledException)
        {
            Log("error: run stopped (time limit, Ctrl-C or SIGTERM)");
            rc = 1;
        }
        catch (InvalidOperationException e)
        {
            Log($"error: {e.Message}");
            rc = 1;
        }
        finally
        {
            if (server is not null)
            {
                // bench.sh ends its window on the server's logs here: what the parts log while stopping is not news.
                Log("stopping the server");
                await server.DisposeAsync().ConfigureAwait(false);
            }
            if (listener is not null) await listener.DisposeAsync().ConfigureAwait(false);
            if (ownWork)
            {
                try { Directory.Delete(work, recursive: true); }
                catch (IOException) { }
            }
        }

        Console.WriteLine();
        Console.WriteLine("== Conduit.LoadGen results ==");
        Line("scenario", $"appservice ({o.Mode})");
        foreach (var (k, v) in report) Line(k, v);
        PrintErrors(_api);
        if (!ownWork) Line("server logs", work);
        if (_api is not null) results.AddRequestCounts(_api);
        results.Save(o.ResultsPath);
        return rc;
    }

    /// <summary>Users, the room (the first creates it, the others are invited and join), the appservice's puppet
    /// (registered with m.login.application_service, invited, joined with ?user_id=); then waits until the puppet's
    /// join reaches the appservice. Returns the senders, the room and the join's delay in ms.</summary>
    async Task<(List<User> Senders, string RoomId, double JoinDelayMs)> SetUpAsync(AppserviceListener listener, List<(string, string)> report,
        CancellationToken hard)
    {
        using var setup = CancellationTokenSource.CreateLinkedTokenSource(hard);
        setup.CancelAfter(TimeSpan.FromSeconds(o.SetupTimeoutSeconds));
        var ct = setup.Token;
        try
        {
            var sw = Stopwatch.StartNew();
            var users = await new Setup(_api, o).RegisterAsync(o.Users, ct).ConfigureAwait(false);
            if (users.Count < o.Users) throw new InvalidOperationException($"{users.Count} of {o.Users} users registered");
            var problems = new ConcurrentQueue<string>();
            var (roomId, joined) = await new Setup(_api, o).CreateRoomAsync(users[0], users.Skip(1), $"asbench {_runId}", problems, ct).ConfigureAwait(false);
            if (roomId is null || joined.Count < users.Count)
                throw new InvalidOperationException($"room setup failed: {string.Join("; ", problems.Take(3))}");

            var localpart = $"bench_as_{_runId}";
            var reg = await _api.CallWithRetryAsync("register (appservice)", HttpMethod.Post, "_matrix/client/v3/register",
                new JsonObject { ["type"] = "m.login.application_service", ["username"] = localpart }, _asToken, RequestTimeout, ct).ConfigureAwait(false);
            var puppet = MatrixApi.Str(reg.Json?["user_id"]) ?? throw new InvalidOperationException($"puppet registration: {reg.Describe()}");
            var inv = await _api.CallWithRetryAsync("invite", HttpMethod.Post, $"_matrix/client/v3/rooms/{MatrixApi.Esc(roomId)}/invite",
                new JsonObject { ["user_id"] = puppet }, users[0].Token, RequestTimeout, ct).ConfigureAwait(false);
            if (!inv.Ok) throw new InvalidOperationException($"invite of {puppet}: {inv.Describe()}");
            var join = await _api.CallWithRetryAsync("join (appservice)", HttpMethod.Post,
                $"_matrix/client/v3/join/{MatrixApi.Esc(roomId)}?user_id={MatrixApi.Esc(puppet)}", new JsonObject(), _asToken, RequestTimeout, ct).ConfigureAwait(false);
            if (!join.Ok) throw new InvalidOperationException($"join of {puppet}: {join.Describe()}");
            var joinAck = Stopwatch.GetTimestamp();
            AsArrival? joinArrival;
            while ((joinArrival = listener.Arrivals().FirstOrDefault(a => a.Type == "m.room.member" && a.StateKey == puppet)) is null)
                await Task.Delay(10, ct).ConfigureAwait(false);
            // Negative: the transaction came before the join's 200 did.
            var joinDelay = (joinArrival.Ts - joinAck) * 1000.0 / Stopwatch.Frequency;
            Log($"set up {users.Count} users, room {roomId}, puppet {puppet} joined in {sw.Elapsed.TotalSeconds:0.0} s; its join reached the appservice {joinDelay:0} ms after the 200 (negative: before)");
            report.Add(("setup", $"{users.Count} users, one room, puppet {puppet} joined; {F(sw.Elapsed.TotalSeconds)} s; the join reached the appservice {F(joinDelay)} ms after its 200 (negative: before)"));
            return (users.Take(o.Senders).ToList(), roomId, joinDelay);
        }
        catch (OperationCanceledException) when (!hard.IsCancellationRequested)
        {
            throw new InvalidOperationException($"setup did not finish within --setup-timeout-seconds {o.SetupTimeoutSeconds}");
        }
    }

    /// <summary><paramref name="count"/> messages, split over the senders, each sending its share one at a time (a
    /// send waits for the previous one's answer), back to back or, with --rate, each at rate / senders per second.</summary>
    async Task<List<Send>> SendAllAsync(List<User> senders, string roomId, string prefix, int count, CancellationToken hard)
    {
        using var phase = CancellationTokenSource.CreateLinkedTokenSource(hard);
        phase.CancelAfter(TimeSpan.FromSeconds(o.PhaseTimeoutSeconds));
        var all = new ConcurrentQueue<Send>();
        var roomPath = $"_matrix/client/v3/rooms/{MatrixApi.Esc(roomId)}/send/m.room.message/";
        var start = Stopwatch.GetTimestamp();
        var interval = o.Rate > 0 ? senders.Count / (double)o.Rate : 0;
        try
        {
            await Task.WhenAll(senders.Select((u, i) => Task.Run(async () =>
            {
                var share = count / senders.Count + (i < count % senders.Count ? 1 : 0);
                for (var seq = 0; seq < share; seq++)
                {
                    if (interval > 0)
                    {
                        var due = start + (long)((seq + i / (double)senders.Count) * interval * Stopwatch.Frequency);
                        var wait = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), due);
                        if (wait > TimeSpan.Zero) await Task.Delay(wait, phase.Token).ConfigureAwait(false);
                    }
                    var body = $"{prefix}{i} {seq}";
                    var t0 = Stopwatch.GetTimestamp();
                    var r = await _api.CallAsync("send", HttpMethod.Put, roomPath + MatrixApi.Esc($"{prefix.Trim().Replace(' ', '.')}.{i}.{seq}"),
                        new JsonObject { ["msgtype"] = "m.text", ["body"] = body }, u.Token, RequestTimeout, phase.Token).ConfigureAwait(false);
                    all.Enqueue(new Send(i, seq, body, t0, Stopwatch.GetTimestamp(), r.Ok ? MatrixApi.Str(r.Json?["event_id"]) : null));
                }
            }, phase.Token))).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!hard.IsCancellationRequested)
        {
            Log($"warning: sending did not finish within --phase-timeout-seconds {o.PhaseTimeoutSeconds}");
        }
        return [.. all];
    }

    /// <summary>Waits until every event of <paramref name="ids"/> reached the appservice, or none came for
    /// --drain-seconds, or --phase-timeout-seconds passed. Returns whether all came, and how long it waited.</summary>
    async Task<(bool All, TimeSpan Waited)> WaitForAsync(AppserviceListener listener, HashSet<string> ids, CancellationToken hard)
    {
        var sw = Stopwatch.StartNew();
        var lastProgress = Stopwatch.StartNew();
        var seen = -1;
        while (!hard.IsCancellationRequested)
        {
            var n = listener.Arrivals().Select(a => a.EventId).Where(ids.Contains).Distinct(StringComparer.Ordinal).Count();
            if (n >= ids.Count) return (true, sw.Elapsed);
            if (n != seen)
            {
                seen = n;
                lastProgress.Restart();
            }
            if (lastProgress.Elapsed > TimeSpan.FromSeconds(Math.Max(1, o.DrainSeconds)) || sw.Elapsed > TimeSpan.FromSeconds(o.PhaseTimeoutSeconds))
                return (false, sw.Elapsed);
            await Task.Delay(20, hard).ConfigureAwait(false);
        }
        hard.ThrowIfCancellationRequested();
        return (false, sw.Elapsed);
    }

    /// <summary>The run's timed messages in the order of the room's stream: GET /messages?dir=f from the start, in
    /// pages of 1000. Null when it could not be read.</summary>
    async Task<List<string>?> RoomOrderAsync(User reader, string roomId, string prefix, CancellationToken hard)
    {
        using var phase = CancellationTokenSource.CreateLinkedTokenSource(hard);
        phase.CancelAfter(TimeSpan.FromSeconds(o.PhaseTimeoutSeconds));
        var order = new List<string>();
        string? from = null;
        try
        {
            for (var page = 0; page < 10_000; page++)
            {
                var path = $"_matrix/client/v3/rooms/{MatrixApi.Esc(roomId)}/messages?dir=f&limit=1000" + (from is null ? "" : $"&from={MatrixApi.Esc(from)}");
                var r = await _api.CallWithRetryAsync("messages", HttpMethod.Get, path, null, reader.Token, RequestTimeout, phase.Token).ConfigureAwait(false);
                if (!r.Ok) return null;
                var chunk = r.Json?["chunk"] as JsonArray ?? [];
                foreach (var ev in chunk)
                    if (MatrixApi.Str(ev?["content"]?["body"]) is { } b && b.StartsWith(prefix, StringComparison.Ordinal) && MatrixApi.Str(ev?["event_id"]) is { } id)
                        order.Add(id);
                var end = MatrixApi.Str(r.Json?["end"]);
                if (chunk.Count == 0 || end is null || end == from) break;
                from = end;
            }
        }
        catch (OperationCanceledException) when (!hard.IsCancellationRequested)
        {
            return null;
        }
        return order;
    }

    int Analyse(AppserviceListener listener, List<Send> sends, List<Send> acked, string prefix, List<string>? serverOrder, double? cpu,
        Dictionary<int, double?> cpuStart, Dictionary<int, double?> cpuEnd, double joinDelayMs, List<(string, string)> report, Results results)
    {
        var inv = CultureInfo.InvariantCulture;
        var arrivals = listener.Arrivals();
        var txns = listener.Transactions();
        var byId = acked.ToDictionary(s => s.EventId!, StringComparer.Ordinal);
        var byBody = sends.ToDictionary(s => s.Body, StringComparer.Ordinal);
        var ours = arrivals.Where(a => a.Body?.StartsWith(prefix, StringComparison.Ordinal) == true).ToList();
        var first = new Dictionary<string, AsArrival>(StringComparer.Ordinal);
        var duplicates = 0;
        var unacked = 0;
        var mismatched = 0;
        foreach (var a in ours)
        {
            if (!first.TryAdd(a.EventId, a))
            {
                duplicates++;
                continue;
            }
            if (!byId.ContainsKey(a.EventId))
            {
                if (byBody.TryGetValue(a.Body!, out var s) && s.EventId is not null) mismatched++;
                else unacked++;
            }
        }
        var missing = acked.Count(s => !first.ContainsKey(s.EventId!));
        var failedSends = o.Events - acked.Count;

        // Order: per sender, seqs must rise in arrival order; overall, the arrival order must be the room's.
        var arrivalOrder = first.Values.Where(a => byId.ContainsKey(a.EventId)).OrderBy(a => a.Seq).ToList();
        var senderInversions = 0;
        var lastSeq = new Dictionary<int, int>();
        foreach (var a in arrivalOrder)
        {
            var s = byId[a.EventId];
            if (lastSeq.TryGetValue(s.Sender, out var prev) && s.Seq < prev) senderInversions++;
            else lastSeq[s.Sender] = s.Seq;
        }
        // The room's order from /messages, limited to the events that arrived (a lost one is counted above, not here).
        string roomOrder;
        var roomOrderBad = false;
        var displaced = 0;
        if (serverOrder is null)
        {
            roomOrder = "n/a (/messages could not be read)";
        }
        else
        {
            var inRoom = serverOrder.Where(byId.ContainsKey).ToList();
            var expected = inRoom.Where(first.ContainsKey).ToList();
            var inRoomSet = inRoom.ToHashSet(StringComparer.Ordinal);
            var got = arrivalOrder.Select(a => a.EventId).Where(inRoomSet.Contains).ToList();
            displaced = Enumerable.Range(0, expected.Count).Count(i => expected[i] != got[i]);
            var firstDiff = Enumerable.Range(0, expected.Count).FirstOrDefault(i => expected[i] != got[i], -1);
            roomOrderBad = displaced > 0 || inRoom.Count != byId.Count;
            roomOrder = displaced == 0
                ? $"the room's order (GET /messages dir=f, {got.Count} events compared)"
                : $"NOT the room's order (GET /messages dir=f): {displaced} of {got.Count} at another place, the first at #{firstDiff}";
            if (inRoom.Count != byId.Count) roomOrder += $"; /messages holds only {inRoom.Count} of the {byId.Count} acknowledged events";
        }

        // Rates and delays.
        var firstSend = sends.Count > 0 ? sends.Min(s => s.StartTs) : 0;
        var lastAck = acked.Count > 0 ? acked.Max(s => s.AckTs) : 0;
        var lastArrival = arrivalOrder.Count > 0 ? arrivalOrder[^1].Ts : 0;
        var sendSeconds = Stopwatch.GetElapsedTime(firstSend, lastAck).TotalSeconds;
        var windowSeconds = Stopwatch.GetElapsedTime(firstSend, lastArrival).TotalSeconds;
        var sendRate = acked.Count / Math.Max(0.001, sendSeconds);
        var deliveredRate = arrivalOrder.Count / Math.Max(0.001, windowSeconds);
        double? steady = null;
        if (arrivalOrder.Count >= 20)
        {
            int lo = arrivalOrder.Count / 10, hi = arrivalOrder.Count * 9 / 10;
            while (hi < arrivalOrder.Count - 1 && arrivalOrder[hi].Ts == arrivalOrder[lo].Ts) hi++;
            var span = Stopwatch.GetElapsedTime(arrivalOrder[lo].Ts, arrivalOrder[hi].Ts).TotalSeconds;
            if (span > 0) steady = (hi - lo) / span;
        }
        var delays = new List<double>();
        var fromStart = new List<double>();
        var early = 0;
        foreach (var a in arrivalOrder)
        {
            var s = byId[a.EventId];
            var ms = Stopwatch.GetElapsedTime(s.AckTs, a.Ts).TotalMilliseconds;
            if (a.Ts < s.AckTs)
            {
                early++;
                ms = 0;
            }
            delays.Add(ms);
            fromStart.Add(Stopwatch.GetElapsedTime(s.StartTs, a.Ts).TotalMilliseconds);
        }
        var sendMs = acked.Select(s => Stopwatch.GetElapsedTime(s.StartTs, s.AckTs).TotalMilliseconds).ToList();

        // Transactions that carried the run's timed events.
        var timedTxns = arrivalOrder.Select(a => a.Txn).ToHashSet();
        var carrying = txns.Where(t => timedTxns.Contains(t.Index)).ToList();
        var perTxn = carrying.Select(t => (double)t.Events).ToList();
        var meanPerTxn = perTxn.Count > 0 ? perTxn.Average() : 0;
        var full = carrying.Count(t => t.Events >= 100);
        var tail = lastAck > 0 && lastArrival > 0 ? Stopwatch.GetElapsedTime(lastAck, lastArrival).TotalMilliseconds : (double?)null;
        var cpuPerEvent = cpu is { } c && acked.Count > 0 ? c * 1000 / acked.Count : (double?)null;

        report.Add(("senders", $"{acked.Select(s => s.Sender).Distinct().Count()} users, " + (o.Rate > 0 ? $"{o.Rate} sends/s in all" : "each sending back to back")));
        report.Add(("messages sent", $"{acked.Count} acknowledged of {o.Events}" + (failedSends > 0 ? $" ({failedSends} failed or not sent)" : "")));
        report.Add(("send rate", $"{F(sendRate)} events/s (first send to last 200: {F(sendSeconds, "0.00")} s)"));
        report.Add(("send request (ms)", Dist([.. sendMs])));
        report.Add(("delivered", $"{arrivalOrder.Count} of {acked.Count}; missing {missing}, duplicates {duplicates}" +
            (unacked > 0 ? $", of failed sends {unacked}" : "") + (mismatched > 0 ? $", event_id differs from the send's {mismatched}" : "") +
            (listener.RepeatedTxnIds > 0 ? $"; {listener.RepeatedTxnIds} transaction IDs came twice" : "")));
        report.Add(("order", $"per sender: {(senderInversions == 0 ? "every sender's messages in its send order" : $"{senderInversions} arrived before an earlier one of their sender")}; overall: {roomOrder}"));
        report.Add(("delivered rate", $"{F(deliveredRate)} events/s (first send to last arrival: {F(windowSeconds, "0.00")} s)"));
        report.Add(("steady rate", steady is { } st ? $"{F(st)} events/s (between the 10 % and the 90 % arrivals)" : "n/a"));
        report.Add(("transactions", $"{carrying.Count} carried the run's events ({txns.Count} in all, with setup and warm-up); " +
            $"{F(meanPerTxn)} events per transaction (p50 {F(Percentile([.. perTxn], 0.5) ?? 0, "0")}, max {(perTxn.Count > 0 ? perTxn.Max() : 0).ToString(inv)}, {full} full at 100)"));
        report.Add(("send 200 -> txn (ms)", Dist(delays) + (early > 0 ? $"; {early} arrived before the send's 200 (counted as 0)" : "")));
        report.Add(("start -> txn (ms)", Dist(fromStart)));
        report.Add(("last 200 -> last txn", tail is { } t ? $"{F(t)} ms" : "n/a"));
        report.Add(("puppet join -> txn", $"{F(joinDelayMs)} ms (setup, cold; negative: the transaction came before the join's 200)"));
        report.Add(("server CPU", cpuPerEvent is { } cp
            ? $"{F(cpu!.Value)} s from the first send to the last arrival: {F(cp, "0.00")} ms per event" +
              (cpuStart.Count > 1 ? "; " + string.Join(", ", cpuStart.Keys.Select(p => $"{NameOf(p)} {((cpuEnd.GetValueOrDefault(p) ?? 0) - (cpuStart[p] ?? 0)).ToString("0.0", inv)} s")) : "")
            : "n/a"));
        if (listener.Forbidden + listener.OtherRequests > 0)
            report.Add(("listener", $"{listener.Forbidden} requests with a wrong token (403), {listener.OtherRequests} other requests (404)"));

        results.Add("events sent", acked.Count, "0");
        results.Add("send events/s", sendRate);
        results.Add("delivered events/s", deliveredRate);
        results.Add("steady events/s", steady);
        results.Add("transactions", carrying.Count, "0");
        results.Add("events per txn", meanPerTxn);
        results.Add("200->txn p50 ms", Percentile(delays, 0.50));
        results.Add("200->txn p90 ms", Percentile(delays, 0.90));
        results.Add("200->txn p99 ms", Percentile(delays, 0.99));
        results.Add("200->txn max ms", delays.Count > 0 ? delays.Max() : null);
        results.Add("missing", missing, "0");
        results.Add("duplicates", duplicates, "0");
        results.Add("sender order violations", senderInversions, "0");
        results.Add("room order displaced", serverOrder is null ? null : displaced, "0");
        results.Add("CPU ms/event", cpuPerEvent, "0.00");

        var ok = missing == 0 && duplicates == 0 && unacked == 0 && mismatched == 0 && senderInversions == 0 && !roomOrderBad && failedSends == 0;
        report.Add(("verdict", ok ? "every event arrived exactly once, in order" : "FAILED (see delivered, order, messages sent)"));
        return ok ? 0 : 1;

        string NameOf(int pid) => _names.GetValueOrDefault(pid) ?? pid.ToString(inv);
    }

    readonly Dictionary<int, string> _names = [];
}

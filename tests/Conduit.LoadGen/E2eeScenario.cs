using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json.Nodes;
using Conduit.Common.Crypto;
using static Conduit.LoadGen.Out;

namespace Conduit.LoadGen;

/// <summary>
/// The e2ee scenario: three figures of the keys service, each over --repeat timed runs. One user (the hub) owns the
/// device whose one-time keys are claimed, receives the to-device messages and makes the /keys/query; --senders
/// other users claim and send; --users users in all share --rooms rooms with the hub for the query.
/// </summary>
internal sealed partial class ScenarioRun
{
    const string ToDeviceType = "m.loadgen";
    const int KeysPerUpload = 100;
    static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(60);
    static readonly TimeSpan SyncServerTimeout = TimeSpan.FromMilliseconds(30_000);

    async Task<int> E2eeAsync(List<(string, string)> report, CancellationToken hard)
    {
        // The hub and the senders first: the first two figures need no more, and do not wait for the big setup.
        var users = await RegisterAsync(o.Senders + 1, o.Senders + 1, hard).ConfigureAwait(false);
        if (users is null) return 1;
        using var hub = new E2eeDevice(users[0]);
        var senders = users.Skip(1).ToList();
        var up = await hub.UploadAsync(_api, new JsonObject { ["device_keys"] = hub.DeviceKeys() }, hard).ConfigureAwait(false);
        if (!up.Ok)
        {
            Log($"error: the hub's device keys were refused: {up.Describe()}");
            return 1;
        }

        var ok = await ClaimsAsync(report, hub, senders, hard).ConfigureAwait(false);
        ok &= await ToDeviceAsync(report, hub.User, senders, hard).ConfigureAwait(false);
        ok &= await QueryAsync(report, hub.User, senders, hard).ConfigureAwait(false);
        return ok ? 0 : 1;
    }

    /// <summary>Median by <paramref name="rate"/> (the upper one of an even count), and every run's rate in order.</summary>
    static (T Median, List<double> Rates) MedianRun<T>(List<T> runs, Func<T, double> rate) =>
        (runs.OrderBy(rate).ElementAt(runs.Count / 2), runs.Select(rate).ToList());

    static string RunsText(List<double> values, string unit) =>
        values.Count > 1 ? $"; median of {values.Count} runs: {string.Join(", ", values.Select(x => F(x)))} {unit}" : "";

    // ================= 1. /keys/claim =================

    /// <summary>The claims of a quarter of a run's keys: claims/s and server CPU per claim.</summary>
    sealed record Quarter(double PerSecond, double? CpuMs)
    {
        public override string ToString() => $"{F(PerSecond)} claims/s, " + (CpuMs is { } c ? $"{F(c, "0.00")} ms CPU per claim" : "CPU n/a");

        /// <summary>Between two (time, server CPU s) readings <paramref name="claims"/> claims apart.</summary>
        public static Quarter? Between((long Ts, double? Cpu)? from, (long Ts, double? Cpu)? to, int claims) =>
            from is { } a && to is { } b && claims > 0
                ? new Quarter(claims / Math.Max(1e-6, Stopwatch.GetElapsedTime(a.Ts, b.Ts).TotalSeconds), Cpu.MsPerEvent(a.Cpu, b.Cpu, claims))
                : null;
    }

    sealed record ClaimRun(int Keys, int Claims, int Distinct, int Duplicates, int Unknown, int Mismatched, int FallbackOk,
        int FallbackWrong, int Empty, int Errors, TimeSpan Wall, List<double> Ms, TimeSpan Upload, int? CountAfterUpload,
        Quarter? First, Quarter? Last, double? CpuMsPerClaim, bool CutShort)
    {
        public double ClaimsPerSecond => Claims / Math.Max(0.001, Wall.TotalSeconds);
        public int Missing => Keys - Distinct;
        /// <summary>The upload counted every key, each was claimed once, every claimer then got the fallback key.</summary>
        public bool Clean(int claimers) => Duplicates + Unknown + Mismatched + Missing + FallbackWrong + Empty + Errors == 0
            && FallbackOk == claimers && CountAfterUpload == Keys && !CutShort;
    }

    async Task<bool> ClaimsAsync(List<(string, string)> report, E2eeDevice hub, List<User> claimers, CancellationToken hard)
    {
        if (o.Warmup > 0)
        {
            var w = await ClaimRunAsync("W", Math.Min(o.Warmup, o.OneTimeKeys), hub, claimers, hard).ConfigureAwait(false);
            if (w is null) return false;
            Log($"claim warm-up: {w.Claims} claims, {w.ClaimsPerSecond:0} claims/s");
        }
        var runs = new List<ClaimRun>();
        for (var i = 1; i <= o.Repeat; i++)
        {
            var r = await ClaimRunAsync($"R{i}", o.OneTimeKeys, hub, claimers, hard).ConfigureAwait(false);
            if (r is null) return false;
            runs.Add(r);
        }
        var (m, rates) = MedianRun(runs, r => r.ClaimsPerSecond);
        int Sum(Func<ClaimRun, int> f) => runs.Sum(f);
        var uploadMs = runs.Select(r => r.Upload.TotalMilliseconds).ToList();
        var uploadMedian = Percentile(uploadMs, 0.5)!.Value;

        report.Add(("/keys/claim", $"{F(m.ClaimsPerSecond)} claims/s: {m.Claims} claims by {claimers.Count} clients in {F(m.Wall.TotalSeconds, "0.00")} s" +
            (m.CutShort ? " (cut short by --phase-timeout-seconds)" : "") + RunsText(rates, "claims/s")));
        report.Add(("  claim (ms)", Dist(m.Ms)));
        report.Add(("  first quarter", $"{m.First?.ToString() ?? "n/a"} (median run: the first quarter of its keys claimed)"));
        report.Add(("  last quarter", $"{m.Last?.ToString() ?? "n/a"} (the last quarter: a claim that slows as keys go shows here)"));
        report.Add(("  server CPU", m.CpuMsPerClaim is { } c ? $"{F(c, "0.00")} ms per claim" : "n/a"));
        report.Add(("  checks", $"over {runs.Count} runs of {o.OneTimeKeys} keys: distinct keys claimed {Sum(r => r.Distinct)} of {Sum(r => r.Keys)}, " +
            $"duplicates {Sum(r => r.Duplicates)}, missing {Sum(r => r.Missing)}, unknown {Sum(r => r.Unknown)}, content differs {Sum(r => r.Mismatched)}; " +
            $"after exhaustion the fallback key {Sum(r => r.FallbackOk)} of {runs.Count * claimers.Count} (wrong key {Sum(r => r.FallbackWrong)}, nothing {Sum(r => r.Empty)}); " +
            $"failed claims {Sum(r => r.Errors)}"));
        report.Add(("  upload", $"{o.OneTimeKeys} signed keys in {(o.OneTimeKeys + KeysPerUpload - 1) / KeysPerUpload} requests of {KeysPerUpload}: " +
            $"{F(uploadMedian / 1000, "0.00")} s, {F(o.OneTimeKeys / (uploadMedian / 1000))} keys/s (median); count after upload " +
            string.Join(", ", runs.Select(r => r.CountAfterUpload?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "n/a"))));
        _results.Add("claims/s", m.ClaimsPerSecond);
        _results.Add("claim p50 ms", Percentile(m.Ms, 0.50));
        _results.Add("claim p99 ms", Percentile(m.Ms, 0.99));
        _results.Add("claims/s first quarter", m.First?.PerSecond);
        _results.Add("claims/s last quarter", m.Last?.PerSecond);
        _results.Add("CPU ms/claim 1st quarter", m.First?.CpuMs, "0.00");
        _results.Add("CPU ms/claim last quarter", m.Last?.CpuMs, "0.00");
        _results.Add("CPU ms/claim", m.CpuMsPerClaim, "0.00");
        _results.Add("claim duplicates", Sum(r => r.Duplicates), "0");
        _results.Add("claim missing", Sum(r => r.Missing), "0");
        _results.Add("fallback after exhaustion", $"{Sum(r => r.FallbackOk)}/{runs.Count * claimers.Count}");
        _results.Add("OTK upload keys/s", o.OneTimeKeys / (uploadMedian / 1000));
        return runs.All(r => r.Clean(claimers.Count));
    }

    /// <summary>
    /// Uploads <paramref name="keys"/> signed one-time keys (IDs <c>TAGnI</c>) and a new fallback key (<c>TAGfb</c>), then
    /// the claimers claim one key per request, back to back, each until it gets the fallback key (or nothing). Null
    /// when the upload fails.
    /// </summary>
    async Task<ClaimRun?> ClaimRunAsync(string tag, int keys, E2eeDevice hub, List<User> claimers, CancellationToken hard)
    {
        using var phase = Phase(hard);
        var owner = hub.User;
        var expected = new Dictionary<string, JsonObject>(StringComparer.Ordinal);
        var fallbackId = $"{E2eeDevice.OneTimeAlgorithm}:{tag}fb";
        var fallback = hub.SignedKey(E2eeDevice.RandomKey(), fallback: true);

        // Upload: KeysPerUpload at a time, the fallback key with the first batch.
        int? count = null;
        var uploadStart = Stopwatch.GetTimestamp();
        for (var i = 0; i < keys; i += KeysPerUpload)
        {
            var otks = new JsonObject();
            for (var j = i; j < Math.Min(keys, i + KeysPerUpload); j++)
            {
                var key = hub.SignedKey(E2eeDevice.RandomKey());
                var id = $"{E2eeDevice.OneTimeAlgorithm}:{tag}n{j}";
                expected[id] = key;
                otks[id] = key.DeepClone();
            }
            var body = new JsonObject { ["one_time_keys"] = otks };
            if (i == 0) body["fallback_keys"] = new JsonObject { [fallbackId] = fallback.DeepClone() };
            var r = await hub.UploadAsync(_api, body, phase.Token).ConfigureAwait(false);
            if (!r.Ok)
            {
                Log($"error: one-time key upload {i / KeysPerUpload + 1} refused: {r.Describe()}");
                return null;
            }
            count = r.Json?["one_time_key_counts"]?[E2eeDevice.OneTimeAlgorithm] is JsonValue v && v.TryGetValue<int>(out var n) ? n : null;
        }
        var upload = Stopwatch.GetElapsedTime(uploadStart);

        var claimed = new ConcurrentDictionary<string, byte>(StringComparer.Ordinal);
        // (time, server CPU) when a quarter and three quarters of the keys are claimed, and all of them.
        var quarter = keys / 4;
        var marks = new (long Ts, double? Cpu)?[3];
        var distinct = 0;
        var ms = new ConcurrentQueue<double>();
        int claims = 0, duplicates = 0, unknown = 0, mismatched = 0, fallbackOk = 0, fallbackWrong = 0, empty = 0, errors = 0;

        async Task Claimer(User u)
        {
            var body = new JsonObject
            {
                ["one_time_keys"] = new JsonObject { [owner.UserId] = new JsonObject { [owner.DeviceId] = E2eeDevice.OneTimeAlgorithm } },
            };
            var failed = 0;
            while (true)
            {
                var t0 = Stopwatch.GetTimestamp();
                var r = await _api.CallAsync("keys/claim", HttpMethod.Post, "_matrix/client/v3/keys/claim", body, u.Token,
                    RequestTimeout, phase.Token).ConfigureAwait(false);
                var t1 = Stopwatch.GetTimestamp();
                if (!r.Ok)
                {
                    Interlocked.Increment(ref errors);
                    if (++failed >= 10) return;
                    continue;
                }
                Interlocked.Increment(ref claims);
                ms.Enqueue(Stopwatch.GetElapsedTime(t0, t1).TotalMilliseconds);
                if (r.Json?["one_time_keys"]?[owner.UserId]?[owner.DeviceId] is not JsonObject got || got.Count == 0)
                {
                    Interlocked.Increment(ref empty);
                    return;
                }
                var done = false;
                foreach (var (id, key) in got)
                {
                    if (id == fallbackId)
                    {
                        if (JsonNode.DeepEquals(key, fallback)) Interlocked.Increment(ref fallbackOk);
                        else Interlocked.Increment(ref fallbackWrong);
                        done = true;
                    }
                    else if (!expected.TryGetValue(id, out var sent))
                        Interlocked.Increment(ref unknown);
                    else if (!claimed.TryAdd(id, 0))
                        Interlocked.Increment(ref duplicates);
                    else
                    {
                        var n = Interlocked.Increment(ref distinct);
                        var mark = n == quarter ? 0 : n == keys - quarter ? 1 : n == keys ? 2 : -1;
                        if (mark >= 0) marks[mark] = (t1, Cpu.ReadSeconds(o.Pids));
                        if (!JsonNode.DeepEquals(key, sent)) Interlocked.Increment(ref mismatched);
                    }
                }
                if (done) return;
            }
        }

        var cpu0 = Cpu.ReadSeconds(o.Pids);
        var start = Stopwatch.GetTimestamp();
        var cut = await CutShortAsync(Task.WhenAll(claimers.Select(Claimer)), $"claims {tag}", hard).ConfigureAwait(false);
        var wall = Stopwatch.GetElapsedTime(start);
        var cpu = Cpu.MsPerEvent(cpu0, Cpu.ReadSeconds(o.Pids), claims);

        var first = Quarter.Between((start, cpu0), marks[0], quarter);
        var last = Quarter.Between(marks[1], marks[2], quarter);
        var run = new ClaimRun(keys, claims, claimed.Count, duplicates, unknown, mismatched, fallbackOk, fallbackWrong, empty, errors,
            wall, ms.ToList(), upload, count, first, last, cpu, cut);
        Log($"claims {tag}: {keys} keys uploaded in {upload.TotalSeconds:0.00} s (count {count?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "n/a"}); " +
            $"{claims} claims in {wall.TotalSeconds:0.00} s, {run.ClaimsPerSecond:0} claims/s (first quarter {first}; last {last}), " +
            $"server CPU {cpu:0.00} ms per claim; " +
            $"distinct {claimed.Count}, duplicates {duplicates}, unknown {unknown}, fallback {fallbackOk}/{claimers.Count}, empty {empty}, errors {errors}");
        return run;
    }

    // ================= 2. to-device messages =================

    sealed record ToDeviceRun(int Attempts, int Sent, int Delivered, int Duplicates, int Missing, int OfFailedSends, TimeSpan SendWall,
        TimeSpan Wall, List<double> LatencyMs, List<double> SendMs, double? CpuMsPerMessage, bool CutShort)
    {
        public double DeliveredPerSecond => Delivered / Math.Max(0.001, Wall.TotalSeconds);
    }

    /// <summary>What the receiver's /sync loop saw: first arrival per (run, seq), duplicates per run, responses.</summary>
    sealed class ToDeviceInbox
    {
        public ConcurrentDictionary<(int Run, int Seq), long> Arrivals { get; } = new();
        public ConcurrentDictionary<int, int> Duplicates { get; } = new();
        public int Syncs;
        public int SyncsWithMessages;
        public int MostInOneSync;
    }

    async Task<bool> ToDeviceAsync(List<(string, string)> report, User receiver, List<User> senders, CancellationToken hard)
    {
        await InSetupAsync(ct => _setup.InitialSyncAsync([receiver], ct), hard).ConfigureAwait(false);
        if (receiver.Since is null)
        {
            Log("error: the receiver's initial /sync failed");
            return false;
        }
        var inbox = new ToDeviceInbox();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(hard);
        var loop = ReceiveLoopAsync(receiver, inbox, stop.Token);
        var runs = new List<ToDeviceRun>();
        try
        {
            if (o.Warmup > 0)
            {
                var w = await ToDeviceRunAsync(0, Math.Min(o.Warmup, o.Events), false, receiver, senders, inbox, hard).ConfigureAwait(false);
                Log($"to-device warm-up: {w.Delivered} delivered, {w.DeliveredPerSecond:0} messages/s");
            }
            for (var i = 1; i <= o.Repeat; i++)
                runs.Add(await ToDeviceRunAsync(i, o.Events, o.SecondsGiven, receiver, senders, inbox, hard).ConfigureAwait(false));
        }
        finally
        {
            await stop.CancelAsync().ConfigureAwait(false);
            try { await loop.WaitAsync(TimeSpan.FromSeconds(10), CancellationToken.None).ConfigureAwait(false); }
            catch (TimeoutException) { Log("warning: the receiver's /sync loop did not stop within 10 s"); }
        }

        var (m, rates) = MedianRun(runs, r => r.DeliveredPerSecond);
        int Sum(Func<ToDeviceRun, int> f) => runs.Sum(f);
        var what = o.SecondsGiven ? $"{o.Seconds} s of sends" : $"{o.Events} messages";
        report.Add(("to-device", $"{F(m.DeliveredPerSecond)} messages/s delivered: {m.Delivered} of {m.Sent} sent by {senders.Count} senders, " +
            $"first send to last delivery {F(m.Wall.TotalSeconds, "0.00")} s (sends took {F(m.SendWall.TotalSeconds, "0.00")} s, " +
            $"{F(m.Sent / Math.Max(0.001, m.SendWall.TotalSeconds))}/s)" + (m.CutShort ? " (cut short)" : "") + RunsText(rates, "messages/s")));
        report.Add(("  send->/sync (ms)", Dist(m.LatencyMs) + "  (send request start -> the receiver's /sync response)"));
        report.Add(("  sendToDevice (ms)", Dist(m.SendMs)));
        report.Add(("  server CPU", m.CpuMsPerMessage is { } c ? $"{F(c, "0.00")} ms per message (send and delivery)" : "n/a"));
        report.Add(("  checks", $"over {runs.Count} runs of {what}: delivered {Sum(r => r.Delivered)} of {Sum(r => r.Sent)} sent, " +
            $"duplicates {Sum(r => r.Duplicates)}, missing {Sum(r => r.Missing)}, delivered of failed sends {Sum(r => r.OfFailedSends)}, " +
            $"failed sends {Sum(r => r.Attempts - r.Sent)}; {inbox.Syncs} /sync responses, {inbox.SyncsWithMessages} with messages, at most {inbox.MostInOneSync} in one"));
        _results.Add("to-device msgs/s", m.DeliveredPerSecond);
        _results.Add("to-device p50 ms", Percentile(m.LatencyMs, 0.50));
        _results.Add("to-device p99 ms", Percentile(m.LatencyMs, 0.99));
        _results.Add("sendToDevice p50 ms", Percentile(m.SendMs, 0.50));
        _results.Add("CPU ms/to-device msg", m.CpuMsPerMessage, "0.00");
        _results.Add("to-device duplicates", Sum(r => r.Duplicates), "0");
        _results.Add("to-device missing", Sum(r => r.Missing), "0");
        return runs.All(r => r.Duplicates == 0 && r.Missing == 0 && r.Sent == r.Attempts && !r.CutShort);
    }

    /// <summary>The receiver: /sync long-polls (since chained) until stopped, noting when each message first arrives.</summary>
    async Task ReceiveLoopAsync(User u, ToDeviceInbox inbox, CancellationToken stop)
    {
        var runId = _setup.RunId;
        try
        {
            while (!stop.IsCancellationRequested)
            {
                var path = $"_matrix/client/v3/sync?since={MatrixApi.Esc(u.Since!)}&timeout={(int)SyncServerTimeout.TotalMilliseconds}";
                var r = await _api.CallAsync("sync", HttpMethod.Get, path, null, u.Token, SyncServerTimeout + TimeSpan.FromSeconds(15), stop)
                    .ConfigureAwait(false);
                var arrival = Stopwatch.GetTimestamp();
                if (!r.Ok)
                {
                    await Task.Delay(r.RetryAfter ?? TimeSpan.FromSeconds(1), stop).ConfigureAwait(false);
                    continue;
                }
                inbox.Syncs++;
                if (MatrixApi.Str(r.Json?["next_batch"]) is { } next) u.Since = next;
                if (r.Json?["to_device"]?["events"] is not JsonArray events || events.Count == 0) continue;
                inbox.SyncsWithMessages++;
                inbox.MostInOneSync = Math.Max(inbox.MostInOneSync, events.Count);
                foreach (var ev in events)
                {
                    var content = ev?["content"];
                    if (MatrixApi.Str(ev?["type"]) != ToDeviceType || MatrixApi.Str(content?["run"]) != runId) continue;
                    if (content?["rep"] is not JsonValue rv || !rv.TryGetValue<int>(out var run)
                        || content["seq"] is not JsonValue sv || !sv.TryGetValue<int>(out var seq)) continue;
                    if (!inbox.Arrivals.TryAdd((run, seq), arrival))
                        inbox.Duplicates.AddOrUpdate(run, 1, (_, n) => n + 1);
                }
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            // stopping
        }
    }

    /// <summary>
    /// The senders send to the receiver's device, each back to back, <paramref name="count"/> messages in all (or for
    /// --seconds when <paramref name="forSeconds"/>); then up to --drain-seconds for the deliveries still on their way.
    /// </summary>
    async Task<ToDeviceRun> ToDeviceRunAsync(int run, int count, bool forSeconds, User receiver, List<User> senders, ToDeviceInbox inbox,
        CancellationToken hard)
    {
        using var phase = Phase(hard, forSeconds ? TimeSpan.FromSeconds(o.Seconds) : default);
        var runId = _setup.RunId;
        var starts = new ConcurrentDictionary<int, long>();
        var sent = new ConcurrentDictionary<int, byte>();
        var sendMs = new ConcurrentQueue<double>();
        var next = 0;
        var attempts = 0;
        var sendEnd = Stopwatch.GetTimestamp() + (long)(o.Seconds * (double)Stopwatch.Frequency);

        async Task Sender(User u)
        {
            while (true)
            {
                var seq = Interlocked.Increment(ref next);
                if (forSeconds ? Stopwatch.GetTimestamp() >= sendEnd : seq > count) return;
                Interlocked.Increment(ref attempts);
                var content = new JsonObject
                {
                    ["run"] = runId, ["rep"] = run, ["seq"] = seq, ["sent_ts"] = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(),
                };
                var body = new JsonObject { ["messages"] = new JsonObject { [receiver.UserId] = new JsonObject { [receiver.DeviceId] = content } } };
                var t0 = Stopwatch.GetTimestamp();
                starts[seq] = t0;
                var r = await _api.CallAsync("sendToDevice", HttpMethod.Put,
                    $"_matrix/client/v3/sendToDevice/{ToDeviceType}/{MatrixApi.Esc($"lg{runId}.{run}.{seq}")}", body, u.Token,
                    SendTimeout, phase.Token).ConfigureAwait(false);
                if (!r.Ok) continue;
                sendMs.Enqueue(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
                sent[seq] = 0;
            }
        }

        int Delivered() => sent.Keys.Count(s => inbox.Arrivals.ContainsKey((run, s)));

        var cpu0 = Cpu.ReadSeconds(o.Pids);
        var start = Stopwatch.GetTimestamp();
        var cut = await CutShortAsync(Task.WhenAll(senders.Select(Sender)), $"to-device run {run}", hard).ConfigureAwait(false);
        var sendWall = Stopwatch.GetElapsedTime(start);
        var drainStart = Stopwatch.GetTimestamp();
        while (Delivered() < sent.Count && Stopwatch.GetElapsedTime(drainStart) < TimeSpan.FromSeconds(o.DrainSeconds))
            await Task.Delay(20, hard).ConfigureAwait(false);
        var cpu1 = Cpu.ReadSeconds(o.Pids);

        var latency = new List<double>();
        long lastArrival = start;
        int delivered = 0, ofFailed = 0;
        foreach (var (seq, t0) in starts)
        {
            if (!inbox.Arrivals.TryGetValue((run, seq), out var arrival)) continue;
            if (!sent.ContainsKey(seq))
            {
                ofFailed++;
                continue;
            }
            delivered++;
            latency.Add(Stopwatch.GetElapsedTime(t0, arrival).TotalMilliseconds);
            lastArrival = Math.Max(lastArrival, arrival);
        }
        var result = new ToDeviceRun(attempts, sent.Count, delivered, inbox.Duplicates.GetValueOrDefault(run), sent.Count - delivered, ofFailed,
            sendWall, Stopwatch.GetElapsedTime(start, lastArrival), latency, sendMs.ToList(), Cpu.MsPerEvent(cpu0, cpu1, sent.Count), cut);
        if (run > 0)
            Log($"to-device run {run}: {result.Sent}/{attempts} sent in {sendWall.TotalSeconds:0.00} s, {delivered} delivered in " +
                $"{result.Wall.TotalSeconds:0.00} s ({result.DeliveredPerSecond:0}/s), server CPU {result.CpuMsPerMessage:0.00} ms per message, " +
                $"duplicates {result.Duplicates}, missing {result.Missing}");
        return result;
    }

    // ================= 3. /keys/query =================

    async Task<bool> QueryAsync(List<(string, string)> report, User querier, List<User> senders, CancellationToken hard)
    {
        // Everyone but the hub: the senders and the rest, registered now.
        var sw = Stopwatch.StartNew();
        var rest = await InSetupAsync(ct => _setup.RegisterAsync(o.Users - senders.Count, ct, first: senders.Count + 1), hard).ConfigureAwait(false);
        var members = senders.Concat(rest).ToList();
        Log($"registered {rest.Count}/{o.Users - senders.Count} more users in {sw.Elapsed.TotalSeconds:0.0} s");
        if (members.Count < o.Users)
        {
            Log($"error: {members.Count} of {o.Users} users to query are registered");
            return false;
        }

        var devices = members.Select(u => new E2eeDevice(u)).ToList();
        try
        {
            sw.Restart();
            var refused = 0;
            await InSetupAsync(ct => Parallel.ForEachAsync(devices, new ParallelOptions { MaxDegreeOfParallelism = o.SetupConcurrency, CancellationToken = ct },
                async (d, token) =>
                {
                    var r = await d.UploadAsync(_api, new JsonObject { ["device_keys"] = d.DeviceKeys() }, token).ConfigureAwait(false);
                    if (!r.Ok) Interlocked.Increment(ref refused);
                }), hard).ConfigureAwait(false);
            Log($"{devices.Count - refused}/{devices.Count} users uploaded device keys in {sw.Elapsed.TotalSeconds:0.0} s");

            // Rooms of about Users / Rooms members each, created by the querier, set up --setup-concurrency at a time.
            sw.Restart();
            var problems = new ConcurrentQueue<string>();
            var roomIds = new ConcurrentBag<string>();
            await InSetupAsync(ct => Parallel.ForEachAsync(Enumerable.Range(0, o.Rooms),
                new ParallelOptions { MaxDegreeOfParallelism = o.SetupConcurrency, CancellationToken = ct },
                async (slot, token) =>
                {
                    var roomMembers = members.Where((_, i) => i % o.Rooms == slot);
                    var (roomId, joined) = await _setup.CreateRoomAsync(querier, roomMembers, $"loadgen {_setup.RunId} e2ee {slot}", problems, token)
                        .ConfigureAwait(false);
                    if (roomId is not null) roomIds.Add(roomId);
                }), hard).ConfigureAwait(false);
            foreach (var p in problems.Take(5)) Log($"  {p}");
            var setupTime = sw.Elapsed;
            // Who shares a room with the querier, as the server sees it.
            var sharing = new HashSet<string>(StringComparer.Ordinal);
            foreach (var roomId in roomIds)
            {
                var r = await _api.CallAsync("joined_members", HttpMethod.Get, $"_matrix/client/v3/rooms/{MatrixApi.Esc(roomId)}/joined_members",
                    null, querier.Token, RequestTimeout, hard).ConfigureAwait(false);
                if (r.Json?["joined"] is JsonObject joined) sharing.UnionWith(joined.Select(kv => kv.Key).Where(id => id != querier.UserId));
            }
            Log($"set up {roomIds.Count}/{o.Rooms} rooms in {setupTime.TotalSeconds:0.0} s: {sharing.Count} of {members.Count} users share one with the querier");

            // The query: every member, all devices. One untimed, then --repeat timed.
            var wanted = new JsonObject();
            foreach (var u in members) wanted[u.UserId] = new JsonArray();
            var body = new JsonObject { ["device_keys"] = wanted };
            var expectedKey = devices.ToDictionary(d => d.User.UserId, d => d.Ed.PublicKeyBase64, StringComparer.Ordinal);
            int UsersWithKeys(ApiResult r) => members.Count(u =>
                MatrixApi.Str(r.Json?["device_keys"]?[u.UserId]?[u.DeviceId]?["keys"]?[$"ed25519:{u.DeviceId}"]) == expectedKey[u.UserId]);

            var first = await _api.CallAsync("keys/query", HttpMethod.Post, "_matrix/client/v3/keys/query", body, querier.Token, RequestTimeout, hard)
                .ConfigureAwait(false);
            // The first answer's keys must carry their devices' valid self-signatures.
            var badSignatures = devices.Count(d =>
                first.Json?["device_keys"]?[d.User.UserId]?[d.User.DeviceId] is not JsonObject k
                || !JsonSigning.Verify(k, d.User.UserId, d.Ed.KeyId, d.Ed.PublicKey));
            var times = new List<double>();
            var sizes = new List<long>();
            var usersOk = new List<int>();
            string? failure = first.Ok ? null : first.Describe();
            // Server CPU over all the timed queries (its clock ticks every 10 ms: too coarse for one query).
            var cpu0 = Cpu.ReadSeconds(o.Pids);
            for (var i = 0; i < o.Repeat && failure is null; i++)
            {
                var r = await _api.CallAsync("keys/query", HttpMethod.Post, "_matrix/client/v3/keys/query", body, querier.Token,
                    TimeSpan.FromSeconds(o.PhaseTimeoutSeconds), hard).ConfigureAwait(false);
                if (!r.Ok)
                {
                    failure = r.Describe();
                    break;
                }
                times.Add(r.Elapsed.TotalMilliseconds);
                sizes.Add(r.Bytes);
                usersOk.Add(UsersWithKeys(r));
                Log($"/keys/query {i + 1}: {r.Elapsed.TotalMilliseconds:0.0} ms, {r.Bytes / 1024.0:0} KB, {usersOk[^1]} users with their device keys");
            }
            var cpuPerQuery = Cpu.MsPerEvent(cpu0, Cpu.ReadSeconds(o.Pids), times.Count);
            var median = Percentile([.. times], 0.5);
            var allOk = failure is null && usersOk.All(n => n == members.Count) && badSignatures == 0 && sharing.Count == members.Count;
            report.Add(("/keys/query", failure ?? $"{F(median ?? 0)} ms median, {F(times.Max())} ms max, {F(sizes.Max() / 1024.0)} KB, for {members.Count} users" +
                RunsText(times, "ms")));
            report.Add(("  rooms", $"{roomIds.Count} rooms of the querier's: {sharing.Count} of {members.Count} users share one with it " +
                $"(joined_members; {F(setupTime.TotalSeconds)} s to set up)"));
            report.Add(("  server CPU", cpuPerQuery is { } c ? $"{F(c)} ms per query (mean over the timed queries)" : "n/a"));
            report.Add(("  checks", $"users with their device keys: {string.Join(", ", usersOk)} of {members.Count}; signatures that do not verify {badSignatures}"));
            _results.Add("query ms", median);
            _results.Add("query max ms", times.Count > 0 ? times.Max() : null);
            _results.Add("query KB", sizes.Count > 0 ? sizes.Max() / 1024.0 : null, "0");
            _results.Add("query users ok", usersOk.Count > 0 ? $"{usersOk.Min()}/{members.Count}" : "n/a");
            _results.Add("query CPU ms", cpuPerQuery);
            return allOk;
        }
        finally
        {
            foreach (var d in devices) d.Dispose();
        }
    }
}

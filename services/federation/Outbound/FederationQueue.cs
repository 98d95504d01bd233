using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common.Storage;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using K = Conduit.Common.Storage.Keys;

namespace Conduit.Federation.Outbound;

/// <summary>
/// The outbound federation queue (server-server API, "Transactions"). PDUs and durable EDUs are written to the store
/// before <see cref="EnqueuePdu"/> / <see cref="EnqueueEdu"/> return; typing, presence and receipt EDUs are kept in
/// memory only. Each destination has its own loop with at most one transaction in flight, carrying up to 50 PDUs and
/// 100 EDUs in the order they were queued; a failed transaction is retried with the same ID. A failing destination
/// backs off (4 s, 16 s, 60 s, then 10 minutes doubling with jitter up to 7 days, stored across restarts) without
/// holding back the others; after an hour of failures its queued PDUs are dropped and only the newest PDU of each room
/// is sent when it is back (catch-up; the receiver fetches the rest with get_missing_events). An authenticated request
/// from a destination (<see cref="Wake"/>) ends its backoff. Nothing is sent without an <see cref="ITransactionSender"/>.
/// </summary>
public sealed partial class FederationQueue : IHostedService, IDisposable
{
    /// <summary>EDU types that may be lost (Synapse drops them during catch-up too).</summary>
    public static readonly IReadOnlySet<string> EphemeralEduTypes = new HashSet<string>(StringComparer.Ordinal) { "m.typing", "m.presence", "m.receipt" };

    readonly IKeyValueStore _store;
    readonly IKvMap _outbound;
    readonly IKvMap _destinations;
    readonly IKvMap _catchUp;
    readonly ITransactionSender? _sender;
    readonly FederationQueueOptions _options;
    readonly TimeProvider _time;
    readonly ILogger _log;
    readonly SemaphoreSlim _sendSlots;
    readonly CancellationTokenSource _stop = new();
    /// <summary>Guards every destination's state and the store writes of the queue; never held across a send.</summary>
    readonly Lock _gate = new();
    readonly Dictionary<string, Dest> _dests = new(StringComparer.Ordinal);
    /// <summary>Destinations a transaction reached since this process started: the newest sequence number it carried
    /// (the admin API's last_successful_stream_ordering). In memory only; guarded by <see cref="_gate"/>.</summary>
    readonly Dictionary<string, ulong> _delivered = new(StringComparer.Ordinal);
    /// <summary>The last sequence number given out; sequence numbers below <see cref="_reserved"/> are never given out again.</summary>
    ulong _seq;
    ulong _reserved;
    bool _started;

    /// <summary>The key in <see cref="FederationFamilies.Destinations"/> of the sequence reservation (no server name starts with 0xFF).</summary>
    static readonly byte[] ReservationKey = [K.Sep];
    const ulong ReservationStep = 1 << 20;

    public FederationQueue(IKeyValueStore store, ITransactionSender? sender, FederationQueueOptions? options = null, TimeProvider? time = null, ILogger<FederationQueue>? log = null)
    {
        _store = store;
        _outbound = store.Map(FederationFamilies.Outbound);
        _destinations = store.Map(FederationFamilies.Destinations);
        _catchUp = store.Map(FederationFamilies.CatchUp);
        _sender = sender;
        _options = options ?? FederationQueueOptions.Default;
        _time = time ?? TimeProvider.System;
        _log = (ILogger?)log ?? NullLogger.Instance;
        _sendSlots = new(_options.MaxConcurrentSends);
        Load();
    }

    /// <summary>One destination; every field is guarded by <see cref="_gate"/>.</summary>
    sealed class Dest(string name)
    {
        public string Name { get; } = name;
        public int Failures;
        /// <summary>The current long backoff (ms); 0 while the short retry delays last.</summary>
        public long IntervalMs;
        public long RetryAtMs;
        /// <summary>When the current streak of failures began (ms), 0 without failures.</summary>
        public long SinceMs;
        /// <summary>The last failed attempt (ms) and the delay chosen after it; in memory (estimated from the stored state after a restart).</summary>
        public long LastFailureMs, LastDelayMs;
        public bool CatchUp;
        public readonly List<(ulong Seq, JsonObject Edu)> Ephemeral = [];
        public Task? Loop;
        public bool Waiting;
        public bool Sending;
        public TaskCompletionSource Wakeup = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public byte[] Prefix { get; } = K.Prefix(name);
    }

    /// <summary>A transaction read from the queue: a run of queued items, or (catch-up) the newest PDU of some rooms.</summary>
    sealed record Batch(string TxnId, List<JsonObject> Pdus, List<JsonObject> Edus, ulong? FirstDurable, ulong? LastDurable, ulong LastSeq,
        List<(byte[] Key, ulong Seq)>? CatchUpKeys);

    long NowMs => _time.GetUtcNow().ToUnixTimeMilliseconds();

    /// <summary>Queues a PDU of <paramref name="roomId"/> for each destination, durably (one store batch) before returning.</summary>
    public void EnqueuePdu(IEnumerable<string> destinations, string roomId, JsonObject pdu)
    {
        var pduBytes = Encoding.UTF8.GetBytes(pdu.ToJsonString());
        var entry = Encoding.UTF8.GetBytes($"{{\"room_id\":{JsonValue.Create(roomId).ToJsonString()},\"pdu\":{pdu.ToJsonString()}}}");
        lock (_gate)
        {
            var targets = Targets(destinations);
            using var batch = _store.CreateBatch();
            foreach (var d in targets)
            {
                var seq = NextSeq(batch);
                // A destination catching up gets only the newest PDU of each room.
                if (d.CatchUp) batch.Put(FederationFamilies.CatchUp, K.Concat(d.Prefix, K.Utf8(roomId)), K.Concat(K.BigEndian(seq), pduBytes));
                else batch.Put(FederationFamilies.Outbound, K.Concat(d.Prefix, K.BigEndian(seq)), entry);
            }
            _store.Write(batch);
            foreach (var d in targets) Kick(d);
        }
    }

    /// <summary>
    /// Queues an EDU (<c>{"edu_type", "content"}</c>) for each destination: in memory for typing, presence and receipts,
    /// else durably (one store batch) before returning.
    /// </summary>
    public void EnqueueEdu(IEnumerable<string> destinations, JsonObject edu)
    {
        var type = edu["edu_type"] is JsonValue v && v.TryGetValue<string>(out var t) ? t : null;
        var ephemeral = type is not null && EphemeralEduTypes.Contains(type);
        var entry = ephemeral ? null : Encoding.UTF8.GetBytes($"{{\"edu\":{edu.ToJsonString()}}}");
        lock (_gate)
        {
            var targets = Targets(destinations);
            if (entry is null)
            {
                foreach (var d in targets)
                {
                    if (d.CatchUp) continue; // dropped while catching up, as Synapse does
                    if (d.Ephemeral.Count >= _options.MaxEphemeralPerDestination) d.Ephemeral.RemoveAt(0);
                    d.Ephemeral.Add((NextSeq(null), (JsonObject)edu.DeepClone()));
                }
            }
            else
            {
                using var batch = _store.CreateBatch();
                foreach (var d in targets) batch.Put(FederationFamilies.Outbound, K.Concat(d.Prefix, K.BigEndian(NextSeq(batch))), entry);
                _store.Write(batch);
            }
            foreach (var d in targets) Kick(d);
        }
    }

    /// <summary>
    /// <paramref name="destination"/> made an authenticated request to us, so it is up: its backoff ends and its queue
    /// is retried now (Synapse does the same). A destination catching up stays so until the catch-up is sent.
    /// </summary>
    public void Wake(string destination)
    {
        lock (_gate)
            if (_dests.TryGetValue(destination, out var d) && EndBackoff(d)) LogWoken(destination);
    }

    /// <summary>
    /// The admin API's reset_connection: as <see cref="Wake"/>, the destination's backoff ends and its queue is
    /// retried now. False for a destination this queue does not know (nothing queued, failing or delivered).
    /// </summary>
    public bool ResetConnection(string destination)
    {
        lock (_gate)
        {
            if (!_dests.TryGetValue(destination, out var d)) return _delivered.ContainsKey(destination);
            if (EndBackoff(d)) LogReset(destination);
            return true;
        }
    }

    /// <summary>Ends the destination's backoff (stored) and wakes its loop; false if it was not backing off. Under the gate.</summary>
    bool EndBackoff(Dest d)
    {
        if (d.Failures == 0 && d.RetryAtMs == 0) return false;
        d.Failures = 0;
        d.IntervalMs = d.RetryAtMs = d.SinceMs = d.LastFailureMs = d.LastDelayMs = 0;
        using var batch = _store.CreateBatch();
        SaveState(d, batch);
        _store.Write(batch);
        d.Wakeup.TrySetResult();
        Kick(d);
        return true;
    }

    /// <summary>
    /// Every destination this queue knows, by name: those with something queued or failing (stored across restarts)
    /// and those a transaction reached since this process started. For the admin API: counts the stored queue of each.
    /// </summary>
    public IReadOnlyList<DestinationInfo> Destinations()
    {
        lock (_gate)
        {
            var names = new SortedSet<string>(_dests.Keys, StringComparer.Ordinal);
            names.UnionWith(_delivered.Keys);
            return [.. names.Select(Describe)];
        }
    }

    /// <summary>One destination as <see cref="Destinations"/> lists it, or null if this queue does not know it.</summary>
    public DestinationInfo? Destination(string destination)
    {
        lock (_gate) return _dests.ContainsKey(destination) || _delivered.ContainsKey(destination) ? Describe(destination) : null;
    }

    /// <summary>Under the gate.</summary>
    DestinationInfo Describe(string name)
    {
        var d = _dests.GetValueOrDefault(name);
        var prefix = d?.Prefix ?? K.Prefix(name);
        int pdus = _catchUp.Scan(prefix).Count(), edus = d?.Ephemeral.Count ?? 0;
        foreach (var (_, v) in _outbound.Scan(prefix))
            if (v.AsSpan().StartsWith("{\"room_id\""u8)) pdus++; else edus++;
        var failing = d is { Failures: > 0 };
        return new DestinationInfo(name, failing ? d!.LastFailureMs : 0, failing ? d!.LastDelayMs : 0, failing ? d!.SinceMs : null,
            _delivered.TryGetValue(name, out var seq) ? seq : null, pdus, edus, d?.Failures ?? 0, d?.CatchUp ?? false);
    }

    /// <summary>What is queued for <paramref name="destination"/> and how its sending goes.</summary>
    public DestinationStatus Status(string destination)
    {
        lock (_gate)
        {
            var prefix = K.Prefix(destination);
            var pending = _outbound.Scan(prefix).Count() + _catchUp.Scan(prefix).Count();
            if (!_dests.TryGetValue(destination, out var d)) return new(destination, pending, 0, null, false, false, false);
            return new(destination, pending + d.Ephemeral.Count, d.Failures, d.RetryAtMs > 0 ? DateTimeOffset.FromUnixTimeMilliseconds(d.RetryAtMs) : null,
                d.CatchUp, d.Waiting, d.Sending);
        }
    }

    /// <summary>The states <see cref="Depths"/> reports, in order.</summary>
    public static readonly string[] States = ["backoff", "catch_up", "sending", "queued"];

    /// <summary>
    /// For the metrics, per state (<see cref="States"/>): destinations in it and items queued for them. A destination
    /// is in backoff while its retry time is ahead, else catching up, else sending a transaction, else queued (waiting
    /// for a send slot or its next read). Counts the stored queue, so it costs a scan of it: for scrapes, not hot paths.
    /// </summary>
    public (int Destinations, long Items)[] Depths()
    {
        var result = new (int Destinations, long Items)[States.Length];
        lock (_gate)
        {
            var now = NowMs;
            foreach (var d in _dests.Values)
            {
                var state = d.RetryAtMs > now ? 0 : d.CatchUp ? 1 : d.Sending ? 2 : 3;
                long items = d.Ephemeral.Count + _outbound.Scan(d.Prefix).Count() + _catchUp.Scan(d.Prefix).Count();
                if (items == 0 && d.Failures == 0) continue; // an idle loop about to end
                result[state].Destinations++;
                result[state].Items += items;
            }
        }
        return result;
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            _started = true;
            if (_sender is null)
            {
                LogNoSender();
                return Task.CompletedTask;
            }
            foreach (var d in _dests.Values) Kick(d);
        }
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        // Cancelled outside the gate: continuations of the loops may run inline and take it.
        _stop.Cancel();
        Task[] loops;
        lock (_gate) loops = [.. _dests.Values.Select(d => d.Loop).OfType<Task>()];
        try { await Task.WhenAll(loops).WaitAsync(cancellationToken); }
        catch (OperationCanceledException) { }
    }

    int _disposed;

    /// <summary>Idempotent: the container disposes the queue once as a singleton and once as the hosted service its factory returned.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _stop.Cancel();
        _stop.Dispose();
        _sendSlots.Dispose();
    }

    /// <summary>
    /// The next sequence number. A reservation ahead of it is stored (in <paramref name="batch"/>, or at once) each
    /// million numbers, so that numbers (and so transaction IDs) are not given out twice across restarts. Under the gate.
    /// </summary>
    ulong NextSeq(IWriteBatch? batch)
    {
        var seq = ++_seq;
        if (seq < _reserved) return seq;
        _reserved = seq + ReservationStep;
        if (batch is not null)
        {
            batch.Put(FederationFamilies.Destinations, ReservationKey, K.BigEndian(_reserved));
            return seq;
        }
        using var own = _store.CreateBatch();
        own.Put(FederationFamilies.Destinations, ReservationKey, K.BigEndian(_reserved));
        _store.Write(own);
        return seq;
    }

    List<Dest> Targets(IEnumerable<string> destinations)
    {
        var list = new List<Dest>();
        foreach (var name in destinations.Distinct(StringComparer.Ordinal))
            if (!string.IsNullOrEmpty(name)) list.Add(GetDest(name));
        return list;
    }

    Dest GetDest(string name)
    {
        if (!_dests.TryGetValue(name, out var d)) _dests[name] = d = new Dest(name);
        return d;
    }

    /// <summary>Starts the destination's loop unless it runs (or the queue is not started or has no sender). Under the gate.</summary>
    void Kick(Dest d)
    {
        if (!_started || _sender is null || d.Loop is not null || _stop.IsCancellationRequested) return;
        d.Loop = Task.Run(() => RunAsync(d));
    }

    async Task RunAsync(Dest d)
    {
        var ct = _stop.Token;
        while (true)
        {
            try
            {
                Task? wait = null;
                Batch? batch = null;
                lock (_gate)
                {
                    if (ct.IsCancellationRequested || !HasPending(d))
                    {
                        // Under the gate: an enqueue after this starts a new loop.
                        d.Loop = null;
                        d.Waiting = false;
                        if (d.Failures == 0 && !d.CatchUp) _dests.Remove(d.Name);
                        return;
                    }
                    var now = NowMs;
                    if (d.RetryAtMs > now)
                    {
                        d.Wakeup = new(TaskCreationOptions.RunContinuationsAsynchronously);
                        wait = WaitForRetryAsync(TimeSpan.FromMilliseconds(d.RetryAtMs - now), d.Wakeup.Task, ct);
                        d.Waiting = true; // set after the timer exists, so a test may advance a fake clock once it sees this
                    }
                    else
                    {
                        d.Waiting = false;
                        batch = ReadBatch(d);
                        d.Sending = batch is not null;
                    }
                }
                if (wait is not null)
                {
                    await wait;
                    continue;
                }
                if (batch is null) continue;
                var result = await SendAsync(d, batch, ct);
                lock (_gate)
                {
                    d.Sending = false;
                    Complete(d, batch, result);
                }
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                lock (_gate) { d.Loop = null; d.Waiting = d.Sending = false; }
                return;
            }
            catch (Exception e)
            {
                // The store failed; the queue is intact (nothing is removed before it is written), so try again later.
                var delay = _options.RetryDelays.Count > 0 ? _options.RetryDelays[0] : TimeSpan.FromSeconds(4);
                LogLoopFailed(e, d.Name, (long)delay.TotalMilliseconds);
                lock (_gate) d.Sending = false;
                try { await Task.Delay(delay, _time, ct); }
                catch (OperationCanceledException)
                {
                    lock (_gate) { d.Loop = null; d.Waiting = false; }
                    return;
                }
            }
        }
    }

    /// <summary>Until the delay is over or the destination is woken. The timer exists when this returns; a wake-up cancels it.</summary>
    async Task WaitForRetryAsync(TimeSpan delay, Task wakeup, CancellationToken ct)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        await Task.WhenAny(Task.Delay(delay, _time, cts.Token), wakeup);
        cts.Cancel();
    }

    async Task<TransactionResult> SendAsync(Dest d, Batch batch, CancellationToken ct)
    {
        await _sendSlots.WaitAsync(ct);
        try
        {
            using var timeout = new CancellationTokenSource(_options.SendTimeout, _time);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, timeout.Token);
            // WaitAsync too: a sender that ignores its token must not hold the destination forever.
            return await _sender!.SendAsync(d.Name, batch.TxnId, batch.Pdus, batch.Edus, linked.Token).WaitAsync(_options.SendTimeout, _time, ct);
        }
        catch (Exception e) when (!ct.IsCancellationRequested)
        {
            LogSendFailed(d.Name, batch.TxnId, e.Message);
            return TransactionResult.RetryLater;
        }
        finally
        {
            _sendSlots.Release();
        }
    }

    bool HasPending(Dest d)
        => d.Ephemeral.Count > 0 || _outbound.Scan(d.Prefix).Any() || _catchUp.Scan(d.Prefix).Any();

    /// <summary>
    /// The next transaction, or null if nothing is queued. The ID of a run of queued items is made of its first and
    /// last sequence numbers: a retry of the same run has the same ID, and since sequence numbers only grow (and start
    /// from the clock after a restart), a run with the same ID can only have lost items since (sent by the earlier try).
    /// </summary>
    Batch? ReadBatch(Dest d)
    {
        if (d.CatchUp)
        {
            var keys = new List<(byte[], ulong)>();
            var catchUpPdus = new List<JsonObject>();
            foreach (var (k, v) in _catchUp.Scan(d.Prefix))
            {
                if (catchUpPdus.Count == _options.MaxPdusPerTransaction) break;
                if (JsonNode.Parse(v.AsSpan(8)) is not JsonObject pdu) continue;
                catchUpPdus.Add(pdu);
                keys.Add((k, K.ReadBigEndian(v)));
            }
            if (catchUpPdus.Count > 0)
                return new Batch($"c{keys.Min(k => k.Item2):x}-{keys.Max(k => k.Item2):x}", catchUpPdus, [], null, null, 0, keys);
            d.CatchUp = false; // caught up: from now on PDUs are queued again
            using var wb = _store.CreateBatch();
            SaveState(d, wb);
            _store.Write(wb);
        }

        var pdus = new List<JsonObject>();
        var edus = new List<JsonObject>();
        ulong? firstSeq = null, firstDurable = null, lastDurable = null;
        ulong lastSeq = 0;
        var eph = 0;
        using var durable = _outbound.Scan(d.Prefix).GetEnumerator();
        var hasDurable = durable.MoveNext();
        while (true)
        {
            var durableSeq = hasDurable ? K.ReadBigEndian(durable.Current.Key.AsSpan(d.Prefix.Length)) : ulong.MaxValue;
            var takeEphemeral = eph < d.Ephemeral.Count && d.Ephemeral[eph].Seq < durableSeq;
            if (!takeEphemeral && !hasDurable) break;
            if (takeEphemeral)
            {
                if (edus.Count == _options.MaxEdusPerTransaction) break;
                var (seq, edu) = d.Ephemeral[eph++];
                edus.Add((JsonObject)edu.DeepClone());
                firstSeq ??= seq;
                lastSeq = seq;
                continue;
            }
            var entry = JsonNode.Parse(durable.Current.Value) as JsonObject;
            if (entry?["pdu"] is JsonObject pdu)
            {
                if (pdus.Count == _options.MaxPdusPerTransaction) break;
                pdus.Add(pdu);
            }
            else if (entry?["edu"] is JsonObject edu)
            {
                if (edus.Count == _options.MaxEdusPerTransaction) break;
                edus.Add(edu);
            }
            firstSeq ??= durableSeq;
            firstDurable ??= durableSeq;
            lastDurable = lastSeq = durableSeq;
            hasDurable = durable.MoveNext();
        }
        if (firstSeq is null) return null;
        return new Batch($"{firstSeq.Value:x}-{lastSeq:x}", pdus, edus, firstDurable, lastDurable, lastSeq, null);
    }

    /// <summary>Records the outcome of a transaction. Under the gate.</summary>
    void Complete(Dest d, Batch batch, TransactionResult result)
    {
        var now = NowMs;
        using var wb = _store.CreateBatch();
        if (result is TransactionResult.Delivered or TransactionResult.Rejected)
        {
            if (result == TransactionResult.Rejected) LogRejected(d.Name, batch.TxnId, batch.Pdus.Count, batch.Edus.Count);
            if (batch.CatchUpKeys is { } keys)
            {
                // A room whose entry was replaced by a newer PDU meanwhile keeps it.
                foreach (var (key, seq) in keys)
                    if (_catchUp.Get(key) is { } current && K.ReadBigEndian(current) == seq) wb.Delete(FederationFamilies.CatchUp, key);
            }
            else
            {
                if (batch.FirstDurable is { } first && batch.LastDurable is { } last)
                    wb.DeleteRange(FederationFamilies.Outbound, K.Concat(d.Prefix, K.BigEndian(first)), K.Concat(d.Prefix, K.BigEndian(last + 1)));
                d.Ephemeral.RemoveAll(e => e.Seq <= batch.LastSeq);
            }
            // Any answer but RetryLater shows the destination is up.
            var hadFailures = d.Failures > 0;
            d.Failures = 0;
            d.IntervalMs = d.RetryAtMs = d.SinceMs = d.LastFailureMs = d.LastDelayMs = 0;
            var sent = batch.CatchUpKeys is { } caught ? caught.Max(k => k.Seq) : batch.LastSeq;
            _delivered[d.Name] = Math.Max(sent, _delivered.GetValueOrDefault(d.Name));
            if (hadFailures) SaveState(d, wb);
        }
        else
        {
            d.Failures++;
            if (d.SinceMs == 0) d.SinceMs = now;
            var delay = NextDelay(d);
            d.RetryAtMs = now + delay;
            d.LastFailureMs = now;
            d.LastDelayMs = delay;
            LogBackingOff(d.Name, d.Failures, delay);
            if (!d.CatchUp && now - d.SinceMs > (long)_options.CatchUpAfter.TotalMilliseconds) EnterCatchUp(d, wb);
            SaveState(d, wb);
        }
        if (wb.Count > 0) _store.Write(wb);
    }

    long NextDelay(Dest d)
    {
        var delays = _options.RetryDelays;
        if (d.Failures <= delays.Count) return (long)(delays[d.Failures - 1].TotalMilliseconds * _options.Jitter());
        var max = (long)_options.BackoffMax.TotalMilliseconds;
        d.IntervalMs = d.IntervalMs == 0
            ? (long)_options.BackoffInitial.TotalMilliseconds
            : (long)Math.Min(d.IntervalMs * 2 * _options.Jitter(), max);
        return Math.Min(d.IntervalMs, max);
    }

    /// <summary>
    /// Drops the destination's queued PDUs and ephemeral EDUs, keeping the newest PDU of each room in the catch-up
    /// family; durable EDUs stay queued. Under the gate, written with <paramref name="wb"/>.
    /// </summary>
    void EnterCatchUp(Dest d, IWriteBatch wb)
    {
        var newest = new Dictionary<string, (ulong Seq, JsonNode Pdu)>(StringComparer.Ordinal);
        var kept = new List<KeyValuePair<byte[], byte[]>>();
        byte[]? lastKey = null;
        foreach (var e in _outbound.Scan(d.Prefix))
        {
            lastKey = e.Key;
            var entry = JsonNode.Parse(e.Value) as JsonObject;
            if (entry?["pdu"] is JsonObject pdu && entry["room_id"]?.GetValue<string>() is { } room)
                newest[room] = (K.ReadBigEndian(e.Key.AsSpan(d.Prefix.Length)), pdu);
            else kept.Add(e);
        }
        if (lastKey is not null)
        {
            // One range tombstone, then the EDUs put back (a batch applies in order).
            wb.DeleteRange(FederationFamilies.Outbound, d.Prefix, K.PrefixEnd(d.Prefix)!);
            foreach (var e in kept) wb.Put(FederationFamilies.Outbound, e.Key, e.Value);
        }
        foreach (var (room, (seq, pdu)) in newest)
            wb.Put(FederationFamilies.CatchUp, K.Concat(d.Prefix, K.Utf8(room)), K.Concat(K.BigEndian(seq), Encoding.UTF8.GetBytes(pdu.ToJsonString())));
        d.Ephemeral.Clear();
        d.CatchUp = true;
        LogCatchingUp(d.Name, newest.Count);
    }

    void SaveState(Dest d, IWriteBatch wb)
    {
        var key = K.Utf8(d.Name);
        if (d.Failures == 0 && !d.CatchUp)
        {
            wb.Delete(FederationFamilies.Destinations, key);
            return;
        }
        var state = new JsonObject
        {
            ["failures"] = d.Failures,
            ["interval_ms"] = d.IntervalMs,
            ["retry_at"] = d.RetryAtMs,
            ["since"] = d.SinceMs,
            ["catch_up"] = d.CatchUp,
        };
        wb.Put(FederationFamilies.Destinations, key, Encoding.UTF8.GetBytes(state.ToJsonString()));
    }

    /// <summary>Reads the stored backoff states and finds the destinations with queued items and the last sequence number.</summary>
    void Load()
    {
        ulong max = 0;
        foreach (var (k, v) in _destinations.Scan([]))
        {
            if (k.AsSpan().SequenceEqual(ReservationKey))
            {
                max = K.ReadBigEndian(v);
                continue;
            }
            if (JsonNode.Parse(v) is not JsonObject s) continue;
            var d = GetDest(Encoding.UTF8.GetString(k));
            d.Failures = s["failures"]?.GetValue<int>() ?? 0;
            d.IntervalMs = s["interval_ms"]?.GetValue<long>() ?? 0;
            d.RetryAtMs = s["retry_at"]?.GetValue<long>() ?? 0;
            d.SinceMs = s["since"]?.GetValue<long>() ?? 0;
            d.CatchUp = s["catch_up"]?.GetValue<bool>() ?? false;
            // Not stored: the last attempt is about when the retry was planned from.
            d.LastFailureMs = d.IntervalMs > 0 ? Math.Max(d.SinceMs, d.RetryAtMs - d.IntervalMs) : d.SinceMs;
            d.LastDelayMs = Math.Max(0, d.RetryAtMs - d.LastFailureMs);
        }
        // One seek per destination: its first key names it, the last key of its prefix holds its newest sequence number.
        byte[] start = [];
        while (_outbound.ScanFrom(start, [], reverse: false).FirstOrDefault() is { Key: { } first })
        {
            var sep = first.AsSpan().IndexOf(K.Sep);
            if (sep <= 0) break;
            var d = GetDest(Encoding.UTF8.GetString(first.AsSpan(0, sep)));
            var end = K.PrefixEnd(d.Prefix)!;
            var last = _outbound.ScanFrom(end, d.Prefix, reverse: true).First().Key;
            max = Math.Max(max, K.ReadBigEndian(last.AsSpan(d.Prefix.Length)));
            start = end;
        }
        foreach (var (k, v) in _catchUp.Scan([]))
        {
            var d = GetDest(K.Split(k)[0]);
            d.CatchUp = true;
            max = Math.Max(max, K.ReadBigEndian(v));
        }
        // Past the stored reservation (and the clock, in µs): a sequence number, so a transaction ID, is never reused.
        _seq = Math.Max(max, (ulong)NowMs * 1000);
        _reserved = _seq;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "No federation transaction sender is registered: outbound PDUs and EDUs are stored but not sent")]
    partial void LogNoSender();

    [LoggerMessage(Level = LogLevel.Information, Message = "Transaction {TxnId} to {Destination} failed: {Reason}")]
    partial void LogSendFailed(string destination, string txnId, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "{Destination} is not reachable ({Failures} failure(s) in a row); next try in {DelayMs} ms")]
    partial void LogBackingOff(string destination, int failures, long delayMs);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Destination} rejected transaction {TxnId}; its {Pdus} PDU(s) and {Edus} EDU(s) are dropped")]
    partial void LogRejected(string destination, string txnId, int pdus, int edus);

    [LoggerMessage(Level = LogLevel.Information, Message = "{Destination} has been unreachable for over the catch-up threshold: queued PDUs dropped, the newest of {Rooms} room(s) kept")]
    partial void LogCatchingUp(string destination, int rooms);

    [LoggerMessage(Level = LogLevel.Debug, Message = "{Destination} contacted us: its backoff is reset")]
    partial void LogWoken(string destination);

    [LoggerMessage(Level = LogLevel.Information, Message = "An admin reset the connection to {Destination}: its backoff is over")]
    partial void LogReset(string destination);

    [LoggerMessage(Level = LogLevel.Error, Message = "The outbound queue of {Destination} failed; retrying in {DelayMs} ms")]
    partial void LogLoopFailed(Exception e, string destination, long delayMs);
}

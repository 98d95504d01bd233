using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using Conduit.Common.Storage;
using Conduit.Federation.Outbound;
using Microsoft.Extensions.Time.Testing;

namespace Conduit.Federation.Tests;

/// <summary>Records every transaction; <see cref="Handler"/> decides each answer (Delivered unless set).</summary>
sealed class RecordingSender : ITransactionSender
{
    public sealed record Sent(string Destination, string TxnId, IReadOnlyList<JsonObject> Pdus, IReadOnlyList<JsonObject> Edus);

    public ConcurrentQueue<Sent> All { get; } = new();
    public Func<string, string, CancellationToken, Task<TransactionResult>> Handler { get; set; } = (_, _, _) => Task.FromResult(TransactionResult.Delivered);

    public IReadOnlyList<Sent> To(string destination) => [.. All.Where(s => s.Destination == destination)];

    public Task<TransactionResult> SendAsync(string destination, string txnId, IReadOnlyList<JsonObject> pdus, IReadOnlyList<JsonObject> edus, CancellationToken ct)
    {
        All.Enqueue(new(destination, txnId, pdus, edus));
        return Handler(destination, txnId, ct);
    }
}

/// <summary>A queue over a RocksDB store in a temp folder, on a fake clock with no jitter; <see cref="Restart"/> opens a new queue over the same store.</summary>
sealed class QueueWorld : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("conduit-fed-queue-").FullName;
    public IKeyValueStore Kv { get; }
    public FakeTimeProvider Time { get; } = new(new DateTimeOffset(2030, 1, 1, 0, 0, 0, TimeSpan.Zero));
    public RecordingSender Sender { get; } = new();
    public FederationQueueOptions Options { get; } = FederationQueueOptions.Default with { Jitter = () => 1.0 };
    public FederationQueue Queue { get; private set; }

    public QueueWorld(bool withSender = true)
    {
        Kv = KvStore.Open("rocksdb", _dir, FederationFamilies.All);
        Queue = new FederationQueue(Kv, withSender ? Sender : null, Options, Time);
    }

    public Task StartAsync() => Queue.StartAsync(default);

    public async Task Restart(bool start = true)
    {
        await Queue.StopAsync(default);
        Queue.Dispose();
        Queue = new FederationQueue(Kv, Sender, Options, Time);
        if (start) await StartAsync();
    }

    /// <summary>Waits (real time, generously) until the destination's loop has failed <paramref name="failures"/> times and waits for its retry time.</summary>
    public Task<DestinationStatus> BackingOff(string destination, int failures)
        => Until(destination, s => s.Waiting && s.Failures == failures);

    public async Task<DestinationStatus> Until(string destination, Func<DestinationStatus, bool> condition)
    {
        await Wait.For(() => condition(Queue.Status(destination)), $"status of {destination}");
        return Queue.Status(destination);
    }

    /// <summary>Moves the fake clock to the destination's retry time (its loop must be waiting).</summary>
    public void AdvanceToRetry(DestinationStatus status) => Time.Advance(status.RetryAt!.Value - Time.GetUtcNow());

    public int Stored(string family) => Kv.Map(family).Scan([]).Count();

    /// <summary>Stored backoff states (the sequence reservation, key 0xFF, left out).</summary>
    public int BackoffStates => Kv.Map(FederationFamilies.Destinations).Scan([]).Count(e => e.Key is not [0xFF]);

    public void Dispose()
    {
        Queue.StopAsync(default).GetAwaiter().GetResult();
        Queue.Dispose();
        Kv.Dispose();
        Directory.Delete(_dir, recursive: true);
    }
}

static class Wait
{
    /// <summary>Polls until the condition holds; the timeout is generous, for a busy machine.</summary>
    public static async Task For(Func<bool> condition, string what, int timeoutSeconds = 30)
    {
        var deadline = DateTime.UtcNow.AddSeconds(timeoutSeconds);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"Timed out waiting for {what}");
            await Task.Delay(10);
        }
    }
}

public sealed class FederationQueueTests : IDisposable
{
    readonly QueueWorld _w = new();

    public void Dispose() => _w.Dispose();

    static JsonObject Pdu(string room, int n) => new() { ["room_id"] = room, ["type"] = "m.room.message", ["content"] = new JsonObject { ["n"] = n } };

    static JsonObject Edu(string type, int n) => new() { ["edu_type"] = type, ["content"] = new JsonObject { ["n"] = n } };

    static int N(JsonObject item) => item["content"]!["n"]!.GetValue<int>();

    void Pdus(string destination, string room, int from, int count)
    {
        for (var i = from; i < from + count; i++) _w.Queue.EnqueuePdu([destination], room, Pdu(room, i));
    }

    [Fact]
    public async Task Queued_PDUs_go_in_transactions_of_at_most_50_in_order()
    {
        Pdus("remote.org", "!a:example.org", 0, 120);
        Assert.Equal(120, _w.Queue.Status("remote.org").Pending);
        await _w.StartAsync();
        await _w.Until("remote.org", s => s.Pending == 0 && !s.Sending);
        var sent = _w.Sender.To("remote.org");
        Assert.Equal([50, 50, 20], sent.Select(s => s.Pdus.Count));
        Assert.Equal(Enumerable.Range(0, 120), sent.SelectMany(s => s.Pdus).Select(N));
        Assert.Equal(3, sent.Select(s => s.TxnId).Distinct().Count());
        Assert.Equal(0, _w.Stored(FederationFamilies.Outbound));
    }

    [Fact]
    public async Task A_transaction_carries_at_most_100_EDUs_in_queue_order_with_the_ephemeral_ones()
    {
        for (var i = 0; i < 150; i++)
            _w.Queue.EnqueueEdu(["remote.org"], Edu(i % 3 == 0 ? "m.typing" : "m.direct_to_device", i));
        _w.Queue.EnqueuePdu(["remote.org"], "!a:example.org", Pdu("!a:example.org", 150));
        await _w.StartAsync();
        await _w.Until("remote.org", s => s.Pending == 0 && !s.Sending);
        var sent = _w.Sender.To("remote.org");
        Assert.Equal([100, 50], sent.Select(s => s.Edus.Count));
        Assert.Equal(Enumerable.Range(0, 150), sent.SelectMany(s => s.Edus).Select(N));
        Assert.Equal([0, 1], sent.Select(s => s.Pdus.Count));
    }

    [Fact]
    public async Task A_hanging_or_failing_destination_does_not_hold_back_another()
    {
        _w.Sender.Handler = async (dest, _, ct) =>
        {
            if (dest == "hangs.org") await Task.Delay(Timeout.Infinite, ct);
            return dest == "fails.org" ? TransactionResult.RetryLater : TransactionResult.Delivered;
        };
        await _w.StartAsync();
        _w.Queue.EnqueuePdu(["hangs.org", "fails.org"], "!a:example.org", Pdu("!a:example.org", 0));
        await _w.Until("hangs.org", s => s.Sending);
        await _w.BackingOff("fails.org", 1);
        for (var i = 0; i < 3; i++)
        {
            _w.Queue.EnqueuePdu(["hangs.org", "fails.org", "up.org"], "!a:example.org", Pdu("!a:example.org", i + 1));
            await _w.Until("up.org", s => s.Pending == 0 && !s.Sending);
        }
        Assert.Equal([1, 2, 3], _w.Sender.To("up.org").SelectMany(s => s.Pdus).Select(N));
        Assert.True(_w.Queue.Status("hangs.org").Sending);
        Assert.Equal(4, _w.Queue.Status("fails.org").Pending);
    }

    [Fact]
    public async Task A_failed_transaction_is_retried_with_the_same_ID_after_4_seconds()
    {
        var answers = new ConcurrentQueue<TransactionResult>([TransactionResult.RetryLater]);
        _w.Sender.Handler = (_, _, _) => Task.FromResult(answers.TryDequeue(out var r) ? r : TransactionResult.Delivered);
        Pdus("remote.org", "!a:example.org", 0, 3);
        await _w.StartAsync();
        var status = await _w.BackingOff("remote.org", 1);
        Assert.Equal(_w.Time.GetUtcNow() + TimeSpan.FromSeconds(4), status.RetryAt);
        Assert.Single(_w.Sender.All);
        _w.AdvanceToRetry(status);
        await _w.Until("remote.org", s => s.Pending == 0 && !s.Sending);
        var sent = _w.Sender.To("remote.org");
        Assert.Equal(2, sent.Count);
        Assert.Equal(sent[0].TxnId, sent[1].TxnId);
        Assert.Equal([0, 1, 2], sent[1].Pdus.Select(N));
        var after = _w.Queue.Status("remote.org");
        Assert.Equal(0, after.Failures);
        Assert.Null(after.RetryAt);
        Assert.Equal(0, _w.BackoffStates);
    }

    [Fact]
    public async Task A_rejected_transaction_is_dropped_without_backoff_and_the_queue_goes_on()
    {
        var answers = new ConcurrentQueue<TransactionResult>([TransactionResult.Rejected]);
        _w.Sender.Handler = (_, _, _) => Task.FromResult(answers.TryDequeue(out var r) ? r : TransactionResult.Delivered);
        Pdus("remote.org", "!a:example.org", 0, 60);
        await _w.StartAsync();
        await _w.Until("remote.org", s => s.Pending == 0 && !s.Sending);
        var sent = _w.Sender.To("remote.org");
        Assert.Equal([50, 10], sent.Select(s => s.Pdus.Count));
        Assert.Equal(Enumerable.Range(50, 10), sent[1].Pdus.Select(N));
        Assert.Equal(0, _w.Queue.Status("remote.org").Failures);
    }

    [Fact]
    public async Task Backoff_grows_to_ten_minutes_and_survives_a_restart()
    {
        _w.Sender.Handler = (_, _, _) => Task.FromResult(TransactionResult.RetryLater);
        Pdus("remote.org", "!a:example.org", 0, 2);
        await _w.StartAsync();
        var expected = new[] { 4, 16, 60, 600, 1200 };
        DestinationStatus status = null!;
        for (var i = 0; i < expected.Length; i++)
        {
            status = await _w.BackingOff("remote.org", i + 1);
            Assert.Equal(_w.Time.GetUtcNow() + TimeSpan.FromSeconds(expected[i]), status.RetryAt);
            if (i < expected.Length - 1) _w.AdvanceToRetry(status);
        }
        var sends = _w.Sender.All.Count;
        Assert.Equal(5, sends);

        _w.Sender.Handler = (_, _, _) => Task.FromResult(TransactionResult.Delivered);
        await _w.Restart();
        var resumed = await _w.BackingOff("remote.org", 5);
        Assert.Equal(status.RetryAt, resumed.RetryAt);
        Assert.Equal(2, resumed.Pending);
        Assert.Equal(sends, _w.Sender.All.Count); // waits for the stored retry time
        _w.AdvanceToRetry(resumed);
        await _w.Until("remote.org", s => s.Pending == 0 && !s.Sending);
        Assert.Equal([0, 1], _w.Sender.All.Last().Pdus.Select(N));
        Assert.Equal(sends + 1, _w.Sender.All.Count);
        Assert.Equal(_w.Sender.All.First().TxnId, _w.Sender.All.Last().TxnId);
        Assert.Equal(0, _w.BackoffStates);
    }

    [Fact]
    public async Task Transaction_IDs_are_not_reused_after_a_restart()
    {
        await _w.StartAsync();
        Pdus("remote.org", "!a:example.org", 0, 1);
        await _w.Until("remote.org", s => s.Pending == 0 && !s.Sending);
        await _w.Restart();
        Pdus("remote.org", "!a:example.org", 1, 1);
        await _w.Until("remote.org", s => s.Pending == 0 && !s.Sending && _w.Sender.All.Count == 2);
        Assert.Equal(2, _w.Sender.All.Select(s => s.TxnId).Distinct().Count());
    }

    [Fact]
    public async Task Wake_ends_the_backoff_and_sends_at_once()
    {
        _w.Sender.Handler = (_, _, _) => Task.FromResult(TransactionResult.RetryLater);
        Pdus("remote.org", "!a:example.org", 0, 1);
        await _w.StartAsync();
        var status = await _w.BackingOff("remote.org", 1);
        _w.AdvanceToRetry(status);
        status = await _w.BackingOff("remote.org", 2);
        Assert.Equal(1, _w.BackoffStates);
        _w.Sender.Handler = (_, _, _) => Task.FromResult(TransactionResult.Delivered);
        _w.Queue.Wake("remote.org");
        await _w.Until("remote.org", s => s.Pending == 0 && !s.Sending);
        Assert.Equal(3, _w.Sender.All.Count);
        Assert.Equal(0, _w.Queue.Status("remote.org").Failures);
        Assert.Equal(0, _w.BackoffStates);
        _w.Queue.Wake("unknown.org"); // nothing to do
    }

    [Fact]
    public async Task After_an_hour_of_failures_only_the_newest_PDU_of_each_room_is_sent()
    {
        var up = false;
        _w.Sender.Handler = (_, _, _) => Task.FromResult(Volatile.Read(ref up) ? TransactionResult.Delivered : TransactionResult.RetryLater);
        Pdus("remote.org", "!a:example.org", 0, 3);
        Pdus("remote.org", "!b:example.org", 10, 2);
        _w.Queue.EnqueueEdu(["remote.org"], Edu("m.device_list_update", 100));
        _w.Queue.EnqueueEdu(["remote.org"], Edu("m.receipt", 101));
        await _w.StartAsync();
        // 4 s, 16 s, 60 s, 10 min, 20 min, 40 min: the 7th failure is over an hour after the first.
        for (var failures = 1; ; failures++)
        {
            var status = await _w.BackingOff("remote.org", failures);
            if (status.CatchingUp)
            {
                Assert.Equal(7, failures);
                break;
            }
            Assert.Equal(7, status.Pending);
            _w.AdvanceToRetry(status);
        }
        // Two rooms to catch up and the stored EDU; the receipt and the older PDUs are gone.
        Assert.Equal(3, _w.Queue.Status("remote.org").Pending);
        Assert.Equal(2, _w.Stored(FederationFamilies.CatchUp));
        Assert.Equal(1, _w.Stored(FederationFamilies.Outbound));

        // Queued while catching up: replaces the room's newest PDU, or adds a room.
        _w.Queue.EnqueuePdu(["remote.org"], "!a:example.org", Pdu("!a:example.org", 3));
        _w.Queue.EnqueuePdu(["remote.org"], "!c:example.org", Pdu("!c:example.org", 20));
        _w.Queue.EnqueueEdu(["remote.org"], Edu("m.typing", 102));
        Assert.Equal(4, _w.Queue.Status("remote.org").Pending);

        var before = _w.Sender.All.Count;
        Volatile.Write(ref up, true);
        _w.Queue.Wake("remote.org");
        await _w.Until("remote.org", s => s.Pending == 0 && !s.Sending && !s.CatchingUp);
        var sent = _w.Sender.All.Skip(before).ToList();
        Assert.Equal(2, sent.Count);
        Assert.Equal([3, 11, 20], sent[0].Pdus.Select(N).Order());
        Assert.Empty(sent[0].Edus);
        Assert.Empty(sent[1].Pdus);
        Assert.Equal([100], sent[1].Edus.Select(N));
        Assert.Equal(0, _w.Stored(FederationFamilies.CatchUp));
        Assert.Equal(0, _w.BackoffStates);

        // Back to normal: every PDU is queued again.
        Pdus("remote.org", "!a:example.org", 4, 2);
        await _w.Until("remote.org", s => s.Pending == 0 && !s.Sending && _w.Sender.All.Count > before + 2);
        await _w.Until("remote.org", s => _w.Sender.All.Skip(before + 2).Sum(t => t.Pdus.Count) == 2);
    }

    [Fact]
    public async Task Typing_presence_and_receipts_are_kept_in_memory_only()
    {
        _w.Queue.EnqueueEdu(["remote.org"], Edu("m.typing", 0));
        _w.Queue.EnqueueEdu(["remote.org"], Edu("m.presence", 1));
        _w.Queue.EnqueueEdu(["remote.org"], Edu("m.receipt", 2));
        _w.Queue.EnqueueEdu(["remote.org"], Edu("m.signing_key_update", 3));
        _w.Queue.EnqueueEdu(["remote.org", "other.org"], Edu("m.direct_to_device", 4));
        Assert.Equal(5, _w.Queue.Status("remote.org").Pending);
        Assert.Equal(3, _w.Stored(FederationFamilies.Outbound));

        await _w.Restart(start: false);
        Assert.Equal(2, _w.Queue.Status("remote.org").Pending);
        await _w.StartAsync();
        await _w.Until("remote.org", s => s.Pending == 0 && !s.Sending);
        await _w.Until("other.org", s => s.Pending == 0 && !s.Sending);
        Assert.Equal([3, 4], _w.Sender.To("remote.org").SelectMany(s => s.Edus).Select(N));
    }

    [Fact]
    public async Task The_admin_view_lists_failing_and_reached_destinations_and_reset_ends_a_backoff()
    {
        _w.Sender.Handler = (d, _, _) => Task.FromResult(d == "down.org" ? TransactionResult.RetryLater : TransactionResult.Delivered);
        Pdus("up.org", "!a:example.org", 0, 2);
        Pdus("down.org", "!a:example.org", 0, 2);
        _w.Queue.EnqueueEdu(["down.org"], Edu("m.typing", 0));
        _w.Queue.EnqueueEdu(["down.org"], Edu("m.device_list_update", 1));
        Assert.Null(_w.Queue.Destination("never.org"));
        Assert.False(_w.Queue.ResetConnection("never.org"));
        await _w.StartAsync();
        var start = _w.Time.GetUtcNow().ToUnixTimeMilliseconds();
        await _w.BackingOff("down.org", 1);
        await _w.Until("up.org", s => s.Pending == 0 && !s.Sending);
        await Wait.For(() => _w.Queue.Destination("up.org")?.LastSuccessfulSeq is not null, "up.org delivered");

        // A destination reached stays listed after its loop ends, not failing.
        var up = _w.Queue.Destination("up.org")!;
        Assert.Equal((0L, 0L, (long?)null, 0, 0), (up.RetryLastTs, up.RetryInterval, up.FailureTs, up.QueuedPdus, up.QueuedEdus));
        var down = _w.Queue.Destination("down.org")!;
        Assert.Equal((start, 4000L, (long?)start, 2, 2, 1), (down.RetryLastTs, down.RetryInterval, down.FailureTs, down.QueuedPdus, down.QueuedEdus, down.Failures));
        Assert.Null(down.LastSuccessfulSeq);
        Assert.Equal(["down.org", "up.org"], _w.Queue.Destinations().Select(d => d.Destination));

        // Reset: the backoff ends and the queue is tried again at once (without moving the clock).
        _w.Sender.Handler = (_, _, _) => Task.FromResult(TransactionResult.Delivered);
        Assert.True(_w.Queue.ResetConnection("down.org"));
        await _w.Until("down.org", s => s.Pending == 0 && !s.Sending);
        await Wait.For(() => _w.Queue.Destination("down.org")?.LastSuccessfulSeq is not null, "down.org delivered");
        down = _w.Queue.Destination("down.org")!;
        Assert.Equal((0L, 0L, (long?)null, 0), (down.RetryLastTs, down.RetryInterval, down.FailureTs, down.Failures));
        Assert.True(_w.Queue.ResetConnection("up.org")); // known, nothing to reset
        Assert.Equal(0, _w.BackoffStates);
    }

    [Fact]
    public async Task Without_a_sender_items_are_stored_but_not_sent()
    {
        using var w = new QueueWorld(withSender: false);
        await w.StartAsync();
        w.Queue.EnqueuePdu(["remote.org"], "!a:example.org", Pdu("!a:example.org", 0));
        Assert.Equal(1, w.Queue.Status("remote.org").Pending);
        Assert.Equal(1, w.Stored(FederationFamilies.Outbound));
        Assert.Empty(w.Sender.All);
    }
}

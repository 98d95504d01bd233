using System.Diagnostics;
using System.Net;
using System.Text.Json.Nodes;
using static Conduit.Functional.Tests.MatrixClient;

namespace Conduit.Functional.Tests;

/// <summary>Receipts, read markers and typing (spec: client-server-api, "Receipts", "Read and unread markers",
/// "Typing Notifications") through the edge, delivered in /sync's ephemeral events.</summary>
public abstract class ReceiptTypingTests(ServerFixture server)
{
    /// <summary>Alice's public room, which Bob has joined.</summary>
    Task<(MatrixClient Alice, MatrixClient Bob, string Room)> Pair() => PublicRoomPair(server);

    static string ReceiptPath(string room, string type, string eventId) => $"{C}/rooms/{E(room)}/receipt/{type}/{E(eventId)}";
    static string TypingPath(string room, string userId) => $"{C}/rooms/{E(room)}/typing/{E(userId)}";

    static JsonObject? Ephemeral(JsonObject sync, string room, string type)
        => (sync["rooms"]?["join"]?[room]?["ephemeral"]?["events"] as JsonArray ?? [])
            .FirstOrDefault(e => e?["type"]?.GetValue<string>() == type)?["content"] as JsonObject;

    static List<string>? Typing(JsonObject sync, string room)
        => Ephemeral(sync, room, "m.typing")?["user_ids"]!.AsArray().Select(u => u!.GetValue<string>()).ToList();

    static JsonObject? ReceiptOf(JsonObject sync, string room, string eventId, string type, string userId)
        => Ephemeral(sync, room, "m.receipt")?[eventId]?[type]?[userId] as JsonObject;

    static string Batch(JsonObject sync) => sync["next_batch"]!.GetValue<string>();

    static void Error(Response r, HttpStatusCode status, string errcode)
        => Assert.True(r.Status == status && r.ErrCode == errcode, $"expected {(int)status} {errcode}, got {(int)r.Status}: {r.Body?.ToJsonString()}");

    /// <summary>Long-polls from <paramref name="since"/> until a response satisfies <paramref name="done"/> (or 15 s).</summary>
    static async Task<JsonObject> SyncUntil(MatrixClient c, string since, Func<JsonObject, bool> done)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            var s = await c.Sync(since, 5000);
            if (done(s)) return s;
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(15), "no such /sync response in 15 s: " + s.ToJsonString());
            since = Batch(s);
        }
    }

    [Fact]
    public async Task A_read_receipt_reaches_the_other_member_in_incremental_and_initial_sync()
    {
        var (a, b, room) = await Pair();
        var since = Batch(await b.Sync());
        var ev = await a.SendText(room, "hello");
        (await a.Post(ReceiptPath(room, "m.read", ev), new JsonObject())).Ok();

        var inc = await SyncUntil(b, since, s => ReceiptOf(s, room, ev, "m.read", a.UserId) is not null);
        var r = ReceiptOf(inc, room, ev, "m.read", a.UserId)!;
        Assert.True(r["ts"]!.GetValue<long>() > 0);
        Assert.Null(r["thread_id"]);

        var initial = await b.Sync();
        Assert.NotNull(ReceiptOf(initial, room, ev, "m.read", a.UserId));
        // Nothing new after that: an incremental sync from the initial token carries no receipt.
        Assert.Null(Ephemeral(await b.Sync(Batch(initial)), room, "m.receipt"));
    }

    [Fact]
    public async Task A_receipt_never_moves_back_to_an_earlier_event()
    {
        var (a, b, room) = await Pair();
        var first = await a.SendText(room, "one");
        var second = await a.SendText(room, "two");
        (await a.Post(ReceiptPath(room, "m.read", second), new JsonObject())).Ok();
        (await a.Post(ReceiptPath(room, "m.read", first), new JsonObject())).Ok();
        var s = await b.Sync();
        Assert.NotNull(ReceiptOf(s, room, second, "m.read", a.UserId));
        Assert.Null(ReceiptOf(s, room, first, "m.read", a.UserId));
    }

    [Fact]
    public async Task A_private_receipt_reaches_only_its_owner()
    {
        var (a, b, room) = await Pair();
        var bSince = Batch(await b.Sync());
        var ev = await a.SendText(room, "secret");
        (await a.Post(ReceiptPath(room, "m.read.private", ev), new JsonObject())).Ok();

        Assert.NotNull(ReceiptOf(await a.Sync(), room, ev, "m.read.private", a.UserId));
        Assert.Null(Ephemeral(await b.Sync(), room, "m.receipt"));
        Assert.Null(Ephemeral(await b.Sync(bSince), room, "m.receipt"));
    }

    [Fact]
    public async Task Threaded_receipts_carry_their_thread_and_bad_thread_ids_are_refused()
    {
        var (a, b, room) = await Pair();
        var root = await a.SendText(room, "root");
        var other = await a.SendText(room, "other");
        (await a.Post(ReceiptPath(room, "m.read", root), new JsonObject { ["thread_id"] = "main" })).Ok();
        (await a.Post(ReceiptPath(room, "m.read", other), new JsonObject { ["thread_id"] = root })).Ok();
        (await a.Post(ReceiptPath(room, "m.read", other), new JsonObject())).Ok();
        var s = await b.Sync();
        Assert.Equal("main", ReceiptOf(s, room, root, "m.read", a.UserId)!["thread_id"]!.GetValue<string>());
        // On `other` Alice has a receipt in the thread and an unthreaded one: the unthreaded one is shown.
        Assert.NotNull(ReceiptOf(s, room, other, "m.read", a.UserId));

        foreach (var bad in (JsonNode?[])["", "thread", 5, null, new JsonObject()])
            Error(await a.Post(ReceiptPath(room, "m.read", root), new JsonObject { ["thread_id"] = bad }), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Error(await a.Post(ReceiptPath(room, "m.fully_read", root), new JsonObject { ["thread_id"] = "main" }), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Error(await a.Post(ReceiptPath(room, "m.unknown", root), new JsonObject()), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
    }

    [Fact]
    public async Task Read_markers_set_the_fully_read_account_data_and_the_receipts()
    {
        var (a, b, room) = await Pair();
        var aSince = Batch(await a.Sync());
        var ev = await b.SendText(room, "read me");
        (await a.Post($"{C}/rooms/{E(room)}/read_markers", new JsonObject { ["m.fully_read"] = ev, ["m.read"] = ev })).Ok();

        var marker = (await a.Get($"{C}/user/{E(a.UserId)}/rooms/{E(room)}/account_data/m.fully_read")).Ok().Obj;
        Assert.Equal(ev, marker["event_id"]!.GetValue<string>());
        var s = await SyncUntil(a, aSince, s => ReceiptOf(s, room, ev, "m.read", a.UserId) is not null);
        var accountData = s["rooms"]!["join"]![room]!["account_data"]!["events"]!.AsArray();
        Assert.Contains(accountData, e => e!["type"]!.GetValue<string>() == "m.fully_read" && e["content"]!["event_id"]!.GetValue<string>() == ev);
        Assert.NotNull(ReceiptOf(await b.Sync(), room, ev, "m.read", a.UserId));

        // m.fully_read through the receipt endpoint is the same marker, never a receipt.
        var later = await b.SendText(room, "later");
        (await a.Post(ReceiptPath(room, "m.fully_read", later), new JsonObject())).Ok();
        Assert.Equal(later, (await a.Get($"{C}/user/{E(a.UserId)}/rooms/{E(room)}/account_data/m.fully_read")).Ok().Obj["event_id"]!.GetValue<string>());
        Assert.Null(ReceiptOf(await b.Sync(), room, later, "m.fully_read", a.UserId));
        // ... and still not settable as account data.
        Assert.Equal(HttpStatusCode.MethodNotAllowed, (await a.Put($"{C}/user/{E(a.UserId)}/rooms/{E(room)}/account_data/m.fully_read", new JsonObject { ["event_id"] = ev })).Status);
    }

    [Fact]
    public async Task Receipts_need_a_joined_room_and_an_event_of_that_room()
    {
        var (a, _, room) = await Pair();
        var stranger = await Register(server);
        var ev = await a.SendText(room, "x");
        Error(await stranger.Post(ReceiptPath(room, "m.read", ev), new JsonObject()), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        Error(await stranger.Post($"{C}/rooms/{E(room)}/read_markers", new JsonObject { ["m.fully_read"] = ev }), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        Error(await a.Post(ReceiptPath(room, "m.read", "$unknown:test.local"), new JsonObject()), HttpStatusCode.NotFound, "M_NOT_FOUND");
        var otherRoom = await a.CreateRoom();
        var elsewhere = await a.SendText(otherRoom, "y");
        Error(await a.Post(ReceiptPath(room, "m.read", elsewhere), new JsonObject()), HttpStatusCode.NotFound, "M_NOT_FOUND");
        // A refused marker changes nothing, not even the valid one beside it.
        Error(await a.Post($"{C}/rooms/{E(room)}/read_markers", new JsonObject { ["m.fully_read"] = ev, ["m.read"] = elsewhere }), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Error(await a.Get($"{C}/user/{E(a.UserId)}/rooms/{E(room)}/account_data/m.fully_read"), HttpStatusCode.NotFound, "M_NOT_FOUND");
    }

    [Fact]
    public async Task Typing_appears_and_stopping_removes_it()
    {
        var (a, b, room) = await Pair();
        var since = Batch(await b.Sync());
        (await a.Put(TypingPath(room, a.UserId), new JsonObject { ["typing"] = true, ["timeout"] = 30000 })).Ok();
        var s = await SyncUntil(b, since, s => Typing(s, room) is { Count: > 0 });
        Assert.Equal([a.UserId], Typing(s, room));
        // Someone typing is in the initial sync too.
        Assert.Equal([a.UserId], Typing(await b.Sync(), room));

        (await a.Put(TypingPath(room, a.UserId), new JsonObject { ["typing"] = false })).Ok();
        s = await SyncUntil(b, Batch(s), s => Typing(s, room) is not null);
        Assert.Empty(Typing(s, room)!);
        Assert.Null(Typing(await b.Sync(), room));
    }

    [Fact]
    public async Task Typing_expires_at_its_timeout_and_wakes_the_waiting_sync()
    {
        var (a, b, room) = await Pair();
        var since = Batch(await b.Sync());
        (await a.Put(TypingPath(room, a.UserId), new JsonObject { ["typing"] = true, ["timeout"] = 1000 })).Ok();
        var s = await SyncUntil(b, since, s => Typing(s, room) is { Count: > 0 });
        var clock = Stopwatch.StartNew();
        s = await SyncUntil(b, Batch(s), s => Typing(s, room) is not null);
        Assert.Empty(Typing(s, room)!);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(4), $"the expiry took {clock.Elapsed}");
    }

    [Fact]
    public async Task Typing_is_only_for_yourself_in_a_joined_room()
    {
        var (a, b, room) = await Pair();
        var stranger = await Register(server);
        Error(await a.Put(TypingPath(room, b.UserId), new JsonObject { ["typing"] = true, ["timeout"] = 1000 }), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        Error(await stranger.Put(TypingPath(room, stranger.UserId), new JsonObject { ["typing"] = true, ["timeout"] = 1000 }), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        Error(await a.Put(TypingPath(room, a.UserId), new JsonObject { ["timeout"] = 1000 }), HttpStatusCode.BadRequest, "M_MISSING_PARAM");
    }

    [Fact]
    public async Task A_waiting_sync_returns_as_soon_as_the_other_member_types()
    {
        var (a, b, room) = await Pair();
        var since = Batch(await b.Sync());
        var clock = Stopwatch.StartNew();
        var waiting = b.Sync(since, 20000);
        await Task.Delay(500);
        Assert.False(waiting.IsCompleted);
        (await a.Put(TypingPath(room, a.UserId), new JsonObject { ["typing"] = true, ["timeout"] = 30000 })).Ok();
        var s = await waiting;
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"the wake-up took {clock.Elapsed}");
        Assert.Equal([a.UserId], Typing(s, room));

        // A receipt wakes it the same way.
        var ev = await a.SendText(room, "m");
        s = await SyncUntil(b, Batch(s), s => TimelineBodies(s, room).Count > 0);
        clock.Restart();
        waiting = b.Sync(Batch(s), 20000);
        await Task.Delay(500);
        (await a.Post(ReceiptPath(room, "m.read", ev), new JsonObject())).Ok();
        s = await waiting;
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"the wake-up took {clock.Elapsed}");
        Assert.NotNull(ReceiptOf(s, room, ev, "m.read", a.UserId));
    }

    [Fact]
    public async Task Tokens_without_the_new_slots_still_work_and_a_typing_slot_from_before_a_restart_gets_the_full_state()
    {
        var (a, b, room) = await Pair();
        var token = Batch(await b.Sync());
        Assert.Equal(6, token.Split('_').Length);
        var threeSlots = string.Join('_', token.Split('_').Take(3));
        var ev = await a.SendText(room, "x");
        (await a.Post(ReceiptPath(room, "m.read", ev), new JsonObject())).Ok();
        var s = await b.Sync(threeSlots);
        Assert.NotNull(ReceiptOf(s, room, ev, "m.read", a.UserId));

        // A typing slot above the server's in-memory position: the room's current typing state, even if nobody types.
        var parts = Batch(s).Split('_');
        parts[4] = "999999999";
        s = await b.Sync(string.Join('_', parts));
        Assert.Empty(Typing(s, room)!);
        Assert.NotEqual("999999999", Batch(s).Split('_')[4]);
    }

    [Fact]
    public async Task The_ephemeral_filter_leaves_out_what_it_excludes()
    {
        var (a, b, room) = await Pair();
        var ev = await a.SendText(room, "x");
        (await a.Post(ReceiptPath(room, "m.read", ev), new JsonObject())).Ok();
        (await a.Put(TypingPath(room, a.UserId), new JsonObject { ["typing"] = true, ["timeout"] = 30000 })).Ok();
        var s = await b.Sync(filter: """{"room":{"ephemeral":{"not_types":["m.typing"]}}}""");
        Assert.NotNull(Ephemeral(s, room, "m.receipt"));
        Assert.Null(Ephemeral(s, room, "m.typing"));
        s = await b.Sync(filter: """{"room":{"ephemeral":{"limit":0}}}""");
        Assert.Empty(s["rooms"]!["join"]![room]!["ephemeral"]!["events"]!.AsArray());
        s = await b.Sync(filter: """{"room":{"ephemeral":{"types":["m.typing"]}}}""");
        Assert.Null(Ephemeral(s, room, "m.receipt"));
        Assert.Equal([a.UserId], Typing(s, room));
    }
}

public sealed class AllInOneReceiptTypingTests(AllInOneFixture f) : ReceiptTypingTests(f), IClassFixture<AllInOneFixture>;

public sealed class SplitReceiptTypingTests(SplitFixture f) : ReceiptTypingTests(f), IClassFixture<SplitFixture>;

using System.Net;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using static Conduit.Functional.Tests.MatrixClient;

namespace Conduit.Functional.Tests;

/// <summary>
/// A push gateway served by the test on loopback (spec: push-gateway-api, POST /_matrix/push/v1/notify): it records
/// every notification it gets, and answers with the status (and rejected pushkeys) the test sets.
/// </summary>
public sealed class GatewayStub : IAsyncDisposable
{
    readonly WebApplication _app;
    public Channel<JsonObject> Received { get; } = Channel.CreateUnbounded<JsonObject>();
    /// <summary>Statuses for the next requests, in order; 200 once they run out.</summary>
    public Queue<int> Statuses { get; } = new();
    public List<string> Rejected { get; } = [];
    public int Requests;

    GatewayStub(WebApplication app) => _app = app;

    public string Url { get; private set; } = "";

    public static async Task<GatewayStub> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        var app = builder.Build();
        var stub = new GatewayStub(app);
        app.MapPost("/_matrix/push/v1/notify", async (HttpContext ctx) =>
        {
            Interlocked.Increment(ref stub.Requests);
            var body = await JsonNode.ParseAsync(ctx.Request.Body);
            int status;
            lock (stub.Statuses) status = stub.Statuses.Count > 0 ? stub.Statuses.Dequeue() : 200;
            if (status == 200) stub.Received.Writer.TryWrite(body!.AsObject());
            ctx.Response.StatusCode = status;
            ctx.Response.ContentType = "application/json";
            var rejected = new JsonArray();
            lock (stub.Rejected) foreach (var r in stub.Rejected) rejected.Add((JsonNode)r);
            await ctx.Response.WriteAsync(new JsonObject { ["rejected"] = rejected }.ToJsonString());
        });
        await app.StartAsync();
        stub.Url = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First().TrimEnd('/') + "/_matrix/push/v1/notify";
        return stub;
    }

    /// <summary>The next notification received, within 15 s.</summary>
    public async Task<JsonObject> Next()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        try { return (await Received.Reader.ReadAsync(cts.Token))["notification"]!.AsObject(); }
        catch (OperationCanceledException) { throw new Xunit.Sdk.XunitException("no push reached the gateway in 15 s"); }
    }

    public async ValueTask DisposeAsync() => await _app.DisposeAsync();
}

/// <summary>
/// Push (spec: client-server-api, "Push Notifications"): the default rules evaluated by the server on every event,
/// the unread counts in /sync and their reset by receipts, GET /notifications, pushers, and delivery to a push gateway.
/// </summary>
public abstract class PushTests(ServerFixture server)
{
    /// <summary>Loopback gateways are allowed here; the default ip_range_denylist refuses them.</summary>
    public const string Config = "rate_limits = { enabled = false }\nip_range_denylist = []";

    static (long Notifications, long Highlights) Counts(JsonObject sync, string room)
    {
        var u = sync["rooms"]?["join"]?[room]?["unread_notifications"];
        Assert.True(u is not null, "no unread_notifications for the room: " + sync.ToJsonString());
        return (u!["notification_count"]!.GetValue<long>(), u["highlight_count"]!.GetValue<long>());
    }

    static void Error(Response r, HttpStatusCode status, string errcode)
        => Assert.True(r.Status == status && r.ErrCode == errcode, $"expected {(int)status} {errcode}, got {(int)r.Status}: {r.Body?.ToJsonString()}");

    static string ReceiptPath(string room, string eventId, string type = "m.read") => $"{C}/rooms/{E(room)}/receipt/{type}/{E(eventId)}";

    static int _txn;
    static async Task<string> Send(MatrixClient c, string room, JsonObject content, string type = "m.room.message")
        => (await c.Put($"{C}/rooms/{E(room)}/send/{type}/p{Interlocked.Increment(ref _txn)}", content)).Ok().Obj["event_id"]!.GetValue<string>();

    static JsonObject Mention(string body, params string[] users)
        => new() { ["msgtype"] = "m.text", ["body"] = body, ["m.mentions"] = new JsonObject { ["user_ids"] = new JsonArray([.. users.Select(u => (JsonNode)u)]) } };

    static JsonObject Pusher(string url, string pushKey, string appId = "org.example.app", bool? append = null, string? format = null)
    {
        var data = new JsonObject { ["url"] = url, ["custom"] = "kept" };
        if (format is not null) data["format"] = format;
        var p = new JsonObject
        {
            ["kind"] = "http", ["app_id"] = appId, ["pushkey"] = pushKey, ["app_display_name"] = "App", ["device_display_name"] = "Phone",
            ["lang"] = "en", ["data"] = data,
        };
        if (append is { } a) p["append"] = a;
        return p;
    }

    /// <summary>A room of three: Alice's, with Bob and Carol joined (no one-to-one rule applies).</summary>
    async Task<(MatrixClient A, MatrixClient B, MatrixClient Cc, string Room)> Trio()
    {
        var (a, b, room) = await PublicRoomPair(server);
        var c = await Register(server);
        (await c.Post($"{C}/join/{E(room)}", new JsonObject())).Ok();
        return (a, b, c, room);
    }

    [Fact]
    public async Task Messages_count_as_unread_mentions_highlight_and_a_read_receipt_resets_the_counts()
    {
        var (a, b, c, room) = await Trio();
        await a.SendText(room, "one");
        var last = await Send(a, room, Mention("hey bob", b.UserId));
        Assert.Equal((2, 1), Counts(await b.Sync(), room));
        Assert.Equal((2, 0), Counts(await c.Sync(), room));
        // The sender's own messages never count for them.
        Assert.Equal((0, 0), Counts(await a.Sync(), room));

        var since = (await b.Sync())["next_batch"]!.GetValue<string>();
        (await b.Post(ReceiptPath(room, last), new JsonObject())).Ok();
        var inc = await b.Sync(since);
        Assert.Equal((0, 0), Counts(inc, room));
        Assert.Equal((0, 0), Counts(await b.Sync(), room));
        // A private receipt clears them as well.
        var more = await a.SendText(room, "two");
        Assert.Equal((3, 0), Counts(await c.Sync(), room));
        (await c.Post(ReceiptPath(room, more, "m.read.private"), new JsonObject())).Ok();
        Assert.Equal((0, 0), Counts(await c.Sync(), room));
    }

    [Fact]
    public async Task The_count_of_a_new_event_arrives_in_the_same_sync_as_the_event()
    {
        var (a, b, room) = await PublicRoomPair(server);
        var since = (await b.Sync())["next_batch"]!.GetValue<string>();
        var wait = b.Sync(since, 10_000);
        await a.SendText(room, "ping");
        var s = await wait;
        Assert.Contains("ping", TimelineBodies(s, room));
        Assert.Equal((1, 0), Counts(s, room));
    }

    [Fact]
    public async Task Notices_reactions_and_edits_do_not_notify_and_the_users_own_rules_apply()
    {
        var (a, b, c, room) = await Trio();
        var ev = await a.SendText(room, "x");
        (await b.Post(ReceiptPath(room, ev), new JsonObject())).Ok();
        await Send(a, room, new JsonObject { ["msgtype"] = "m.notice", ["body"] = "bot says" });
        await Send(a, room, new JsonObject { ["m.relates_to"] = new JsonObject { ["rel_type"] = "m.annotation", ["event_id"] = ev, ["key"] = "👍" } }, "m.reaction");
        await Send(a, room, new JsonObject
        {
            ["msgtype"] = "m.text", ["body"] = "* y", ["m.new_content"] = new JsonObject { ["msgtype"] = "m.text", ["body"] = "y" },
            ["m.relates_to"] = new JsonObject { ["rel_type"] = "m.replace", ["event_id"] = ev },
        });
        Assert.Equal((0, 0), Counts(await b.Sync(), room));

        // Bob mutes the room with a room rule; Carol turns the message rule off.
        (await b.Put($"{C}/pushrules/global/room/{E(room)}", new JsonObject { ["actions"] = new JsonArray() })).Ok();
        (await c.Put($"{C}/pushrules/global/underride/.m.rule.message/enabled", new JsonObject { ["enabled"] = false })).Ok();
        var cBefore = Counts(await c.Sync(), room);
        await a.SendText(room, "muted");
        Assert.Equal((0, 0), Counts(await b.Sync(), room));
        Assert.Equal(cBefore, Counts(await c.Sync(), room));
        // A mention still reaches Carol (override rule), not Bob's muted room (room rules come after overrides, so it does).
        await Send(a, room, Mention("carol?", c.UserId, b.UserId));
        Assert.Equal((cBefore.Notifications + 1, cBefore.Highlights + 1), Counts(await c.Sync(), room));
        Assert.Equal((1, 1), Counts(await b.Sync(), room));
    }

    [Fact]
    public async Task Ignored_users_do_not_notify()
    {
        var (a, b, room) = await PublicRoomPair(server);
        (await b.Put($"{C}/user/{E(b.UserId)}/account_data/m.ignored_user_list",
            new JsonObject { ["ignored_users"] = new JsonObject { [a.UserId] = new JsonObject() } })).Ok();
        await a.SendText(room, "you cannot hear me");
        Assert.Equal((0, 0), Counts(await b.Sync(), room));
    }

    [Fact]
    public async Task Thread_notifications_are_counted_per_thread_and_a_threaded_receipt_clears_only_its_thread()
    {
        var (a, b, room) = await PublicRoomPair(server);
        var root = await a.SendText(room, "root");
        var reply = await Send(a, room, new JsonObject
        {
            ["msgtype"] = "m.text", ["body"] = "in thread",
            ["m.relates_to"] = new JsonObject { ["rel_type"] = "m.thread", ["event_id"] = root },
        });
        const string filter = """{"room":{"timeline":{"unread_thread_notifications":true}}}""";
        var s = await b.Sync(filter: filter);
        var join = s["rooms"]!["join"]![room]!;
        Assert.Equal(1, join["unread_notifications"]!["notification_count"]!.GetValue<long>());
        Assert.Equal(1, join["unread_thread_notifications"]![root]!["notification_count"]!.GetValue<long>());
        // Without the filter flag the room counts both.
        Assert.Equal((2, 0), Counts(await b.Sync(), room));

        (await b.Post(ReceiptPath(room, reply), new JsonObject { ["thread_id"] = root })).Ok();
        s = await b.Sync(filter: filter);
        join = s["rooms"]!["join"]![room]!;
        Assert.Equal(1, join["unread_notifications"]!["notification_count"]!.GetValue<long>());
        Assert.Null(join["unread_thread_notifications"]![root]);
        (await b.Post(ReceiptPath(room, root), new JsonObject { ["thread_id"] = "main" })).Ok();
        Assert.Equal((0, 0), Counts(await b.Sync(), room));
    }

    [Fact]
    public async Task Sending_in_a_room_reads_it_for_the_sender()
    {
        var (a, b, room) = await PublicRoomPair(server);
        await a.SendText(room, "question?");
        Assert.Equal((1, 0), Counts(await b.Sync(), room));
        await b.SendText(room, "answer");
        Assert.Equal((0, 0), Counts(await b.Sync(), room));
    }

    [Fact]
    public async Task Notifications_lists_what_notified_newest_first_with_read_flags_and_pages()
    {
        var (a, b, c, room) = await Trio();
        var first = await a.SendText(room, "first");
        var mention = await Send(a, room, Mention("bob!", b.UserId));
        var third = await a.SendText(room, "third");
        await b.Sync(); // the worker has evaluated what the sync covers
        (await b.Post(ReceiptPath(room, first), new JsonObject())).Ok();

        var all = (await b.Get($"{C}/notifications")).Ok().Obj;
        var list = all["notifications"]!.AsArray();
        Assert.Equal([third, mention, first], list.Select(n => n!["event"]!["event_id"]!.GetValue<string>()));
        Assert.Equal([false, false, true], list.Select(n => n!["read"]!.GetValue<bool>()));
        Assert.All(list, n => Assert.Equal(room, n!["room_id"]!.GetValue<string>()));
        Assert.Equal("bob!", list[1]!["event"]!["content"]!["body"]!.GetValue<string>());
        Assert.Contains(list[1]!["actions"]!.AsArray(), x => x is JsonObject o && o["set_tweak"]?.GetValue<string>() == "highlight");
        Assert.True(list[0]!["ts"]!.GetValue<long>() > 0);

        var page = (await b.Get($"{C}/notifications?limit=2")).Ok().Obj;
        Assert.Equal(2, page["notifications"]!.AsArray().Count);
        var next = page["next_token"]!.GetValue<string>();
        var rest = (await b.Get($"{C}/notifications?limit=2&from={E(next)}")).Ok().Obj;
        Assert.Equal([first], rest["notifications"]!.AsArray().Select(n => n!["event"]!["event_id"]!.GetValue<string>()));
        Assert.Null(rest["next_token"]);

        var highlights = (await b.Get($"{C}/notifications?only=highlight")).Ok().Obj["notifications"]!.AsArray();
        Assert.Equal([mention], highlights.Select(n => n!["event"]!["event_id"]!.GetValue<string>()));
        // Alice sent them all: nothing for her.
        Assert.Empty((await a.Get($"{C}/notifications")).Ok().Obj["notifications"]!.AsArray());
        Error(await b.Get($"{C}/notifications?limit=-1"), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Error(await b.Get($"{C}/notifications?from=abc"), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Error(await new MatrixClient(server).Get($"{C}/notifications"), HttpStatusCode.Unauthorized, "M_MISSING_TOKEN");
    }

    [Fact]
    public async Task Pushers_are_set_listed_replaced_and_deleted_per_user()
    {
        var a = await Register(server);
        var b = await Register(server);
        const string url = "https://push.example.org/_matrix/push/v1/notify";
        (await a.Post($"{C}/pushers/set", Pusher(url, "key-a"))).Ok();
        var list = (await a.Get($"{C}/pushers")).Ok().Obj["pushers"]!.AsArray();
        var p = Assert.Single(list)!;
        Assert.Equal("key-a", p["pushkey"]!.GetValue<string>());
        Assert.Equal("http", p["kind"]!.GetValue<string>());
        Assert.Equal(url, p["data"]!["url"]!.GetValue<string>());
        Assert.Equal("kept", p["data"]!["custom"]!.GetValue<string>());
        Assert.Empty((await b.Get($"{C}/pushers")).Ok().Obj["pushers"]!.AsArray());

        // The same app and pushkey for Bob, without append, takes it from Alice; with append both keep it.
        (await b.Post($"{C}/pushers/set", Pusher(url, "key-a"))).Ok();
        Assert.Empty((await a.Get($"{C}/pushers")).Ok().Obj["pushers"]!.AsArray());
        (await a.Post($"{C}/pushers/set", Pusher(url, "key-a", append: true))).Ok();
        Assert.Single((await a.Get($"{C}/pushers")).Ok().Obj["pushers"]!.AsArray());
        Assert.Single((await b.Get($"{C}/pushers")).Ok().Obj["pushers"]!.AsArray());

        // Setting it again replaces it (one pusher per app_id and pushkey).
        var changed = Pusher(url, "key-a", append: true);
        changed["device_display_name"] = "Tablet";
        (await a.Post($"{C}/pushers/set", changed)).Ok();
        Assert.Equal("Tablet", Assert.Single((await a.Get($"{C}/pushers")).Ok().Obj["pushers"]!.AsArray())!["device_display_name"]!.GetValue<string>());

        (await a.Post($"{C}/pushers/set", new JsonObject { ["kind"] = null, ["app_id"] = "org.example.app", ["pushkey"] = "key-a" })).Ok();
        Assert.Empty((await a.Get($"{C}/pushers")).Ok().Obj["pushers"]!.AsArray());
        Assert.Single((await b.Get($"{C}/pushers")).Ok().Obj["pushers"]!.AsArray());
    }

    [Fact]
    public async Task Logging_out_a_device_removes_the_pushers_it_set()
    {
        var (a, b, room) = await PublicRoomPair(server);
        const string url = "https://push.example.org/_matrix/push/v1/notify";
        // A second device of Bob's sets its own pusher.
        var login = (await new MatrixClient(server).Call("POST", $"{C}/login", new JsonObject
        {
            ["type"] = "m.login.password", ["identifier"] = new JsonObject { ["type"] = "m.id.user", ["user"] = b.UserId }, ["password"] = "correct horse",
        }, auth: false)).Ok().Obj;
        var phone = new MatrixClient(server, login["access_token"]!.GetValue<string>()) { UserId = b.UserId };
        (await b.Post($"{C}/pushers/set", Pusher(url, "desktop"))).Ok();
        (await phone.Post($"{C}/pushers/set", Pusher(url, "phone"))).Ok();
        Assert.Equal(2, (await b.Get($"{C}/pushers")).Ok().Obj["pushers"]!.AsArray().Count);
        // The device ID is the server's own bookkeeping, not shown.
        Assert.All((await b.Get($"{C}/pushers")).Ok().Obj["pushers"]!.AsArray(), p => Assert.Null(p!["device_id"]));

        (await phone.Post($"{C}/logout", new JsonObject())).Ok();
        var deadline = DateTime.UtcNow.AddSeconds(15);
        while (true)
        {
            var keys = (await b.Get($"{C}/pushers")).Ok().Obj["pushers"]!.AsArray().Select(p => p!["pushkey"]!.GetValue<string>()).ToList();
            if (keys.SequenceEqual(["desktop"])) break;
            Assert.True(DateTime.UtcNow < deadline, "pushers after the phone logged out: " + string.Join(", ", keys));
            await Task.Delay(50);
        }
        _ = a;
        _ = room;
    }

    [Fact]
    public async Task A_bad_pusher_is_refused_with_the_right_error()
    {
        var a = await Register(server);
        const string url = "https://push.example.org/_matrix/push/v1/notify";
        Error(await a.Post($"{C}/pushers/set", new JsonObject { ["kind"] = "http", ["app_id"] = "x" }), HttpStatusCode.BadRequest, "M_MISSING_PARAM");
        var noLang = Pusher(url, "k");
        noLang.Remove("lang");
        Error(await a.Post($"{C}/pushers/set", noLang), HttpStatusCode.BadRequest, "M_MISSING_PARAM");
        var noUrl = Pusher(url, "k");
        noUrl["data"] = new JsonObject();
        Error(await a.Post($"{C}/pushers/set", noUrl), HttpStatusCode.BadRequest, "M_MISSING_PARAM");
        Error(await a.Post($"{C}/pushers/set", Pusher("https://push.example.org/notify", "k")), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Error(await a.Post($"{C}/pushers/set", Pusher("ftp://push.example.org/_matrix/push/v1/notify", "k")), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Error(await a.Post($"{C}/pushers/set", Pusher(url, "k", appId: new string('a', 65))), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Error(await a.Post($"{C}/pushers/set", Pusher(url, new string('k', 513))), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        var weird = Pusher(url, "k");
        weird["kind"] = "carrier-pigeon";
        Error(await a.Post($"{C}/pushers/set", weird), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        var email = Pusher(url, "a@example.org");
        email["kind"] = "email";
        Assert.Equal(HttpStatusCode.BadRequest, (await a.Post($"{C}/pushers/set", email)).Status);
        Error(await a.Call("POST", $"{C}/pushers/set", rawBody: "{"), HttpStatusCode.BadRequest, "M_NOT_JSON");
        Assert.Empty((await a.Get($"{C}/pushers")).Ok().Obj["pushers"]!.AsArray());
    }

    [Fact]
    public async Task The_gateway_receives_exactly_what_the_default_rules_call_for()
    {
        await using var gw = await GatewayStub.StartAsync();
        // A direct chat of two, and a group of three; Bob's phone has a pusher.
        var (a, b, c, group) = await Trio();
        var dm = await a.CreateRoom(new JsonObject { ["preset"] = "trusted_private_chat", ["invite"] = new JsonArray((JsonNode)b.UserId), ["is_direct"] = true });
        (await b.Post($"{C}/join/{E(dm)}", new JsonObject())).Ok();
        // The invite notified Bob before he had a pusher: a sync waits until the server has evaluated it.
        await b.Sync();
        (await b.Post($"{C}/pushers/set", Pusher(gw.Url, "bob-phone"))).Ok();

        var dmMessage = await a.SendText(dm, "hi in private");          // room_one_to_one: notify, sound
        await b.SendText(group, "my own message");                       // Bob's own: nothing (in the group: in the DM it
                                                                         // would read the message above, whose push may not be out yet)
        await Send(a, group, new JsonObject { ["msgtype"] = "m.notice", ["body"] = "bot" }); // suppress_notices: nothing
        var mention = await Send(a, group, Mention("look @bob", b.UserId)); // is_user_mention: notify, sound, highlight
        await Send(c, group, new JsonObject { ["m.relates_to"] = new JsonObject { ["rel_type"] = "m.annotation", ["event_id"] = mention, ["key"] = "x" } }, "m.reaction");
        var groupMessage = await c.SendText(group, "plain group message"); // message: notify only

        var first = await gw.Next();
        Assert.True(dmMessage == first["event_id"]!.GetValue<string>(), "first push: " + first.ToJsonString());
        Assert.Equal(dm, first["room_id"]!.GetValue<string>());
        Assert.Equal("m.room.message", first["type"]!.GetValue<string>());
        Assert.Equal(a.UserId, first["sender"]!.GetValue<string>());
        Assert.Equal("hi in private", first["content"]!["body"]!.GetValue<string>());
        Assert.Equal("high", first["prio"]!.GetValue<string>());
        Assert.True(first["counts"]!["unread"]!.GetValue<long>() >= 1);
        var device = first["devices"]![0]!;
        Assert.Equal("bob-phone", device["pushkey"]!.GetValue<string>());
        Assert.Equal("org.example.app", device["app_id"]!.GetValue<string>());
        Assert.Equal("kept", device["data"]!["custom"]!.GetValue<string>());
        Assert.Null(device["data"]!["url"]);
        Assert.Equal("default", device["tweaks"]!["sound"]!.GetValue<string>());

        var second = await gw.Next();
        Assert.Equal(mention, second["event_id"]!.GetValue<string>());
        Assert.True(second["devices"]![0]!["tweaks"]!["highlight"]!.GetValue<bool>());

        var third = await gw.Next();
        Assert.Equal(groupMessage, third["event_id"]!.GetValue<string>());
        Assert.Equal("low", third["prio"]!.GetValue<string>());
        Assert.Null(third["devices"]![0]!["tweaks"]!["highlight"]);
        Assert.Equal(3, gw.Requests);
    }

    [Fact]
    public async Task A_failing_gateway_is_retried_and_a_rejected_pushkey_removes_its_pusher()
    {
        await using var gw = await GatewayStub.StartAsync();
        lock (gw.Statuses) { gw.Statuses.Enqueue(500); gw.Statuses.Enqueue(503); }
        var (a, b, room) = await PublicRoomPair(server);
        (await b.Post($"{C}/pushers/set", Pusher(gw.Url, "flaky", format: "event_id_only"))).Ok();
        var ev = await a.SendText(room, "eventually");
        var got = await gw.Next();
        Assert.Equal(ev, got["event_id"]!.GetValue<string>());
        Assert.Equal(room, got["room_id"]!.GetValue<string>());
        // event_id_only: no content, no sender.
        Assert.Null(got["content"]);
        Assert.Null(got["sender"]);
        Assert.Equal(3, gw.Requests);

        lock (gw.Rejected) gw.Rejected.Add("flaky");
        await a.SendText(room, "last one");
        await gw.Next();
        var deadline = DateTime.UtcNow.AddSeconds(15);
        while ((await b.Get($"{C}/pushers")).Ok().Obj["pushers"]!.AsArray().Count > 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "the rejected pusher was not removed");
            await Task.Delay(50);
        }
    }
}

public sealed class PushServerAllInOne : AllInOneFixture
{
    protected override string ExtraConfig => PushTests.Config;
}

public sealed class PushServerSplit : SplitFixture
{
    protected override string ExtraConfig => PushTests.Config;
}

public sealed class AllInOnePushTests(PushServerAllInOne f) : PushTests(f), IClassFixture<PushServerAllInOne>;

public sealed class SplitPushTests(PushServerSplit f) : PushTests(f), IClassFixture<PushServerSplit>;

using System.Net;
using System.Text.Json.Nodes;
using static Conduit.Functional.Tests.MatrixClient;

namespace Conduit.Functional.Tests;

/// <summary>
/// Application services (spec: application-service-api): a registration file named by app_service_config_files, its
/// as_token acting as its sender or (with user_id) as a user of its namespace, registration and login with
/// m.login.application_service, and its exclusive namespace closed to ordinary registration.
/// </summary>
public abstract partial class AppserviceTests(ServerFixture server, FakeAppservice fake)
{
    public const string AsToken = "appservice_tests_as_token";
    public const string HsToken = "appservice_tests_hs_token";
    const string Id = "irc-bridge";

    /// <summary>The registration file the fixtures write into their work directory.</summary>
    public static string Registration(string? url) => $"""
        id: {Id}
        url: {(url is null ? "null" : $"\"{url}\"")}
        as_token: {AsToken}
        hs_token: {HsToken}
        sender_localpart: ircbot
        rate_limited: false
        receive_ephemeral: true
        org.matrix.msc3202: true
        protocols: [irc]
        namespaces:
          users:
            - exclusive: true
              regex: "@irc_.*:test\\.local"
          aliases:
            - exclusive: true
              regex: "#irc_.*:test\\.local"
          rooms: []
        """;

    /// <summary>A second registration, with no url, for M_URL_NOT_SET.</summary>
    public const string Quiet = """
        id: quiet
        url: null
        as_token: appservice_tests_quiet_as
        hs_token: appservice_tests_quiet_hs
        sender_localpart: quietbot
        namespaces: {users: [], aliases: [], rooms: []}
        """;

    /// <summary>A third, listing the irc bridge's protocol and one of its own, at an address where nothing
    /// answers: its failures must be skipped.</summary>
    public static string Gone(string url) => $$"""
        id: gone
        url: "{{url}}"
        as_token: appservice_tests_gone_as
        hs_token: appservice_tests_gone_hs
        sender_localpart: gonebot
        protocols: [irc, gitter]
        namespaces: {users: [], aliases: [], rooms: []}
        """;

    /// <summary>The [global] lines of the fixtures: the registrations, written into <paramref name="work"/> with
    /// the irc bridge's url pointing at <paramref name="fake"/>.</summary>
    public static string Config(string work, FakeAppservice fake)
    {
        var bridge = Path.Combine(work, "appservice.yaml");
        var quiet = Path.Combine(work, "quiet.yaml");
        var gone = Path.Combine(work, "gone.yaml");
        File.WriteAllText(bridge, Registration(fake.Url));
        File.WriteAllText(quiet, Quiet);
        File.WriteAllText(gone, Gone(FakeAppservice.ClosedUrl()));
        return $"rate_limits = {{ enabled = false }}\napp_service_config_files = ['{bridge}', '{quiet}', '{gone}']";
    }

    MatrixClient Appservice => new(server, AsToken);

    static void Error(Response r, HttpStatusCode status, string errcode)
    {
        Assert.True(r.Status == status, $"expected {(int)status}, got {(int)r.Status}: {r.Body?.ToJsonString()}");
        Assert.Equal(errcode, r.ErrCode);
    }

    Task<Response> AppserviceRegister(string username, MatrixClient? by = null, bool inhibit = false)
        => (by ?? Appservice).Post($"{C}/register", new JsonObject
        {
            ["type"] = "m.login.application_service",
            ["username"] = username,
            ["inhibit_login"] = inhibit,
        });

    Task<Response> AppserviceLogin(string user, MatrixClient by)
        => by.Post($"{C}/login", new JsonObject
        {
            ["type"] = "m.login.application_service",
            ["identifier"] = new JsonObject { ["type"] = "m.id.user", ["user"] = user },
        });

    [Fact]
    public async Task Without_user_id_the_as_token_is_the_appservices_sender()
    {
        var whoami = (await Appservice.Get($"{C}/account/whoami")).Ok().Obj;
        Assert.Equal($"@ircbot:{server.ServerName}", whoami["user_id"]!.GetValue<string>());
        // A profile like any user's: the account was made on first use.
        (await Appservice.Get($"{C}/profile/{E($"@ircbot:{server.ServerName}")}")).Ok();
    }

    [Fact]
    public async Task The_appservice_registers_logs_in_and_acts_as_users_of_its_namespace()
    {
        var name = UniqueName("irc_");
        var userId = $"@{name}:{server.ServerName}";
        var registered = (await AppserviceRegister(name)).Ok().Obj;
        Assert.Equal(userId, registered["user_id"]!.GetValue<string>());
        var device = registered["device_id"]!.GetValue<string>();
        Assert.Equal(userId, (await new MatrixClient(server, registered["access_token"]!.GetValue<string>()).Get($"{C}/account/whoami")).Ok().Obj["user_id"]!.GetValue<string>());
        Error(await AppserviceRegister(name), HttpStatusCode.BadRequest, "M_USER_IN_USE");
        Error(await AppserviceRegister(UniqueName("plain")), HttpStatusCode.BadRequest, "M_EXCLUSIVE");
        var quiet = UniqueName("irc_");
        var inhibited = (await AppserviceRegister(quiet, inhibit: true)).Ok().Obj;
        Assert.Null(inhibited["access_token"]);
        // matrix-bot-sdk registers a puppet with ?user_id= naming it, not yet registered: identity assertion is not
        // for account management, so /register takes the as_token alone.
        var puppet = UniqueName("irc_");
        var puppetId = $"@{puppet}:{server.ServerName}";
        var asserted = (await Appservice.Post($"{C}/register?user_id={E(puppetId)}", new JsonObject
        {
            ["type"] = "m.login.application_service", ["username"] = puppet, ["inhibit_login"] = true,
        })).Ok().Obj;
        Assert.Equal(puppetId, asserted["user_id"]!.GetValue<string>());

        // Identity assertion: ?user_id= in its namespace and registered; the device must be the user's.
        var asUser = (await Appservice.Get($"{C}/account/whoami?user_id={E(userId)}")).Ok().Obj;
        Assert.Equal(userId, asUser["user_id"]!.GetValue<string>());
        var withDevice = (await Appservice.Get($"{C}/account/whoami?user_id={E(userId)}&org.matrix.msc3202.device_id={E(device)}")).Ok().Obj;
        Assert.Equal(device, withDevice["device_id"]!.GetValue<string>());
        Error(await Appservice.Get($"{C}/account/whoami?user_id={E(userId)}&device_id=NOTADEVICE"), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        Error(await Appservice.Get($"{C}/account/whoami?user_id={E($"@{UniqueName("irc_")}:{server.ServerName}")}"), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        var outsider = await Register(server);
        Error(await Appservice.Get($"{C}/account/whoami?user_id={E(outsider.UserId)}"), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        Error(await Appservice.Get($"{C}/account/whoami?user_id={E("@irc_x:elsewhere.example")}"), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        // An ordinary user's token ignores user_id.
        Assert.Equal(outsider.UserId, (await outsider.Get($"{C}/account/whoami?user_id={E(userId)}")).Ok().Obj["user_id"]!.GetValue<string>());
        // Answers are per user_id, never one cached for the token.
        Assert.Equal($"@ircbot:{server.ServerName}", (await Appservice.Get($"{C}/account/whoami")).Ok().Obj["user_id"]!.GetValue<string>());

        // Login without a password, as the appservice only.
        var login = (await AppserviceLogin(quiet, Appservice)).Ok().Obj;
        Assert.Equal($"@{quiet}:{server.ServerName}", login["user_id"]!.GetValue<string>());
        Error(await AppserviceLogin(outsider.UserId, Appservice), HttpStatusCode.BadRequest, "M_EXCLUSIVE");
        Error(await AppserviceLogin(quiet, new MatrixClient(server)), HttpStatusCode.Unauthorized, "M_MISSING_TOKEN");
        Error(await AppserviceLogin(quiet, outsider), HttpStatusCode.Unauthorized, "M_UNKNOWN_TOKEN");
        Error(await AppserviceRegister(UniqueName("irc_"), outsider), HttpStatusCode.Unauthorized, "M_UNKNOWN_TOKEN");
        // Its users have no password to guess.
        Assert.Equal(HttpStatusCode.Forbidden, (await PasswordLogin(server, userId, "anything")).Status);
    }

    [Fact]
    public async Task Ping_reaches_the_appservice_with_its_hs_token()
    {
        const string Ping = "/_matrix/client/v1/appservice/irc-bridge/ping";
        var pong = (await Appservice.Post(Ping, new JsonObject { ["transaction_id"] = "txn-1" })).Ok().Obj;
        Assert.True(pong["duration_ms"]!.GetValue<long>() >= 0);
        Assert.Equal("/_matrix/app/v1/ping", fake.LastPath);
        Assert.Equal($"Bearer {HsToken}", fake.LastAuthorization);
        Assert.Equal("txn-1", JsonNode.Parse(fake.LastBody!)!["transaction_id"]!.GetValue<string>());

        fake.Status = 401;
        try
        {
            var bad = await Appservice.Post(Ping, new JsonObject());
            Error(bad, HttpStatusCode.BadGateway, "M_BAD_STATUS");
            Assert.Equal(401, bad.Obj["status"]!.GetValue<int>());
            Assert.Contains("M_FORBIDDEN", bad.Obj["body"]!.GetValue<string>());
        }
        finally { fake.Status = 200; }

        // Only the appservice itself, by its own id.
        Error(await Appservice.Post("/_matrix/client/v1/appservice/quiet/ping", new JsonObject()), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        Error(await (await Register(server)).Post(Ping, new JsonObject()), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        var quiet = new MatrixClient(server, "appservice_tests_quiet_as");
        Error(await quiet.Post("/_matrix/client/v1/appservice/quiet/ping", new JsonObject()), HttpStatusCode.BadRequest, "M_URL_NOT_SET");
    }

    [Fact]
    public async Task Only_the_appservice_creates_aliases_in_its_exclusive_alias_namespace()
    {
        var u = await Register(server);
        var room = await u.CreateRoom();
        var claimed = $"#{UniqueName("irc_")}:{server.ServerName}";
        Error(await u.Put($"{C}/directory/room/{E(claimed)}", new JsonObject { ["room_id"] = room }), HttpStatusCode.BadRequest, "M_EXCLUSIVE");
        Error(await u.Post($"{C}/createRoom", new JsonObject { ["room_alias_name"] = claimed[1..claimed.IndexOf(':')] }), HttpStatusCode.BadRequest, "M_EXCLUSIVE");
        (await u.Put($"{C}/directory/room/{E($"#{UniqueName("plain")}:{server.ServerName}")}", new JsonObject { ["room_id"] = room })).Ok();

        // The appservice (its sender) may: it creates a room under that alias.
        var created = (await Appservice.Post($"{C}/createRoom", new JsonObject { ["room_alias_name"] = claimed[1..claimed.IndexOf(':')] })).Ok().Obj["room_id"]!.GetValue<string>();
        Assert.Equal(created, (await u.Get($"{C}/directory/room/{E(claimed)}")).Ok().Obj["room_id"]!.GetValue<string>());
    }

    /// <summary>A room with an ordinary user and one of the appservice's users joined.</summary>
    async Task<(MatrixClient User, string Room, string Puppet)> BridgedRoom()
    {
        var u = await Register(server);
        var room = await u.CreateRoom();
        var name = UniqueName("irc_");
        var puppet = $"@{name}:{server.ServerName}";
        (await AppserviceRegister(name, inhibit: true)).Ok();
        (await u.Post($"{C}/rooms/{E(room)}/invite", new JsonObject { ["user_id"] = puppet })).Ok();
        (await Appservice.Post($"{C}/rooms/{E(room)}/join?user_id={E(puppet)}", new JsonObject())).Ok();
        return (u, room, puppet);
    }

    static string? Body(JsonObject e) => e["content"]?["body"] is JsonValue v && v.TryGetValue(out string? b) ? b : null;

    [Fact]
    public async Task Transactions_carry_the_events_of_rooms_its_users_are_in_in_order_with_the_hs_token()
    {
        var (u, room, puppet) = await BridgedRoom();
        var other = await u.CreateRoom();
        var tag = UniqueName("m");
        await u.SendText(other, $"{tag} not for the bridge");
        for (var i = 1; i <= 3; i++) await u.SendText(room, $"{tag} {i}");
        await FakeAppservice.Until(() => fake.AcknowledgedEvents().Any(e => Body(e) == $"{tag} 3"), "the third message");
        var mine = fake.AcknowledgedEvents().Where(e => Body(e)?.StartsWith(tag, StringComparison.Ordinal) == true).ToList();
        // Only the bridged room's, each once, in order, in the client format.
        Assert.Equal([$"{tag} 1", $"{tag} 2", $"{tag} 3"], mine.Select(Body));
        Assert.All(mine, e =>
        {
            Assert.Equal(room, e["room_id"]!.GetValue<string>());
            Assert.Equal(u.UserId, e["sender"]!.GetValue<string>());
            Assert.NotNull(e["event_id"]);
            Assert.NotNull(e["origin_server_ts"]);
        });
        // The puppet's own join was sent too (its membership concerns the appservice).
        Assert.Contains(fake.AcknowledgedEvents(), e => e["type"]?.GetValue<string>() == "m.room.member" && e["state_key"]?.GetValue<string>() == puppet
            && e["room_id"]?.GetValue<string>() == room && e["content"]?["membership"]?.GetValue<string>() == "join");
        Assert.Equal($"Bearer {HsToken}", fake.LastTransactionAuthorization);
        // Transaction IDs are unique: each acknowledged once.
        var acked = fake.Transactions().Where(t => t.Status == 200).Select(t => t.TxnId).ToList();
        Assert.Equal(acked.Count, acked.Distinct().Count());
    }

    [Fact]
    public async Task A_transaction_refused_while_the_appservice_is_down_is_resent_unchanged_then_later_events_follow_in_order()
    {
        var (u, room, _) = await BridgedRoom();
        var tag = UniqueName("d");
        // Let the bridged room's setup drain first.
        await u.SendText(room, $"{tag} before");
        await FakeAppservice.Until(() => fake.AcknowledgedEvents().Any(e => Body(e) == $"{tag} before"), "the first message");
        fake.TransactionStatus = 500;
        JsonObject failed;
        string failedId;
        try
        {
            await u.SendText(room, $"{tag} 1");
            await u.SendText(room, $"{tag} 2");
            await FakeAppservice.Until(() => fake.Transactions().Any(t => t.Status == 500 && t.Body["events"]!.AsArray().OfType<JsonObject>().Any(e => Body(e) == $"{tag} 1")), "a refused attempt");
            (failedId, _, failed) = fake.Transactions().First(t => t.Status == 500 && t.Body["events"]!.AsArray().OfType<JsonObject>().Any(e => Body(e) == $"{tag} 1"));
            await u.SendText(room, $"{tag} 3");
            // At least one retry while down (after about 2 s), of the same transaction.
            await FakeAppservice.Until(() => fake.Transactions().Count(t => t.TxnId == failedId) >= 2, "a retry");
        }
        finally { fake.TransactionStatus = 200; }
        await FakeAppservice.Until(() => fake.AcknowledgedEvents().Any(e => Body(e) == $"{tag} 3"), "the last message after the appservice came back");
        var attempts = fake.Transactions().Where(t => t.TxnId == failedId).ToList();
        Assert.All(attempts, a => Assert.Equal(failed.ToJsonString(), a.Body.ToJsonString()));
        Assert.Contains(attempts, a => a.Status == 200);
        var mine = fake.AcknowledgedEvents().Select(Body).Where(b => b?.StartsWith(tag, StringComparison.Ordinal) == true).ToList();
        Assert.Equal([$"{tag} before", $"{tag} 1", $"{tag} 2", $"{tag} 3"], mine);
    }

    [Fact]
    public async Task Events_of_a_room_with_an_alias_in_its_alias_namespace_reach_it_without_any_of_its_users_there()
    {
        var u = await Register(server);
        var room = await u.CreateRoom(new JsonObject { ["preset"] = "public_chat" });
        var tag = UniqueName("al");
        await u.SendText(room, $"{tag} before the alias");
        // Its bot joins to make the alias and leaves: then none of its users is in the room, only the alias ties it.
        var alias = $"#{UniqueName("irc_")}:{server.ServerName}";
        (await Appservice.Post($"{C}/join/{E(room)}", new JsonObject())).Ok();
        (await Appservice.Put($"{C}/directory/room/{E(alias)}", new JsonObject { ["room_id"] = room })).Ok();
        (await Appservice.Post($"{C}/rooms/{E(room)}/leave", new JsonObject())).Ok();
        await u.SendText(room, $"{tag} after the alias");
        await FakeAppservice.Until(() => fake.AcknowledgedEvents().Any(e => Body(e) == $"{tag} after the alias"), "the message after the alias");
        Assert.DoesNotContain(fake.AcknowledgedEvents(), e => Body(e) == $"{tag} before the alias");
    }

    [Fact]
    public async Task Presence_of_users_sharing_a_room_with_its_users_reaches_it()
    {
        var (u, _, _) = await BridgedRoom();
        var status = UniqueName("busy");
        (await u.Put($"{C}/presence/{E(u.UserId)}/status", new JsonObject { ["presence"] = "unavailable", ["status_msg"] = status })).Ok();
        await FakeAppservice.Until(() => fake.AcknowledgedEphemeral().Any(e => e["type"]?.GetValue<string>() == "m.presence"
            && e["sender"]?.GetValue<string>() == u.UserId && e["content"]?["status_msg"]?.GetValue<string>() == status), "the presence update");
        var p = fake.AcknowledgedEphemeral().Last(e => e["type"]?.GetValue<string>() == "m.presence" && e["sender"]?.GetValue<string>() == u.UserId);
        Assert.Equal("unavailable", p["content"]!["presence"]!.GetValue<string>());
        // Someone sharing no room with its users: not its business.
        var stranger = await Register(server);
        var other = UniqueName("alone");
        (await stranger.Put($"{C}/presence/{E(stranger.UserId)}/status", new JsonObject { ["presence"] = "unavailable", ["status_msg"] = other })).Ok();
        (await u.Put($"{C}/presence/{E(u.UserId)}/status", new JsonObject { ["presence"] = "online", ["status_msg"] = status + "2" })).Ok();
        await FakeAppservice.Until(() => fake.AcknowledgedEphemeral().Any(e => e["content"]?["status_msg"]?.GetValue<string>() == status + "2"), "the second update");
        Assert.DoesNotContain(fake.AcknowledgedEphemeral(), e => e["sender"]?.GetValue<string>() == stranger.UserId);
    }

    [Fact]
    public async Task Typing_and_receipts_in_its_rooms_reach_it_as_ephemeral_events()
    {
        var (u, room, _) = await BridgedRoom();
        var ev = await u.SendText(room, "read this");
        (await u.Put($"{C}/rooms/{E(room)}/typing/{E(u.UserId)}", new JsonObject { ["typing"] = true, ["timeout"] = 30000 })).Ok();
        (await u.Post($"{C}/rooms/{E(room)}/receipt/m.read/{E(ev)}", new JsonObject())).Ok();
        await FakeAppservice.Until(() => fake.AcknowledgedEphemeral().Any(e => e["type"]?.GetValue<string>() == "m.receipt" && e["room_id"]?.GetValue<string>() == room), "the receipt");
        var typing = fake.AcknowledgedEphemeral().First(e => e["type"]?.GetValue<string>() == "m.typing" && e["room_id"]?.GetValue<string>() == room);
        Assert.Equal([u.UserId], typing["content"]!["user_ids"]!.AsArray().Select(x => x!.GetValue<string>()));
        var receipt = fake.AcknowledgedEphemeral().First(e => e["type"]?.GetValue<string>() == "m.receipt" && e["room_id"]?.GetValue<string>() == room);
        Assert.NotNull(receipt["content"]![ev]!["m.read"]![u.UserId]!["ts"]);
        // A private receipt of a user who is not the appservice's is not its business.
        var ev2 = await u.SendText(room, "read this privately");
        (await u.Post($"{C}/rooms/{E(room)}/receipt/m.read.private/{E(ev2)}", new JsonObject())).Ok();
        (await u.Put($"{C}/rooms/{E(room)}/typing/{E(u.UserId)}", new JsonObject { ["typing"] = false })).Ok();
        await FakeAppservice.Until(() => fake.AcknowledgedEphemeral().Count(e => e["type"]?.GetValue<string>() == "m.typing" && e["room_id"]?.GetValue<string>() == room) >= 2, "the typing stop");
        Assert.DoesNotContain(fake.AcknowledgedEphemeral(), e => e["content"]?[ev2] is not null);
    }

    [Fact]
    public async Task To_device_messages_key_counts_and_device_list_changes_of_its_users_reach_it()
    {
        var u = await Register(server);
        var room = await u.CreateRoom();
        var name = UniqueName("irc_");
        var puppetId = $"@{name}:{server.ServerName}";
        var reg = (await AppserviceRegister(name)).Ok().Obj;
        var device = reg["device_id"]!.GetValue<string>();
        var puppet = new MatrixClient(server, reg["access_token"]!.GetValue<string>());
        (await u.Post($"{C}/rooms/{E(room)}/invite", new JsonObject { ["user_id"] = puppetId })).Ok();
        (await puppet.Post($"{C}/rooms/{E(room)}/join", new JsonObject())).Ok();

        // MSC2409: a to-device message for the puppet's device, with to_user_id and to_device_id.
        var txn = UniqueName("t");
        (await u.Put($"{C}/sendToDevice/m.test.hello/{txn}", new JsonObject
        {
            ["messages"] = new JsonObject { [puppetId] = new JsonObject { [device] = new JsonObject { ["hello"] = txn } } },
        })).Ok();
        await FakeAppservice.Until(() => fake.AcknowledgedField("de.sorunome.msc2409.to_device").Any(m => m["content"]?["hello"]?.GetValue<string>() == txn), "the to-device message");
        var msg = fake.AcknowledgedField("de.sorunome.msc2409.to_device").First(m => m["content"]?["hello"]?.GetValue<string>() == txn);
        Assert.Equal(u.UserId, msg["sender"]!.GetValue<string>());
        Assert.Equal("m.test.hello", msg["type"]!.GetValue<string>());
        Assert.Equal(puppetId, msg["to_user_id"]!.GetValue<string>());
        Assert.Equal(device, msg["to_device_id"]!.GetValue<string>());

        // MSC3202: after the puppet's device uploads keys, its one-time key count and its device list change.
        puppet.UserId = puppetId;
        puppet.DeviceId = device;
        using (var keys = new TestDevice(puppet)) await keys.Upload(deviceKeys: false, otks: 2, fallback: "F1");
        await FakeAppservice.Until(() => fake.AcknowledgedTransactions().Any(b => b["org.matrix.msc3202.device_one_time_keys_count"]?[puppetId]?[device]?["signed_curve25519"]?.GetValue<int>() == 2),
            "the one-time key count");
        var withCounts = fake.AcknowledgedTransactions().Last(b => b["org.matrix.msc3202.device_one_time_keys_count"]?[puppetId]?[device] is not null);
        Assert.Contains("signed_curve25519", withCounts["org.matrix.msc3202.device_unused_fallback_key_types"]![puppetId]![device]!.AsArray().Select(x => x!.GetValue<string>()));
        // The ordinary user's device list changes too: they share a room with the puppet.
        using (var keys = new TestDevice(u)) await keys.Upload();
        await FakeAppservice.Until(() => fake.AcknowledgedTransactions().Any(b => b["org.matrix.msc3202.device_lists"]?["changed"] is JsonArray a && a.Any(x => x?.GetValue<string>() == u.UserId)),
            "the device list change");
        // Once they share no room any more, they are in device_lists.left.
        (await u.Post($"{C}/rooms/{E(room)}/leave", new JsonObject())).Ok();
        await FakeAppservice.Until(() => fake.AcknowledgedTransactions().Any(b => b["org.matrix.msc3202.device_lists"]?["left"] is JsonArray a && a.Any(x => x?.GetValue<string>() == u.UserId)),
            "the user in device_lists.left");
    }

    [Fact]
    public async Task Ordinary_registration_cannot_take_a_name_in_an_exclusive_namespace()
    {
        var name = UniqueName("irc_");
        var c = new MatrixClient(server);
        Error(await c.Call("POST", $"{C}/register", new JsonObject { ["username"] = name, ["password"] = "correct horse" }, auth: false), HttpStatusCode.BadRequest, "M_EXCLUSIVE");
        Error(await c.Call("GET", $"{C}/register/available?username={name}", auth: false), HttpStatusCode.BadRequest, "M_EXCLUSIVE");
        (await c.Call("GET", $"{C}/register/available?username={UniqueName("plain")}", auth: false)).Ok();
    }
}

public sealed class AppserviceAllInOneFixture : AllInOneFixture
{
    public FakeAppservice Fake { get; } = new();
    protected override string ExtraConfig => AppserviceTests.Config(Work, Fake);

    public override Task DisposeAsync() => Fake.DisposeAfter(base.DisposeAsync());
}

public sealed class AppserviceSplitFixture : SplitFixture
{
    public FakeAppservice Fake { get; } = new();
    protected override string ExtraConfig => AppserviceTests.Config(Work, Fake);

    public override Task DisposeAsync() => Fake.DisposeAfter(base.DisposeAsync());
}

/// <summary>Plays the application service on a loopback port: answers a request with the handler a test set for
/// its path (<see cref="On"/>), else with <see cref="Status"/>, and remembers the last one. Requests are answered
/// concurrently: a handler may call the homeserver back (as an appservice creating the queried user or room does)
/// while the homeserver waits for its answer.</summary>
public sealed class FakeAppservice : IDisposable
{
    readonly HttpListener _listener = new();
    readonly System.Collections.Concurrent.ConcurrentDictionary<string, Func<HttpListenerRequest, Task<(int Status, string Body)>>> _handlers = new();
    public string Url { get; }
    public int Status { get; set; } = 200;
    public string? LastPath { get; private set; }
    public string? LastAuthorization { get; private set; }
    public string? LastTransactionAuthorization { get; private set; }
    public string? LastBody { get; private set; }
    /// <summary>The status PUT /transactions answers (500: the appservice is down).</summary>
    public int TransactionStatus { get; set; } = 200;
    readonly List<(string TxnId, int Status, JsonObject Body)> _transactions = [];

    /// <summary>Every transaction attempt so far, in arrival order, with the status it was answered with.</summary>
    public List<(string TxnId, int Status, JsonObject Body)> Transactions()
    {
        lock (_transactions) return [.. _transactions];
    }

    /// <summary>The events of the acknowledged transactions, each once (a retry repeats a transaction), in order.</summary>
    public List<JsonObject> AcknowledgedEvents() => Acknowledged("events");

    /// <summary>The ephemeral events of the acknowledged transactions.</summary>
    public List<JsonObject> AcknowledgedEphemeral() => Acknowledged("ephemeral");

    /// <summary>The bodies of the acknowledged transactions, each once.</summary>
    public List<JsonObject> AcknowledgedTransactions()
    {
        var seen = new HashSet<string>();
        return [.. Transactions().Where(t => t.Status == 200 && seen.Add(t.TxnId)).Select(t => t.Body)];
    }

    public List<JsonObject> AcknowledgedField(string field) => Acknowledged(field);

    List<JsonObject> Acknowledged(string field)
    {
        var seen = new HashSet<string>();
        var list = new List<JsonObject>();
        foreach (var (id, status, body) in Transactions())
            if (status == 200 && seen.Add(id) && body[field] is JsonArray a)
                list.AddRange(a.OfType<JsonObject>());
        return list;
    }

    /// <summary>Waits (up to 60 s) until the predicate holds.</summary>
    public static async Task Until(Func<bool> predicate, string what)
    {
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (!predicate())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException("timed out waiting for " + what);
            await Task.Delay(50);
        }
    }
    /// <summary>Every request's path and query (escaped as sent), in arrival order.</summary>
    public System.Collections.Concurrent.ConcurrentQueue<string> Requests { get; } = new();

    public FakeAppservice()
    {
        Url = $"http://127.0.0.1:{FreePort()}";
        _listener.Prefixes.Add(Url + "/");
        _listener.Start();
        _ = Task.Run(Serve);
    }

    static int FreePort()
    {
        var probe = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        var port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        return port;
    }

    /// <summary>An address where nothing listens (a port just free): an appservice that cannot be reached.</summary>
    public static string ClosedUrl() => $"http://127.0.0.1:{FreePort()}";

    /// <summary>Answers requests for <paramref name="path"/> (exactly; or every path under it when it ends with '/')
    /// with <paramref name="answer"/>, if they carry <paramref name="authorization"/> (else 403, as an appservice
    /// refuses a wrong hs_token).</summary>
    public void On(string path, string authorization, Func<HttpListenerRequest, Task<(int Status, string Body)>> answer)
        => _handlers[path] = r => r.Headers["Authorization"] == authorization ? answer(r) : Task.FromResult((403, """{"errcode":"M_FORBIDDEN"}"""));

    async Task Serve()
    {
        while (_listener.IsListening)
        {
            HttpListenerContext c;
            try { c = await _listener.GetContextAsync(); }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException) { return; }
            _ = Task.Run(() => Answer(c));
        }
    }

    async Task Answer(HttpListenerContext c)
    {
        var path = c.Request.Url!.AbsolutePath;
        string text;
        using (var reader = new StreamReader(c.Request.InputStream)) text = await reader.ReadToEndAsync();
        if (c.Request.HttpMethod == "PUT" && path.StartsWith("/_matrix/app/v1/transactions/", StringComparison.Ordinal))
        {
            // Transactions flow all the time: they are kept apart from the Last* of the other requests.
            var txnStatus = TransactionStatus;
            lock (_transactions) _transactions.Add((path["/_matrix/app/v1/transactions/".Length..], txnStatus, JsonNode.Parse(text)!.AsObject()));
            LastTransactionAuthorization = c.Request.Headers["Authorization"];
            c.Response.StatusCode = txnStatus;
            c.Response.ContentType = "application/json";
            await c.Response.OutputStream.WriteAsync(txnStatus == 200 ? "{}"u8.ToArray() : """{"errcode":"M_UNKNOWN"}"""u8.ToArray());
            c.Response.Close();
            return;
        }
        Requests.Enqueue(c.Request.Url.PathAndQuery);
        LastPath = path;
        LastAuthorization = c.Request.Headers["Authorization"];
        LastBody = text;
        var handler = _handlers.TryGetValue(path, out var exact) ? exact
            : _handlers.Where(h => h.Key.EndsWith('/') && path.StartsWith(h.Key, StringComparison.Ordinal)).OrderByDescending(h => h.Key.Length).Select(h => h.Value).FirstOrDefault();
        (int Status, string Body) answer;
        try { answer = handler is not null ? await handler(c.Request) : (Status, Status == 200 ? "{}" : """{"errcode":"M_FORBIDDEN"}"""); }
        catch (Exception e) { answer = (500, new System.Text.Json.Nodes.JsonObject { ["errcode"] = "M_UNKNOWN", ["error"] = e.Message }.ToJsonString()); }
        var (status, body) = answer;
        c.Response.StatusCode = status;
        c.Response.ContentType = "application/json";
        await c.Response.OutputStream.WriteAsync(System.Text.Encoding.UTF8.GetBytes(body));
        c.Response.Close();
    }

    public void Dispose() => _listener.Close();

    /// <summary>Closes the listener once the server using it has stopped.</summary>
    public async Task DisposeAfter(Task serverStopped)
    {
        await serverStopped;
        Dispose();
    }
}

public sealed class AllInOneAppserviceTests(AppserviceAllInOneFixture f) : AppserviceTests(f, f.Fake), IClassFixture<AppserviceAllInOneFixture>;

public sealed class SplitAppserviceTests(AppserviceSplitFixture f) : AppserviceTests(f, f.Fake), IClassFixture<AppserviceSplitFixture>;

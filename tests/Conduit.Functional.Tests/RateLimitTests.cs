using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Conduit.Keys;
using Microsoft.Extensions.DependencyInjection;
using static Conduit.Functional.Tests.MatrixClient;

namespace Conduit.Functional.Tests;

/// <summary>The default rate limits, behind a reverse proxy on loopback: tests speak for distinct client addresses
/// through X-Forwarded-For, as users behind the proxy would.</summary>
public sealed class DefaultLimitsFixture : AllInOneFixture
{
    protected override string ExtraConfig => "trusted_proxies = [\"127.0.0.1\"]";
}

public sealed class SplitDefaultLimitsFixture : SplitFixture
{
    protected override string ExtraConfig => "trusted_proxies = [\"127.0.0.1\"]";
}

/// <summary>What a hostile user and an ordinary one notice of the default limits, and of registration's
/// user-interactive auth. Every test speaks from its own addresses, so per-address limits do not interfere.</summary>
public abstract class RateLimitTests(ServerFixture server)
{
    static int _address;
    static string FreshAddress()
    {
        var n = Interlocked.Increment(ref _address);
        return $"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}";
    }

    async Task<MatrixClient> RegisterFrom(string address, string password = "correct horse")
    {
        var c = new MatrixClient(server) { ForwardedFor = address };
        var body = () => new JsonObject { ["username"] = UniqueName("rl"), ["password"] = password };
        var first = await c.Call("POST", C + "/register", body(), auth: false);
        Assert.Equal(HttpStatusCode.Unauthorized, first.Status);
        var done = (await c.Call("POST", C + "/register", new JsonObject
        {
            ["auth"] = new JsonObject { ["type"] = "m.login.dummy", ["session"] = first.Obj["session"]!.GetValue<string>() },
        }, auth: false)).Ok();
        c.Token = done.Obj["access_token"]!.GetValue<string>();
        c.UserId = done.Obj["user_id"]!.GetValue<string>();
        c.DeviceId = done.Obj["device_id"]!.GetValue<string>();
        return c;
    }

    static long RetryAfterMs(Response r)
    {
        Assert.True(r.Status == HttpStatusCode.TooManyRequests && r.ErrCode == "M_LIMIT_EXCEEDED", $"expected 429 M_LIMIT_EXCEEDED, got {(int)r.Status}: {r.Body?.ToJsonString()}");
        var ms = r.Obj["retry_after_ms"]!.GetValue<long>();
        Assert.InRange(ms, 1, 120_000);
        return ms;
    }

    // ---- login

    [Fact]
    public async Task The_fourth_wrong_password_is_refused_until_the_wait_and_then_the_right_one_works()
    {
        var address = FreshAddress();
        var u = await RegisterFrom(address, "the right one");
        var anon = new MatrixClient(server) { ForwardedFor = address };
        Task<Response> Login(string password) => anon.Call("POST", C + "/login", new JsonObject
        {
            ["type"] = "m.login.password",
            ["identifier"] = new JsonObject { ["type"] = "m.id.user", ["user"] = u.UserId },
            ["password"] = password,
        }, auth: false);

        for (var i = 0; i < 3; i++)
        {
            var wrong = await Login("guess" + i);
            Assert.Equal((HttpStatusCode.Forbidden, "M_FORBIDDEN"), (wrong.Status, wrong.ErrCode));
        }
        RetryAfterMs(await Login("guess3"));
        // Guessing stops here: even the right password waits, so a lucky guess is not confirmed.
        var wait = RetryAfterMs(await Login("the right one"));
        await Task.Delay(TimeSpan.FromMilliseconds(wait + 100));
        var ok = (await Login("the right one")).Ok();
        Assert.Equal(u.UserId, ok.Obj["user_id"]!.GetValue<string>());
    }

    // ---- registration

    [Fact]
    public async Task A_registration_burst_from_one_address_is_limited_and_other_addresses_are_not()
    {
        var address = FreshAddress();
        for (var i = 0; i < 3; i++) await RegisterFrom(address);
        using var req = new HttpRequestMessage(HttpMethod.Post, server.BaseUrl + C + "/register")
        {
            Content = new StringContent(new JsonObject { ["username"] = UniqueName("rl"), ["password"] = "pw" }.ToJsonString(), Encoding.UTF8, "application/json"),
        };
        req.Headers.Add("X-Forwarded-For", address);
        using var resp = await server.Http.SendAsync(req);
        var body = JsonNode.Parse(await resp.Content.ReadAsStringAsync())!.AsObject();
        RetryAfterMs(new Response(resp.StatusCode, body));
        Assert.InRange(int.Parse(resp.Headers.GetValues("Retry-After").Single()), 1, 120);
        await RegisterFrom(FreshAddress());
    }

    [Fact]
    public async Task A_flood_of_registration_challenges_evicts_only_the_flooders_sessions()
    {
        var victim = new MatrixClient(server) { ForwardedFor = FreshAddress() };
        var flooder = new MatrixClient(server) { ForwardedFor = FreshAddress() };
        var name = UniqueName("victim");
        var victimSession = (await victim.Call("POST", C + "/register", new JsonObject { ["username"] = name, ["password"] = "pw" }, auth: false)).Obj["session"]!.GetValue<string>();
        var before = server is AllInOneFixture f ? f.Services.GetRequiredService<Uia>().Count : 0;
        var sessions = new List<string>();
        for (var i = 0; i < 100; i++)
            sessions.Add((await flooder.Call("POST", C + "/register", new JsonObject(), auth: false)).Obj["session"]!.GetValue<string>());
        JsonObject Complete(string session) => new() { ["auth"] = new JsonObject { ["type"] = "m.login.dummy", ["session"] = session } };
        var evicted = await flooder.Call("POST", C + "/register", Complete(sessions[0]), auth: false);
        Assert.Equal((HttpStatusCode.BadRequest, "M_UNKNOWN"), (evicted.Status, evicted.ErrCode));
        // Without the per-address cap the flood would hold 100 sessions.
        if (server is AllInOneFixture aio) Assert.InRange(aio.Services.GetRequiredService<Uia>().Count, 1, before + Uia.MaxPerOwner + 1);
        var ok = (await victim.Call("POST", C + "/register", Complete(victimSession), auth: false)).Ok();
        Assert.Equal($"@{name}:{server.ServerName}", ok.Obj["user_id"]!.GetValue<string>());
    }

    [Fact]
    public async Task Registration_retried_with_its_completed_session_returns_the_same_account()
    {
        var anon = new MatrixClient(server) { ForwardedFor = FreshAddress() };
        var name = UniqueName("retry");
        var session = (await anon.Call("POST", C + "/register", new JsonObject { ["username"] = name, ["password"] = "pw", ["initial_device_display_name"] = "phone" }, auth: false))
            .Obj["session"]!.GetValue<string>();
        // The stage carries only auth: the first request's parameters are remembered.
        var complete = () => new JsonObject { ["auth"] = new JsonObject { ["type"] = "m.login.dummy", ["session"] = session } };
        var first = (await anon.Call("POST", C + "/register", complete(), auth: false)).Ok().Obj;
        Assert.Equal($"@{name}:{server.ServerName}", first["user_id"]!.GetValue<string>());
        // The response was lost; the client sends the same request again.
        var again = (await anon.Call("POST", C + "/register", complete(), auth: false)).Ok().Obj;
        Assert.Equal(first.ToJsonString(), again.ToJsonString());
        var u = new MatrixClient(server, first["access_token"]!.GetValue<string>());
        var devices = (await u.Get(C + "/devices")).Ok().Obj["devices"]!.AsArray();
        Assert.Equal("phone", Assert.Single(devices)!["display_name"]!.GetValue<string>());
    }

    [Fact]
    public async Task Inhibit_login_registers_without_a_device_and_the_password_works()
    {
        var address = FreshAddress();
        var anon = new MatrixClient(server) { ForwardedFor = address };
        var name = UniqueName("inhibit");
        var session = (await anon.Call("POST", C + "/register", new JsonObject { ["username"] = name, ["password"] = "pw", ["inhibit_login"] = true }, auth: false))
            .Obj["session"]!.GetValue<string>();
        var done = (await anon.Call("POST", C + "/register", new JsonObject
        {
            ["auth"] = new JsonObject { ["type"] = "m.login.dummy", ["session"] = session },
        }, auth: false)).Ok().Obj;
        Assert.Equal($"@{name}:{server.ServerName}", done["user_id"]!.GetValue<string>());
        Assert.False(done.ContainsKey("access_token"));
        Assert.False(done.ContainsKey("device_id"));
        var login = (await anon.Call("POST", C + "/login", new JsonObject
        {
            ["type"] = "m.login.password",
            ["identifier"] = new JsonObject { ["type"] = "m.id.user", ["user"] = name },
            ["password"] = "pw",
        }, auth: false)).Ok().Obj;
        var u = new MatrixClient(server, login["access_token"]!.GetValue<string>());
        var devices = (await u.Get(C + "/devices")).Ok().Obj["devices"]!.AsArray();
        Assert.Single(devices);
    }

    // ---- rooms

    [Fact]
    public async Task Room_creation_bursts_are_limited_per_user()
    {
        var spammer = await RegisterFrom(FreshAddress());
        var other = await RegisterFrom(FreshAddress());
        for (var i = 0; i < 10; i++) await spammer.CreateRoom();
        RetryAfterMs(await spammer.Post(C + "/createRoom", new JsonObject()));
        await other.CreateRoom();
    }

    [Fact]
    public async Task Message_floods_are_limited_per_user_and_a_person_typing_fast_is_not()
    {
        var spammer = await RegisterFrom(FreshAddress());
        var person = await RegisterFrom(FreshAddress());
        var room = await spammer.CreateRoom(new JsonObject { ["preset"] = "public_chat" });
        (await person.Post($"{C}/join/{E(room)}", new JsonObject())).Ok();

        // A person: ten messages in a few seconds, never refused.
        for (var i = 0; i < 10; i++)
        {
            await person.SendText(room, $"quick {i}");
            await Task.Delay(250);
        }
        // A flood: the burst passes, then requests are refused (a few pass again as the bucket drains).
        var results = new List<Response>();
        for (var i = 0; i < 40; i++)
            results.Add(await spammer.Put($"{C}/rooms/{E(room)}/send/m.room.message/flood{i}", new JsonObject { ["msgtype"] = "m.text", ["body"] = $"spam {i}" }));
        Assert.All(results.Take(20), r => r.Ok());
        var refused = results.Where(r => r.Status != HttpStatusCode.OK).ToList();
        Assert.True(refused.Count >= 5, $"only {refused.Count} of 40 refused");
        foreach (var r in refused) RetryAfterMs(r);
        // A retried transaction is answered, not refused, and the person is unaffected.
        (await spammer.Put($"{C}/rooms/{E(room)}/send/m.room.message/flood0", new JsonObject { ["msgtype"] = "m.text", ["body"] = "spam 0" })).Ok();
        await person.SendText(room, "still here");
    }

    // ---- the client's address

    [Fact]
    public async Task A_trusted_proxys_forwarded_address_is_the_devices_last_seen_ip()
    {
        var u = await RegisterFrom("6.6.6.6, 198.51.100.23");
        var device = (await u.Get($"{C}/devices/{u.DeviceId}")).Ok().Obj;
        // The right-most address the proxy did not add itself; the forged one to its left is ignored.
        Assert.Equal("198.51.100.23", device["last_seen_ip"]!.GetValue<string>());
    }
}

public sealed class AllInOneRateLimitTests(DefaultLimitsFixture f) : RateLimitTests(f), IClassFixture<DefaultLimitsFixture>;

public sealed class SplitRateLimitTests(SplitDefaultLimitsFixture f) : RateLimitTests(f), IClassFixture<SplitDefaultLimitsFixture>;

/// <summary>The shared fixtures: rate_limits.enabled = false, as a benchmark runs, and no trusted proxies.</summary>
public abstract class RateLimitsOffTests(ServerFixture server)
{
    [Fact]
    public async Task With_limits_off_nothing_is_limited()
    {
        var users = new List<MatrixClient>();
        for (var i = 0; i < 6; i++) users.Add(await Register(server, password: "pw"));
        var u = users[0];
        var anon = new MatrixClient(server);
        for (var i = 0; i < 8; i++)
        {
            var wrong = await anon.Call("POST", C + "/login", new JsonObject { ["type"] = "m.login.password", ["user"] = u.UserId, ["password"] = "no" }, auth: false);
            Assert.Equal(HttpStatusCode.Forbidden, wrong.Status);
        }
        (await anon.Call("POST", C + "/login", new JsonObject { ["type"] = "m.login.password", ["user"] = u.UserId, ["password"] = "pw" }, auth: false)).Ok();
        string room = "";
        for (var i = 0; i < 12; i++) room = await u.CreateRoom();
        for (var i = 0; i < 30; i++) await u.SendText(room, $"m{i}");
    }

    [Fact]
    public async Task Forwarded_for_from_an_untrusted_peer_and_a_forged_internal_header_are_ignored()
    {
        var u = await Register(server);
        using var req = new HttpRequestMessage(HttpMethod.Post, server.BaseUrl + C + "/login")
        {
            Content = new StringContent(new JsonObject { ["type"] = "m.login.password", ["user"] = u.UserId, ["password"] = "correct horse", ["device_id"] = "FORGED" }.ToJsonString(), Encoding.UTF8, "application/json"),
        };
        req.Headers.Add("X-Forwarded-For", "198.51.100.99");
        req.Headers.Add("X-Conduit-Client-Ip", "198.51.100.98");
        using var resp = await server.Http.SendAsync(req);
        Assert.Equal(HttpStatusCode.OK, resp.StatusCode);
        var device = (await u.Get($"{C}/devices/FORGED")).Ok().Obj;
        Assert.Equal("127.0.0.1", device["last_seen_ip"]!.GetValue<string>());
    }
}

public sealed class AllInOneRateLimitsOffTests(AllInOneFixture f) : RateLimitsOffTests(f), IClassFixture<AllInOneFixture>;

public sealed class SplitRateLimitsOffTests(SplitFixture f) : RateLimitsOffTests(f), IClassFixture<SplitFixture>;

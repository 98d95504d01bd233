using System.Net;
using System.Text.Json.Nodes;
using static Conduit.Functional.Tests.MatrixClient;

namespace Conduit.Functional.Tests;

/// <summary>
/// Refresh tokens and expiring access tokens (spec: client-server-api, "Refreshing access tokens", "Soft logout"),
/// GET /admin/whois (spec: "Server Administration") and guest accounts (spec: "Guest access"), through the edge, with
/// a 3-second access token lifetime, guest registration on and one admin.
/// </summary>
public abstract class AccountSessionTests(ServerFixture server)
{
    public const int LifetimeMs = 3000;
    public const string Config = $"rate_limits = {{ enabled = false }}\nrefreshable_access_token_lifetime_ms = 3000\nallow_guest_registration = true\nadmins = [\"@{AdminLocalpart}:test.local\"]";
    public const string AdminLocalpart = "the_admin";

    static void Error(Response r, HttpStatusCode status, string errcode)
        => Assert.True(r.Status == status && r.ErrCode == errcode, $"expected {(int)status} {errcode}, got {(int)r.Status}: {r.Body?.ToJsonString()}");

    static void SoftLogout(Response r)
    {
        Error(r, HttpStatusCode.Unauthorized, "M_UNKNOWN_TOKEN");
        Assert.True(r.Obj["soft_logout"]?.GetValue<bool>() == true, r.Body?.ToJsonString());
    }

    // A token that is gone for good: no soft_logout, so a client drops its session.
    static void HardUnknown(Response r)
    {
        Error(r, HttpStatusCode.Unauthorized, "M_UNKNOWN_TOKEN");
        Assert.NotEqual(true, r.Obj["soft_logout"]?.GetValue<bool>());
    }

    async Task<(MatrixClient Client, string RefreshToken)> RefreshableLogin(MatrixClient user, string password = "correct horse", string? deviceId = null)
    {
        var body = new JsonObject
        {
            ["type"] = "m.login.password",
            ["identifier"] = new JsonObject { ["type"] = "m.id.user", ["user"] = user.UserId },
            ["password"] = password,
            ["refresh_token"] = true,
        };
        if (deviceId is not null) body["device_id"] = deviceId;
        var login = (await new MatrixClient(server) { UserAgent = user.UserAgent }.Call("POST", $"{C}/login", body, auth: false)).Ok().Obj;
        Assert.Equal(LifetimeMs, login["expires_in_ms"]!.GetValue<long>());
        var c = Holding(login);
        (c.UserId, c.DeviceId) = (user.UserId, login["device_id"]!.GetValue<string>());
        return (c, login["refresh_token"]!.GetValue<string>());
    }

    Task<Response> Refresh(string refreshToken, string path = $"{C}/refresh", string? bearer = null)
        => new MatrixClient(server, bearer).Call("POST", path, new JsonObject { ["refresh_token"] = refreshToken }, auth: bearer is not null);

    static async Task<Response> WhoAmI(MatrixClient c) => await c.Get($"{C}/account/whoami");

    // A client holding the access token of a /login, /register or /refresh answer.
    MatrixClient Holding(JsonObject answer) => new(server, answer["access_token"]!.GetValue<string>());

    // ---- refresh tokens

    [Fact]
    public async Task Refresh_gives_new_tokens_and_ends_the_old_access_token()
    {
        var user = await Register(server);
        var (phone, refresh) = await RefreshableLogin(user);
        Assert.Equal(user.UserId, (await WhoAmI(phone)).Ok().Obj["user_id"]!.GetValue<string>());

        var next = (await Refresh(refresh)).Ok().Obj;
        Assert.Equal(LifetimeMs, next["expires_in_ms"]!.GetValue<long>());
        var newRefresh = next["refresh_token"]!.GetValue<string>();
        Assert.NotEqual(refresh, newRefresh);
        // The old access token ended with the refresh (it was cached at the edge: the answer dropped it first).
        HardUnknown(await WhoAmI(phone));
        var renewed = Holding(next);
        var me = (await WhoAmI(renewed)).Ok().Obj;
        Assert.Equal((user.UserId, phone.DeviceId), (me["user_id"]!.GetValue<string>(), me["device_id"]!.GetValue<string>()));

        // The new access token was used: the old refresh token is spent.
        HardUnknown(await Refresh(refresh));
        // The v1 path (older Synapse's, which matrix-js-sdk falls back to) works too, and a stale access token sent
        // along is not read.
        var third = (await Refresh(newRefresh, "/_matrix/client/v1/refresh", bearer: phone.Token)).Ok().Obj;
        Assert.Equal(user.UserId, (await WhoAmI(Holding(third))).Ok().Obj["user_id"]!.GetValue<string>());
    }

    [Fact]
    public async Task A_refresh_whose_answer_was_lost_can_be_repeated()
    {
        var user = await Register(server);
        var (_, refresh) = await RefreshableLogin(user);
        var lost = (await Refresh(refresh)).Ok().Obj;
        // The client never saw that answer and refreshes again with the token it has.
        var retry = (await Refresh(refresh)).Ok().Obj;
        HardUnknown(await WhoAmI(Holding(lost)));
        HardUnknown(await Refresh(lost["refresh_token"]!.GetValue<string>()));
        (await WhoAmI(Holding(retry))).Ok();
        HardUnknown(await Refresh(refresh));
    }

    [Fact]
    public async Task An_expired_access_token_is_a_soft_logout_until_refreshed()
    {
        var user = await Register(server);
        var (phone, refresh) = await RefreshableLogin(user);
        var registered = await new MatrixClient(server).Call("POST", $"{C}/register", new JsonObject
        {
            ["username"] = UniqueName("r"),
            ["password"] = "pw",
            ["refresh_token"] = true,
        }, auth: false);
        // The first call starts the auth dance; the second completes it, with the first one's parameters.
        Assert.Equal(HttpStatusCode.Unauthorized, registered.Status);
        var session = registered.Obj["session"]!.GetValue<string>();
        var reg = (await new MatrixClient(server).Call("POST", $"{C}/register", new JsonObject
        {
            ["auth"] = new JsonObject { ["type"] = "m.login.dummy", ["session"] = session },
        }, auth: false)).Ok().Obj;
        Assert.Equal(LifetimeMs, reg["expires_in_ms"]!.GetValue<long>());
        Assert.NotNull(reg["refresh_token"]);
        var newcomer = Holding(reg);
        (await WhoAmI(phone)).Ok(); // now cached at the edge
        (await WhoAmI(newcomer)).Ok();

        await Task.Delay(LifetimeMs + 300);

        SoftLogout(await WhoAmI(phone));
        SoftLogout(await newcomer.Post($"{C}/createRoom", new JsonObject()));
        // A client that did not ask for a refresh token keeps a token that does not expire.
        (await WhoAmI(user)).Ok();

        var next = (await Refresh(refresh)).Ok().Obj;
        (await WhoAmI(Holding(next))).Ok();
        HardUnknown(await WhoAmI(phone));
    }

    [Fact]
    public async Task Logout_ends_the_refresh_tokens_too_even_with_an_expired_access_token()
    {
        var user = await Register(server);
        var (phone, refresh) = await RefreshableLogin(user);
        (await phone.Post($"{C}/logout", new JsonObject())).Ok();
        HardUnknown(await Refresh(refresh));

        var (tablet, tabletRefresh) = await RefreshableLogin(user);
        await Task.Delay(LifetimeMs + 300);
        // As Synapse allows: an expired session can still be ended.
        (await tablet.Post($"{C}/logout", new JsonObject())).Ok();
        HardUnknown(await Refresh(tabletRefresh));
        Assert.DoesNotContain((await user.Get($"{C}/devices")).Ok().Obj["devices"]!.AsArray(), d => d!["device_id"]!.GetValue<string>() == tablet.DeviceId);
    }

    [Fact]
    public async Task Refresh_refuses_bad_input()
    {
        HardUnknown(await Refresh("syr_made_up"));
        var anon = new MatrixClient(server);
        Error(await anon.Call("POST", $"{C}/refresh", new JsonObject(), auth: false), HttpStatusCode.BadRequest, "M_MISSING_PARAM");
        Error(await anon.Call("POST", $"{C}/refresh", new JsonObject { ["refresh_token"] = 5 }, auth: false), HttpStatusCode.BadRequest, "M_BAD_JSON");
        Error(await anon.Call("POST", $"{C}/refresh", rawBody: "{", auth: false), HttpStatusCode.BadRequest, "M_NOT_JSON");
        Error(await anon.Call("GET", $"{C}/refresh", auth: false), HttpStatusCode.MethodNotAllowed, "M_UNRECOGNIZED");
    }

    // ---- whois

    [Fact]
    public async Task Whois_answers_admins_about_anyone_and_users_about_themselves()
    {
        var admin = await Register(server, AdminLocalpart);
        var user = await Register(server);
        user.UserAgent = "WhoisTest/1.0";
        var (phone, _) = await RefreshableLogin(user);

        var who = (await admin.Get($"{C}/admin/whois/{E(user.UserId)}")).Ok().Obj;
        Assert.Equal(user.UserId, who["user_id"]!.GetValue<string>());
        var devices = who["devices"]!.AsObject();
        Assert.Equal(new[] { user.DeviceId, phone.DeviceId }.Order(), devices.Select(d => d.Key).Order());
        var connection = devices[phone.DeviceId]!["sessions"]![0]!["connections"]![0]!;
        Assert.Equal("127.0.0.1", connection["ip"]!.GetValue<string>());
        Assert.True(connection["last_seen"]!.GetValue<long>() > 1_600_000_000_000);
        Assert.Equal("WhoisTest/1.0", connection["user_agent"]!.GetValue<string>());

        // Yourself, yes; someone else, only as an admin (and a non-admin learns nothing about whether they exist).
        Assert.Equal(user.UserId, (await user.Get($"{C}/admin/whois/{E(user.UserId)}")).Ok().Obj["user_id"]!.GetValue<string>());
        Error(await user.Get($"{C}/admin/whois/{E(admin.UserId)}"), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        Error(await user.Get($"{C}/admin/whois/{E("@nobody_here:test.local")}"), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        Error(await admin.Get($"{C}/admin/whois/{E("@nobody_here:test.local")}"), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Error(await admin.Get($"{C}/admin/whois/{E("@someone:other.example")}"), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Error(await admin.Get($"{C}/admin/whois/not-a-user-id"), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Error(await new MatrixClient(server).Get($"{C}/admin/whois/{E(user.UserId)}"), HttpStatusCode.Unauthorized, "M_MISSING_TOKEN");
    }

    // ---- guests

    async Task<MatrixClient> Guest(JsonObject? body = null)
    {
        var r = (await new MatrixClient(server).Call("POST", $"{C}/register?kind=guest", body ?? new JsonObject(), auth: false)).Ok().Obj;
        var guest = Holding(r);
        (guest.UserId, guest.DeviceId) = (r["user_id"]!.GetValue<string>(), r["device_id"]!.GetValue<string>());
        return guest;
    }

    [Fact]
    public async Task A_guest_registers_without_auth_and_may_only_call_the_guest_endpoints()
    {
        var guest = await Guest(new JsonObject { ["device_id"] = "MINE", ["username"] = "chosen", ["initial_device_display_name"] = "guest phone", ["refresh_token"] = true });
        // Every parameter but the device's display name is ignored for a guest (spec: POST /register).
        Assert.NotEqual("MINE", guest.DeviceId);
        Assert.DoesNotContain("chosen", guest.UserId);
        var me = (await WhoAmI(guest)).Ok().Obj;
        Assert.True(me["is_guest"]!.GetValue<bool>());
        Assert.Equal("guest phone", (await guest.Get($"{C}/devices/{E(guest.DeviceId)}")).Ok().Obj["display_name"]!.GetValue<string>());
        await guest.Sync();
        (await guest.Get($"{C}/capabilities")).Ok();

        Error(await guest.Post($"{C}/createRoom", new JsonObject()), HttpStatusCode.Forbidden, "M_GUEST_ACCESS_FORBIDDEN");
        Error(await guest.Put($"{C}/user/{E(guest.UserId)}/account_data/m.test", new JsonObject()), HttpStatusCode.Forbidden, "M_GUEST_ACCESS_FORBIDDEN");
        Error(await guest.Get($"{C}/joined_rooms"), HttpStatusCode.Forbidden, "M_GUEST_ACCESS_FORBIDDEN");
        Error(await guest.Post("/_matrix/media/v3/upload", new JsonObject()), HttpStatusCode.Forbidden, "M_GUEST_ACCESS_FORBIDDEN");
        Error(await guest.Post($"{C}/logout", new JsonObject()), HttpStatusCode.Forbidden, "M_GUEST_ACCESS_FORBIDDEN");
        Error(await guest.Get($"{C}/admin/whois/{E(guest.UserId)}"), HttpStatusCode.Forbidden, "M_GUEST_ACCESS_FORBIDDEN");
        // Its display name, yes; other profile fields, no.
        (await guest.Put($"{C}/profile/{E(guest.UserId)}/displayname", new JsonObject { ["displayname"] = "Visitor" })).Ok();
        Error(await guest.Put($"{C}/profile/{E(guest.UserId)}/avatar_url", new JsonObject { ["avatar_url"] = "mxc://x/y" }), HttpStatusCode.Forbidden, "M_GUEST_ACCESS_FORBIDDEN");
        Assert.Equal("Visitor", (await guest.Get($"{C}/profile/{E(guest.UserId)}")).Ok().Obj["displayname"]!.GetValue<string>());
    }

    [Fact]
    public async Task A_guest_joins_only_rooms_that_let_guests_join()
    {
        var alice = await Register(server);
        var open = await alice.CreateRoom(new JsonObject { ["preset"] = "public_chat" });
        (await alice.Put($"{C}/rooms/{E(open)}/state/m.room.guest_access/", new JsonObject { ["guest_access"] = "can_join" })).Ok();
        var closed = await alice.CreateRoom(new JsonObject { ["preset"] = "public_chat" });
        var guest = await Guest();

        Error(await guest.Post($"{C}/join/{E(closed)}", new JsonObject()), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        Error(await guest.Post($"{C}/rooms/{E(closed)}/join", new JsonObject()), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        // A full account gets into the same room.
        (await (await Register(server)).Post($"{C}/join/{E(closed)}", new JsonObject())).Ok();

        (await guest.Post($"{C}/rooms/{E(open)}/join", new JsonObject())).Ok();
        await guest.SendText(open, "hello from a guest");
        Assert.Contains("hello from a guest", TimelineBodies(await alice.Sync(), open));
        // Join and leave, but not invite (one route, the {action} decides).
        Error(await guest.Post($"{C}/rooms/{E(open)}/invite", new JsonObject { ["user_id"] = alice.UserId }), HttpStatusCode.Forbidden, "M_GUEST_ACCESS_FORBIDDEN");
        (await guest.Post($"{C}/rooms/{E(open)}/leave", new JsonObject())).Ok();
        (await guest.Post($"{C}/join/{E(open)}", new JsonObject())).Ok();

        // Guest access ends: the server makes the guest leave (spec: "the server MUST set those users' m.room.member
        // state to leave"), and only the guest.
        var member = await Register(server);
        (await member.Post($"{C}/join/{E(open)}", new JsonObject())).Ok();
        (await alice.Put($"{C}/rooms/{E(open)}/state/m.room.guest_access/", new JsonObject { ["guest_access"] = "forbidden" })).Ok();
        var deadline = DateTime.UtcNow.AddSeconds(15);
        while (true)
        {
            var state = (await alice.Get($"{C}/rooms/{E(open)}/state/m.room.member/{E(guest.UserId)}")).Ok().Obj;
            if (state["membership"]!.GetValue<string>() == "leave") break;
            Assert.True(DateTime.UtcNow < deadline, "the guest is still in the room: " + state.ToJsonString());
            await Task.Delay(50);
        }
        Assert.Equal("join", (await alice.Get($"{C}/rooms/{E(open)}/state/m.room.member/{E(member.UserId)}")).Ok().Obj["membership"]!.GetValue<string>());
        Error(await guest.Post($"{C}/join/{E(open)}", new JsonObject()), HttpStatusCode.Forbidden, "M_FORBIDDEN");
    }

    [Fact]
    public async Task A_guest_reads_a_world_readable_room_without_joining()
    {
        var alice = await Register(server);
        var room = await alice.CreateRoom(new JsonObject
        {
            ["preset"] = "public_chat",
            ["initial_state"] = new JsonArray(new JsonObject { ["type"] = "m.room.history_visibility", ["content"] = new JsonObject { ["history_visibility"] = "world_readable" } }),
        });
        var eventId = await alice.SendText(room, "readable by anyone");
        var guest = await Guest();
        var messages = (await guest.Get($"{C}/rooms/{E(room)}/messages?dir=b&limit=10")).Ok().Obj["chunk"]!.AsArray();
        Assert.Contains(messages, e => e!["event_id"]!.GetValue<string>() == eventId);
        (await guest.Get($"{C}/rooms/{E(room)}/event/{E(eventId)}")).Ok();
        (await guest.Get($"{C}/rooms/{E(room)}/state")).Ok();
        (await guest.Get($"{C}/rooms/{E(room)}/members")).Ok();
        // Reading is not sending.
        Error(await guest.Put($"{C}/rooms/{E(room)}/send/m.room.message/t1", new JsonObject { ["msgtype"] = "m.text", ["body"] = "x" }), HttpStatusCode.Forbidden, "M_FORBIDDEN");
    }

    [Fact]
    public async Task A_guest_upgrades_to_a_full_account_under_the_same_id()
    {
        var guest = await Guest();
        var localpart = guest.UserId[1..guest.UserId.IndexOf(':')];
        var anon = new MatrixClient(server);
        JsonObject Body(JsonObject? auth) => new()
        {
            ["username"] = localpart,
            ["password"] = "upgraded pw",
            ["guest_access_token"] = guest.Token,
            ["auth"] = auth,
        };
        var first = await anon.Call("POST", $"{C}/register", Body(null), auth: false);
        Assert.Equal(HttpStatusCode.Unauthorized, first.Status);
        var done = (await anon.Call("POST", $"{C}/register", Body(new JsonObject { ["type"] = "m.login.dummy", ["session"] = first.Obj["session"]!.GetValue<string>() }), auth: false)).Ok().Obj;
        Assert.Equal(guest.UserId, done["user_id"]!.GetValue<string>());

        // The guest's own token now stands for a full account (the edge dropped its cached guest identity).
        Assert.False((await WhoAmI(guest)).Ok().Obj["is_guest"]!.GetValue<bool>());
        await guest.CreateRoom();
        var login = await anon.Call("POST", $"{C}/login", new JsonObject { ["type"] = "m.login.password", ["user"] = localpart, ["password"] = "upgraded pw" }, auth: false);
        Assert.Equal(guest.UserId, login.Ok().Obj["user_id"]!.GetValue<string>());

        // Someone else's localpart, a full account's token or an unknown one upgrade nothing; a client learns before
        // the auth dance.
        var other = await Guest();
        JsonObject Upgrade(string? username, string? token) => new() { ["username"] = username, ["password"] = "pw", ["guest_access_token"] = token };
        Error(await anon.Call("POST", $"{C}/register", Upgrade("not_the_guest", other.Token), auth: false), HttpStatusCode.BadRequest, "M_INVALID_USERNAME");
        Error(await anon.Call("POST", $"{C}/register", Upgrade(localpart, guest.Token), auth: false), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        Error(await anon.Call("POST", $"{C}/register", Upgrade(null, "syt_made_up"), auth: false), HttpStatusCode.Unauthorized, "M_UNKNOWN_TOKEN");
        Assert.True((await WhoAmI(other)).Ok().Obj["is_guest"]!.GetValue<bool>());
    }
}

public sealed class AccountSessionAllInOneFixture : AllInOneFixture
{
    protected override string ExtraConfig => AccountSessionTests.Config;
}

public sealed class AccountSessionSplitFixture : SplitFixture
{
    protected override string ExtraConfig => AccountSessionTests.Config;
}

public sealed class AllInOneAccountSessionTests(AccountSessionAllInOneFixture f) : AccountSessionTests(f), IClassFixture<AccountSessionAllInOneFixture>;

public sealed class SplitAccountSessionTests(AccountSessionSplitFixture f) : AccountSessionTests(f), IClassFixture<AccountSessionSplitFixture>;

/// <summary>With the default config guest registration is refused.</summary>
public sealed class GuestAccessOffTests(AllInOneFixture server) : IClassFixture<AllInOneFixture>
{
    [Fact]
    public async Task Guest_registration_is_off_by_default()
    {
        var r = await new MatrixClient(server).Call("POST", $"{C}/register?kind=guest", new JsonObject(), auth: false);
        Assert.True(r.Status == HttpStatusCode.Forbidden && r.ErrCode == "M_GUEST_ACCESS_FORBIDDEN", r.Body?.ToJsonString());
        var bad = await new MatrixClient(server).Call("POST", $"{C}/register?kind=robot", new JsonObject(), auth: false);
        Assert.True(bad.Status == HttpStatusCode.BadRequest && bad.ErrCode == "M_INVALID_PARAM", bad.Body?.ToJsonString());
    }
}

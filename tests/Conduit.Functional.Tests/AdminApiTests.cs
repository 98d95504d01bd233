using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using static Conduit.Functional.Tests.MatrixClient;

namespace Conduit.Functional.Tests;

/// <summary>
/// Synapse's admin API subset (users, registration tokens, rooms: deletion and history purges) through the edge, on a server where registration needs a
/// token (registration_requires_token, and the config's registration_token) and one admin is in the config. The
/// fixture registers the server's first account before any test runs, so it is the one made admin.
/// </summary>
public abstract partial class AdminApiTests(ServerFixture server, MatrixClient first)
{
    public const string ConfigToken = "config-token";
    public const string ConfigAdmin = "cfg_admin";
    public const string SharedSecret = "shared-secret-for-tests";
    public const string Config = $"rate_limits = {{ enabled = false }}\nregistration_requires_token = true\nregistration_token = \"{ConfigToken}\"\nadmins = [\"@{ConfigAdmin}:test.local\"]\nregistration_shared_secret = \"{SharedSecret}\"";
    const string A = "/_synapse/admin";

    static void Error(Response r, HttpStatusCode status, string errcode)
        => Assert.True(r.Status == status && r.ErrCode == errcode, $"expected {(int)status} {errcode}, got {(int)r.Status}: {r.Body?.ToJsonString()}");

    /// <summary>Registers with the m.login.registration_token stage; the answer of the stage's request, and the client.</summary>
    public static async Task<(Response Answer, MatrixClient Client)> RegisterWithToken(ServerFixture server, string localpart, string token, string? password = "correct horse")
    {
        var c = new MatrixClient(server);
        var body = new JsonObject { ["username"] = localpart };
        if (password is not null) body["password"] = password;
        var first = await c.Call("POST", C + "/register", body, auth: false);
        Assert.Equal(HttpStatusCode.Unauthorized, first.Status);
        var withAuth = body.DeepClone().AsObject();
        withAuth["auth"] = new JsonObject { ["type"] = "m.login.registration_token", ["token"] = token, ["session"] = first.Obj["session"]!.GetValue<string>() };
        var done = await c.Call("POST", C + "/register", withAuth, auth: false);
        if (done.Status == HttpStatusCode.OK)
        {
            c.Token = done.Obj["access_token"]!.GetValue<string>();
            c.UserId = done.Obj["user_id"]!.GetValue<string>();
            c.DeviceId = done.Obj["device_id"]!.GetValue<string>();
        }
        return (done, c);
    }

    /// <summary>A nonce from GET /_synapse/admin/v1/register (no access token).</summary>
    public static async Task<string> Nonce(ServerFixture server)
    {
        var nonce = (await new MatrixClient(server).Call("GET", "/_synapse/admin/v1/register", auth: false)).Ok().Obj["nonce"]!.GetValue<string>();
        Assert.Matches("^[0-9a-f]{64,}$", nonce);
        return nonce;
    }

    /// <summary>The mac as register_new_matrix_user computes it: HMAC-SHA1 keyed with the secret over the NUL-separated fields.</summary>
    public static string Mac(string secret, string nonce, string username, string password, bool admin, string? userType = null)
    {
        var message = nonce + "\0" + username + "\0" + password + "\0" + (admin ? "admin" : "notadmin") + (userType is null ? "" : "\0" + userType);
        return Convert.ToHexStringLower(HMACSHA1.HashData(Encoding.UTF8.GetBytes(secret), Encoding.UTF8.GetBytes(message)));
    }

    /// <summary>POST /_synapse/admin/v1/register with a fresh nonce (or the one given) and the right mac (or the one given).</summary>
    public static async Task<(Response Answer, string Nonce)> SharedSecretRegister(ServerFixture server, string secret, string username, string password, bool admin,
        string? nonce = null, string? mac = null, string? userType = null, string? displayname = null)
    {
        nonce ??= await Nonce(server);
        var body = new JsonObject
        {
            ["nonce"] = nonce, ["username"] = username, ["password"] = password, ["admin"] = admin,
            ["mac"] = mac ?? Mac(secret, nonce, username, password, admin, userType),
        };
        if (userType is not null) body["user_type"] = userType;
        if (displayname is not null) body["displayname"] = displayname;
        return (await new MatrixClient(server).Call("POST", "/_synapse/admin/v1/register", body, auth: false), nonce);
    }

    async Task<MatrixClient> NewUser(string? localpart = null)
    {
        var (answer, c) = await RegisterWithToken(server, localpart ?? UniqueName("adm"), ConfigToken);
        answer.Ok();
        return c;
    }

    Task<Response> Login(string userId, string password) => PasswordLogin(server, userId, password);

    static bool IsAdmin(JsonObject user) => user["admin"]!.GetValue<bool>();

    [Fact]
    public async Task The_first_account_and_config_admins_are_admins_and_others_are_not()
    {
        var info = (await first.Get($"{A}/v2/users/{E(first.UserId)}")).Ok().Obj;
        Assert.True(IsAdmin(info), info.ToJsonString());
        var later = await NewUser();
        Assert.False((await first.Get($"{A}/v1/users/{E(later.UserId)}/admin")).Ok().Obj["admin"]!.GetValue<bool>());
        Error(await later.Get($"{A}/v1/server_version"), HttpStatusCode.Forbidden, "M_FORBIDDEN");

        // A config admin is an admin whatever its record says, and cannot be demoted at runtime.
        var cfg = await NewUser(ConfigAdmin);
        var cfgId = cfg.UserId;
        Assert.True((await first.Get($"{A}/v1/users/{E(cfgId)}/admin")).Ok().Obj["admin"]!.GetValue<bool>());
        (await cfg.Get($"{A}/v1/server_version")).Ok();
        Error(await first.Put($"{A}/v1/users/{E(cfgId)}/admin", new JsonObject { ["admin"] = false }), HttpStatusCode.BadRequest, "M_INVALID_PARAM");

        // server_version is the version federation reports.
        var version = (await first.Get($"{A}/v1/server_version")).Ok().Obj["server_version"]!.GetValue<string>();
        var fed = (await new MatrixClient(server).Call("GET", "/_matrix/federation/v1/version", auth: false)).Ok().Obj;
        Assert.Equal(fed["server"]!["version"]!.GetValue<string>(), version);
    }

    [Fact]
    public async Task Non_admins_are_refused_every_endpoint_and_anonymous_callers_need_a_token()
    {
        var user = await NewUser();
        var anon = new MatrixClient(server);
        // A forged admin header from the client is dropped at the edge.
        using var forged = new HttpRequestMessage(HttpMethod.Get, server.BaseUrl + $"{A}/v1/server_version");
        forged.Headers.Authorization = new("Bearer", user.Token);
        forged.Headers.Add("X-Conduit-Admin", "1");
        using (var resp = await server.Http.SendAsync(forged)) Assert.Equal(HttpStatusCode.Forbidden, resp.StatusCode);

        var target = E(first.UserId);
        var calls = new (string Method, string Path, JsonObject? Body)[]
        {
            ("GET", $"{A}/v1/server_version", null),
            ("GET", $"{A}/v2/users", null),
            ("GET", $"{A}/v2/users/{target}", null),
            ("PUT", $"{A}/v2/users/{E("@someone_new:test.local")}", new JsonObject { ["password"] = "x" }),
            ("GET", $"{A}/v1/users/{target}/admin", null),
            ("PUT", $"{A}/v1/users/{E(user.UserId)}/admin", new JsonObject { ["admin"] = true }),
            ("POST", $"{A}/v1/deactivate/{target}", new JsonObject()),
            ("POST", $"{A}/v1/reset_password/{target}", new JsonObject { ["new_password"] = "x" }),
            ("GET", $"{A}/v1/whois/{target}", null),
            ("GET", $"{A}/v1/registration_tokens", null),
            ("POST", $"{A}/v1/registration_tokens/new", new JsonObject()),
            ("GET", $"{A}/v1/registration_tokens/abc", null),
            ("PUT", $"{A}/v1/registration_tokens/abc", new JsonObject { ["uses_allowed"] = 1 }),
            ("DELETE", $"{A}/v1/registration_tokens/abc", null),
        };
        foreach (var (method, path, body) in calls)
        {
            Error(await user.Call(method, path, body), HttpStatusCode.Forbidden, "M_FORBIDDEN");
            Error(await anon.Call(method, path, body), HttpStatusCode.Unauthorized, "M_MISSING_TOKEN");
        }
        // Nothing happened: the first account is still an admin and active.
        Assert.True(IsAdmin((await first.Get($"{A}/v2/users/{target}")).Ok().Obj));
        Assert.False((await first.Get($"{A}/v1/users/{E(user.UserId)}/admin")).Ok().Obj["admin"]!.GetValue<bool>());
    }

    [Fact]
    public async Task Users_are_listed_filtered_and_paged_by_name()
    {
        var prefix = UniqueName("lst") + "_";
        foreach (var n in new[] { "c", "a", "e", "b", "d" })
            Assert.Equal(HttpStatusCode.Created, (await first.Put($"{A}/v2/users/{E($"@{prefix}{n}:test.local")}", new JsonObject { ["password"] = "pw", ["displayname"] = "Name " + n })).Status);
        var page1 = (await first.Get($"{A}/v2/users?name={prefix}&limit=2")).Ok().Obj;
        Assert.Equal(5, page1["total"]!.GetValue<int>());
        Assert.Equal(new[] { $"@{prefix}a:test.local", $"@{prefix}b:test.local" }, page1["users"]!.AsArray().Select(u => u!["name"]!.GetValue<string>()));
        Assert.Equal("2", page1["next_token"]!.GetValue<string>());
        var u0 = page1["users"]![0]!.AsObject();
        Assert.Equal("Name a", u0["displayname"]!.GetValue<string>());
        Assert.False(u0["admin"]!.GetValue<bool>());
        Assert.False(u0["deactivated"]!.GetValue<bool>());
        Assert.False(u0["is_guest"]!.GetValue<bool>());
        Assert.True(u0["creation_ts"]!.GetValue<long>() > 1_600_000_000_000);
        var page3 = (await first.Get($"{A}/v2/users?name={prefix}&limit=2&from=4")).Ok().Obj;
        Assert.Equal($"@{prefix}e:test.local", Assert.Single(page3["users"]!.AsArray())!["name"]!.GetValue<string>());
        Assert.Null(page3["next_token"]);
        // By display name too; deactivated accounts only when asked for; admins filter.
        Assert.Single((await first.Get($"{A}/v2/users?name={E("Name c")}")).Ok().Obj["users"]!.AsArray(), u => u!["name"]!.GetValue<string>().StartsWith("@" + prefix, StringComparison.Ordinal));
        (await first.Post($"{A}/v1/deactivate/{E($"@{prefix}e:test.local")}", new JsonObject())).Ok();
        Assert.Equal(4, (await first.Get($"{A}/v2/users?name={prefix}")).Ok().Obj["total"]!.GetValue<int>());
        Assert.Equal(5, (await first.Get($"{A}/v2/users?name={prefix}&deactivated=true")).Ok().Obj["total"]!.GetValue<int>());
        var admins = (await first.Get($"{A}/v2/users?admins=true")).Ok().Obj["users"]!.AsArray().Select(u => u!["name"]!.GetValue<string>()).ToList();
        Assert.Contains(first.UserId, admins);
        Assert.DoesNotContain($"@{prefix}a:test.local", admins);
        Error(await first.Get($"{A}/v2/users?limit=0"), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Error(await first.Get($"{A}/v2/users?guests=maybe"), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
    }

    [Fact]
    public async Task Put_creates_then_modifies_a_local_account()
    {
        var id = $"@{UniqueName("put")}:test.local";
        var created = await first.Put($"{A}/v2/users/{E(id)}", new JsonObject { ["password"] = "first pw", ["displayname"] = "Put User" });
        Assert.Equal(HttpStatusCode.Created, created.Status);
        Assert.Equal("Put User", created.Obj["displayname"]!.GetValue<string>());
        var login = (await Login(id, "first pw")).Ok().Obj;
        var user = new MatrixClient(server, login["access_token"]!.GetValue<string>()) { UserId = id };
        Assert.Equal("Put User", (await user.Get($"{C}/profile/{E(id)}/displayname")).Ok().Obj["displayname"]!.GetValue<string>());

        // Modified: 200, the new display name everywhere; a new password logs the devices out.
        var modified = await first.Put($"{A}/v2/users/{E(id)}", new JsonObject { ["displayname"] = "Renamed" });
        Assert.Equal(HttpStatusCode.OK, modified.Status);
        Assert.Equal("Renamed", (await user.Get($"{C}/profile/{E(id)}/displayname")).Ok().Obj["displayname"]!.GetValue<string>());
        (await user.Get($"{C}/account/whoami")).Ok();
        (await first.Put($"{A}/v2/users/{E(id)}", new JsonObject { ["password"] = "second pw" })).Ok();
        Error(await user.Get($"{C}/account/whoami"), HttpStatusCode.Unauthorized, "M_UNKNOWN_TOKEN");
        Error(await Login(id, "first pw"), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        var again = new MatrixClient(server, (await Login(id, "second pw")).Ok().Obj["access_token"]!.GetValue<string>());
        // logout_devices = false keeps them.
        (await first.Put($"{A}/v2/users/{E(id)}", new JsonObject { ["password"] = "third pw", ["logout_devices"] = false })).Ok();
        (await again.Get($"{C}/account/whoami")).Ok();
        (await Login(id, "third pw")).Ok();

        // deactivated: true deactivates as the client's deactivation does.
        var gone = (await first.Put($"{A}/v2/users/{E(id)}", new JsonObject { ["deactivated"] = true })).Ok().Obj;
        Assert.True(gone["deactivated"]!.GetValue<bool>());
        Error(await again.Get($"{C}/account/whoami"), HttpStatusCode.Unauthorized, "M_UNKNOWN_TOKEN");
        Error(await Login(id, "third pw"), HttpStatusCode.Forbidden, "M_USER_DEACTIVATED");

        Error(await first.Put($"{A}/v2/users/{E("@someone:other.example")}", new JsonObject { ["password"] = "x" }), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Error(await first.Put($"{A}/v2/users/{E("@Bad Name:test.local")}", new JsonObject { ["password"] = "x" }), HttpStatusCode.BadRequest, "M_INVALID_USERNAME");
        Error(await first.Get($"{A}/v2/users/{E("@nobody_at_all:test.local")}"), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Error(await first.Put($"{A}/v2/users/{E(id)}", new JsonObject { ["admin"] = "yes" }), HttpStatusCode.BadRequest, "M_BAD_JSON");
    }

    [Fact]
    public async Task Deactivate_reset_password_and_whois()
    {
        var user = await NewUser();
        (await first.Post($"{A}/v1/reset_password/{E(user.UserId)}", new JsonObject { ["new_password"] = "new pw" })).Ok();
        Error(await user.Get($"{C}/account/whoami"), HttpStatusCode.Unauthorized, "M_UNKNOWN_TOKEN");
        Error(await Login(user.UserId, "correct horse"), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        var again = new MatrixClient(server, (await Login(user.UserId, "new pw")).Ok().Obj["access_token"]!.GetValue<string>());
        var who = (await first.Get($"{A}/v1/whois/{E(user.UserId)}")).Ok().Obj;
        Assert.Equal(user.UserId, who["user_id"]!.GetValue<string>());
        Assert.Single(who["devices"]!.AsObject());

        (await first.Post($"{A}/v1/deactivate/{E(user.UserId)}", new JsonObject { ["erase"] = true })).Ok();
        Error(await again.Get($"{C}/account/whoami"), HttpStatusCode.Unauthorized, "M_UNKNOWN_TOKEN");
        Error(await Login(user.UserId, "new pw"), HttpStatusCode.Forbidden, "M_USER_DEACTIVATED");
        Assert.True((await first.Get($"{A}/v2/users/{E(user.UserId)}")).Ok().Obj["deactivated"]!.GetValue<bool>());
        (await first.Post($"{A}/v1/deactivate/{E(user.UserId)}", new JsonObject())).Ok();
        Error(await first.Post($"{A}/v1/deactivate/{E("@nobody_at_all:test.local")}", new JsonObject()), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Error(await first.Post($"{A}/v1/reset_password/{E(user.UserId)}", new JsonObject()), HttpStatusCode.BadRequest, "M_MISSING_PARAM");
    }

    [Fact]
    public async Task Admin_status_changes_take_effect_at_once_through_the_edge_cache()
    {
        var user = await NewUser();
        Error(await user.Get($"{A}/v1/server_version"), HttpStatusCode.Forbidden, "M_FORBIDDEN");   // the edge now caches the token
        (await first.Put($"{A}/v1/users/{E(user.UserId)}/admin", new JsonObject { ["admin"] = true })).Ok();
        (await user.Get($"{A}/v1/server_version")).Ok();
        Assert.True((await user.Get($"{A}/v1/users/{E(user.UserId)}/admin")).Ok().Obj["admin"]!.GetValue<bool>());
        // An admin cannot demote themselves; another admin can.
        Error(await user.Put($"{A}/v1/users/{E(user.UserId)}/admin", new JsonObject { ["admin"] = false }), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        (await first.Put($"{A}/v1/users/{E(user.UserId)}/admin", new JsonObject { ["admin"] = false })).Ok();
        Error(await user.Get($"{A}/v1/server_version"), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        // Through PUT /v2/users too.
        (await first.Put($"{A}/v2/users/{E(user.UserId)}", new JsonObject { ["admin"] = true })).Ok();
        (await user.Get($"{A}/v1/server_version")).Ok();
        Error(await first.Put($"{A}/v1/users/{E(user.UserId)}/admin", new JsonObject()), HttpStatusCode.BadRequest, "M_MISSING_PARAM");
        Error(await first.Get($"{A}/v1/users/{E("@nobody_at_all:test.local")}/admin"), HttpStatusCode.NotFound, "M_NOT_FOUND");
    }

    [Fact]
    public async Task Rooms_are_listed_with_their_members_and_state_for_admins_only()
    {
        var owner = await NewUser();
        var guest = await NewUser();
        var name = UniqueName("adminroom");
        var room = await owner.CreateRoom(new JsonObject { ["preset"] = "public_chat", ["name"] = name });
        (await guest.Post($"{C}/join/{E(room)}", new JsonObject())).Ok();

        var listed = (await first.Get($"{A}/v1/rooms?search_term={E(name)}")).Ok().Obj;
        var entry = Assert.Single(listed["rooms"]!.AsArray())!;
        Assert.Equal((room, name, 2, 2), (entry["room_id"]!.GetValue<string>(), entry["name"]!.GetValue<string>(),
            entry["joined_members"]!.GetValue<int>(), entry["joined_local_members"]!.GetValue<int>()));
        Assert.Equal(1, listed["total_rooms"]!.GetValue<int>());
        var details = (await first.Get($"{A}/v1/rooms/{E(room)}")).Ok().Obj;
        Assert.Equal((owner.UserId, "public", false), (details["creator"]!.GetValue<string>(), details["join_rules"]!.GetValue<string>(), details["blocked"]!.GetValue<bool>()));
        var members = (await first.Get($"{A}/v1/rooms/{E(room)}/members")).Ok().Obj;
        Assert.Equal(new[] { owner.UserId, guest.UserId }.Order(StringComparer.Ordinal), members["members"]!.AsArray().Select(m => m!.GetValue<string>()));
        var state = (await first.Get($"{A}/v1/rooms/{E(room)}/state")).Ok().Obj["state"]!.AsArray();
        Assert.Contains(state, e => e!["type"]!.GetValue<string>() == "m.room.name" && e["content"]!["name"]!.GetValue<string>() == name);
        // Paging: one room per page, the next offset given.
        var page = (await first.Get($"{A}/v1/rooms?limit=1")).Ok().Obj;
        Assert.Single(page["rooms"]!.AsArray());
        Assert.Equal(1, page["next_batch"]!.GetValue<int>());
        Error(await first.Get($"{A}/v1/rooms/{E("!nope:test.local")}"), HttpStatusCode.NotFound, "M_NOT_FOUND");
        foreach (var path in new[] { "/v1/rooms", $"/v1/rooms/{E(room)}", $"/v1/rooms/{E(room)}/members", $"/v1/rooms/{E(room)}/state", $"/v1/rooms/{E(room)}/block" })
            Error(await owner.Get(A + path), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        Error(await owner.Call("DELETE", $"{A}/v2/rooms/{E(room)}", new JsonObject()), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        Error(await new MatrixClient(server).Call("GET", $"{A}/v1/rooms", null, auth: false), HttpStatusCode.Unauthorized, "M_MISSING_TOKEN");
    }

    [Fact]
    public async Task A_deleted_and_blocked_room_loses_its_members_aliases_and_directory_entry_and_takes_no_joins_until_unblocked()
    {
        var owner = await NewUser();
        var member = await NewUser();
        var alias = $"#{UniqueName("del")}:test.local";
        var room = await owner.CreateRoom(new JsonObject { ["preset"] = "public_chat", ["room_alias_name"] = alias[1..alias.IndexOf(':')], ["visibility"] = "public" });
        (await member.Post($"{C}/join/{E(room)}", new JsonObject())).Ok();
        var invitee = await NewUser();
        (await owner.Post($"{C}/rooms/{E(room)}/invite", new JsonObject { ["user_id"] = invitee.UserId })).Ok();

        var deleteId = (await first.Call("DELETE", $"{A}/v2/rooms/{E(room)}", new JsonObject { ["block"] = true, ["purge"] = false })).Ok().Obj["delete_id"]!.GetValue<string>();
        var status = (await first.Get($"{A}/v2/rooms/delete_status/{deleteId}")).Ok().Obj;
        Assert.Equal("complete", status["status"]!.GetValue<string>());
        Assert.Equal(new[] { owner.UserId, member.UserId, invitee.UserId }.Order(StringComparer.Ordinal),
            status["shutdown_room"]!["kicked_users"]!.AsArray().Select(u => u!.GetValue<string>()).Order(StringComparer.Ordinal));
        Assert.Equal([alias], status["shutdown_room"]!["local_aliases"]!.AsArray().Select(a => a!.GetValue<string>()));
        Assert.Single((await first.Get($"{A}/v2/rooms/{E(room)}/delete_status")).Ok().Obj["results"]!.AsArray());

        // What users notice: nobody is in it, the alias and the directory entry are gone, and it takes no one back.
        Assert.DoesNotContain(room, (await owner.Get($"{C}/joined_rooms")).Ok().Obj["joined_rooms"]!.AsArray().Select(r => r!.GetValue<string>()));
        Assert.Empty((await first.Get($"{A}/v1/rooms/{E(room)}/members")).Ok().Obj["members"]!.AsArray());
        Error(await member.Get($"{C}/directory/room/{E(alias)}"), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Assert.Equal("private", (await member.Get($"{C}/directory/list/room/{E(room)}")).Ok().Obj["visibility"]!.GetValue<string>());
        Error(await member.Post($"{C}/join/{E(room)}", new JsonObject()), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        Error(await invitee.Post($"{C}/rooms/{E(room)}/join", new JsonObject()), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        Assert.True((await first.Get($"{A}/v1/rooms/{E(room)}/block")).Ok().Obj["block"]!.GetValue<bool>());

        // Unblocked, the (public) room can be joined again.
        (await first.Put($"{A}/v1/rooms/{E(room)}/block", new JsonObject { ["block"] = false })).Ok();
        (await member.Post($"{C}/join/{E(room)}", new JsonObject())).Ok();
    }

    /// <summary>The bodies of the m.room.message events /messages returns backwards from the end, oldest first.</summary>
    static async Task<List<string>> Messages(MatrixClient c, string room)
        => (await c.Get($"{C}/rooms/{E(room)}/messages?dir=b&limit=100")).Ok().Obj["chunk"]!.AsArray()
            .Where(e => e!["type"]!.GetValue<string>() == "m.room.message").Select(e => e!["content"]!["body"]!.GetValue<string>()).Reverse().ToList();

    async Task<string> PurgeStatus(Response answer)
    {
        var purgeId = answer.Ok().Obj["purge_id"]!.GetValue<string>();
        return (await first.Get($"{A}/v1/purge_history_status/{E(purgeId)}")).Ok().Obj["status"]!.GetValue<string>();
    }

    [Fact]
    public async Task Purging_history_up_to_a_timestamp_removes_older_messages_local_ones_only_with_delete_local_events_and_the_room_keeps_working()
    {
        var owner = await NewUser();
        var member = await NewUser();
        var name = UniqueName("purged");
        var room = await owner.CreateRoom(new JsonObject { ["preset"] = "public_chat", ["name"] = name });
        (await member.Post($"{C}/join/{E(room)}", new JsonObject())).Ok();
        var old = await owner.SendSpacedTexts(room, "old", 3);
        var fresh = await member.SendSpacedTexts(room, "new", 2);
        string[] all = ["old0", "old1", "old2", "new0", "new1"];
        Assert.Equal(all, await Messages(member, room));

        // Local users' events stay by default (Synapse: they may be the only copies).
        var keep = await first.Post($"{A}/v1/purge_history/{E(room)}", new JsonObject { ["purge_up_to_ts"] = fresh[0].Ts });
        Assert.Equal("complete", await PurgeStatus(keep));
        Assert.Equal(all, await Messages(member, room));

        var purge = await first.Post($"{A}/v1/purge_history/{E(room)}", new JsonObject { ["purge_up_to_ts"] = fresh[0].Ts, ["delete_local_events"] = true });
        Assert.Equal("complete", await PurgeStatus(purge));
        Assert.Equal(["new0", "new1"], await Messages(member, room));
        Assert.Equal(["new0", "new1"], await Messages(owner, room));
        Error(await owner.Get($"{C}/rooms/{E(room)}/event/{E(old[0].Id)}"), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Error(await owner.Get($"{C}/rooms/{E(room)}/context/{E(old[2].Id)}"), HttpStatusCode.NotFound, "M_NOT_FOUND");

        // The state is whole: name, members, power; new messages are sent and seen in /sync.
        Assert.Equal(name, (await member.Get($"{C}/rooms/{E(room)}/state/m.room.name/")).Ok().Obj["name"]!.GetValue<string>());
        Assert.Equal(2, (await member.Get($"{C}/rooms/{E(room)}/joined_members")).Ok().Obj["joined"]!.AsObject().Count);
        (await owner.Put($"{C}/rooms/{E(room)}/state/m.room.topic/", new JsonObject { ["topic"] = "after purge" })).Ok();
        await owner.SendText(room, "after");
        Assert.Contains("after", TimelineBodies(await member.Sync(), room));
        Assert.Equal(["new0", "new1", "after"], await Messages(member, room));
        var late = await NewUser();
        (await late.Post($"{C}/join/{E(room)}", new JsonObject())).Ok();
        Assert.Equal(["new0", "new1", "after"], await Messages(late, room));
    }

    [Fact]
    public async Task Purging_history_up_to_an_event_keeps_that_event_and_what_follows_and_bad_requests_are_refused()
    {
        var owner = await NewUser();
        var room = await owner.CreateRoom(new JsonObject { ["preset"] = "private_chat" });
        await owner.SendText(room, "a");
        await owner.SendText(room, "b");
        var c = await owner.SendText(room, "c");
        await owner.SendText(room, "d");
        var answer = await first.Call("POST", $"{A}/v1/purge_history/{E(room)}/{E(c)}", new JsonObject { ["delete_local_events"] = true });
        Assert.Equal("complete", await PurgeStatus(answer));
        Assert.Equal(["c", "d"], await Messages(owner, room));
        // The body may name the event too; the latest event is never purged.
        var last = await owner.SendText(room, "e");
        Assert.Equal("complete", await PurgeStatus(await first.Post($"{A}/v1/purge_history/{E(room)}",
            new JsonObject { ["purge_up_to_ts"] = long.MaxValue / 2, ["delete_local_events"] = true })));
        Assert.Equal(["e"], await Messages(owner, room));
        Assert.Equal(last, (await owner.Get($"{C}/rooms/{E(room)}/event/{E(last)}")).Ok().Obj["event_id"]!.GetValue<string>());

        var other = await owner.CreateRoom();
        var elsewhere = await owner.SendText(other, "x");
        Error(await owner.Post($"{A}/v1/purge_history/{E(room)}", new JsonObject { ["purge_up_to_ts"] = 1 }), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        Error(await owner.Get($"{A}/v1/purge_history_status/nope"), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        Error(await first.Post($"{A}/v1/purge_history/{E("!nope:test.local")}", new JsonObject { ["purge_up_to_ts"] = 1 }), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Error(await first.Post($"{A}/v1/purge_history/{E(room)}", new JsonObject()), HttpStatusCode.BadRequest, "M_BAD_JSON");
        Error(await first.Post($"{A}/v1/purge_history/{E(room)}", new JsonObject { ["purge_up_to_ts"] = "soon" }), HttpStatusCode.BadRequest, "M_BAD_JSON");
        Error(await first.Post($"{A}/v1/purge_history/{E(room)}", new JsonObject { ["purge_up_to_ts"] = 1, ["delete_local_events"] = "yes" }), HttpStatusCode.BadRequest, "M_BAD_JSON");
        Error(await first.Post($"{A}/v1/purge_history/{E(room)}", new JsonObject { ["purge_up_to_ts"] = -1 }), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Error(await first.Post($"{A}/v1/purge_history/{E(room)}/{E(elsewhere)}", new JsonObject()), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Error(await first.Post($"{A}/v1/purge_history/{E(room)}/{E("$nope")}", new JsonObject()), HttpStatusCode.NotFound, "M_NOT_FOUND");
        // Nothing before the time: nothing to purge (Synapse's 404).
        Error(await first.Post($"{A}/v1/purge_history/{E(other)}", new JsonObject { ["purge_up_to_ts"] = 1 }), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Error(await first.Get($"{A}/v1/purge_history_status/nope"), HttpStatusCode.NotFound, "M_NOT_FOUND");
    }

    [Fact]
    public async Task Deleting_a_room_purges_it_by_default_and_keeps_it_with_purge_false()
    {
        var owner = await NewUser();
        var member = await NewUser();
        var purged = await owner.CreateRoom(new JsonObject { ["preset"] = "public_chat", ["name"] = "gone" });
        (await member.Post($"{C}/join/{E(purged)}", new JsonObject())).Ok();
        var message = await member.SendText(purged, "hello");
        var kept = await owner.CreateRoom(new JsonObject { ["preset"] = "public_chat", ["name"] = "kept" });
        await owner.SendText(kept, "still here");

        var deleteId = (await first.Call("DELETE", $"{A}/v2/rooms/{E(purged)}", new JsonObject())).Ok().Obj["delete_id"]!.GetValue<string>();
        var status = (await first.Get($"{A}/v2/rooms/delete_status/{deleteId}")).Ok().Obj;
        Assert.Equal(("complete", ""), (status["status"]!.GetValue<string>(), status["error"]!.GetValue<string>()));
        Error(await first.Get($"{A}/v1/rooms/{E(purged)}"), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Assert.DoesNotContain(purged, (await first.Get($"{A}/v1/rooms?limit=1000")).Ok().Obj["rooms"]!.AsArray().Select(r => r!["room_id"]!.GetValue<string>()));
        foreach (var former in new[] { owner, member })
        {
            var read = await former.Get($"{C}/rooms/{E(purged)}/messages?dir=b");
            Assert.True(read.Status is HttpStatusCode.Forbidden or HttpStatusCode.NotFound, $"got {(int)read.Status}");
            Assert.NotEqual(HttpStatusCode.OK, (await former.Get($"{C}/rooms/{E(purged)}/event/{E(message)}")).Status);
        }
        // Not blocked: the room ID is free again (no member of this server could rejoin it: nobody is left in it).
        Assert.False((await first.Get($"{A}/v1/rooms/{E(purged)}/block")).Ok().Obj["block"]!.GetValue<bool>());

        var keptId = (await first.Call("DELETE", $"{A}/v2/rooms/{E(kept)}", new JsonObject { ["purge"] = false })).Ok().Obj["delete_id"]!.GetValue<string>();
        Assert.Equal("complete", (await first.Get($"{A}/v2/rooms/delete_status/{keptId}")).Ok().Obj["status"]!.GetValue<string>());
        Assert.Equal("kept", (await first.Get($"{A}/v1/rooms/{E(kept)}")).Ok().Obj["name"]!.GetValue<string>());
        Assert.Contains((await first.Get($"{A}/v1/rooms/{E(kept)}/state")).Ok().Obj["state"]!.AsArray(), e => e!["type"]!.GetValue<string>() == "m.room.name");
    }

    [Fact]
    public async Task A_purged_and_blocked_room_stays_blocked()
    {
        var owner = await NewUser();
        var room = await owner.CreateRoom(new JsonObject { ["preset"] = "public_chat" });
        (await first.Call("DELETE", $"{A}/v2/rooms/{E(room)}", new JsonObject { ["block"] = true, ["purge"] = true })).Ok();
        Error(await first.Get($"{A}/v1/rooms/{E(room)}"), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Assert.True((await first.Get($"{A}/v1/rooms/{E(room)}/block")).Ok().Obj["block"]!.GetValue<bool>());
        var status = (await first.Get($"{A}/v2/rooms/{E(room)}/delete_status")).Ok().Obj["results"]!.AsArray().Single()!;
        Assert.Equal([owner.UserId], status["shutdown_room"]!["kicked_users"]!.AsArray().Select(u => u!.GetValue<string>()));
        Error(await owner.Post($"{C}/join/{E(room)}", new JsonObject()), HttpStatusCode.Forbidden, "M_FORBIDDEN");
    }

    static async Task<bool> Validity(ServerFixture server, string token)
        => (await new MatrixClient(server).Call("GET", $"/_matrix/client/v1/register/m.login.registration_token/validity?token={E(token)}", auth: false))
            .Ok().Obj["valid"]!.GetValue<bool>();

    [Fact]
    public async Task Registration_tokens_are_made_used_up_expired_and_deleted()
    {
        // uses_allowed 1: one registration, then refused.
        var once = (await first.Post($"{A}/v1/registration_tokens/new", new JsonObject { ["uses_allowed"] = 1 })).Ok().Obj;
        var token = once["token"]!.GetValue<string>();
        Assert.Equal(16, token.Length);
        Assert.Equal(0, once["pending"]!.GetValue<int>());
        Assert.True(await Validity(server, token));
        Assert.True(await Validity(server, ConfigToken));
        Assert.False(await Validity(server, "no-such-token"));
        var (ok, _) = await RegisterWithToken(server, UniqueName("tok"), token);
        ok.Ok();
        var used = (await first.Get($"{A}/v1/registration_tokens/{token}")).Ok().Obj;
        Assert.Equal((1, 0), (used["completed"]!.GetValue<int>(), used["pending"]!.GetValue<int>()));
        Assert.False(await Validity(server, token));
        var (refused, _) = await RegisterWithToken(server, UniqueName("tok"), token);
        Error(refused, HttpStatusCode.Unauthorized, "M_FORBIDDEN");
        Assert.Contains(token, (await first.Get($"{A}/v1/registration_tokens?valid=false")).Ok().Obj["registration_tokens"]!.AsArray().Select(t => t!["token"]!.GetValue<string>()));
        Assert.DoesNotContain(token, (await first.Get($"{A}/v1/registration_tokens?valid=true")).Ok().Obj["registration_tokens"]!.AsArray().Select(t => t!["token"]!.GetValue<string>()));

        // A use is pending from the stage on: a registration that passed the stage but failed holds the only use.
        var name = UniqueName("tk-");
        (await first.Post($"{A}/v1/registration_tokens/new", new JsonObject { ["token"] = name, ["uses_allowed"] = 1 })).Ok();
        var (noPassword, _) = await RegisterWithToken(server, UniqueName("tok"), name, password: null);
        Error(noPassword, HttpStatusCode.BadRequest, "M_MISSING_PARAM");
        Assert.Equal(1, (await first.Get($"{A}/v1/registration_tokens/{name}")).Ok().Obj["pending"]!.GetValue<int>());
        Assert.False(await Validity(server, name));
        // Raising uses_allowed makes it valid again; then it is deleted.
        var raised = (await first.Put($"{A}/v1/registration_tokens/{name}", new JsonObject { ["uses_allowed"] = 2 })).Ok().Obj;
        Assert.Equal(2, raised["uses_allowed"]!.GetValue<int>());
        Assert.True(await Validity(server, name));
        (await first.Call("DELETE", $"{A}/v1/registration_tokens/{name}")).Ok();
        Error(await first.Get($"{A}/v1/registration_tokens/{name}"), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Error(await first.Call("DELETE", $"{A}/v1/registration_tokens/{name}"), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Assert.False(await Validity(server, name));

        // Expiry.
        var soon = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() + 1500;
        var expiring = (await first.Post($"{A}/v1/registration_tokens/new", new JsonObject { ["expiry_time"] = soon, ["length"] = 8 })).Ok().Obj;
        var e = expiring["token"]!.GetValue<string>();
        Assert.Equal((8, soon), (e.Length, expiring["expiry_time"]!.GetValue<long>()));
        Assert.Null(expiring["uses_allowed"]!);
        Assert.True(await Validity(server, e));
        await Task.Delay(2000);
        Assert.False(await Validity(server, e));
        var (late, _) = await RegisterWithToken(server, UniqueName("tok"), e);
        Error(late, HttpStatusCode.Unauthorized, "M_FORBIDDEN");

        // Bad input.
        var taken = (await first.Post($"{A}/v1/registration_tokens/new", new JsonObject { ["token"] = token }));
        Error(taken, HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Error(await first.Post($"{A}/v1/registration_tokens/new", new JsonObject { ["token"] = "has space" }), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Error(await first.Post($"{A}/v1/registration_tokens/new", new JsonObject { ["uses_allowed"] = -1 }), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Error(await first.Post($"{A}/v1/registration_tokens/new", new JsonObject { ["expiry_time"] = 1000 }), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Error(await first.Post($"{A}/v1/registration_tokens/new", new JsonObject { ["length"] = 65 }), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Error(await first.Put($"{A}/v1/registration_tokens/nope", new JsonObject { ["uses_allowed"] = 1 }), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Error(await new MatrixClient(server).Call("GET", "/_matrix/client/v1/register/m.login.registration_token/validity", auth: false), HttpStatusCode.BadRequest, "M_MISSING_PARAM");
    }

    // ---- reports (Synapse's event, room and user reports admin API)

    static JsonObject Only(JsonObject list, string key)
    {
        Assert.Equal(1, list["total"]!.GetValue<int>());
        return Assert.Single(list[key]!.AsArray())!.AsObject();
    }

    [Fact]
    public async Task Reports_of_events_rooms_and_users_are_listed_filtered_fetched_and_deleted_by_admins()
    {
        var owner = await NewUser();
        var reporter = await NewUser();
        var name = UniqueName("Reported room");
        var room = await owner.CreateRoom(new JsonObject { ["preset"] = "public_chat", ["name"] = name, ["topic"] = "a topic" });
        (await reporter.Post($"{C}/join/{E(room)}", new JsonObject())).Ok();
        var bad = await owner.SendText(room, "bad words");
        var worse = await owner.SendText(room, "worse words");
        (await reporter.Post($"{C}/rooms/{E(room)}/report/{E(bad)}", new JsonObject { ["reason"] = "spam", ["score"] = -50 })).Ok();
        (await reporter.Post($"{C}/rooms/{E(room)}/report/{E(worse)}", new JsonObject { ["reason"] = "abuse" })).Ok();
        (await reporter.Post($"{C}/rooms/{E(room)}/report", new JsonObject { ["reason"] = "bad room" })).Ok();
        (await reporter.Post($"{C}/users/{E(owner.UserId)}/report", new JsonObject { ["reason"] = "bad user" })).Ok();
        Error(await reporter.Post($"{C}/rooms/{E(room)}/report/{E(bad)}", new JsonObject { ["score"] = 5 }), HttpStatusCode.BadRequest, "M_INVALID_PARAM");

        // Event reports: newest first by default, oldest first with dir=f, paged with next_token.
        var events = (await first.Get($"{A}/v1/event_reports?room_id={E(room)}")).Ok().Obj;
        Assert.Equal(2, events["total"]!.GetValue<int>());
        var list = events["event_reports"]!.AsArray().Select(r => r!.AsObject()).ToList();
        Assert.Equal(new[] { worse, bad }, list.Select(r => r["event_id"]!.GetValue<string>()));
        Assert.Null(events["next_token"]);
        var forwards = (await first.Get($"{A}/v1/event_reports?room_id={E(room)}&dir=f&limit=1")).Ok().Obj;
        Assert.Equal(bad, Assert.Single(forwards["event_reports"]!.AsArray())!["event_id"]!.GetValue<string>());
        Assert.Equal(1, forwards["next_token"]!.GetValue<int>());
        var second = (await first.Get($"{A}/v1/event_reports?room_id={E(room)}&dir=f&limit=1&from=1")).Ok().Obj;
        Assert.Equal(worse, Assert.Single(second["event_reports"]!.AsArray())!["event_id"]!.GetValue<string>());
        Assert.Null(second["next_token"]);

        var report = list[1];
        var id = report["id"]!.GetValue<string>();
        Assert.Matches("^[0-9]+-[A-Za-z0-9]+$", id);
        Assert.Equal((room, name, owner.UserId, reporter.UserId, "spam", -50),
            (report["room_id"]!.GetValue<string>(), report["name"]!.GetValue<string>(), report["sender"]!.GetValue<string>(),
             report["user_id"]!.GetValue<string>(), report["reason"]!.GetValue<string>(), report["score"]!.GetValue<int>()));
        Assert.True(report["received_ts"]!.GetValue<long>() > 0);
        Assert.Null(list[0]["score"]);
        var one = (await first.Get($"{A}/v1/event_reports/{id}")).Ok().Obj;
        Assert.Equal(bad, one["event_id"]!.GetValue<string>());
        Assert.Equal("bad words", one["event_json"]!["content"]!["body"]!.GetValue<string>());

        // Filters: the reporter (user_id, a substring), the reported event's sender, the room.
        Assert.Equal(2, (await first.Get($"{A}/v1/event_reports?user_id={E(reporter.UserId)}")).Ok().Obj["total"]!.GetValue<int>());
        Assert.Equal(2, (await first.Get($"{A}/v1/event_reports?event_sender_user_id={E(owner.UserId)}")).Ok().Obj["total"]!.GetValue<int>());
        Assert.Equal(0, (await first.Get($"{A}/v1/event_reports?user_id={E(owner.UserId)}&room_id={E(room)}")).Ok().Obj["total"]!.GetValue<int>());
        Assert.Equal(0, (await first.Get($"{A}/v1/event_reports?event_sender_user_id={E(reporter.UserId)}")).Ok().Obj["total"]!.GetValue<int>());
        Error(await first.Get($"{A}/v1/event_reports?dir=x"), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Error(await first.Get($"{A}/v1/event_reports?limit=-1"), HttpStatusCode.BadRequest, "M_INVALID_PARAM");

        // Room and user reports, each in its own list.
        var roomReport = Only((await first.Get($"{A}/v1/room_reports?room_id={E(room)}")).Ok().Obj, "room_reports");
        Assert.Equal((name, "a topic", reporter.UserId, "bad room"), (roomReport["name"]!.GetValue<string>(), roomReport["topic"]!.GetValue<string>(),
            roomReport["user_id"]!.GetValue<string>(), roomReport["reason"]!.GetValue<string>()));
        var roomReportId = roomReport["id"]!.GetValue<string>();
        Assert.Equal(room, (await first.Get($"{A}/v1/room_reports/{roomReportId}")).Ok().Obj["room_id"]!.GetValue<string>());
        var userReport = Only((await first.Get($"{A}/v1/user_reports?target_user_id={E(owner.UserId)}")).Ok().Obj, "user_reports");
        Assert.Equal((reporter.UserId, owner.UserId, "bad user"), (userReport["user_id"]!.GetValue<string>(), userReport["target_user_id"]!.GetValue<string>(),
            userReport["reason"]!.GetValue<string>()));
        var userReportId = userReport["id"]!.GetValue<string>();
        Error(await first.Get($"{A}/v1/event_reports/{roomReportId}"), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Error(await first.Get($"{A}/v1/room_reports/{userReportId}"), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Error(await first.Get($"{A}/v1/user_reports/{id}"), HttpStatusCode.NotFound, "M_NOT_FOUND");

        // Only admins; nothing is deleted by a refused call.
        var anon = new MatrixClient(server);
        foreach (var (method, path) in new[] { ("GET", $"{A}/v1/event_reports"), ("GET", $"{A}/v1/event_reports/{id}"), ("DELETE", $"{A}/v1/event_reports/{id}"),
                     ("GET", $"{A}/v1/room_reports"), ("DELETE", $"{A}/v1/room_reports/{roomReportId}"), ("GET", $"{A}/v1/user_reports"), ("DELETE", $"{A}/v1/user_reports/{userReportId}") })
        {
            Error(await reporter.Call(method, path), HttpStatusCode.Forbidden, "M_FORBIDDEN");
            Error(await anon.Call(method, path), HttpStatusCode.Unauthorized, "M_MISSING_TOKEN");
        }

        // Deleting: once, then not found.
        Assert.Empty((await first.Call("DELETE", $"{A}/v1/event_reports/{id}")).Ok().Obj);
        Error(await first.Get($"{A}/v1/event_reports/{id}"), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Error(await first.Call("DELETE", $"{A}/v1/event_reports/{id}"), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Assert.Equal(worse, Only((await first.Get($"{A}/v1/event_reports?room_id={E(room)}")).Ok().Obj, "event_reports")["event_id"]!.GetValue<string>());
        (await first.Call("DELETE", $"{A}/v1/room_reports/{roomReportId}")).Ok();
        (await first.Call("DELETE", $"{A}/v1/user_reports/{userReportId}")).Ok();
        Assert.Equal(0, (await first.Get($"{A}/v1/room_reports?room_id={E(room)}")).Ok().Obj["total"]!.GetValue<int>());
        Assert.Equal(0, (await first.Get($"{A}/v1/user_reports?target_user_id={E(owner.UserId)}")).Ok().Obj["total"]!.GetValue<int>());
        foreach (var unknown in new[] { "nope", "123-abc", "-", "1-", "99999999999999999999-a", "1-a%2Fb" })
            Error(await first.Get($"{A}/v1/event_reports/{unknown}"), HttpStatusCode.NotFound, "M_NOT_FOUND");
    }

    // ---- shared-secret registration (/_synapse/admin/v1/register)

    [Fact]
    public async Task Shared_secret_registration_creates_accounts_with_the_asked_admin_flag_and_refuses_bad_macs_and_used_nonces()
    {
        var name = UniqueName("ssr");
        var (answer, nonce) = await SharedSecretRegister(server, SharedSecret, name, "pizza pw", admin: false, displayname: "Pepper Roni");
        var ok = answer.Ok().Obj;
        var userId = $"@{name}:test.local";
        Assert.Equal((userId, "test.local"), (ok["user_id"]!.GetValue<string>(), ok["home_server"]!.GetValue<string>()));
        var c = new MatrixClient(server) { Token = ok["access_token"]!.GetValue<string>() };
        Assert.Equal(ok["device_id"]!.GetValue<string>(), (await c.Get(C + "/account/whoami")).Ok().Obj["device_id"]!.GetValue<string>());
        (await Login(userId, "pizza pw")).Ok();
        var info = (await first.Get($"{A}/v2/users/{E(userId)}")).Ok().Obj;
        Assert.False(IsAdmin(info));
        Assert.Equal("Pepper Roni", info["displayname"]!.GetValue<string>());
        Error(await c.Get($"{A}/v1/server_version"), HttpStatusCode.Forbidden, "M_FORBIDDEN");

        // A nonce serves once.
        var (reused, _) = await SharedSecretRegister(server, SharedSecret, UniqueName("ssr"), "pw", admin: false, nonce: nonce);
        Error(reused, HttpStatusCode.BadRequest, "M_UNKNOWN");
        Assert.Equal("unrecognised nonce", reused.Body!["error"]!.GetValue<string>());
        var (unknown, _) = await SharedSecretRegister(server, SharedSecret, UniqueName("ssr"), "pw", admin: false, nonce: "not-a-nonce");
        Error(unknown, HttpStatusCode.BadRequest, "M_UNKNOWN");

        // A wrong mac: another secret, or the admin flag changed after signing. The nonce is used up all the same.
        var other = UniqueName("ssr");
        var (wrongSecret, used) = await SharedSecretRegister(server, "not the secret", other, "pw", admin: true);
        Error(wrongSecret, HttpStatusCode.Forbidden, "M_FORBIDDEN");
        var freshNonce = await Nonce(server);
        var (flipped, _) = await SharedSecretRegister(server, SharedSecret, other, "pw", admin: true, nonce: freshNonce, mac: Mac(SharedSecret, freshNonce, other, "pw", admin: false));
        Error(flipped, HttpStatusCode.Forbidden, "M_FORBIDDEN");
        var (retried, _) = await SharedSecretRegister(server, SharedSecret, other, "pw", admin: true, nonce: used);
        Error(retried, HttpStatusCode.BadRequest, "M_UNKNOWN");
        Error(await Login($"@{other}:test.local", "pw"), HttpStatusCode.Forbidden, "M_FORBIDDEN");

        // An admin, with a user_type in the mac; the account can use the admin API at once.
        var (asAdmin, _) = await SharedSecretRegister(server, SharedSecret, other, "pw", admin: true, userType: "bot");
        var adminClient = new MatrixClient(server) { Token = asAdmin.Ok().Obj["access_token"]!.GetValue<string>() };
        Assert.True(IsAdmin((await first.Get($"{A}/v2/users/{E($"@{other}:test.local")}")).Ok().Obj));
        (await adminClient.Get($"{A}/v1/server_version")).Ok();

        // Taken, reserved and invalid names.
        Error((await SharedSecretRegister(server, SharedSecret, name, "pw", admin: false)).Answer, HttpStatusCode.BadRequest, "M_USER_IN_USE");
        Error((await SharedSecretRegister(server, SharedSecret, "conduit", "pw", admin: true)).Answer, HttpStatusCode.BadRequest, "M_USER_IN_USE");
        Error((await SharedSecretRegister(server, SharedSecret, "has space", "pw", admin: false)).Answer, HttpStatusCode.BadRequest, "M_INVALID_USERNAME");
        var missing = await new MatrixClient(server).Call("POST", $"{A}/v1/register", new JsonObject { ["nonce"] = await Nonce(server) }, auth: false);
        Error(missing, HttpStatusCode.BadRequest, "M_BAD_JSON");
    }
}

/// <summary>The admin tests' server; its first account is registered as it starts (<see cref="First"/>).</summary>
public sealed class AdminApiAllInOneFixture : AllInOneFixture
{
    protected override string ExtraConfig => AdminApiTests.Config;
    public MatrixClient First { get; private set; } = null!;

    public override async Task InitializeAsync()
    {
        await base.InitializeAsync();
        First = (await AdminApiTests.RegisterWithToken(this, "first_user", AdminApiTests.ConfigToken)).Client;
    }
}

public sealed class AdminApiSplitFixture : SplitFixture
{
    protected override string ExtraConfig => AdminApiTests.Config;
    public MatrixClient First { get; private set; } = null!;

    public override async Task InitializeAsync()
    {
        await base.InitializeAsync();
        First = (await AdminApiTests.RegisterWithToken(this, "first_user", AdminApiTests.ConfigToken)).Client;
    }
}

public sealed class AllInOneAdminApiTests(AdminApiAllInOneFixture f) : AdminApiTests(f, f.First), IClassFixture<AdminApiAllInOneFixture>;

public sealed class SplitAdminApiTests(AdminApiSplitFixture f) : AdminApiTests(f, f.First), IClassFixture<AdminApiSplitFixture>;

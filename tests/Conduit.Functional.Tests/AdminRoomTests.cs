using System.Net;
using System.Net.Http.Headers;
using System.Text.Json.Nodes;
using static Conduit.Functional.Tests.MatrixClient;

namespace Conduit.Functional.Tests;

/// <summary>
/// The admin room through the edge, as an admin uses it from a client: the first account is invited into
/// #admins:test.local by @conduit:test.local, commands typed there in both forms (<c>!admin ...</c> and Conduit's
/// <c>@conduit:test.local: ...</c>) are answered in formatted replies, and their effects are what the same admin API
/// request does. A non-admin's command is refused with no effect; the room and the bot cannot be deleted or deactivated.
/// </summary>
public abstract class AdminRoomTests(ServerFixture server, MatrixClient first)
{
    const string Secret = "reg-token-never-shown";
    public const string Config = $"rate_limits = {{ enabled = false }}\nturn_secret = \"{Secret}\"";

    readonly AdminRoomClient _room = new(server);
    string Bot => _room.Bot;
    string Alias => _room.Alias;

    Task<string> AdminRoom(MatrixClient c) => _room.AdminRoom(c);
    Task<string> JoinAdminRoom(MatrixClient c) => _room.JoinAdminRoom(c);
    Task<JsonObject> Command(MatrixClient c, string text, string? room = null) => _room.Command(c, text, room);

    static string Body(JsonObject reply) => AdminRoomClient.Body(reply);
    static string Html(JsonObject reply) => reply["formatted_body"]!.GetValue<string>();

    Task<Response> Login(string userId, string password) => PasswordLogin(server, userId, password);

    static string Quoted(string body, string after)
    {
        var i = body.IndexOf(after, StringComparison.Ordinal) + after.Length;
        var start = body.IndexOf('`', i) + 1;
        return body[start..body.IndexOf('`', start)];
    }

    [Fact]
    public async Task The_first_account_is_invited_into_the_bots_room_which_is_private_and_not_federated()
    {
        var room = await AdminRoom(first);
        var sync = await first.Sync();
        var joinedOrInvited = sync["rooms"]!["invite"]!.AsObject().ContainsKey(room) || sync["rooms"]!["join"]!.AsObject().ContainsKey(room);
        Assert.True(joinedOrInvited, "the first account has no invite to the admin room");
        await JoinAdminRoom(first);
        var state = (await first.Get($"{C}/rooms/{E(room)}/state")).Ok().Body!.AsArray().OfType<JsonObject>().ToList();
        JsonObject Content(string type) => state.Single(e => e["type"]!.GetValue<string>() == type)["content"]!.AsObject();
        Assert.False(Content("m.room.create")["m.federate"]!.GetValue<bool>());
        Assert.Equal("invite", Content("m.room.join_rules")["join_rule"]!.GetValue<string>());
        Assert.Equal(Alias, Content("m.room.canonical_alias")["alias"]!.GetValue<string>());
        Assert.Equal(Bot, state.Single(e => e["type"]!.GetValue<string>() == "m.room.create")["sender"]!.GetValue<string>());
        // Nobody may register the bot's name.
        var taken = await new MatrixClient(server).Call("GET", $"{C}/register/available?username=conduit", auth: false);
        Assert.Equal("M_USER_IN_USE", taken.ErrCode);
        // The bot's profile is there for clients to show.
        Assert.Equal("Conduit", (await first.Get($"{C}/profile/{E(Bot)}/displayname")).Ok().Obj["displayname"]!.GetValue<string>());
    }

    [Fact]
    public async Task Both_command_forms_answer_with_markdown_rendered_to_html_tables()
    {
        var list = await Command(first, "!admin users list");
        Assert.Contains(first.UserId, Body(list));
        Assert.Contains("<table>", Html(list));
        Assert.Contains($"<td>{first.UserId}</td>", Html(list));

        var conduit = await Command(first, $"{Bot}: list-local-users");
        Assert.Contains(first.UserId, Body(conduit));
        Assert.Contains("<table>", Html(conduit));

        var help = await Command(first, "!admin help");
        foreach (var group in new[] { "users", "rooms", "media", "server", "federation", "tokens", "appservices" }) Assert.Contains($"**{group}**", Body(help));
        Assert.Contains("!admin users reset-password", Body(await Command(first, "!admin users help")));
        Assert.Contains("create-user", Body(await Command(first, $"{Bot}: help")));
        Assert.Contains("Unknown command", Body(await Command(first, "!admin users fly")));
    }

    [Fact]
    public async Task User_commands_create_reset_promote_and_deactivate_accounts()
    {
        var name = UniqueName("made");
        var created = Body(await Command(first, $"!admin users create {name}"));
        var userId = $"@{name}:{server.ServerName}";
        var password = Quoted(created, "password");
        (await Login(userId, password)).Ok();
        Assert.Contains("already exists", Body(await Command(first, $"!admin users create {name}")));

        var reset = Body(await Command(first, $"{Bot}: reset-password {userId}"));
        var newPassword = Quoted(reset, "is now");
        Assert.Equal(HttpStatusCode.Forbidden, (await Login(userId, password)).Status);
        var login = (await Login(userId, newPassword)).Ok();

        // make-admin: the account is an admin and is invited here.
        Assert.Contains("server admin", Body(await Command(first, $"!admin users make-admin {name}")));
        Assert.True((await first.Get($"/_synapse/admin/v1/users/{E(userId)}/admin")).Ok().Obj["admin"]!.GetValue<bool>());
        var promoted = new MatrixClient(server, login.Obj["access_token"]!.GetValue<string>()) { UserId = userId };
        await JoinAdminRoom(promoted);

        Assert.Contains("Deactivated", Body(await Command(first, $"!admin users deactivate {userId} --leave-rooms")));
        var (x, y) = (await Register(server), await Register(server));
        Assert.Contains("Deactivated 2 of 2", Body(await Command(first, $"{Bot}: deactivate-all\n```\n{x.UserId}\n{y.UserId}\n```")));
        Assert.Equal("M_UNKNOWN_TOKEN", (await x.Get($"{C}/account/whoami")).ErrCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await Login(userId, newPassword)).Status);
        Assert.Equal("leave", (await first.Get($"{C}/rooms/{E(await AdminRoom(first))}/state/m.room.member/{E(userId)}")).Ok().Obj["membership"]!.GetValue<string>());
    }

    [Fact]
    public async Task A_non_admins_command_is_refused_and_has_no_effect()
    {
        var name = UniqueName("demoted");
        var userId = $"@{name}:{server.ServerName}";
        await Command(first, $"!admin users create {name} pass-{name} --admin");
        var c = new MatrixClient(server, (await Login(userId, $"pass-{name}")).Ok().Obj["access_token"]!.GetValue<string>()) { UserId = userId };
        var room = await JoinAdminRoom(c);
        (await first.Put($"/_synapse/admin/v1/users/{E(userId)}/admin", new JsonObject { ["admin"] = false })).Ok();

        var victim = UniqueName("never");
        Assert.Contains("not a server admin", Body(await Command(c, $"!admin users create {victim}", room)));
        Assert.Contains("not a server admin", Body(await Command(c, $"{Bot}: create-user {victim}", room)));
        Assert.Equal(HttpStatusCode.NotFound, (await first.Get($"/_synapse/admin/v2/users/{E($"@{victim}:{server.ServerName}")}")).Status);
    }

    [Fact]
    public async Task The_admin_room_and_the_bot_cannot_be_deleted_blocked_or_deactivated()
    {
        var room = await AdminRoom(first);
        Assert.Contains("admin room", Body(await Command(first, $"!admin rooms delete {Alias}")));
        Assert.Equal("M_FORBIDDEN", (await first.Call("DELETE", $"/_synapse/admin/v2/rooms/{E(room)}", new JsonObject())).ErrCode);
        Assert.Equal("M_FORBIDDEN", (await first.Put($"/_synapse/admin/v1/rooms/{E(room)}/block", new JsonObject { ["block"] = true })).ErrCode);
        Assert.Contains("admin bot", Body(await Command(first, $"!admin users deactivate {Bot}")));
        Assert.Equal("M_FORBIDDEN", (await first.Post($"/_synapse/admin/v1/deactivate/{E(Bot)}", new JsonObject())).ErrCode);
        Assert.Equal("M_FORBIDDEN", (await first.Post($"/_synapse/admin/v1/reset_password/{E(Bot)}", new JsonObject { ["new_password"] = "x" })).ErrCode);
        Assert.Equal("M_FORBIDDEN", (await first.Put($"/_synapse/admin/v2/users/{E(Bot)}", new JsonObject { ["password"] = "x" })).ErrCode);
        Assert.Contains("stays", Body(await Command(first, $"{Bot}: remove-alias {Alias}")));
        // Still there, the bot still joined.
        Assert.Equal(room, await AdminRoom(first));
        Assert.Equal("join", (await first.Get($"{C}/rooms/{E(room)}/state/m.room.member/{E(Bot)}")).Ok().Obj["membership"]!.GetValue<string>());
    }

    [Fact]
    public async Task Room_commands_list_block_and_delete_rooms()
    {
        var (alice, bob, target) = await PublicRoomPair(server);
        var alias = "#" + UniqueName("del") + ":" + server.ServerName;
        (await alice.Put($"{C}/directory/room/{E(alias)}", new JsonObject { ["room_id"] = target })).Ok();
        Assert.Contains(target, Body(await Command(first, "!admin rooms list")));
        var reported = await bob.SendText(target, "something rude");
        (await alice.Post($"{C}/rooms/{E(target)}/report/{E(reported)}", new JsonObject { ["reason"] = "rude words" })).Ok();
        var reports = Body(await Command(first, "!admin rooms reports"));
        Assert.Contains(reported, reports);
        Assert.Contains("rude words", reports);

        Assert.Contains("Blocked", Body(await Command(first, $"!admin rooms block {target}")));
        Assert.True((await first.Get($"/_synapse/admin/v1/rooms/{E(target)}/block")).Ok().Obj["block"]!.GetValue<bool>());
        Assert.Contains("Unblocked", Body(await Command(first, $"!admin rooms unblock {target}")));

        Assert.Contains("Deleting", Body(await Command(first, $"!admin rooms delete {alias} --keep-events")));
        Assert.Equal(0, (await first.Get($"/_synapse/admin/v1/rooms/{E(target)}/members")).Ok().Obj["total"]!.GetValue<int>());
        Assert.Equal(HttpStatusCode.NotFound, (await alice.Get($"{C}/directory/room/{E(alias)}")).Status);
        Assert.Equal("M_FORBIDDEN", (await bob.Post($"{C}/join/{E(target)}", new JsonObject())).ErrCode);

        // purge-history: older messages leave the room's history; the room keeps working.
        var chat = await alice.CreateRoom(new JsonObject { ["name"] = "chat" });
        await alice.SendText(chat, "old message");
        await Task.Delay(20);
        var cut = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        await Task.Delay(20);
        await alice.SendText(chat, "new message");
        Assert.Contains("Purging", Body(await Command(first, $"!admin rooms purge-history {chat} {cut}")));
        var bodies = (await alice.Get($"{C}/rooms/{E(chat)}/messages?dir=b&limit=50")).Ok().Obj["chunk"]!.AsArray()
            .Select(e => e!["content"]?["body"]?.GetValue<string>()).ToList();
        Assert.Contains("new message", bodies);
        Assert.DoesNotContain("old message", bodies);
        Assert.Equal("chat", (await alice.Get($"{C}/rooms/{E(chat)}/state/m.room.name")).Ok().Obj["name"]!.GetValue<string>());
        await alice.SendText(chat, "still works");

        // delete without --keep-events purges the room: the admin API no longer knows it.
        Assert.Contains("purged", Body(await Command(first, $"!admin rooms delete {chat}")));
        Assert.Equal(HttpStatusCode.NotFound, (await first.Get($"/_synapse/admin/v1/rooms/{E(chat)}")).Status);
    }

    [Fact]
    public async Task Token_commands_manage_registration_tokens()
    {
        var token = "tok" + Guid.NewGuid().ToString("N")[..10];
        Assert.Contains(token, Body(await Command(first, $"!admin tokens create {token} --uses 2 --expires 7d")));
        var t = (await first.Get($"/_synapse/admin/v1/registration_tokens/{token}")).Ok().Obj;
        Assert.Equal(2, t["uses_allowed"]!.GetValue<int>());
        Assert.True(t["expiry_time"]!.GetValue<long>() > DateTimeOffset.UtcNow.AddDays(6).ToUnixTimeMilliseconds());
        Assert.Contains(token, Body(await Command(first, "!admin tokens list")));
        Assert.Contains("Deleted", Body(await Command(first, $"!admin tokens delete {token}")));
        Assert.Equal(HttpStatusCode.NotFound, (await first.Get($"/_synapse/admin/v1/registration_tokens/{token}")).Status);
        Assert.Contains("--uses takes a number", Body(await Command(first, "!admin tokens create --uses many")));
    }

    [Fact]
    public async Task Server_commands_show_config_without_secrets_memory_caches_stats_and_take_backups()
    {
        var config = Body(await Command(first, "!admin server show-config"));
        Assert.Contains($"server_name = \"{server.ServerName}\"", config);
        Assert.DoesNotContain(Secret, config);
        Assert.Contains("(hidden)", config);

        var processes = server is SplitFixture ? new[] { "rooms", "keys", "sync", "federation", "media" } : ["all"];
        var memory = Body(await Command(first, "!admin server memory-usage"));
        foreach (var p in processes) Assert.Contains($"| {p} |", memory);
        Assert.DoesNotContain("error", memory);
        var caches = Body(await Command(first, "!admin server clear-cache"));
        Assert.Contains("federation_well_known", caches);
        Assert.Contains(first.UserId.Length > 0 ? "Local accounts" : "", Body(await Command(first, "!admin server stats")));

        var backup = Body(await Command(first, $"{Bot}: backup"));
        foreach (var p in processes.Where(p => p != "sync" || server is not SplitFixture || Directory.Exists(Path.Combine(server.DatabasePath, "sync"))))
            Assert.Contains($"| {p} |", backup);
        var folders = backup.Split('\n').Where(l => l.StartsWith("| ", StringComparison.Ordinal) && l.Contains('/')).Select(l => l.Split('|')[2].Trim()).ToList();
        Assert.NotEmpty(folders);
        foreach (var f in folders) Assert.True(Directory.Exists(f), $"no backup folder {f}");

        // The admin API does the same; a non-admin is refused.
        var api = (await first.Post("/_conduit/admin/v1/server/backup", new JsonObject())).Ok().Obj["backups"]!.AsArray();
        Assert.All(api, b => Assert.True(Directory.Exists(b!["path"]!.GetValue<string>())));
        var nobody = await Register(server);
        Assert.Equal("M_FORBIDDEN", (await nobody.Post("/_conduit/admin/v1/server/backup", new JsonObject())).ErrCode);
        Assert.Equal("M_FORBIDDEN", (await nobody.Get("/_conduit/admin/v1/server/config")).ErrCode);
        Assert.DoesNotContain(Secret, (await first.Get("/_conduit/admin/v1/server/config")).Ok().Obj["config"]!.GetValue<string>());
        Assert.NotEmpty((await first.Get("/_conduit/admin/v1/server/memory")).Ok().Obj["processes"]!.AsArray());
    }

    [Fact]
    public async Task Media_commands_list_block_and_delete_a_users_uploads()
    {
        var u = await Register(server);
        async Task<string> Upload(string text)
        {
            using var req = new HttpRequestMessage(HttpMethod.Post, server.BaseUrl + "/_matrix/media/v3/upload") { Content = new ByteArrayContent(System.Text.Encoding.UTF8.GetBytes(text)) };
            req.Content.Headers.ContentType = new MediaTypeHeaderValue("text/plain");
            req.Headers.Authorization = new AuthenticationHeaderValue("Bearer", u.Token);
            using var resp = await server.Http.SendAsync(req);
            resp.EnsureSuccessStatusCode();
            return JsonNode.Parse(await resp.Content.ReadAsStringAsync())!["content_uri"]!.GetValue<string>();
        }
        var one = await Upload("one " + Guid.NewGuid());
        var two = await Upload("two " + Guid.NewGuid());
        var list = Body(await Command(first, $"!admin media list {u.UserId}"));
        Assert.Contains(one, list);
        Assert.Contains(two, list);

        Assert.Contains("Deleted 1", Body(await Command(first, $"!admin media delete {one}")));
        Assert.Contains("Quarantined 1", Body(await Command(first, $"{Bot}: block-media\n```\n{two}\n```")));
        foreach (var uri in new[] { one, two })
        {
            var status = (await u.Get($"/_matrix/client/v1/media/download/{uri["mxc://".Length..]}?timeout_ms=0")).Status;
            Assert.True(status == HttpStatusCode.NotFound, $"{uri} still served: {status}");
        }
        var three = await Upload("three " + Guid.NewGuid());
        Assert.Contains("Deleted 1 files", Body(await Command(first, $"{Bot}: purge-media-from-users\n```\n{u.UserId}\n```")));
        Assert.Equal(HttpStatusCode.NotFound, (await u.Get($"/_matrix/client/v1/media/download/{three["mxc://".Length..]}?timeout_ms=0")).Status);
        Assert.Contains("is not a time", Body(await Command(first, "!admin media purge-before yesterday-ish")));
    }

    [Fact]
    public async Task Conduits_command_names_run_the_same_commands()
    {
        var (alice, _, room) = await PublicRoomPair(server);
        var alias = "#" + UniqueName("gone") + ":" + server.ServerName;
        (await alice.Put($"{C}/directory/room/{E(alias)}", new JsonObject { ["room_id"] = room })).Ok();
        Assert.Contains(room, Body(await Command(first, $"{Bot}: list-rooms")));
        Assert.Contains("Removed", Body(await Command(first, $"{Bot}: remove-alias {alias}")));
        Assert.Equal(HttpStatusCode.NotFound, (await alice.Get($"{C}/directory/room/{E(alias)}")).Status);
        Assert.Contains($"server_name = \"{server.ServerName}\"", Body(await Command(first, $"{Bot}: show-config")));
        Assert.Contains("Resident", Body(await Command(first, $"{Bot}: memory-usage")));
        Assert.Contains("federation_well_known", Body(await Command(first, $"{Bot}: clear-service-caches")));
        var name = UniqueName("cnd");
        Assert.Contains("Created", Body(await Command(first, $"{Bot}: create-user {name} pw-{name}")));
        (await Login($"@{name}:{server.ServerName}", $"pw-{name}")).Ok();
        Assert.Contains("Deactivated", Body(await Command(first, $"{Bot}: deactivate-user --leave-rooms @{name}:{server.ServerName}")));
        Assert.Equal(HttpStatusCode.Forbidden, (await Login($"@{name}:{server.ServerName}", $"pw-{name}")).Status);
        Assert.Contains("Unknown command", Body(await Command(first, $"{Bot}: fly-to-the-moon")));
    }

    [Fact]
    public async Task Federation_commands_list_destinations_and_switch_a_rooms_federation()
    {
        var room = await first.CreateRoom();
        Assert.Contains("destinations", Body(await Command(first, "!admin federation destinations")));
        Assert.Contains("disabled", Body(await Command(first, $"!admin federation disable-room {room}")));
        Assert.True((await first.Get($"/_conduit/admin/v1/rooms/{E(room)}/federation")).Ok().Obj["disabled"]!.GetValue<bool>());
        Assert.Contains("enabled again", Body(await Command(first, $"{Bot}: enable-room {room}")));
        Assert.False((await first.Get($"/_conduit/admin/v1/rooms/{E(room)}/federation")).Ok().Obj["disabled"]!.GetValue<bool>());
        Assert.StartsWith("Error", Body(await Command(first, "!admin federation reset-connection never.example")));
        Assert.Contains("Deleted 0 local files and 0 cached remote files", Body(await Command(first, "!admin media purge-before 1000")));
    }

    [Fact]
    public async Task Debug_commands_show_events_and_sign_and_verify_json()
    {
        var room = await JoinAdminRoom(first);
        var eventId = await first.SendText(room, "just chatting, not a command");
        var pdu = Body(await Command(first, $"{Bot}: get-pdu {eventId}"));
        Assert.Contains("just chatting", pdu);
        Assert.Contains("auth chain has", Body(await Command(first, $"!admin debug get-auth-chain {eventId}")));
        var signed = Body(await Command(first, "!admin debug sign-json\n```json\n{\"hello\": \"world\"}\n```"));
        var json = signed[(signed.IndexOf('{'))..(signed.LastIndexOf('}') + 1)];
        Assert.NotNull(JsonNode.Parse(json)!["signatures"]![server.ServerName]);
        Assert.Contains("Signature correct", Body(await Command(first, $"{Bot}: verify-json\n```json\n{json}\n```")));
        var tampered = json.Replace("world", "moon", StringComparison.Ordinal);
        Assert.Contains("Signature invalid", Body(await Command(first, $"{Bot}: verify-json\n```json\n{tampered}\n```")));
    }
}

public sealed class AdminRoomAllInOneFixture : AllInOneFixture
{
    protected override string ExtraConfig => AdminRoomTests.Config;
    public MatrixClient First { get; private set; } = null!;

    public override async Task InitializeAsync()
    {
        await base.InitializeAsync();
        First = await MatrixClient.Register(this, "first_admin");
    }
}

public sealed class AdminRoomSplitFixture : SplitFixture
{
    protected override string ExtraConfig => AdminRoomTests.Config;
    public MatrixClient First { get; private set; } = null!;

    public override async Task InitializeAsync()
    {
        await base.InitializeAsync();
        First = await MatrixClient.Register(this, "first_admin");
    }
}

public sealed class AllInOneAdminRoomTests(AdminRoomAllInOneFixture f) : AdminRoomTests(f, f.First), IClassFixture<AdminRoomAllInOneFixture>;

public sealed class SplitAdminRoomTests(AdminRoomSplitFixture f) : AdminRoomTests(f, f.First), IClassFixture<AdminRoomSplitFixture>;

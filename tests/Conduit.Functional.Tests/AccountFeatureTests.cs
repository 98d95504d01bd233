using System.Net;
using System.Text.Json.Nodes;
using static Conduit.Functional.Tests.MatrixClient;

namespace Conduit.Functional.Tests;

/// <summary>Smaller account features through the edge: room tags (spec: client-server-api, "Room Tagging").</summary>
public abstract class AccountFeatureTests(ServerFixture server)
{
    static void Error(Response r, HttpStatusCode status, string errcode)
        => Assert.True(r.Status == status && r.ErrCode == errcode, $"expected {(int)status} {errcode}, got {(int)r.Status}: {r.Body?.ToJsonString()}");

    static JsonObject? RoomAccountData(JsonObject sync, string roomId, string type)
        => (sync["rooms"]?["join"]?[roomId]?["account_data"]?["events"] as JsonArray)?
            .FirstOrDefault(e => e!["type"]!.GetValue<string>() == type)?["content"] as JsonObject;

    [Fact]
    public async Task Tags_are_set_listed_removed_and_synced()
    {
        var u = await Register(server);
        var room = await u.CreateRoom();
        var tags = $"{C}/user/{E(u.UserId)}/rooms/{E(room)}/tags";
        Assert.Equal("{}", (await u.Get(tags)).Ok().Obj["tags"]!.ToJsonString());
        var since = (await u.Sync())["next_batch"]!.GetValue<string>();

        (await u.Put($"{tags}/m.favourite", new JsonObject { ["order"] = 0.25 })).Ok();
        (await u.Put($"{tags}/u.work", new JsonObject())).Ok();
        var listed = (await u.Get(tags)).Ok().Obj["tags"]!.AsObject();
        Assert.Equal(0.25, listed["m.favourite"]!["order"]!.GetValue<double>());
        Assert.True(listed.ContainsKey("u.work"));

        // The user's other devices see it as the room's m.tag account data.
        var sync = await u.Sync(since);
        var tagEvent = RoomAccountData(sync, room, "m.tag")!;
        Assert.Equal(0.25, tagEvent["tags"]!["m.favourite"]!["order"]!.GetValue<double>());

        (await u.Call("DELETE", $"{tags}/m.favourite")).Ok();
        (await u.Call("DELETE", $"{tags}/never.set")).Ok();
        Assert.Equal(["u.work"], (await u.Get(tags)).Ok().Obj["tags"]!.AsObject().Select(p => p.Key).ToArray());
    }

    [Fact]
    public async Task Tags_are_private_and_checked()
    {
        var u = await Register(server);
        var other = await Register(server);
        var room = await u.CreateRoom();
        Error(await other.Get($"{C}/user/{E(u.UserId)}/rooms/{E(room)}/tags"), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        Error(await other.Put($"{C}/user/{E(u.UserId)}/rooms/{E(room)}/tags/m.favourite", new JsonObject()), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        // Tagging a room you are not in.
        Error(await other.Put($"{C}/user/{E(other.UserId)}/rooms/{E(room)}/tags/m.favourite", new JsonObject()), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        var own = $"{C}/user/{E(u.UserId)}/rooms/{E(room)}/tags";
        Error(await u.Put($"{own}/m.favourite", new JsonObject { ["order"] = "first" }), HttpStatusCode.BadRequest, "M_BAD_JSON");
        Error(await u.Call("PUT", $"{own}/m.favourite", rawBody: """{"order":1e400}"""), HttpStatusCode.BadRequest, "M_BAD_JSON");
        Error(await u.Put($"{own}/{new string('t', 256)}", new JsonObject()), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Error(await u.Call("PUT", $"{own}/m.favourite", rawBody: "not json"), HttpStatusCode.BadRequest, "M_NOT_JSON");
        Error(await u.Get($"{C}/user/{E(u.UserId)}/rooms/not-a-room/tags"), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
    }
}

public sealed class AllInOneAccountFeatureTests(AllInOneFixture f) : AccountFeatureTests(f), IClassFixture<AllInOneFixture>;

public sealed class SplitAccountFeatureTests(SplitFixture f) : AccountFeatureTests(f), IClassFixture<SplitFixture>;

/// <summary>/.well-known/matrix/support from [global.well_known] (spec: client-server-api, "Getting the support information").</summary>
public sealed class SupportWellKnownTests : IAsyncLifetime
{
    sealed class Fixture : AllInOneFixture
    {
        protected override string ExtraConfig => """
            rate_limits = { enabled = false }
            well_known = { support_page = "https://example.org/help", support_mxid = "@admin:test.local", support_email = "admin@example.org" }
            """;
    }

    readonly Fixture _configured = new();
    readonly AllInOneFixture _plain = new();
    public async Task InitializeAsync() { await _configured.InitializeAsync(); await _plain.InitializeAsync(); }
    public async Task DisposeAsync() { await _configured.DisposeAsync(); await _plain.DisposeAsync(); }

    [Fact]
    public async Task Support_contacts_come_from_the_config()
    {
        var r = (await new MatrixClient(_configured).Call("GET", "/.well-known/matrix/support", auth: false)).Ok().Obj;
        Assert.Equal("https://example.org/help", r["support_page"]!.GetValue<string>());
        var contact = r["contacts"]![0]!;
        Assert.Equal(("@admin:test.local", "admin@example.org", "m.role.admin"),
            (contact["matrix_id"]!.GetValue<string>(), contact["email_address"]!.GetValue<string>(), contact["role"]!.GetValue<string>()));
        var none = await new MatrixClient(_plain).Call("GET", "/.well-known/matrix/support", auth: false);
        Assert.True(none.Status == HttpStatusCode.NotFound && none.ErrCode == "M_NOT_FOUND", none.Body?.ToJsonString());
    }
}

/// <summary>Room summaries, mutual rooms and reports through the edge.</summary>
public abstract class RoomInfoTests(ServerFixture server)
{
    const string V1 = "/_matrix/client/v1";

    static void Error(Response r, HttpStatusCode status, string errcode)
        => Assert.True(r.Status == status && r.ErrCode == errcode, $"expected {(int)status} {errcode}, got {(int)r.Status}: {r.Body?.ToJsonString()}");

    [Fact]
    public async Task Summaries_are_shown_to_those_who_may_see_the_room()
    {
        var owner = await Register(server);
        var stranger = await Register(server);
        var alias = "#" + UniqueName("sum") + ":" + server.ServerName;
        var pub = await owner.CreateRoom(new JsonObject
        {
            ["preset"] = "public_chat", ["name"] = "Public place", ["topic"] = "all welcome",
            ["room_alias_name"] = alias[1..alias.IndexOf(':')],
        });
        var summary = (await stranger.Get($"{V1}/room_summary/{E(alias)}")).Ok().Obj;
        Assert.Equal((pub, "Public place", "all welcome", "public", 1, alias),
            (summary["room_id"]!.GetValue<string>(), summary["name"]!.GetValue<string>(), summary["topic"]!.GetValue<string>(),
             summary["join_rule"]!.GetValue<string>(), summary["num_joined_members"]!.GetValue<int>(), summary["canonical_alias"]!.GetValue<string>()));
        Assert.False(summary.ContainsKey("membership"));
        Assert.Equal("join", (await owner.Get($"{V1}/room_summary/{E(pub)}")).Ok().Obj["membership"]!.GetValue<string>());
        // Public rooms without a token too.
        Assert.Equal(pub, (await new MatrixClient(server).Call("GET", $"{V1}/room_summary/{E(pub)}", auth: false)).Ok().Obj["room_id"]!.GetValue<string>());

        // A private room: members and invitees see it; anyone else gets the same 404 as for a room that does not exist.
        var priv = await owner.CreateRoom(new JsonObject { ["preset"] = "private_chat", ["name"] = "Secret" });
        Error(await stranger.Get($"{V1}/room_summary/{E(priv)}"), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Error(await new MatrixClient(server).Call("GET", $"{V1}/room_summary/{E(priv)}", auth: false), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Error(await stranger.Get($"{V1}/room_summary/{E("!nope:" + server.ServerName)}"), HttpStatusCode.NotFound, "M_NOT_FOUND");
        (await owner.Post($"{C}/rooms/{E(priv)}/invite", new JsonObject { ["user_id"] = stranger.UserId })).Ok();
        var invited = (await stranger.Get($"{V1}/room_summary/{E(priv)}")).Ok().Obj;
        Assert.Equal(("Secret", "invite", "invite"), (invited["name"]!.GetValue<string>(), invited["join_rule"]!.GetValue<string>(), invited["membership"]!.GetValue<string>()));
        Error(await stranger.Get($"{V1}/room_summary/not-a-room"), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
    }

    [Fact]
    public async Task Mutual_rooms_are_the_rooms_both_have_joined()
    {
        var a = await Register(server);
        var b = await Register(server);
        var shared = await a.CreateRoom(new JsonObject { ["preset"] = "public_chat" });
        var onlyA = await a.CreateRoom();
        (await b.Post($"{C}/join/{E(shared)}", new JsonObject())).Ok();
        var r = (await a.Get($"{V1}/mutual_rooms?user_id={E(b.UserId)}")).Ok().Obj;
        Assert.Equal([shared], r["joined"]!.AsArray().Select(x => x!.GetValue<string>()).ToArray());
        Assert.Equal(1, r["count"]!.GetValue<int>());
        Assert.DoesNotContain(onlyA, r["joined"]!.ToJsonString());
        Assert.Empty((await a.Get($"{V1}/mutual_rooms?user_id={E("@nobody:" + server.ServerName)}")).Ok().Obj["joined"]!.AsArray());
        Error(await a.Get($"{V1}/mutual_rooms"), HttpStatusCode.BadRequest, "M_MISSING_PARAM");
        Error(await a.Get($"{V1}/mutual_rooms?user_id={E(a.UserId)}"), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Error(await a.Get($"{V1}/mutual_rooms?user_id=bob"), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
    }

    [Fact]
    public async Task Reports_are_accepted_only_for_what_the_reporter_can_see()
    {
        var owner = await Register(server);
        var reporter = await Register(server);
        var room = await owner.CreateRoom(new JsonObject { ["preset"] = "public_chat" });
        var ev = await owner.SendText(room, "offensive");
        // Not joined yet: the event is not found for them; the room itself may be reported.
        Error(await reporter.Post($"{C}/rooms/{E(room)}/report/{E(ev)}", new JsonObject { ["reason"] = "bad" }), HttpStatusCode.NotFound, "M_NOT_FOUND");
        (await reporter.Post($"{C}/rooms/{E(room)}/report", new JsonObject { ["reason"] = "bad room" })).Ok();
        (await reporter.Post($"{C}/join/{E(room)}", new JsonObject())).Ok();
        (await reporter.Post($"{C}/rooms/{E(room)}/report/{E(ev)}", new JsonObject { ["reason"] = "bad" })).Ok();
        (await reporter.Post($"{C}/rooms/{E(room)}/report/{E(ev)}", new JsonObject())).Ok();
        Error(await reporter.Post($"{C}/rooms/{E(room)}/report/{E("$nope")}", new JsonObject { ["reason"] = "x" }), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Error(await reporter.Post($"{C}/rooms/{E("!nope:" + server.ServerName)}/report", new JsonObject { ["reason"] = "x" }), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Error(await reporter.Post($"{C}/rooms/{E(room)}/report", new JsonObject()), HttpStatusCode.BadRequest, "M_MISSING_PARAM");
        (await reporter.Post($"{C}/users/{E(owner.UserId)}/report", new JsonObject { ["reason"] = "spam" })).Ok();
        Error(await reporter.Post($"{C}/users/{E("@ghost:" + server.ServerName)}/report", new JsonObject { ["reason"] = "x" }), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Error(await new MatrixClient(server).Call("POST", $"{C}/rooms/{E(room)}/report", new JsonObject { ["reason"] = "x" }, auth: false), HttpStatusCode.Unauthorized, "M_MISSING_TOKEN");
    }
}

public sealed class AllInOneRoomInfoTests(AllInOneFixture f) : RoomInfoTests(f), IClassFixture<AllInOneFixture>;

public sealed class SplitRoomInfoTests(SplitFixture f) : RoomInfoTests(f), IClassFixture<SplitFixture>;

/// <summary>GET /_matrix/client/v1/rooms/{roomId}/hierarchy (spec: client-server-api, "Spaces") through the edge.</summary>
public abstract class SpaceHierarchyTests(ServerFixture server)
{
    static void Error(Response r, HttpStatusCode status, string errcode)
        => Assert.True(r.Status == status && r.ErrCode == errcode, $"expected {(int)status} {errcode}, got {(int)r.Status}: {r.Body?.ToJsonString()}");

    static async Task AddChild(MatrixClient u, string space, string child, string? order = null, bool suggested = false, string[]? via = null)
    {
        var content = new JsonObject { ["via"] = new JsonArray((via ?? ["test.local"]).Select(v => (JsonNode)v).ToArray()) };
        if (order is not null) content["order"] = order;
        if (suggested) content["suggested"] = true;
        (await u.Put($"{C}/rooms/{E(space)}/state/m.space.child/{E(child)}", content)).Ok();
    }

    static string[] Ids(Response r) => r.Ok().Obj["rooms"]!.AsArray().Select(x => x!["room_id"]!.GetValue<string>()).ToArray();

    [Fact]
    public async Task A_space_lists_its_rooms_breadth_first_in_the_specs_order()
    {
        var u = await Register(server);
        var space = await u.CreateRoom(new JsonObject { ["preset"] = "public_chat", ["name"] = "Space", ["creation_content"] = new JsonObject { ["type"] = "m.space" } });
        var sub = await u.CreateRoom(new JsonObject { ["preset"] = "public_chat", ["name"] = "Sub", ["creation_content"] = new JsonObject { ["type"] = "m.space" } });
        var a = await u.CreateRoom(new JsonObject { ["preset"] = "public_chat", ["name"] = "A" });
        var b = await u.CreateRoom(new JsonObject { ["preset"] = "public_chat", ["name"] = "B" });
        var deep = await u.CreateRoom(new JsonObject { ["preset"] = "public_chat", ["name"] = "Deep" });
        var removed = await u.CreateRoom(new JsonObject { ["preset"] = "public_chat" });
        await AddChild(u, space, b);                       // no order: after the ordered ones
        await AddChild(u, space, sub, order: "b");
        await AddChild(u, space, a, order: "a", suggested: true);
        await AddChild(u, space, removed, via: []);         // an empty via removes the child
        await AddChild(u, sub, deep);
        await AddChild(u, sub, space);                      // a loop

        var r = await u.Get($"/_matrix/client/v1/rooms/{E(space)}/hierarchy");
        Assert.Equal([space, a, sub, b, deep], Ids(r));
        var top = r.Obj["rooms"]![0]!;
        Assert.Equal(("Space", "m.space", 3), (top["name"]!.GetValue<string>(), top["room_type"]!.GetValue<string>(), top["children_state"]!.AsArray().Count));
        var childState = top["children_state"]![0]!;
        Assert.Equal(("m.space.child", a), (childState["type"]!.GetValue<string>(), childState["state_key"]!.GetValue<string>()));
        Assert.True(childState["origin_server_ts"]!.GetValue<long>() > 0);

        Assert.Equal([space, a, sub, b], Ids(await u.Get($"/_matrix/client/v1/rooms/{E(space)}/hierarchy?max_depth=1")));
        Assert.Equal([space, a], Ids(await u.Get($"/_matrix/client/v1/rooms/{E(space)}/hierarchy?suggested_only=true")));

        // Pages of two, then the parameters may not change.
        var first = (await u.Get($"/_matrix/client/v1/rooms/{E(space)}/hierarchy?limit=2")).Ok().Obj;
        var next = first["next_batch"]!.GetValue<string>();
        var second = await u.Get($"/_matrix/client/v1/rooms/{E(space)}/hierarchy?limit=2&from={E(next)}");
        Assert.Equal([sub, b], Ids(second));
        var third = await u.Get($"/_matrix/client/v1/rooms/{E(space)}/hierarchy?limit=2&from={E(second.Obj["next_batch"]!.GetValue<string>())}");
        Assert.Equal([deep], Ids(third));
        Assert.Null(third.Obj["next_batch"]);
        Error(await u.Get($"/_matrix/client/v1/rooms/{E(space)}/hierarchy?limit=2&max_depth=1&from={E(next)}"), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Error(await u.Get($"/_matrix/client/v1/rooms/{E(space)}/hierarchy?from=junk"), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Error(await u.Get($"/_matrix/client/v1/rooms/{E(space)}/hierarchy?limit=0"), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
    }

    [Fact]
    public async Task Rooms_the_caller_cannot_see_are_left_out_and_a_hidden_space_is_forbidden()
    {
        var owner = await Register(server);
        var other = await Register(server);
        var space = await owner.CreateRoom(new JsonObject { ["preset"] = "public_chat", ["creation_content"] = new JsonObject { ["type"] = "m.space" } });
        var open = await owner.CreateRoom(new JsonObject { ["preset"] = "public_chat" });
        var hidden = await owner.CreateRoom(new JsonObject { ["preset"] = "private_chat" });
        // Ordered explicitly: two children added in the same millisecond would be ordered by room ID (spec).
        await AddChild(owner, space, open, order: "a");
        await AddChild(owner, space, hidden, order: "b");
        Assert.Equal([space, open, hidden], Ids(await owner.Get($"/_matrix/client/v1/rooms/{E(space)}/hierarchy")));
        Assert.Equal([space, open], Ids(await other.Get($"/_matrix/client/v1/rooms/{E(space)}/hierarchy")));
        var privateSpace = await owner.CreateRoom(new JsonObject { ["preset"] = "private_chat", ["creation_content"] = new JsonObject { ["type"] = "m.space" } });
        Error(await other.Get($"/_matrix/client/v1/rooms/{E(privateSpace)}/hierarchy"), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        Error(await other.Get($"/_matrix/client/v1/rooms/{E("!nope:" + server.ServerName)}/hierarchy"), HttpStatusCode.Forbidden, "M_FORBIDDEN");
    }
}

public sealed class AllInOneSpaceHierarchyTests(AllInOneFixture f) : SpaceHierarchyTests(f), IClassFixture<AllInOneFixture>;

public sealed class SplitSpaceHierarchyTests(SplitFixture f) : SpaceHierarchyTests(f), IClassFixture<SplitFixture>;

/// <summary>The published room directory (spec: client-server-api, "Listing rooms") through the edge.</summary>
public abstract class RoomDirectoryTests(ServerFixture server)
{
    static void Error(Response r, HttpStatusCode status, string errcode)
        => Assert.True(r.Status == status && r.ErrCode == errcode, $"expected {(int)status} {errcode}, got {(int)r.Status}: {r.Body?.ToJsonString()}");

    static string[] Ids(Response r) => r.Ok().Obj["chunk"]!.AsArray().Select(x => x!["room_id"]!.GetValue<string>()).ToArray();

    [Fact]
    public async Task Published_rooms_are_listed_filtered_and_paged()
    {
        var owner = await Register(server);
        var tag = UniqueName("dir");
        var big = await owner.CreateRoom(new JsonObject { ["preset"] = "public_chat", ["visibility"] = "public", ["name"] = $"{tag} big", ["topic"] = "the largest" });
        var small = await owner.CreateRoom(new JsonObject { ["preset"] = "public_chat", ["visibility"] = "public", ["name"] = $"{tag} small" });
        var space = await owner.CreateRoom(new JsonObject { ["preset"] = "public_chat", ["visibility"] = "public", ["name"] = $"{tag} space", ["creation_content"] = new JsonObject { ["type"] = "m.space" } });
        var unlisted = await owner.CreateRoom(new JsonObject { ["preset"] = "public_chat", ["name"] = $"{tag} unlisted" });
        foreach (var _ in Enumerable.Range(0, 2))
            (await (await Register(server)).Post($"{C}/join/{E(big)}", new JsonObject())).Ok();

        // Without a token (GET), largest first.
        var anon = new MatrixClient(server);
        var all = Ids(await anon.Call("GET", $"{C}/publicRooms?limit=500", auth: false));
        Assert.Contains(big, all);
        Assert.DoesNotContain(unlisted, all);
        var filtered = await owner.Post($"{C}/publicRooms", new JsonObject { ["filter"] = new JsonObject { ["generic_search_term"] = tag.ToUpperInvariant() } });
        Assert.Equal(big, Ids(filtered)[0]);
        Assert.Equal(3, Ids(filtered).Length);
        var entry = filtered.Obj["chunk"]![0]!;
        Assert.Equal(($"{tag} big", "the largest", 3, "public"), (entry["name"]!.GetValue<string>(), entry["topic"]!.GetValue<string>(), entry["num_joined_members"]!.GetValue<int>(), entry["join_rule"]!.GetValue<string>()));
        // Room types: spaces only, and rooms without a type (null).
        var spaces = await owner.Post($"{C}/publicRooms", new JsonObject { ["filter"] = new JsonObject { ["generic_search_term"] = tag, ["room_types"] = new JsonArray("m.space") } });
        Assert.Equal([space], Ids(spaces));
        var plain = await owner.Post($"{C}/publicRooms", new JsonObject { ["filter"] = new JsonObject { ["generic_search_term"] = tag, ["room_types"] = new JsonArray((JsonNode?)null) } });
        Assert.Equal(2, Ids(plain).Length);
        // Pages of one.
        var first = await owner.Post($"{C}/publicRooms", new JsonObject { ["limit"] = 1, ["filter"] = new JsonObject { ["generic_search_term"] = tag } });
        Assert.Equal([big], Ids(first));
        var second = await owner.Post($"{C}/publicRooms", new JsonObject { ["limit"] = 1, ["since"] = first.Obj["next_batch"]!.GetValue<string>(), ["filter"] = new JsonObject { ["generic_search_term"] = tag } });
        Assert.Single(Ids(second));
        Assert.NotNull(second.Obj["prev_batch"]);
        Assert.DoesNotContain(big, Ids(second));
        Assert.Contains(small, Ids(await owner.Post($"{C}/publicRooms", new JsonObject { ["filter"] = new JsonObject { ["generic_search_term"] = tag } })));
        Error(await owner.Get($"{C}/publicRooms?since=bogus"), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Error(await anon.Call("POST", $"{C}/publicRooms", new JsonObject(), auth: false), HttpStatusCode.Unauthorized, "M_MISSING_TOKEN");
    }

    [Fact]
    public async Task Only_a_moderator_publishes_or_hides_a_room()
    {
        var owner = await Register(server);
        var member = await Register(server);
        var room = await owner.CreateRoom(new JsonObject { ["preset"] = "public_chat" });
        var list = $"{C}/directory/list/room/{E(room)}";
        Assert.Equal("private", (await member.Get(list)).Ok().Obj["visibility"]!.GetValue<string>());
        Error(await member.Put(list, new JsonObject { ["visibility"] = "public" }), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        (await member.Post($"{C}/join/{E(room)}", new JsonObject())).Ok();
        Error(await member.Put(list, new JsonObject { ["visibility"] = "public" }), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        (await owner.Put(list, new JsonObject { ["visibility"] = "public" })).Ok();
        Assert.Equal("public", (await member.Get(list)).Ok().Obj["visibility"]!.GetValue<string>());
        Assert.Contains(room, Ids(await owner.Get($"{C}/publicRooms?limit=500")));
        (await owner.Put(list, new JsonObject { ["visibility"] = "private" })).Ok();
        Assert.DoesNotContain(room, Ids(await owner.Get($"{C}/publicRooms?limit=500")));
        Error(await owner.Put(list, new JsonObject { ["visibility"] = "secret" }), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Error(await owner.Get($"{C}/directory/list/room/{E("!nope:" + server.ServerName)}"), HttpStatusCode.NotFound, "M_NOT_FOUND");
    }
}

public sealed class AllInOneRoomDirectoryTests(AllInOneFixture f) : RoomDirectoryTests(f), IClassFixture<AllInOneFixture>;

public sealed class SplitRoomDirectoryTests(SplitFixture f) : RoomDirectoryTests(f), IClassFixture<SplitFixture>;

/// <summary>OpenID tokens and the third-party identifier endpoints through the edge.</summary>
public abstract class ThirdPartyIdentityTests(ServerFixture server)
{
    static void Error(Response r, HttpStatusCode status, string errcode)
        => Assert.True(r.Status == status && r.ErrCode == errcode, $"expected {(int)status} {errcode}, got {(int)r.Status}: {r.Body?.ToJsonString()}");

    [Fact]
    public async Task An_openid_token_tells_a_third_party_who_the_user_is()
    {
        var u = await Register(server);
        var r = (await u.Post($"{C}/user/{E(u.UserId)}/openid/request_token", new JsonObject())).Ok().Obj;
        Assert.Equal(("Bearer", server.ServerName, 3600), (r["token_type"]!.GetValue<string>(), r["matrix_server_name"]!.GetValue<string>(), r["expires_in"]!.GetValue<int>()));
        var token = r["access_token"]!.GetValue<string>();
        var anon = new MatrixClient(server);
        var info = (await anon.Call("GET", $"/_matrix/federation/v1/openid/userinfo?access_token={E(token)}", auth: false)).Ok().Obj;
        Assert.Equal(u.UserId, info["sub"]!.GetValue<string>());
        Error(await anon.Call("GET", "/_matrix/federation/v1/openid/userinfo?access_token=nope", auth: false), HttpStatusCode.Unauthorized, "M_UNKNOWN_TOKEN");
        // The OpenID token is not an access token, and tokens are only for yourself.
        Error(await new MatrixClient(server, token).Get($"{C}/account/whoami"), HttpStatusCode.Unauthorized, "M_UNKNOWN_TOKEN");
        var other = await Register(server);
        Error(await other.Post($"{C}/user/{E(u.UserId)}/openid/request_token", new JsonObject()), HttpStatusCode.Forbidden, "M_FORBIDDEN");
    }

    [Fact]
    public async Task Third_party_identifier_endpoints_answer_the_specs_errors()
    {
        var u = await Register(server);
        var anon = new MatrixClient(server);
        var email = new JsonObject { ["client_secret"] = "s3cret", ["email"] = "a@example.org", ["send_attempt"] = 1 };
        var phone = new JsonObject { ["client_secret"] = "s3cret", ["country"] = "GB", ["phone_number"] = "07700900000", ["send_attempt"] = 1 };
        foreach (var flow in new[] { "register", "account/password", "account/3pid" })
        {
            Error(await anon.Call("POST", $"{C}/{flow}/email/requestToken", email.DeepClone(), auth: false), HttpStatusCode.Forbidden, "M_THREEPID_DENIED");
            Error(await anon.Call("POST", $"{C}/{flow}/msisdn/requestToken", phone.DeepClone(), auth: false), HttpStatusCode.Forbidden, "M_THREEPID_DENIED");
        }
        Error(await anon.Call("POST", $"{C}/register/email/requestToken", new JsonObject { ["email"] = "a@example.org" }, auth: false), HttpStatusCode.BadRequest, "M_MISSING_PARAM");
        Error(await u.Post($"{C}/account/3pid/add", new JsonObject { ["client_secret"] = "s", ["sid"] = "1" }), HttpStatusCode.BadRequest, "M_THREEPID_AUTH_FAILED");
        Error(await u.Post($"{C}/account/3pid/bind", new JsonObject { ["client_secret"] = "s", ["sid"] = "1", ["id_server"] = "id.example.org", ["id_access_token"] = "t" }), HttpStatusCode.BadRequest, "M_THREEPID_AUTH_FAILED");
        Error(await u.Post($"{C}/account/3pid/add", new JsonObject { ["client_secret"] = "s" }), HttpStatusCode.BadRequest, "M_MISSING_PARAM");
        Error(await u.Post($"{C}/account/3pid/delete", new JsonObject { ["medium"] = "email", ["address"] = "a@example.org" }), HttpStatusCode.BadRequest, "M_THREEPID_NOT_FOUND");
        Error(await u.Post($"{C}/account/3pid/unbind", new JsonObject { ["medium"] = "msisdn", ["address"] = "447700900000" }), HttpStatusCode.BadRequest, "M_THREEPID_NOT_FOUND");
        Error(await u.Post($"{C}/account/3pid/delete", new JsonObject { ["medium"] = "pigeon", ["address"] = "x" }), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Error(await anon.Call("POST", $"{C}/account/3pid/add", new JsonObject(), auth: false), HttpStatusCode.Unauthorized, "M_MISSING_TOKEN");
        Assert.Empty((await u.Get($"{C}/account/3pid")).Ok().Obj["threepids"]!.AsArray());
    }
}

public sealed class AllInOneThirdPartyIdentityTests(AllInOneFixture f) : ThirdPartyIdentityTests(f), IClassFixture<AllInOneFixture>;

public sealed class SplitThirdPartyIdentityTests(SplitFixture f) : ThirdPartyIdentityTests(f), IClassFixture<SplitFixture>;

/// <summary>m.ignored_user_list (spec: client-server-api, "Ignoring Users") through the edge.</summary>
public abstract class IgnoredUserTests(ServerFixture server)
{
    [Fact]
    public async Task An_ignored_users_messages_and_invites_are_not_synced_but_their_state_is()
    {
        var me = await Register(server);
        var pest = await Register(server);
        var friend = await Register(server);
        var room = await me.CreateRoom(new JsonObject { ["preset"] = "public_chat" });
        (await pest.Post($"{C}/join/{E(room)}", new JsonObject())).Ok();
        (await friend.Post($"{C}/join/{E(room)}", new JsonObject())).Ok();
        await pest.SendText(room, "before ignoring");
        var since = (await me.Sync())["next_batch"]!.GetValue<string>();

        (await me.Put($"{C}/user/{E(me.UserId)}/account_data/m.ignored_user_list",
            new JsonObject { ["ignored_users"] = new JsonObject { [pest.UserId] = new JsonObject() } })).Ok();
        await pest.SendText(room, "spam");
        (await pest.Put($"{C}/rooms/{E(room)}/state/m.room.member/{E(pest.UserId)}", new JsonObject { ["membership"] = "join", ["displayname"] = "renamed" })).Ok();
        await friend.SendText(room, "hello");
        var pestRoom = await pest.CreateRoom();
        (await pest.Post($"{C}/rooms/{E(pestRoom)}/invite", new JsonObject { ["user_id"] = me.UserId })).Ok();

        var sync = await me.Sync(since);
        var timeline = sync["rooms"]!["join"]![room]!["timeline"]!["events"]!.AsArray();
        Assert.DoesNotContain(timeline, e => e!["content"]?["body"]?.GetValue<string>() == "spam");
        Assert.Contains(timeline, e => e!["content"]?["body"]?.GetValue<string>() == "hello");
        Assert.Contains(timeline, e => e!["type"]!.GetValue<string>() == "m.room.member" && e["content"]?["displayname"]?.GetValue<string>() == "renamed");
        Assert.Null(sync["rooms"]?["invite"]?[pestRoom]);
        // An initial sync leaves them out as well; un-ignoring brings their new messages back.
        var initial = await me.Sync();
        Assert.DoesNotContain("spam", TimelineBodies(initial, room));
        Assert.Null(initial["rooms"]?["invite"]?[pestRoom]);
        (await me.Put($"{C}/user/{E(me.UserId)}/account_data/m.ignored_user_list", new JsonObject { ["ignored_users"] = new JsonObject() })).Ok();
        var since2 = (await me.Sync())["next_batch"]!.GetValue<string>();
        await pest.SendText(room, "forgiven");
        Assert.Contains("forgiven", TimelineBodies(await me.Sync(since2), room));
    }
}

public sealed class AllInOneIgnoredUserTests(AllInOneFixture f) : IgnoredUserTests(f), IClassFixture<AllInOneFixture>;

public sealed class SplitIgnoredUserTests(SplitFixture f) : IgnoredUserTests(f), IClassFixture<SplitFixture>;

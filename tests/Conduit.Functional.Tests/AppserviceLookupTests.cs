using System.Net;
using System.Text.Json.Nodes;
using static Conduit.Functional.Tests.MatrixClient;

namespace Conduit.Functional.Tests;

/// <summary>
/// What the homeserver asks of an application service: third-party lookups (client-server-api, "Third-party
/// Networks"), unknown aliases and users of its namespaces (application-service-api, "Querying"), and the network
/// room lists it publishes rooms in (PUT /directory/list/appservice) that /publicRooms shows by instance.
/// The irc bridge (the fake) lists "irc"; "gone" lists "irc" and "gitter" at an address where nothing answers.
/// </summary>
public abstract partial class AppserviceTests
{
    const string App = "/_matrix/app/v1";
    const string HsBearer = $"Bearer {HsToken}";

    static Task<(int, string)> Json(int status, string body) => Task.FromResult((status, body));

    /// <summary>A lookup answer of one valid result: its Matrix-side <paramref name="key"/> and one field.</summary>
    static Task<(int, string)> Result(string key, string value, string field, string fieldValue)
        => Json(200, new JsonArray(new JsonObject { [key] = value, ["protocol"] = "irc", ["fields"] = new JsonObject { [field] = fieldValue } }).ToJsonString());

    /// <summary>How many times the fake was asked for this path (unescaped), whatever else it is sent meanwhile.</summary>
    int Asked(string path) => fake.Requests.Count(r => Uri.UnescapeDataString(r.Split('?')[0]) == path);

    void AnswerProtocols() => fake.On($"{App}/thirdparty/protocol/irc", HsBearer, _ => Json(200, """
        {"user_fields": ["network", "nickname"], "location_fields": ["network", "channel"], "icon": "mxc://example.org/irc",
         "field_types": {"network": {"regexp": "[a-z.]+", "placeholder": "libera.chat"}},
         "instances": [{"desc": "Libera Chat", "network_id": "libera", "fields": {"network": "libera.chat"}},
                       {"desc": "Without a network ID", "fields": {}}]}
        """));

    [Fact]
    public async Task Third_party_protocols_are_the_appservices_metadata_with_instance_ids()
    {
        AnswerProtocols();
        var u = await Register(server);

        var protocols = (await u.Get($"{C}/thirdparty/protocols")).Ok().Obj;
        // "gitter" is listed only by the appservice that cannot be reached: left out.
        Assert.Equal(["irc"], protocols.Select(p => p.Key));
        var irc = protocols["irc"]!.AsObject();
        Assert.Equal("mxc://example.org/irc", irc["icon"]!.GetValue<string>());
        var instances = irc["instances"]!.AsArray();
        Assert.Equal(2, instances.Count);
        Assert.Equal("irc-bridge|libera", instances[0]!["instance_id"]!.GetValue<string>());
        Assert.Equal("libera", instances[0]!["network_id"]!.GetValue<string>());
        Assert.Null(instances[1]!["instance_id"]);
        Assert.True(Asked($"{App}/thirdparty/protocol/irc") > 0);

        Assert.True(JsonNode.DeepEquals(irc, (await u.Get($"{C}/thirdparty/protocol/irc")).Ok().Obj));
        Error(await u.Get($"{C}/thirdparty/protocol/gitter"), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Error(await u.Get($"{C}/thirdparty/protocol/xmpp"), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Error(await new MatrixClient(server).Call("GET", $"{C}/thirdparty/protocols", auth: false), HttpStatusCode.Unauthorized, "M_MISSING_TOKEN");
    }

    [Fact]
    public async Task Third_party_locations_and_users_are_asked_of_the_appservices_listing_the_protocol()
    {
        fake.On($"{App}/thirdparty/location/irc", HsBearer, r => Json(200, r.QueryString["channel"] == "#matrix" ? """
            [{"alias": "#irc_libera_matrix:test.local", "protocol": "irc", "fields": {"network": "libera.chat", "channel": "#matrix"}},
             {"alias": "#no_fields:test.local", "protocol": "irc"}]
            """ : "[]"));
        fake.On($"{App}/thirdparty/user/irc", HsBearer, r => Result("userid", $"@irc_{r.QueryString["nickname"]}:test.local", "nickname", r.QueryString["nickname"]!));
        fake.On($"{App}/thirdparty/location", HsBearer, r => Result("alias", r.QueryString["alias"]!, "channel", "#matrix"));
        fake.On($"{App}/thirdparty/user", HsBearer, r => Result("userid", r.QueryString["userid"]!, "nickname", "bob"));
        var u = await Register(server);

        var locations = (await u.Get($"{C}/thirdparty/location/irc?network=libera.chat&channel={E("#matrix")}")).Ok().Body!.AsArray();
        // The entry without fields is not a valid location: left out.
        Assert.Equal("#irc_libera_matrix:test.local", Assert.Single(locations)!["alias"]!.GetValue<string>());
        Assert.Empty((await u.Get($"{C}/thirdparty/location/irc?channel=nothing")).Ok().Body!.AsArray());
        var users = (await u.Get($"{C}/thirdparty/user/irc?nickname=bob")).Ok().Body!.AsArray();
        Assert.Equal("@irc_bob:test.local", Assert.Single(users)!["userid"]!.GetValue<string>());

        // Reverse lookups, by alias and by user ID.
        var byAlias = (await u.Get($"{C}/thirdparty/location?alias={E("#irc_libera_matrix:test.local")}")).Ok().Body!.AsArray();
        Assert.Equal("#matrix", Assert.Single(byAlias)!["fields"]!["channel"]!.GetValue<string>());
        var byUser = (await u.Get($"{C}/thirdparty/user?userid={E("@irc_bob:test.local")}")).Ok().Body!.AsArray();
        Assert.Equal("bob", Assert.Single(byUser)!["fields"]!["nickname"]!.GetValue<string>());
        Error(await u.Get($"{C}/thirdparty/location"), HttpStatusCode.BadRequest, "M_MISSING_PARAM");
        Error(await u.Get($"{C}/thirdparty/user"), HttpStatusCode.BadRequest, "M_MISSING_PARAM");

        // A protocol only an unreachable appservice lists finds nothing; one nobody lists is unknown.
        Assert.Empty((await u.Get($"{C}/thirdparty/location/gitter?room=x")).Ok().Body!.AsArray());
        Error(await u.Get($"{C}/thirdparty/user/xmpp?nickname=bob"), HttpStatusCode.NotFound, "M_NOT_FOUND");

        // An appservice that fails counts as finding nothing.
        fake.On($"{App}/thirdparty/user/irc", HsBearer, _ => Json(500, """{"errcode": "M_UNKNOWN"}"""));
        Assert.Empty((await u.Get($"{C}/thirdparty/user/irc?nickname=bob")).Ok().Body!.AsArray());
    }

    static bool Lists(Response page, string roomId) => page.Ok().Obj["chunk"]!.AsArray().Any(r => r!["room_id"]!.GetValue<string>() == roomId);

    [Fact]
    public async Task The_appservice_publishes_rooms_in_its_network_list_which_publicRooms_shows_by_instance()
    {
        var u = await Register(server);
        var bridged = await u.CreateRoom(new JsonObject { ["preset"] = "public_chat" });
        var main = await u.CreateRoom(new JsonObject { ["preset"] = "public_chat", ["visibility"] = "public" });
        var list = $"{C}/directory/list/appservice/libera/{E(bridged)}";

        (await Appservice.Put(list, new JsonObject { ["visibility"] = "public" })).Ok();
        Error(await u.Put(list, new JsonObject { ["visibility"] = "public" }), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        Error(await Appservice.Put(list, new JsonObject { ["visibility"] = "hidden" }), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Error(await Appservice.Put($"{C}/directory/list/appservice/libera/{E($"!unknown:{server.ServerName}")}", new JsonObject { ["visibility"] = "public" }),
            HttpStatusCode.NotFound, "M_NOT_FOUND");

        async Task<Response> PublicRooms(JsonObject body) => await u.Post($"{C}/publicRooms", body);
        var instance = new JsonObject { ["third_party_instance_id"] = "irc-bridge|libera" };
        Assert.False(Lists(await PublicRooms(new JsonObject()), bridged));
        Assert.True(Lists(await PublicRooms(new JsonObject()), main));
        Assert.True(Lists(await PublicRooms(instance.DeepClone().AsObject()), bridged));
        Assert.False(Lists(await PublicRooms(instance.DeepClone().AsObject()), main));
        Assert.False(Lists(await PublicRooms(new JsonObject { ["third_party_instance_id"] = "irc-bridge|oftc" }), bridged));
        var everything = await PublicRooms(new JsonObject { ["include_all_networks"] = true });
        Assert.True(Lists(everything, bridged) && Lists(everything, main));
        Assert.True(Lists(await new MatrixClient(server).Call("GET", $"{C}/publicRooms?third_party_instance_id={E("irc-bridge|libera")}", auth: false), bridged));
        Error(await PublicRooms(new JsonObject { ["third_party_instance_id"] = "libera" }), HttpStatusCode.BadRequest, "M_INVALID_PARAM");

        // DELETE (or visibility private) takes it out again; the main list is the room's own business.
        Assert.Equal(HttpStatusCode.OK, (await Appservice.Call("DELETE", list)).Status);
        Assert.False(Lists(await PublicRooms(instance.DeepClone().AsObject()), bridged));
        Assert.False(Lists(await PublicRooms(new JsonObject { ["include_all_networks"] = true }), bridged));
    }

    [Fact]
    public async Task An_unknown_alias_of_the_appservices_namespace_is_asked_of_it_which_creates_the_room()
    {
        // The appservice creates rooms for aliases "#irc_made...", fails on "#irc_fail...", knows no others.
        fake.On($"{App}/rooms/", HsBearer, async r =>
        {
            var alias = Uri.UnescapeDataString(r.Url!.AbsolutePath[$"{App}/rooms/".Length..]);
            if (alias.StartsWith("#irc_fail", StringComparison.Ordinal)) return (500, """{"errcode": "M_UNKNOWN"}""");
            if (!alias.StartsWith("#irc_made", StringComparison.Ordinal)) return (404, """{"errcode": "M_NOT_FOUND"}""");
            (await Appservice.Post($"{C}/createRoom", new JsonObject { ["preset"] = "public_chat", ["room_alias_name"] = alias[1..alias.IndexOf(':')] })).Ok();
            return (200, "{}");
        });
        var u = await Register(server);
        var alias = $"#{UniqueName("irc_made")}:{server.ServerName}";

        var found = (await u.Get($"{C}/directory/room/{E(alias)}")).Ok().Obj;
        var roomId = found["room_id"]!.GetValue<string>();
        Assert.Equal(1, Asked($"{App}/rooms/{alias}"));
        // Known from now on: not asked again.
        Assert.Equal(roomId, (await u.Get($"{C}/directory/room/{E(alias)}")).Ok().Obj["room_id"]!.GetValue<string>());
        Assert.Equal(1, Asked($"{App}/rooms/{alias}"));

        // Joining by an alias nobody made yet.
        var joinAlias = $"#{UniqueName("irc_made")}:{server.ServerName}";
        var joined = (await u.Post($"{C}/join/{E(joinAlias)}", new JsonObject())).Ok().Obj["room_id"]!.GetValue<string>();
        Assert.Contains(joined, (await u.Get($"{C}/joined_rooms")).Ok().Obj["joined_rooms"]!.AsArray().Select(r => r!.GetValue<string>()));

        // Unknown to the appservice, failing, or outside its namespace: not found, never a server error.
        Error(await u.Get($"{C}/directory/room/{E($"#{UniqueName("irc_none")}:{server.ServerName}")}"), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Error(await u.Get($"{C}/directory/room/{E($"#{UniqueName("irc_fail")}:{server.ServerName}")}"), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Error(await u.Post($"{C}/join/{E($"#{UniqueName("irc_fail")}:{server.ServerName}")}", new JsonObject()), HttpStatusCode.NotFound, "M_NOT_FOUND");
        var plain = $"#{UniqueName("plain")}:{server.ServerName}";
        Error(await u.Get($"{C}/directory/room/{E(plain)}"), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Assert.Equal(0, Asked($"{App}/rooms/{plain}"));
    }

    [Fact]
    public async Task An_unknown_user_of_the_appservices_namespace_is_asked_of_it_for_profiles_and_invites()
    {
        // The appservice registers users "@irc_made...", fails on "@irc_fail...", knows no others.
        fake.On($"{App}/users/", HsBearer, async r =>
        {
            var userId = Uri.UnescapeDataString(r.Url!.AbsolutePath[$"{App}/users/".Length..]);
            if (userId.StartsWith("@irc_fail", StringComparison.Ordinal)) return (502, "oops");
            if (!userId.StartsWith("@irc_made", StringComparison.Ordinal)) return (404, """{"errcode": "M_NOT_FOUND"}""");
            (await AppserviceRegister(userId[1..userId.IndexOf(':')], inhibit: true)).Ok();
            return (200, "{}");
        });
        var u = await Register(server);
        var room = await u.CreateRoom();
        string Made() => $"@{UniqueName("irc_made")}:{server.ServerName}";

        var profiled = Made();
        (await u.Get($"{C}/profile/{E(profiled)}")).Ok();
        Assert.Equal(1, Asked($"{App}/users/{profiled}"));

        var invited = Made();
        (await u.Post($"{C}/rooms/{E(room)}/invite", new JsonObject { ["user_id"] = invited })).Ok();
        var member = (await u.Get($"{C}/rooms/{E(room)}/state/m.room.member/{E(invited)}")).Ok().Obj;
        Assert.Equal("invite", member["membership"]!.GetValue<string>());

        var unknown = $"@{UniqueName("irc_none")}:{server.ServerName}";
        Error(await u.Get($"{C}/profile/{E(unknown)}"), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Error(await u.Get($"{C}/profile/{E(unknown)}/displayname"), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Error(await u.Post($"{C}/rooms/{E(room)}/invite", new JsonObject { ["user_id"] = unknown }), HttpStatusCode.NotFound, "M_NOT_FOUND");
        var failing = $"@{UniqueName("irc_fail")}:{server.ServerName}";
        Error(await u.Get($"{C}/profile/{E(failing)}"), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Error(await u.Post($"{C}/rooms/{E(room)}/invite", new JsonObject { ["user_id"] = failing }), HttpStatusCode.NotFound, "M_NOT_FOUND");
        var plain = $"@{UniqueName("plain")}:{server.ServerName}";
        Error(await u.Get($"{C}/profile/{E(plain)}"), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Assert.Equal(0, Asked($"{App}/users/{plain}"));
    }
}

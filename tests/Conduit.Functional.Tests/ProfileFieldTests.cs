using System.Net;
using System.Text.Json.Nodes;
using static Conduit.Functional.Tests.MatrixClient;

namespace Conduit.Functional.Tests;

/// <summary>Profile fields beyond displayname and avatar_url (spec v1.16: GET/PUT/DELETE /profile/{userId}/{keyName}).</summary>
public abstract class ProfileFieldTests(ServerFixture server)
{
    static void Error(Response r, HttpStatusCode status, string errcode)
    {
        Assert.True(r.Status == status, $"expected {(int)status}, got {(int)r.Status}: {r.Body?.ToJsonString()}");
        Assert.Equal(errcode, r.ErrCode);
    }

    static string Field(MatrixClient u, string key) => $"{C}/profile/{E(u.UserId)}/{key}";

    [Fact]
    public async Task A_custom_field_is_set_read_and_deleted()
    {
        var u = await Register(server);
        var other = await Register(server);
        var value = new JsonObject { ["pronouns"] = new JsonArray("they", "them"), ["n"] = 3 };
        (await u.Put(Field(u, "org.example.info"), new JsonObject { ["org.example.info"] = value.DeepClone() })).Ok();
        (await u.Put(Field(u, "m.tz"), new JsonObject { ["m.tz"] = "Europe/London" })).Ok();
        (await u.Put(Field(u, "displayname"), new JsonObject { ["displayname"] = "Fields" })).Ok();

        var got = (await other.Get(Field(u, "org.example.info"))).Ok().Obj;
        Assert.True(JsonNode.DeepEquals(value, got["org.example.info"]), got.ToJsonString());
        Assert.Equal("Europe/London", (await other.Get(Field(u, "m.tz"))).Ok().Obj["m.tz"]!.GetValue<string>());
        var whole = (await other.Get($"{C}/profile/{E(u.UserId)}")).Ok().Obj;
        Assert.Equal("Fields", whole["displayname"]!.GetValue<string>());
        Assert.Equal("Europe/London", whole["m.tz"]!.GetValue<string>());
        Assert.True(JsonNode.DeepEquals(value, whole["org.example.info"]));

        // Replaced, then deleted (and deleting again is fine).
        (await u.Put(Field(u, "org.example.info"), new JsonObject { ["org.example.info"] = "plain" })).Ok();
        Assert.Equal("plain", (await other.Get(Field(u, "org.example.info"))).Ok().Obj["org.example.info"]!.GetValue<string>());
        (await u.Call("DELETE", Field(u, "org.example.info"))).Ok();
        (await u.Call("DELETE", Field(u, "org.example.info"))).Ok();
        Error(await other.Get(Field(u, "org.example.info")), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Assert.False((await other.Get($"{C}/profile/{E(u.UserId)}")).Ok().Obj.ContainsKey("org.example.info"));
        Error(await other.Get(Field(u, "org.example.never")), HttpStatusCode.NotFound, "M_NOT_FOUND");

        // Deleting the display name.
        (await u.Call("DELETE", Field(u, "displayname"))).Ok();
        Error(await other.Get(Field(u, "displayname")), HttpStatusCode.NotFound, "M_NOT_FOUND");
    }

    [Fact]
    public async Task Only_the_owner_changes_a_profile()
    {
        var u = await Register(server);
        var other = await Register(server);
        Error(await other.Put(Field(u, "m.tz"), new JsonObject { ["m.tz"] = "UTC" }), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        Error(await other.Call("DELETE", Field(u, "m.tz")), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        Error(await other.Put(Field(u, "displayname"), new JsonObject { ["displayname"] = "x" }), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        var anon = new MatrixClient(server);
        Error(await anon.Call("PUT", Field(u, "m.tz"), new JsonObject { ["m.tz"] = "UTC" }, auth: false), HttpStatusCode.Unauthorized, "M_MISSING_TOKEN");
    }

    [Fact]
    public async Task Bad_keys_and_bodies_are_refused()
    {
        var u = await Register(server);
        // The body's key must be the path's.
        Error(await u.Put(Field(u, "org.example.a"), new JsonObject { ["org.example.b"] = 1 }), HttpStatusCode.BadRequest, "M_MISSING_PARAM");
        Error(await u.Put(Field(u, "org.example.a"), new JsonObject { ["org.example.a"] = 1, ["org.example.b"] = 2 }), HttpStatusCode.BadRequest, "M_BAD_JSON");
        // Key grammar and length.
        Error(await u.Put(Field(u, "Nodots"), new JsonObject { ["Nodots"] = 1 }), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        var longKey = "org.example." + new string('k', 250);
        Error(await u.Put(Field(u, longKey), new JsonObject { [longKey] = 1 }), HttpStatusCode.BadRequest, "M_KEY_TOO_LARGE");
        // Typed fields.
        Error(await u.Put(Field(u, "m.tz"), new JsonObject { ["m.tz"] = 5 }), HttpStatusCode.BadRequest, "M_BAD_JSON");
        Error(await u.Put(Field(u, "displayname"), new JsonObject { ["displayname"] = new JsonObject() }), HttpStatusCode.BadRequest, "M_BAD_JSON");
    }

    [Fact]
    public async Task The_whole_profile_stays_under_64_KiB()
    {
        var u = await Register(server);
        var big = new string('x', 40 * 1024);
        (await u.Put(Field(u, "org.example.one"), new JsonObject { ["org.example.one"] = big })).Ok();
        Error(await u.Put(Field(u, "org.example.two"), new JsonObject { ["org.example.two"] = big }), HttpStatusCode.BadRequest, "M_PROFILE_TOO_LARGE");
        Error(await u.Get(Field(u, "org.example.two")), HttpStatusCode.NotFound, "M_NOT_FOUND");
        // Replacing the big one with another big one fits.
        (await u.Put(Field(u, "org.example.one"), new JsonObject { ["org.example.one"] = big + "y" })).Ok();
    }

    [Fact]
    public async Task The_capability_is_advertised()
    {
        var u = await Register(server);
        var caps = (await u.Get($"{C}/capabilities")).Ok().Obj["capabilities"]!;
        Assert.True(caps["m.profile_fields"]!["enabled"]!.GetValue<bool>());
    }
}

public sealed class AllInOneProfileFieldTests(AllInOneFixture f) : ProfileFieldTests(f), IClassFixture<AllInOneFixture>;

public sealed class SplitProfileFieldTests(SplitFixture f) : ProfileFieldTests(f), IClassFixture<SplitFixture>;

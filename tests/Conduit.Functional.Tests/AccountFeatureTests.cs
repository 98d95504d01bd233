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

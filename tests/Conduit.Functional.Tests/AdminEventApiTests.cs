using System.Net;
using System.Text.Json.Nodes;
using static Conduit.Functional.Tests.MatrixClient;

namespace Conduit.Functional.Tests;

/// <summary>
/// The admin endpoints about events, signing and federation on one server (the admin fixtures): fetch_event,
/// auth_chain, sign_json and verify_json, a room's federation switch, and the federation destinations' input checks.
/// Two-server behaviour (destinations listed, backoff, a room off federation) is in FederationAdminTests.cs.
/// </summary>
public abstract partial class AdminApiTests
{
    const string ConduitAdmin = "/_conduit/admin/v1";

    [Fact]
    public async Task Admins_fetch_any_event_and_its_auth_chain()
    {
        var other = await NewUser();
        var room = await other.CreateRoom(new JsonObject { ["preset"] = "private_chat" });
        var message = await other.SendText(room, "fetched by an admin");
        var create = (await other.Get($"{C}/rooms/{E(room)}/state")).Ok().Body!.AsArray()
            .Single(e => e!["type"]!.GetValue<string>() == "m.room.create")!["event_id"]!.GetValue<string>();

        // The admin is not in the room, and gets the event anyway: PDU format, signed, with unsigned.
        var ev = (await first.Get($"{A}/v1/fetch_event/{E(message)}")).Ok().Obj["event"]!.AsObject();
        Assert.Equal(message, ev["event_id"]!.GetValue<string>());
        Assert.Equal(room, ev["room_id"]!.GetValue<string>());
        Assert.Equal("fetched by an admin", ev["content"]!["body"]!.GetValue<string>());
        Assert.NotNull(ev["signatures"]![server.ServerName]);
        Assert.NotNull(ev["hashes"]);
        Assert.Contains(create, ev["auth_events"]!.AsArray().Select(a => a!.GetValue<string>()));
        Assert.True(ev["unsigned"]!["age"]!.GetValue<long>() >= 0);

        var chain = (await first.Get($"{ConduitAdmin}/events/{E(message)}/auth_chain")).Ok().Obj;
        var ids = chain["auth_chain"]!.AsArray().Select(a => a!.GetValue<string>()).ToList();
        Assert.Equal(ids.Count, chain["count"]!.GetValue<int>());
        Assert.Equal(ids.Count, ids.Distinct().Count());
        Assert.Contains(create, ids);
        // The auth events and theirs: the creator's join, power levels (and the join rules of their chains).
        Assert.True(ids.Count >= 3, chain.ToJsonString());
        Assert.True(chain["elapsed_ms"]!.GetValue<long>() >= 0);
        Assert.Empty((await first.Get($"{ConduitAdmin}/events/{E(create)}/auth_chain")).Ok().Obj["auth_chain"]!.AsArray());

        Error(await other.Get($"{A}/v1/fetch_event/{E(message)}"), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        Error(await other.Get($"{ConduitAdmin}/events/{E(message)}/auth_chain"), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        Error(await first.Get($"{A}/v1/fetch_event/not-an-event"), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Error(await first.Get($"{ConduitAdmin}/events/not-an-event/auth_chain"), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Error(await first.Get($"{A}/v1/fetch_event/{E("$unknown-event")}"), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Error(await first.Get($"{ConduitAdmin}/events/{E("$unknown-event")}/auth_chain"), HttpStatusCode.NotFound, "M_NOT_FOUND");
    }

    [Fact]
    public async Task Sign_json_signs_with_the_server_key_and_verify_json_checks_signatures()
    {
        var keyId = (await new MatrixClient(server).Call("GET", "/_matrix/key/v2/server", auth: false)).Ok().Obj["verify_keys"]!.AsObject().Single().Key;
        var obj = new JsonObject { ["hello"] = "world", ["n"] = 1, ["unsigned"] = new JsonObject { ["not"] = "signed" } };
        var signed = (await first.Post($"{ConduitAdmin}/sign_json", obj)).Ok().Obj;
        Assert.Equal("world", signed["hello"]!.GetValue<string>());
        Assert.Equal("signed", signed["unsigned"]!["not"]!.GetValue<string>());
        Assert.NotNull(signed["signatures"]![server.ServerName]![keyId]);

        var verified = (await first.Post($"{ConduitAdmin}/verify_json", signed.DeepClone())).Ok().Obj;
        Assert.True(verified["valid"]!.GetValue<bool>(), verified.ToJsonString());
        Assert.Equal("valid", verified["signatures"]![server.ServerName]![keyId]!.GetValue<string>());
        // unsigned is not covered by the signature.
        var unsignedChanged = signed.DeepClone().AsObject();
        unsignedChanged["unsigned"] = new JsonObject { ["other"] = true };
        Assert.True((await first.Post($"{ConduitAdmin}/verify_json", unsignedChanged)).Ok().Obj["valid"]!.GetValue<bool>());

        var tampered = signed.DeepClone().AsObject();
        tampered["n"] = 2;
        var bad = (await first.Post($"{ConduitAdmin}/verify_json", tampered)).Ok().Obj;
        Assert.False(bad["valid"]!.GetValue<bool>());
        Assert.Equal("invalid", bad["signatures"]![server.ServerName]![keyId]!.GetValue<string>());

        var unknownKey = signed.DeepClone().AsObject();
        unknownKey["signatures"]![server.ServerName]!["ed25519:nokey"] = "AAAA";
        var partly = (await first.Post($"{ConduitAdmin}/verify_json", unknownKey)).Ok().Obj;
        Assert.False(partly["valid"]!.GetValue<bool>());
        Assert.Equal("unknown key", partly["signatures"]![server.ServerName]!["ed25519:nokey"]!.GetValue<string>());
        Assert.Equal("valid", partly["signatures"]![server.ServerName]![keyId]!.GetValue<string>());

        var other = await NewUser();
        Error(await other.Post($"{ConduitAdmin}/sign_json", obj), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        Error(await other.Post($"{ConduitAdmin}/verify_json", signed), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        Error(await first.Post($"{ConduitAdmin}/verify_json", new JsonObject { ["hello"] = "world" }), HttpStatusCode.BadRequest, "M_BAD_JSON");
        Error(await first.Post($"{ConduitAdmin}/verify_json", new JsonObject { ["signatures"] = "nope" }), HttpStatusCode.BadRequest, "M_BAD_JSON");
        Error(await first.Post($"{ConduitAdmin}/sign_json", new JsonObject { ["signatures"] = new JsonObject { ["x"] = 1 } }), HttpStatusCode.BadRequest, "M_BAD_JSON");
        Error(await first.Call("POST", $"{ConduitAdmin}/sign_json", rawBody: "{\"f\": 1.5}"), HttpStatusCode.BadRequest, "M_BAD_JSON");
        Error(await first.Call("POST", $"{ConduitAdmin}/sign_json", rawBody: "not json"), HttpStatusCode.BadRequest, "M_NOT_JSON");
    }

    [Fact]
    public async Task An_admin_switches_a_rooms_federation_off_and_on_and_local_users_keep_using_it()
    {
        var other = await NewUser();
        var room = await other.CreateRoom();
        var path = $"{ConduitAdmin}/rooms/{E(room)}/federation";
        Assert.False((await first.Get(path)).Ok().Obj["disabled"]!.GetValue<bool>());
        Assert.True((await first.Put(path, new JsonObject { ["disabled"] = true })).Ok().Obj["disabled"]!.GetValue<bool>());
        var state = (await first.Get(path)).Ok().Obj;
        Assert.True(state["disabled"]!.GetValue<bool>());
        Assert.Equal(first.UserId, state["user_id"]!.GetValue<string>());
        await other.SendText(room, "still here");
        Assert.False((await first.Put(path, new JsonObject { ["disabled"] = false })).Ok().Obj["disabled"]!.GetValue<bool>());
        Assert.False((await first.Get(path)).Ok().Obj["disabled"]!.GetValue<bool>());

        Error(await other.Get(path), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        Error(await other.Put(path, new JsonObject { ["disabled"] = true }), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        Error(await first.Put(path, new JsonObject { ["disabled"] = "yes" }), HttpStatusCode.BadRequest, "M_BAD_JSON");
        Error(await first.Put(path, new JsonObject()), HttpStatusCode.BadRequest, "M_BAD_JSON");
        Error(await first.Get($"{ConduitAdmin}/rooms/not-a-room/federation"), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
    }

    [Fact]
    public async Task Federation_destinations_check_their_input_and_are_for_admins_only()
    {
        const string D = A + "/v1/federation/destinations";
        var list = (await first.Get(D)).Ok().Obj;
        Assert.Equal(list["destinations"]!.AsArray().Count, list["total"]!.GetValue<int>());
        (await first.Get($"{D}?order_by=failure_ts&dir=b&from=0&limit=10&destination=example")).Ok();

        Error(await first.Get($"{D}?order_by=nope"), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Error(await first.Get($"{D}?limit=-1"), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Error(await first.Get($"{D}?from=x"), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Error(await first.Get($"{D}?dir=sideways"), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Error(await first.Get($"{D}/{E("not a server!")}"), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Error(await first.Get($"{D}/never.example.org"), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Error(await first.Post($"{D}/never.example.org/reset_connection", new JsonObject()), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Error(await first.Post($"{D}/{E(server.ServerName)}/reset_connection", new JsonObject()), HttpStatusCode.BadRequest, "M_INVALID_PARAM");

        var other = await NewUser();
        Error(await other.Get(D), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        Error(await other.Get($"{D}/never.example.org"), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        Error(await other.Post($"{D}/never.example.org/reset_connection", new JsonObject()), HttpStatusCode.Forbidden, "M_FORBIDDEN");
    }
}

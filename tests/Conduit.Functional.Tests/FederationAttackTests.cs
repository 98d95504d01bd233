using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Crypto;
using Conduit.Common.Events;
using Conduit.Federation;
using Conduit.Rooms.Rules;
using Microsoft.Extensions.DependencyInjection;
using static Conduit.Functional.Tests.MatrixClient;

namespace Conduit.Functional.Tests;

/// <summary>
/// What server A does with hostile input from server B, with B's real signing key (both servers run in the test
/// process, so the test can sign as B): each test checks that the room did not change. The checks are the
/// federation service's and the rooms service's, the same code in every deployment mode.
/// </summary>
public sealed class FederationAttackTests(FederationPairFixture pair) : IClassFixture<FederationPairFixture>
{
    SigningKey KeyOfB => ((AllInOneFixture)pair.B).Services.GetRequiredService<ServerKeys>().Key;

    async Task<Response> SignedAsB(string method, string path, JsonNode? body, SigningKey? key = null)
    {
        using var req = new HttpRequestMessage(new HttpMethod(method), pair.A.BaseUrl + path);
        req.Headers.TryAddWithoutValidation("Authorization", XMatrix.Authorization(key ?? KeyOfB, pair.B.ServerName, pair.A.ServerName, method, path, body));
        if (body is not null) req.Content = new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json");
        using var resp = await pair.A.Http.SendAsync(req);
        var text = await resp.Content.ReadAsStringAsync();
        return new Response(resp.StatusCode, text.Length > 0 ? JsonNode.Parse(text) : null);
    }

    /// <summary>Alice's public room on A, which Bob of B has joined.</summary>
    async Task<(MatrixClient Alice, MatrixClient Bob, string Room)> SharedRoom()
    {
        var alice = await Register(pair.A);
        var bob = await Register(pair.B);
        var room = await alice.CreateRoom(new JsonObject { ["preset"] = "public_chat", ["name"] = "original" });
        (await bob.Post($"{C}/join/{E(room)}?via={E(pair.A.ServerName)}", new JsonObject())).Ok();
        return (alice, bob, room);
    }

    /// <summary>A PDU from Bob in the room, built on A's latest event and the right auth events, hashed and signed by B (or <paramref name="key"/>).</summary>
    async Task<(JsonObject Pdu, string EventId)> PduFromBob(MatrixClient alice, MatrixClient bob, string roomId, string type, string? stateKey, JsonObject content,
        SigningKey? key = null, Action<JsonObject>? tamper = null)
    {
        var state = (await alice.Get($"{C}/rooms/{E(roomId)}/state")).Ok().Body!.AsArray().Select(e => e!.AsObject()).ToList();
        string Id(string t, string k) => state.Single(e => e["type"]!.GetValue<string>() == t && e["state_key"]!.GetValue<string>() == k)["event_id"]!.GetValue<string>();
        var version = RoomVersion.Find(state.Single(e => e["type"]!.GetValue<string>() == "m.room.create")["content"]!["room_version"]!.GetValue<string>())!;
        var latest = (await alice.Get($"{C}/rooms/{E(roomId)}/messages?dir=b&limit=1")).Ok().Obj["chunk"]![0]!["event_id"]!.GetValue<string>();
        var pdu = new JsonObject
        {
            ["auth_events"] = new JsonArray(Id("m.room.create", ""), Id("m.room.power_levels", ""), Id("m.room.member", bob.UserId)),
            ["content"] = content,
            ["depth"] = 1000,
            ["origin_server_ts"] = Ids.NowMs(),
            ["prev_events"] = new JsonArray(latest),
            ["room_id"] = roomId,
            ["sender"] = bob.UserId,
            ["type"] = type,
        };
        if (stateKey is not null) pdu["state_key"] = stateKey;
        EventHashing.HashAndSign(pdu, version, pair.B.ServerName, key ?? KeyOfB);
        tamper?.Invoke(pdu);
        return (pdu, EventHashing.ComputeEventId(pdu, version));
    }

    /// <summary>A transaction as B; the real B may have one of its own in flight (one at a time per origin: 429), so a 429 is retried.</summary>
    async Task<Response> Transaction(params JsonObject[] pdus)
    {
        var txnId = UniqueName("txn");
        for (var attempt = 0; ; attempt++)
        {
            var r = await SignedAsB("PUT", $"/_matrix/federation/v1/send/{txnId}", new JsonObject
            {
                ["origin"] = pair.B.ServerName,
                ["origin_server_ts"] = Ids.NowMs(),
                ["pdus"] = new JsonArray(pdus.Select(p => (JsonNode)p.DeepClone()).ToArray()),
            });
            if (r.Status != HttpStatusCode.TooManyRequests || attempt >= 100) return r;
            await Task.Delay(100);
        }
    }

    static async Task<string> RoomName(MatrixClient c, string roomId)
        => (await c.Get($"{C}/rooms/{E(roomId)}/state/m.room.name/")).Ok().Obj["name"]!.GetValue<string>();

    [Fact]
    public async Task A_valid_pdu_from_the_other_server_is_accepted_as_the_control_case()
    {
        var (alice, bob, room) = await SharedRoom();
        var (pdu, id) = await PduFromBob(alice, bob, room, "m.room.message", null, new JsonObject { ["msgtype"] = "m.text", ["body"] = "signed by B" });
        var r = (await Transaction(pdu)).Ok().Obj;
        Assert.Equal(new JsonObject().ToJsonString(), r["pdus"]![id]!.ToJsonString());
        (await alice.Get($"{C}/rooms/{E(room)}/event/{E(id)}")).Ok();
    }

    [Fact]
    public async Task A_pdu_with_a_bad_signature_is_dropped()
    {
        var (alice, bob, room) = await SharedRoom();
        using var impostor = SigningKey.Generate(KeyOfB.Version);
        var (pdu, id) = await PduFromBob(alice, bob, room, "m.room.name", "", new JsonObject { ["name"] = "forged" }, impostor);
        var r = (await Transaction(pdu)).Ok().Obj;
        Assert.Contains("signature", r["pdus"]![id]!["error"]!.GetValue<string>());
        Assert.Equal("original", await RoomName(alice, room));
        Assert.Equal(HttpStatusCode.NotFound, (await alice.Get($"{C}/rooms/{E(room)}/event/{E(id)}")).Status);
    }

    [Fact]
    public async Task A_pdu_with_a_bad_content_hash_is_kept_redacted()
    {
        var (alice, bob, room) = await SharedRoom();
        // The content is changed after hashing and signing: the signature (over the redacted form) still holds.
        var (pdu, id) = await PduFromBob(alice, bob, room, "m.room.message", null, new JsonObject { ["msgtype"] = "m.text", ["body"] = "original text" },
            tamper: p => p["content"]!["body"] = "tampered text");
        (await Transaction(pdu)).Ok();
        var seen = (await alice.Get($"{C}/rooms/{E(room)}/event/{E(id)}")).Ok().Obj;
        Assert.False(seen["content"]!.AsObject().ContainsKey("body"));
    }

    [Fact]
    public async Task An_event_that_fails_the_auth_rules_is_rejected()
    {
        var (alice, bob, room) = await SharedRoom();
        var (pdu, id) = await PduFromBob(alice, bob, room, "m.room.name", "", new JsonObject { ["name"] = "taken over" });
        // Bob has power level 0; the room name needs 50.
        var r = (await Transaction(pdu)).Ok().Obj;
        Assert.Contains("not allowed", r["pdus"]![id]!["error"]!.GetValue<string>());
        Assert.Equal("original", await RoomName(alice, room));
    }

    [Fact]
    public async Task Membership_handshakes_with_malformed_events_or_for_others_are_refused_never_with_a_500()
    {
        var (alice, bob, room) = await SharedRoom();
        var (pdu, id) = await PduFromBob(alice, bob, room, "m.room.member", bob.UserId, new JsonObject { ["membership"] = "join" });
        // A body that is not canonical JSON (a float) cannot have been signed: 401, whatever the signature says.
        pdu["content"]!["weight"] = 1.5;
        foreach (var (path, body) in new (string, JsonNode)[]
        {
            ($"/_matrix/federation/v2/send_join/{E(room)}/{E(id)}", pdu),
            ($"/_matrix/federation/v2/invite/{E(room)}/{E(id)}", new JsonObject { ["event"] = pdu.DeepClone(), ["room_version"] = "10" }),
        })
        {
            using var req = new HttpRequestMessage(HttpMethod.Put, pair.A.BaseUrl + path) { Content = new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json") };
            req.Headers.TryAddWithoutValidation("Authorization", $"X-Matrix origin=\"{pair.B.ServerName}\",destination=\"{pair.A.ServerName}\",key=\"{KeyOfB.KeyId}\",sig=\"{Convert.ToBase64String(new byte[64]).TrimEnd('=')}\"");
            using var resp = await pair.A.Http.SendAsync(req);
            Assert.Equal(HttpStatusCode.Unauthorized, resp.StatusCode);
        }
        var notMine = await SignedAsB("GET", $"/_matrix/federation/v1/make_join/{E(room)}/{E(alice.UserId)}?ver=10", null);
        Assert.Equal((HttpStatusCode.Forbidden, "M_FORBIDDEN"), (notMine.Status, notMine.ErrCode));
        Assert.Equal(2, (await alice.Get($"{C}/rooms/{E(room)}/joined_members")).Ok().Obj["joined"]!.AsObject().Count);
    }

    [Fact]
    public async Task A_transaction_of_51_pdus_or_with_a_forged_origin_is_refused()
    {
        var (alice, bob, room) = await SharedRoom();
        var (pdu, _) = await PduFromBob(alice, bob, room, "m.room.message", null, new JsonObject { ["msgtype"] = "m.text", ["body"] = "x" });
        var tooMany = await Transaction(Enumerable.Repeat(pdu, 51).Select(p => p.DeepClone().AsObject()).ToArray());
        Assert.Equal((HttpStatusCode.BadRequest, "M_BAD_JSON"), (tooMany.Status, tooMany.ErrCode));
        var forged = await SignedAsB("PUT", "/_matrix/federation/v1/send/forged1", new JsonObject { ["origin"] = "matrix.org", ["pdus"] = new JsonArray() });
        Assert.Equal((HttpStatusCode.Forbidden, "M_FORBIDDEN"), (forged.Status, forged.ErrCode));
        // Signed by a key B does not publish: not B.
        using var impostor = SigningKey.Generate("impostor");
        var wrongKey = await SignedAsB("GET", $"/_matrix/federation/v1/state_ids/{E(room)}?event_id=x", null, impostor);
        Assert.Equal(HttpStatusCode.Unauthorized, wrongKey.Status);
        Assert.Equal(2, (await alice.Get($"{C}/rooms/{E(room)}/joined_members")).Ok().Obj["joined"]!.AsObject().Count);
    }

    // Spec (server-server-api, "Timestamp to event"), as a server in the room asks it; the same answer as A's client endpoint.
    [Fact]
    public async Task Timestamp_to_event_answers_a_server_in_the_room_and_refuses_bad_parameters()
    {
        var (alice, _, room) = await SharedRoom();
        var (id, ts) = (await alice.SendSpacedTexts(room, "findable", 1)).Single();
        var path = $"/_matrix/federation/v1/timestamp_to_event/{E(room)}";

        var local = (await alice.Get($"/_matrix/client/v1/rooms/{E(room)}/timestamp_to_event?ts={ts}&dir=b")).Ok().Obj;
        var served = (await SignedAsB("GET", $"{path}?ts={ts}&dir=b", null)).Ok().Obj;
        Assert.Equal(id, served["event_id"]!.GetValue<string>());
        Assert.Equal(local.ToJsonString(), served.ToJsonString());
        var later = await SignedAsB("GET", $"{path}?ts={ts + 3_600_000}&dir=f", null);
        Assert.Equal((HttpStatusCode.NotFound, "M_NOT_FOUND"), (later.Status, later.ErrCode));
        var badDir = await SignedAsB("GET", $"{path}?ts={ts}&dir=sideways", null);
        Assert.Equal((HttpStatusCode.BadRequest, "M_INVALID_PARAM"), (badDir.Status, badDir.ErrCode));
        var noTs = await SignedAsB("GET", $"{path}?dir=f", null);
        Assert.Equal((HttpStatusCode.BadRequest, "M_MISSING_PARAM"), (noTs.Status, noTs.ErrCode));
        var badTs = await SignedAsB("GET", $"{path}?ts=soon&dir=f", null);
        Assert.Equal((HttpStatusCode.BadRequest, "M_INVALID_PARAM"), (badTs.Status, badTs.ErrCode));
    }

    // History visibility for servers (as /event applies it): with "joined", a server none of whose users was ever in
    // the room sees none of its events, so timestamp_to_event names none; an unknown room is 404.
    [Fact]
    public async Task Timestamp_to_event_refuses_a_server_with_no_member_in_a_joined_visibility_room()
    {
        var alice = await Register(pair.A);
        var room = await alice.CreateRoom(new JsonObject
        {
            ["preset"] = "public_chat",
            ["initial_state"] = new JsonArray(new JsonObject { ["type"] = "m.room.history_visibility", ["state_key"] = "", ["content"] = new JsonObject { ["history_visibility"] = "joined" } }),
        });
        await alice.SendText(room, "members only");
        var refused = await SignedAsB("GET", $"/_matrix/federation/v1/timestamp_to_event/{E(room)}?ts=0&dir=f", null);
        Assert.Equal((HttpStatusCode.Forbidden, "M_FORBIDDEN"), (refused.Status, refused.ErrCode));
        var unknown = await SignedAsB("GET", $"/_matrix/federation/v1/timestamp_to_event/{E("!nowhere:" + pair.A.ServerName)}?ts=0&dir=f", null);
        Assert.Equal((HttpStatusCode.NotFound, "M_NOT_FOUND"), (unknown.Status, unknown.ErrCode));
    }
}

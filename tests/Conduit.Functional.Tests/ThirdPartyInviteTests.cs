using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common.Crypto;
using Conduit.Federation;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using static Conduit.Functional.Tests.MatrixClient;

namespace Conduit.Functional.Tests;

/// <summary>
/// The identity server the tests play (spec: identity-service-api, "Invitation storage"): its Ed25519 key, the
/// m.room.third_party_invite an inviter's server would emit with that key after /store-invite, the <c>signed</c>
/// object it hands out once the address is bound, and its /3pid/onbind notice.
/// </summary>
public static class TestIdentityServer
{
    public const string Name = "id.example";
    public static readonly SigningKey Key = SigningKey.Generate("0");

    /// <summary>
    /// The identity server's /pubkey/isvalid (the key_validity_url the resident server asks before it sends the
    /// invite), on loopback for the whole test run: valid for <see cref="Key"/> only. The pair's servers allow
    /// 127.0.0.1 in ip_range_allowlist for it.
    /// </summary>
    static readonly Lazy<Task<string>> IsValidUrl = new(async () =>
    {
        var builder = Microsoft.AspNetCore.Builder.WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0));
        var app = builder.Build();
        app.MapGet("/_matrix/identity/v2/pubkey/isvalid", (Microsoft.AspNetCore.Http.HttpContext ctx)
            => ctx.Response.WriteAsync(new JsonObject { ["valid"] = ctx.Request.Query["public_key"] == Key.PublicKeyBase64 }.ToJsonString()));
        await app.StartAsync();
        var address = app.Services.GetRequiredService<Microsoft.AspNetCore.Hosting.Server.IServer>()
            .Features.Get<Microsoft.AspNetCore.Hosting.Server.Features.IServerAddressesFeature>()!.Addresses.First().TrimEnd('/');
        return address + "/_matrix/identity/v2/pubkey/isvalid";
    });

    /// <summary>Sends the room's m.room.third_party_invite for a new token as <paramref name="inviter"/>; answers the token.</summary>
    public static async Task<string> StoreInvite(MatrixClient inviter, string roomId)
    {
        var token = UniqueName("tok");
        (await inviter.Put($"{C}/rooms/{E(roomId)}/state/m.room.third_party_invite/{E(token)}", new JsonObject
        {
            ["display_name"] = "b...@e...",
            ["key_validity_url"] = await IsValidUrl.Value,
            ["public_key"] = Key.PublicKeyBase64,
            ["public_keys"] = new JsonArray(new JsonObject { ["public_key"] = Key.PublicKeyBase64 }),
        })).Ok();
        return token;
    }

    /// <summary>The proof of the binding: {mxid, token} signed by <paramref name="key"/> (the identity server's unless told).</summary>
    public static JsonObject Signed(string mxid, string token, SigningKey? key = null)
    {
        var signed = new JsonObject { ["mxid"] = mxid, ["token"] = token };
        JsonSigning.Sign(signed, Name, key ?? Key);
        return signed;
    }

    /// <summary>The /3pid/onbind body for <paramref name="mxid"/> with its pending invites.</summary>
    public static JsonObject OnBind(string mxid, params (string RoomId, string Sender, JsonObject Signed)[] invites) => new()
    {
        ["medium"] = "email",
        ["address"] = "bob@example.org",
        ["mxid"] = mxid,
        ["invites"] = new JsonArray(invites.Select(i => (JsonNode)new JsonObject
        {
            ["medium"] = "email", ["address"] = "bob@example.org", ["mxid"] = mxid,
            ["room_id"] = i.RoomId, ["sender"] = i.Sender, ["signed"] = i.Signed,
        }).ToArray()),
    };
}

/// <summary>
/// Third-party invites across the pair (spec: server-server-api, "Third-party invites"): Alice of A invites an
/// address into her room; the identity server tells B that Bob bound it (/3pid/onbind, unsigned); B asks A to
/// exchange the invite (/exchange_third_party_invite, signed as B); A checks the identity server's signature and
/// invites Bob through the ordinary invite path. A notice that proves nothing leaves the room as it was.
/// </summary>
public abstract class ThirdPartyInviteTests(FederationPair pair)
{
    Task<Response> OnBind(JsonObject body) => new MatrixClient(pair.B).Call("PUT", "/_matrix/federation/v1/3pid/onbind", body, auth: false);

    static async Task<Response> MemberOf(MatrixClient c, string roomId, string userId)
        => await c.Get($"{C}/rooms/{E(roomId)}/state/m.room.member/{E(userId)}");

    [Fact]
    public async Task A_binding_told_to_the_invitees_server_becomes_an_invite_the_invitee_accepts()
    {
        var alice = await Register(pair.A);
        var bob = await Register(pair.B);
        var room = await alice.CreateRoom(new JsonObject { ["preset"] = "private_chat", ["name"] = "by email" });
        var token = await TestIdentityServer.StoreInvite(alice, room);

        var bound = await OnBind(TestIdentityServer.OnBind(bob.UserId, (room, alice.UserId, TestIdentityServer.Signed(bob.UserId, token))));
        Assert.Equal("{}", bound.Ok().Obj.ToJsonString());

        // A sent the invite as Alice, with the room's display name and the identity server's proof.
        var member = (await MemberOf(alice, room, bob.UserId)).Ok().Obj;
        Assert.Equal("invite", member["membership"]!.GetValue<string>());
        Assert.Equal("b...@e...", member["third_party_invite"]!["display_name"]!.GetValue<string>());
        Assert.Equal(token, member["third_party_invite"]!["signed"]!["token"]!.GetValue<string>());

        // It reached Bob through the ordinary invite path, and he joins the invite-only room.
        var invited = await FederationRoomTests.SyncUntil(bob, s => s["rooms"]?["invite"]?[room] is not null, "the third-party invite");
        Assert.Contains(invited["rooms"]!["invite"]![room]!["invite_state"]!["events"]!.AsArray(),
            e => e!["type"]!.GetValue<string>() == "m.room.name" && e["content"]!["name"]!.GetValue<string>() == "by email");
        (await bob.Post($"{C}/join/{E(room)}", new JsonObject())).Ok();
        Assert.Equal("join", (await MemberOf(alice, room, bob.UserId)).Ok().Obj["membership"]!.GetValue<string>());

        // The same notice again changes nothing (the invite was used).
        (await OnBind(TestIdentityServer.OnBind(bob.UserId, (room, alice.UserId, TestIdentityServer.Signed(bob.UserId, token))))).Ok();
        Assert.Equal("join", (await MemberOf(alice, room, bob.UserId)).Ok().Obj["membership"]!.GetValue<string>());
    }

    [Fact]
    public async Task A_binding_that_proves_nothing_is_answered_but_invites_nobody()
    {
        var alice = await Register(pair.A);
        var bob = await Register(pair.B);
        var room = await alice.CreateRoom(new JsonObject { ["preset"] = "private_chat" });
        var token = await TestIdentityServer.StoreInvite(alice, room);
        using var impostor = SigningKey.Generate("0");

        var bound = await OnBind(TestIdentityServer.OnBind(bob.UserId,
            (room, alice.UserId, TestIdentityServer.Signed(bob.UserId, token, impostor)),       // not the identity server's key
            (room, alice.UserId, TestIdentityServer.Signed(bob.UserId, "no-such-token")),       // no invite with this token
            (room, bob.UserId, TestIdentityServer.Signed(bob.UserId, token)),                   // Bob did not send the invite
            (room, alice.UserId, TestIdentityServer.Signed(alice.UserId, token))));             // not Bob's binding
        Assert.Equal("{}", bound.Ok().Obj.ToJsonString());
        Assert.Equal(HttpStatusCode.NotFound, (await MemberOf(alice, room, bob.UserId)).Status);
        Assert.Single((await alice.Get($"{C}/rooms/{E(room)}/joined_members")).Ok().Obj["joined"]!.AsObject());

        // Invites of users of another server are not this server's to exchange; a body without a list is refused.
        var elsewhere = await new MatrixClient(pair.A).Call("PUT", "/_matrix/federation/v1/3pid/onbind",
            TestIdentityServer.OnBind(bob.UserId, (room, alice.UserId, TestIdentityServer.Signed(bob.UserId, token))), auth: false);
        Assert.Equal("{}", elsewhere.Ok().Obj.ToJsonString());
        Assert.Equal(HttpStatusCode.NotFound, (await MemberOf(alice, room, bob.UserId)).Status);
        var malformed = await OnBind(new JsonObject { ["mxid"] = bob.UserId, ["invites"] = "none" });
        Assert.Equal((HttpStatusCode.BadRequest, "M_BAD_JSON"), (malformed.Status, malformed.ErrCode));
    }

    [Fact]
    public async Task An_exchange_without_a_server_signature_is_refused()
    {
        var alice = await Register(pair.A);
        var room = await alice.CreateRoom(new JsonObject { ["preset"] = "private_chat" });
        var token = await TestIdentityServer.StoreInvite(alice, room);
        var mxid = "@someone:" + pair.B.ServerName;
        var r = await new MatrixClient(pair.A).Call("PUT", $"/_matrix/federation/v1/exchange_third_party_invite/{E(room)}",
            ThirdPartyInviteAttackTests.ExchangeBody(room, alice.UserId, mxid, TestIdentityServer.Signed(mxid, token)), auth: false);
        Assert.Equal((HttpStatusCode.Unauthorized, "M_UNAUTHORIZED"), (r.Status, r.ErrCode));
        Assert.Equal(HttpStatusCode.NotFound, (await MemberOf(alice, room, mxid)).Status);
    }
}

public sealed class AllInOneThirdPartyInviteTests(FederationPairFixture f) : ThirdPartyInviteTests(f), IClassFixture<FederationPairFixture>;

public sealed class SplitThirdPartyInviteTests(SplitFederationPairFixture f) : ThirdPartyInviteTests(f), IClassFixture<SplitFederationPairFixture>;

/// <summary>
/// /exchange_third_party_invite on A as B asks it, signed with B's real key (both all-in-one servers run in the test
/// process): each refusal is a Matrix error, never a 500, and leaves the room as it was.
/// </summary>
public sealed class ThirdPartyInviteAttackTests(FederationPairFixture pair) : IClassFixture<FederationPairFixture>
{
    SigningKey KeyOfB => ((AllInOneFixture)pair.B).Services.GetRequiredService<ServerKeys>().Key;

    /// <summary>The partial invite event of an exchange (spec: the request body of exchange_third_party_invite).</summary>
    public static JsonObject ExchangeBody(string roomId, string sender, string invitee, JsonObject signed) => new()
    {
        ["type"] = "m.room.member",
        ["room_id"] = roomId,
        ["sender"] = sender,
        ["state_key"] = invitee,
        ["content"] = new JsonObject
        {
            ["membership"] = "invite",
            ["third_party_invite"] = new JsonObject { ["display_name"] = "chosen by the requester", ["signed"] = signed },
        },
    };

    async Task<Response> ExchangeAsB(string roomId, JsonNode body)
    {
        var path = $"/_matrix/federation/v1/exchange_third_party_invite/{E(roomId)}";
        using var req = new HttpRequestMessage(HttpMethod.Put, pair.A.BaseUrl + path);
        req.Headers.TryAddWithoutValidation("Authorization", XMatrix.Authorization(KeyOfB, pair.B.ServerName, pair.A.ServerName, "PUT", path, body));
        req.Content = new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json");
        using var resp = await pair.A.Http.SendAsync(req);
        var text = await resp.Content.ReadAsStringAsync();
        return new Response(resp.StatusCode, text.Length > 0 ? JsonNode.Parse(text) : null);
    }

    async Task<(MatrixClient Alice, string Room, string Token)> RoomWithInvite()
    {
        var alice = await Register(pair.A);
        var room = await alice.CreateRoom(new JsonObject { ["preset"] = "private_chat" });
        return (alice, room, await TestIdentityServer.StoreInvite(alice, room));
    }

    static async Task<string> StateOf(MatrixClient c, string roomId)
    {
        var state = (await c.Get($"{C}/rooms/{E(roomId)}/state")).Ok().Body!.AsArray();
        return string.Join(",", state.Select(e => e!["event_id"]!.GetValue<string>()).Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task A_valid_exchange_invites_the_bound_user_with_the_rooms_display_name_as_the_control_case()
    {
        var (alice, room, token) = await RoomWithInvite();
        var bob = await Register(pair.B);
        var r = await ExchangeAsB(room, ExchangeBody(room, alice.UserId, bob.UserId, TestIdentityServer.Signed(bob.UserId, token)));
        Assert.Equal("{}", r.Ok().Obj.ToJsonString());
        var member = (await alice.Get($"{C}/rooms/{E(room)}/state/m.room.member/{E(bob.UserId)}")).Ok().Obj;
        Assert.Equal("invite", member["membership"]!.GetValue<string>());
        Assert.Equal("b...@e...", member["third_party_invite"]!["display_name"]!.GetValue<string>());
    }

    [Fact]
    public async Task Exchanges_that_fail_a_check_are_refused_and_change_nothing()
    {
        var (alice, room, token) = await RoomWithInvite();
        var bob = await Register(pair.B);
        var carolOfA = await Register(pair.A);
        var before = await StateOf(alice, room);
        using var impostor = SigningKey.Generate("0");
        foreach (var (body, why) in new (JsonObject, string)[]
        {
            (ExchangeBody(room, alice.UserId, bob.UserId, TestIdentityServer.Signed(bob.UserId, token, impostor)), "wrong signature"),
            (ExchangeBody(room, alice.UserId, bob.UserId, TestIdentityServer.Signed(bob.UserId, "no-such-token")), "unknown token"),
            // A user of A, bound (really) by the identity server, but B asks: not B's user to claim.
            (ExchangeBody(room, alice.UserId, carolOfA.UserId, TestIdentityServer.Signed(carolOfA.UserId, token)), "mxid not on the requesting server"),
            (ExchangeBody(room, alice.UserId, bob.UserId, TestIdentityServer.Signed(carolOfA.UserId, token)), "signed.mxid not the state_key"),
            (ExchangeBody(room, carolOfA.UserId, bob.UserId, TestIdentityServer.Signed(bob.UserId, token)), "not the invite's sender"),
            (ExchangeBody(room, "@someone:" + pair.B.ServerName, bob.UserId, TestIdentityServer.Signed(bob.UserId, token)), "sender not of this server"),
        })
        {
            var r = await ExchangeAsB(room, body);
            Assert.True((r.Status, r.ErrCode) == (HttpStatusCode.Forbidden, "M_FORBIDDEN"), $"{why}: {r.Status} {r.Body}");
        }
        Assert.Equal(before, await StateOf(alice, room));
    }

    [Fact]
    public async Task Malformed_exchanges_and_unknown_rooms_are_matrix_errors()
    {
        var (alice, room, token) = await RoomWithInvite();
        var bob = await Register(pair.B);
        var before = await StateOf(alice, room);
        var good = ExchangeBody(room, alice.UserId, bob.UserId, TestIdentityServer.Signed(bob.UserId, token));
        foreach (var tamper in new Action<JsonObject>[]
        {
            b => b["type"] = "m.room.message",
            b => b["room_id"] = "!elsewhere:" + pair.A.ServerName,
            b => b["state_key"] = 5,
            b => b["content"]!["membership"] = "join",
            b => b["content"]!["third_party_invite"]!.AsObject().Remove("signed"),
            b => b["content"]!["third_party_invite"]!["signed"]!.AsObject().Remove("token"),
        })
        {
            var body = good.DeepClone().AsObject();
            tamper(body);
            var r = await ExchangeAsB(room, body);
            Assert.True((r.Status, r.ErrCode) == (HttpStatusCode.BadRequest, "M_BAD_JSON"), $"{body.ToJsonString()}: {r.Status} {r.Body}");
        }
        var unknown = "!unknown:" + pair.A.ServerName;
        var r404 = await ExchangeAsB(unknown, ExchangeBody(unknown, alice.UserId, bob.UserId, TestIdentityServer.Signed(bob.UserId, token)));
        Assert.Equal((HttpStatusCode.NotFound, "M_NOT_FOUND"), (r404.Status, r404.ErrCode));
        Assert.Equal(before, await StateOf(alice, room));
    }
}

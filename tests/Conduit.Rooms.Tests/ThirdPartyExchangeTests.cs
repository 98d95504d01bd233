using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Crypto;
using Conduit.Common.Grpc;
using Conduit.Protos.Rooms;
using Microsoft.Extensions.Logging.Abstractions;
using static Conduit.Rooms.Tests.RoomsHarness;

namespace Conduit.Rooms.Tests;

/// <summary>
/// The rooms service's side of third-party invites (spec: server-server-api, "Third-party invites"), through
/// <see cref="FederationServer"/> as the federation service calls it: what the pair of test servers cannot show
/// (both are "localhost", so an ACL cannot tell them apart), and the onbind paths that never leave this server.
/// </summary>
public sealed class ThirdPartyExchangeTests : IDisposable
{
    const string Room = "!tpi:test.local";
    const string Token = "tok";
    static readonly SigningKey Identity = SigningKey.Generate("0");
    readonly RoomsHarness _h = new();
    readonly FederationServer _server;

    public ThirdPartyExchangeTests()
    {
        var invoker = InProcessCallInvoker.Create(null, b => Protos.Federation.Federation.BindService(b, _h.Federation)).WithMatrixErrors();
        var remote = new RemoteServers(new Protos.Federation.Federation.FederationClient(invoker));
        var summaries = new RoomSummaries(_h.Rooms);
        var membership = new RemoteMembership(_h.Rooms, _h.Sender, remote, _h.Format, _h.Config, NullLogger<RemoteMembership>.Instance);
        var keyCheck = new IdentityKeyCheck(_h.Config, new IdentityServerStub(this));
        var thirdParty = new ThirdPartyInvites(_h.Rooms, _h.Sender, membership, remote, keyCheck, _h.Config, NullLogger<ThirdPartyInvites>.Instance);
        _server = new FederationServer(_h.Rooms, _h.States, _h.Sender, remote, _h.Format, new DirectoryEndpoints(_h.Rooms, summaries, _h.Config, remote),
            new AliasLookup(_h.Rooms, _h.Config, new Common.Appservices.AppserviceQueries(null)),
            new SpaceEndpoints(_h.Rooms, summaries, remote, _h.Config), thirdParty, _h.Config, NullLogger<FederationServer>.Instance);
    }

    public void Dispose() => _h.Dispose();

    /// <summary>What the identity server stub answers to /pubkey/isvalid (null: it cannot be reached), and what it was asked.</summary>
    string? _isValidAnswer = """{"valid": true}""";
    readonly List<Uri> _asked = [];

    sealed class IdentityServerStub(ThirdPartyExchangeTests t) : HttpMessageHandler
    {
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken ct)
        {
            t._asked.Add(request.RequestUri!);
            if (t._isValidAnswer is null) throw new HttpRequestException("connection refused");
            return Task.FromResult(new HttpResponseMessage(System.Net.HttpStatusCode.OK) { Content = new StringContent(t._isValidAnswer) });
        }
    }

    async Task RoomWithThirdPartyInvite(string? keyValidityUrl = null)
    {
        await _h.CreateRoomAsync(Room, joinRule: "invite");
        var content = new JsonObject { ["display_name"] = "c...@e...", ["public_key"] = Identity.PublicKeyBase64 };
        if (keyValidityUrl is not null) content["key_validity_url"] = keyValidityUrl;
        await _h.StateAsync(Room, Alice, "m.room.third_party_invite", Token, content);
    }

    static JsonObject Signed(string mxid)
    {
        var signed = new JsonObject { ["mxid"] = mxid, ["token"] = Token };
        JsonSigning.Sign(signed, "id.example", Identity);
        return signed;
    }

    static string ExchangeBody(string invitee) => new JsonObject
    {
        ["type"] = "m.room.member", ["room_id"] = Room, ["sender"] = Alice, ["state_key"] = invitee,
        ["content"] = new JsonObject
        {
            ["membership"] = "invite",
            ["third_party_invite"] = new JsonObject { ["display_name"] = "x", ["signed"] = Signed(invitee) },
        },
    }.ToJsonString();

    Task<FederateReply> Exchange(string origin, string invitee)
        => _server.HandleAsync(new FederateRequest { Origin = origin, Operation = "exchange_third_party_invite", RoomId = Room, Body = ExchangeBody(invitee) }, default);

    Task<FederateReply> OnBind(JsonArray invites)
        => _server.HandleAsync(new FederateRequest { Operation = "onbind", Body = new JsonObject { ["mxid"] = Carol, ["invites"] = invites }.ToJsonString() }, default);

    static JsonObject Entry(string mxid) => new() { ["mxid"] = mxid, ["room_id"] = Room, ["sender"] = Alice, ["signed"] = Signed(mxid) };

    [Fact]
    public async Task An_origin_the_rooms_acl_denies_may_not_exchange()
    {
        await RoomWithThirdPartyInvite();
        await _h.StateAsync(Room, Alice, "m.room.server_acl", "", new JsonObject { ["allow"] = new JsonArray("*"), ["deny"] = new JsonArray("evil.example") });
        var state = _h.Rooms.CurrentState(Room);
        var e = await Assert.ThrowsAsync<MatrixException>(() => Exchange("evil.example", "@dave:evil.example"));
        Assert.Equal((403, "M_FORBIDDEN"), (e.Status, e.ErrCode));
        Assert.Equal(state, _h.Rooms.CurrentState(Room));
        // The control: the same claim for a user of an allowed server (here this one, so no request leaves) is exchanged.
        Assert.Equal(200, (await Exchange(Server, Carol)).Status);
        Assert.Equal("invite", _h.Rooms.MembershipOf(Carol, Room)!.State);
    }

    [Fact]
    public async Task A_binding_of_an_invite_by_one_of_our_users_is_sent_here()
    {
        await RoomWithThirdPartyInvite();
        Assert.Equal("{}", (await OnBind([Entry(Carol)])).Body);
        var invite = _h.Rooms.Event(_h.Rooms.MembershipOf(Carol, Room)!.EventId)!;
        Assert.Equal(("invite", Alice), (invite.Content["membership"]!.GetValue<string>(), invite.Sender));
        Assert.Equal("c...@e...", invite.Content["third_party_invite"]!["display_name"]!.GetValue<string>());
    }

    [Fact]
    public async Task A_binding_handles_at_most_100_invites_and_skips_the_invalid_ones()
    {
        await RoomWithThirdPartyInvite();
        var invites = new JsonArray(Enumerable.Range(0, ThirdPartyInvites.MaxInvitesPerBind).Select(i => (JsonNode)Entry($"@nobody{i}:elsewhere.example")).ToArray());
        invites.Add(Entry(Carol));
        Assert.Equal("{}", (await OnBind(invites)).Body);
        Assert.Null(_h.Rooms.MembershipOf(Carol, Room));
        // Entries that are not objects, or name no room or a user the signature does not, are skipped.
        var wrongMxid = Entry(Carol);
        wrongMxid["signed"] = Signed(Bob);
        Assert.Equal("{}", (await OnBind([5, new JsonObject(), wrongMxid, Entry(Carol)])).Body);
        Assert.Equal("invite", _h.Rooms.MembershipOf(Carol, Room)!.State);
    }

    [Fact]
    public async Task The_identity_server_is_asked_whether_the_signing_key_is_still_valid()
    {
        await RoomWithThirdPartyInvite("https://id.example/_matrix/identity/v2/pubkey/isvalid?v=1");
        var state = _h.Rooms.CurrentState(Room);

        // A revoked key: 403, nothing sent.
        _isValidAnswer = """{"valid": false}""";
        var revoked = await Assert.ThrowsAsync<MatrixException>(() => Exchange("elsewhere.example", "@dave:elsewhere.example"));
        Assert.Equal((403, "M_FORBIDDEN"), (revoked.Status, revoked.ErrCode));
        var asked = Assert.Single(_asked);
        Assert.Equal("https://id.example/_matrix/identity/v2/pubkey/isvalid?v=1&public_key=" + Uri.EscapeDataString(Identity.PublicKeyBase64), asked.AbsoluteUri);

        // An identity server that cannot be reached: 502, nothing sent.
        _isValidAnswer = null;
        var unreachable = await Assert.ThrowsAsync<MatrixException>(() => Exchange("elsewhere.example", "@dave:elsewhere.example"));
        Assert.Equal(502, unreachable.Status);
        Assert.Equal(state, _h.Rooms.CurrentState(Room));

        // A valid key: the invite is sent (here for a user of this server, so no request leaves).
        _isValidAnswer = """{"valid": true}""";
        Assert.Equal(200, (await Exchange(Server, Carol)).Status);
        Assert.Equal("invite", _h.Rooms.MembershipOf(Carol, Room)!.State);
    }

    [Fact]
    public async Task Without_a_key_validity_url_nothing_is_asked()
    {
        await RoomWithThirdPartyInvite();
        Assert.Equal(200, (await Exchange(Server, Carol)).Status);
        Assert.Empty(_asked);
    }
}

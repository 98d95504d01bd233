using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Crypto;
using Conduit.Common.Events;
using Conduit.Rooms.Rules;

namespace Conduit.Rooms.Tests;

public sealed class PowerLevelsTests
{
    [Fact]
    public void WithoutContent_CreatorHas100AndEveryoneElse0()
    {
        var pl = new PowerLevels(RoomVersion.V11, "@creator:t", null, null);
        Assert.Equal(100, pl.UserLevel("@creator:t"));
        Assert.Equal(0, pl.UserLevel("@someone:t"));
        Assert.Equal(0, pl.StateDefault);
        Assert.Equal(0, pl.EventsDefault);
        Assert.Equal(0, pl.Invite);
        Assert.Equal(50, pl.Kick);
        Assert.Equal(50, pl.Ban);
        Assert.Equal(50, pl.Redact);
        Assert.Equal(0, pl.EventLevel("m.room.name", isState: true));
        Assert.Equal(0, pl.EventLevel("m.room.message", isState: false));
    }

    [Fact]
    public void WithEmptyContent_StateDefaultIs50AndTheCreatorHasNoSpecialPower()
    {
        var pl = new PowerLevels(RoomVersion.V11, "@creator:t", null, new JsonObject());
        Assert.Equal(50, pl.StateDefault);
        Assert.Equal(0, pl.EventsDefault);
        Assert.Equal(0, pl.UsersDefault);
        Assert.Equal(0, pl.UserLevel("@creator:t"));
        Assert.Equal(50, pl.EventLevel("m.room.topic", isState: true));
        Assert.Equal(0, pl.EventLevel("m.room.message", isState: false));
    }

    [Fact]
    public void ExplicitValues_OverrideDefaults()
    {
        var pl = new PowerLevels(RoomVersion.V11, "@creator:t", null, new JsonObject
        {
            ["users"] = new JsonObject { ["@mod:t"] = 50 },
            ["users_default"] = 10,
            ["events"] = new JsonObject { ["m.room.message"] = 20, ["m.room.name"] = 75 },
            ["state_default"] = 40,
            ["kick"] = 60,
        });
        Assert.Equal(50, pl.UserLevel("@mod:t"));
        Assert.Equal(10, pl.UserLevel("@creator:t"));
        Assert.Equal(20, pl.EventLevel("m.room.message", isState: false));
        Assert.Equal(75, pl.EventLevel("m.room.name", isState: true));
        Assert.Equal(40, pl.EventLevel("m.room.topic", isState: true));
        Assert.Equal(60, pl.Kick);
        Assert.Equal(50, pl.Ban);
    }

    [Theory]
    [InlineData("""{"ban":50,"users":{"@a:t":100}}""", true)]
    [InlineData("""{"ban":"50"}""", false)]
    [InlineData("""{"users":{"@a:t":"100"}}""", false)]
    [InlineData("""{"events":{"m.room.name":1.5}}""", false)]
    [InlineData("""{"users":[]}""", false)]
    public void AllIntegers(string json, bool expected)
        => Assert.Equal(expected, PowerLevels.AllIntegers(JsonNode.Parse(json)!.AsObject()));
}

public sealed class AuthRulesTests
{
    const string Alice = "@alice:t";   // creator, 100
    const string Mod = "@mod:t";       // 50
    const string Mod2 = "@mod2:t";     // 50
    const string Bob = "@bob:t";       // 0
    const string Carol = "@carol:t";   // not in the room
    const string Dave = "@dave:t";

    readonly Dictionary<(string, string), JsonObject> _state = [];

    public AuthRulesTests()
    {
        _state[("m.room.create", "")] = new JsonObject { ["room_version"] = "11" };
        _state[("m.room.power_levels", "")] = new JsonObject
        {
            ["users"] = new JsonObject { [Alice] = 100, [Mod] = 50, [Mod2] = 50 },
            ["users_default"] = 0,
            ["events_default"] = 0,
            ["state_default"] = 50,
            ["ban"] = 50,
            ["kick"] = 50,
            ["redact"] = 50,
            ["invite"] = 0,
        };
        JoinRule("invite");
        foreach (var u in new[] { Alice, Mod, Mod2, Bob }) Member(u, "join");
    }

    void JoinRule(string rule) => _state[("m.room.join_rules", "")] = new JsonObject { ["join_rule"] = rule };
    void Member(string user, string membership) => _state[("m.room.member", user)] = new JsonObject { ["membership"] = membership };

    // The state as full events, as EventSender hands them to the one implementation of the auth rules.
    JsonObject? Lookup((string Type, string StateKey) key)
        => _state.GetValueOrDefault(key) is { } content
            ? new JsonObject
            {
                ["type"] = key.Type, ["state_key"] = key.StateKey, ["room_id"] = "!r:t",
                ["sender"] = key.Type == "m.room.member" ? key.StateKey : Alice,
                ["event_id"] = $"${key.Type}/{key.StateKey}", ["content"] = content.DeepClone(),
            }
            : null;

    AuthResult Check(string type, string? stateKey, string sender, JsonObject content, bool hasPriorEvents = true)
    {
        var pdu = new JsonObject
        {
            ["type"] = type, ["sender"] = sender, ["room_id"] = "!r:t", ["content"] = content.DeepClone(),
            ["prev_events"] = hasPriorEvents ? new JsonArray("$prev") : new JsonArray(), ["auth_events"] = new JsonArray(),
            ["depth"] = 5, ["origin_server_ts"] = 1,
        };
        if (stateKey is not null) pdu["state_key"] = stateKey;
        return EventAuth.Check(pdu, RoomVersion.V11, Lookup);
    }

    void Allowed(string type, string? stateKey, string sender, JsonObject content)
    {
        var r = Check(type, stateKey, sender, content);
        Assert.True(r.Allowed, r.Reason);
    }

    void Forbidden(string type, string? stateKey, string sender, JsonObject content)
        => Assert.False(Check(type, stateKey, sender, content).Allowed);

    static JsonObject Msg => new() { ["msgtype"] = "m.text", ["body"] = "hi" };
    static JsonObject M(string membership) => new() { ["membership"] = membership };

    [Fact]
    public void Create_OnlyAsTheFirstEvent()
    {
        var create = new JsonObject { ["room_version"] = "11" };
        Assert.True(Check("m.room.create", "", Alice, create, hasPriorEvents: false).Allowed);
        Assert.False(Check("m.room.create", "", Alice, create, hasPriorEvents: true).Allowed);
        _state.Remove(("m.room.create", ""));
        Assert.False(Check("m.room.message", null, Alice, Msg, hasPriorEvents: false).Allowed);
    }

    [Fact]
    public void Member_CanSendAMessage() => Allowed("m.room.message", null, Bob, Msg);

    [Fact]
    public void NonMember_CannotSend() => Forbidden("m.room.message", null, Carol, Msg);

    [Fact]
    public void InvitedOrLeftUser_CannotSend()
    {
        Member(Carol, "invite");
        Forbidden("m.room.message", null, Carol, Msg);
        Member(Carol, "leave");
        Forbidden("m.room.message", null, Carol, Msg);
    }

    [Fact]
    public void MemberBelowTheStateLevel_CannotSendState()
    {
        Forbidden("m.room.name", "", Bob, new JsonObject { ["name"] = "x" });
        Allowed("m.room.name", "", Mod, new JsonObject { ["name"] = "x" });
    }

    [Fact]
    public void PerEventLevel_AppliesToMessages()
    {
        _state[("m.room.power_levels", "")]!["events"] = new JsonObject { ["m.room.message"] = 10 };
        Forbidden("m.room.message", null, Bob, Msg);
        Allowed("m.room.message", null, Mod, Msg);
        Allowed("m.reaction", null, Bob, new JsonObject());
    }

    [Fact]
    public void Invite_NeedsTheSenderToBeJoined()
    {
        Member(Carol, "leave");
        Forbidden("m.room.member", Dave, Carol, M("invite"));
        Allowed("m.room.member", Dave, Bob, M("invite"));
    }

    [Fact]
    public void Invite_NeedsTheInviteLevel()
    {
        _state[("m.room.power_levels", "")]!["invite"] = 50;
        Forbidden("m.room.member", Dave, Bob, M("invite"));
        Allowed("m.room.member", Dave, Mod, M("invite"));
    }

    [Fact]
    public void Invite_OfAJoinedOrBannedUser_IsRefused()
    {
        Forbidden("m.room.member", Bob, Mod, M("invite"));
        Member(Dave, "ban");
        Forbidden("m.room.member", Dave, Mod, M("invite"));
    }

    [Fact]
    public void Kick_NeedsTheKickLevel()
        => Forbidden("m.room.member", Mod, Bob, M("leave"));

    [Fact]
    public void Kick_NeedsMorePowerThanTheTarget()
    {
        Forbidden("m.room.member", Alice, Mod, M("leave"));  // 50 vs 100
        Forbidden("m.room.member", Mod2, Mod, M("leave"));   // 50 vs 50
        Allowed("m.room.member", Bob, Mod, M("leave"));      // 50 vs 0
        Allowed("m.room.member", Mod, Alice, M("leave"));    // 100 vs 50
    }

    [Fact]
    public void Leave_OfOneself_IsAllowedForAMemberButNotForAStranger()
    {
        Allowed("m.room.member", Bob, Bob, M("leave"));
        Forbidden("m.room.member", Carol, Carol, M("leave"));
    }

    [Fact]
    public void Ban_NeedsTheBanLevelAndMorePowerThanTheTarget()
    {
        Forbidden("m.room.member", Dave, Bob, M("ban"));      // 0 < ban 50
        Forbidden("m.room.member", Mod2, Mod, M("ban"));      // equal power
        Allowed("m.room.member", Bob, Mod, M("ban"));
        Allowed("m.room.member", Carol, Alice, M("ban"));     // a non-member can be banned
    }

    [Fact]
    public void Unban_NeedsTheBanLevel()
    {
        Member(Dave, "ban");
        Forbidden("m.room.member", Dave, Bob, M("leave"));
        Allowed("m.room.member", Dave, Mod, M("leave"));
    }

    [Fact]
    public void Join_InviteOnlyRoomWithoutInvite_IsRefused()
    {
        JoinRule("invite");
        Forbidden("m.room.member", Carol, Carol, M("join"));
        Member(Carol, "invite");
        Allowed("m.room.member", Carol, Carol, M("join"));
    }

    [Fact]
    public void Join_WithoutJoinRules_BehavesAsInviteOnly()
    {
        _state.Remove(("m.room.join_rules", ""));
        Forbidden("m.room.member", Carol, Carol, M("join"));
    }

    [Fact]
    public void Join_PublicRoom_IsAllowed()
    {
        JoinRule("public");
        Allowed("m.room.member", Carol, Carol, M("join"));
    }

    [Fact]
    public void Join_ByABannedUser_IsRefusedEvenWhenPublic()
    {
        JoinRule("public");
        Member(Carol, "ban");
        Forbidden("m.room.member", Carol, Carol, M("join"));
    }

    [Fact]
    public void Join_OnBehalfOfSomeoneElse_IsRefused()
    {
        JoinRule("public");
        Forbidden("m.room.member", Carol, Alice, M("join"));
    }

    [Fact]
    public void StateKeyNamingAnotherUser_IsRefused()
    {
        Forbidden("org.example.user_state", Bob, Alice, new JsonObject());
        Allowed("org.example.user_state", Alice, Alice, new JsonObject());
    }

    [Fact]
    public void PowerLevels_RaisingSomeoneAboveOwnLevel_IsRefused()
    {
        var pl = (JsonObject)_state[("m.room.power_levels", "")]!.DeepClone();
        pl["users"]![Bob] = 75;
        Forbidden("m.room.power_levels", "", Mod, pl);
    }

    [Fact]
    public void PowerLevels_RaisingOneselfAboveOwnLevel_IsRefused()
    {
        var pl = (JsonObject)_state[("m.room.power_levels", "")]!.DeepClone();
        pl["users"]![Mod] = 100;
        Forbidden("m.room.power_levels", "", Mod, pl);
    }

    [Fact]
    public void PowerLevels_ChangingAnEqualOrHigherUser_IsRefused()
    {
        var pl = (JsonObject)_state[("m.room.power_levels", "")]!.DeepClone();
        pl["users"]![Mod2] = 0;
        Forbidden("m.room.power_levels", "", Mod, pl);
        var pl2 = (JsonObject)_state[("m.room.power_levels", "")]!.DeepClone();
        pl2["users"]![Alice] = 0;
        Forbidden("m.room.power_levels", "", Mod, pl2);
    }

    [Fact]
    public void PowerLevels_RaisingAThresholdAboveOwnLevel_IsRefused()
    {
        var pl = (JsonObject)_state[("m.room.power_levels", "")]!.DeepClone();
        pl["ban"] = 75;
        Forbidden("m.room.power_levels", "", Mod, pl);
    }

    [Fact]
    public void PowerLevels_ChangesWithinOwnLevel_AreAllowed()
    {
        var pl = (JsonObject)_state[("m.room.power_levels", "")]!.DeepClone();
        pl["users"]![Bob] = 25;
        pl["kick"] = 40;
        Allowed("m.room.power_levels", "", Mod, pl);
    }

    [Fact]
    public void PowerLevels_WithStringValues_AreRejected()
    {
        var pl = (JsonObject)_state[("m.room.power_levels", "")]!.DeepClone();
        pl["kick"] = "40";
        Assert.False(PowerLevels.AllIntegers(pl));
        Assert.False(Check("m.room.power_levels", "", Alice, pl).Allowed);
    }

    [Fact]
    public void Knock_OnlyWhereTheJoinRuleAllowsIt()
    {
        Forbidden("m.room.member", Carol, Carol, M("knock"));
        JoinRule("knock");
        Allowed("m.room.member", Carol, Carol, M("knock"));
    }

    // ---- third-party invites (rooms v1-v12, invite.1.1-invite.1.8)

    static readonly SigningKey IdentityKey = SigningKey.Generate("0");
    const string Token = "tok";

    /// <summary>The room's m.room.third_party_invite for <see cref="Token"/>, sent by Alice (as Lookup gives every non-member event).</summary>
    void ThirdPartyInvite(JsonObject content) => _state[("m.room.third_party_invite", Token)] = content;

    static JsonObject KeysContent(string? single, params string[] list) => new()
    {
        ["display_name"] = "c...@e...",
        ["public_key"] = single,
        ["public_keys"] = new JsonArray(list.Select(k => (JsonNode)new JsonObject { ["public_key"] = k }).ToArray()),
    };

    /// <summary>An invite with third_party_invite whose signed object (mxid, token) is signed by <paramref name="key"/>.</summary>
    static JsonObject TpiInvite(string mxid, string token = Token, SigningKey? key = null, Action<JsonObject>? tamper = null)
    {
        var signed = new JsonObject { ["mxid"] = mxid, ["token"] = token };
        JsonSigning.Sign(signed, "id.example", key ?? IdentityKey);
        tamper?.Invoke(signed);
        return new JsonObject { ["membership"] = "invite", ["third_party_invite"] = new JsonObject { ["display_name"] = "c...@e...", ["signed"] = signed } };
    }

    [Fact]
    public void ThirdPartyInvite_SignedWithAKeyOfTheInviteEvent_IsAllowedEvenForANonMemberSender()
    {
        ThirdPartyInvite(KeysContent(IdentityKey.PublicKeyBase64));
        Allowed("m.room.member", Dave, Alice, TpiInvite(Dave));
        // invite.1 does not look at the sender's membership or power: the identity server's signature is the proof.
        _state[("m.room.power_levels", "")]!["invite"] = 100;
        Member(Alice, "leave");
        Allowed("m.room.member", Dave, Alice, TpiInvite(Dave));
    }

    [Fact]
    public void ThirdPartyInvite_KeyMayBeInPublicKeysAndPaddedOrUrlSafe()
    {
        var b64 = Convert.ToBase64String(IdentityKey.PublicKey);
        ThirdPartyInvite(KeysContent("not a key", b64.Replace('+', '-').Replace('/', '_')));
        Allowed("m.room.member", Dave, Alice, TpiInvite(Dave));
        ThirdPartyInvite(KeysContent(b64));
        Allowed("m.room.member", Dave, Alice, TpiInvite(Dave));
    }

    [Fact]
    public void ThirdPartyInvite_IsRefusedForEachBrokenCondition()
    {
        ThirdPartyInvite(KeysContent(IdentityKey.PublicKeyBase64));
        using var other = SigningKey.Generate("0");
        Forbidden("m.room.member", Dave, Alice, TpiInvite(Dave, key: other));                  // 1.7: no key verifies
        Forbidden("m.room.member", Dave, Alice, TpiInvite(Carol));                             // 1.4: mxid is not the state_key
        Forbidden("m.room.member", Dave, Alice, TpiInvite(Dave, token: "unknown"));            // 1.5: no invite for the token
        Forbidden("m.room.member", Dave, Bob, TpiInvite(Dave));                                // 1.6: not the invite's sender
        Forbidden("m.room.member", Dave, Alice, TpiInvite(Dave, tamper: s => s["mxid"] = Carol)); // the signature covers mxid
        Forbidden("m.room.member", Dave, Alice, TpiInvite(Dave, tamper: s => s.Remove("token")));  // 1.3
        Forbidden("m.room.member", Dave, Alice, new JsonObject { ["membership"] = "invite", ["third_party_invite"] = new JsonObject() }); // 1.2
        Member(Dave, "ban");
        Forbidden("m.room.member", Dave, Alice, TpiInvite(Dave));                              // 1.1: the target is banned
    }

    [Fact]
    public void ThirdPartyInvite_RevokedByEmptyingTheInviteEvent_IsRefused()
    {
        ThirdPartyInvite(new JsonObject());
        Forbidden("m.room.member", Dave, Alice, TpiInvite(Dave));
    }
}

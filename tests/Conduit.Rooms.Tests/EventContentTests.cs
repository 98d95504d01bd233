using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Crypto;
using Conduit.Common.Events;
using static Conduit.Rooms.Tests.RoomsHarness;

namespace Conduit.Rooms.Tests;

/// <summary>
/// The send-time rules of <see cref="EventContent"/> and the tolerant readers of <see cref="ContentField"/> and its kin: a bad
/// event is refused before anything is written, and one that arrives from another server anyway breaks no reader.
/// </summary>
public sealed class EventContentTests : IDisposable
{
    const string Room = "!room:test.local";
    readonly RoomsHarness _h = new();

    public void Dispose()
    {
        _h.Dispose();
        _remoteKey.Dispose();
    }

    static void Valid(string type, string? stateKey, string content)
        => EventContent.Validate(new NewEvent(type, stateKey, (JsonObject)JsonNode.Parse(content)!), Room, Server);

    static string Refused(string type, string? stateKey, string content, string? redacts = null)
        => Assert.Throws<MatrixException>(() => EventContent.Validate(new NewEvent(type, stateKey, (JsonObject)JsonNode.Parse(content)!, redacts), Room, Server)).ErrCode;

    [Theory]
    // history visibility: the report's values, and unknown strings
    [InlineData("m.room.history_visibility", "", """{"history_visibility":{"a":1}}""", "M_BAD_JSON")]
    [InlineData("m.room.history_visibility", "", """{"history_visibility":5}""", "M_BAD_JSON")]
    [InlineData("m.room.history_visibility", "", """{"history_visibility":["shared"]}""", "M_BAD_JSON")]
    [InlineData("m.room.history_visibility", "", """{"history_visibility":true}""", "M_BAD_JSON")]
    [InlineData("m.room.history_visibility", "", """{"history_visibility":"joined_only"}""", "M_BAD_JSON")]
    [InlineData("m.room.history_visibility", "", """{}""", "M_BAD_JSON")]
    [InlineData("m.room.history_visibility", null, """{"history_visibility":"shared"}""", "M_BAD_JSON")]
    [InlineData("m.room.join_rules", "", """{"join_rule":5}""", "M_BAD_JSON")]
    [InlineData("m.room.join_rules", "", """{"join_rule":"everyone"}""", "M_BAD_JSON")]
    [InlineData("m.room.join_rules", "", """{"join_rule":"restricted","allow":[5]}""", "M_BAD_JSON")]
    [InlineData("m.room.join_rules", "", """{"join_rule":"restricted","allow":{"type":"m.room_membership"}}""", "M_BAD_JSON")]
    [InlineData("m.room.join_rules", "", """{"join_rule":"restricted","allow":[{"type":"m.room_membership"}]}""", "M_INVALID_PARAM")]
    [InlineData("m.room.guest_access", "", """{"guest_access":{}}""", "M_BAD_JSON")]
    [InlineData("m.room.power_levels", "", """{"ban":"50"}""", "M_BAD_JSON")]
    [InlineData("m.room.power_levels", "", """{"users":{"@a:test.local":1.5}}""", "M_BAD_JSON")]
    [InlineData("m.room.power_levels", "", """{"events":{"m.room.name":true}}""", "M_BAD_JSON")]
    [InlineData("m.room.power_levels", "", """{"users":[]}""", "M_BAD_JSON")]
    [InlineData("m.room.power_levels", "", """{"kick":9007199254740992}""", "M_BAD_JSON")]
    [InlineData("m.room.member", "@alice:test.local", """{"membership":5}""", "M_BAD_JSON")]
    [InlineData("m.room.member", "@alice:test.local", """{"membership":"join","displayname":{}}""", "M_BAD_JSON")]
    [InlineData("m.room.member", "@alice:test.local", """{"membership":"join","join_authorised_via_users_server":"bob"}""", "M_INVALID_PARAM")]
    [InlineData("m.room.create", "", """{"m.federate":"no"}""", "M_BAD_JSON")]
    [InlineData("m.room.create", "", """{"predecessor":{"room_id":"nope"}}""", "M_INVALID_PARAM")]
    [InlineData("m.room.create", "", """{"additional_creators":["bob"]}""", "M_INVALID_PARAM")]
    [InlineData("m.room.canonical_alias", "", """{"alias":5}""", "M_BAD_JSON")]
    [InlineData("m.room.canonical_alias", "", """{"alias":"nope"}""", "M_INVALID_PARAM")]
    [InlineData("m.room.canonical_alias", "", """{"alt_aliases":["#ok:x",1]}""", "M_BAD_JSON")]
    [InlineData("m.room.aliases", "test.local", """{"aliases":"#a:x"}""", "M_BAD_JSON")]
    [InlineData("m.room.server_acl", "", """{"allow":"*"}""", "M_BAD_JSON")]
    [InlineData("m.room.server_acl", "", """{"allow":["other.org"]}""", "M_INVALID_PARAM")]
    [InlineData("m.room.server_acl", "", """{"allow":["*"],"deny":["test.*"]}""", "M_INVALID_PARAM")]
    [InlineData("m.room.encryption", "", """{}""", "M_BAD_JSON")]
    [InlineData("m.room.encryption", "", """{"algorithm":"m.megolm.v1.aes-sha2","rotation_period_ms":"1"}""", "M_BAD_JSON")]
    [InlineData("m.room.tombstone", "", """{"replacement_room":"nope"}""", "M_INVALID_PARAM")]
    [InlineData("m.room.tombstone", "", """{"replacement_room":"!room:test.local"}""", "M_INVALID_PARAM")]
    [InlineData("m.room.tombstone", "", """{"body":"moved"}""", "M_BAD_JSON")]
    [InlineData("m.room.name", "", """{"name":5}""", "M_BAD_JSON")]
    [InlineData("m.room.name", null, """{"name":"a timeline name"}""", "M_BAD_JSON")]
    [InlineData("m.room.topic", "", """{"topic":[]}""", "M_BAD_JSON")]
    [InlineData("m.room.avatar", "", """{"url":1}""", "M_BAD_JSON")]
    [InlineData("m.room.message", null, """{"msgtype":"m.text","body":{"x":1}}""", "M_BAD_JSON")]
    [InlineData("m.room.message", null, """{"body":"x","m.mentions":{"user_ids":"@a:b"}}""", "M_BAD_JSON")]
    [InlineData("m.room.message", null, """{"body":1.5}""", "M_BAD_JSON")]
    [InlineData("x.custom", null, """{"n":1.5}""", "M_BAD_JSON")]
    [InlineData("x.custom", null, """{"n":[9007199254740992]}""", "M_BAD_JSON")]
    [InlineData("x.custom", null, """{"deep":{"n":-9007199254740992}}""", "M_BAD_JSON")]
    [InlineData("m.room.redaction", null, """{}""", "M_BAD_JSON")]
    [InlineData("m.room.redaction", null, """{"redacts":5}""", "M_BAD_JSON")]
    [InlineData("m.room.redaction", null, """{"redacts":"not-an-event"}""", "M_INVALID_PARAM")]
    [InlineData("m.room.redaction", "", """{"redacts":"$event"}""", "M_BAD_JSON")]
    public void Is_refused(string type, string? stateKey, string content, string errcode)
        => Assert.Equal(errcode, Refused(type, stateKey, content));

    [Theory]
    [InlineData("m.room.history_visibility", "", """{"history_visibility":"world_readable"}""")]
    [InlineData("m.room.join_rules", "", """{"join_rule":"knock_restricted","allow":[{"type":"m.room_membership","room_id":"!other:x"},{"type":"x.future"}]}""")]
    [InlineData("m.room.guest_access", "", """{"guest_access":"forbidden"}""")]
    [InlineData("m.room.power_levels", "", """{"ban":50,"users":{"@a:test.local":100},"events":{"m.room.name":50},"notifications":{"room":50},"historical":100}""")]
    [InlineData("m.room.member", "@alice:test.local", """{"membership":"join","displayname":null,"avatar_url":"mxc://x/y","is_direct":true}""")]
    [InlineData("m.room.create", "", """{"room_version":"11","m.federate":false,"type":"m.space","predecessor":{"room_id":"!old:x","event_id":"$e"}}""")]
    [InlineData("m.room.canonical_alias", "", """{}""")]
    [InlineData("m.room.server_acl", "", """{"allow":["*"],"deny":["evil.org"],"allow_ip_literals":false}""")]
    [InlineData("m.room.server_acl", "", """{"allow":["test.loca?"]}""")]
    [InlineData("m.room.tombstone", "", """{"replacement_room":"!new:test.local","body":"moved"}""")]
    [InlineData("m.room.name", "", """{"name":null}""")]
    [InlineData("m.room.message", null, """{"msgtype":"m.text","body":"hi","m.mentions":{"user_ids":["@a:b"],"room":false}}""")]
    [InlineData("m.room.message", null, """{"body":"no msgtype"}""")]
    [InlineData("m.room.redaction", null, """{"redacts":"$event:test.local","reason":"spam"}""")]
    [InlineData("x.custom", "any", """{"n":9007199254740991,"f":[-9007199254740991]}""")]
    public void Is_accepted(string type, string? stateKey, string content) => Valid(type, stateKey, content);

    [Fact]
    public void Size_limits_count_bytes()
    {
        Valid(new string('t', 255), null, "{}");
        Assert.Equal("M_TOO_LARGE", Refused(new string('t', 256), null, "{}"));
        // 100 three-byte characters: 100 UTF-16 chars, 300 bytes.
        Assert.Equal("M_TOO_LARGE", Refused(new string('€', 100), null, "{}"));
        Valid("x.state", new string('k', 255), "{}");
        Assert.Equal("M_TOO_LARGE", Refused("x.state", new string('€', 86), "{}"));
        Assert.Equal("M_TOO_LARGE", Refused("m.room.message", null, new JsonObject { ["body"] = new string('b', 70_000) }.ToJsonString()));
        // Nesting is bounded too, so that whatever is stored can be read back by every reader.
        // (content one level less than the PDU around it)
        EventContent.Validate(new NewEvent("x.deep", null, Nested(JsonLimits.MaxEventDepth - 1)), Room, Server);
        Assert.Equal("M_BAD_JSON", Assert.Throws<MatrixException>(() => EventContent.Validate(new NewEvent("x.deep", null, Nested(JsonLimits.MaxEventDepth)), Room, Server)).ErrCode);
        // The top-level redacts of v1-v10 is checked like content.redacts.
        Assert.Equal("M_INVALID_PARAM", Refused("m.room.redaction", null, "{}", redacts: "nope"));
    }

    /// <summary>An object nested <paramref name="depth"/> levels deep.</summary>
    static JsonObject Nested(int depth)
    {
        var o = new JsonObject();
        for (var i = 1; i < depth; i++) o = new JsonObject { ["n"] = o };
        return o;
    }

    [Fact]
    public void Readers_take_an_invalid_history_visibility_as_shared()
    {
        foreach (var bad in new[] { """{"history_visibility":{"a":1}}""", """{"history_visibility":5}""", """{"history_visibility":[]}""", """{"history_visibility":true}""", """{"history_visibility":"nope"}""", "{}" })
            Assert.Equal("shared", HistoryVisibility.Of((JsonObject)JsonNode.Parse(bad)!));
        Assert.Equal("shared", HistoryVisibility.Of(null));
        Assert.Equal("joined", HistoryVisibility.Of(new JsonObject { ["history_visibility"] = "joined" }));
        var rules = (JsonObject)JsonNode.Parse("""{"join_rule":"restricted","allow":[5,"x",{"type":5},{"type":"m.room_membership","room_id":7},{"type":"m.room_membership","room_id":"!ok:x"}]}""")!;
        Assert.Equal(["!ok:x"], JoinRule.AllowedRoomIds(rules));
        Assert.Null(JoinRule.Of((JsonObject)JsonNode.Parse("""{"join_rule":{"a":1}}""")!));
        Assert.Null(MemberContent.MembershipOf((JsonObject)JsonNode.Parse("""{"membership":["join"]}""")!));
        Assert.Null(MemberContent.DisplayName((JsonObject)JsonNode.Parse("""{"displayname":5}""")!));
    }

    [Fact]
    public async Task A_refused_event_leaves_nothing_behind_even_later_in_a_batch()
    {
        await _h.CreateRoomAsync(Room);
        var before = (_h.Rooms.StreamPosition, _h.TimelineCount(Room), _h.Rooms.StateEventId(Room, "m.room.topic", ""));
        var e = await Assert.ThrowsAsync<MatrixException>(() => _h.Sender.SendAsync(Room, Alice,
        [
            new NewEvent("m.room.topic", "", new JsonObject { ["topic"] = "fine" }),
            new NewEvent("m.room.history_visibility", "", new JsonObject { ["history_visibility"] = new JsonObject { ["a"] = 1 } }),
        ], null, CancellationToken.None));
        Assert.Equal("M_BAD_JSON", e.ErrCode);
        Assert.Equal(before, (_h.Rooms.StreamPosition, _h.TimelineCount(Room), _h.Rooms.StateEventId(Room, "m.room.topic", "")));
    }

    [Fact]
    public async Task The_whole_pdu_is_held_to_65536_bytes()
    {
        await _h.CreateRoomAsync(Room);
        // Content just under the limit, but the signed PDU around it is over.
        var content = new JsonObject { ["body"] = new string('b', EventContent.MaxPduBytes - 100) };
        Assert.Equal("M_TOO_LARGE", (await Assert.ThrowsAsync<MatrixException>(() =>
            _h.Sender.SendAsync(Room, Alice, [new NewEvent("m.room.message", null, content)], null, CancellationToken.None))).ErrCode);
        content["body"] = new string('b', EventContent.MaxPduBytes - 2000);
        await _h.Sender.SendAsync(Room, Alice, [new NewEvent("m.room.message", null, content)], null, CancellationToken.None);
    }

    // ---- events from another server: not held to the send-time rules, and every reader copes.

    const string RemoteServer = "remote.example";
    const string Rem = "@rem:remote.example";
    readonly SigningKey _remoteKey = SigningKey.Generate("r");

    byte[]? VerifyKey(string server, string keyId) => server == RemoteServer && keyId == _remoteKey.KeyId ? _remoteKey.PublicKey : null;

    /// <summary>A v11 PDU from the remote server on the room's one forward extremity.</summary>
    JsonObject FromRemote(string type, string? stateKey, JsonObject content, string sender = Rem)
    {
        var last = _h.Rooms.Event(_h.Rooms.Info(Room)!["forward_extremities"]![0]!.GetValue<string>())!;
        var pdu = new JsonObject
        {
            ["content"] = content, ["depth"] = last.Pdu["depth"]!.GetValue<long>() + 1, ["origin_server_ts"] = Ids.NowMs(),
            ["room_id"] = Room, ["sender"] = sender, ["type"] = type, ["prev_events"] = new JsonArray(last.EventId),
        };
        if (stateKey is not null) pdu["state_key"] = stateKey;
        var auth = EventAuth.AuthTypesFor(pdu, RoomVersion.V11).Select(k => _h.States.LookupEventId(last.StateAfter, k.Type, k.StateKey));
        pdu["auth_events"] = new JsonArray(auth.OfType<string>().Distinct().Select(id => (JsonNode)id).ToArray());
        EventHashing.HashAndSign(pdu, RoomVersion.V11, RemoteServer, _remoteKey);
        return pdu;
    }

    async Task<IngestResult> Accept(JsonObject pdu) => await _h.Sender.AcceptRemoteAsync(pdu, VerifyKey, CancellationToken.None);

    [Fact]
    public async Task A_remote_state_event_of_the_wrong_shape_breaks_no_reader()
    {
        await _h.CreateRoomAsync(Room);
        await _h.StateAsync(Room, Alice, "m.room.power_levels", "", new JsonObject { ["users"] = new JsonObject { [Alice] = 100, [Rem] = 100 } });
        Assert.Equal(IngestOutcome.Accepted, (await Accept(FromRemote("m.room.member", Rem, new JsonObject { ["membership"] = "join", ["displayname"] = 5 }))).Outcome);
        var message = await _h.MessageAsync(Room, Alice, "before");
        foreach (var bad in new JsonNode?[] { new JsonObject { ["a"] = 1 }, 5, new JsonArray("joined"), true, "joined_only" })
        {
            var r = await Accept(FromRemote("m.room.history_visibility", "", new JsonObject { ["history_visibility"] = bad?.DeepClone() }));
            Assert.Equal(IngestOutcome.Accepted, r.Outcome);
            // Read as "shared": members see everything, including what came before.
            Assert.Equal("shared", HistoryVisibility.Of(_h.Rooms.StateContent(Room, "m.room.history_visibility")));
            Assert.True(_h.Visibility.CanSee(Alice, message));
            Assert.NotNull(_h.Visibility.ReadableWindow(Rem, Room));
            var sync = _h.Sync.Build(Alice, null, 0, false, null);
            Assert.True(sync.Rooms["join"]![Room] is JsonObject);
            Assert.NotNull(_h.Format.Format(_h.Rooms.Event(r.EventId!)!));
        }
        // A join rule of the wrong shape reads as none, and a restricted join's malformed conditions are skipped.
        Assert.Equal(IngestOutcome.Accepted, (await Accept(FromRemote("m.room.join_rules", "", new JsonObject { ["join_rule"] = "restricted", ["allow"] = new JsonArray(5, new JsonObject { ["type"] = new JsonArray() }) }))).Outcome);
        Assert.Empty(JoinRule.AllowedRoomIds(_h.Rooms.StateContent(Room, "m.room.join_rules")));
        var forbidden = Assert.Throws<MatrixException>(() => RestrictedJoin.Authorise(_h.Rooms, Server, Room, Carol, new JsonObject()));
        Assert.Equal("M_FORBIDDEN", forbidden.ErrCode);
    }

    [Fact]
    public async Task Remote_pdus_over_the_size_limits_are_dropped()
    {
        await _h.CreateRoomAsync(Room);
        foreach (var (type, stateKey) in new[] { (new string('t', 256), (string?)null), ("x.state", new string('€', 86)) })
        {
            var r = await Accept(FromRemote(type, stateKey, new JsonObject()));
            Assert.Equal(IngestOutcome.Dropped, r.Outcome);
            Assert.Contains("255 bytes", r.Reason);
        }
        Assert.Equal(IngestOutcome.Accepted, (await Accept(FromRemote("m.room.member", Rem, new JsonObject { ["membership"] = "join" }))).Outcome);
        var deep = await Accept(FromRemote("x.deep", null, Nested(JsonLimits.MaxEventDepth)));
        Assert.Equal((IngestOutcome.Dropped, "nested deeper than 100"), (deep.Outcome, deep.Reason));
        Assert.Equal(IngestOutcome.Accepted, (await Accept(FromRemote("x.deep", null, Nested(JsonLimits.MaxEventDepth - 1)))).Outcome);
        // The deepest event allowed reads back everywhere.
        Assert.True(_h.Sync.Build(Alice, null, 0, false, null).Rooms["join"]![Room] is JsonObject);
    }
}

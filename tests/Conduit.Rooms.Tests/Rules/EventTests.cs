using System.Text.Json.Nodes;
using Conduit.Common.Crypto;
using Conduit.Common.Events;

namespace Conduit.Rooms.Tests.Rules;

public class RoomVersionTests
{
    [Fact]
    public void Table_lists_v1_to_v12_in_order()
    {
        Assert.Equal(Enumerable.Range(1, 12).Select(i => i.ToString()), RoomVersion.All.Select(v => v.Id));
        Assert.Same(RoomVersion.V10, RoomVersion.Find("10"));
        Assert.Null(RoomVersion.Find("13"));
        Assert.Null(RoomVersion.Find("org.example.custom"));
    }

    [Fact]
    public void Per_version_properties()
    {
        string Ids(Func<RoomVersion, bool> f) => string.Join(",", RoomVersion.All.Where(f).Select(v => v.Id));

        Assert.Equal("1,2", Ids(v => v.EventIdFormat == EventIdFormat.ServerGenerated));
        Assert.Equal("3", Ids(v => v.EventIdFormat == EventIdFormat.ReferenceHashBase64));
        Assert.Equal("1", Ids(v => v.StateResolution == "v1"));
        Assert.Equal("12", Ids(v => v.StateResolution == "v2.1"));
        Assert.Equal("2,3,4,5,6,7,8,9,10,11", Ids(v => v.StateResolution == "v2"));
        Assert.Equal("5,6,7,8,9,10,11,12", Ids(v => v.EnforceKeyValidity));
        Assert.Equal("6,7,8,9,10,11,12", Ids(v => v.StrictCanonicalJson));
        Assert.Equal("7,8,9,10,11,12", Ids(v => v.Knock));
        Assert.Equal("8,9,10,11,12", Ids(v => v.RestrictedJoins));
        Assert.Equal("10,11,12", Ids(v => v.KnockRestricted));
        Assert.Equal("10,11,12", Ids(v => v.IntegerOnlyPowerLevels));
        Assert.Equal("11,12", Ids(v => v.RedactsInContent));
        Assert.Equal("12", Ids(v => v.RoomIdFromCreateEvent));
        Assert.Equal("v1,v1,v1,v1,v1,v6,v6,v8,v9,v9,v11,v11", string.Join(",", RoomVersion.All.Select(v => v.Redaction.Name)));
    }
}

public class RedactionTests
{
    private static JsonObject Event(string type, string content, string? extraTopLevel = null)
    {
        var ev = CanonicalJson.Parse("""
            {
              "room_id": "!r:example.org", "sender": "@a:example.org", "state_key": "",
              "origin": "example.org", "origin_server_ts": 1, "depth": 2, "prev_events": [], "auth_events": [],
              "membership": "join", "prev_state": [], "hashes": {"sha256": "h"}, "signatures": {"example.org": {"ed25519:1": "s"}},
              "unsigned": {"age": 1}, "custom": true
            }
            """)!.AsObject();
        ev["type"] = type;
        ev["content"] = CanonicalJson.Parse(content);
        if (extraTopLevel is not null)
        {
            foreach (var (k, v) in CanonicalJson.Parse("{" + extraTopLevel + "}")!.AsObject().ToList())
            {
                ev[k] = v?.DeepClone();
            }
        }
        return ev;
    }

    private static string RedactedContent(JsonObject ev, RoomVersion v) => CanonicalJson.Serialize(Redaction.Redact(ev, v)["content"]);

    [Fact]
    public void Create_content_is_kept_whole_from_v11_but_only_creator_before()
    {
        var ev = Event("m.room.create", """{"creator":"@a:example.org","room_version":"10","m.federate":false,"predecessor":{"room_id":"!old:x"}}""");
        Assert.Equal("{\"creator\":\"@a:example.org\"}", RedactedContent(ev, RoomVersion.V10));
        Assert.Equal("{\"creator\":\"@a:example.org\",\"m.federate\":false,\"predecessor\":{\"room_id\":\"!old:x\"},\"room_version\":\"10\"}",
            RedactedContent(ev, RoomVersion.V11));
        Assert.Equal(RedactedContent(ev, RoomVersion.V11), RedactedContent(ev, RoomVersion.V12));
    }

    [Fact]
    public void Top_level_keys_v10_versus_v11()
    {
        var ev = Event("m.room.message", """{"body":"x"}""", "\"redacts\": \"$e\"");
        Assert.Equal(
            "{\"auth_events\":[],\"content\":{},\"depth\":2,\"hashes\":{\"sha256\":\"h\"},\"membership\":\"join\",\"origin\":\"example.org\"," +
            "\"origin_server_ts\":1,\"prev_events\":[],\"prev_state\":[],\"room_id\":\"!r:example.org\",\"sender\":\"@a:example.org\"," +
            "\"signatures\":{\"example.org\":{\"ed25519:1\":\"s\"}},\"state_key\":\"\",\"type\":\"m.room.message\"}",
            CanonicalJson.Serialize(Redaction.Redact(ev, RoomVersion.V10)));
        Assert.Equal(
            "{\"auth_events\":[],\"content\":{},\"depth\":2,\"hashes\":{\"sha256\":\"h\"}," +
            "\"origin_server_ts\":1,\"prev_events\":[],\"room_id\":\"!r:example.org\",\"sender\":\"@a:example.org\"," +
            "\"signatures\":{\"example.org\":{\"ed25519:1\":\"s\"}},\"state_key\":\"\",\"type\":\"m.room.message\"}",
            CanonicalJson.Serialize(Redaction.Redact(ev, RoomVersion.V11)));
    }

    [Fact]
    public void Power_levels_keep_invite_only_from_v11()
    {
        var ev = Event("m.room.power_levels",
            """{"ban":50,"events":{"m.room.name":50},"events_default":0,"invite":0,"kick":50,"redact":50,"state_default":50,"users":{"@a:example.org":100},"users_default":0,"notifications":{"room":50}}""");
        const string common = "\"ban\":50,\"events\":{\"m.room.name\":50},\"events_default\":0,";
        const string rest = "\"kick\":50,\"redact\":50,\"state_default\":50,\"users\":{\"@a:example.org\":100},\"users_default\":0}";
        Assert.Equal("{" + common + rest, RedactedContent(ev, RoomVersion.V10));
        Assert.Equal("{" + common + "\"invite\":0," + rest, RedactedContent(ev, RoomVersion.V11));
    }

    [Fact]
    public void Join_rules_keep_allow_from_v8()
    {
        var ev = Event("m.room.join_rules", """{"join_rule":"restricted","allow":[{"type":"m.room_membership","room_id":"!s:x"}],"other":1}""");
        Assert.Equal("{\"join_rule\":\"restricted\"}", RedactedContent(ev, RoomVersion.V7));
        Assert.Equal("{\"allow\":[{\"room_id\":\"!s:x\",\"type\":\"m.room_membership\"}],\"join_rule\":\"restricted\"}", RedactedContent(ev, RoomVersion.V8));
    }

    [Fact]
    public void Member_keeps_join_authorised_via_from_v9_and_third_party_signed_from_v11()
    {
        var ev = Event("m.room.member",
            """{"membership":"join","displayname":"A","join_authorised_via_users_server":"@b:x","third_party_invite":{"display_name":"d","signed":{"mxid":"@a:example.org","token":"t"}}}""");
        Assert.Equal("{\"membership\":\"join\"}", RedactedContent(ev, RoomVersion.V8));
        Assert.Equal("{\"join_authorised_via_users_server\":\"@b:x\",\"membership\":\"join\"}", RedactedContent(ev, RoomVersion.V9));
        Assert.Equal("{\"join_authorised_via_users_server\":\"@b:x\",\"membership\":\"join\"," +
            "\"third_party_invite\":{\"signed\":{\"mxid\":\"@a:example.org\",\"token\":\"t\"}}}", RedactedContent(ev, RoomVersion.V11));

        var noSigned = Event("m.room.member", """{"membership":"invite","third_party_invite":{"display_name":"d"}}""");
        Assert.Equal("{\"membership\":\"invite\"}", RedactedContent(noSigned, RoomVersion.V11));
    }

    [Fact]
    public void Aliases_content_kept_only_before_v6()
    {
        var ev = Event("m.room.aliases", """{"aliases":["#a:example.org"]}""");
        Assert.Equal("{\"aliases\":[\"#a:example.org\"]}", RedactedContent(ev, RoomVersion.V5));
        Assert.Equal("{}", RedactedContent(ev, RoomVersion.V6));
    }

    [Fact]
    public void Redaction_event_keeps_content_redacts_from_v11()
    {
        var ev = Event("m.room.redaction", """{"redacts":"$e","reason":"spam"}""");
        Assert.Equal("{}", RedactedContent(ev, RoomVersion.V10));
        Assert.Equal("{\"redacts\":\"$e\"}", RedactedContent(ev, RoomVersion.V11));
    }

    [Fact]
    public void History_visibility_is_kept_in_every_version_and_input_is_not_modified()
    {
        var ev = Event("m.room.history_visibility", """{"history_visibility":"shared","x":1}""");
        string before = CanonicalJson.Serialize(ev);
        foreach (var v in RoomVersion.All)
        {
            Assert.Equal("{\"history_visibility\":\"shared\"}", RedactedContent(ev, v));
        }
        Assert.Equal(before, CanonicalJson.Serialize(ev));
    }
}

public class EventHashingTests
{
    // Expected ids and hashes below were computed independently (Python hashlib/json with
    // sort_keys and compact separators) for this event; n=1 was chosen so the hash has '+' and '/'.
    private static JsonObject MessageEvent() => CanonicalJson.Parse("""
        {"type":"m.room.message","room_id":"!room:example.org","sender":"@alice:example.org","origin_server_ts":1700000000001,
         "depth":7,"prev_events":["$prev"],"auth_events":["$auth1","$auth2"],"content":{"body":"hello","msgtype":"m.text"},
         "hashes":{"sha256":"placeholder"},"signatures":{"example.org":{"ed25519:1":"sig"}},"unsigned":{"age":5},"origin":"example.org"}
        """)!.AsObject();

    [Fact]
    public void Event_id_is_standard_base64_in_v3_and_url_safe_from_v4()
    {
        var ev = MessageEvent();
        Assert.Equal("$n4h0x/tRQHwUnNzgWoHD9veSmwmeY+e6MrA74wCIiNY", EventHashing.ComputeEventId(ev, RoomVersion.V3));
        foreach (var v in new[] { RoomVersion.V4, RoomVersion.V5, RoomVersion.V6, RoomVersion.V9, RoomVersion.V10 })
        {
            Assert.Equal("$n4h0x_tRQHwUnNzgWoHD9veSmwmeY-e6MrA74wCIiNY", EventHashing.ComputeEventId(ev, v));
        }
        // v11 no longer protects the top-level "origin", so the reference hash changes.
        Assert.Equal("$YOnmyhm3aOtLD8A_8FdafsA3GHpcENO29-qYIZxbPGA", EventHashing.ComputeEventId(ev, RoomVersion.V11));
        Assert.Equal("$YOnmyhm3aOtLD8A_8FdafsA3GHpcENO29-qYIZxbPGA", EventHashing.ComputeEventId(ev, RoomVersion.V12));
    }

    [Fact]
    public void Reference_hash_ignores_signatures_unsigned_redactable_content_and_event_id()
    {
        var ev = MessageEvent();
        byte[] expected = EventHashing.ReferenceHash(ev, RoomVersion.V10);
        Assert.Equal("n4h0x/tRQHwUnNzgWoHD9veSmwmeY+e6MrA74wCIiNY", UnpaddedBase64.Encode(expected));

        ev["signatures"] = new JsonObject();
        ev["unsigned"] = new JsonObject { ["age"] = 99 };
        ev["content"]!.AsObject()["body"] = "changed";
        ev["event_id"] = "$whatever";
        Assert.Equal(expected, EventHashing.ReferenceHash(ev, RoomVersion.V10));

        ev["hashes"]!.AsObject()["sha256"] = "other";
        Assert.NotEqual(expected, EventHashing.ReferenceHash(ev, RoomVersion.V10));
    }

    [Fact]
    public void Server_generated_versions_have_no_hash_event_id()
    {
        Assert.Throws<InvalidOperationException>(() => EventHashing.ComputeEventId(MessageEvent(), RoomVersion.V1));
        Assert.Throws<InvalidOperationException>(() => EventHashing.ComputeEventId(MessageEvent(), RoomVersion.V2));
    }

    [Fact]
    public void Content_hash_covers_everything_but_unsigned_signatures_and_hashes()
    {
        var ev = MessageEvent();
        Assert.Equal("8e366An+bnJr3+Z8fvCIEX7uLSlEnuU/SQKIEIwyaG4", EventHashing.ComputeContentHash(ev));
        Assert.False(EventHashing.VerifyContentHash(ev));

        EventHashing.AddContentHash(ev);
        Assert.Equal("8e366An+bnJr3+Z8fvCIEX7uLSlEnuU/SQKIEIwyaG4", (string)ev["hashes"]!["sha256"]!);
        Assert.True(EventHashing.VerifyContentHash(ev));

        ev["unsigned"] = new JsonObject { ["age"] = 1000 };
        ev["signatures"] = new JsonObject();
        Assert.True(EventHashing.VerifyContentHash(ev));

        ev["content"]!.AsObject()["body"] = "changed";
        Assert.False(EventHashing.VerifyContentHash(ev));
    }

    [Fact]
    public void Signing_bytes_are_the_redacted_event_without_signatures()
    {
        var ev = MessageEvent();
        Assert.Equal(
            "{\"auth_events\":[\"$auth1\",\"$auth2\"],\"content\":{},\"depth\":7,\"hashes\":{\"sha256\":\"placeholder\"}," +
            "\"origin_server_ts\":1700000000001,\"prev_events\":[\"$prev\"],\"room_id\":\"!room:example.org\"," +
            "\"sender\":\"@alice:example.org\",\"type\":\"m.room.message\"}",
            System.Text.Encoding.UTF8.GetString(EventHashing.SigningBytes(ev, RoomVersion.V11)));
    }

    [Fact]
    public void Hash_and_sign_round_trip_in_every_version()
    {
        using var key = SigningKey.Generate("k");
        foreach (var v in RoomVersion.All)
        {
            var ev = MessageEvent();
            ev.Remove("hashes");
            ev.Remove("signatures");
            EventHashing.HashAndSign(ev, v, "example.org", key);
            Assert.True(EventHashing.VerifyContentHash(ev));
            Assert.True(EventHashing.VerifySignature(ev, v, "example.org", "ed25519:k", key.PublicKey));
            Assert.True(EventHashing.VerifySignature(Redaction.Redact(ev, v), v, "example.org", "ed25519:k", key.PublicKey));
            ev["sender"] = "@mallory:example.org";
            Assert.False(EventHashing.VerifySignature(ev, v, "example.org", "ed25519:k", key.PublicKey));
        }
    }
}

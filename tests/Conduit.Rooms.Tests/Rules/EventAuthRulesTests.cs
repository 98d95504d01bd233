using Conduit.Common;
using System.Text.Json.Nodes;
using Conduit.Common.Events;
using Conduit.Rooms.Rules;

namespace Conduit.Rooms.Tests.Rules;

/// <summary>
/// Hand-written checks of the auth rules that the gomatrixserverlib vectors (all room v1) do not
/// reach: version differences from v3 to v12.
/// </summary>
public class EventAuthRulesTests
{
    private const string Alice = "@alice:a";
    private const string Bob = "@bob:a";
    private const string Carol = "@carol:b";

    /// <summary>A room's auth state; the room id follows the version (v12: from the create event id).</summary>
    private sealed class Room
    {
        public RoomVersion Version { get; }
        public string RoomId { get; }
        public Dictionary<(string, string), JsonObject> State { get; } = new();
        private int _n;

        public Room(string versionId, JsonObject? createContent = null)
        {
            Version = RoomVersion.Find(versionId)!;
            RoomId = Version.RoomIdFromCreateEvent ? "!create" : "!room:a";
            var content = createContent ?? new JsonObject();
            content["room_version"] = versionId;
            if (Version.CreatorInCreateContent && !content.ContainsKey("creator"))
            {
                content["creator"] = Alice;
            }
            var create = new JsonObject
            {
                ["type"] = "m.room.create", ["state_key"] = "", ["sender"] = Alice,
                ["event_id"] = "$create", ["content"] = content, ["prev_events"] = new JsonArray(),
            };
            if (!Version.RoomIdFromCreateEvent)
            {
                create["room_id"] = RoomId;
            }
            State[("m.room.create", "")] = create;
        }

        public JsonObject Event(string type, string sender, string? stateKey, JsonObject content)
        {
            var ev = new JsonObject
            {
                ["type"] = type, ["sender"] = sender, ["room_id"] = RoomId,
                ["event_id"] = $"$e{++_n}:a", ["content"] = content, ["prev_events"] = new JsonArray("$x"),
            };
            if (stateKey is not null)
            {
                ev["state_key"] = stateKey;
            }
            return ev;
        }

        public Room Set(string type, string sender, string stateKey, JsonObject content)
        {
            State[(type, stateKey)] = Event(type, sender, stateKey, content);
            return this;
        }

        public Room Member(string user, string membership) =>
            Set("m.room.member", user, user, new JsonObject { ["membership"] = membership });

        public Room JoinRule(string rule) =>
            Set("m.room.join_rules", Alice, "", new JsonObject { ["join_rule"] = rule });

        public Room PowerLevels(JsonObject content) => Set("m.room.power_levels", Alice, "", content);

        public AuthResult Check(JsonObject ev) => EventAuth.Check(ev, Version, k => State.GetValueOrDefault(k));

        public AuthResult Check(string type, string sender, string? stateKey, JsonObject content) =>
            Check(Event(type, sender, stateKey, content));
    }

    private static JsonObject Members(string membership) => new() { ["membership"] = membership };

    private static JsonObject Users(params (string User, JsonNode Level)[] users)
    {
        var u = new JsonObject();
        foreach (var (user, level) in users)
        {
            u[user] = level;
        }
        return new JsonObject { ["users"] = u };
    }

    private static void Allowed(AuthResult r) => Assert.True(r.Allowed, r.Reason);

    private static void Denied(AuthResult r) => Assert.False(r.Allowed, "expected a rejection");

    [Fact]
    public void Create_v10_needs_creator_v11_does_not()
    {
        var content = new JsonObject { ["room_version"] = "10" };
        var v10 = new JsonObject { ["type"] = "m.room.create", ["state_key"] = "", ["sender"] = Alice, ["room_id"] = "!r:a", ["content"] = content };
        Denied(EventAuth.Check(v10, RoomVersion.V10, _ => null));
        Allowed(EventAuth.Check(v10, RoomVersion.V11, _ => null));
    }

    [Fact]
    public void Create_rejects_unknown_room_version()
    {
        var ev = new JsonObject { ["type"] = "m.room.create", ["state_key"] = "", ["sender"] = Alice, ["room_id"] = "!r:a", ["content"] = new JsonObject { ["room_version"] = "999" } };
        Denied(EventAuth.Check(ev, RoomVersion.V11, _ => null));
    }

    [Fact]
    public void Create_v12_has_no_room_id_and_valid_additional_creators()
    {
        JsonObject Create(JsonObject content, bool withRoomId)
        {
            var ev = new JsonObject { ["type"] = "m.room.create", ["state_key"] = "", ["sender"] = Alice, ["content"] = content };
            if (withRoomId)
            {
                ev["room_id"] = "!r:a";
            }
            return ev;
        }
        Allowed(EventAuth.Check(Create(new JsonObject { ["additional_creators"] = new JsonArray(Bob) }, false), RoomVersion.V12, _ => null));
        Denied(EventAuth.Check(Create(new JsonObject(), true), RoomVersion.V12, _ => null));
        Denied(EventAuth.Check(Create(new JsonObject { ["additional_creators"] = new JsonArray("bob") }, false), RoomVersion.V12, _ => null));
        Denied(EventAuth.Check(Create(new JsonObject { ["additional_creators"] = Bob }, false), RoomVersion.V12, _ => null));
    }

    [Fact]
    public void V12_room_id_must_come_from_the_create_event()
    {
        var room = new Room("12").Member(Alice, "join");
        Allowed(room.Check("m.room.message", Alice, null, new JsonObject()));
        var ev = room.Event("m.room.message", Alice, null, new JsonObject());
        ev["room_id"] = "!other";
        Denied(room.Check(ev));
    }

    [Fact]
    public void First_join_by_creator_v11_uses_create_sender()
    {
        foreach (var v in new[] { "10", "11", "12" })
        {
            var room = new Room(v);
            var join = room.Event("m.room.member", Alice, Alice, Members("join"));
            join["prev_events"] = new JsonArray("$create");
            Allowed(room.Check(join));
            var other = room.Event("m.room.member", Bob, Bob, Members("join"));
            other["prev_events"] = new JsonArray("$create");
            Denied(room.Check(other));
        }
    }

    [Fact]
    public void V12_creators_have_infinite_power()
    {
        var room = new Room("12", new JsonObject { ["additional_creators"] = new JsonArray(Carol) })
            .Member(Alice, "join").Member(Bob, "join").Member(Carol, "join")
            .PowerLevels(Users((Bob, 1000000)));
        // A creator kicks a user with a huge level; that user cannot kick a creator.
        Allowed(room.Check("m.room.member", Alice, Bob, Members("leave")));
        Allowed(room.Check("m.room.member", Carol, Bob, Members("ban")));
        Denied(room.Check("m.room.member", Bob, Alice, Members("leave")));
        Denied(room.Check("m.room.member", Bob, Carol, Members("ban")));
        // Creators cannot kick each other (neither is below the other).
        Denied(room.Check("m.room.member", Alice, Carol, Members("leave")));
        // Power levels may not list creators.
        Denied(room.Check("m.room.power_levels", Alice, "", Users((Alice, 100))));
        Denied(room.Check("m.room.power_levels", Alice, "", Users((Carol, 100))));
        Allowed(room.Check("m.room.power_levels", Alice, "", Users((Bob, 50))));
    }

    [Fact]
    public void Without_power_levels_the_creator_has_100_before_v12()
    {
        var room = new Room("11").Member(Alice, "join").Member(Bob, "join");
        Allowed(room.Check("m.room.member", Alice, Bob, Members("ban")));
        Denied(room.Check("m.room.member", Bob, Alice, Members("ban")));
    }

    [Fact]
    public void String_power_levels_are_accepted_until_v10()
    {
        foreach (var (v, ok) in new[] { ("9", true), ("10", false) })
        {
            var room = new Room(v).Member(Alice, "join");
            var r = room.Check("m.room.power_levels", Alice, "", new JsonObject { ["users"] = new JsonObject { [Alice] = "100" }, ["ban"] = "50" });
            Assert.Equal(ok, r.Allowed);
        }
        // Floats: v1-5 only.
        Allowed(new Room("5").Member(Alice, "join").Check("m.room.power_levels", Alice, "", new JsonObject { ["users"] = new JsonObject { [Alice] = 100.5 } }));
        Denied(new Room("6").Member(Alice, "join").Check("m.room.power_levels", Alice, "", new JsonObject { ["users"] = new JsonObject { [Alice] = 100.5 } }));
    }

    [Fact]
    public void String_levels_in_existing_power_levels_count_before_v10()
    {
        var room = new Room("9").Member(Alice, "join").Member(Bob, "join")
            .PowerLevels(new JsonObject { ["users"] = new JsonObject { [Alice] = "100", [Bob] = " +50 " } });
        Allowed(room.Check("m.room.name", Bob, "", new JsonObject()));
        Denied(room.Check("m.room.member", Bob, Alice, Members("ban")));
    }

    [Fact]
    public void Notifications_are_limited_from_v6()
    {
        foreach (var (v, ok) in new[] { ("5", true), ("6", false) })
        {
            var room = new Room(v).Member(Alice, "join").Member(Bob, "join")
                .PowerLevels(new JsonObject { ["users"] = new JsonObject { [Alice] = 100, [Bob] = 50 }, ["notifications"] = new JsonObject { ["room"] = 50 } });
            var r = room.Check("m.room.power_levels", Bob, "", new JsonObject
            {
                ["users"] = new JsonObject { [Alice] = 100, [Bob] = 50 },
                ["notifications"] = new JsonObject { ["room"] = 100 },
            });
            Assert.Equal(ok, r.Allowed);
        }
    }

    [Fact]
    public void Power_level_changes()
    {
        var room = new Room("10").Member(Alice, "join").Member(Bob, "join").Member(Carol, "join")
            .PowerLevels(Users((Alice, 100), (Bob, 50), (Carol, 50)));
        // Raising someone above oneself, or to one's own level from below, or touching a peer.
        Denied(room.Check("m.room.power_levels", Bob, "", Users((Alice, 100), (Bob, 50), (Carol, 50), ("@d:a", 60))));
        Allowed(room.Check("m.room.power_levels", Bob, "", Users((Alice, 100), (Bob, 50), (Carol, 50), ("@d:a", 50))));
        Denied(room.Check("m.room.power_levels", Bob, "", Users((Alice, 100), (Bob, 50), (Carol, 0))));
        // Lowering oneself is fine.
        Allowed(room.Check("m.room.power_levels", Bob, "", Users((Alice, 100), (Bob, 10), (Carol, 50))));
        // Named levels above the sender's.
        var raiseBan = Users((Alice, 100), (Bob, 50), (Carol, 50));
        raiseBan["ban"] = 60;
        Denied(room.Check("m.room.power_levels", Bob, "", raiseBan));
        // Non-integer and non-user-id entries.
        var bad = Users((Alice, 100));
        bad["kick"] = "50";
        Denied(room.Check("m.room.power_levels", Alice, "", bad));
        Denied(room.Check("m.room.power_levels", Alice, "", Users(("not-a-user", 1))));
    }

    [Fact]
    public void Aliases_special_case_until_v5()
    {
        var v5 = new Room("5");
        Allowed(v5.Check("m.room.aliases", Carol, "b", new JsonObject()));
        Denied(v5.Check("m.room.aliases", Carol, "a", new JsonObject()));
        // v6: an ordinary state event, so the sender must be joined.
        Denied(new Room("6").Check("m.room.aliases", Carol, "b", new JsonObject()));
    }

    [Fact]
    public void Redaction_rule_only_in_v1_and_v2()
    {
        foreach (var (v, sameDomainOnly) in new[] { ("1", true), ("2", true), ("3", false) })
        {
            var room = new Room(v).Member(Alice, "join").Member(Carol, "join").PowerLevels(Users((Alice, 100)));
            var own = room.Event("m.room.redaction", Carol, null, new JsonObject());
            own["event_id"] = "$r1:b";
            own["redacts"] = "$x:b";
            Allowed(room.Check(own));
            var foreign = room.Event("m.room.redaction", Carol, null, new JsonObject());
            foreign["event_id"] = "$r2:b";
            foreign["redacts"] = "$x:a";
            Assert.Equal(!sameDomainOnly, room.Check(foreign).Allowed);
        }
    }

    [Fact]
    public void Restricted_joins_from_v8()
    {
        JsonObject Join(Room room, string? via, bool signed = true)
        {
            var content = Members("join");
            if (via is not null)
            {
                content["join_authorised_via_users_server"] = via;
            }
            var ev = room.Event("m.room.member", Carol, Carol, content);
            if (signed && via is not null)
            {
                ev["signatures"] = new JsonObject { [Ids.ServerOf(via)] = new JsonObject { ["ed25519:1"] = "sig" } };
            }
            return ev;
        }
        var v8 = new Room("8").Member(Alice, "join").Member(Bob, "join").JoinRule("restricted")
            .PowerLevels(Users((Alice, 100)));
        Allowed(v8.Check(Join(v8, Alice)));
        Denied(v8.Check(Join(v8, null)));
        Denied(v8.Check(Join(v8, Alice, signed: false)));
        var inviteLevel = Users((Alice, 100));
        inviteLevel["invite"] = 50;
        v8.PowerLevels(inviteLevel);
        Denied(v8.Check(Join(v8, Bob))); // Bob is joined but below the invite level
        Denied(v8.Check(Join(v8, "@dave:a"))); // not joined
        var v7 = new Room("7").Member(Alice, "join").JoinRule("restricted");
        Denied(v7.Check(Join(v7, Alice)));
        // knock_restricted: v10+.
        var v9 = new Room("9").Member(Alice, "join").JoinRule("knock_restricted");
        Denied(v9.Check(Join(v9, Alice)));
        var v10 = new Room("10").Member(Alice, "join").JoinRule("knock_restricted");
        Allowed(v10.Check(Join(v10, Alice)));
    }

    [Fact]
    public void Knocking_from_v7()
    {
        Denied(new Room("6").Member(Alice, "join").JoinRule("knock").Check("m.room.member", Carol, Carol, Members("knock")));
        var v7 = new Room("7").Member(Alice, "join").JoinRule("knock");
        Allowed(v7.Check("m.room.member", Carol, Carol, Members("knock")));
        Denied(v7.Check("m.room.member", Alice, Carol, Members("knock")));
        v7.Member(Carol, "ban");
        Denied(v7.Check("m.room.member", Carol, Carol, Members("knock")));
        // Rescinding a knock (v7+).
        var knocked = new Room("7").Member(Alice, "join").JoinRule("knock").Member(Carol, "knock");
        Allowed(knocked.Check("m.room.member", Carol, Carol, Members("leave")));
        Denied(new Room("6").Member(Alice, "join").Member(Carol, "knock").Check("m.room.member", Carol, Carol, Members("leave")));
        // knock_restricted accepts knocks from v10.
        Denied(new Room("9").JoinRule("knock_restricted").Check("m.room.member", Carol, Carol, Members("knock")));
        Allowed(new Room("10").JoinRule("knock_restricted").Check("m.room.member", Carol, Carol, Members("knock")));
    }

    [Fact]
    public void Membership_changes()
    {
        var room = new Room("10").Member(Alice, "join").Member(Bob, "join").JoinRule("invite")
            .PowerLevels(Users((Alice, 100), (Bob, 50)));
        Allowed(room.Check("m.room.member", Alice, Carol, Members("invite")));
        Denied(room.Check("m.room.member", Alice, Bob, Members("invite"))); // already joined
        Denied(room.Check("m.room.member", Carol, Carol, Members("join"))); // invite only
        Denied(room.Check("m.room.member", Bob, Alice, Members("leave"))); // kick a higher user
        Allowed(room.Check("m.room.member", Alice, Bob, Members("leave")));
        room.Member(Carol, "ban");
        Denied(room.Check("m.room.member", Carol, Carol, Members("join")));
        Denied(room.Check("m.room.member", Carol, Carol, Members("leave")));
        Allowed(room.Check("m.room.member", Alice, Carol, Members("leave"))); // unban
        Denied(room.Check("m.room.member", Alice, Carol, Members("foo")));
        room.Member(Carol, "invite");
        Allowed(room.Check("m.room.member", Carol, Carol, Members("join")));
    }

    [Fact]
    public void State_keys_starting_with_at_belong_to_that_user()
    {
        var room = new Room("11").Member(Alice, "join");
        Allowed(room.Check("x.custom", Alice, Alice, new JsonObject()));
        Denied(room.Check("x.custom", Alice, Bob, new JsonObject()));
    }

    [Fact]
    public void Non_federating_rooms_reject_other_servers()
    {
        var room = new Room("11", new JsonObject { ["m.federate"] = false }).Member(Alice, "join").Member(Carol, "join");
        Allowed(room.Check("m.room.message", Alice, null, new JsonObject()));
        Denied(room.Check("m.room.message", Carol, null, new JsonObject()));
    }

    [Fact]
    public void Auth_events_from_another_room_are_rejected()
    {
        var room = new Room("11").Member(Alice, "join");
        room.State[("m.room.member", Alice)]["room_id"] = "!elsewhere:a";
        Denied(room.Check("m.room.message", Alice, null, new JsonObject()));
    }
}

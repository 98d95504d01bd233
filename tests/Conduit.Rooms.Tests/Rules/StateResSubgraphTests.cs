using System.Text.Json.Nodes;
using Conduit.Common.Events;
using Conduit.Rooms.Rules;

namespace Conduit.Rooms.Tests.Rules;

/// <summary>
/// Hand-built DAGs for parts of state resolution that the ruma vectors do not reach: the v2.1
/// conflicted state subgraph (rooms/v12.md), and v1 being unsupported.
/// </summary>
public class StateResSubgraphTests
{
    private const string Alice = "@alice:a";
    private const string Bob = "@bob:a";

    /// <summary>
    /// PL3 (by Bob) is authorised by PL2, which raised Bob from 50 to 100 and itself cites PL1.
    /// One state set has PL3, the other PL1; PL2 is in both full auth chains (a topic both sets
    /// share cites it), so it is not in the auth difference. Conflicted: PL1 and PL3.
    /// v2.1 adds PL2 as part of the conflicted state subgraph (PL3 -> PL2 -> PL1), so PL3 is
    /// checked against PL2 and wins. v2 never sees PL2 and checks PL3 against PL1, where Bob
    /// (50) may not raise himself to 100, so PL1 stays.
    /// </summary>
    [Theory]
    [InlineData("11", "$P1")]
    [InlineData("12", "$P3")]
    public void Conflicted_subgraph_brings_in_intermediate_power_levels(string versionId, string expectedPl)
    {
        var version = RoomVersion.Find(versionId)!;
        bool v12 = version.RoomIdFromCreateEvent;
        string roomId = v12 ? "!C" : "!room:a";
        var events = new Dictionary<string, JsonObject>();
        long ts = 0;
        void Add(string id, string type, string sender, string stateKey, JsonObject content, params string[] auth)
        {
            var authEvents = new JsonArray();
            if (!v12 && type != "m.room.create")
            {
                authEvents.Add("$C");
            }
            foreach (var a in auth)
            {
                authEvents.Add(a);
            }
            var ev = new JsonObject
            {
                ["event_id"] = id, ["type"] = type, ["sender"] = sender, ["state_key"] = stateKey,
                ["content"] = content, ["origin_server_ts"] = ts++, ["auth_events"] = authEvents,
                ["prev_events"] = new JsonArray(),
            };
            if (!v12 || type != "m.room.create")
            {
                ev["room_id"] = roomId;
            }
            events[id] = ev;
        }
        var createContent = new JsonObject { ["room_version"] = versionId };
        Add("$C", "m.room.create", Alice, "", createContent);
        Add("$A", "m.room.member", Alice, Alice, new JsonObject { ["membership"] = "join" });
        // Alice is a creator: v12 forbids listing her in users, so give her 100 only before v12.
        JsonObject Users(int bob)
        {
            var users = new JsonObject { [Bob] = bob };
            if (!v12)
            {
                users[Alice] = 100;
            }
            return new JsonObject { ["users"] = users };
        }
        Add("$P1", "m.room.power_levels", Alice, "", Users(50), "$A");
        Add("$J", "m.room.join_rules", Alice, "", new JsonObject { ["join_rule"] = "public" }, "$A", "$P1");
        Add("$B", "m.room.member", Bob, Bob, new JsonObject { ["membership"] = "join" }, "$P1", "$J");
        Add("$P2", "m.room.power_levels", Alice, "", Users(100), "$A", "$P1");
        Add("$T", "m.room.topic", Alice, "", new JsonObject { ["topic"] = "t" }, "$A", "$P2");
        var p3 = Users(100);
        p3["users"]!["@carol:a"] = 50;
        Add("$P3", "m.room.power_levels", Bob, "", p3, "$B", "$P2");

        Dictionary<(string Type, string StateKey), string> Set(string pl) => new()
        {
            [("m.room.create", "")] = "$C",
            [("m.room.member", Alice)] = "$A",
            [("m.room.join_rules", "")] = "$J",
            [("m.room.member", Bob)] = "$B",
            [("m.room.topic", "")] = "$T",
            [("m.room.power_levels", "")] = pl,
        };
        var resolved = StateResolution.Resolve(version, [Set("$P3"), Set("$P1")], id => events.GetValueOrDefault(id));
        Assert.Equal(expectedPl, resolved[("m.room.power_levels", "")]);
        Assert.Equal("$B", resolved[("m.room.member", Bob)]);
        Assert.Equal("$T", resolved[("m.room.topic", "")]);
    }

    [Fact]
    public void Unconflicted_state_is_returned_as_is()
    {
        var set = new Dictionary<(string Type, string StateKey), string> { [("m.room.create", "")] = "$C" };
        var resolved = StateResolution.Resolve(RoomVersion.V11, [set, set], _ => null);
        Assert.Equal("$C", resolved[("m.room.create", "")]);
        Assert.Single(resolved);
    }

    [Fact]
    public void State_resolution_v1_is_not_implemented()
    {
        Assert.Throws<NotSupportedException>(() => StateResolution.Resolve(RoomVersion.V1, [], _ => null));
    }
}

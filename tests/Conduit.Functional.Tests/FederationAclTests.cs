using System.Net;
using System.Text.Json.Nodes;
using static Conduit.Functional.Tests.MatrixClient;

namespace Conduit.Functional.Tests;

/// <summary>
/// Server ACLs between two real servers (spec: client-server-api, "Server Access Control Lists"): A is
/// <c>localhost:PORT</c>, B the IP literal <c>127.0.0.1:PORT</c>, so a room on A can deny B (by
/// <c>allow_ip_literals: false</c>) without denying itself. Once the ACL is in the room, B's users cannot join through
/// A, and what B sends for the room (its users' messages and joins) no longer reaches A's users.
/// </summary>
public sealed class FederationAclTests(IpLiteralFederationPairFixture pair) : IClassFixture<IpLiteralFederationPairFixture>
{
    static async Task<List<string>> BodiesSeenWithin(MatrixClient c, string roomId, TimeSpan window, Func<List<string>, bool>? until = null)
    {
        var seen = new List<string>();
        string? since = null;
        var deadline = DateTime.UtcNow + window;
        while (DateTime.UtcNow < deadline)
        {
            var s = await c.Sync(since, timeoutMs: since is null ? 0 : 2000);
            seen.AddRange(TimelineBodies(s, roomId));
            if (until?.Invoke(seen) == true) break;
            since = s["next_batch"]!.GetValue<string>();
        }
        return seen;
    }

    [Fact]
    public async Task Once_a_rooms_acl_denies_the_other_server_its_joins_and_messages_do_not_reach_the_room()
    {
        var alice = await Register(pair.A);
        var bob = await Register(pair.B);
        Assert.EndsWith(":127.0.0.1:" + pair.Port(pair.B), bob.UserId, StringComparison.Ordinal);
        var room = await alice.CreateRoom(new JsonObject { ["preset"] = "public_chat" });
        (await bob.Post($"{C}/join/{E(room)}?via={E(pair.A.ServerName)}", new JsonObject())).Ok();
        await bob.SendText(room, "before the acl");
        Assert.Contains("before the acl", await BodiesSeenWithin(alice, room, TimeSpan.FromSeconds(60), s => s.Contains("before the acl")));

        (await alice.Put($"{C}/rooms/{E(room)}/state/m.room.server_acl/", new JsonObject
        {
            ["allow"] = new JsonArray("*"), ["deny"] = new JsonArray(), ["allow_ip_literals"] = false,
        })).Ok();

        // Carol of B joins on B (B is in the room, so it makes the join itself): A drops the PDU, she is no member there.
        var carol = await Register(pair.B);
        await carol.Post($"{C}/join/{E(room)}?via={E(pair.A.ServerName)}", new JsonObject());

        // Bob, still joined as far as B knows, sends a message: A drops the PDU, Alice never sees it.
        await bob.SendText(room, "after the acl");
        await alice.SendText(room, "marker from alice");
        var seen = await BodiesSeenWithin(alice, room, TimeSpan.FromSeconds(5));
        Assert.Contains("marker from alice", seen);
        Assert.DoesNotContain("after the acl", seen);
        var members = (await alice.Get($"{C}/rooms/{E(room)}/joined_members")).Ok().Obj["joined"]!.AsObject().Select(kv => kv.Key).Order().ToList();
        Assert.Equal(new[] { alice.UserId, bob.UserId }.Order(), members);
    }

    [Fact]
    public async Task A_room_that_denies_the_other_server_from_the_start_refuses_its_users_join()
    {
        var alice = await Register(pair.A);
        var room = await alice.CreateRoom(new JsonObject
        {
            ["preset"] = "public_chat",
            ["initial_state"] = new JsonArray(new JsonObject
            {
                ["type"] = "m.room.server_acl", ["state_key"] = "",
                ["content"] = new JsonObject { ["allow"] = new JsonArray("*"), ["allow_ip_literals"] = false },
            }),
        });
        var carol = await Register(pair.B);
        var join = await carol.Post($"{C}/join/{E(room)}?via={E(pair.A.ServerName)}", new JsonObject());
        Assert.Equal((HttpStatusCode.Forbidden, "M_FORBIDDEN"), (join.Status, join.ErrCode));
        var members = (await alice.Get($"{C}/rooms/{E(room)}/joined_members")).Ok().Obj["joined"]!.AsObject().Select(kv => kv.Key).ToList();
        Assert.Equal([alice.UserId], members);
        // Nor can B's server read the room: its joined-rooms list stays empty of it.
        Assert.DoesNotContain(room, (await carol.Get($"{C}/joined_rooms")).Ok().Obj["joined_rooms"]!.AsArray().Select(r => r!.GetValue<string>()));
    }
}

using System.Text.Json.Nodes;
using static Conduit.Functional.Tests.MatrixClient;

namespace Conduit.Functional.Tests;

/// <summary>Lazy-loaded members in /sync (spec: client-server-api, "Lazy-loading room members") through the edge.</summary>
public abstract class LazyLoadingTests(ServerFixture server)
{
    const string Lazy = """{"room":{"state":{"lazy_load_members":true},"timeline":{"limit":2}}}""";

    static string[] StateMembers(JsonObject sync, string roomId)
        => (sync["rooms"]?["join"]?[roomId]?["state"]?["events"] as JsonArray ?? [])
            .Where(e => e!["type"]!.GetValue<string>() == "m.room.member")
            .Select(e => e!["state_key"]!.GetValue<string>()).Order(StringComparer.Ordinal).ToArray();

    [Fact]
    public async Task Only_the_timelines_senders_and_yourself_are_sent()
    {
        var me = await Register(server);
        var room = await me.CreateRoom(new JsonObject { ["preset"] = "public_chat" });
        var others = new List<MatrixClient>();
        for (var i = 0; i < 4; i++)
        {
            var u = await Register(server);
            (await u.Post($"{C}/join/{E(room)}", new JsonObject())).Ok();
            others.Add(u);
        }
        await others[0].SendText(room, "one");
        await others[1].SendText(room, "two");

        // Without lazy loading: every member. With it: the two senders of the last two events, and me.
        Assert.Equal(5, StateMembers(await me.Sync(filter: """{"room":{"timeline":{"limit":2}}}"""), room).Length);
        var initial = await me.Sync(filter: Lazy);
        Assert.Equal(new[] { me.UserId, others[0].UserId, others[1].UserId }.Order(StringComparer.Ordinal).ToArray(), StateMembers(initial, room));
        // The summary still counts everyone, so the client can name the room.
        Assert.Equal(5, initial["rooms"]!["join"]![room]!["summary"]!["m.joined_member_count"]!.GetValue<int>());

        // Incremental: a member whose join the client never got sends; their member event comes with it.
        var since = initial["next_batch"]!.GetValue<string>();
        await others[3].SendText(room, "three");
        var next = await me.Sync(since, filter: Lazy);
        Assert.Contains(others[3].UserId, StateMembers(next, room));
        Assert.DoesNotContain(others[2].UserId, StateMembers(next, room));
    }
}

public sealed class AllInOneLazyLoadingTests(AllInOneFixture f) : LazyLoadingTests(f), IClassFixture<AllInOneFixture>;

public sealed class SplitLazyLoadingTests(SplitFixture f) : LazyLoadingTests(f), IClassFixture<SplitFixture>;

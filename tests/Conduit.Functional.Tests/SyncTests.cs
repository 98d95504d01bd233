using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text.Json.Nodes;
using static Conduit.Functional.Tests.MatrixClient;

namespace Conduit.Functional.Tests;

/// <summary>/sync at scale and its account data, through the edge. The same tests run all-in-one and split.</summary>
public abstract class SyncTests(ServerFixture server)
{
    const int RoomCount = 300;

    [Fact]
    public async Task An_initial_sync_of_a_user_in_many_rooms_has_every_room_whole()
    {
        var u = await Register(server);
        var names = new Dictionary<string, string>();
        var created = 0;
        await Parallel.ForEachAsync(Enumerable.Range(0, RoomCount), new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (_, _) =>
        {
            var name = $"Room {Interlocked.Increment(ref created)}";
            var id = await u.CreateRoom(new JsonObject { ["name"] = name });
            lock (names) names[id] = name;
        });
        var ids = names.Keys.Order(StringComparer.Ordinal).ToList();
        var tagged = new[] { ids[0], ids[RoomCount / 2], ids[^1] };
        foreach (var room in tagged)
            (await u.Put($"{C}/user/{E(u.UserId)}/rooms/{E(room)}/account_data/m.tag", new JsonObject { ["tags"] = new JsonObject { ["u.work"] = new JsonObject() } })).Ok();
        var other = await Register(server);
        var invitedTo = await other.CreateRoom(new JsonObject { ["invite"] = new JsonArray(u.UserId) });

        // The raw response: it is sent as it is built (no length known up front), and it parses as one JSON object.
        using var req = new HttpRequestMessage(HttpMethod.Get, server.BaseUrl + C + "/sync?timeout=0");
        req.Headers.Authorization = new AuthenticationHeaderValue("Bearer", u.Token);
        using var resp = await server.Http.SendAsync(req);
        Assert.Equal(System.Net.HttpStatusCode.OK, resp.StatusCode);
        Assert.True(resp.Headers.TransferEncodingChunked, "a large sync is sent as it is built, in chunks");
        var text = await resp.Content.ReadAsStringAsync();
        var sync = JsonNode.Parse(text)!.AsObject();

        var join = sync["rooms"]!["join"]!.AsObject();
        Assert.Equal(ids, join.Select(kv => kv.Key).Order(StringComparer.Ordinal));
        foreach (var (id, room) in join)
        {
            var timeline = room!["timeline"]!["events"]!.AsArray();
            var events = timeline.Concat(room["state"]!["events"]!.AsArray()).Select(e => e!.AsObject()).ToList();
            Assert.All(events, e => Assert.StartsWith("$", e["event_id"]!.GetValue<string>()));
            Assert.Equal("m.room.create", timeline[0]!["type"]!.GetValue<string>());
            Assert.Equal(names[id], Assert.Single(events, e => e["type"]!.GetValue<string>() == "m.room.name")["content"]!["name"]!.GetValue<string>());
            Assert.Equal(1, room["summary"]!["m.joined_member_count"]!.GetValue<int>());
            string[] expected = tagged.Contains(id) ? ["m.tag"] : [];
            Assert.Equal(expected, room["account_data"]!["events"]!.AsArray().Select(e => e!["type"]!.GetValue<string>()));
        }
        // The server's first account (whichever test registers first) is also invited into the admin room.
        var adminRoom = (await u.Get($"{C}/directory/room/{E("#admins:" + server.ServerName)}")).Obj["room_id"]?.GetValue<string>();
        Assert.Equal([invitedTo], sync["rooms"]!["invite"]!.AsObject().Select(kv => kv.Key).Where(r => r != adminRoom));
        Assert.Empty(sync["rooms"]!["leave"]!.AsObject());
        Assert.Contains(sync["account_data"]!["events"]!.AsArray(), e => e!["type"]!.GetValue<string>() == "m.push_rules");

        // The same rooms through a filter: the rooms service applies the typed filter sync parsed.
        var five = ids.Take(5).ToList();
        var filter = new JsonObject
        {
            ["room"] = new JsonObject
            {
                ["rooms"] = new JsonArray([.. five.Select(r => (JsonNode)r)]),
                ["timeline"] = new JsonObject { ["limit"] = 1 },
                ["state"] = new JsonObject { ["types"] = new JsonArray("m.room.name") },
            },
        };
        var filtered = (await u.Sync(filter: filter.ToJsonString()))["rooms"]!["join"]!.AsObject();
        Assert.Equal(five, filtered.Select(kv => kv.Key).Order(StringComparer.Ordinal));
        foreach (var (_, room) in filtered)
        {
            Assert.Single(room!["timeline"]!["events"]!.AsArray());
            Assert.True(room["timeline"]!["limited"]!.GetValue<bool>());
            Assert.All(room["state"]!["events"]!.AsArray(), e => Assert.Equal("m.room.name", e!["type"]!.GetValue<string>()));
        }

        // And the next incremental sync has nothing to say.
        var next = await u.Sync(sync["next_batch"]!.GetValue<string>());
        Assert.Empty(next["rooms"]!["join"]!.AsObject());
    }

    [Fact]
    public async Task Per_room_account_data_alone_wakes_a_waiting_sync_and_reaches_it()
    {
        var u = await Register(server);
        var room = await u.CreateRoom();
        var since = (await u.Sync())["next_batch"]!.GetValue<string>();

        var sw = Stopwatch.StartNew();
        var waiting = u.Sync(since, timeoutMs: 30_000);
        await Task.Delay(300);
        Assert.False(waiting.IsCompleted, "a sync with nothing new must wait");
        (await u.Put($"{C}/user/{E(u.UserId)}/rooms/{E(room)}/account_data/org.example.read", new JsonObject { ["event_id"] = "$x" })).Ok();
        var woke = await waiting;

        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(15), $"sync took {sw.Elapsed}");
        var r = woke["rooms"]!["join"]![room]!;
        Assert.Equal("$x", Assert.Single(r["account_data"]!["events"]!.AsArray())!["content"]!["event_id"]!.GetValue<string>());
        Assert.Empty(r["timeline"]!["events"]!.AsArray());
    }
}

public sealed class AllInOneSyncTests(AllInOneFixture f) : SyncTests(f), IClassFixture<AllInOneFixture>;

public sealed class SplitSyncTests(SplitFixture f) : SyncTests(f), IClassFixture<SplitFixture>;

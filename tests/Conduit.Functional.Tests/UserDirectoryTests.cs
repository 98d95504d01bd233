using System.Net;
using System.Text.Json.Nodes;
using static Conduit.Functional.Tests.MatrixClient;

namespace Conduit.Functional.Tests;

/// <summary>POST /user_directory/search (spec: client-server-api, "User directory"): room-mates and members of public rooms only.</summary>
public abstract class UserDirectoryTests(ServerFixture server)
{
    static void Error(Response r, HttpStatusCode status, string errcode)
    {
        Assert.True(r.Status == status, $"expected {(int)status}, got {(int)r.Status}: {r.Body?.ToJsonString()}");
        Assert.Equal(errcode, r.ErrCode);
    }

    async Task<JsonObject> Search(MatrixClient c, string term, int? limit = null)
    {
        var body = new JsonObject { ["search_term"] = term };
        if (limit is not null) body["limit"] = limit;
        return (await c.Post($"{C}/user_directory/search", body)).Ok().Obj;
    }

    static List<string> Ids(JsonObject r) => r["results"]!.AsArray().Select(x => x!["user_id"]!.GetValue<string>()).ToList();

    async Task SetName(MatrixClient c, string name)
        => (await c.Put($"{C}/profile/{E(c.UserId)}/displayname", new JsonObject { ["displayname"] = name })).Ok();

    [Fact]
    public async Task A_room_mate_is_found_by_display_name_and_by_user_id()
    {
        var alice = await Register(server);
        var bob = await Register(server);
        var tag = UniqueName("Zed");
        await SetName(bob, $"Bobby {tag}");
        var room = await alice.CreateRoom(new JsonObject { ["invite"] = new JsonArray(bob.UserId) });
        (await bob.Post($"{C}/rooms/{E(room)}/join", new JsonObject())).Ok();

        var byName = await Search(alice, tag.ToLowerInvariant());
        Assert.Equal([bob.UserId], Ids(byName));
        var hit = byName["results"]![0]!;
        Assert.Equal($"Bobby {tag}", hit["display_name"]!.GetValue<string>());
        Assert.False(byName["limited"]!.GetValue<bool>());

        var localpart = bob.UserId[1..bob.UserId.IndexOf(':')];
        Assert.Contains(bob.UserId, Ids(await Search(alice, localpart.ToUpperInvariant())));
        // Word prefix of the display name.
        Assert.Contains(bob.UserId, Ids(await Search(alice, "bobby " + tag[..4])));
    }

    [Fact]
    public async Task A_member_of_a_public_room_is_found_by_a_stranger_but_not_a_member_of_a_private_one()
    {
        var stranger = await Register(server);
        var pub = await Register(server);
        var priv = await Register(server);
        var friend = await Register(server);
        var tag = UniqueName("Qx");
        await SetName(pub, $"Public {tag}");
        await SetName(priv, $"Private {tag}");
        await pub.CreateRoom(new JsonObject { ["preset"] = "public_chat" });
        var secret = await priv.CreateRoom(new JsonObject { ["preset"] = "private_chat", ["invite"] = new JsonArray(friend.UserId) });
        (await friend.Post($"{C}/rooms/{E(secret)}/join", new JsonObject())).Ok();

        var found = Ids(await Search(stranger, tag));
        Assert.Equal([pub.UserId], found);
        // The private room's other member does see them.
        Assert.Contains(priv.UserId, Ids(await Search(friend, tag)));
    }

    [Fact]
    public async Task Limit_cuts_the_results_and_says_so()
    {
        var owner = await Register(server);
        var tag = UniqueName("Lim");
        var room = await owner.CreateRoom(new JsonObject { ["preset"] = "public_chat" });
        for (var i = 0; i < 3; i++)
        {
            var u = await Register(server);
            await SetName(u, $"{tag} {i}");
            (await u.Post($"{C}/join/{E(room)}", new JsonObject())).Ok();
        }
        var two = await Search(owner, tag, 2);
        Assert.Equal(2, Ids(two).Count);
        Assert.True(two["limited"]!.GetValue<bool>());
        var all = await Search(owner, tag);
        Assert.Equal(3, Ids(all).Count);
        Assert.False(all["limited"]!.GetValue<bool>());
    }

    [Fact]
    public async Task Search_term_is_required_and_a_token_too()
    {
        var u = await Register(server);
        Error(await u.Post($"{C}/user_directory/search", new JsonObject { ["limit"] = 5 }), HttpStatusCode.BadRequest, "M_MISSING_PARAM");
        Error(await u.Post($"{C}/user_directory/search", new JsonObject { ["search_term"] = 5 }), HttpStatusCode.BadRequest, "M_BAD_JSON");
        Error(await u.Post($"{C}/user_directory/search", new JsonObject { ["search_term"] = "a", ["limit"] = -1 }), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        var anon = new MatrixClient(server);
        Error(await anon.Call("POST", $"{C}/user_directory/search", new JsonObject { ["search_term"] = "a" }, auth: false), HttpStatusCode.Unauthorized, "M_MISSING_TOKEN");
    }
}

public sealed class AllInOneUserDirectoryTests(AllInOneFixture f) : UserDirectoryTests(f), IClassFixture<AllInOneFixture>;

public sealed class SplitUserDirectoryTests(SplitFixture f) : UserDirectoryTests(f), IClassFixture<SplitFixture>;

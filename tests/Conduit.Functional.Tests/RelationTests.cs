using System.Net;
using System.Text.Json.Nodes;
using static Conduit.Functional.Tests.MatrixClient;

namespace Conduit.Functional.Tests;

/// <summary>
/// Relations, threads and server-side aggregations (spec: client-server-api, "Relationships between events",
/// "Threading", "Event replacements", "Event annotations") through the edge. Both modes.
/// </summary>
public abstract class RelationTests(ServerFixture server)
{
    const string V1 = "/_matrix/client/v1";
    static int _txn;

    static async Task<string> Send(MatrixClient u, string room, string type, JsonObject content)
        => (await u.Put($"{C}/rooms/{E(room)}/send/{type}/rel{Interlocked.Increment(ref _txn)}", content)).Ok().Obj["event_id"]!.GetValue<string>();

    static JsonObject Rel(string relType, string parent, JsonObject? content = null)
    {
        content ??= new JsonObject { ["msgtype"] = "m.text", ["body"] = relType };
        content["m.relates_to"] = new JsonObject { ["rel_type"] = relType, ["event_id"] = parent };
        return content;
    }

    static JsonObject Text(string body) => new() { ["msgtype"] = "m.text", ["body"] = body };

    static Task<string> Reply(MatrixClient u, string room, string root, string body) => Send(u, room, "m.room.message", Rel("m.thread", root, Text(body)));

    static Task<string> Edit(MatrixClient u, string room, string original, string body)
        => Send(u, room, "m.room.message", Rel("m.replace", original, new JsonObject { ["msgtype"] = "m.text", ["body"] = "* " + body, ["m.new_content"] = Text(body) }));

    static Task<Response> Relations(MatrixClient u, string room, string path, string query = "")
        => u.Get($"{V1}/rooms/{E(room)}/relations/{path}{(query.Length > 0 ? "?" + query : "")}");

    static List<string> Ids(Response r) => r.Ok().Obj["chunk"]!.AsArray().Select(e => e!["event_id"]!.GetValue<string>()).ToList();

    static JsonNode? Aggregation(JsonNode? ev, string relType) => ev?["unsigned"]?["m.relations"]?[relType];

    async Task<(MatrixClient Alice, MatrixClient Bob, string Room)> Room()
    {
        var alice = await Register(server);
        var bob = await Register(server);
        var room = await alice.CreateRoom(new JsonObject { ["preset"] = "public_chat" });
        (await bob.Post($"{C}/join/{E(room)}", new JsonObject())).Ok();
        return (alice, bob, room);
    }

    [Fact]
    public async Task Relations_are_listed_by_rel_type_and_event_type_and_paginate_both_ways()
    {
        var (alice, bob, room) = await Room();
        var root = await alice.SendText(room, "root");
        var t1 = await Reply(bob, room, root, "one");
        var reaction = await Send(bob, room, "m.reaction", new JsonObject { ["m.relates_to"] = new JsonObject { ["rel_type"] = "m.annotation", ["event_id"] = root, ["key"] = "👍" } });
        var t2 = await Reply(alice, room, root, "two");
        var reference = await Send(alice, room, "org.example.note", Rel("m.reference", root));
        var t3 = await Reply(bob, room, root, "three");
        // Not relations: malformed m.relates_to, a relation to an event of another room, a reply (m.in_reply_to only).
        await Send(alice, room, "m.room.message", new JsonObject { ["body"] = "x", ["m.relates_to"] = new JsonObject { ["rel_type"] = 5, ["event_id"] = root } });
        await Send(alice, room, "m.room.message", new JsonObject { ["body"] = "x", ["m.relates_to"] = new JsonObject { ["rel_type"] = "m.thread", ["event_id"] = "not an id" } });
        var other = await alice.CreateRoom();
        await Send(alice, other, "m.room.message", Rel("m.thread", root));
        await Send(alice, room, "m.room.message", new JsonObject { ["body"] = "x", ["m.relates_to"] = new JsonObject { ["m.in_reply_to"] = new JsonObject { ["event_id"] = root } } });

        Assert.Equal([t3, reference, t2, reaction, t1], Ids(await Relations(alice, room, E(root), "limit=50")));
        Assert.Equal([t1, reaction, t2, reference, t3], Ids(await Relations(alice, room, E(root), "limit=50&dir=f")));
        Assert.Equal([t3, t2, t1], Ids(await Relations(alice, room, $"{E(root)}/m.thread")));
        Assert.Equal([reaction], Ids(await Relations(bob, room, $"{E(root)}/m.annotation/m.reaction")));
        Assert.Equal([reference], Ids(await Relations(bob, room, $"{E(root)}/m.reference/org.example.note")));
        Assert.Empty(Ids(await Relations(bob, room, $"{E(root)}/m.thread/m.reaction")));
        Assert.Empty(Ids(await Relations(bob, room, $"{E(t1)}")));
        // The whole event, formatted as /messages does.
        var listed = (await Relations(bob, room, $"{E(root)}/m.annotation")).Ok().Obj["chunk"]![0]!;
        Assert.Equal(("m.reaction", "👍", room), (listed["type"]!.GetValue<string>(), listed["content"]!["m.relates_to"]!["key"]!.GetValue<string>(), listed["room_id"]!.GetValue<string>()));

        // Backwards, two at a time.
        var page1 = (await Relations(alice, room, $"{E(root)}/m.thread", "limit=2")).Ok();
        Assert.Equal([t3, t2], Ids(page1));
        Assert.Null(page1.Obj["prev_batch"]);
        var next = page1.Obj["next_batch"]!.GetValue<string>();
        var page2 = (await Relations(alice, room, $"{E(root)}/m.thread", $"limit=2&from={E(next)}")).Ok();
        Assert.Equal([t1], Ids(page2));
        Assert.Null(page2.Obj["next_batch"]);
        Assert.Equal(next, page2.Obj["prev_batch"]!.GetValue<string>());
        // Forwards, two at a time, and a `to` that stops the first page short.
        var f1 = (await Relations(alice, room, $"{E(root)}/m.thread", "limit=2&dir=f")).Ok();
        Assert.Equal([t1, t2], Ids(f1));
        var f2 = (await Relations(alice, room, $"{E(root)}/m.thread", $"limit=2&dir=f&from={E(f1.Obj["next_batch"]!.GetValue<string>())}")).Ok();
        Assert.Equal([t3], Ids(f2));
        Assert.Null(f2.Obj["next_batch"]);
        // `to` the first page's next_batch: the first page again, and no further.
        Assert.Equal([t3, t2], Ids(await Relations(alice, room, $"{E(root)}/m.thread", $"limit=5&to={E(next)}")));
        Assert.Equal("M_INVALID_PARAM", (await Relations(alice, room, E(root), "dir=x")).ErrCode);
        Assert.Equal("M_NOT_FOUND", (await Relations(alice, room, E("$nope:test.local"))).ErrCode);
        // The parent must be of the room in the path.
        Assert.Equal("M_NOT_FOUND", (await Relations(alice, other, E(root))).ErrCode);
    }

    [Fact]
    public async Task Recurse_follows_relations_of_relations_three_levels_deep()
    {
        var (alice, _, room) = await Room();
        var root = await alice.SendText(room, "root");
        var a = await Send(alice, room, "m.room.message", Rel("m.reference", root));
        var b = await Send(alice, room, "m.reaction", new JsonObject { ["m.relates_to"] = new JsonObject { ["rel_type"] = "m.annotation", ["event_id"] = a, ["key"] = "x" } });
        var c = await Send(alice, room, "m.room.message", Rel("m.reference", b));
        var d = await Send(alice, room, "m.room.message", Rel("m.reference", c));
        var flat = (await Relations(alice, room, E(root))).Ok();
        Assert.Equal([a], Ids(flat));
        Assert.Null(flat.Obj["recursion_depth"]);
        var deep = (await Relations(alice, room, E(root), "recurse=true&limit=10")).Ok();
        Assert.Equal([c, b, a], Ids(deep));
        Assert.Equal(3, deep.Obj["recursion_depth"]!.GetValue<int>());
        Assert.DoesNotContain(d, Ids(deep));
        Assert.Equal([a, c], Ids(await Relations(alice, room, $"{E(root)}/m.reference", "recurse=true&dir=f")));
        Assert.Equal([b], Ids(await Relations(alice, room, $"{E(root)}/m.annotation/m.reaction", "recurse=true")));
        Assert.Equal(1, (await Relations(alice, room, E(root), "recurse=false")).Ok().Obj["recursion_depth"]!.GetValue<int>());
    }

    [Fact]
    public async Task Threads_are_listed_by_latest_activity_all_or_participated()
    {
        var (alice, bob, room) = await Room();
        var r1 = await alice.SendText(room, "first root");
        var r2 = await alice.SendText(room, "second root");
        var r3 = await bob.SendText(room, "third root");
        await alice.SendText(room, "no thread here");
        await Reply(bob, room, r1, "bob in 1");
        await Reply(alice, room, r2, "alice in 2");
        await Reply(alice, room, r3, "alice in 3");
        await Reply(alice, room, r1, "alice in 1");
        var path = $"{V1}/rooms/{E(room)}/threads";
        Assert.Equal([r1, r3, r2], Ids(await alice.Get(path)));
        Assert.Equal([r1, r3], Ids(await bob.Get(path + "?include=participated")));
        Assert.Equal([r1, r3, r2], Ids(await alice.Get(path + "?include=participated")));
        var page1 = (await alice.Get(path + "?limit=2")).Ok();
        Assert.Equal([r1, r3], Ids(page1));
        var page2 = (await alice.Get(path + "?limit=2&from=" + E(page1.Obj["next_batch"]!.GetValue<string>()))).Ok();
        Assert.Equal([r2], Ids(page2));
        Assert.Null(page2.Obj["next_batch"]);
        // Roots carry their thread aggregation.
        var first = (await bob.Get(path)).Ok().Obj["chunk"]![0]!;
        Assert.Equal(2, Aggregation(first, "m.thread")!["count"]!.GetValue<int>());
        Assert.Equal("M_INVALID_PARAM", (await alice.Get(path + "?include=mine")).ErrCode);
        var stranger = await Register(server);
        Assert.Equal(HttpStatusCode.Forbidden, (await stranger.Get(path)).Status);
    }

    [Fact]
    public async Task The_thread_aggregation_is_on_the_root_in_event_messages_and_sync()
    {
        var (alice, bob, room) = await Room();
        var carol = await Register(server);
        (await carol.Post($"{C}/join/{E(room)}", new JsonObject())).Ok();
        var root = await alice.SendText(room, "root");
        await Reply(bob, room, root, "one");
        var latest = await Reply(bob, room, root, "two");
        // Edits of the latest reply are bundled with it.
        var edit = await Edit(bob, room, latest, "two, edited");

        void Check(JsonNode? ev, bool participated)
        {
            var thread = Aggregation(ev, "m.thread");
            Assert.NotNull(thread);
            Assert.Equal(2, thread!["count"]!.GetValue<int>());
            Assert.Equal(latest, thread["latest_event"]!["event_id"]!.GetValue<string>());
            Assert.Equal("two", thread["latest_event"]!["content"]!["body"]!.GetValue<string>());
            Assert.Equal(edit, Aggregation(thread["latest_event"], "m.replace")!["event_id"]!.GetValue<string>());
            Assert.Equal(participated, thread["current_user_participated"]!.GetValue<bool>());
        }

        Check((await alice.Get($"{C}/rooms/{E(room)}/event/{E(root)}")).Ok().Obj, true);
        Check((await bob.Get($"{C}/rooms/{E(room)}/event/{E(root)}")).Ok().Obj, true);
        Check((await carol.Get($"{C}/rooms/{E(room)}/event/{E(root)}")).Ok().Obj, false);
        var messages = (await carol.Get($"{C}/rooms/{E(room)}/messages?dir=b&limit=50")).Ok().Obj["chunk"]!.AsArray();
        Check(messages.First(e => e!["event_id"]!.GetValue<string>() == root), false);
        // Events without children carry no m.relations.
        Assert.Null(messages.First(e => e!["event_id"]!.GetValue<string>() == edit)!["unsigned"]!["m.relations"]);
        var sync = await bob.Sync();
        var events = sync["rooms"]!["join"]![room]!["timeline"]!["events"]!.AsArray();
        Check(events.First(e => e!["event_id"]!.GetValue<string>() == root), true);
        Check((await carol.Get($"{C}/rooms/{E(room)}/context/{E(root)}")).Ok().Obj["event"], false);
        // A thread cannot start from an event that has a relation itself.
        var refused = await bob.Put($"{C}/rooms/{E(room)}/send/m.room.message/thr{Interlocked.Increment(ref _txn)}", Rel("m.thread", latest));
        Assert.True(refused.Status == HttpStatusCode.BadRequest && refused.ErrCode == "M_UNKNOWN", refused.Body?.ToJsonString());
    }

    [Fact]
    public async Task The_most_recent_valid_edit_is_aggregated_and_invalid_edits_are_ignored()
    {
        var (alice, bob, room) = await Room();
        var original = await alice.SendText(room, "I like cake");
        Assert.Null((await alice.Get($"{C}/rooms/{E(room)}/event/{E(original)}")).Ok().Obj["unsigned"]!["m.relations"]);
        await Edit(alice, room, original, "I like chocolate cake");
        // "Most recent" is by origin_server_ts, ties broken by event ID (spec): make the second edit's timestamp later.
        await Task.Delay(5);
        var second = await Edit(alice, room, original, "I really like chocolate cake");
        // Other sender, other type, no m.new_content: ignored, although more recent.
        var byBob = await Edit(bob, room, original, "bob was here");
        await Send(alice, room, "org.example.other", Rel("m.replace", original, new JsonObject { ["m.new_content"] = Text("other type") }));
        await Send(alice, room, "m.room.message", Rel("m.replace", original, Text("no new content")));
        var ev = (await bob.Get($"{C}/rooms/{E(room)}/event/{E(original)}")).Ok().Obj;
        var replace = Aggregation(ev, "m.replace")!;
        Assert.Equal(second, replace["event_id"]!.GetValue<string>());
        Assert.Equal(alice.UserId, replace["sender"]!.GetValue<string>());
        Assert.IsType<long>(replace["origin_server_ts"]!.GetValue<long>());
        Assert.Equal("I really like chocolate cake", replace["content"]!["m.new_content"]!["body"]!.GetValue<string>());
        // The server leaves the original's content alone (since v1.7).
        Assert.Equal("I like cake", ev["content"]!["body"]!.GetValue<string>());
        // /relations lists every replacement, valid or not.
        Assert.Contains(byBob, Ids(await Relations(bob, room, $"{E(original)}/m.replace", "limit=10")));
        // Redacting the latest edit falls back to the one before; redacting the original drops the aggregation.
        (await alice.Put($"{C}/rooms/{E(room)}/redact/{E(second)}/red{Interlocked.Increment(ref _txn)}", new JsonObject())).Ok();
        var after = (await bob.Get($"{C}/rooms/{E(room)}/event/{E(original)}")).Ok().Obj;
        Assert.Equal("I like chocolate cake", Aggregation(after, "m.replace")!["content"]!["m.new_content"]!["body"]!.GetValue<string>());
        (await alice.Put($"{C}/rooms/{E(room)}/redact/{E(original)}/red{Interlocked.Increment(ref _txn)}", new JsonObject())).Ok();
        Assert.Null(Aggregation((await bob.Get($"{C}/rooms/{E(room)}/event/{E(original)}")).Ok().Obj, "m.replace"));
    }

    [Fact]
    public async Task A_redacted_reply_leaves_relations_and_the_thread_count()
    {
        var (alice, bob, room) = await Room();
        var root = await alice.SendText(room, "root");
        var r1 = await Reply(bob, room, root, "one");
        var r2 = await Reply(bob, room, root, "two");
        var reaction = await Send(bob, room, "m.reaction", new JsonObject { ["m.relates_to"] = new JsonObject { ["rel_type"] = "m.annotation", ["event_id"] = root, ["key"] = "x" } });
        (await bob.Put($"{C}/rooms/{E(room)}/redact/{E(r2)}/red{Interlocked.Increment(ref _txn)}", new JsonObject())).Ok();
        (await bob.Put($"{C}/rooms/{E(room)}/redact/{E(reaction)}/red{Interlocked.Increment(ref _txn)}", new JsonObject())).Ok();
        Assert.Equal([r1], Ids(await Relations(alice, room, E(root), "limit=10")));
        var thread = Aggregation((await alice.Get($"{C}/rooms/{E(room)}/event/{E(root)}")).Ok().Obj, "m.thread")!;
        Assert.Equal((1, r1), (thread["count"]!.GetValue<int>(), thread["latest_event"]!["event_id"]!.GetValue<string>()));
        // The last reply gone, the thread is gone too.
        (await bob.Put($"{C}/rooms/{E(room)}/redact/{E(r1)}/red{Interlocked.Increment(ref _txn)}", new JsonObject())).Ok();
        Assert.Null((await alice.Get($"{C}/rooms/{E(room)}/event/{E(root)}")).Ok().Obj["unsigned"]!["m.relations"]);
        Assert.Empty(Ids(await alice.Get($"{V1}/rooms/{E(room)}/threads")));
        Assert.Empty(Ids(await Relations(alice, room, E(root))));
    }

    [Fact]
    public async Task Relations_of_an_event_in_a_room_the_caller_is_not_in_are_not_found()
    {
        var (alice, _, room) = await Room();
        var root = await alice.SendText(room, "root");
        await Reply(alice, room, root, "reply");
        var stranger = await Register(server);
        var r = await Relations(stranger, room, E(root));
        Assert.True(r.Status == HttpStatusCode.NotFound && r.ErrCode == "M_NOT_FOUND", r.Body?.ToJsonString());
        Assert.Equal("M_NOT_FOUND", (await Relations(stranger, room, $"{E(root)}/m.thread")).ErrCode);
    }

    [Fact]
    public async Task A_late_joiner_under_joined_visibility_sees_no_relations_from_before_their_join()
    {
        var alice = await Register(server);
        var room = await alice.CreateRoom(new JsonObject
        {
            ["preset"] = "public_chat",
            ["initial_state"] = new JsonArray(new JsonObject { ["type"] = "m.room.history_visibility", ["content"] = new JsonObject { ["history_visibility"] = "joined" } }),
        });
        var early = await alice.SendText(room, "before bob");
        await Reply(alice, room, early, "early reply");
        var bob = await Register(server);
        (await bob.Post($"{C}/join/{E(room)}", new JsonObject())).Ok();
        Assert.Equal("M_NOT_FOUND", (await Relations(bob, room, E(early))).ErrCode);
        Assert.Empty(Ids(await bob.Get($"{V1}/rooms/{E(room)}/threads")));
        // A root bob sees, with replies before and after he leaves: he sees those up to his leave.
        var root = await alice.SendText(room, "while bob is here");
        var seen = await Reply(alice, room, root, "bob sees this");
        (await bob.Post($"{C}/rooms/{E(room)}/leave", new JsonObject())).Ok();
        var unseen = await Reply(alice, room, root, "bob is gone");
        Assert.Equal([seen], Ids(await Relations(bob, room, E(root))));
        Assert.Equal([unseen, seen], Ids(await Relations(alice, room, E(root))));
        var thread = Aggregation((await bob.Get($"{C}/rooms/{E(room)}/event/{E(root)}")).Ok().Obj, "m.thread")!;
        Assert.Equal(seen, thread["latest_event"]!["event_id"]!.GetValue<string>());
    }
}

public sealed class AllInOneRelationTests(AllInOneFixture f) : RelationTests(f), IClassFixture<AllInOneFixture>;

public sealed class SplitRelationTests(SplitFixture f) : RelationTests(f), IClassFixture<SplitFixture>;

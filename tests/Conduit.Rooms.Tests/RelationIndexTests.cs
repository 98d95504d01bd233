using System.Text.Json.Nodes;
using static Conduit.Rooms.Tests.RoomsHarness;

namespace Conduit.Rooms.Tests;

/// <summary>
/// The relation and thread indexes <see cref="RoomWriter"/> keeps with the events: sends that queue up on a room are
/// written in one batch, and the thread's count, latest reply and single position in rooms_threads stay exact.
/// </summary>
public sealed class RelationIndexTests : IDisposable
{
    const string Room = "!rel:test.local";
    readonly RoomsHarness _h = new();
    readonly Relations _relations;

    public RelationIndexTests() => _relations = new Relations(_h.Rooms);

    public void Dispose() => _h.Dispose();

    Task<IReadOnlyList<StoredEvent>> Send(string type, JsonObject content, string? redacts = null)
        => _h.Sender.SendAsync(Room, Alice, [new NewEvent(type, null, content, redacts)], null, CancellationToken.None);

    static JsonObject Reply(string root, int i) => new()
    {
        ["body"] = $"reply {i}",
        ["m.relates_to"] = new JsonObject { ["rel_type"] = "m.thread", ["event_id"] = root },
    };

    void AssertThread(string root, int count)
    {
        var replies = _relations.Children(Room, root, "m.thread").ToList();
        Assert.Equal(count, replies.Count);
        var t = _relations.Thread(Room, root);
        var threads = _relations.Threads(Room, long.MaxValue).ToList();
        if (count == 0)
        {
            Assert.Null(t);
            Assert.Empty(threads);
            return;
        }
        Assert.Equal((replies[0].Pos, replies[0].EventId, (long)count), (t!.Pos, t.Latest, t.Count));
        Assert.Equal([(replies[0].Pos, root)], threads);
    }

    [Fact]
    public async Task Concurrent_replies_and_redactions_keep_the_thread_exact()
    {
        await _h.CreateRoomAsync(Room);
        var root = (await _h.MessageAsync(Room, Alice, "root")).EventId;
        var sent = await Task.WhenAll(Enumerable.Range(0, 40).Select(i => Task.Run(() => Send("m.room.message", Reply(root, i)))));
        AssertThread(root, 40);
        Assert.True(_relations.Participated(Room, root, Alice));
        Assert.False(_relations.Participated(Room, root, Bob));

        // Redact the newest half at once, interleaved with new replies.
        var newest = _relations.Children(Room, root, "m.thread").Take(20).Select(r => r.EventId).ToList();
        await Task.WhenAll(newest.Select(id => Task.Run(() => Send("m.room.redaction", new JsonObject(), id)))
            .Concat(Enumerable.Range(40, 5).Select(i => Task.Run(() => Send("m.room.message", Reply(root, i))))));
        AssertThread(root, 25);
        Assert.DoesNotContain(_relations.Children(Room, root, null), r => newest.Contains(r.EventId));

        // Redacting everything (twice over) leaves no thread.
        var rest = _relations.Children(Room, root, "m.thread").Select(r => r.EventId).ToList();
        await Task.WhenAll(rest.Concat(rest).Select(id => Task.Run(() => Send("m.room.redaction", new JsonObject(), id))));
        AssertThread(root, 0);
    }

    [Fact]
    public async Task Relations_to_unknown_events_or_other_rooms_and_malformed_ones_are_not_indexed()
    {
        await _h.CreateRoomAsync(Room);
        await _h.CreateRoomAsync("!other:test.local");
        var elsewhere = (await _h.MessageAsync("!other:test.local", Alice, "elsewhere")).EventId;
        var root = (await _h.MessageAsync(Room, Alice, "root")).EventId;
        await Send("m.room.message", Reply(elsewhere, 0));
        await Send("m.room.message", Reply("$unknown:test.local", 1));
        await Send("m.room.message", new JsonObject { ["m.relates_to"] = new JsonObject { ["rel_type"] = "m.thread", ["event_id"] = 7 } });
        await Send("m.room.message", new JsonObject { ["m.relates_to"] = "m.thread" });
        Assert.False(_relations.HasChildren(Room, root));
        Assert.False(_relations.HasChildren(Room, elsewhere));
        Assert.False(_relations.HasChildren("!other:test.local", elsewhere));
        Assert.Empty(_relations.Threads(Room, long.MaxValue));
        var edit = (await Send("m.room.message", new JsonObject
        {
            ["body"] = "* edited",
            ["m.new_content"] = new JsonObject { ["body"] = "edited" },
            ["m.relates_to"] = new JsonObject { ["rel_type"] = "m.replace", ["event_id"] = root },
        }))[0];
        Assert.Equal(edit.EventId, _relations.LatestEdit(_h.Rooms.Event(root)!)!.EventId);
        // An edit of an edit is not valid.
        Assert.Null(_relations.LatestEdit(edit));
    }
}

using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Crypto;
using Conduit.Common.Events;
using static Conduit.Rooms.Tests.RoomsHarness;

namespace Conduit.Rooms.Tests;

/// <summary>The event format EventSender builds for each room version (spec: rooms/vN.md "Event format", "Event IDs").</summary>
public sealed class RoomVersionFormatTests : IDisposable
{
    readonly RoomsHarness _h = new();

    public void Dispose() => _h.Dispose();

    public static TheoryData<string> Versions()
    {
        var data = new TheoryData<string>();
        foreach (var v in RoomVersion.All) data.Add(v.Id);
        return data;
    }

    /// <summary>create, join, power levels, public join rules; then Bob joins, Alice sends, sets a topic and redacts.</summary>
    async Task<(string RoomId, List<StoredEvent> Events)> PopulateAsync(RoomVersion version)
    {
        var create = new JsonObject { ["room_version"] = version.Id };
        if (version.CreatorInCreateContent) create["creator"] = Alice;
        var users = new JsonObject();
        if (!version.PrivilegedCreators) users[Alice] = 100;
        var created = await _h.Sender.SendAsync(version.RoomIdFromCreateEvent ? "" : "!room:test.local", Alice,
        [
            new NewEvent("m.room.create", "", create),
            new NewEvent("m.room.member", Alice, new JsonObject { ["membership"] = "join" }),
            new NewEvent("m.room.power_levels", "", new JsonObject { ["users"] = users }),
            new NewEvent("m.room.join_rules", "", new JsonObject { ["join_rule"] = "public" }),
        ], null, CancellationToken.None);
        var roomId = created[0].RoomId;
        var events = created.ToList();
        events.Add(await _h.MemberAsync(roomId, Bob, Bob, "join"));
        var m1 = await _h.MessageAsync(roomId, Alice, "one");
        events.Add(m1);
        events.Add(await _h.MessageAsync(roomId, Bob, "two"));
        events.Add(await _h.StateAsync(roomId, Alice, "m.room.topic", "", new JsonObject { ["topic"] = "t" }));
        events.AddRange(await _h.Sender.SendAsync(roomId, Alice, [new NewEvent("m.room.redaction", null, new JsonObject(), m1.EventId)], null, CancellationToken.None));
        return (roomId, events);
    }

    static List<(string Id, string? Sha256)> Refs(JsonNode? node) => node!.AsArray().Select(n => n is JsonArray pair
        ? (pair[0]!.GetValue<string>(), pair[1]!["sha256"]?.GetValue<string>())
        : (n!.GetValue<string>(), (string?)null)).ToList();

    [Theory, MemberData(nameof(Versions))]
    public async Task EventIds_ReferencesAndSignatures_FollowTheRoomVersion(string id)
    {
        var version = RoomVersion.Find(id)!;
        var (roomId, events) = await PopulateAsync(version);
        Assert.Equal(version.Id, _h.Rooms.Info(roomId)!["room_version"]!.GetValue<string>());
        foreach (var e in events)
        {
            // Read back what was stored, as federation would serve it.
            var pdu = _h.Rooms.Event(e.EventId)!.Pdu;
            Assert.True(EventHashing.VerifyContentHash(pdu));
            Assert.True(EventHashing.VerifySignature(pdu, version, Server, _h.Key.KeyId, _h.Key.PublicKey));
            Assert.Equal(roomId, _h.Rooms.Event(e.EventId)!.RoomId);
            switch (version.EventIdFormat)
            {
                case EventIdFormat.ServerGenerated:
                    Assert.Equal(e.EventId, pdu["event_id"]!.GetValue<string>());
                    Assert.True(Ids.TrySplit(e.EventId, '$', out _, out var server) && server == Server, e.EventId);
                    break;
                case EventIdFormat.ReferenceHashBase64:
                    Assert.Equal(EventHashing.ComputeEventId(pdu, version), e.EventId);
                    Assert.False(pdu.ContainsKey("event_id"));
                    Assert.Equal(44, e.EventId.Length);
                    break;
                default:
                    Assert.Equal(EventHashing.ComputeEventId(pdu, version), e.EventId);
                    Assert.False(pdu.ContainsKey("event_id"));
                    Assert.DoesNotContain('+', e.EventId);
                    Assert.DoesNotContain('/', e.EventId);
                    break;
            }
            foreach (var field in new[] { "prev_events", "auth_events" })
            {
                foreach (var (refId, sha256) in Refs(pdu[field]))
                {
                    if (version.EventIdFormat == EventIdFormat.ServerGenerated)
                    {
                        // v1/v2: [event_id, {"sha256": reference hash of the referenced event}].
                        var referenced = _h.Rooms.Event(refId)!.Pdu;
                        Assert.Equal(UnpaddedBase64.Encode(EventHashing.ReferenceHash(referenced, version)), sha256);
                    }
                    else
                    {
                        Assert.Null(sha256);
                        Assert.NotNull(_h.Rooms.Event(refId));
                    }
                }
            }
        }
        // Each event's prev_events is the event before it.
        for (var i = 1; i < events.Count; i++)
            Assert.Equal([events[i - 1].EventId], Refs(events[i].Pdu["prev_events"]).Select(r => r.Id));
        // The redaction took effect on the message.
        var redaction = events[^1];
        Assert.Equal(redaction.EventId, _h.Rooms.Event(events[5].EventId)!.Meta["redacted_by"]!.GetValue<string>());
        var redactsAt = version.RedactsInContent ? redaction.Pdu["content"]!["redacts"] : redaction.Pdu["redacts"];
        Assert.Equal(events[5].EventId, redactsAt!.GetValue<string>());
    }

    [Fact]
    public async Task V12_RoomIdIsTheCreateEventsHash_AndLaterEventsDoNotCiteTheCreateEvent()
    {
        var (roomId, events) = await PopulateAsync(RoomVersion.V12);
        var create = events[0];
        Assert.Equal("!" + create.EventId[1..], roomId);
        Assert.True(Ids.IsRoomId(roomId));
        Assert.Equal(44, roomId.Length);
        Assert.False(create.Pdu.ContainsKey("room_id"));
        Assert.Null(_h.Rooms.Event(create.EventId)!.Pdu["room_id"]);
        foreach (var e in events.Skip(1))
        {
            Assert.Equal(roomId, e.Pdu["room_id"]!.GetValue<string>());
            Assert.DoesNotContain(create.EventId, Refs(e.Pdu["auth_events"]).Select(r => r.Id));
        }
        Assert.Equal(create.EventId, _h.Rooms.StateEventId(roomId, "m.room.create", ""));
        Assert.Equal([Alice, Bob], _h.Rooms.JoinedMembers(roomId).Order());
        // The client format of the create event still names the room.
        Assert.Equal(roomId, _h.Format.Format(_h.Rooms.Event(create.EventId)!)["room_id"]!.GetValue<string>());
    }

    [Fact]
    public async Task V12_TheCreatorMayNotBeListedInPowerLevels()
    {
        var (roomId, _) = await PopulateAsync(RoomVersion.V12);
        var demote = await Assert.ThrowsAsync<MatrixException>(() => _h.StateAsync(roomId, Alice, "m.room.power_levels", "",
            new JsonObject { ["users"] = new JsonObject { [Alice] = 0 } }));
        Assert.Equal("M_FORBIDDEN", demote.ErrCode);
        // Without being listed, the creator still outranks everyone.
        await _h.StateAsync(roomId, Alice, "m.room.power_levels", "", new JsonObject { ["users"] = new JsonObject { [Bob] = 100 }, ["state_default"] = 100 });
        await _h.StateAsync(roomId, Alice, "m.room.name", "", new JsonObject { ["name"] = "still mine" });
    }

    [Fact]
    public async Task A_V12_RoomId_IsRejectedForOtherVersions()
    {
        await Assert.ThrowsAsync<MatrixException>(() => _h.Sender.SendAsync("", Alice,
            [new NewEvent("m.room.create", "", new JsonObject { ["room_version"] = "11" })], null, CancellationToken.None));
    }
}

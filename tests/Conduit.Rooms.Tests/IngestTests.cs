using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Crypto;
using Conduit.Common.Events;
using Conduit.Rooms.Rules;
using static Conduit.Rooms.Tests.RoomsHarness;

namespace Conduit.Rooms.Tests;

/// <summary>PDUs from another server through <see cref="EventSender.AcceptRemoteAsync"/> (server-server-api, "Checks performed on receipt of a PDU").</summary>
public sealed partial class IngestTests : IDisposable
{
    const string Room = "!room:test.local";
    const string RemoteServer = "remote.example";
    const string Rem = "@rem:remote.example";
    const string R1 = "@r1:remote.example";
    const string R2 = "@r2:remote.example";
    const string Stranger = "@stranger:remote.example";

    readonly RoomsHarness _h = new();
    readonly SigningKey _remoteKey = SigningKey.Generate("r");

    public void Dispose()
    {
        _h.Dispose();
        _remoteKey.Dispose();
    }

    byte[]? VerifyKey(string server, string keyId)
        => server == RemoteServer && keyId == _remoteKey.KeyId ? _remoteKey.PublicKey
        : server == Server && keyId == _h.Key.KeyId ? _h.Key.PublicKey
        : null;

    /// <summary>
    /// A PDU as the remote server would build it: prev_events default to the room's forward extremities, auth events
    /// are picked from the state after the first prev event, depth is one more than the deepest prev.
    /// </summary>
    JsonObject Build(string sender, string type, string? stateKey, JsonObject content, IReadOnlyList<string>? prev = null,
        IReadOnlyList<string>? auth = null, long? ts = null, SigningKey? signWith = null, string room = Room)
    {
        var version = RoomVersion.Find(_h.Rooms.Info(room)!["room_version"]!.GetValue<string>())!;
        prev ??= _h.Rooms.Info(room)!["forward_extremities"]!.AsArray().Select(n => n!.GetValue<string>()).ToList();
        var prevEvents = prev.Select(id => _h.Rooms.Event(id)!).ToList();
        var pdu = new JsonObject
        {
            ["content"] = content,
            ["depth"] = prevEvents.Max(e => e.Pdu["depth"]!.GetValue<long>()) + 1,
            ["origin_server_ts"] = ts ?? Ids.NowMs(),
            ["room_id"] = room,
            ["sender"] = sender,
            ["type"] = type,
        };
        if (stateKey is not null) pdu["state_key"] = stateKey;
        auth ??= EventAuth.AuthTypesFor(pdu, version)
            .Select(k => _h.States.LookupEventId(prevEvents[0].StateAfter, k.Type, k.StateKey))
            .OfType<string>().Distinct().ToList();
        // v1, v2: the origin chooses the event ID, and references carry the referenced event's reference hash.
        var serverIds = version.EventIdFormat == EventIdFormat.ServerGenerated;
        JsonNode Ref(string id) => serverIds
            ? new JsonArray(id, new JsonObject { ["sha256"] = UnpaddedBase64.Encode(EventHashing.ReferenceHash(_h.Rooms.Event(id)!.Pdu, version)) })
            : id;
        pdu["prev_events"] = new JsonArray(prev.Select(Ref).ToArray());
        pdu["auth_events"] = new JsonArray(auth.Select(Ref).ToArray());
        if (serverIds) pdu["event_id"] = $"${Ids.Random(18)}:{RemoteServer}";
        EventHashing.HashAndSign(pdu, version, RemoteServer, signWith ?? _remoteKey);
        return pdu;
    }

    Task<IngestResult> Accept(JsonObject pdu) => _h.Sender.AcceptRemoteAsync(pdu, VerifyKey, CancellationToken.None);

    async Task<IngestResult> JoinAsync(string user, string room = Room)
    {
        var r = await Accept(Build(user, "m.room.member", user, new JsonObject { ["membership"] = "join" }, room: room));
        Assert.Equal(IngestOutcome.Accepted, r.Outcome);
        return r;
    }

    List<string> Extremities() => _h.Rooms.Info(Room)!["forward_extremities"]!.AsArray().Select(n => n!.GetValue<string>()).ToList();
    List<string> TimelineIds() => _h.Rooms.Timeline(Room, 0, long.MaxValue, backwards: false).Select(t => t.EventId).ToList();

    [Fact]
    public async Task RemoteJoin_IsAccepted_InTimelineAndMembers()
    {
        await _h.CreateRoomAsync(Room);
        var positions = _h.Rooms.StreamPosition;
        var r = await JoinAsync(Rem);

        Assert.Equal(positions + 1, _h.Rooms.StreamPosition);
        Assert.Equal(positions + 1, _h.Stream.Position);
        Assert.Equal(r.EventId, TimelineIds()[^1]);
        Assert.Contains(Rem, _h.Rooms.JoinedMembers(Room));
        Assert.Equal("join", _h.Rooms.MembershipOf(Rem, Room)!.State);
        Assert.Equal(r.EventId, _h.Rooms.StateEventId(Room, "m.room.member", Rem));
        Assert.Equal([r.EventId!], Extremities());
        Assert.True(_h.Visibility.CanSee(Alice, _h.Rooms.Event(r.EventId!)!));

        // Receiving it again changes nothing and reports the earlier outcome.
        var again = await Accept(_h.Rooms.Event(r.EventId!)!.Pdu);
        Assert.Equal(IngestOutcome.Accepted, again.Outcome);
        Assert.Equal(positions + 1, _h.Rooms.StreamPosition);

        // A local event afterwards builds on it.
        var m = await _h.MessageAsync(Room, Alice, "welcome");
        Assert.Equal([r.EventId!], EventAuth.PrevEventIds(m.Pdu));
    }

    /// <summary>An event built on one the remote server never sent us: its prev event is unknown here.</summary>
    (JsonObject Pdu, string Id) AfterAGap(string body)
    {
        var version = RoomVersion.Find(_h.Rooms.Info(Room)!["room_version"]!.GetValue<string>())!;
        var unseen = Build(Rem, "m.room.message", null, new JsonObject { ["msgtype"] = "m.text", ["body"] = "never delivered" });
        var pdu = Build(Rem, "m.room.message", null, new JsonObject { ["msgtype"] = "m.text", ["body"] = body });
        pdu["prev_events"] = new JsonArray(EventHashing.TryEventId(unseen, version)!);
        pdu["depth"] = unseen["depth"]!.GetValue<long>() + 1;
        pdu.Remove("hashes");
        pdu.Remove("signatures");
        EventHashing.HashAndSign(pdu, version, RemoteServer, _remoteKey);
        return (pdu, EventHashing.TryEventId(pdu, version)!);
    }

    [Fact]
    public async Task AnEventAfterAGap_IsRejectedAlone_ButAcceptedWithTheStateBeforeItFromItsServer()
    {
        await _h.CreateRoomAsync(Room);
        await JoinAsync(Rem);
        var (alone, _) = AfterAGap("without context");
        Assert.Equal(IngestOutcome.Rejected, (await Accept(alone)).Outcome);

        // With the state before it (what GET /state answers), the gap no longer matters: checked against that state,
        // in the timeline, and a forward extremity beside ours.
        var (bridged, id) = AfterAGap("with the state before it");
        var state = _h.Rooms.CurrentState(Room).Values.Select(e => _h.Rooms.Event(e)!.Pdu).ToList();
        var keys = new KeyRing(new Dictionary<(string, string), Conduit.Protos.Federation.VerifyKey>
        {
            [(RemoteServer, _remoteKey.KeyId)] = new() { ServerName = RemoteServer, KeyId = _remoteKey.KeyId, PublicKey = Google.Protobuf.ByteString.CopyFrom(_remoteKey.PublicKey), ValidUntilTs = long.MaxValue },
            [(Server, _h.Key.KeyId)] = new() { ServerName = Server, KeyId = _h.Key.KeyId, PublicKey = Google.Protobuf.ByteString.CopyFrom(_h.Key.PublicKey), ValidUntilTs = long.MaxValue },
        });
        var r = await _h.Sender.AcceptRemoteAsync(bridged, VerifyKey, new EventSender.StateHint(state, [], keys), CancellationToken.None);
        Assert.Equal((IngestOutcome.Accepted, id), (r.Outcome, r.EventId));
        Assert.Equal(id, TimelineIds()[^1]);
        Assert.Contains(id, Extremities());
        Assert.Equal(_h.Rooms.StateEventId(Room, "m.room.member", Rem), _h.States.LookupEventId(_h.Rooms.Event(id)!.StateBefore, "m.room.member", Rem));
    }

    [Fact]
    public async Task ForgedSignature_IsDropped_NotStored()
    {
        await _h.CreateRoomAsync(Room);
        using var forger = SigningKey.Generate("r"); // the same key ID, another key
        var pdu = Build(Rem, "m.room.member", Rem, new JsonObject { ["membership"] = "join" }, signWith: forger);
        var r = await Accept(pdu);
        Assert.Equal(IngestOutcome.Dropped, r.Outcome);
        Assert.Null(_h.Rooms.Event(r.EventId!));
        Assert.Null(_h.Rooms.MembershipOf(Rem, Room));

        // Unsigned by the sender's server at all: dropped too.
        pdu = Build(Rem, "m.room.member", Rem, new JsonObject { ["membership"] = "join" });
        pdu["signatures"] = new JsonObject { [Server] = pdu["signatures"]![RemoteServer]!.DeepClone() };
        Assert.Equal(IngestOutcome.Dropped, (await Accept(pdu)).Outcome);
    }

    [Fact]
    public async Task ContentHashMismatch_KeepsTheRedactedForm()
    {
        await _h.CreateRoomAsync(Room);
        await JoinAsync(Rem);
        var pdu = Build(Rem, "m.room.message", null, new JsonObject { ["msgtype"] = "m.text", ["body"] = "hello" });
        pdu["content"]!["body"] = "tampered"; // the signature covers only the redacted form, the content hash all of it
        var r = await Accept(pdu);
        Assert.Equal(IngestOutcome.Accepted, r.Outcome);
        Assert.Empty(_h.Rooms.Event(r.EventId!)!.Content);
    }

    [Fact]
    public async Task EventFailingAuth_IsRejected_StoredOutsideTimeline_AndTaintsEventsCitingIt()
    {
        await _h.CreateRoomAsync(Room);
        var timeline = TimelineIds();
        var extremities = Extremities();

        // Not joined: the auth events hold no membership for the sender.
        var r = await Accept(Build(Stranger, "m.room.message", null, new JsonObject { ["msgtype"] = "m.text", ["body"] = "hi" }));
        Assert.Equal(IngestOutcome.Rejected, r.Outcome);
        var stored = _h.Rooms.Event(r.EventId!)!;
        Assert.NotNull(stored.Rejected);
        Assert.False(stored.InTimeline);
        Assert.False(_h.Visibility.CanSee(Alice, stored));
        Assert.Equal(timeline, TimelineIds());
        Assert.Equal(extremities, Extremities());
        Assert.Equal(IngestOutcome.Rejected, (await Accept(stored.Pdu)).Outcome);

        // A power levels change by a member without the power to make it: rejected, never state.
        await JoinAsync(Rem);
        var pl = _h.Rooms.StateEvent(Room, "m.room.power_levels", "")!;
        var grab = (JsonObject)pl.Content.DeepClone();
        grab["users"]![Rem] = 100;
        var bad = await Accept(Build(Rem, "m.room.power_levels", "", grab));
        Assert.Equal(IngestOutcome.Rejected, bad.Outcome);
        Assert.Equal(pl.EventId, _h.Rooms.StateEventId(Room, "m.room.power_levels", ""));

        // An event citing the rejected one in its auth events is rejected as well.
        var auth = new[] { _h.Rooms.StateEventId(Room, "m.room.create", "")!, bad.EventId!, _h.Rooms.StateEventId(Room, "m.room.member", Rem)! };
        var cites = await Accept(Build(Rem, "m.room.message", null, new JsonObject { ["msgtype"] = "m.text", ["body"] = "x" }, auth: auth));
        Assert.Equal(IngestOutcome.Rejected, cites.Outcome);
        Assert.Contains("rejected", cites.Reason);
        Assert.DoesNotContain(cites.EventId!, TimelineIds());

        // An unknown prev event is rejected: fetching it is federation's job.
        var orphan = Build(Rem, "m.room.message", null, new JsonObject { ["msgtype"] = "m.text", ["body"] = "y" });
        orphan["prev_events"] = new JsonArray("$unknownunknownunknownunknownunknownunknown0");
        EventHashing.HashAndSign(orphan, RoomVersion.Find("11")!, RemoteServer, _remoteKey);
        var o = await Accept(orphan);
        Assert.Equal(IngestOutcome.Rejected, o.Outcome);
        Assert.Contains("missing prev event", o.Reason);
    }

    [Fact]
    public async Task ConcurrentTopics_AreResolved_AndALocalEventMergesBothExtremities()
    {
        await _h.CreateRoomAsync(Room);
        await JoinAsync(R1);
        await JoinAsync(R2);
        var pl = _h.Rooms.StateEvent(Room, "m.room.power_levels", "")!;
        var content = (JsonObject)pl.Content.DeepClone();
        content["users"] = new JsonObject { [Alice] = 100, [R1] = 50, [R2] = 75 };
        var plEvent = await _h.StateAsync(Room, Alice, "m.room.power_levels", "", content);

        // Two topics on the same prev event. r1 (less power) sent later: a topic is not a power event, so both are
        // ordered by the mainline (the same power levels event), then origin_server_ts, then event ID, and the
        // later one is applied last and wins (rooms/v2.md "State resolution", mainline ordering).
        var now = Ids.NowMs();
        var t1 = Build(R1, "m.room.topic", "", new JsonObject { ["topic"] = "from r1" }, prev: [plEvent.EventId], ts: now + 1000);
        var t2 = Build(R2, "m.room.topic", "", new JsonObject { ["topic"] = "from r2" }, prev: [plEvent.EventId], ts: now);
        var a1 = await Accept(t1);
        var a2 = await Accept(t2);
        Assert.Equal(IngestOutcome.Accepted, a1.Outcome);
        Assert.Equal(IngestOutcome.Accepted, a2.Outcome);
        Assert.Equal(new[] { a1.EventId!, a2.EventId! }.Order(), Extremities().Order());
        Assert.Equal(a1.EventId, _h.Rooms.StateEventId(Room, "m.room.topic", ""));
        Assert.Equal(a1.EventId, _h.States.LookupEventId(_h.Rooms.Info(Room)!["state_group"]!.GetValue<ulong>(), "m.room.topic", ""));
        Assert.Contains(a1.EventId!, TimelineIds());
        Assert.Contains(a2.EventId!, TimelineIds());

        // The next local event has both extremities as prev events and the resolved state before it.
        var m = await _h.MessageAsync(Room, Alice, "merged");
        Assert.Equal(new[] { a1.EventId!, a2.EventId! }.Order(), EventAuth.PrevEventIds(m.Pdu).Order());
        Assert.Equal(a1.EventId, _h.States.LookupEventId(m.StateBefore, "m.room.topic", ""));
        Assert.Equal([m.EventId], Extremities());
        Assert.Equal("from r1", _h.Rooms.StateContent(Room, "m.room.topic")!["topic"]!.GetValue<string>());
    }

    [Fact]
    public async Task RemoteEventWithTwoPrevEvents_IsCheckedAgainstTheResolvedState_AndMergesTheExtremities()
    {
        await _h.CreateRoomAsync(Room);
        await JoinAsync(R1);
        var pl = _h.Rooms.StateEvent(Room, "m.room.power_levels", "")!;
        var content = (JsonObject)pl.Content.DeepClone();
        content["users"] = new JsonObject { [Alice] = 100, [R1] = 50 };
        var plEvent = await _h.StateAsync(Room, Alice, "m.room.power_levels", "", content);
        var now = Ids.NowMs();
        var a1 = await Accept(Build(R1, "m.room.topic", "", new JsonObject { ["topic"] = "a" }, prev: [plEvent.EventId], ts: now + 1000));
        var a2 = await Accept(Build(R1, "m.room.name", "", new JsonObject { ["name"] = "n" }, prev: [plEvent.EventId], ts: now));
        Assert.Equal(2, Extremities().Count);

        var merge = await Accept(Build(R1, "m.room.message", null, new JsonObject { ["msgtype"] = "m.text", ["body"] = "m" }, prev: [a1.EventId!, a2.EventId!]));
        Assert.Equal(IngestOutcome.Accepted, merge.Outcome);
        Assert.Equal([merge.EventId!], Extremities());
        var stored = _h.Rooms.Event(merge.EventId!)!;
        // Both branches' state is in the state before the merging event (no conflict: different keys).
        Assert.Equal(a1.EventId, _h.States.LookupEventId(stored.StateBefore, "m.room.topic", ""));
        Assert.Equal(a2.EventId, _h.States.LookupEventId(stored.StateBefore, "m.room.name", ""));
        Assert.Equal(a2.EventId, _h.Rooms.StateEventId(Room, "m.room.name", ""));
    }

    [Fact]
    public async Task RejectedPrevEvent_ContributesNoState()
    {
        await _h.CreateRoomAsync(Room);
        await JoinAsync(Rem);
        var pl = _h.Rooms.StateEvent(Room, "m.room.power_levels", "")!;
        var grab = (JsonObject)pl.Content.DeepClone();
        grab["users"]![Rem] = 100;
        var bad = await Accept(Build(Rem, "m.room.power_levels", "", grab));
        Assert.Equal(IngestOutcome.Rejected, bad.Outcome);

        // Built on the rejected event: the state after it is the state before it, where rem has no power to set a topic.
        var topic = Build(Rem, "m.room.topic", "", new JsonObject { ["topic"] = "t" }, prev: [bad.EventId!],
            auth: [_h.Rooms.StateEventId(Room, "m.room.create", "")!, pl.EventId, _h.Rooms.StateEventId(Room, "m.room.member", Rem)!]);
        Assert.Equal(IngestOutcome.Rejected, (await Accept(topic)).Outcome);
        var msg = await Accept(Build(Rem, "m.room.message", null, new JsonObject { ["msgtype"] = "m.text", ["body"] = "ok" }, prev: [bad.EventId!],
            auth: [_h.Rooms.StateEventId(Room, "m.room.create", "")!, pl.EventId, _h.Rooms.StateEventId(Room, "m.room.member", Rem)!]));
        Assert.Equal(IngestOutcome.Accepted, msg.Outcome);
    }

    [Fact]
    public async Task RemoteRedaction_OfTheSameServersEvent_IsApplied()
    {
        await _h.CreateRoomAsync(Room);
        await JoinAsync(Rem);
        var m = await Accept(Build(Rem, "m.room.message", null, new JsonObject { ["msgtype"] = "m.text", ["body"] = "oops" }));
        var red = await Accept(Build(Rem, "m.room.redaction", null, new JsonObject { ["redacts"] = m.EventId }));
        Assert.Equal(IngestOutcome.Accepted, red.Outcome);
        Assert.Equal(red.EventId, _h.Rooms.Event(m.EventId!)!.Meta["redacted_by"]!.GetValue<string>());

        // Alice's message cannot be redacted by rem (another server, no redact power).
        var a = await _h.MessageAsync(Room, Alice, "mine");
        var red2 = await Accept(Build(Rem, "m.room.redaction", null, new JsonObject { ["redacts"] = a.EventId }));
        Assert.Equal(IngestOutcome.Accepted, red2.Outcome);
        Assert.Null(_h.Rooms.Event(a.EventId)!.Meta["redacted_by"]);
    }

    [Fact]
    public async Task ConcurrentBanAndTopic_TheBanWins_AndTheBannedUsersTopicIsResolvedAway()
    {
        await _h.CreateRoomAsync(Room);
        await JoinAsync(R1);
        await JoinAsync(R2);
        var pl = _h.Rooms.StateEvent(Room, "m.room.power_levels", "")!;
        var content = (JsonObject)pl.Content.DeepClone();
        content["users"] = new JsonObject { [Alice] = 100, [R1] = 50, [R2] = 75 };
        var plEvent = await _h.StateAsync(Room, Alice, "m.room.power_levels", "", content);

        // r1 changes the topic while r2 bans r1, both on the same prev event. The topic arrives first, so neither
        // is soft-failed; state resolution orders the ban (a power event) first, and the topic then fails the auth
        // checks against the resolved state (rooms/v2.md "State resolution": iterative auth checks).
        var topic = await Accept(Build(R1, "m.room.topic", "", new JsonObject { ["topic"] = "mine" }, prev: [plEvent.EventId]));
        var ban = await Accept(Build(R2, "m.room.member", R1, new JsonObject { ["membership"] = "ban" }, prev: [plEvent.EventId]));
        Assert.Equal(IngestOutcome.Accepted, topic.Outcome);
        Assert.Equal(IngestOutcome.Accepted, ban.Outcome);
        Assert.Equal(2, Extremities().Count);
        Assert.Null(_h.Rooms.StateEventId(Room, "m.room.topic", ""));
        Assert.Equal(ban.EventId, _h.Rooms.StateEventId(Room, "m.room.member", R1));
        Assert.Equal("ban", _h.Rooms.MembershipOf(R1, Room)!.State);
        Assert.DoesNotContain(R1, _h.Rooms.JoinedMembers(Room));

        var m = await _h.MessageAsync(Room, Alice, "after");
        Assert.Equal(2, EventAuth.PrevEventIds(m.Pdu).Count);
        Assert.Null(_h.States.LookupEventId(m.StateBefore, "m.room.topic", ""));
    }

    [Fact]
    public async Task ConcurrentTopics_EarlierTimestampLoses_WhicheverArrivesLast()
    {
        await _h.CreateRoomAsync(Room);
        await JoinAsync(R1);
        var pl = _h.Rooms.StateEvent(Room, "m.room.power_levels", "")!;
        var content = (JsonObject)pl.Content.DeepClone();
        content["users"] = new JsonObject { [Alice] = 100, [R1] = 50 };
        var plEvent = await _h.StateAsync(Room, Alice, "m.room.power_levels", "", content);
        var now = Ids.NowMs();
        var late = Build(R1, "m.room.topic", "", new JsonObject { ["topic"] = "late" }, prev: [plEvent.EventId], ts: now + 5000);
        var early = Build(R1, "m.room.topic", "", new JsonObject { ["topic"] = "early" }, prev: [plEvent.EventId], ts: now);
        var aLate = await Accept(late);
        await Accept(early);
        Assert.Equal(aLate.EventId, _h.Rooms.StateEventId(Room, "m.room.topic", ""));
    }

    [Fact]
    public async Task BannedInCurrentState_IsSoftFailed_StoredButNotInTimeline()
    {
        await _h.CreateRoomAsync(Room);
        var join = await JoinAsync(Rem);
        var ban = await _h.MemberAsync(Room, Alice, Rem, "ban");
        Assert.Equal("ban", _h.Rooms.MembershipOf(Rem, Room)!.State);
        var timeline = TimelineIds();

        // Built on the state before the ban, where the sender is still joined.
        var r = await Accept(Build(Rem, "m.room.message", null, new JsonObject { ["msgtype"] = "m.text", ["body"] = "sneaky" }, prev: [join.EventId!]));
        Assert.Equal(IngestOutcome.SoftFailed, r.Outcome);
        var stored = _h.Rooms.Event(r.EventId!)!;
        Assert.True(stored.SoftFailed);
        Assert.Null(stored.Rejected);
        Assert.False(stored.InTimeline);
        Assert.False(_h.Visibility.CanSee(Alice, stored));
        Assert.Equal(timeline, TimelineIds());
        Assert.Equal([ban.EventId], Extremities());
        Assert.Equal(IngestOutcome.SoftFailed, (await Accept(stored.Pdu)).Outcome);
    }

    [Theory]
    [InlineData("1")]
    [InlineData("2")]
    [InlineData("3")]
    [InlineData("12")]
    public async Task OtherRoomVersions_JoinMessageForkAndMerge(string versionId)
    {
        var created = await _h.Sender.SendAsync(versionId == "12" ? "" : $"!v{versionId}:test.local", Alice,
        [
            // v1-10 name the creator in the create content; v12 creators may not be listed in users.
            new NewEvent("m.room.create", "", int.Parse(versionId) <= 10
                ? new JsonObject { ["room_version"] = versionId, ["creator"] = Alice }
                : new JsonObject { ["room_version"] = versionId }),
            new NewEvent("m.room.member", Alice, new JsonObject { ["membership"] = "join" }),
            new NewEvent("m.room.power_levels", "", new JsonObject
            {
                ["users"] = versionId == "12" ? new JsonObject { [R1] = 50 } : new JsonObject { [Alice] = 100, [R1] = 50 },
                ["state_default"] = 50,
            }),
            new NewEvent("m.room.join_rules", "", new JsonObject { ["join_rule"] = "public" }),
        ], null, CancellationToken.None);
        var room = created[0].RoomId;
        var join = await JoinAsync(R1, room);
        var msg = await Accept(Build(R1, "m.room.message", null, new JsonObject { ["msgtype"] = "m.text", ["body"] = "hi" }, room: room));
        Assert.Equal(IngestOutcome.Accepted, msg.Outcome);
        Assert.Contains(msg.EventId!, _h.Rooms.Timeline(room, 0, long.MaxValue, false).Select(t => t.EventId));
        using var forger = SigningKey.Generate("r");
        Assert.Equal(IngestOutcome.Dropped, (await Accept(Build(R1, "m.room.message", null, new JsonObject { ["body"] = "x" }, signWith: forger, room: room))).Outcome);

        // A fork of two topics; v1 has no state resolution here, so its merge is dropped (not stored) for now.
        var now = Ids.NowMs();
        var t1 = await Accept(Build(R1, "m.room.topic", "", new JsonObject { ["topic"] = "late" }, prev: [msg.EventId!], ts: now + 1000, room: room));
        Assert.Equal(IngestOutcome.Accepted, t1.Outcome);
        var t2 = await Accept(Build(R1, "m.room.topic", "", new JsonObject { ["topic"] = "early" }, prev: [msg.EventId!], ts: now, room: room));
        if (versionId == "1")
        {
            Assert.Equal(IngestOutcome.Dropped, t2.Outcome);
            return;
        }
        Assert.Equal(IngestOutcome.Accepted, t2.Outcome);
        Assert.Equal(t1.EventId, _h.Rooms.StateEventId(room, "m.room.topic", ""));
        var merged = await _h.MessageAsync(room, Alice, "merged");
        Assert.Equal(new[] { t1.EventId!, t2.EventId! }.Order(), EventAuth.PrevEventIds(merged.Pdu).Order());
        Assert.Equal(t1.EventId, _h.States.LookupEventId(merged.StateBefore, "m.room.topic", ""));
    }
}

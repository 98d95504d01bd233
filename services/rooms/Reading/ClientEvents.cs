using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Events;
using Conduit.Rooms.Rules;

namespace Conduit.Rooms;

/// <summary>
/// Turns stored PDUs into the client format (spec: client-server-api, "Room Event Format"): redactions applied,
/// and unsigned with age, prev_content, redacted_because, for the sending device only, transaction_id, and the
/// server-side aggregations of child events in m.relations (<see cref="Bundle"/>).
/// </summary>
public sealed class ClientEvents(RoomStore rooms, Relations relations, Visibility visibility)
{
    /// <summary>
    /// The event as a client sees it; <paramref name="forUser"/> (the reader) decides the thread aggregation's
    /// current_user_participated and which latest reply it may see.
    /// </summary>
    public JsonObject Format(StoredEvent e, string? forDevice = null, bool includeRoomId = true, string? forUser = null)
        => Format(e, forDevice, includeRoomId, forUser, bundleThread: true);

    JsonObject Format(StoredEvent e, string? forDevice, bool includeRoomId, string? forUser, bool bundleThread, bool bundle = true)
    {
        var pdu = e.Pdu;
        var version = rooms.VersionOf(e.RoomId!) ?? RoomVersion.V11;
        var unsigned = new JsonObject { ["age"] = Math.Max(0, Ids.NowMs() - (pdu["origin_server_ts"]?.GetValue<long>() ?? 0)) };
        if (e.Meta["redacted_by"]?.GetValue<string>() is { } redactedBy)
        {
            pdu = Redaction.Redact(pdu, version);
            if (rooms.Event(redactedBy) is { } r) unsigned["redacted_because"] = Format(r, null, includeRoomId, null, false, bundle: false);
        }
        var o = new JsonObject
        {
            ["content"] = pdu["content"]?.DeepClone() ?? new JsonObject(),
            ["event_id"] = e.EventId,
            ["origin_server_ts"] = pdu["origin_server_ts"]?.DeepClone(),
            ["sender"] = pdu["sender"]?.DeepClone(),
            ["type"] = pdu["type"]?.DeepClone(),
        };
        if (includeRoomId) o["room_id"] = e.RoomId;
        if (pdu["state_key"] is { } sk) o["state_key"] = sk.DeepClone();
        if (pdu["redacts"] is { } rd) o["redacts"] = rd.DeepClone();
        else if (e.Type == "m.room.redaction" && pdu["content"]?["redacts"] is { } rc) o["redacts"] = rc.DeepClone();
        if (e.Meta["prev_content_event"]?.GetValue<string>() is { } prevId && rooms.Event(prevId) is { } prev)
        {
            unsigned["prev_content"] = prev.Meta["redacted_by"] is null ? prev.Content.DeepClone() : Redaction.Redact(prev.Pdu, version)["content"]?.DeepClone();
            unsigned["replaces_state"] = prevId;
            unsigned["prev_sender"] = prev.Sender;
        }
        if (forDevice is not null && e.Meta["sender_device"]?.GetValue<string>() == forDevice && e.Meta["txn_id"] is { } txn)
            unsigned["transaction_id"] = txn.DeepClone();
        if (bundle && e.InTimeline) Bundle(unsigned, e, e.Meta["redacted_by"] is not null, forDevice, includeRoomId, forUser, bundleThread);
        o["unsigned"] = unsigned;
        return o;
    }

    /// <summary>
    /// Server-side aggregations (spec: client-server-api, "Aggregations of child events"): m.thread (latest reply
    /// the reader may see, formatted with its own aggregations, count, current_user_participated) and m.replace
    /// (the most recent valid edit, whole; none for a redacted original). m.annotation and m.reference are not
    /// aggregated (the spec dropped m.reference's; Synapse does neither). Most events have no children: one seek of
    /// the relation index decides that.
    /// </summary>
    void Bundle(JsonObject unsigned, StoredEvent e, bool redacted, string? forDevice, bool includeRoomId, string? forUser, bool bundleThread)
    {
        if (!relations.HasChildren(e.RoomId, e.EventId)) return;
        var m = new JsonObject();
        if (bundleThread && relations.Thread(e.RoomId, e.EventId) is { Count: > 0 } t && LatestVisible(e, t, forUser) is { } latest)
        {
            m[RelatesTo.Thread] = new JsonObject
            {
                ["latest_event"] = Format(latest, forDevice, includeRoomId, forUser, bundleThread: false),
                ["count"] = t.Count,
                ["current_user_participated"] = forUser is not null && relations.Participated(e.RoomId, e.EventId, forUser),
            };
        }
        if (!redacted && relations.LatestEdit(e) is { } edit) m[RelatesTo.Replace] = Format(edit, forDevice, includeRoomId, forUser, false, bundle: false);
        if (m.Count > 0) unsigned["m.relations"] = m;
    }

    // The thread's latest reply, or, when the reader may not see it (they left before it), the newest they may.
    StoredEvent? LatestVisible(StoredEvent root, ThreadSummary t, string? forUser)
    {
        if (rooms.Event(t.Latest) is { } latest && (forUser is null || visibility.CanSee(forUser, latest))) return latest;
        if (forUser is null) return null;
        var window = visibility.ReadableWindow(forUser, root.RoomId);
        foreach (var r in relations.Children(root.RoomId, root.EventId, RelatesTo.Thread, 0, Math.Min(t.Pos - 1, window?.UpTo ?? 0)))
            if (rooms.Event(r.EventId) is { } x && visibility.CanSee(forUser, x, window)) return x;
        return null;
    }

    /// <summary>Stripped state for invites and knocks (spec: client-server-api, "Stripped state").</summary>
    public JsonArray StrippedState(string roomId, string userId)
    {
        var arr = new JsonArray();
        // An invite from another server to a room this one is not in: the state the inviting server sent with it.
        if (rooms.StateEvent(roomId, "m.room.member", userId) is { } invite && invite.Meta["invite_room_state"] is JsonArray sent)
        {
            foreach (var e in sent)
                if (e is JsonObject o && !(ContentField.String(o, "type") == "m.room.member" && ContentField.String(o, "state_key") == userId))
                    arr.Add(o.DeepClone());
            arr.Add((JsonNode)Stripped(invite));
            return arr;
        }
        foreach (var type in new[] { "m.room.create", "m.room.join_rules", "m.room.name", "m.room.avatar", "m.room.canonical_alias", "m.room.encryption", "m.room.topic" })
            if (rooms.StateEvent(roomId, type, "") is { } ev) arr.Add((JsonNode)Stripped(ev));
        if (rooms.StateEvent(roomId, "m.room.member", userId) is { } me)
        {
            if (rooms.StateEvent(roomId, "m.room.member", me.Sender) is { } inviter && me.Sender != userId) arr.Add((JsonNode)Stripped(inviter));
            arr.Add((JsonNode)Stripped(me));
        }
        return arr;
    }

    static JsonObject Stripped(StoredEvent e) => new()
    {
        ["content"] = e.Content.DeepClone(),
        ["sender"] = e.Sender,
        ["state_key"] = e.StateKey,
        ["type"] = e.Type,
    };
}

using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Events;

namespace Conduit.Rooms;

/// <summary>
/// Turns stored PDUs into the client format (spec: client-server-api, "Room Event Format"): redactions applied,
/// and unsigned with age, prev_content, redacted_because and, for the sending device only, transaction_id.
/// </summary>
public sealed class ClientEvents(RoomStore rooms)
{
    public JsonObject Format(StoredEvent e, string? forDevice = null, bool includeRoomId = true)
    {
        var pdu = e.Pdu;
        var version = rooms.VersionOf(e.RoomId!) ?? RoomVersion.V11;
        var unsigned = new JsonObject { ["age"] = Math.Max(0, Ids.NowMs() - (pdu["origin_server_ts"]?.GetValue<long>() ?? 0)) };
        if (e.Meta["redacted_by"]?.GetValue<string>() is { } redactedBy)
        {
            pdu = Redaction.Redact(pdu, version);
            if (rooms.Event(redactedBy) is { } r) unsigned["redacted_because"] = Format(r, null, includeRoomId);
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
        o["unsigned"] = unsigned;
        return o;
    }

    /// <summary>Stripped state for invites and knocks (spec: client-server-api, "Stripped state").</summary>
    public JsonArray StrippedState(string roomId, string userId)
    {
        var arr = new JsonArray();
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

using System.Text.Json.Nodes;

namespace Conduit.Rooms;

/// <summary>
/// Room summaries (spec: client-server-api, "GET /_matrix/client/v1/room_summary" and the space hierarchy's chunks):
/// who may see one, and what it says, from the room's current state.
/// </summary>
public sealed class RoomSummaries(RoomStore rooms)
{
    /// <summary>
    /// Whether a user (null: no token) may see a room's summary: they are joined, invited or knocking; or the room is
    /// public, knockable or world-readable; or it is restricted to a room the user is joined to (Synapse's rule).
    /// </summary>
    public bool MaySee(string roomId, string? userId)
    {
        if (userId is not null && rooms.MembershipOf(userId, roomId)?.State is "join" or "invite" or "knock") return true;
        var joinRule = JoinRule.Of(rooms.StateContent(roomId, "m.room.join_rules"));
        if (joinRule is "public" or "knock" or "knock_restricted") return true;
        if (HistoryVisibility.Of(rooms.StateContent(roomId, "m.room.history_visibility")) == HistoryVisibility.WorldReadable) return true;
        return userId is not null && joinRule is "restricted"
            && JoinRule.AllowedRoomIds(rooms.StateContent(roomId, "m.room.join_rules")).Any(r => rooms.MembershipOf(userId, r)?.State == "join");
    }

    /// <summary>The spec's room summary fields from the room's current state (the shape of a public rooms chunk).</summary>
    public JsonObject Summarise(string roomId)
    {
        var o = new JsonObject { ["room_id"] = roomId };
        void Put(string key, string? value) { if (!string.IsNullOrEmpty(value)) o[key] = value; }
        Put("name", ContentField.String(rooms.StateContent(roomId, "m.room.name"), "name"));
        Put("topic", ContentField.String(rooms.StateContent(roomId, "m.room.topic"), "topic"));
        Put("avatar_url", ContentField.String(rooms.StateContent(roomId, "m.room.avatar"), "url"));
        Put("canonical_alias", ContentField.String(rooms.StateContent(roomId, "m.room.canonical_alias"), "alias"));
        o["num_joined_members"] = rooms.JoinedMembers(roomId).Count();
        o["world_readable"] = HistoryVisibility.Of(rooms.StateContent(roomId, "m.room.history_visibility")) == HistoryVisibility.WorldReadable;
        o["guest_can_join"] = ContentField.String(rooms.StateContent(roomId, "m.room.guest_access"), "guest_access") == "can_join";
        var joinRules = rooms.StateContent(roomId, "m.room.join_rules");
        o["join_rule"] = JoinRule.Of(joinRules) ?? "invite";
        var allowed = JoinRule.AllowedRoomIds(joinRules).ToArray();
        if (allowed.Length > 0 && o["join_rule"]!.GetValue<string>() is "restricted" or "knock_restricted")
            o["allowed_room_ids"] = new JsonArray(allowed.Select(r => (JsonNode)r).ToArray());
        var create = rooms.StateContent(roomId, "m.room.create");
        Put("room_type", ContentField.String(create, "type"));
        Put("room_version", rooms.VersionOf(roomId)?.Id);
        Put("encryption", ContentField.String(rooms.StateContent(roomId, "m.room.encryption"), "algorithm"));
        return o;
    }
}

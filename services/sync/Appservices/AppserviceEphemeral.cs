using System.Text.Json.Nodes;
using Conduit.Common.Appservices;
using Conduit.Common.Config;

namespace Conduit.Sync.Appservices;

/// <summary>
/// Queues ephemeral events for the application services that opted in with receive_ephemeral (spec:
/// application-service-api, "Pushing ephemeral data", MSC2409): m.typing and m.receipt "under the same rules as regular
/// events" (an appservice interested in the room by its ID or a joined member; aliases are not looked up for these),
/// each with the room_id added; a private receipt only when its user is the appservice's; m.presence of its users and
/// of users who share a room with one of them. Both features live in this service, so the endpoints call it directly.
/// </summary>
public sealed class AppserviceEphemeral(AppserviceQueue queue, GlobalConfig config)
{
    IEnumerable<AppserviceRegistration> Listening() => config.Appservices().Where(r => r.ReceiveEphemeral && r.Url is not null);

    /// <summary>The room's typing users changed.</summary>
    public void Typing(string roomId, IReadOnlyCollection<string> typing, IReadOnlyList<string> joined)
    {
        var items = new List<AppserviceItem>();
        foreach (var r in Listening())
            if (r.IsInterestedInRoom(roomId, [], joined, config.ServerName))
                items.Add(new AppserviceItem(r.Id, "ephemeral", new JsonObject
                {
                    ["type"] = "m.typing", ["room_id"] = roomId,
                    ["content"] = new JsonObject { ["user_ids"] = new JsonArray([.. typing.Select(u => (JsonNode)u)]) },
                }.ToJsonString()));
        queue.Append(items);
    }

    /// <summary>A receipt was stored (it changed something).</summary>
    public void Receipt(string roomId, string userId, string type, string threadId, string eventId, long ts, IReadOnlyList<string> joined)
    {
        var items = new List<AppserviceItem>();
        foreach (var r in Listening())
        {
            if (!r.IsInterestedInRoom(roomId, [], joined, config.ServerName)) continue;
            if (type == ReceiptTypes.ReadPrivate && !r.IsInterestedInUser(userId, config.ServerName)) continue;
            var data = new JsonObject { ["ts"] = ts };
            if (threadId.Length > 0) data["thread_id"] = threadId;
            items.Add(new AppserviceItem(r.Id, "ephemeral", new JsonObject
            {
                ["type"] = "m.receipt", ["room_id"] = roomId,
                ["content"] = new JsonObject { [eventId] = new JsonObject { [type] = new JsonObject { [userId] = data.DeepClone() } } },
            }.ToJsonString()));
        }
        queue.Append(items);
    }

    /// <summary>A user's presence changed; <paramref name="shared"/> are the users who share a room with them.</summary>
    public void Presence(string userId, JsonObject content, IReadOnlyCollection<string> shared)
    {
        var items = new List<AppserviceItem>();
        foreach (var r in Listening())
            if (r.IsInterestedInUser(userId, config.ServerName) || shared.Any(u => r.IsInterestedInUser(u, config.ServerName)))
                items.Add(new AppserviceItem(r.Id, "ephemeral", new JsonObject { ["type"] = "m.presence", ["sender"] = userId, ["content"] = content.DeepClone() }.ToJsonString()));
        queue.Append(items);
    }
}

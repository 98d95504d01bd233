using System.Net;
using System.Text.Json.Nodes;
using static Conduit.Functional.Tests.MatrixClient;

namespace Conduit.Functional.Tests;

/// <summary>An admin using the admin room from a client: finding and joining #admins, typing a command and waiting
/// for the bot's reply to it.</summary>
public sealed class AdminRoomClient(ServerFixture server)
{
    public string Bot => $"@conduit:{server.ServerName}";
    public string Alias => $"#admins:{server.ServerName}";

    /// <summary>The admin room's ID, once the server has made it (at its first start, in split mode once keys answers).</summary>
    public async Task<string> AdminRoom(MatrixClient c)
    {
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (true)
        {
            var r = await c.Get($"{C}/directory/room/{E(Alias)}");
            if (r.Status == HttpStatusCode.OK) return r.Obj["room_id"]!.GetValue<string>();
            Assert.True(DateTime.UtcNow < deadline, $"no admin room: {r.Body?.ToJsonString()}");
            await Task.Delay(100);
        }
    }

    /// <summary>Joins the admin room once the bot's invite is there (the invite is sent as the account becomes admin).</summary>
    public async Task<string> JoinAdminRoom(MatrixClient c)
    {
        var room = await AdminRoom(c);
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            var r = await c.Post($"{C}/rooms/{E(room)}/join", new JsonObject());
            if (r.Status == HttpStatusCode.OK) return room;
            Assert.True(DateTime.UtcNow < deadline, $"{c.UserId} could not join the admin room: {r.Body?.ToJsonString()}");
            await Task.Delay(100);
        }
    }

    /// <summary>Sends a command and waits for the bot's reply to it; answers the reply's content.</summary>
    public async Task<JsonObject> Command(MatrixClient c, string text, string? room = null)
    {
        room ??= await JoinAdminRoom(c);
        var sent = await c.SendText(room, text);
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (true)
        {
            var chunk = (await c.Get($"{C}/rooms/{E(room)}/messages?dir=b&limit=50")).Ok().Obj["chunk"]!.AsArray();
            var reply = chunk.OfType<JsonObject>().FirstOrDefault(e => e["sender"]?.GetValue<string>() == Bot
                && e["content"]?["m.relates_to"]?["m.in_reply_to"]?["event_id"]?.GetValue<string>() == sent);
            if (reply is not null)
            {
                var content = reply["content"]!.AsObject();
                Assert.Equal("m.notice", content["msgtype"]!.GetValue<string>());
                Assert.Equal("org.matrix.custom.html", content["format"]!.GetValue<string>());
                return content;
            }
            Assert.True(DateTime.UtcNow < deadline, $"no reply to '{text}'");
            await Task.Delay(100);
        }
    }

    /// <summary>The reply's text (Markdown).</summary>
    public static string Body(JsonObject reply) => reply["body"]!.GetValue<string>();
}

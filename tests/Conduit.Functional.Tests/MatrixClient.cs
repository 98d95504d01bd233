using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;

namespace Conduit.Functional.Tests;

public sealed record Response(HttpStatusCode Status, JsonNode? Body)
{
    public JsonObject Obj => Body as JsonObject ?? throw new InvalidOperationException($"not an object: {Body}");
    public string? ErrCode => (Body as JsonObject)?["errcode"]?.GetValue<string>();
    public Response Ok()
    {
        Assert.True(Status == HttpStatusCode.OK, $"expected 200, got {(int)Status}: {Body?.ToJsonString()}");
        return this;
    }
}

/// <summary>A thin Matrix client over HttpClient, for tests that assert what a user would see.</summary>
public sealed class MatrixClient(ServerFixture server, string? token = null)
{
    public string? Token { get; set; } = token;
    public string UserId { get; set; } = "";
    public string DeviceId { get; set; } = "";
    /// <summary>Sent as X-Forwarded-For on every request: a client behind a proxy the server may trust.</summary>
    public string? ForwardedFor { get; set; }
    /// <summary>Sent as User-Agent on every request (HttpClient sends none of its own).</summary>
    public string? UserAgent { get; set; }

    public async Task<Response> Call(string method, string path, JsonNode? body = null, string? rawBody = null, bool auth = true)
    {
        using var req = new HttpRequestMessage(new HttpMethod(method), server.BaseUrl + path);
        if (auth && Token is not null) req.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Token);
        if (ForwardedFor is not null) req.Headers.Add("X-Forwarded-For", ForwardedFor);
        if (UserAgent is not null) req.Headers.TryAddWithoutValidation("User-Agent", UserAgent);
        if (rawBody is not null) req.Content = new StringContent(rawBody, Encoding.UTF8, "application/json");
        else if (body is not null) req.Content = new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json");
        using var resp = await server.Http.SendAsync(req);
        var text = await resp.Content.ReadAsStringAsync();
        JsonNode? node = null;
        if (text.Length > 0)
        {
            // Deeper than System.Text.Json's default of 64: a /sync can carry events nested that deep.
            try { node = JsonNode.Parse(text, documentOptions: new() { MaxDepth = 256 }); } catch (System.Text.Json.JsonException) { node = JsonValue.Create(text); }
        }
        return new Response(resp.StatusCode, node);
    }

    public Task<Response> Get(string path) => Call("GET", path);
    public Task<Response> Put(string path, JsonNode body) => Call("PUT", path, body);
    public Task<Response> Post(string path, JsonNode body) => Call("POST", path, body);

    public const string C = "/_matrix/client/v3";

    static int _counter;
    public static string UniqueName(string prefix) => $"{prefix}{Environment.ProcessId}x{Interlocked.Increment(ref _counter)}x{Random.Shared.Next(100000)}";

    /// <summary>Registers through the user-interactive dummy flow and keeps the token.</summary>
    public static async Task<MatrixClient> Register(ServerFixture server, string? localpart = null, string password = "correct horse")
    {
        var c = new MatrixClient(server);
        localpart ??= UniqueName("u");
        var first = await c.Call("POST", C + "/register", new JsonObject { ["username"] = localpart, ["password"] = password }, auth: false);
        Assert.Equal(HttpStatusCode.Unauthorized, first.Status);
        var session = first.Obj["session"]!.GetValue<string>();
        var done = (await c.Call("POST", C + "/register", new JsonObject
        {
            ["username"] = localpart,
            ["password"] = password,
            ["auth"] = new JsonObject { ["type"] = "m.login.dummy", ["session"] = session },
        }, auth: false)).Ok();
        c.Token = done.Obj["access_token"]!.GetValue<string>();
        c.UserId = done.Obj["user_id"]!.GetValue<string>();
        c.DeviceId = done.Obj["device_id"]!.GetValue<string>();
        return c;
    }

    /// <summary>A password login (m.id.user), with no client behind it.</summary>
    public static Task<Response> PasswordLogin(ServerFixture server, string userId, string password)
        => new MatrixClient(server).Call("POST", $"{C}/login", new JsonObject
        {
            ["type"] = "m.login.password",
            ["identifier"] = new JsonObject { ["type"] = "m.id.user", ["user"] = userId },
            ["password"] = password,
        }, auth: false);

    public async Task<string> CreateRoom(JsonObject? body = null)
        => (await Post(C + "/createRoom", body ?? new JsonObject())).Ok().Obj["room_id"]!.GetValue<string>();

    /// <summary>Two new users and Alice's public room, which Bob has joined.</summary>
    public static async Task<(MatrixClient Alice, MatrixClient Bob, string Room)> PublicRoomPair(ServerFixture server)
    {
        var a = await Register(server);
        var b = await Register(server);
        var room = await a.CreateRoom(new JsonObject { ["preset"] = "public_chat" });
        (await b.Post($"{C}/join/{E(room)}", new JsonObject())).Ok();
        return (a, b, room);
    }

    static int _txn;
    public async Task<string> SendText(string roomId, string text)
        => (await Put($"{C}/rooms/{E(roomId)}/send/m.room.message/t{Interlocked.Increment(ref _txn)}", new JsonObject { ["msgtype"] = "m.text", ["body"] = text }))
            .Ok().Obj["event_id"]!.GetValue<string>();

    /// <summary>
    /// <paramref name="count"/> texts ("{prefix}0", ...), each sent at least 30 ms after what came before, so every one
    /// has a timestamp of its own; their IDs and origin_server_ts, oldest first.
    /// </summary>
    public async Task<List<(string Id, long Ts)>> SendSpacedTexts(string roomId, string prefix, int count)
    {
        var sent = new List<(string, long)>();
        for (var i = 0; i < count; i++)
        {
            await Task.Delay(30);
            var id = await SendText(roomId, $"{prefix}{i}");
            sent.Add((id, (await Get($"{C}/rooms/{E(roomId)}/event/{E(id)}")).Ok().Obj["origin_server_ts"]!.GetValue<long>()));
        }
        return sent;
    }

    public async Task<JsonObject> Sync(string? since = null, int timeoutMs = 0, string? filter = null)
    {
        var q = $"?timeout={timeoutMs}";
        if (since is not null) q += "&since=" + Uri.EscapeDataString(since);
        if (filter is not null) q += "&filter=" + Uri.EscapeDataString(filter);
        return (await Get(C + "/sync" + q)).Ok().Obj;
    }

    public static string E(string s) => Uri.EscapeDataString(s);

    /// <summary>Bodies of m.room.message events in a sync's joined room timeline.</summary>
    public static List<string> TimelineBodies(JsonObject sync, string roomId)
        => (sync["rooms"]?["join"]?[roomId]?["timeline"]?["events"] as JsonArray ?? [])
            .Where(e => e?["type"]?.GetValue<string>() == "m.room.message")
            .Select(e => e!["content"]!["body"]!.GetValue<string>()).ToList();
}

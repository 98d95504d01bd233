using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;
using Xunit.Abstractions;
using static Conduit.Functional.Tests.MatrixClient;

namespace Conduit.Functional.Tests;

/// <summary>
/// Hostile input never breaks a room: bad event content, malformed JSON, oversized events, bad redactions and
/// requests the web server itself refuses are all answered with a 4xx and Matrix error JSON, nothing half-written is
/// left, and the room keeps working for every member. Both modes, through the edge.
/// </summary>
public abstract class HostileInputTests(ServerFixture server, ITestOutputHelper output)
{
    Task<TestRoom> NewRoom() => TestRoom.CreateAsync(server);

    /// <summary>Every member's /sync, /messages, /state, /members, /context, /event and /search answer 200.</summary>
    static async Task AssertRoomWorks(TestRoom r)
    {
        foreach (var u in new[] { r.Admin, r.Member })
        {
            var sync = await u.Sync();
            Assert.True(sync["rooms"]!["join"]![r.Id] is JsonObject, $"{u.UserId} lost the room from /sync");
            (await u.Get($"{C}/rooms/{E(r.Id)}/messages?dir=b&limit=50")).Ok();
            (await u.Get($"{C}/rooms/{E(r.Id)}/state")).Ok();
            (await u.Get($"{C}/rooms/{E(r.Id)}/members")).Ok();
            (await u.Get($"{C}/rooms/{E(r.Id)}/context/{E(r.EventId)}")).Ok();
            (await u.Get($"{C}/rooms/{E(r.Id)}/event/{E(r.EventId)}")).Ok();
            var search = (await u.Post(C + "/search", new JsonObject
            {
                ["search_categories"] = new JsonObject { ["room_events"] = new JsonObject { ["search_term"] = "findme" } },
            })).Ok();
            Assert.Contains(search.Obj["search_categories"]!["room_events"]!["results"]!.AsArray(), x => x!["result"]!["event_id"]!.GetValue<string>() == r.EventId);
        }
    }

    static void Refused(Response resp, HttpStatusCode status, string errcode, string what)
    {
        Assert.True(resp.Status == status && resp.ErrCode == errcode, $"{what}: expected {(int)status} {errcode}, got {(int)resp.Status} {resp.Body?.ToJsonString()}");
    }

    static async Task<List<string>> TimelineTypes(MatrixClient u, string room)
        => (await u.Get($"{C}/rooms/{E(room)}/messages?dir=b&limit=100")).Ok().Obj["chunk"]!.AsArray().Select(e => e!["type"]!.GetValue<string>()).ToList();

    // ---- bad state content (the report: one bad m.room.history_visibility broke every member's /sync)

    [Fact]
    public async Task A_bad_history_visibility_is_refused_and_the_room_keeps_working()
    {
        var r = await NewRoom();
        var before = await TimelineTypes(r.Admin, r.Id);
        foreach (var bad in new JsonNode?[] { new JsonObject { ["a"] = 1 }, 5, new JsonArray("shared"), true, "joined_only", null })
        {
            var resp = await r.Admin.Put($"{C}/rooms/{E(r.Id)}/state/m.room.history_visibility/", new JsonObject { ["history_visibility"] = bad?.DeepClone() });
            Refused(resp, HttpStatusCode.BadRequest, "M_BAD_JSON", $"history_visibility {bad?.ToJsonString() ?? "null"}");
        }
        // Nothing was written: the setting and the timeline are as they were.
        Assert.Equal("shared", (await r.Admin.Get($"{C}/rooms/{E(r.Id)}/state/m.room.history_visibility/")).Ok().Obj["history_visibility"]!.GetValue<string>());
        Assert.Equal(before, await TimelineTypes(r.Admin, r.Id));
        await AssertRoomWorks(r);
        // A good value still goes through.
        (await r.Admin.Put($"{C}/rooms/{E(r.Id)}/state/m.room.history_visibility/", new JsonObject { ["history_visibility"] = "invited" })).Ok();
        await AssertRoomWorks(r);
    }

    public static TheoryData<string, string, string, int, string> BadContent => new()
    {
        // type, state key ("-" for /send), content, status, errcode
        { "m.room.power_levels", "", """{"ban":"50"}""", 400, "M_BAD_JSON" },
        { "m.room.power_levels", "", """{"users":{"@x:test.local":1.5}}""", 400, "M_BAD_JSON" },
        { "m.room.join_rules", "", """{"join_rule":5}""", 400, "M_BAD_JSON" },
        { "m.room.join_rules", "", """{"join_rule":"restricted","allow":[5]}""", 400, "M_BAD_JSON" },
        { "m.room.guest_access", "", """{"guest_access":{}}""", 400, "M_BAD_JSON" },
        { "m.room.name", "", """{"name":5}""", 400, "M_BAD_JSON" },
        { "m.room.topic", "", """{"topic":["a"]}""", 400, "M_BAD_JSON" },
        { "m.room.avatar", "", """{"url":1}""", 400, "M_BAD_JSON" },
        { "m.room.canonical_alias", "", """{"alias":5}""", 400, "M_BAD_JSON" },
        { "m.room.canonical_alias", "", """{"alias":"no-sigil"}""", 400, "M_INVALID_PARAM" },
        { "m.room.encryption", "", """{"rotation_period_ms":1}""", 400, "M_BAD_JSON" },
        { "m.room.tombstone", "", """{"replacement_room":"nowhere"}""", 400, "M_INVALID_PARAM" },
        { "m.room.server_acl", "", """{"allow":["elsewhere.org"]}""", 400, "M_INVALID_PARAM" },
        { "m.room.server_acl", "", """{"allow":"*"}""", 400, "M_BAD_JSON" },
        { "m.room.name", "-", """{"name":"a name sent as a message"}""", 400, "M_BAD_JSON" },
        { "m.room.message", "-", """{"msgtype":"m.text","body":{"x":1}}""", 400, "M_BAD_JSON" },
        { "x.custom", "-", """{"n":1.5}""", 400, "M_BAD_JSON" },
        { "x.custom", "-", """{"n":9007199254740992}""", 400, "M_BAD_JSON" },
        { "x.custom", "", """{"n":[-9007199254740992]}""", 400, "M_BAD_JSON" },
    };

    [Theory]
    [MemberData(nameof(BadContent))]
    public async Task Bad_content_of_interpreted_events_is_refused(string type, string stateKey, string content, int status, string errcode)
    {
        var r = await NewRoom();
        var before = await TimelineTypes(r.Admin, r.Id);
        var path = stateKey == "-" ? $"{C}/rooms/{E(r.Id)}/send/{type}/t{Guid.NewGuid():N}" : $"{C}/rooms/{E(r.Id)}/state/{type}/{E(stateKey)}";
        Refused(await r.Admin.Call("PUT", path, rawBody: content), (HttpStatusCode)status, errcode, $"{type} {content}");
        Assert.Equal(before, await TimelineTypes(r.Admin, r.Id));
        await AssertRoomWorks(r);
    }

    [Fact]
    public async Task A_bad_initial_state_creates_no_room()
    {
        var u = await Register(server);
        foreach (var body in new[]
        {
            new JsonObject { ["initial_state"] = new JsonArray(new JsonObject { ["type"] = "m.room.history_visibility", ["content"] = new JsonObject { ["history_visibility"] = 5 } }) },
            new JsonObject { ["creation_content"] = new JsonObject { ["m.federate"] = "no" } },
            new JsonObject { ["power_level_content_override"] = new JsonObject { ["users_default"] = 0.5 } },
            new JsonObject { ["room_alias_name"] = new string('a', 250) },
        })
            Assert.Equal(HttpStatusCode.BadRequest, (await u.Post(C + "/createRoom", body)).Status);
        Assert.Empty((await u.Get(C + "/joined_rooms")).Ok().Obj["joined_rooms"]!.AsArray());
        Assert.Empty((await u.Sync())["rooms"]!["join"]!.AsObject());
    }

    // ---- malformed JSON, from one place in the HTTP layer

    [Fact]
    public async Task Malformed_json_is_refused_everywhere_with_400()
    {
        var r = await NewRoom();
        var anon = new MatrixClient(server);
        var cases = new (string Name, byte[] Body, string ErrCode)[]
        {
            ("invalid UTF-8", [.. "{\"msgtype\":\"m.text\",\"body\":\""u8, 0xff, 0xc0, .. "\"}"u8], "M_NOT_JSON"),
            ("duplicate keys", "{\"body\":\"a\",\"body\":\"b\",\"msgtype\":\"m.text\"}"u8.ToArray(), "M_NOT_JSON"),
            ("nested duplicate keys", "{\"x\":{\"k\":1,\"k\":2}}"u8.ToArray(), "M_NOT_JSON"),
            ("lone surrogate", "{\"body\":\"\\ud800\",\"msgtype\":\"m.text\"}"u8.ToArray(), "M_NOT_JSON"),
            ("lone surrogate key", "{\"\\udc00\":1}"u8.ToArray(), "M_NOT_JSON"),
            ("too deep", Encoding.UTF8.GetBytes("{\"x\":" + new string('[', 200) + new string(']', 200) + "}"), "M_NOT_JSON"),
            ("an array", "[1,2]"u8.ToArray(), "M_BAD_JSON"),
        };
        var targets = new (string Method, string Path, MatrixClient Who)[]
        {
            ("PUT", $"{C}/rooms/{E(r.Id)}/send/m.room.message/t{Guid.NewGuid():N}", r.Admin),
            ("PUT", $"{C}/rooms/{E(r.Id)}/state/m.room.topic/", r.Admin),
            ("POST", C + "/createRoom", r.Admin),
            ("POST", C + "/login", anon),
            ("POST", C + "/register", anon),
            ("POST", $"{C}/user/{E(r.Admin.UserId)}/filter", r.Admin),
            ("POST", C + "/search", r.Admin),
        };
        foreach (var (method, path, who) in targets)
            foreach (var (name, body, errcode) in cases)
            {
                var (status, json) = await Send(who, method, path, body);
                Assert.True(status == 400 && json?["errcode"]?.GetValue<string>() == errcode, $"{method} {path} with {name}: got {status} {json?.ToJsonString()}");
            }
        // Filters in query parameters are held to the same rules.
        var (fs, fj) = await Send(r.Admin, "GET", $"{C}/rooms/{E(r.Id)}/messages?filter={E("{\"limit\":1,\"limit\":2}")}", null);
        Assert.True(fs == 400 && fj?["errcode"]?.GetValue<string>() == "M_NOT_JSON", $"messages filter: {fs} {fj?.ToJsonString()}");
        var (ss, sj) = await Send(r.Admin, "GET", $"{C}/sync?filter={E("{\"room\":{\"\\ud800\":1}}")}", null);
        Assert.True(ss == 400 && sj?["errcode"]?.GetValue<string>() == "M_NOT_JSON", $"sync filter: {ss} {sj?.ToJsonString()}");
        // Wrong types in nested lists are M_BAD_JSON.
        Refused(await r.Admin.Post(C + "/createRoom", new JsonObject { ["invite"] = new JsonArray(new JsonArray()) }), HttpStatusCode.BadRequest, "M_BAD_JSON", "invite [[]]");
        Refused(await r.Admin.Post(C + "/search", new JsonObject
        {
            ["search_categories"] = new JsonObject { ["room_events"] = new JsonObject { ["search_term"] = "x", ["keys"] = new JsonArray(5) } },
        }), HttpStatusCode.BadRequest, "M_BAD_JSON", "search keys [5]");
        await AssertRoomWorks(r);
    }

    [Fact]
    public async Task The_deepest_json_accepted_reads_back_everywhere()
    {
        // A body nested as deep as the parser takes (64): stored one level deeper (inside the event, the account data
        // entry, the push ruleset), it must still read back, or every /sync that includes it fails.
        static string Deep(int depth) => new string('[', depth) + new string(']', depth);
        var r = await NewRoom();
        var deepest = $"{{\"msgtype\":\"m.text\",\"body\":\"findme deep\",\"x\":{Deep(63)}}}";
        (await r.Admin.Call("PUT", $"{C}/rooms/{E(r.Id)}/send/m.room.message/t{Guid.NewGuid():N}", rawBody: deepest)).Ok();
        (await r.Admin.Call("PUT", $"{C}/rooms/{E(r.Id)}/state/x.deep/", rawBody: $"{{\"x\":{Deep(63)}}}")).Ok();
        (await r.Admin.Call("PUT", $"{C}/user/{E(r.Admin.UserId)}/account_data/x.deep", rawBody: $"{{\"x\":{Deep(63)}}}")).Ok();
        (await r.Admin.Call("PUT", $"{C}/user/{E(r.Admin.UserId)}/rooms/{E(r.Id)}/account_data/x.deep", rawBody: $"{{\"x\":{Deep(63)}}}")).Ok();
        (await r.Admin.Call("PUT", $"{C}/pushrules/global/override/deep", rawBody: $"{{\"actions\":{Deep(63)}}}")).Ok();
        var filter = (await r.Admin.Call("POST", $"{C}/user/{E(r.Admin.UserId)}/filter", rawBody: $"{{\"x\":{Deep(63)}}}")).Ok().Obj["filter_id"]!.GetValue<string>();
        (await r.Admin.Get($"{C}/user/{E(r.Admin.UserId)}/filter/{filter}")).Ok();
        (await r.Admin.Get($"{C}/user/{E(r.Admin.UserId)}/account_data/x.deep")).Ok();
        (await r.Admin.Get($"{C}/pushrules/")).Ok();
        (await r.Admin.Get($"{C}/sync?filter={filter}")).Ok();
        await AssertRoomWorks(r);
    }

    async Task<(int Status, JsonNode? Body)> Send(MatrixClient who, string method, string path, byte[]? body)
    {
        using var req = new HttpRequestMessage(new HttpMethod(method), server.BaseUrl + path);
        if (who.Token is not null) req.Headers.Authorization = new("Bearer", who.Token);
        if (body is not null) req.Content = new ByteArrayContent(body) { Headers = { ContentType = new("application/json") } };
        using var resp = await server.Http.SendAsync(req);
        var text = await resp.Content.ReadAsStringAsync();
        return ((int)resp.StatusCode, text.Length == 0 ? null : JsonNode.Parse(text, documentOptions: new() { MaxDepth = 256 }));
    }

    // ---- size limits (client-server-api, "Size limits")

    [Fact]
    public async Task Oversized_events_are_refused_with_M_TOO_LARGE()
    {
        var r = await NewRoom();
        var before = await TimelineTypes(r.Admin, r.Id);
        Refused(await r.Admin.Put($"{C}/rooms/{E(r.Id)}/send/m.room.message/t{Guid.NewGuid():N}", new JsonObject { ["msgtype"] = "m.text", ["body"] = new string('x', 70_000) }),
            HttpStatusCode.RequestEntityTooLarge, "M_TOO_LARGE", "70 kB message");
        Refused(await r.Admin.Put($"{C}/rooms/{E(r.Id)}/send/{new string('t', 300)}/t{Guid.NewGuid():N}", new JsonObject()),
            HttpStatusCode.RequestEntityTooLarge, "M_TOO_LARGE", "300-byte type");
        Refused(await r.Admin.Put($"{C}/rooms/{E(r.Id)}/send/{E(new string('€', 100))}/t{Guid.NewGuid():N}", new JsonObject()),
            HttpStatusCode.RequestEntityTooLarge, "M_TOO_LARGE", "100 three-byte characters of type");
        Refused(await r.Admin.Put($"{C}/rooms/{E(r.Id)}/state/x.custom/{new string('k', 300)}", new JsonObject()),
            HttpStatusCode.RequestEntityTooLarge, "M_TOO_LARGE", "300-byte state key");
        Assert.Equal(before, await TimelineTypes(r.Admin, r.Id));
        // At the limits: accepted.
        (await r.Admin.Put($"{C}/rooms/{E(r.Id)}/send/{new string('t', 255)}/t{Guid.NewGuid():N}", new JsonObject())).Ok();
        (await r.Admin.Put($"{C}/rooms/{E(r.Id)}/state/x.custom/{new string('k', 255)}", new JsonObject())).Ok();
        (await r.Admin.Put($"{C}/rooms/{E(r.Id)}/send/m.room.message/t{Guid.NewGuid():N}", new JsonObject { ["msgtype"] = "m.text", ["body"] = new string('x', 63_000) })).Ok();
        // User IDs are limited to 255 bytes, not characters.
        Refused(await r.Admin.Post($"{C}/rooms/{E(r.Id)}/ban", new JsonObject { ["user_id"] = "@" + new string('é', 130) + ":x" }),
            HttpStatusCode.BadRequest, "M_INVALID_PARAM", "a 263-byte user ID");
        await AssertRoomWorks(r);
    }

    // ---- redactions

    [Fact]
    public async Task Redactions_need_an_event_id()
    {
        var r = await NewRoom();
        var before = await TimelineTypes(r.Admin, r.Id);
        string Send() => $"{C}/rooms/{E(r.Id)}/send/m.room.redaction/t{Guid.NewGuid():N}";
        Refused(await r.Admin.Put(Send(), new JsonObject()), HttpStatusCode.BadRequest, "M_BAD_JSON", "no redacts");
        Refused(await r.Admin.Put(Send(), new JsonObject { ["redacts"] = 5 }), HttpStatusCode.BadRequest, "M_BAD_JSON", "redacts 5");
        Refused(await r.Admin.Put(Send(), new JsonObject { ["redacts"] = "not an event" }), HttpStatusCode.BadRequest, "M_INVALID_PARAM", "redacts not an event ID");
        Refused(await r.Admin.Put($"{C}/rooms/{E(r.Id)}/state/m.room.redaction/", new JsonObject()), HttpStatusCode.BadRequest, "M_BAD_JSON", "state redaction");
        Refused(await r.Admin.Put($"{C}/rooms/{E(r.Id)}/state/m.room.redaction/", new JsonObject { ["redacts"] = r.EventId }), HttpStatusCode.BadRequest, "M_BAD_JSON", "state redaction with redacts");
        Refused(await r.Admin.Put($"{C}/rooms/{E(r.Id)}/redact/not-an-event/t1", new JsonObject()), HttpStatusCode.BadRequest, "M_INVALID_PARAM", "/redact of a non-ID");
        Assert.Equal(before, await TimelineTypes(r.Admin, r.Id));

        // A redaction through /send names its target in content and is checked like /redact: a member may not
        // redact the admin's message, the admin may, and the message is then redacted.
        Refused(await r.Member.Put($"{C}/rooms/{E(r.Id)}/send/m.room.redaction/t{Guid.NewGuid():N}", new JsonObject { ["redacts"] = r.EventId }),
            HttpStatusCode.Forbidden, "M_FORBIDDEN", "member redacting the admin");
        // An event this server has not seen may be redacted, as Synapse allows (it may still arrive over federation).
        (await r.Admin.Put(Send(), new JsonObject { ["redacts"] = "$unknown" })).Ok();
        var redaction = (await r.Admin.Put(Send(), new JsonObject { ["redacts"] = r.EventId, ["reason"] = "tidy" })).Ok().Obj["event_id"]!.GetValue<string>();
        var target = (await r.Member.Get($"{C}/rooms/{E(r.Id)}/event/{E(r.EventId)}")).Ok().Obj;
        Assert.Empty(target["content"]!.AsObject());
        Assert.Equal(redaction, target["unsigned"]!["redacted_because"]!["event_id"]!.GetValue<string>());
    }

    // ---- errors of the web server itself

    [Fact]
    public async Task Web_server_errors_are_matrix_json()
    {
        var u = await Register(server);
        var uri = new Uri(server.BaseUrl);
        var requests = new (string Name, string Head, int Status)[]
        {
            ("%00 in the path", $"GET {C}/rooms/%00/state HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("a URL over 8 KiB", $"GET {C}/sync?x={new string('a', 9000)} HTTP/1.1\r\nHost: x\r\n\r\n", 414),
            ("headers over 32 KiB", $"GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\nX-Big: {new string('a', 40_000)}\r\n\r\n", 431),
            ("a malformed request line", "GET /a b c HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("a bad HTTP version", "GET /_matrix/client/versions HTTP/7.3\r\nHost: x\r\n\r\n", 505),
            ("a bad chunk", $"POST {C}/login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n", 400),
        };
        foreach (var (name, head, status) in requests)
        {
            var (got, body) = await RawHttp(uri, Encoding.ASCII.GetBytes(head));
            Assert.True(got == status, $"{name}: expected {status}, got {got}: {body}");
            var json = JsonNode.Parse(body) as JsonObject;
            Assert.True(json?["errcode"] is JsonValue, $"{name}: not Matrix error JSON: {body}");
        }
        // Ordinary answers on the same kind of connection are untouched, and an authenticated 404 is JSON too.
        var unknown = await u.Get(C + "/no/such/thing");
        Assert.Equal((HttpStatusCode.NotFound, "M_UNRECOGNIZED"), (unknown.Status, unknown.ErrCode));
        (await u.Get(C + "/account/whoami")).Ok();
    }

    [Fact]
    public async Task A_chunked_body_is_bounded_by_its_size_not_its_framing()
    {
        var u = await Register(server);
        var uri = new Uri(server.BaseUrl);
        // The fixtures set max_request_size = 1,000,000.
        async Task<(int, string)> PutChunked(int size)
        {
            var json = Encoding.UTF8.GetBytes("{\"x\":\"" + new string('a', size - 8) + "\"}");
            Assert.Equal(size, json.Length);
            var req = new MemoryStream();
            req.Write(Encoding.ASCII.GetBytes($"PUT {C}/user/{E(u.UserId)}/account_data/x.big HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {u.Token}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"));
            for (var i = 0; i < json.Length; i += 1000)
            {
                var n = Math.Min(1000, json.Length - i);
                req.Write(Encoding.ASCII.GetBytes($"{n:x}\r\n"));
                req.Write(json, i, n);
                req.Write("\r\n"u8);
            }
            req.Write("0\r\n\r\n"u8);
            return await RawHttp(uri, req.ToArray());
        }
        var (under, underBody) = await PutChunked(1_000_000 - 10);
        Assert.True(under == 200, $"just under the limit: {under} {underBody}");
        var (over, overBody) = await PutChunked(1_000_010);
        Assert.True(over == 413 && overBody.Contains("M_TOO_LARGE"), $"just over the limit: {over} {overBody}");
    }

    /// <summary>One request written as raw bytes on a new connection; the status and body of the answer.</summary>
    static async Task<(int Status, string Body)> RawHttp(Uri server, byte[] request)
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(server.Host, server.Port);
        var stream = tcp.GetStream();
        try
        {
            await stream.WriteAsync(request);
        }
        catch (IOException)
        {
            // The server may answer and close before reading everything (a refused oversized request).
        }
        var response = new MemoryStream();
        var buffer = new byte[16384];
        try
        {
            while (true)
            {
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
                var n = await stream.ReadAsync(buffer, timeout.Token);
                if (n == 0) break;
                response.Write(buffer, 0, n);
                if (Complete(response.ToArray())) break;
            }
        }
        catch (IOException) { }
        var text = Encoding.UTF8.GetString(response.ToArray());
        var end = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        Assert.True(end > 0, "no HTTP response: " + text);
        return (int.Parse(text.AsSpan(9, 3)), text[(end + 4)..]);
    }

    static bool Complete(byte[] response)
    {
        var text = Encoding.ASCII.GetString(response);
        var end = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        if (end < 0) return false;
        var length = text[..end].Split("\r\n").FirstOrDefault(h => h.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase));
        return length is not null && response.Length >= end + 4 + int.Parse(length["Content-Length:".Length..].Trim());
    }

    // ---- the fuzzer

    [Fact]
    public async Task Thousands_of_malformed_requests_get_no_5xx_and_only_json()
    {
        var seed = int.TryParse(Environment.GetEnvironmentVariable("CONDUIT_FUZZ_SEED"), out var s) ? s : 20261130;
        var count = int.TryParse(Environment.GetEnvironmentVariable("CONDUIT_FUZZ_REQUESTS"), out var c) ? c : 2000;
        var canary = await NewRoom();
        var fuzzer = await RequestFuzzer.CreateAsync(server, seed);
        var failures = await fuzzer.RunAsync(count);
        output.WriteLine($"{server.Mode}: {count} requests, seed {seed}; statuses: {string.Join(", ", fuzzer.Statuses.Select(s => $"{s.Key}×{s.Value}"))}");
        Assert.True(failures.Count == 0,
            $"{failures.Count} of {count} requests failed (seed {seed}; rerun with CONDUIT_FUZZ_SEED={seed}):\n" + string.Join("\n", failures.Take(20)));
        // Everyone else's rooms keep working; the fuzzer's own users (who may have left, been kicked or banned by
        // the fuzzer's requests) still sync.
        await AssertRoomWorks(canary);
        await fuzzer.Room.Admin.Sync();
        await fuzzer.Room.Member.Sync();
    }
}

public sealed class AllInOneHostileInputTests(AllInOneFixture f, ITestOutputHelper o) : HostileInputTests(f, o), IClassFixture<AllInOneFixture>;

public sealed class SplitHostileInputTests(SplitFixture f, ITestOutputHelper o) : HostileInputTests(f, o), IClassFixture<SplitFixture>;

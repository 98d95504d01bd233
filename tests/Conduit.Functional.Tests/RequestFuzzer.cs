using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Conduit.Common.Routing;
using static Conduit.Functional.Tests.MatrixClient;

namespace Conduit.Functional.Tests;

/// <summary>A public room with two members and one message.</summary>
public sealed record TestRoom(string Id, MatrixClient Admin, MatrixClient Member, string EventId)
{
    public static async Task<TestRoom> CreateAsync(ServerFixture server)
    {
        var admin = await Register(server);
        var member = await Register(server);
        var room = await admin.CreateRoom(new JsonObject { ["preset"] = "public_chat" });
        (await member.Post($"{C}/join/{E(room)}", new JsonObject())).Ok();
        var ev = await admin.SendText(room, "findme before the trouble");
        return new TestRoom(room, admin, member, ev);
    }
}

/// <summary>
/// A seeded, reproducible generator of malformed requests over the whole route table (RouteTable.All, both client
/// prefixes): path parameters valid, hostile or someone else's; hostile query parameters; no token, a bad one or the
/// fuzz user's; bodies built from a valid sample per route and then broken (a wrong type at any level, a missing
/// key, duplicate keys, invalid UTF-8, lone surrogates, floats and huge integers, deep nesting, huge values, other
/// users' IDs, truncated or not-an-object JSON). Every answer must be below 500 and Matrix JSON.
/// </summary>
public sealed partial class RequestFuzzer
{
    readonly ServerFixture _server;
    readonly Random _rng;
    readonly MatrixClient _outsider;
    public TestRoom Room { get; }

    /// <summary>How many answers had each status code, in the last run.</summary>
    public SortedDictionary<int, int> Statuses { get; } = [];

    RequestFuzzer(ServerFixture server, int seed, TestRoom room, MatrixClient outsider)
    {
        _server = server;
        _rng = new Random(seed);
        Room = room;
        _outsider = outsider;
    }

    public static async Task<RequestFuzzer> CreateAsync(ServerFixture server, int seed)
        => new(server, seed, await TestRoom.CreateAsync(server), await Register(server));

    sealed record FuzzRequest(string Method, string Path, string? Token, byte[]? Body, string Note)
    {
        public override string ToString()
        {
            var body = Body is null ? "" : " body=" + Show(Body);
            return $"{Method} {Cut(Path)} auth={(Token is null ? "none" : Note)}{body}";
        }

        static string Cut(string s) => s.Length > 160 ? s[..160] + $"...({s.Length})" : s;

        static string Show(byte[] b)
        {
            var sb = new StringBuilder();
            foreach (var x in b.Take(200)) sb.Append(x is >= 0x20 and < 0x7f ? ((char)x).ToString() : $"\\x{x:x2}");
            return b.Length > 200 ? sb + $"...({b.Length} bytes)" : sb.ToString();
        }
    }

    /// <summary>Generates <paramref name="count"/> requests from the seed, sends them in order, and returns the failures.</summary>
    public async Task<List<string>> RunAsync(int count)
    {
        var requests = Enumerable.Range(0, count).Select(_ => Next()).ToList();
        var failures = new List<string>();
        for (var i = 0; i < requests.Count; i++)
        {
            // Every so often the fuzz user gets back into its room, so later requests meet a member again.
            if (i % 100 == 99) await Room.Admin.Post($"{C}/join/{E(Room.Id)}", new JsonObject());
            if (await CheckAsync(requests[i]) is { } problem) failures.Add($"#{i} {requests[i]} -> {problem}");
        }
        return failures;
    }

    async Task<string?> CheckAsync(FuzzRequest r)
    {
        HttpRequestMessage req;
        try
        {
            req = new HttpRequestMessage(new HttpMethod(r.Method), _server.BaseUrl + r.Path);
        }
        catch (UriFormatException)
        {
            return null; // not sendable by HttpClient at all
        }
        using (req)
        {
            if (r.Token is not null) req.Headers.Authorization = new("Bearer", r.Token);
            if (r.Body is not null)
            {
                req.Content = new ByteArrayContent(r.Body) { Headers = { ContentType = new("application/json") } };
                // A body over max_request_size is refused before it is read; wait for the go-ahead before sending it.
                if (r.Body.Length > 500_000) req.Headers.ExpectContinue = true;
            }
            HttpResponseMessage resp;
            try
            {
                resp = await _server.Http.SendAsync(req);
            }
            catch (HttpRequestException e)
            {
                return "transport error: " + e.Message;
            }
            using (resp)
            {
                var status = (int)resp.StatusCode;
                Statuses[status] = Statuses.GetValueOrDefault(status) + 1;
                var text = await resp.Content.ReadAsStringAsync();
                if (status >= 500) return $"{status} {Short(text)}";
                // /health answers the text "OK" (as Synapse and Conduit do, for load balancers), not JSON.
                if (status == 200 && req.RequestUri!.AbsolutePath == Conduit.Common.Routing.RouteTable.Health.Template) return null;
                JsonNode? json;
                try
                {
                    json = text.Length == 0 ? null : JsonNode.Parse(text, documentOptions: new() { MaxDepth = 256 });
                }
                catch (System.Text.Json.JsonException)
                {
                    return $"{status} with a body that is not JSON: {Short(text)}";
                }
                if (json is null) return $"{status} without a JSON body";
                if (status >= 400)
                {
                    // An error is Matrix error JSON; a user-interactive auth challenge (401) carries flows instead.
                    var o = json as JsonObject;
                    var isError = o?["errcode"] is JsonValue v && v.TryGetValue<string>(out _);
                    var isChallenge = status == 401 && o?["flows"] is JsonArray;
                    if (!isError && !isChallenge) return $"{status} without an errcode: {Short(text)}";
                }
                return null;
            }
        }
    }

    static string Short(string s) => s.Length > 300 ? s[..300] + "..." : s;

    // ---- generation

    T Pick<T>(IReadOnlyList<T> items) => items[_rng.Next(items.Count)];
    bool Chance(double p) => _rng.NextDouble() < p;

    FuzzRequest Next()
    {
        var route = Pick(RouteTable.All);
        var template = Pick(RouteTable.Templates(route).ToList());
        var method = Chance(0.05) ? Pick(["GET", "PUT", "POST", "DELETE", "PATCH"]) : Pick(route.Methods);
        var values = new Dictionary<string, string>();
        var path = Placeholder().Replace(template, m =>
        {
            var value = PathValue(m.Groups["name"].Value);
            values[m.Groups["name"].Value] = value;
            return value;
        });
        var query = new List<string>();
        if (route == RouteTable.Sync) query.Add("timeout=0");
        for (var n = _rng.Next(4); n > 0; n--) query.Add(QueryParam());
        if (query.Count > 0) path += "?" + string.Join("&", query);

        string? token = Room.Admin.Token;
        var note = "fuzz user";
        // Logging out or out of everything would end the fuzz user's session, and so would the admin API's deactivation
        // and password reset (the fuzz user may be its server's first account, so an admin); those go unauthenticated.
        var destructive = route == RouteTable.Logout || route == RouteTable.LogoutAll || route == RouteTable.AdminDeactivate || route == RouteTable.AdminResetPassword;
        var roll = _rng.NextDouble();
        if (destructive || roll < 0.12) (token, note) = (null, "none");
        else if (roll < 0.25) (token, note) = ("syt_" + Ids(20), "bad token");

        byte[]? body = null;
        if (method is "PUT" or "POST" or "DELETE" || Chance(0.03))
            body = Chance(0.04) ? null : Mutate(Sample(route, values));
        return new FuzzRequest(method, path, token, body, note);
    }

    [GeneratedRegex(@"\{(\*\*)?(?<name>[A-Za-z]+)(:[^}]*)?\}")]
    private static partial Regex Placeholder();

    string Ids(int n) => new(Enumerable.Range(0, n).Select(_ => (char)('a' + _rng.Next(26))).ToArray());

    static readonly string[] RawHostileSegments = ["%2F", "a%2Fb", "..", "%ZZ", "%C3%28", "%E2%82", "%EF%BF%BF", "%F0%9F%98%80"];

    string PathValue(string name)
    {
        if (Chance(0.08)) return Pick(RawHostileSegments);
        var server = _server.ServerName;
        string[] pool = name switch
        {
            "roomId" => [Room.Id, Room.Id, Room.Id, $"!nope:{server}", "!" + new string('A', 43), "garbage", "!" + new string('x', 300) + ":s", "!é:x", $"#alias:{server}", ""],
            "roomIdOrAlias" => [Room.Id, Room.Id, $"#nope:{server}", "#" + new string('x', 300) + ":s", "garbage", "#:x", "!é:x"],
            "userId" => [Room.Admin.UserId, Room.Admin.UserId, Room.Member.UserId, _outsider.UserId, $"@nope:{server}", "garbage", "@" + new string('a', 300) + ":x", "@x:other.org", "@é:x"],
            "eventType" => ["m.room.message", "m.room.message", "m.room.redaction", "m.room.history_visibility", "m.room.power_levels", "m.room.member", "m.room.create", "m.room.join_rules", "m.room.name", "m.room.server_acl", "m.room.tombstone", "m.room.canonical_alias", "m.room.encryption", new string('t', 300), "x.custom", "é"],
            "stateKey" => ["", "", Room.Admin.UserId, Room.Member.UserId, new string('k', 300), "a/b", "é"],
            "txnId" => ["t" + Ids(8), "t" + Ids(8), new string('x', 300)],
            "eventId" => [Room.EventId, Room.EventId, "$nope", "garbage", "$" + new string('e', 300), "$é"],
            "action" => ["join", "invite", "leave", "kick", "ban", "unban", "forget", "nope"],
            "deviceId" => [Room.Admin.DeviceId, "NOPE", new string('d', 300), ""],
            "field" => ["displayname", "avatar_url", "nope"],
            "filterId" => ["1", "0", "abc", "99999999999999999999", "-1"],
            "type" => ["m.direct", "x.custom", "m.push_rules", "m.fully_read", new string('t', 300)],
            "roomAlias" => [$"#a{Ids(6)}:{server}", "#x:other.org", "garbage", "#" + new string('a', 300) + $":{server}"],
            "rest" => ["", "global", "global/override", "global/override/x" + Ids(4), "global/content/.m.rule.contains_user_name/enabled", "global/room/" + Room.Id + "/actions", "global/sender/x/enabled", "bogus/x/y", "global/underride/a/b/c/d"],
            "keyId" => ["", "ed25519:abc"],
            "version" => ["1", "1", "2", "0", "01", "abc", "99999999999999999999", ""],
            "sessionId" => ["s" + Ids(4), "sess", new string('s', 300), "é"],
            "reportId" => ["1-" + Ids(12), "-", "1-", "-a", "99999999999999999999-a", "1-a-b", "abc", new string('9', 300)],
            _ => ["x"],
        };
        var v = Pick(pool);
        return name is "rest" or "keyId" ? v : Uri.EscapeDataString(v);
    }

    static readonly string[] QueryKeys =
    [
        "limit", "dir", "from", "to", "filter", "since", "timeout", "full_state", "set_presence", "ts", "membership",
        "not_membership", "format", "kind", "username", "next_batch", "before", "after", "access_token", "version", "x", "pos",
    ];

    string QueryParam()
    {
        var key = Pick(QueryKeys);
        string value = key switch
        {
            // Small timeouts only: a valid long one would just make /sync wait.
            "timeout" => Pick(["0", "-1", "abc", "1e9", "99999999999", ""]),
            "filter" => Pick(["{", "[]", "{\"limit\":5}", "{\"limit\":\"x\"}", "{\"room\":{\"rooms\":[5]}}", "{\"room\":{\"timeline\":{\"limit\":-1}}}", "{\"a\":1,\"a\":2}", "{\"\\ud800\":1}", "1", "nope"]),
            "dir" => Pick(["b", "f", "x", ""]),
            "version" => Pick(["1", "1", "2", "0", "abc", "99999999999999999999", ""]),
            _ => Pick(["", "0", "-1", "abc", "99999999999999999999", "1.5", "t5", "t99999999999999999999", "s1_1", "p5", "true", "é", new string('q', 300), Room.Admin.UserId]),
        };
        return key + "=" + Uri.EscapeDataString(value);
    }

    // ---- bodies: a valid sample per route, then broken

    JsonObject Sample(MatrixRoute route, Dictionary<string, string> values)
    {
        var me = Room.Admin.UserId;
        var wrongAuth = new JsonObject
        {
            ["type"] = "m.login.password", ["session"] = "s" + Ids(6), ["password"] = "wrong " + Ids(4),
            ["identifier"] = new JsonObject { ["type"] = "m.id.user", ["user"] = me },
        };
        if (route == RouteTable.Register)
            return new JsonObject { ["username"] = "f" + Ids(8), ["password"] = "p", ["auth"] = new JsonObject { ["type"] = "m.login.dummy", ["session"] = "s" }, ["device_id"] = "D", ["initial_device_display_name"] = "n", ["inhibit_login"] = true };
        if (route == RouteTable.Login)
            return new JsonObject { ["type"] = "m.login.password", ["identifier"] = new JsonObject { ["type"] = "m.id.user", ["user"] = me }, ["password"] = "wrong", ["device_id"] = "D" };
        if (route == RouteTable.AdminRegister)
            return new JsonObject { ["nonce"] = Ids(64), ["username"] = "f" + Ids(8), ["password"] = "p", ["admin"] = false, ["user_type"] = "bot", ["mac"] = Ids(40) };
        if (route == RouteTable.ReportEvent) return new JsonObject { ["reason"] = "r", ["score"] = -50 };
        if (route == RouteTable.ChangePassword) return new JsonObject { ["new_password"] = "n", ["logout_devices"] = false, ["auth"] = wrongAuth };
        if (route == RouteTable.Deactivate || route == RouteTable.Device) return new JsonObject { ["auth"] = wrongAuth, ["display_name"] = "d" };
        if (route == RouteTable.DeleteDevices) return new JsonObject { ["devices"] = new JsonArray("X"), ["auth"] = wrongAuth };
        if (route == RouteTable.ProfileField) return new JsonObject { ["displayname"] = "d", ["avatar_url"] = "mxc://x/y" };
        if (route == RouteTable.CreateRoom)
            return new JsonObject
            {
                ["preset"] = "private_chat", ["visibility"] = "private", ["name"] = "n", ["topic"] = "t", ["room_version"] = "11", ["is_direct"] = false,
                ["invite"] = new JsonArray(Room.Member.UserId), ["room_alias_name"] = "a" + Ids(8),
                ["initial_state"] = new JsonArray(new JsonObject { ["type"] = "m.room.history_visibility", ["state_key"] = "", ["content"] = new JsonObject { ["history_visibility"] = "shared" } }),
                ["power_level_content_override"] = new JsonObject { ["ban"] = 50, ["users"] = new JsonObject { [me] = 100 } },
                ["creation_content"] = new JsonObject { ["m.federate"] = true },
            };
        if (route == RouteTable.Membership || route == RouteTable.JoinByIdOrAlias || route == RouteTable.Knock)
            return new JsonObject { ["user_id"] = Pick([Room.Member.UserId, _outsider.UserId]), ["reason"] = "r" };
        if (route == RouteTable.Send)
            return Uri.UnescapeDataString(values.GetValueOrDefault("eventType", "")) == "m.room.redaction"
                ? new JsonObject { ["redacts"] = Room.EventId, ["reason"] = "r" }
                : new JsonObject { ["msgtype"] = "m.text", ["body"] = "hello " + Ids(4), ["m.mentions"] = new JsonObject { ["user_ids"] = new JsonArray(Room.Member.UserId) } };
        if (route == RouteTable.StateEvent || route == RouteTable.StateEventNoKey)
            return Uri.UnescapeDataString(values.GetValueOrDefault("eventType", "")) switch
            {
                "m.room.history_visibility" => new JsonObject { ["history_visibility"] = "shared" },
                "m.room.power_levels" => new JsonObject { ["users"] = new JsonObject { [me] = 100 }, ["events"] = new JsonObject { ["m.room.name"] = 50 }, ["ban"] = 50 },
                "m.room.join_rules" => new JsonObject { ["join_rule"] = "restricted", ["allow"] = new JsonArray(new JsonObject { ["type"] = "m.room_membership", ["room_id"] = Room.Id }) },
                "m.room.member" => new JsonObject { ["membership"] = "join", ["displayname"] = "d" },
                "m.room.server_acl" => new JsonObject { ["allow"] = new JsonArray("*"), ["deny"] = new JsonArray("evil.org"), ["allow_ip_literals"] = false },
                "m.room.tombstone" => new JsonObject { ["replacement_room"] = "!other:x", ["body"] = "b" },
                "m.room.canonical_alias" => new JsonObject { ["alias"] = $"#a:{_server.ServerName}", ["alt_aliases"] = new JsonArray() },
                "m.room.encryption" => new JsonObject { ["algorithm"] = "m.megolm.v1.aes-sha2", ["rotation_period_ms"] = 604800000 },
                _ => new JsonObject { ["name"] = "n", ["topic"] = "t", ["k"] = new JsonArray(1, "a") },
            };
        if (route == RouteTable.Redact) return new JsonObject { ["reason"] = "r" };
        if (route == RouteTable.Alias) return new JsonObject { ["room_id"] = Room.Id };
        if (route == RouteTable.Upgrade) return new JsonObject { ["new_version"] = Pick(["11", "12", "1", "99"]), ["additional_creators"] = new JsonArray(Room.Member.UserId) };
        if (route == RouteTable.Search)
            return new JsonObject
            {
                ["search_categories"] = new JsonObject
                {
                    ["room_events"] = new JsonObject
                    {
                        ["search_term"] = "hello", ["keys"] = new JsonArray("content.body"), ["order_by"] = "recent", ["include_state"] = true,
                        ["filter"] = new JsonObject { ["limit"] = 5, ["rooms"] = new JsonArray(Room.Id) },
                        ["event_context"] = new JsonObject { ["before_limit"] = 1, ["after_limit"] = 1, ["include_profile"] = true },
                        ["groupings"] = new JsonObject { ["group_by"] = new JsonArray(new JsonObject { ["key"] = "room_id" }) },
                    },
                },
            };
        if (route == RouteTable.CreateFilter)
            return new JsonObject
            {
                ["event_fields"] = new JsonArray("content.body"),
                ["room"] = new JsonObject { ["timeline"] = new JsonObject { ["limit"] = 5, ["types"] = new JsonArray("m.room.message") }, ["state"] = new JsonObject { ["lazy_load_members"] = true } },
            };
        if (route == RouteTable.PushRules)
            return new JsonObject
            {
                ["actions"] = new JsonArray("notify", new JsonObject { ["set_tweak"] = "sound", ["value"] = "default" }), ["enabled"] = true, ["pattern"] = "x",
                ["conditions"] = new JsonArray(new JsonObject { ["kind"] = "event_match", ["key"] = "content.body", ["pattern"] = "x" }),
            };
        if (route == RouteTable.RoomKeysVersion || route == RouteTable.RoomKeysVersionById)
            return new JsonObject
            {
                ["algorithm"] = "m.megolm_backup.v1.curve25519-aes-sha2", ["version"] = "1",
                ["auth_data"] = new JsonObject { ["public_key"] = "pk", ["signatures"] = new JsonObject { [me] = new JsonObject { ["ed25519:D"] = "sig" } } },
            };
        if (route == RouteTable.RoomKeysSession) return BackupKeyData();
        if (route == RouteTable.RoomKeysRoom) return new JsonObject { ["sessions"] = new JsonObject { ["s" + Ids(4)] = BackupKeyData() } };
        if (route == RouteTable.RoomKeys)
            return new JsonObject { ["rooms"] = new JsonObject { [Room.Id] = new JsonObject { ["sessions"] = new JsonObject { ["s" + Ids(4)] = BackupKeyData() } } } };
        if (route == RouteTable.KeysUpload || route == RouteTable.DehydratedDevice)
            return new JsonObject
            {
                ["device_id"] = "DH" + Ids(3), ["device_data"] = new JsonObject { ["algorithm"] = "a" },
                ["device_keys"] = new JsonObject
                {
                    ["user_id"] = me, ["device_id"] = Pick(["D", "DH1"]), ["algorithms"] = new JsonArray("m.megolm.v1.aes-sha2"),
                    ["keys"] = new JsonObject { ["ed25519:D"] = "AAAA", ["curve25519:D"] = "BBBB" },
                    ["signatures"] = new JsonObject { [me] = new JsonObject { ["ed25519:D"] = "sig" } },
                },
                ["one_time_keys"] = new JsonObject { ["signed_curve25519:" + Ids(4)] = new JsonObject { ["key"] = "k", ["signatures"] = new JsonObject() } },
                ["fallback_keys"] = new JsonObject { ["signed_curve25519:F"] = new JsonObject { ["key"] = "k", ["fallback"] = true } },
            };
        if (route == RouteTable.KeysQuery) return new JsonObject { ["device_keys"] = new JsonObject { [me] = new JsonArray(), [Room.Member.UserId] = new JsonArray("D") } };
        if (route == RouteTable.KeysClaim) return new JsonObject { ["one_time_keys"] = new JsonObject { [Room.Member.UserId] = new JsonObject { ["D"] = "signed_curve25519" } } };
        if (route == RouteTable.SendToDevice)
            return new JsonObject { ["messages"] = new JsonObject { [Room.Member.UserId] = new JsonObject { [Pick(["*", "D"])] = new JsonObject { ["body"] = "b" } } } };
        if (route == RouteTable.DeviceSigningUpload)
            return new JsonObject
            {
                ["master_key"] = new JsonObject { ["user_id"] = me, ["usage"] = new JsonArray("master"), ["keys"] = new JsonObject { ["ed25519:AAAA"] = "AAAA" } },
                ["auth"] = new JsonObject { ["type"] = "m.login.password", ["password"] = "wrong" },
            };
        if (route == RouteTable.SignaturesUpload)
            return new JsonObject { [me] = new JsonObject { ["D"] = new JsonObject { ["user_id"] = me, ["signatures"] = new JsonObject { [me] = new JsonObject { ["ed25519:X"] = "s" } } } } };
        if (route == RouteTable.SlidingSync)
            return new JsonObject
            {
                ["conn_id"] = Pick(["room-list", "encryption", ""]), ["txn_id"] = "t" + Ids(3),
                ["lists"] = new JsonObject
                {
                    ["all"] = new JsonObject
                    {
                        ["ranges"] = new JsonArray(new JsonArray(0, 19)), ["timeline_limit"] = 1,
                        ["required_state"] = new JsonArray(new JsonArray("m.room.name", ""), new JsonArray("m.room.member", "$LAZY"), new JsonArray("m.room.member", "$ME"), new JsonArray("*", "*")),
                        ["filters"] = new JsonObject { ["is_dm"] = false, ["is_invite"] = false, ["is_encrypted"] = false, ["not_room_types"] = new JsonArray("m.space", null), ["spaces"] = new JsonArray(Room.Id) },
                    },
                },
                ["room_subscriptions"] = new JsonObject { [Room.Id] = new JsonObject { ["timeline_limit"] = 20, ["required_state"] = new JsonArray(new JsonArray("*", "*")) } },
                ["extensions"] = new JsonObject
                {
                    ["to_device"] = new JsonObject { ["enabled"] = true, ["since"] = Pick(["0", "5", "x"]), ["limit"] = 10 },
                    ["e2ee"] = new JsonObject { ["enabled"] = true },
                    ["account_data"] = new JsonObject { ["enabled"] = true, ["lists"] = new JsonArray("all"), ["rooms"] = new JsonArray("*") },
                    ["receipts"] = new JsonObject { ["enabled"] = true },
                    ["typing"] = new JsonObject { ["enabled"] = true },
                },
            };
        if (route == RouteTable.DehydratedDeviceEvents) return new JsonObject { ["next_batch"] = Pick(["0", "x", "-1", "99999999999999999999"]) };
        return new JsonObject { ["k"] = "v", ["n"] = 1, ["o"] = new JsonObject { ["a"] = new JsonArray(1, "b") } };
    }

    JsonObject BackupKeyData() => new()
    {
        ["first_message_index"] = _rng.Next(3), ["forwarded_count"] = _rng.Next(3), ["is_verified"] = Chance(0.5),
        ["session_data"] = new JsonObject { ["ephemeral"] = "e", ["ciphertext"] = "c" + Ids(4), ["mac"] = "m" },
    };

    /// <summary>A value of a type the endpoint does not expect, or a hostile one of the right type.</summary>
    JsonNode? HostileValue() => _rng.Next(22) switch
    {
        0 => null,
        1 => true,
        2 => 0,
        3 => -1,
        4 => JsonValue.Create(1.5),
        5 => JsonNode.Parse("1e400"),
        6 => JsonNode.Parse("9007199254740993"),
        7 => JsonNode.Parse("-9007199254740993"),
        8 => "",
        9 => new string('x', 300),
        10 => "é😀\u0000",
        11 => Room.Member.UserId,
        12 => _outsider.UserId,
        13 => "$" + Ids(10),
        14 => $"!{Ids(6)}:{_server.ServerName}",
        15 => $"#{Ids(6)}:{_server.ServerName}",
        16 => new JsonArray(),
        17 => new JsonArray(1, "a", new JsonObject()),
        18 => new JsonObject(),
        19 => new JsonObject { ["a"] = new JsonObject { ["b"] = new JsonArray() } },
        20 => JsonNode.Parse("18446744073709551616"),
        _ => "mxc://x/" + Ids(5),
    };

    /// <summary>Every (parent, key) in the tree, so any level can be broken.</summary>
    static List<(JsonNode Parent, object Key)> Slots(JsonNode node)
    {
        var slots = new List<(JsonNode, object)>();
        void Walk(JsonNode? n)
        {
            if (n is JsonObject o)
                foreach (var (k, v) in o.ToList()) { slots.Add((o, k)); Walk(v); }
            else if (n is JsonArray a)
                for (var i = 0; i < a.Count; i++) { slots.Add((a, i)); Walk(a[i]); }
        }
        Walk(node);
        return slots;
    }

    static void Set((JsonNode Parent, object Key) slot, JsonNode? value)
    {
        if (slot.Parent is JsonObject o) o[(string)slot.Key] = value;
        else ((JsonArray)slot.Parent)[(int)slot.Key] = value;
    }

    byte[] Mutate(JsonObject sample)
    {
        var slots = Slots(sample);
        var text = sample.ToJsonString();
        switch (_rng.Next(20))
        {
            case 0 or 1:
                return Encoding.UTF8.GetBytes(text); // valid
            case 2 or 3 or 4 or 5 or 6 when slots.Count > 0:
                for (var n = 1 + _rng.Next(2); n > 0; n--) Set(Pick(slots), HostileValue());
                return Encoding.UTF8.GetBytes(sample.ToJsonString());
            case 7 when slots.Count > 0:
                var (parent, key) = Pick(slots);
                if (parent is JsonObject po) po.Remove((string)key); else ((JsonArray)parent).RemoveAt((int)key);
                return Encoding.UTF8.GetBytes(sample.ToJsonString());
            case 8:
                // A duplicate key: the sample's first key again, at the top or inside the first nested object.
                var firstKey = sample.FirstOrDefault().Key ?? "k";
                return Encoding.UTF8.GetBytes("{" + $"\"{firstKey}\":null," + text[1..]);
            case 9:
                var at = text.IndexOf('"') + 1;
                return [.. Encoding.UTF8.GetBytes(text[..at]), Pick<byte>([0xff, 0xc0, 0xed, 0x80]), .. Encoding.UTF8.GetBytes(text[at..])];
            case 10:
                var q = text.LastIndexOf(":\"", StringComparison.Ordinal);
                return Encoding.UTF8.GetBytes(q < 0 ? "{\"a\":\"\\udc01\"}" : text[..(q + 2)] + "\\ud83d" + text[(q + 2)..]);
            case 11:
                return Encoding.UTF8.GetBytes(text[.._rng.Next(text.Length)]);
            case 12:
                return Encoding.UTF8.GetBytes(Pick(["[" + text + "]", "\"" + Ids(5) + "\"", "42", "null", "true", "{\"a\":NaN}", "{,}", "\uFEFF{}"]));
            case 13:
                var depth = Pick([63, 65, 200, 5000]);
                return Encoding.UTF8.GetBytes("{\"x\":" + new string('[', depth) + new string(']', depth) + "}");
            case 14 when slots.Count > 0:
                Set(Pick(slots), new string('h', Pick([70_000, 300_000, 1_100_000])));
                return Encoding.UTF8.GetBytes(sample.ToJsonString());
            case 15 when slots.Count > 0:
                // Someone else's ID wherever a string was.
                foreach (var s in slots.Where(s => (s.Parent is JsonObject o ? o[(string)s.Key] : ((JsonArray)s.Parent)[(int)s.Key]) is JsonValue v && v.TryGetValue<string>(out _)))
                    if (Chance(0.5)) Set(s, Pick([Room.Member.UserId, _outsider.UserId, $"@nope:{_server.ServerName}"]));
                return Encoding.UTF8.GetBytes(sample.ToJsonString());
            case 16:
                var bytes = new byte[_rng.Next(1, 64)];
                _rng.NextBytes(bytes);
                return bytes;
            case 17:
                return [];
            default:
                // A wrong type at the top of the body: every key replaced.
                foreach (var k in sample.Select(p => p.Key).ToList()) sample[k] = HostileValue();
                return Encoding.UTF8.GetBytes(sample.ToJsonString());
        }
    }
}

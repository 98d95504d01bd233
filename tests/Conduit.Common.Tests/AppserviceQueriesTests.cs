using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common.Appservices;

namespace Conduit.Common.Tests;

/// <summary>
/// What the homeserver asks of application services (<see cref="AppserviceQueries"/>): protocol metadata merged as
/// Synapse's get_3pe_protocols, third-party lookups put together with invalid entries and failing appservices left out,
/// and user/alias queries asked of the namespace's appservices only, one after the other.
/// </summary>
public sealed class AppserviceQueriesTests
{
    /// <summary>Answers in place of the appservices: by host (one per registration), then path and query.</summary>
    sealed class Stub : HttpMessageHandler
    {
        public readonly List<string> Asked = [];
        public readonly List<string?> Tokens = [];
        public Func<string, string, (int Status, string Body)?> Answer = (_, _) => (404, "{}");

        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken ct)
        {
            var u = request.RequestUri!;
            lock (Asked)
            {
                Asked.Add(u.Host + u.PathAndQuery);
                Tokens.Add(request.Headers.Authorization?.ToString());
            }
            if (Answer(u.Host, u.PathAndQuery) is not { } a) throw new HttpRequestException("connection refused");
            return Task.FromResult(new HttpResponseMessage((HttpStatusCode)a.Status) { Content = new StringContent(a.Body, Encoding.UTF8, "application/json") });
        }
    }

    static AppserviceRegistration As(string id, string[] protocols, string? users = null, string? aliases = null, bool url = true) => new()
    {
        Id = id,
        Url = url ? $"http://{id}.example" : null,
        AsToken = id + "_as",
        HsToken = id + "_hs",
        SenderLocalpart = id + "bot",
        Protocols = protocols,
        Users = users is null ? [] : [new AppserviceNamespace(true, new($"^(?:{users})$"))],
        Aliases = aliases is null ? [] : [new AppserviceNamespace(false, new($"^(?:{aliases})$"))],
    };

    static JsonObject Obj(string json) => JsonNode.Parse(json)!.AsObject();

    [Fact]
    public void Merged_protocols_take_the_first_answers_fields_and_every_answers_instances()
    {
        var a = AppserviceQueries.WithInstanceIds("a", Obj("""{"icon": "mxc://a/icon", "user_fields": ["nick"], "instances": [{"desc": "Libera", "network_id": "libera"}]}"""));
        var b = AppserviceQueries.WithInstanceIds("b", Obj("""{"icon": "mxc://b/icon", "user_fields": ["other"], "instances": [{"desc": "OFTC", "network_id": "oftc"}, {"desc": "no network"}]}"""));
        var c = AppserviceQueries.WithInstanceIds("c", Obj("""{"instances": [{"desc": "XMPP", "network_id": "x"}]}"""));

        var merged = AppserviceQueries.MergeProtocols([("irc", null), ("irc", a), ("xmpp", c), ("irc", b), ("gitter", null)]);

        Assert.Equal(["irc", "xmpp"], merged.Select(p => p.Key));
        var irc = merged["irc"]!.AsObject();
        Assert.Equal("mxc://a/icon", irc["icon"]!.GetValue<string>());
        Assert.Equal("nick", irc["user_fields"]![0]!.GetValue<string>());
        var instances = irc["instances"]!.AsArray().Select(i => i!["instance_id"]?.GetValue<string>()).ToList();
        Assert.Equal(["a|libera", "b|oftc", null], instances);
        Assert.Equal("libera", irc["instances"]![0]!["network_id"]!.GetValue<string>());
        // The answers themselves are untouched (the merge copies).
        Assert.Single(a!["instances"]!.AsArray());
    }

    [Theory]
    [InlineData("""{"icon": "x"}""")]
    [InlineData("""{"instances": {}}""")]
    [InlineData("""{"instances": ["not an object"]}""")]
    public void Metadata_without_an_array_of_instances_is_invalid(string json)
        => Assert.Null(AppserviceQueries.WithInstanceIds("a", Obj(json)));

    [Fact]
    public async Task Protocols_are_asked_of_each_appservice_listing_them_and_failures_skipped()
    {
        var stub = new Stub
        {
            Answer = (host, path) => (host, path) switch
            {
                ("a.example", "/_matrix/app/v1/thirdparty/protocol/irc") => (200, """{"instances": [{"network_id": "libera"}]}"""),
                ("b.example", _) => null,
                ("c.example", "/_matrix/app/v1/thirdparty/protocol/irc") => (200, """{"instances": [{"network_id": "oftc"}]}"""),
                ("c.example", _) => (500, """{"errcode": "M_UNKNOWN"}"""),
                _ => (404, "{}"),
            },
        };
        var queries = new AppserviceQueries(stub);
        AppserviceRegistration[] all = [As("a", ["irc"]), As("b", ["irc", "gitter"]), As("c", ["irc", "xmpp"]), As("d", ["irc"], url: false)];

        var protocols = await queries.ProtocolsAsync(all, null, default);

        Assert.Equal(["irc"], protocols.Select(p => p.Key));
        Assert.Equal(["a|libera", "c|oftc"], protocols["irc"]!["instances"]!.AsArray().Select(i => i!["instance_id"]!.GetValue<string>()));
        Assert.All(stub.Tokens, t => Assert.Matches("^Bearer [abc]_hs$", t));
        Assert.DoesNotContain(stub.Asked, a => a.StartsWith("d.", StringComparison.Ordinal));

        stub.Asked.Clear();
        var only = await queries.ProtocolsAsync(all, "gitter", default);
        Assert.Empty(only);
        Assert.Equal(["b.example/_matrix/app/v1/thirdparty/protocol/gitter"], stub.Asked);
    }

    [Fact]
    public async Task Lookups_put_the_appservices_valid_results_together()
    {
        var stub = new Stub
        {
            Answer = (host, path) => host switch
            {
                "a.example" => (200, """
                    [{"alias": "#irc_matrix:example.org", "protocol": "irc", "fields": {"channel": "#matrix"}},
                     {"alias": "#missing_fields:example.org", "protocol": "irc"},
                     {"userid": "@wrong_kind:example.org", "protocol": "irc", "fields": {}}]
                    """),
                "b.example" => (200, """{"not": "a list"}"""),
                "c.example" => (200, """[{"alias": "#c:example.org", "protocol": "irc", "fields": {}}]"""),
                _ => null,
            },
        };
        var queries = new AppserviceQueries(stub);
        AppserviceRegistration[] all = [As("a", ["irc"]), As("b", ["irc"]), As("dead", ["irc"]), As("c", ["irc"]), As("x", ["xmpp"]), As("none", [])];

        var found = await queries.LookupAsync(all, AppserviceQueries.Kind.Location, "irc", "?channel=%23matrix", default);
        Assert.Equal(["#irc_matrix:example.org", "#c:example.org"], found.Select(r => r!["alias"]!.GetValue<string>()));
        Assert.Contains("a.example/_matrix/app/v1/thirdparty/location/irc?channel=%23matrix", stub.Asked);
        Assert.DoesNotContain(stub.Asked, a => a.StartsWith("x.", StringComparison.Ordinal));

        // A reverse lookup asks every appservice that lists a protocol.
        stub.Asked.Clear();
        await queries.LookupAsync(all, AppserviceQueries.Kind.User, null, "?userid=%40a%3Aexample.org", default);
        Assert.Equal(["a", "b", "c", "dead", "x"], stub.Asked.Select(a => a[..a.IndexOf('.')]).Order());
        Assert.All(stub.Asked, a => Assert.EndsWith("/_matrix/app/v1/thirdparty/user?userid=%40a%3Aexample.org", a));
    }

    [Fact]
    public async Task Existence_queries_ask_the_namespaces_appservices_in_turn_until_one_says_yes()
    {
        var stub = new Stub
        {
            Answer = (host, path) => host switch
            {
                "first.example" => (404, """{"errcode": "M_NOT_FOUND"}"""),
                "broken.example" => null,
                "second.example" => (200, "{}"),
                _ => (200, "{}"),
            },
        };
        var queries = new AppserviceQueries(stub);
        AppserviceRegistration[] all =
        [
            As("first", [], users: "@irc_.*", aliases: "#irc_.*"), As("broken", [], users: "@irc_.*", aliases: "#irc_.*"),
            As("second", [], users: "@irc_.*", aliases: "#irc_.*"), As("third", [], users: "@irc_.*", aliases: "#irc_.*"),
            As("other", [], users: "@gitter_.*", aliases: "#gitter_.*"),
        ];

        Assert.True(await queries.UserExistsAsync(all, "@irc_bob:example.org", default));
        Assert.Equal(["first", "broken", "second"], stub.Asked.Select(a => a[..a.IndexOf('.')]));
        Assert.Equal("first.example/_matrix/app/v1/users/%40irc_bob%3Aexample.org", stub.Asked[0]);

        stub.Asked.Clear();
        Assert.True(await queries.AliasExistsAsync(all, "#irc_chan:example.org", default));
        Assert.Equal("first.example/_matrix/app/v1/rooms/%23irc_chan%3Aexample.org", stub.Asked[0]);

        stub.Asked.Clear();
        Assert.False(await queries.UserExistsAsync(all, "@plain:example.org", default));
        Assert.False(await queries.AliasExistsAsync(all, "#plain:example.org", default));
        Assert.Empty(stub.Asked);

        // Not a JSON object: not a yes.
        stub.Answer = (_, _) => (200, "not json");
        Assert.False(await queries.UserExistsAsync(all, "@gitter_x:example.org", default));
    }
}

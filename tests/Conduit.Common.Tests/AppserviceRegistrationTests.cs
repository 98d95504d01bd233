using System.Collections;
using Conduit.Common.Appservices;
using Conduit.Common.Config;

namespace Conduit.Common.Tests;

/// <summary>Application service registration files (Synapse's YAML) and the config key that names them.</summary>
public sealed class AppserviceRegistrationTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("conduit-as-").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    const string Bridge = """
        id: bridge
        url: "http://127.0.0.1:9000"
        as_token: as_secret
        hs_token: hs_secret
        sender_localpart: bridgebot
        rate_limited: false
        protocols: [irc]
        de.sorunome.msc2409.push_ephemeral: true
        org.matrix.msc3202: true
        namespaces:
          users:
            - exclusive: true
              regex: "@irc_.*:example\\.org"
            - exclusive: false
              regex: "@shared_.*"
          aliases:
            - exclusive: true
              regex: "#irc_.*"
          rooms: []
        """;

    string Write(string name, string text)
    {
        var path = Path.Combine(_dir, name);
        File.WriteAllText(path, text);
        return path;
    }

    GlobalConfig Load(params string[] files) => ConfigLoader.Parse($"""
        [global]
        server_name = "example.org"
        app_service_config_files = [{string.Join(", ", files.Select(f => $"'{f}'"))}]
        """, "test.toml", new Hashtable()).Global;

    static ConfigException Bad(string yaml) => Assert.Throws<ConfigException>(() => AppserviceLoader.Parse(yaml, "bad.yaml"));

    [Fact]
    public void A_synapse_registration_is_read_with_every_field()
    {
        var r = Assert.Single(Load(Write("bridge.yaml", Bridge)).Appservices());
        Assert.Equal(("bridge", "http://127.0.0.1:9000", "as_secret", "hs_secret", "bridgebot"), (r.Id, r.Url, r.AsToken, r.HsToken, r.SenderLocalpart));
        Assert.False(r.RateLimited);
        Assert.Equal(["irc"], r.Protocols);
        Assert.True(r.ReceiveEphemeral);
        Assert.True(r.Msc3202);
        Assert.Equal(2, r.Users.Count);
        Assert.Single(r.Aliases);
        Assert.Empty(r.Rooms);
        Assert.Equal("@bridgebot:example.org", r.SenderUserId("example.org"));
        Assert.True(r.IsInterestedInUser("@irc_alice:example.org", "example.org"));
        Assert.True(r.IsInterestedInUser("@shared_bob:example.org", "example.org"));
        Assert.True(r.IsInterestedInUser("@bridgebot:example.org", "example.org"));
        Assert.False(r.IsInterestedInUser("@alice:example.org", "example.org"));
        // The regex must match the whole ID, not a part of it.
        Assert.False(r.IsInterestedInUser("@xirc_alice:example.org", "example.org"));
        Assert.True(r.ClaimsUserExclusively("@irc_alice:example.org"));
        Assert.False(r.ClaimsUserExclusively("@shared_bob:example.org"));
    }

    [Fact]
    public void Without_the_key_there_are_none_and_url_may_be_null_and_rate_limited_defaults_to_true()
    {
        Assert.Empty(Load().Appservices());
        var r = AppserviceLoader.Parse("""
            id: quiet
            url: null
            as_token: a
            hs_token: h
            sender_localpart: quiet
            namespaces: {users: [], aliases: [], rooms: []}
            """, "quiet.yaml");
        Assert.Null(r.Url);
        Assert.True(r.RateLimited);
        Assert.False(r.ReceiveEphemeral);
    }

    [Theory]
    [InlineData("as_token")]
    [InlineData("hs_token")]
    [InlineData("id")]
    [InlineData("sender_localpart")]
    public void A_missing_field_is_named(string field)
    {
        var yaml = string.Join('\n', Bridge.Split('\n').Where(l => !l.StartsWith(field + ":")));
        var e = Bad(yaml);
        Assert.Contains("bad.yaml", e.Message);
        Assert.Contains($"'{field}'", e.Message);
    }

    [Fact]
    public void A_missing_url_is_an_error_but_an_explicit_null_is_not()
    {
        var e = Bad(string.Join('\n', Bridge.Split('\n').Where(l => !l.StartsWith("url:"))));
        Assert.Contains("'url'", e.Message);
        Assert.Contains("http", Bad(Bridge.Replace("\"http://127.0.0.1:9000\"", "ftp://x")).Message);
    }

    [Fact]
    public void Bad_regexes_yaml_and_equal_tokens_are_refused()
    {
        Assert.Contains("regular expression", Bad(Bridge.Replace("\"#irc_.*\"", "\"#irc_(\"")).Message);
        Assert.Contains("must differ", Bad(Bridge.Replace("hs_token: hs_secret", "hs_token: as_secret")).Message);
        Assert.Contains("YAML", Bad("id: [unclosed").Message);
        Assert.Contains("mapping", Bad("- just\n- a list").Message);
        Assert.Contains("true or false", Bad(Bridge.Replace("rate_limited: false", "rate_limited: maybe")).Message);
        Assert.Contains("exclusive", Bad(Bridge.Replace("    - exclusive: true\n      regex: \"#irc_.*\"", "    - regex: \"#irc_.*\"")).Message);
        Assert.Contains("admin bot", Bad(Bridge.Replace("sender_localpart: bridgebot", "sender_localpart: conduit")).Message);
    }

    [Fact]
    public void Ids_and_tokens_must_be_unique_across_files()
    {
        var a = Write("a.yaml", Bridge);
        var sameId = Write("b.yaml", Bridge.Replace("as_secret", "as2").Replace("hs_secret", "hs2"));
        var e = Assert.Throws<ConfigException>(() => Load(a, sameId));
        Assert.Contains("b.yaml", e.Message);
        Assert.Contains("'bridge'", e.Message);

        var sharedToken = Write("c.yaml", Bridge.Replace("id: bridge", "id: other").Replace("hs_secret", "hs2"));
        Assert.Contains("unique", Assert.Throws<ConfigException>(() => Load(a, sharedToken)).Message);
        // One's as_token used as the other's hs_token counts too.
        var crossed = Write("d.yaml", Bridge.Replace("id: bridge", "id: third").Replace("as_secret", "as3").Replace("hs_secret", "as_secret"));
        Assert.Contains("unique", Assert.Throws<ConfigException>(() => Load(a, crossed)).Message);
    }

    [Fact]
    public void The_same_exclusive_regex_in_two_registrations_is_refused_but_a_shared_non_exclusive_one_is_not()
    {
        var a = AppserviceLoader.Parse(Bridge, "a.yaml");
        var other = Bridge.Replace("id: bridge", "id: other").Replace("as_secret", "as2").Replace("hs_secret", "hs2");
        var e = Assert.Throws<ConfigException>(() => AppserviceLoader.CheckTogether([a, AppserviceLoader.Parse(other, "b.yaml")]));
        Assert.Contains("b.yaml", e.Message);
        Assert.Contains("exclusive users namespace \"@irc_.*:example\\.org\"", e.Message);
        Assert.Contains("'bridge' (a.yaml)", e.Message);
        // Non-exclusive namespaces may be shared; different exclusive ones are not compared.
        var shared = other.Replace("@irc_.*:example\\\\.org", "@other_.*").Replace("#irc_.*", "#other_.*");
        AppserviceLoader.CheckTogether([a, AppserviceLoader.Parse(shared, "c.yaml")]);
    }

    [Fact]
    public void The_redacted_registration_keeps_everything_but_the_tokens()
    {
        var r = AppserviceLoader.Redacted(Bridge);
        Assert.DoesNotContain("as_secret", r);
        Assert.DoesNotContain("hs_secret", r);
        Assert.Contains("<redacted>", r);
        var back = AppserviceLoader.Parse(r.Replace("hs_token: <redacted>", "hs_token: other"), "redacted.yaml");
        Assert.Equal(("bridge", "bridgebot", 2, "#irc_.*"), (back.Id, back.SenderLocalpart, back.Users.Count, AppserviceLoader.Pattern(back.Aliases[0].Regex.ToString())));
    }

    [Fact]
    public void Runtime_registrations_come_after_the_files_and_are_replaced_whole()
    {
        var config = Load(Write("bridge.yaml", Bridge));
        var quiet = AppserviceLoader.Parse("id: quiet\nurl: null\nas_token: qa\nhs_token: qh\nsender_localpart: quiet", "q") with { Runtime = true };
        config.SetRuntimeAppservices([quiet]);
        Assert.Equal(["bridge", "quiet"], config.Appservices().Select(a => a.Id));
        Assert.Equal(["bridge"], config.FileAppservices().Select(a => a.Id));
        config.SetRuntimeAppservices([]);
        Assert.Equal(["bridge"], config.Appservices().Select(a => a.Id));
    }

    [Fact]
    public void A_file_that_cannot_be_read_is_one_clear_error()
    {
        var missing = Path.Combine(_dir, "nope.yaml");
        var e = Assert.Throws<ConfigException>(() => Load(missing));
        Assert.Contains("app_service_config_files", e.Message);
        Assert.Contains("nope.yaml", e.Message);
    }
}

using Conduit.Common;
using Conduit.Common.Appservices;
using Conduit.Common.Config;
using Conduit.Common.Storage;
using Microsoft.Extensions.Logging.Abstractions;

namespace Conduit.Keys.Tests;

/// <summary>Application services registered at runtime: stored, checked with the config files' as one set, put into
/// the config at once and streamed to watchers, read back at start.</summary>
public sealed class AppserviceRegistryTests : IDisposable
{
    readonly IKeyValueStore _kv = KvStore.Open("memory", "", KeysFamilies.All);
    readonly GlobalConfig _config = new() { ServerName = "example.org" };

    const string File = """
        id: from-file
        url: null
        as_token: file_as
        hs_token: file_hs
        sender_localpart: filebot
        namespaces:
          users: [{exclusive: true, regex: "@file_.*"}]
        """;

    static string Yaml(string id, string asToken = "", string hsToken = "", string? users = null) => $"""
        id: {id}
        url: "http://127.0.0.1:9"
        as_token: {(asToken.Length > 0 ? asToken : id + "_as")}
        hs_token: {(hsToken.Length > 0 ? hsToken : id + "_hs")}
        sender_localpart: {id}bot
        namespaces:
          users:
            - exclusive: true
              regex: "{users ?? "@" + id + "_.*"}"
        """;

    public AppserviceRegistryTests() => _config.SetAppservices([AppserviceLoader.Parse(File, "/etc/from-file.yaml")]);

    public void Dispose() => _kv.Dispose();

    AppserviceRegistry Registry() => new(_kv, _config, NullLogger<AppserviceRegistry>.Instance) { Clock = () => 1234 };

    static string Refused(Action a) => Assert.Throws<MatrixException>(a) is { ErrCode: "M_INVALID_PARAM" } e ? e.Message : throw new InvalidOperationException("another errcode");

    [Fact]
    public void A_registration_is_in_the_config_at_once_and_after_a_restart()
    {
        var registry = Registry();
        var (r, replaced) = registry.Register(Yaml("bridge"), "@admin:example.org");
        Assert.False(replaced);
        Assert.True(r.Runtime);
        Assert.Equal(["from-file", "bridge"], _config.Appservices().Select(a => a.Id));
        Assert.Contains("@admin:example.org", r.Source);

        // A new process on the same database: the file's set again, then the stored ones.
        _config.SetAppservices(_config.FileAppservices());
        Assert.Single(_config.Appservices());
        Registry().Load();
        Assert.Equal(["from-file", "bridge"], _config.Appservices().Select(a => a.Id));
        Assert.Equal(new StoredAppservice("bridge", Yaml("bridge"), "@admin:example.org", 1234), Registry().Stored("bridge"));
    }

    [Fact]
    public void A_runtime_registration_is_replaced_by_its_id_but_a_config_files_never()
    {
        var registry = Registry();
        registry.Register(Yaml("bridge"), "@a:example.org");
        Assert.True(registry.Register(Yaml("bridge", asToken: "new_as"), "@a:example.org").Replaced);
        Assert.Equal("new_as", _config.Appservices().Single(a => a.Id == "bridge").AsToken);

        var e = Refused(() => registry.Register(Yaml("from-file", asToken: "x1", hsToken: "x2"), "@a:example.org"));
        Assert.Contains("/etc/from-file.yaml", e);
        Assert.Equal(403, Assert.Throws<MatrixException>(() => registry.Unregister("from-file", "@a:example.org")).Status);
        Assert.Equal(404, Assert.Throws<MatrixException>(() => registry.Unregister("never", "@a:example.org")).Status);

        registry.Unregister("bridge", "@a:example.org");
        Assert.Equal(["from-file"], _config.Appservices().Select(a => a.Id));
        Assert.Null(registry.Stored("bridge"));
    }

    [Fact]
    public void Clashes_with_the_files_or_other_runtime_registrations_and_bad_yaml_are_refused_and_change_nothing()
    {
        var registry = Registry();
        registry.Register(Yaml("bridge"), "@a:example.org");
        Assert.Contains("'from-file'", Refused(() => registry.Register(Yaml("b2", asToken: "file_as"), "@a:example.org")));
        Assert.Contains("'bridge'", Refused(() => registry.Register(Yaml("b3", hsToken: "bridge_as"), "@a:example.org")));
        Assert.Contains("must differ", Refused(() => registry.Register(Yaml("b4", asToken: "same", hsToken: "same"), "@a:example.org")));
        Assert.Contains("exclusive users namespace", Refused(() => registry.Register(Yaml("b5", users: "@file_.*"), "@a:example.org")));
        Assert.Contains("regular expression", Refused(() => registry.Register(Yaml("b6", users: "@x_("), "@a:example.org")));
        Assert.Contains("admin bot", Refused(() => registry.Register(Yaml("b7").Replace("sender_localpart: b7bot", "sender_localpart: conduit"), "@a:example.org")));
        Assert.Contains("YAML", Refused(() => registry.Register("id: [unclosed", "@a:example.org")));
        Assert.Equal(["from-file", "bridge"], _config.Appservices().Select(a => a.Id));
        Assert.Equal(["bridge"], registry.Current.Select(s => s.Id));
    }

    [Fact]
    public async Task A_watcher_gets_the_set_now_and_after_every_change()
    {
        var registry = Registry();
        registry.Register(Yaml("one"), "@a:example.org");
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await using var watch = registry.Watch(cts.Token).GetAsyncEnumerator(cts.Token);
        Assert.True(await watch.MoveNextAsync());
        Assert.Equal(["one"], watch.Current.Select(s => s.Id));
        registry.Register(Yaml("two"), "@a:example.org");
        Assert.True(await watch.MoveNextAsync());
        Assert.Equal(["one", "two"], watch.Current.Select(s => s.Id));
        registry.Unregister("one", "@a:example.org");
        Assert.True(await watch.MoveNextAsync());
        Assert.Equal(["two"], watch.Current.Select(s => s.Id));
    }

    [Fact]
    public void A_stored_registration_that_a_config_file_now_clashes_with_is_left_out_at_start_but_can_be_removed()
    {
        Registry().Register(Yaml("bridge", asToken: "later_file_as"), "@a:example.org");
        _config.SetAppservices([AppserviceLoader.Parse(File, "/etc/from-file.yaml"), AppserviceLoader.Parse(Yaml("late", asToken: "later_file_as"), "/etc/late.yaml")]);
        var registry = Registry();
        registry.Load();
        Assert.Equal(["from-file", "late"], _config.Appservices().Select(a => a.Id));
        Assert.NotNull(registry.Stored("bridge"));
        registry.Unregister("bridge", "@a:example.org");
        Assert.Null(registry.Stored("bridge"));
    }
}

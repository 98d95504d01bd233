using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Crypto;
using Conduit.Common.Storage;

namespace Conduit.Federation.Tests;

/// <summary>Answers key fetches from other servers' <see cref="ServerKeys"/>, as they or a notary would.</summary>
sealed class FakeFetcher : IRemoteKeyFetcher
{
    public Dictionary<string, Func<JsonObject>> Direct { get; } = [];
    public Dictionary<string, Func<string, JsonObject[]>> Notaries { get; } = [];
    public List<(string Server, string? Notary)> Calls { get; } = [];

    public Task<IReadOnlyList<JsonObject>> FetchAsync(string serverName, string? notary, long minimumValidUntilTs, CancellationToken ct)
    {
        Calls.Add((serverName, notary));
        if (notary is null)
            return Direct.TryGetValue(serverName, out var f) ? Task.FromResult<IReadOnlyList<JsonObject>>([f()]) : throw new HttpRequestException("unreachable");
        return Notaries.TryGetValue(notary, out var n) ? Task.FromResult<IReadOnlyList<JsonObject>>(n(serverName)) : throw new HttpRequestException("unreachable");
    }
}

/// <summary>Several servers' key stores in temp folders: ours (example.org) and the remote ones the tests sign with.</summary>
sealed class KeyWorld : IDisposable
{
    readonly List<string> _dirs = [];
    readonly List<IDisposable> _owned = [];
    public FakeFetcher Fetcher { get; } = new();
    public GlobalConfig Config { get; } = new() { ServerName = "example.org", TrustedServers = ["notary.org"] };
    public ServerKeys Own { get; }
    public RemoteKeyStore Store { get; }
    public IKeyValueStore Kv { get; }

    public KeyWorld()
    {
        Kv = OpenStore();
        Own = new ServerKeys(Kv, Config);
        _owned.Add(Own);
        Store = new RemoteKeyStore(Kv, Own, Fetcher, Config, failureBackoff: TimeSpan.Zero);
    }

    IKeyValueStore OpenStore()
    {
        var dir = Directory.CreateTempSubdirectory("conduit-remote-keys-").FullName;
        _dirs.Add(dir);
        var kv = KvStore.Open("rocksdb", dir, FederationFamilies.All);
        _owned.Add(kv);
        return kv;
    }

    /// <summary>Another server with its own signing key, served directly by the fake fetcher.</summary>
    public ServerKeys Server(string name, bool reachable = true)
    {
        var keys = new ServerKeys(OpenStore(), new GlobalConfig { ServerName = name });
        _owned.Insert(0, keys);
        if (reachable) Fetcher.Direct[name] = keys.KeyResponse;
        return keys;
    }

    public void Dispose()
    {
        foreach (var d in _owned) d.Dispose();
        foreach (var d in _dirs) Directory.Delete(d, recursive: true);
    }
}

public sealed class RemoteKeyStoreTests : IDisposable
{
    readonly KeyWorld _w = new();
    static long Now => Ids.NowMs();

    [Fact]
    public async Task A_key_is_fetched_from_its_server_once_then_served_from_the_cache()
    {
        var remote = _w.Server("remote.org");
        var key = await _w.Store.GetKeyAsync("remote.org", remote.Key.KeyId, Now, default);
        Assert.NotNull(key);
        Assert.Equal(remote.Key.PublicKey, key.PublicKey);
        Assert.True(key.ValidForRequestsAt(Now));
        await _w.Store.GetKeyAsync("remote.org", remote.Key.KeyId, Now, default);
        Assert.Single(_w.Fetcher.Calls);
    }

    [Fact]
    public async Task A_key_wanted_past_its_valid_until_ts_is_fetched_again()
    {
        var remote = _w.Server("remote.org");
        await _w.Store.GetKeyAsync("remote.org", remote.Key.KeyId, Now, default);
        var later = await _w.Store.GetKeyAsync("remote.org", remote.Key.KeyId, Now + 2 * 24 * 3600_000L, default);
        Assert.Equal(2, _w.Fetcher.Calls.Count);
        Assert.False(later!.ValidAt(Now + 2 * 24 * 3600_000L)); // the server still says one day: the caller refuses
    }

    [Fact]
    public async Task Valid_until_ts_is_capped_at_seven_days()
    {
        var remote = _w.Server("remote.org");
        _w.Fetcher.Direct["remote.org"] = () => Resign(remote, r => r["valid_until_ts"] = Now + 365 * 24 * 3600_000L);
        var key = await _w.Store.GetKeyAsync("remote.org", remote.Key.KeyId, Now, default);
        Assert.InRange(key!.ValidUntilTs, Now, Now + RemoteKeyStore.MaxValidityMs);
    }

    [Fact]
    public async Task Responses_not_signed_by_the_server_or_naming_another_are_refused()
    {
        var remote = _w.Server("remote.org");
        var other = _w.Server("other.org");
        _w.Fetcher.Direct["remote.org"] = () => { var r = remote.KeyResponse(); r["valid_until_ts"] = Now + 1; return r; }; // tampered
        Assert.Null(await _w.Store.GetKeyAsync("remote.org", remote.Key.KeyId, Now, default));
        _w.Fetcher.Direct["remote.org"] = other.KeyResponse; // another server's keys
        Assert.Null(await _w.Store.GetKeyAsync("remote.org", other.Key.KeyId, Now, default));
        _w.Fetcher.Direct["remote.org"] = () => Resign(remote, r => r.Remove("valid_until_ts"));
        Assert.Null(await _w.Store.GetKeyAsync("remote.org", remote.Key.KeyId, Now, default));
        _w.Fetcher.Direct["remote.org"] = () => Resign(remote, r => r["verify_keys"] = new JsonObject { ["ed25519:x"] = new JsonObject { ["key"] = other.Key.PublicKeyBase64 } });
        Assert.Null(await _w.Store.GetKeyAsync("remote.org", "ed25519:x", Now, default));
    }

    [Fact]
    public async Task An_unreachable_server_is_asked_about_through_a_trusted_notary_that_signs_the_answer()
    {
        var remote = _w.Server("remote.org", reachable: false);
        var notary = _w.Server("notary.org");
        _w.Fetcher.Notaries["notary.org"] = name => { var r = remote.KeyResponse(); notary.Sign(r); return [r]; };
        var key = await _w.Store.GetKeyAsync("remote.org", remote.Key.KeyId, Now, default);
        Assert.Equal(remote.Key.PublicKey, key!.PublicKey);
        Assert.Contains(("remote.org", (string?)"notary.org"), _w.Fetcher.Calls);
    }

    [Fact]
    public async Task A_notary_answer_without_the_notary_signature_is_refused()
    {
        var remote = _w.Server("remote.org", reachable: false);
        var notary = _w.Server("notary.org");
        var impostor = _w.Server("impostor.org");
        _w.Fetcher.Notaries["notary.org"] = name => [remote.KeyResponse()];
        Assert.Null(await _w.Store.GetKeyAsync("remote.org", remote.Key.KeyId, Now, default));
        _w.Fetcher.Notaries["notary.org"] = name => { var r = remote.KeyResponse(); JsonSigning.Sign(r, "notary.org", impostor.Key); return [r]; };
        Assert.Null(await _w.Store.GetKeyAsync("remote.org", remote.Key.KeyId, Now, default));
    }

    [Fact]
    public async Task Old_verify_keys_are_kept_with_their_expiry_and_checked_by_room_version()
    {
        var remote = _w.Server("remote.org");
        var oldId = remote.Key.KeyId;
        var before = Now - 1000;
        remote.Rotate();
        var old = await _w.Store.GetKeyAsync("remote.org", oldId, before, default);
        Assert.NotNull(old);
        Assert.NotNull(old.ExpiredTs);
        Assert.False(old.ValidForRequestsAt(Now));
        Assert.True(RemoteKeyStore.ValidForEvent(old, "11", before));
        Assert.False(RemoteKeyStore.ValidForEvent(old, "11", Now + 1000));
        var current = await _w.Store.GetKeyAsync("remote.org", remote.Key.KeyId, Now, default);
        Assert.True(RemoteKeyStore.ValidForEvent(current!, "11", Now));
        Assert.False(RemoteKeyStore.ValidForEvent(current!, "5", Now + 30L * 24 * 3600_000));
        Assert.True(RemoteKeyStore.ValidForEvent(current!, "4", Now + 30L * 24 * 3600_000)); // v1-4 ignore valid_until_ts
    }

    [Fact]
    public async Task Our_own_keys_come_from_our_key_store_without_a_fetch()
    {
        var key = await _w.Store.GetKeyAsync("example.org", _w.Own.Key.KeyId, Now, default);
        Assert.Equal(_w.Own.Key.PublicKey, key!.PublicKey);
        Assert.Empty(_w.Fetcher.Calls);
    }

    [Fact]
    public async Task Entries_of_the_wrong_shape_in_a_signed_response_are_skipped_and_the_rest_kept()
    {
        var remote = _w.Server("remote.org");
        _w.Fetcher.Direct["remote.org"] = () => Resign(remote, r =>
        {
            r["verify_keys"]!["ed25519:junk"] = 5;
            r["verify_keys"]!["ed25519:short"] = new JsonObject { ["key"] = "AAAA" };
            r["old_verify_keys"] = new JsonObject { ["ed25519:a"] = "x", ["ed25519:b"] = new JsonObject { ["key"] = 1, ["expired_ts"] = "soon" } };
        });
        Assert.Equal(remote.Key.PublicKey, (await _w.Store.GetKeyAsync("remote.org", remote.Key.KeyId, Now, default))!.PublicKey);
        Assert.Null(await _w.Store.GetKeyAsync("remote.org", "ed25519:short", Now, default));
    }

    [Fact]
    public async Task A_name_that_is_not_a_server_name_is_never_fetched()
    {
        Assert.Null(await _w.Store.GetKeyAsync("a/b", "ed25519:x", Now, default));
        Assert.Null(await _w.Store.GetResponseAsync("bad name", Now, default));
        Assert.Empty(_w.Fetcher.Calls);
    }

    static JsonObject Resign(ServerKeys keys, Action<JsonObject> change)
    {
        var r = keys.KeyResponse();
        r.Remove("signatures");
        change(r);
        keys.Sign(r);
        return r;
    }

    [Fact]
    public async Task A_server_without_usable_keys_is_not_asked_again_at_once_and_concurrent_misses_share_one_fetch()
    {
        var remote = _w.Server("remote.org");
        var gate = new TaskCompletionSource();
        var calls = 0;
        var fetcher = new GatedFetcher(() => { Interlocked.Increment(ref calls); return gate.Task; }, remote);
        var store = new RemoteKeyStore(_w.Kv, _w.Own, fetcher, _w.Config);
        var waiting = Enumerable.Range(0, 5).Select(_ => store.GetKeyAsync("remote.org", remote.Key.KeyId, Now, default)).ToList();
        gate.SetResult();
        Assert.All(await Task.WhenAll(waiting), k => Assert.NotNull(k));
        Assert.Equal(1, calls);

        // Unreachable: one attempt (the server itself and each trusted notary), then none within the backoff.
        fetcher.Fail = true;
        var before = calls;
        Assert.Null(await store.GetKeyAsync("remote.org", "ed25519:unknown", Now, default));
        var afterFirst = calls;
        Assert.True(afterFirst > before);
        Assert.Null(await store.GetKeyAsync("remote.org", "ed25519:unknown", Now, default));
        Assert.Equal(afterFirst, calls);
    }

    sealed class GatedFetcher(Func<Task> onFetch, ServerKeys remote) : IRemoteKeyFetcher
    {
        public bool Fail;

        public async Task<IReadOnlyList<JsonObject>> FetchAsync(string serverName, string? notary, long minimumValidUntilTs, CancellationToken ct)
        {
            await onFetch();
            if (Fail) throw new HttpRequestException("unreachable");
            return [remote.KeyResponse()];
        }
    }

    public void Dispose() => _w.Dispose();
}

public sealed class KeyNotaryTests : IDisposable
{
    readonly KeyWorld _w = new();
    KeyNotary Notary => new(_w.Store, _w.Own);

    [Fact]
    public async Task Answers_carry_the_servers_own_signature_and_ours()
    {
        var remote = _w.Server("remote.org");
        var answer = await Notary.QueryAsync(new Dictionary<string, long?> { ["example.org"] = null, ["remote.org"] = null, ["gone.org"] = null }, default);
        var list = answer["server_keys"]!.AsArray().Select(n => n!.AsObject()).ToList();
        Assert.Equal(["example.org", "remote.org"], list.Select(r => r["server_name"]!.GetValue<string>()).Order());
        var fromRemote = list.Single(r => r["server_name"]!.GetValue<string>() == "remote.org");
        Assert.True(JsonSigning.Verify(fromRemote, "remote.org", remote.Key.KeyId, remote.Key.PublicKey));
        foreach (var r in list) Assert.True(JsonSigning.Verify(r, "example.org", _w.Own.Key.KeyId, _w.Own.Key.PublicKey));
    }

    [Fact]
    public async Task A_server_that_went_offline_is_answered_from_the_cache_and_fetched_when_the_cache_is_too_old()
    {
        var remote = _w.Server("remote.org");
        await Notary.QueryAsync(new Dictionary<string, long?> { ["remote.org"] = null }, default);
        _w.Fetcher.Direct.Remove("remote.org");
        var cached = await Notary.QueryAsync(new Dictionary<string, long?> { ["remote.org"] = null }, default);
        Assert.Single(cached["server_keys"]!.AsArray());
        Assert.Single(_w.Fetcher.Calls);
        await Notary.QueryAsync(new Dictionary<string, long?> { ["remote.org"] = Ids.NowMs() + 3L * 24 * 3600_000 }, default);
        Assert.Equal(2, _w.Fetcher.Calls.Count);
        Assert.All(_w.Fetcher.Calls, c => Assert.Null(c.Notary)); // a notary asks the server itself, never other notaries
    }

    [Fact]
    public void The_batch_criteria_take_the_latest_minimum_per_server_and_refuse_bad_shapes()
    {
        var c = KeyNotary.ParseCriteria(JsonNode.Parse("""{"server_keys":{"a.org":{"ed25519:1":{"minimum_valid_until_ts":5},"ed25519:2":{"minimum_valid_until_ts":9}},"b.org":{}}}""")!.AsObject());
        Assert.Equal(9, c["a.org"]);
        Assert.Null(c["b.org"]);
        Assert.Empty(KeyNotary.ParseCriteria(JsonNode.Parse("""{"server_keys":{}}""")!.AsObject()));
        foreach (var bad in new[] { "{}", """{"server_keys":[]}""", """{"server_keys":{"a.org":1}}""", """{"server_keys":{"a.org":{"k":{"minimum_valid_until_ts":"x"}}}}""" })
            Assert.Equal("M_BAD_JSON", Assert.Throws<MatrixException>(() => KeyNotary.ParseCriteria(JsonNode.Parse(bad)!.AsObject())).ErrCode);
    }

    [Fact]
    public void A_notary_query_names_at_most_100_servers()
    {
        var servers = new JsonObject();
        for (var i = 0; i < 101; i++) servers[$"s{i}.org"] = new JsonObject();
        Assert.Equal("M_INVALID_PARAM", Assert.Throws<MatrixException>(() => KeyNotary.ParseCriteria(new JsonObject { ["server_keys"] = servers })).ErrCode);
    }

    public void Dispose() => _w.Dispose();
}

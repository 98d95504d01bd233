using Conduit.Common.Config;
using Conduit.Common.Crypto;
using Conduit.Common.Storage;

namespace Conduit.Federation.Tests;

public sealed class ServerKeysTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("conduit-keys-").FullName;
    readonly GlobalConfig _config = new() { ServerName = "example.org" };

    IKeyValueStore Open() => KvStore.Open("rocksdb", _dir, FederationFamilies.All);

    [Fact]
    public void The_signing_key_is_generated_once_and_kept()
    {
        string keyId, publicKey;
        using (var store = Open())
        using (var keys = new ServerKeys(store, _config))
            (keyId, publicKey) = (keys.Key.KeyId, keys.Key.PublicKeyBase64);
        using (var store = Open())
        using (var again = new ServerKeys(store, _config))
        {
            Assert.Equal(keyId, again.Key.KeyId);
            Assert.Equal(publicKey, again.Key.PublicKeyBase64);
        }
        Assert.StartsWith("ed25519:", keyId);
    }

    [Fact]
    public void The_key_response_is_signed_by_the_key_it_publishes()
    {
        using var store = Open();
        using var keys = new ServerKeys(store, _config);
        var response = keys.KeyResponse();
        Assert.Equal("example.org", response["server_name"]!.GetValue<string>());
        var published = UnpaddedBase64.Decode(response["verify_keys"]![keys.Key.KeyId]!["key"]!.GetValue<string>());
        Assert.True(JsonSigning.Verify(response, "example.org", keys.Key.KeyId, published));
        response["valid_until_ts"] = 0;
        Assert.False(JsonSigning.Verify(response, "example.org", keys.Key.KeyId, published));
    }

    [Fact]
    public async Task WatchSigningKey_hands_out_the_published_key_so_local_signatures_verify()
    {
        using var store = Open();
        using var keys = new ServerKeys(store, _config);
        var invoker = Conduit.Common.Grpc.InProcessCallInvoker.Create(null, b => Protos.Federation.Federation.BindService(b, new FederationGrpcService(keys, null!, null!, null!, null!, null!)));
        var client = new Protos.Federation.Federation.FederationClient(invoker);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        using var call = client.WatchSigningKey(new Protos.Federation.WatchSigningKeyRequest(), cancellationToken: cts.Token);
        Assert.True(await call.ResponseStream.MoveNext(cts.Token));
        var update = call.ResponseStream.Current;
        Assert.Equal("example.org", update.ServerName);
        using var local = SigningKey.FromSeed(update.Seed.Span, update.Version);
        Assert.Equal(keys.Key.KeyId, local.KeyId);
        var data = "{\"a\":1}"u8.ToArray();
        var published = UnpaddedBase64.Decode(keys.KeyResponse()["verify_keys"]![local.KeyId]!["key"]!.GetValue<string>());
        Assert.True(SigningKey.Verify(published, data, UnpaddedBase64.Decode(local.SignBase64(data))));
    }

    [Fact]
    public void A_rotated_key_is_published_as_an_old_verify_key_and_the_new_one_signs()
    {
        string oldId, oldKey, newId;
        var before = Conduit.Common.Ids.NowMs();
        using (var store = Open())
        using (var keys = new ServerKeys(store, _config))
        {
            (oldId, oldKey) = (keys.Key.KeyId, keys.Key.PublicKeyBase64);
            newId = keys.Rotate().KeyId;
            Assert.NotEqual(oldId, newId);
        }
        using (var store = Open())
        using (var keys = new ServerKeys(store, _config))
        {
            Assert.Equal(newId, keys.Key.KeyId);
            var response = keys.KeyResponse();
            Assert.Equal([newId], response["verify_keys"]!.AsObject().Select(p => p.Key));
            var old = response["old_verify_keys"]![oldId]!;
            Assert.Equal(oldKey, old["key"]!.GetValue<string>());
            Assert.InRange(old["expired_ts"]!.GetValue<long>(), before, Conduit.Common.Ids.NowMs());
            Assert.True(JsonSigning.Verify(response, "example.org", newId, keys.Key.PublicKey));
            Assert.False(JsonSigning.Verify(response, "example.org", oldId, UnpaddedBase64.Decode(oldKey)));
        }
    }

    [Fact]
    public void Valid_until_ts_is_one_key_refresh_interval_ahead()
    {
        using var store = Open();
        using var keys = new ServerKeys(store, _config);
        var now = Conduit.Common.Ids.NowMs();
        var validUntil = keys.KeyResponse()["valid_until_ts"]!.GetValue<long>();
        Assert.InRange(validUntil - now, 24 * 3600_000L - 5_000, 24 * 3600_000L + 5_000);
    }

    [Fact]
    public async Task Watchers_get_the_new_key_after_a_rotation()
    {
        using var store = Open();
        using var keys = new ServerKeys(store, _config);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await using var e = keys.Watch(cts.Token).GetAsyncEnumerator(cts.Token);
        Assert.True(await e.MoveNextAsync());
        Assert.Equal(keys.Key.KeyId, e.Current.KeyId);
        var next = keys.Rotate();
        Assert.True(await e.MoveNextAsync());
        Assert.Equal(next.KeyId, e.Current.KeyId);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}

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
    public async Task Sign_returns_a_signature_that_verifies()
    {
        using var store = Open();
        using var keys = new ServerKeys(store, _config);
        var svc = new FederationGrpcService(keys);
        var data = "{\"a\":1}"u8.ToArray();
        var reply = await svc.Sign(new Protos.Federation.SignRequest { CanonicalJson = Google.Protobuf.ByteString.CopyFrom(data) }, null!);
        Assert.Equal(keys.Key.KeyId, reply.KeyId);
        Assert.True(SigningKey.Verify(keys.Key.PublicKey, data, UnpaddedBase64.Decode(reply.Signature)));
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}

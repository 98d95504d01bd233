using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Crypto;

namespace Conduit.Functional.Tests;

/// <summary>The federation pair fixture itself: two servers named localhost:PORT on HTTPS with a test CA, each
/// reaching the other by its name, and one of them restarted under the same name with the same key.</summary>
public abstract class FederationPairTests(FederationPair pair)
{
    /// <summary>The key response <paramref name="notary"/> answers for <paramref name="origin"/> through
    /// GET /_matrix/key/v2/query/{name}, checked to be signed by the origin (with the key it publishes) and the notary.</summary>
    static async Task<JsonObject> KeysThrough(ServerFixture notary, ServerFixture origin, long minimumValidUntilTs = 1)
    {
        var (keyId, key) = await FederationKeyTests.KeyOf(origin);
        var (notaryKeyId, notaryKey) = await FederationKeyTests.KeyOf(notary);
        var answer = (await new MatrixClient(notary).Get($"/_matrix/key/v2/query/{origin.ServerName}?minimum_valid_until_ts={minimumValidUntilTs}")).Ok().Obj;
        var r = Assert.Single(answer["server_keys"]!.AsArray())!.AsObject();
        Assert.Equal(origin.ServerName, r["server_name"]!.GetValue<string>());
        Assert.True(r["verify_keys"]!.AsObject().ContainsKey(keyId));
        Assert.True(JsonSigning.Verify(r, origin.ServerName, keyId, key), "signed by the origin");
        Assert.True(JsonSigning.Verify(r, notary.ServerName, notaryKeyId, notaryKey), "signed by the notary");
        return r;
    }

    [Fact]
    public async Task Each_server_is_named_after_its_port_and_serves_the_federation_api_over_https()
    {
        Assert.NotEqual(pair.Port(pair.A), pair.Port(pair.B));
        foreach (var s in new[] { pair.A, pair.B })
        {
            Assert.Equal($"https://127.0.0.1:{pair.Port(s)}", s.BaseUrl);
            Assert.Equal($"localhost:{pair.Port(s)}", s.ServerName);
            var c = new MatrixClient(s);
            Assert.Equal("Conduit.Services", (await c.Get("/_matrix/federation/v1/version")).Ok().Obj["server"]!["name"]!.GetValue<string>());
            var own = (await c.Get("/_matrix/key/v2/server")).Ok().Obj;
            Assert.Equal(s.ServerName, own["server_name"]!.GetValue<string>());
            var (keyId, key) = await FederationKeyTests.KeyOf(s);
            Assert.True(JsonSigning.Verify(own, s.ServerName, keyId, key));
            // Only the pair's CA makes the certificate good: a client with the system's trust alone refuses it.
            using var untrusting = new HttpClient();
            await Assert.ThrowsAsync<HttpRequestException>(() => untrusting.GetAsync(s.BaseUrl + "/_matrix/federation/v1/version"));
        }
    }

    [Fact]
    public async Task Each_server_fetches_the_others_keys_by_its_name_over_validated_tls()
    {
        await KeysThrough(pair.A, pair.B);
        await KeysThrough(pair.B, pair.A);
    }

    [Fact]
    public async Task A_restarted_server_has_the_same_name_port_and_key_and_is_reached_again()
    {
        var (keyId, key) = await FederationKeyTests.KeyOf(pair.B);
        var (name, url) = (pair.B.ServerName, pair.B.BaseUrl);
        await KeysThrough(pair.A, pair.B);

        await pair.StopAsync(pair.B);
        await Assert.ThrowsAsync<HttpRequestException>(() => pair.B.Http.GetAsync(url + "/_matrix/key/v2/server"));
        var restartedAt = Ids.NowMs();
        await pair.StartAsync(pair.B);

        Assert.Equal((name, url), (pair.B.ServerName, pair.B.BaseUrl));
        var (keyIdAfter, keyAfter) = await FederationKeyTests.KeyOf(pair.B);
        Assert.Equal(keyId, keyIdAfter);
        Assert.Equal(key, keyAfter);
        // Asked for keys valid later than any it has cached, A fetches from B again: the answer was made by the
        // restarted B (its valid_until_ts is a day after it was made).
        var fresh = await KeysThrough(pair.A, pair.B, Ids.NowMs() + (long)TimeSpan.FromDays(2).TotalMilliseconds);
        Assert.True(fresh["valid_until_ts"]!.GetValue<long>() >= restartedAt + (long)TimeSpan.FromDays(1).TotalMilliseconds);
        (await new MatrixClient(pair.B).Get("/_matrix/client/versions")).Ok();
    }
}

public sealed class AllInOneFederationPairTests(FederationPairFixture f) : FederationPairTests(f), IClassFixture<FederationPairFixture>;

public sealed class SplitFederationPairTests(SplitFederationPairFixture f) : FederationPairTests(f), IClassFixture<SplitFederationPairFixture>;

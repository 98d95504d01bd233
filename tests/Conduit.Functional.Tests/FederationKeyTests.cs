using System.Net;
using System.Text.Json.Nodes;
using Conduit.Common.Crypto;

namespace Conduit.Functional.Tests;

/// <summary>The key endpoints through the edge: what another server sees when it asks us for keys, ours or others'.</summary>
public abstract class FederationKeyTests(ServerFixture server)
{
    Task<(string KeyId, byte[] Key)> OurKey() => KeyOf(server);

    /// <summary>The signing key a server publishes at /_matrix/key/v2/server.</summary>
    public static async Task<(string KeyId, byte[] Key)> KeyOf(ServerFixture server)
    {
        var own = (await new MatrixClient(server).Get("/_matrix/key/v2/server")).Ok().Obj;
        var (keyId, entry) = own["verify_keys"]!.AsObject().Single();
        return (keyId, UnpaddedBase64.Decode(entry!["key"]!.GetValue<string>()));
    }

    [Fact]
    public async Task The_notary_query_for_us_answers_our_keys_signed_by_us()
    {
        var (keyId, key) = await OurKey();
        var answer = (await new MatrixClient(server).Get($"/_matrix/key/v2/query/{server.ServerName}?minimum_valid_until_ts=1")).Ok().Obj;
        var r = Assert.Single(answer["server_keys"]!.AsArray())!.AsObject();
        Assert.Equal(server.ServerName, r["server_name"]!.GetValue<string>());
        Assert.True(JsonSigning.Verify(r, server.ServerName, keyId, key));
    }

    [Fact]
    public async Task The_batch_query_leaves_out_servers_it_cannot_reach()
    {
        var (keyId, key) = await OurKey();
        var c = new MatrixClient(server);
        var answer = (await c.Post("/_matrix/key/v2/query", new JsonObject
        {
            ["server_keys"] = new JsonObject
            {
                [server.ServerName] = new JsonObject { [keyId] = new JsonObject { ["minimum_valid_until_ts"] = 1 } },
                ["unreachable.invalid"] = new JsonObject(),
            },
        })).Ok().Obj;
        var r = Assert.Single(answer["server_keys"]!.AsArray())!.AsObject();
        Assert.True(JsonSigning.Verify(r, server.ServerName, keyId, key));
        Assert.Empty((await c.Post("/_matrix/key/v2/query", new JsonObject { ["server_keys"] = new JsonObject() })).Ok().Obj["server_keys"]!.AsArray());
        var bad = await c.Post("/_matrix/key/v2/query", new JsonObject { ["server_keys"] = new JsonArray() });
        Assert.Equal((HttpStatusCode.BadRequest, "M_BAD_JSON"), (bad.Status, bad.ErrCode));
        var badTs = await c.Get($"/_matrix/key/v2/query/{server.ServerName}?minimum_valid_until_ts=soon");
        Assert.Equal((HttpStatusCode.BadRequest, "M_INVALID_PARAM"), (badTs.Status, badTs.ErrCode));
    }
}

public sealed class AllInOneFederationKeyTests(AllInOneFixture f) : FederationKeyTests(f), IClassFixture<AllInOneFixture>;

public sealed class SplitFederationKeyTests(SplitFixture f) : FederationKeyTests(f), IClassFixture<SplitFixture>;

/// <summary>allow_federation = false: the server-server API is closed, the client API and our published key are not.</summary>
public abstract class FederationDisabledTests(ServerFixture server)
{
    [Fact]
    public async Task Every_federation_path_and_the_notary_answer_403()
    {
        var c = new MatrixClient(server);
        foreach (var r in new[]
        {
            await c.Get("/_matrix/federation/v1/version"),
            await c.Get("/_MATRIX/Federation/v1/version"),
            await c.Get("/_matrix/federation/v1/openid/userinfo?access_token=abc"),
            await c.Get("/_matrix/federation/v1/no_such_path"),
            await c.Get($"/_matrix/key/v2/query/{server.ServerName}"),
            await c.Post("/_matrix/key/v2/query", new JsonObject { ["server_keys"] = new JsonObject() }),
        })
            Assert.Equal((HttpStatusCode.Forbidden, "M_FORBIDDEN"), (r.Status, r.ErrCode));
        (await c.Get("/_matrix/key/v2/server")).Ok();
        (await c.Get("/_matrix/client/versions")).Ok();
    }
}

public sealed class NoFederationFixture : AllInOneFixture
{
    protected override string ExtraConfig => base.ExtraConfig + "\nallow_federation = false";
}

public sealed class SplitNoFederationFixture : SplitFixture
{
    protected override string ExtraConfig => base.ExtraConfig + "\nallow_federation = false";
}

public sealed class AllInOneFederationDisabledTests(NoFederationFixture f) : FederationDisabledTests(f), IClassFixture<NoFederationFixture>;

public sealed class SplitFederationDisabledTests(SplitNoFederationFixture f) : FederationDisabledTests(f), IClassFixture<SplitNoFederationFixture>;

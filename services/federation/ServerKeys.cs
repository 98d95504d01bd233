using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Crypto;
using Conduit.Common.Storage;
using K = Conduit.Common.Storage.Keys;

namespace Conduit.Federation;

/// <summary>The server's Ed25519 signing key: generated on first start, persisted, never regenerated.</summary>
public sealed class ServerKeys : IDisposable
{
    public SigningKey Key { get; }
    public string ServerName { get; }

    public ServerKeys(IKeyValueStore store, GlobalConfig config)
    {
        ServerName = config.ServerName;
        var map = store.Map(FederationFamilies.ServerKeys);
        var stored = map.Get(K.Utf8("signing_key"));
        if (stored is null)
        {
            Key = SigningKey.Generate(Ids.Random(6).Replace('-', '_'));
            map.Put(K.Utf8("signing_key"), K.Concat(K.Utf8(Key.Version), [K.Sep], Key.ExportSeed()));
        }
        else
        {
            var sep = Array.IndexOf(stored, K.Sep);
            Key = SigningKey.FromSeed(stored.AsSpan(sep + 1), System.Text.Encoding.UTF8.GetString(stored, 0, sep));
        }
    }

    /// <summary>
    /// The signing key now, then each key that replaces it, until <paramref name="ct"/> is cancelled: what the rooms
    /// service signs events with. The key is never replaced yet (rotation comes with federation, and will publish
    /// the new key here); the stream stays open so a later rotation reaches every subscriber.
    /// </summary>
    public async IAsyncEnumerable<SigningKey> Watch([System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct)
    {
        yield return Key;
        try { await Task.Delay(Timeout.Infinite, ct); }
        catch (OperationCanceledException) { }
    }

    /// <summary>GET /_matrix/key/v2/server (spec: server-server-api, "Publishing Keys"), signed by the key itself.</summary>
    public JsonObject KeyResponse()
    {
        var o = new JsonObject
        {
            ["server_name"] = ServerName,
            ["valid_until_ts"] = Ids.NowMs() + 7 * 24 * 3600 * 1000L,
            ["verify_keys"] = new JsonObject { [Key.KeyId] = new JsonObject { ["key"] = Key.PublicKeyBase64 } },
            ["old_verify_keys"] = new JsonObject(),
        };
        JsonSigning.Sign(o, ServerName, Key);
        return o;
    }

    public void Dispose() => Key.Dispose();
}

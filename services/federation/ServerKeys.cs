using System.Buffers.Binary;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Crypto;
using Conduit.Common.Storage;
using K = Conduit.Common.Storage.Keys;

namespace Conduit.Federation;

/// <summary>
/// The server's Ed25519 signing key: generated on first start, persisted, replaced only by <see cref="Rotate"/>.
/// A replaced key stays published under old_verify_keys with the time it expired (spec: server-server-api,
/// "Publishing Keys"), so events it signed still verify. The current key and the old keys change in one batch.
/// </summary>
public sealed class ServerKeys : IDisposable
{
    /// <summary>How far ahead valid_until_ts is published: Synapse's key_refresh_interval (1 day).</summary>
    public static readonly TimeSpan KeyRefreshInterval = TimeSpan.FromDays(1);

    readonly IKeyValueStore _store;
    readonly object _lock = new();
    readonly List<SigningKey> _retired = [];
    SigningKey _key;
    TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public SigningKey Key => Volatile.Read(ref _key);
    public string ServerName { get; }

    public ServerKeys(IKeyValueStore store, GlobalConfig config)
    {
        _store = store;
        ServerName = config.ServerName;
        var stored = store.Map(FederationFamilies.ServerKeys).Get(K.Utf8("signing_key"));
        if (stored is null)
        {
            _key = NewKey();
            store.Map(FederationFamilies.ServerKeys).Put(K.Utf8("signing_key"), CurrentValue(_key));
        }
        else
        {
            var sep = Array.IndexOf(stored, K.Sep);
            _key = SigningKey.FromSeed(stored.AsSpan(sep + 1), System.Text.Encoding.UTF8.GetString(stored, 0, sep));
        }
    }

    static SigningKey NewKey() => SigningKey.Generate(Ids.Random(6).Replace('-', '_'));
    static byte[] CurrentValue(SigningKey k) => K.Concat(K.Utf8(k.Version), [K.Sep], k.ExportSeed());
    static byte[] OldKeyId(string keyId) => K.Concat(K.Utf8("old_key"), [K.Sep], K.Utf8(keyId));

    /// <summary>
    /// Replaces the signing key with a new one; the old one is kept as an old verify key expired now. Subscribers of
    /// <see cref="Watch"/> get the new key.
    /// </summary>
    public SigningKey Rotate()
    {
        lock (_lock)
        {
            var old = _key;
            var next = NewKey();
            var value = new byte[8 + SigningKey.PublicKeySize];
            BinaryPrimitives.WriteInt64BigEndian(value, Ids.NowMs());
            old.PublicKey.CopyTo(value, 8);
            using var batch = _store.CreateBatch();
            batch.Put(FederationFamilies.ServerKeys, OldKeyId(old.KeyId), value);
            batch.Put(FederationFamilies.ServerKeys, K.Utf8("signing_key"), CurrentValue(next));
            _store.Write(batch);
            // The old key object may still be held by a subscriber that has not seen the new one: disposed with us.
            _retired.Add(old);
            Volatile.Write(ref _key, next);
            var changed = _changed;
            _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
            changed.SetResult();
            return next;
        }
    }

    /// <summary>The keys this server used before: key id, public key, and when it stopped being used.</summary>
    public IEnumerable<(string KeyId, byte[] PublicKey, long ExpiredTs)> OldKeys()
    {
        var prefix = K.Concat(K.Utf8("old_key"), [K.Sep]);
        foreach (var (k, v) in _store.Map(FederationFamilies.ServerKeys).Scan(prefix))
            yield return (System.Text.Encoding.UTF8.GetString(k, prefix.Length, k.Length - prefix.Length), v[8..], BinaryPrimitives.ReadInt64BigEndian(v));
    }

    /// <summary>
    /// The signing key now, then each key that replaces it (<see cref="Rotate"/>), until <paramref name="ct"/> is
    /// cancelled: what the rooms service signs events with.
    /// </summary>
    public async IAsyncEnumerable<SigningKey> Watch([System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            Task changed;
            SigningKey key;
            lock (_lock) (changed, key) = (_changed.Task, _key);
            yield return key;
            try { await changed.WaitAsync(ct); }
            catch (OperationCanceledException) { yield break; }
        }
    }

    /// <summary>GET /_matrix/key/v2/server (spec: server-server-api, "Publishing Keys"), signed by the current key.</summary>
    public JsonObject KeyResponse()
    {
        var key = Key;
        var old = new JsonObject();
        foreach (var (id, pk, expired) in OldKeys())
            old[id] = new JsonObject { ["key"] = UnpaddedBase64.Encode(pk), ["expired_ts"] = expired };
        var o = new JsonObject
        {
            ["server_name"] = ServerName,
            ["valid_until_ts"] = Ids.NowMs() + (long)KeyRefreshInterval.TotalMilliseconds,
            ["verify_keys"] = new JsonObject { [key.KeyId] = new JsonObject { ["key"] = key.PublicKeyBase64 } },
            ["old_verify_keys"] = old,
        };
        JsonSigning.Sign(o, ServerName, key);
        return o;
    }

    /// <summary>Signs <paramref name="obj"/> in place with the current key.</summary>
    public void Sign(JsonObject obj) => JsonSigning.Sign(obj, ServerName, Key);

    public void Dispose()
    {
        lock (_lock)
        {
            _key.Dispose();
            foreach (var k in _retired) k.Dispose();
        }
    }
}

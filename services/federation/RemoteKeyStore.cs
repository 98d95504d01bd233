using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Crypto;
using Conduit.Common.Storage;
using K = Conduit.Common.Storage.Keys;

namespace Conduit.Federation;

/// <summary>
/// One verify key of another server. <see cref="ExpiredTs"/> is set for an old_verify_key (valid only for events
/// before it); <see cref="ValidUntilTs"/> is already capped at 7 days after it was fetched (spec: keys, valid_until_ts).
/// </summary>
public sealed record RemoteKey(string ServerName, string KeyId, byte[] PublicKey, long ValidUntilTs, long? ExpiredTs)
{
    /// <summary>Whether the key may sign something made at <paramref name="ts"/>.</summary>
    public bool ValidAt(long ts) => ExpiredTs is { } expired ? ts < expired : ts <= ValidUntilTs;

    /// <summary>A key that may sign requests now: a current key (not an old one) not past its valid_until_ts.</summary>
    public bool ValidForRequestsAt(long now) => ExpiredTs is null && now <= ValidUntilTs;
}

/// <summary>
/// Verify keys of other servers, cached until their valid_until_ts (spec: server-server-api, "Retrieving server
/// keys"). On a miss, or when the cached key is not valid at the time asked about, the keys are fetched from the
/// server itself, then through each of trusted_servers as notaries (Conduit's order: origin first). A response is
/// kept only if it names the server, carries valid_until_ts, and is signed by the server with a key it lists; a
/// notary's answer must in addition be signed by the notary (whose own keys are fetched from it directly). Our own
/// keys come from <see cref="ServerKeys"/>, never from the cache.
/// </summary>
public sealed class RemoteKeyStore(IKeyValueStore store, ServerKeys own, IRemoteKeyFetcher fetcher, GlobalConfig config, TimeSpan? failureBackoff = null)
{
    /// <summary>After a fetch that got no usable keys, the server is not asked again for this long (requests signed with
    /// an unknown key would otherwise each cost an outbound fetch).</summary>
    public static readonly TimeSpan DefaultFailureBackoff = TimeSpan.FromSeconds(30);

    readonly TimeSpan _backoff = failureBackoff ?? DefaultFailureBackoff;
    readonly System.Collections.Concurrent.ConcurrentDictionary<string, long> _failedUntil = new(StringComparer.Ordinal);
    /// <summary>Fetches in flight, by server and kind: concurrent misses for one server share one fetch.</summary>
    readonly System.Collections.Concurrent.ConcurrentDictionary<(string Server, bool DirectOnly), Lazy<Task>> _inflight = new();

    /// <summary>Forgets every server's failure backoff, so the next verification fetches again; answers how many there were.</summary>
    public long ClearFailures()
    {
        var count = _failedUntil.Count;
        _failedUntil.Clear();
        return count;
    }

    /// <summary>The spec's cap on valid_until_ts: keys are trusted at most this far past the time they were fetched.</summary>
    public static readonly long MaxValidityMs = (long)TimeSpan.FromDays(7).TotalMilliseconds;

    readonly IKvMap _keys = store.Map(FederationFamilies.RemoteKeys);
    readonly IKvMap _responses = store.Map(FederationFamilies.RemoteKeyResponses);

    /// <summary>
    /// The key <paramref name="keyId"/> of <paramref name="serverName"/>, fetched if it is not cached or the cached one
    /// is not valid at <paramref name="validAt"/>. Null if no source knows it; otherwise the caller checks validity.
    /// </summary>
    public async Task<RemoteKey?> GetKeyAsync(string serverName, string keyId, long validAt, CancellationToken ct)
    {
        if (serverName == own.ServerName) return OwnKey(keyId);
        if (!Ids.IsValidServerName(serverName)) return null;
        var cached = Cached(serverName, keyId);
        if (cached is not null && cached.ValidAt(validAt)) return cached;
        await RefreshAsync(serverName, Math.Max(validAt, Ids.NowMs()), directOnly: false, ct);
        return Cached(serverName, keyId) ?? cached;
    }

    /// <summary>
    /// The key response of <paramref name="serverName"/> to re-serve as a notary: the cached one if its valid_until_ts
    /// reaches <paramref name="minimumValidUntilTs"/>, else one fetched from the server itself (notaries do not ask
    /// other notaries), else the cached one anyway (spec: notaries may serve cached keys of unreachable servers).
    /// </summary>
    public async Task<JsonObject?> GetResponseAsync(string serverName, long minimumValidUntilTs, CancellationToken ct)
    {
        if (serverName == own.ServerName) return own.KeyResponse();
        if (!Ids.IsValidServerName(serverName)) return null; // nothing to ask, and nothing to build a URL from
        var cached = CachedResponse(serverName);
        if (cached is not null && cached["valid_until_ts"]?.GetValue<long>() >= minimumValidUntilTs) return cached;
        await RefreshAsync(serverName, minimumValidUntilTs, directOnly: true, ct);
        return CachedResponse(serverName) ?? cached;
    }

    /// <summary>
    /// Room versions 5 and later (spec: rooms v5, "Signing key validity period"): a key signs an event only if it was
    /// valid at the event's origin_server_ts. Earlier versions ignore valid_until_ts (an old key still ends at expired_ts).
    /// </summary>
    public static bool ValidForEvent(RemoteKey key, string roomVersion, long originServerTs)
        => roomVersion is "1" or "2" or "3" or "4"
            ? key.ExpiredTs is not { } expired || originServerTs < expired
            : key.ValidAt(originServerTs);

    RemoteKey? OwnKey(string keyId)
    {
        var now = Ids.NowMs();
        var key = own.Key;
        if (key.KeyId == keyId) return new(own.ServerName, keyId, key.PublicKey, now + (long)ServerKeys.KeyRefreshInterval.TotalMilliseconds, null);
        foreach (var (id, pk, expired) in own.OldKeys())
            if (id == keyId) return new(own.ServerName, id, pk, expired, expired);
        return null;
    }

    RemoteKey? Cached(string serverName, string keyId)
    {
        var v = _keys.Get(K.Join(serverName, keyId));
        if (v is null) return null;
        var expired = BinaryPrimitives.ReadInt64BigEndian(v.AsSpan(8));
        return new(serverName, keyId, v[16..], BinaryPrimitives.ReadInt64BigEndian(v), expired == 0 ? null : expired);
    }

    JsonObject? CachedResponse(string serverName)
        => _responses.Get(K.Utf8(serverName)) is { } v ? JsonNode.Parse(v) as JsonObject : null;

    async Task RefreshAsync(string serverName, long minimumValidUntilTs, bool directOnly, CancellationToken ct)
    {
        if (_failedUntil.TryGetValue(serverName, out var until) && Ids.NowMs() < until) return;
        var key = (serverName, directOnly);
        var fetch = _inflight.GetOrAdd(key, _ => new Lazy<Task>(() => FetchThenForgetAsync(key, minimumValidUntilTs)));
        await fetch.Value.WaitAsync(ct);
    }

    /// <summary>One fetch, not tied to one caller (others may wait on it), remembered as failed when it stored nothing.</summary>
    async Task FetchThenForgetAsync((string Server, bool DirectOnly) key, long minimumValidUntilTs)
    {
        try
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(1));
            if (!await FetchAsync(key.Server, minimumValidUntilTs, key.DirectOnly, cts.Token) && _backoff > TimeSpan.Zero)
                _failedUntil[key.Server] = Ids.NowMs() + (long)_backoff.TotalMilliseconds;
            else _failedUntil.TryRemove(key.Server, out _);
        }
        catch (OperationCanceledException) { }
        finally { _inflight.TryRemove(key, out _); }
    }

    async Task<bool> FetchAsync(string serverName, long minimumValidUntilTs, bool directOnly, CancellationToken ct)
    {
        IEnumerable<string?> sources = directOnly ? [null] : [null, .. config.TrustedServers.Where(n => n != serverName && n != own.ServerName)];
        foreach (var notary in sources)
        {
            IReadOnlyList<JsonObject> responses;
            try { responses = await fetcher.FetchAsync(serverName, notary, minimumValidUntilTs, ct); }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException or System.Text.Json.JsonException or InvalidOperationException or UriFormatException && !ct.IsCancellationRequested)
            {
                continue;
            }
            var stored = false;
            foreach (var r in responses)
            {
                if (!IsValidResponse(r, serverName)) continue;
                if (notary is not null && !await SignedByNotaryAsync(r, notary, ct)) continue;
                Store(serverName, r);
                stored = true;
            }
            if (stored) return true;
        }
        return false;
    }

    async Task<bool> SignedByNotaryAsync(JsonObject response, string notary, CancellationToken ct)
    {
        if (response["signatures"]?[notary] is not JsonObject sigs) return false;
        foreach (var (keyId, _) in sigs)
        {
            var key = Cached(notary, keyId);
            if (key is null || !key.ValidForRequestsAt(Ids.NowMs()))
            {
                await RefreshAsync(notary, Ids.NowMs(), directOnly: true, ct);
                key = Cached(notary, keyId);
            }
            if (key is not null && key.ValidForRequestsAt(Ids.NowMs()) && JsonSigning.Verify(response, notary, keyId, key.PublicKey)) return true;
        }
        return false;
    }

    /// <summary>
    /// A /_matrix/key/v2/server response of <paramref name="serverName"/> we may believe: it names the server, has
    /// valid_until_ts and well-formed keys, and every signature of the server by a key it lists verifies (at least one).
    /// </summary>
    internal static bool IsValidResponse(JsonObject r, string serverName)
    {
        try
        {
            if (r["server_name"]?.GetValue<string>() != serverName) return false;
            if (r["valid_until_ts"] is not JsonValue vu || !vu.TryGetValue(out long _)) return false;
            if (r["verify_keys"] is not JsonObject verifyKeys || verifyKeys.Count == 0) return false;
            if (r["signatures"]?[serverName] is not JsonObject sigs) return false;
            var verified = 0;
            foreach (var (keyId, sig) in sigs)
            {
                if (verifyKeys[keyId]?["key"]?.GetValue<string>() is not { } b64) continue;
                if (!UnpaddedBase64.TryDecode(b64, out var pk) || !JsonSigning.Verify(r, serverName, keyId, pk)) return false;
                verified++;
            }
            return verified > 0;
        }
        catch (InvalidOperationException) { return false; } // a member of the wrong JSON type
    }

    void Store(string serverName, JsonObject r)
    {
        var now = Ids.NowMs();
        var validUntil = Math.Min(r["valid_until_ts"]!.GetValue<long>(), now + MaxValidityMs);
        using var batch = store.CreateBatch();
        void Put(string keyId, JsonNode? entry, long expired)
        {
            // A signed response may still carry entries of the wrong shape: those are skipped, the rest kept.
            if (entry is not JsonObject e || e["key"] is not JsonValue kv || !kv.TryGetValue(out string? b64) || !UnpaddedBase64.TryDecode(b64, out var pk) || pk.Length != SigningKey.PublicKeySize) return;
            // A key already cached as valid for longer (a newer response) is not shortened by an older one.
            if (expired == 0 && Cached(serverName, keyId) is { ExpiredTs: null } old && old.ValidUntilTs > validUntil) return;
            var value = new byte[16 + pk.Length];
            BinaryPrimitives.WriteInt64BigEndian(value, expired == 0 ? validUntil : expired);
            BinaryPrimitives.WriteInt64BigEndian(value.AsSpan(8), expired);
            pk.CopyTo(value, 16);
            batch.Put(FederationFamilies.RemoteKeys, K.Join(serverName, keyId), value);
        }
        foreach (var (keyId, entry) in r["verify_keys"]!.AsObject()) Put(keyId, entry, 0);
        if (r["old_verify_keys"] is JsonObject oldKeys)
            foreach (var (keyId, entry) in oldKeys)
                if (entry is JsonObject o && o["expired_ts"] is JsonValue e && e.TryGetValue(out long expired) && expired > 0) Put(keyId, entry, expired);
        var previous = CachedResponse(serverName);
        if (previous is null || previous["valid_until_ts"]!.GetValue<long>() <= r["valid_until_ts"]!.GetValue<long>())
            batch.Put(FederationFamilies.RemoteKeyResponses, K.Utf8(serverName), Encoding.UTF8.GetBytes(r.ToJsonString()));
        store.Write(batch);
    }
}

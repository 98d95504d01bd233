using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common.Crypto;
using Conduit.Common.Http;
using Conduit.Common.Storage;
using K = Conduit.Common.Storage.Keys;

namespace Conduit.Keys.E2ee;

/// <summary>A cross-signing key as uploaded, with its one Ed25519 public key.</summary>
public sealed record CrossSigningKey(string Usage, JsonObject Json, string PublicKey)
{
    public string KeyId => $"{KeyObjects.Ed25519}:{PublicKey}";
    public byte[] PublicKeyBytes => KeyObjects.Ed25519Key(PublicKey)!;
}

/// <summary>
/// Cross-signing keys and the signatures users make with them (spec: client-server-api, "Cross-signing"): the
/// master, self-signing and user-signing keys of local users, and signatures checked before they are stored (a
/// device by its user's self-signing key, a master key by one of its user's devices, another user's master key by
/// the signer's user-signing key). Writes go through the keys stream; every change is a device-list change of the
/// user whose keys it touches.
/// </summary>
public sealed class CrossSigning(E2eeStore e2ee)
{
    public static readonly string[] Usages = ["master", "self_signing", "user_signing"];

    readonly KeysStream _stream = e2ee.Stream;
    readonly IKvMap _keys = e2ee.Stream.Store.Map(KeysFamilies.CrossSigning);

    public CrossSigningKey? Get(string userId, string usage)
    {
        if (_keys.Get(KeysFamilies.CrossSigningKey(userId, usage)) is not { } v) return null;
        var o = JsonNode.Parse(v)!.AsObject();
        return new CrossSigningKey(usage, o, PublicKeyOf(o)!);
    }

    static string? PublicKeyOf(JsonObject key)
        => key["keys"] is JsonObject keys && keys.Count == 1 && keys.First() is var (id, v)
           && id.StartsWith(KeyObjects.Ed25519 + ":", StringComparison.Ordinal) && v is JsonValue jv && jv.TryGetValue<string>(out var pub)
           && id == $"{KeyObjects.Ed25519}:{pub}" && KeyObjects.Ed25519Key(pub) is not null
            ? pub : null;

    /// <summary>The key JSON with the signatures others made on it (served by /keys/query).</summary>
    public JsonObject? Served(string userId, string usage)
    {
        if (Get(userId, usage) is not { } k) return null;
        var json = (JsonObject)k.Json.DeepClone();
        e2ee.MergeSignatures(userId, k.PublicKey, json);
        return json;
    }

    /// <summary>
    /// Checks one uploaded key: an object for the user, with exactly the one usage, one Ed25519 key named by its
    /// public key, and well-formed signatures. M_INVALID_PARAM or M_BAD_JSON otherwise.
    /// </summary>
    public static CrossSigningKey Parse(JsonObject o, string usage, string userId)
    {
        var what = usage + "_key";
        if ((o.OptString("user_id") ?? throw Err.MissingParam($"{what}: missing 'user_id'")) != userId)
            throw Err.InvalidParam($"{what}.user_id is not your user ID");
        var usages = o.OptStringList("usage") ?? throw Err.MissingParam($"{what}: missing 'usage'");
        if (usages.Count != 1 || usages[0] != usage) throw Err.InvalidParam($"{what}.usage must be [\"{usage}\"]");
        if (o.OptObject("keys") is null) throw Err.MissingParam($"{what}: missing 'keys'");
        var pub = PublicKeyOf(o) ?? throw Err.InvalidParam($"{what}.keys must hold one key, \"ed25519:<public key>\": \"<public key>\"");
        KeyObjects.Signatures(o, what);
        var stored = (JsonObject)o.DeepClone();
        stored.Remove("unsigned");
        return new CrossSigningKey(usage, stored, pub);
    }

    /// <summary>
    /// Whether an upload changes nothing (the same keys again), which the spec lets through without
    /// user-interactive auth, like a first upload.
    /// </summary>
    public bool SameAsStored(string userId, IEnumerable<CrossSigningKey> keys)
        => keys.All(k => Get(userId, k.Usage) is { } old && Canonical(old.Json) == Canonical(k.Json));

    public bool HasMaster(string userId) => Get(userId, "master") is not null;

    static string Canonical(JsonObject o)
    {
        try { return CanonicalJson.Serialize(o); }
        catch (CanonicalJsonException) { return Guid.NewGuid().ToString(); }
    }

    /// <summary>
    /// Stores an upload of cross-signing keys after checking it whole: the self-signing and user-signing keys must be
    /// signed by the master key (the one uploaded with them, else the stored one). A new master key drops the
    /// signatures made on the old one.
    /// </summary>
    public void Upload(string userId, CrossSigningKey? master, CrossSigningKey? selfSigning, CrossSigningKey? userSigning)
    {
        _stream.Write(kb =>
        {
            var effectiveMaster = master ?? Get(userId, "master");
            foreach (var k in new[] { selfSigning, userSigning })
            {
                if (k is null) continue;
                if (effectiveMaster is null) throw Err.InvalidParam($"{k.Usage}_key: upload a master key first");
                if (!JsonSigning.Verify(k.Json, userId, effectiveMaster.KeyId, effectiveMaster.PublicKeyBytes))
                    throw KeyObjects.InvalidSignature($"{k.Usage}_key is not signed by the master key");
            }
            var changed = false;
            foreach (var k in new[] { master, selfSigning, userSigning })
            {
                if (k is null) continue;
                var old = Get(userId, k.Usage);
                if (old is not null && Canonical(old.Json) == Canonical(k.Json)) continue;
                if (old is not null)
                    foreach (var (sk, _) in _stream.Store.Map(KeysFamilies.Signatures).Scan(KeysFamilies.SignaturesPrefix(userId, old.PublicKey)))
                        kb.Batch.Delete(KeysFamilies.Signatures, sk);
                kb.Batch.Put(KeysFamilies.CrossSigning, KeysFamilies.CrossSigningKey(userId, k.Usage), Encoding.UTF8.GetBytes(k.Json.ToJsonString()));
                changed = true;
            }
            if (changed) e2ee.DeviceListChanged(kb, userId);
        });
    }

    /// <summary>
    /// /keys/signatures/upload: each signed object is checked on its own and its signatures stored, or a failure
    /// reported for it (spec: "failures" keyed by user and key ID). The signed object must match the stored key
    /// apart from signatures and unsigned, so a signature is only ever stored for the key it signs.
    /// </summary>
    public JsonObject UploadSignatures(string signer, JsonObject body)
    {
        var failures = new JsonObject();
        void Fail(string user, string keyId, string errcode, string error)
        {
            var byUser = failures[user] as JsonObject ?? (JsonObject)(failures[user] = new JsonObject());
            byUser[keyId] = new JsonObject { ["errcode"] = errcode, ["error"] = error };
        }
        var accepted = new List<(string TargetUser, string TargetKey, string SignerKeyId, string Signature)>();
        foreach (var (targetUser, byKey) in body)
        {
            if (byKey is not JsonObject keys) throw Err.BadJson($"'{targetUser}' must map key IDs to signed objects");
            foreach (var (keyId, node) in keys)
            {
                if (node is not JsonObject signed) throw Err.BadJson($"'{targetUser}'.'{keyId}' must be an object");
                KeyObjects.Signatures(signed, $"{targetUser}.{keyId}");
                var r = CheckSigned(signer, targetUser, keyId, signed);
                if (r.Error is { } e) Fail(targetUser, keyId, e.Code, e.Message);
                else accepted.AddRange(r.Signatures.Select(s => (targetUser, r.TargetKey!, s.KeyId, s.Signature)));
            }
        }
        if (accepted.Count > 0)
            _stream.Write(kb =>
            {
                foreach (var (targetUser, targetKey, signerKeyId, sig) in accepted)
                    kb.Batch.Put(KeysFamilies.Signatures, KeysFamilies.SignatureKey(targetUser, targetKey, signer, signerKeyId), Encoding.UTF8.GetBytes(sig));
                foreach (var u in accepted.Select(a => a.TargetUser).Distinct()) e2ee.DeviceListChanged(kb, u);
            });
        return new JsonObject { ["failures"] = failures };
    }

    sealed record Checked(string? TargetKey, List<(string KeyId, string Signature)> Signatures, (string Code, string Message)? Error);

    static Checked Failure(string code, string message) => new(null, [], (code, message));

    Checked CheckSigned(string signer, string targetUser, string keyId, JsonObject signed)
    {
        if (signed["signatures"]?[signer] is not JsonObject mine || mine.Count == 0)
            return Failure("M_INVALID_SIGNATURE", "No signature by you on this object");
        if (targetUser == signer)
        {
            // One of the signer's own devices, signed by the self-signing key.
            if (e2ee.DeviceKeys(signer, keyId) is { } device)
            {
                if (!SameKey(device, signed)) return Failure("M_INVALID_PARAM", "The signed object is not the stored device key");
                if (Get(signer, "self_signing") is not { } ssk) return Failure("M_INVALID_SIGNATURE", "You have no self-signing key");
                return Verified(keyId, signed, signer, [(ssk.KeyId, ssk.PublicKeyBytes)], "the self-signing key");
            }
            // The signer's own master key, signed by one of their devices.
            if (Get(signer, "master") is { } master && master.PublicKey == keyId)
            {
                if (!SameKey(master.Json, signed)) return Failure("M_INVALID_PARAM", "The signed object is not the stored master key");
                var deviceKeys = mine.Select(p => p.Key)
                    .Where(id => id.StartsWith(KeyObjects.Ed25519 + ":", StringComparison.Ordinal))
                    .Select(id => (id, key: e2ee.DeviceEd25519(signer, id[(KeyObjects.Ed25519.Length + 1)..])))
                    .Where(p => p.key is not null).Select(p => (p.id, p.key!)).ToList();
                return Verified(keyId, signed, signer, deviceKeys, "one of your devices");
            }
            return Failure("M_NOT_FOUND", "No such device or master key");
        }
        // Another user's master key, signed by the signer's user-signing key.
        if (Get(targetUser, "master") is not { } theirs || theirs.PublicKey != keyId)
            return Failure("M_NOT_FOUND", "No such master key");
        if (!SameKey(theirs.Json, signed)) return Failure("M_INVALID_PARAM", "The signed object is not the stored master key");
        if (Get(signer, "user_signing") is not { } usk) return Failure("M_INVALID_SIGNATURE", "You have no user-signing key");
        return Verified(keyId, signed, signer, [(usk.KeyId, usk.PublicKeyBytes)], "your user-signing key");
    }

    static Checked Verified(string targetKey, JsonObject signed, string signer, List<(string KeyId, byte[] Public)> candidates, string by)
    {
        var ok = candidates.Where(c => JsonSigning.Verify(signed, signer, c.KeyId, c.Public))
            .Select(c => (c.KeyId, signed["signatures"]![signer]![c.KeyId]!.GetValue<string>())).ToList();
        return ok.Count > 0 ? new Checked(targetKey, ok, null) : Failure("M_INVALID_SIGNATURE", $"The signature by {by} is missing or does not verify");
    }

    static bool SameKey(JsonObject stored, JsonObject signed)
    {
        var a = (JsonObject)stored.DeepClone();
        var b = (JsonObject)signed.DeepClone();
        foreach (var o in new[] { a, b }) { o.Remove("signatures"); o.Remove("unsigned"); }
        return Canonical(a) == Canonical(b);
    }

    /// <summary>Adds to a batch the deletion of a user's cross-signing keys and every signature on their keys.</summary>
    public void DeleteUser(KeysBatch kb, string userId)
    {
        foreach (var (k, _) in _keys.Scan(KeysFamilies.CrossSigningPrefix(userId))) kb.Batch.Delete(KeysFamilies.CrossSigning, k);
        foreach (var (k, _) in _stream.Store.Map(KeysFamilies.Signatures).Scan(KeysFamilies.SignaturesPrefix(userId)))
            kb.Batch.Delete(KeysFamilies.Signatures, k);
        e2ee.DeviceListChanged(kb, userId);
    }
}

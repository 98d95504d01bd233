using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Crypto;
using Conduit.Common.Http;

namespace Conduit.Keys.E2ee;

/// <summary>
/// Validation of the key objects clients upload (spec: client-server-api, "End-to-End Encryption", "Device keys" and
/// "One-time and fallback keys"). Everything is checked before anything is stored; a bad object is M_BAD_JSON (wrong
/// shape), M_INVALID_PARAM (wrong user, device or key ID) or M_INVALID_SIGNATURE (a signature that does not verify).
/// </summary>
public static class KeyObjects
{
    public const string Ed25519 = "ed25519";

    public static MatrixException InvalidSignature(string msg) => new("M_INVALID_SIGNATURE", 400, msg);

    /// <summary>Algorithm names are namespaced identifiers: lowercase letters, digits, '.', '_' and '-'.</summary>
    public static bool IsAlgorithm(string s)
        => s.Length is > 0 and <= 128 && s.All(c => c is >= 'a' and <= 'z' or >= '0' and <= '9' or '.' or '_' or '-');

    /// <summary>Splits "algorithm:id" (M_INVALID_PARAM if it is not of that form).</summary>
    public static (string Algorithm, string Id) SplitKeyId(string keyId, string what)
    {
        var i = keyId.IndexOf(':');
        if (i <= 0 || i == keyId.Length - 1 || keyId.Length > 255 || !IsAlgorithm(keyId[..i]))
            throw Err.InvalidParam($"{what}: '{keyId}' is not of the form <algorithm>:<key_id>");
        return (keyId[..i], keyId[(i + 1)..]);
    }

    /// <summary>A 32-byte Ed25519 public key in unpadded Base64, or null.</summary>
    public static byte[]? Ed25519Key(string? base64)
        => base64 is not null && UnpaddedBase64.TryDecode(base64, out var k) && k.Length == 32 ? k : null;

    static string String(JsonObject o, string key, string what)
        => o.OptString(key) ?? throw Err.MissingParam($"{what}: missing '{key}'");

    /// <summary>
    /// Checks a device_keys object for the caller's device and returns it without "unsigned", with the device's
    /// Ed25519 key: it must be for the caller's user and device, list its algorithms, carry string keys named
    /// algorithm:device_id including the Ed25519 key, and be signed by that key.
    /// </summary>
    public static (JsonObject Keys, byte[] Ed25519Key) DeviceKeys(JsonObject dk, string userId, string deviceId)
    {
        const string what = "device_keys";
        if (String(dk, "user_id", what) != userId) throw Err.InvalidParam("device_keys.user_id is not your user ID");
        if (String(dk, "device_id", what) != deviceId) throw Err.InvalidParam("device_keys.device_id is not your device ID");
        var algorithms = dk.OptStringList("algorithms") ?? throw Err.MissingParam("device_keys: missing 'algorithms'");
        if (algorithms.Any(a => !IsAlgorithm(a))) throw Err.InvalidParam("device_keys.algorithms: not an algorithm name");
        var keys = dk.OptObject("keys") ?? throw Err.MissingParam("device_keys: missing 'keys'");
        foreach (var (id, v) in keys)
        {
            var (_, keyDevice) = SplitKeyId(id, "device_keys.keys");
            if (keyDevice != deviceId) throw Err.InvalidParam($"device_keys.keys: '{id}' is not a key of device {deviceId}");
            if (v is not JsonValue jv || !jv.TryGetValue<string>(out _)) throw Err.BadJson($"device_keys.keys.{id} must be a string");
        }
        var ed = Ed25519Key(keys.OptString($"{Ed25519}:{deviceId}")) ?? throw Err.InvalidParam($"device_keys.keys: missing or invalid '{Ed25519}:{deviceId}'");
        Signatures(dk, what);
        var stored = (JsonObject)dk.DeepClone();
        stored.Remove("unsigned");
        if (!JsonSigning.Verify(stored, userId, $"{Ed25519}:{deviceId}", ed))
            throw InvalidSignature("device_keys: the device's own signature is missing or does not verify");
        return (stored, ed);
    }

    /// <summary>Checks that "signatures", if present, is an object of objects of strings.</summary>
    public static JsonObject? Signatures(JsonObject o, string what)
    {
        if (o.OptObject("signatures") is not { } sigs) return null;
        foreach (var (signer, bySigner) in sigs)
        {
            if (bySigner is not JsonObject keys) throw Err.BadJson($"{what}.signatures.{signer} must be an object");
            foreach (var (keyId, sig) in keys)
                if (sig is not JsonValue v || !v.TryGetValue<string>(out _)) throw Err.BadJson($"{what}.signatures.{signer}.{keyId} must be a string");
        }
        return sigs;
    }

    /// <summary>
    /// Checks a map of one-time or fallback keys ("algorithm:key_id" to a string or a signed key object). A signed
    /// key must verify against the device's Ed25519 key when the server knows it.
    /// </summary>
    public static List<(string Algorithm, string KeyId, JsonNode Key)> OneTimeKeys(JsonObject map, string what, string userId, string deviceId, byte[]? deviceEd25519)
    {
        var list = new List<(string, string, JsonNode)>();
        foreach (var (id, v) in map)
        {
            var (alg, _) = SplitKeyId(id, what);
            switch (v)
            {
                case JsonValue sv when sv.TryGetValue<string>(out _):
                    break;
                case JsonObject o:
                    String(o, "key", $"{what}.{id}");
                    Signatures(o, $"{what}.{id}");
                    if (o.TryGetPropertyValue("fallback", out var fb) && fb is not null && !(fb is JsonValue fv && fv.TryGetValue<bool>(out _)))
                        throw Err.BadJson($"{what}.{id}.fallback must be a boolean");
                    if (deviceEd25519 is not null && !JsonSigning.Verify(o, userId, $"{Ed25519}:{deviceId}", deviceEd25519))
                        throw InvalidSignature($"{what}.{id}: the device's signature is missing or does not verify");
                    break;
                default:
                    throw Err.BadJson($"{what}.{id} must be a string or a key object");
            }
            list.Add((alg, id, v!.DeepClone()));
        }
        return list;
    }

    /// <summary>A user ID from a request map: M_INVALID_PARAM unless it is a valid user ID.</summary>
    public static string UserId(string s, string what)
        => Ids.IsUserId(s) ? s : throw Err.InvalidParam($"{what}: '{s}' is not a user ID");
}

using System.Text.Json.Nodes;

namespace Conduit.Common.Crypto;

/// <summary>
/// Signing and verifying JSON objects (spec appendices, "Signing Details" and
/// "Checking for a Signature").
/// </summary>
public static class JsonSigning
{
    /// <summary>Canonical JSON of the object without its "signatures" and "unsigned" members.</summary>
    public static byte[] SigningBytes(JsonObject obj)
    {
        ArgumentNullException.ThrowIfNull(obj);
        return CanonicalJson.SerializeToUtf8BytesExcluding(obj, "signatures", "unsigned");
    }

    /// <summary>Sets <c>signatures[serverName][keyId] = signatureBase64</c>, creating objects as needed.</summary>
    public static void AddSignature(JsonObject obj, string serverName, string keyId, string signatureBase64)
    {
        ArgumentNullException.ThrowIfNull(obj);
        if (obj["signatures"] is not JsonObject signatures)
        {
            signatures = new JsonObject();
            obj["signatures"] = signatures;
        }
        if (signatures[serverName] is not JsonObject byServer)
        {
            byServer = new JsonObject();
            signatures[serverName] = byServer;
        }
        byServer[keyId] = signatureBase64;
    }

    /// <summary>Signs the object in place, keeping existing signatures and "unsigned".</summary>
    public static void Sign(JsonObject obj, string serverName, SigningKey key)
    {
        ArgumentNullException.ThrowIfNull(key);
        AddSignature(obj, serverName, key.KeyId, key.SignBase64(SigningBytes(obj)));
    }

    /// <summary>
    /// True if <c>signatures[serverName][keyId]</c> is a valid signature of the object by
    /// <paramref name="publicKey"/>. Missing entries, bad Base64, JSON that cannot be encoded
    /// canonically, and non-Ed25519 key ids all yield false.
    /// </summary>
    public static bool Verify(JsonObject obj, string serverName, string keyId, ReadOnlySpan<byte> publicKey)
    {
        ArgumentNullException.ThrowIfNull(obj);
        if (!keyId.StartsWith(SigningKey.Algorithm + ":", StringComparison.Ordinal))
        {
            return false;
        }
        if (obj["signatures"] is not JsonObject signatures
            || signatures[serverName] is not JsonObject byServer
            || byServer[keyId] is not JsonValue sigValue
            || !sigValue.TryGetValue(out string? sigBase64)
            || !UnpaddedBase64.TryDecode(sigBase64, out var signature))
        {
            return false;
        }
        byte[] data;
        try
        {
            data = SigningBytes(obj);
        }
        catch (CanonicalJsonException)
        {
            return false;
        }
        return SigningKey.Verify(publicKey, data, signature);
    }
}

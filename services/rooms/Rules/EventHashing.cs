using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Conduit.Common.Crypto;
using Conduit.Common;
using Conduit.Common.Events;

namespace Conduit.Rooms.Rules;

/// <summary>
/// Content hashes, reference hashes, event ids and event signatures
/// (server-server API, "Signing Events" and its subsections).
/// </summary>
public static class EventHashing
{
    /// <summary>
    /// SHA-256 of the canonical JSON of the event without <c>unsigned</c>, <c>signatures</c> and
    /// <c>hashes</c>, as unpadded Base64 ("Calculating the content hash for an event").
    /// </summary>
    public static string ComputeContentHash(JsonObject pdu) =>
        UnpaddedBase64.Encode(ContentHashBytes(pdu));

    /// <summary>Sets <c>hashes.sha256</c> to the content hash, keeping other hash algorithms.</summary>
    public static void AddContentHash(JsonObject pdu)
    {
        string hash = ComputeContentHash(pdu);
        if (pdu["hashes"] is not JsonObject hashes)
        {
            hashes = new JsonObject();
            pdu["hashes"] = hashes;
        }
        hashes["sha256"] = hash;
    }

    /// <summary>True if <c>hashes.sha256</c> is present and matches the recomputed content hash.</summary>
    public static bool VerifyContentHash(JsonObject pdu)
    {
        ArgumentNullException.ThrowIfNull(pdu);
        if (pdu["hashes"] is not JsonObject hashes
            || hashes["sha256"] is not JsonValue v
            || !v.TryGetValue(out string? claimed)
            || !UnpaddedBase64.TryDecode(claimed, out var claimedBytes))
        {
            return false;
        }
        byte[] actual;
        try
        {
            actual = ContentHashBytes(pdu);
        }
        catch (CanonicalJsonException)
        {
            return false;
        }
        return CryptographicOperations.FixedTimeEquals(actual, claimedBytes);
    }

    /// <summary>
    /// The reference hash ("Calculating the reference hash for an event"): SHA-256 of the
    /// canonical JSON of the redacted event without <c>signatures</c> and <c>unsigned</c>.
    /// For versions whose event id is this hash (v3+), a top-level <c>event_id</c> is not part of
    /// the event format, so it is ignored too: an id cannot cover itself.
    /// </summary>
    public static byte[] ReferenceHash(JsonObject pdu, RoomVersion version)
    {
        var redacted = Redaction.Redact(pdu, version);
        ReadOnlySpan<string> excluded = version.EventIdFormat == EventIdFormat.ServerGenerated
            ? ["signatures", "unsigned"]
            : ["signatures", "unsigned", "event_id"];
        return SHA256.HashData(CanonicalJson.SerializeToUtf8BytesExcluding(redacted, excluded));
    }

    /// <summary>
    /// "$" + the reference hash in unpadded Base64 (v3) or URL-safe unpadded Base64 (v4+)
    /// (rooms/v3.md "Event IDs", rooms/fragments/v4-event-ids.md).
    /// </summary>
    /// <exception cref="InvalidOperationException">v1 and v2, whose event ids are chosen by the origin server.</exception>
    public static string ComputeEventId(JsonObject pdu, RoomVersion version)
    {
        ArgumentNullException.ThrowIfNull(version);
        return version.EventIdFormat switch
        {
            EventIdFormat.ReferenceHashBase64 => "$" + UnpaddedBase64.Encode(ReferenceHash(pdu, version)),
            EventIdFormat.ReferenceHashUrlSafe => "$" + UnpaddedBase64.EncodeUrlSafe(ReferenceHash(pdu, version)),
            _ => throw new InvalidOperationException(
                $"Room version {version.Id} uses server-generated event ids, not reference hashes."),
        };
    }

    /// <summary>
    /// The ID of a PDU received from another server: its event_id in v1 and v2, else the reference hash; null when it
    /// has none (no string event_id, or not canonical JSON, so no hash).
    /// </summary>
    public static string? TryEventId(JsonObject pdu, RoomVersion version)
    {
        ArgumentNullException.ThrowIfNull(pdu);
        ArgumentNullException.ThrowIfNull(version);
        if (version.EventIdFormat == EventIdFormat.ServerGenerated)
            return pdu["event_id"] is JsonValue v && v.TryGetValue(out string? id) ? id : null;
        try { return ComputeEventId(pdu, version); }
        catch (CanonicalJsonException) { return null; }
    }

    /// <summary>
    /// The bytes a server signs for an event: canonical JSON of the redacted event without
    /// <c>signatures</c> and <c>unsigned</c> ("Adding hashes and signatures to outgoing events").
    /// </summary>
    public static byte[] SigningBytes(JsonObject pdu, RoomVersion version) =>
        JsonSigning.SigningBytes(Redaction.Redact(pdu, version));

    /// <summary>
    /// Adds the content hash, then signs the redacted event and stores the signature in
    /// <c>signatures[serverName][key.KeyId]</c> of <paramref name="pdu"/>.
    /// </summary>
    public static void HashAndSign(JsonObject pdu, RoomVersion version, string serverName, SigningKey key)
    {
        ArgumentNullException.ThrowIfNull(key);
        AddContentHash(pdu);
        JsonSigning.AddSignature(pdu, serverName, key.KeyId, key.SignBase64(SigningBytes(pdu, version)));
    }

    /// <summary>
    /// Checks <c>signatures[serverName][keyId]</c> against the redacted event, so it holds
    /// for both the full event and a redacted copy ("Validating hashes and signatures on received events").
    /// </summary>
    public static bool VerifySignature(JsonObject pdu, RoomVersion version, string serverName, string keyId, ReadOnlySpan<byte> publicKey)
    {
        return JsonSigning.Verify(Redaction.Redact(pdu, version), serverName, keyId, publicKey);
    }

    private static byte[] ContentHashBytes(JsonObject pdu)
    {
        ArgumentNullException.ThrowIfNull(pdu);
        return SHA256.HashData(CanonicalJson.SerializeToUtf8BytesExcluding(pdu, "unsigned", "signatures", "hashes"));
    }
}

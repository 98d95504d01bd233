using System.Text.Json.Nodes;
using Conduit.Common.Crypto;
using Conduit.Common.Events;
using Conduit.Rooms.Rules;

namespace Conduit.Rooms.Tests.Rules;

/// <summary>
/// The event signing cases of tests/vectors/spec-appendices/spec-test-vectors.json (Matrix spec v1.19 appendices),
/// enumerated from the file. The file's other sections are tested in Conduit.Common.Tests (SpecVectorTests).
/// </summary>
public class EventSigningVectorTests
{
    private static readonly Lazy<JsonObject> Vectors = new(() =>
    {
        string path = Path.Combine(AppContext.BaseDirectory, "vectors", "spec-appendices", "spec-test-vectors.json");
        return CanonicalJson.Parse(File.ReadAllText(path))!.AsObject();
    });

    private static JsonObject Signing => Vectors.Value["signing"]!.AsObject();

    public static IEnumerable<object[]> EventSigningCases() =>
        Signing["event_signing"]!.AsArray().Select(c => new object[] { (string)c!["input"]!, (string)c["expected"]! });

    [Theory]
    [MemberData(nameof(EventSigningCases))]
    public void Event_signing_and_hashing(string input, string expected)
    {
        // The spec's examples use the room version 1 event format and redaction rules
        // (the second one carries an event_id, which v1 keeps).
        var version = RoomVersion.V1;
        using var key = SpecKey();
        var pdu = CanonicalJson.Parse(input)!.AsObject();
        var expectedPdu = CanonicalJson.Parse(expected)!.AsObject();
        string expectedHash = (string)expectedPdu["hashes"]!["sha256"]!;

        Assert.Equal(expectedHash, EventHashing.ComputeContentHash(pdu));

        EventHashing.HashAndSign(pdu, version, ServerName, key);
        Assert.Equal(expectedHash, (string)pdu["hashes"]!["sha256"]!);
        Assert.Equal(SignatureIn(expectedPdu), SignatureIn(pdu));
        Assert.Equal(CanonicalJson.Serialize(expectedPdu), CanonicalJson.Serialize(pdu));

        // The signature covers the redacted event: it verifies on the full and the redacted form.
        Assert.True(EventHashing.VerifyContentHash(expectedPdu));
        Assert.True(EventHashing.VerifySignature(expectedPdu, version, ServerName, KeyId, PublicKey));
        var redacted = Redaction.Redact(expectedPdu, version);
        Assert.True(EventHashing.VerifySignature(redacted, version, ServerName, KeyId, PublicKey));
        Assert.Equal(key.SignBase64(EventHashing.SigningBytes(expectedPdu, version)), SignatureIn(expectedPdu));

        // Redaction drops "unsigned" and all content of non-special event types.
        Assert.False(redacted.ContainsKey("unsigned"));
        Assert.Equal("{}", CanonicalJson.Serialize(redacted["content"]));
        // Changing redactable content keeps the signature valid but breaks the content hash.
        var edited = (JsonObject)expectedPdu.DeepClone();
        edited["content"]!.AsObject()["body"] = "edited";
        Assert.False(EventHashing.VerifyContentHash(edited));
        Assert.True(EventHashing.VerifySignature(edited, version, ServerName, KeyId, PublicKey));
    }

    private static string ServerName => (string)Signing["server_name"]!;

    private static string KeyId => (string)Signing["key_id"]!;

    private static byte[] PublicKey => UnpaddedBase64.Decode((string)Signing["public_key_base64"]!);

    private static SigningKey SpecKey()
    {
        string keyId = KeyId;
        Assert.StartsWith("ed25519:", keyId);
        return SigningKey.FromSeed(UnpaddedBase64.Decode((string)Signing["seed_base64"]!), keyId["ed25519:".Length..]);
    }

    private static string? SignatureIn(JsonObject obj) => (string?)obj["signatures"]?[ServerName]?[KeyId];
}

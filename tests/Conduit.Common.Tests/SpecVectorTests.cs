using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common.Crypto;

namespace Conduit.Common.Tests;

/// <summary>
/// Data-driven tests over every case in tests/vectors/spec-appendices/spec-test-vectors.json
/// (Matrix spec v1.19 appendices). Cases are enumerated from the file, not listed here. The event signing cases
/// need the rooms service's event rules and run in Conduit.Rooms.Tests (EventSigningVectorTests).
/// </summary>
public class SpecVectorTests
{
    private static readonly Lazy<JsonObject> Vectors = new(() =>
    {
        string path = Path.Combine(AppContext.BaseDirectory, "vectors", "spec-appendices", "spec-test-vectors.json");
        return CanonicalJson.Parse(File.ReadAllText(path))!.AsObject();
    });

    private static JsonObject Signing => Vectors.Value["signing"]!.AsObject();

    private static IEnumerable<object[]> Pairs(JsonArray cases) =>
        cases.Select(c => new object[] { (string)c!["input"]!, (string)c["expected"]! });

    public static IEnumerable<object[]> UnpaddedBase64Cases() => Pairs(Vectors.Value["unpadded_base64"]!.AsArray());

    public static IEnumerable<object[]> CanonicalJsonCases()
    {
        foreach (var c in Pairs(Vectors.Value["canonical_json"]!.AsArray()))
        {
            yield return c;
        }
        // Non-list sections that hold a single canonical JSON case.
        foreach (var (name, section) in Vectors.Value)
        {
            if (section is JsonObject o && o.ContainsKey("expected_canonical"))
            {
                yield return [(string)o["input"]!, (string)o["expected_canonical"]!];
            }
        }
    }

    public static IEnumerable<object[]> JsonSigningCases() => Pairs(Signing["json_signing"]!.AsArray());

    public static IEnumerable<object[]> EventSigningCases() => Pairs(Signing["event_signing"]!.AsArray());

    [Fact]
    public void Vector_file_has_no_unhandled_sections()
    {
        // A new section in the vector file must get a test, not be silently skipped.
        var handled = new HashSet<string> { "source", "canonical_json", "unpadded_base64", "signing" };
        foreach (var (name, section) in Vectors.Value)
        {
            bool singleCanonicalCase = section is JsonObject o && o.ContainsKey("expected_canonical");
            Assert.True(handled.Contains(name) || singleCanonicalCase, $"Unhandled vector section '{name}'");
        }
        var handledSigning = new HashSet<string> { "seed_base64", "server_name", "key_id", "public_key_base64", "json_signing", "event_signing" };
        foreach (var (name, _) in Signing)
        {
            Assert.Contains(name, handledSigning);
        }
        // The .md next to the vectors counts 21 input/output pairs.
        int pairs = UnpaddedBase64Cases().Count() + Vectors.Value["canonical_json"]!.AsArray().Count
            + JsonSigningCases().Count() + EventSigningCases().Count();
        Assert.Equal(21, pairs);
    }

    [Theory]
    [MemberData(nameof(UnpaddedBase64Cases))]
    public void Unpadded_base64(string input, string expected)
    {
        byte[] raw = Encoding.UTF8.GetBytes(input);
        Assert.Equal(expected, UnpaddedBase64.Encode(raw));
        Assert.Equal(raw, UnpaddedBase64.Decode(expected));
        // Padded input is accepted too.
        Assert.Equal(raw, UnpaddedBase64.Decode(Convert.ToBase64String(raw)));
    }

    [Theory]
    [MemberData(nameof(CanonicalJsonCases))]
    public void Canonical_json(string input, string expected)
    {
        Assert.Equal(expected, CanonicalJson.Serialize(CanonicalJson.Parse(input)));
        Assert.Equal(Encoding.UTF8.GetBytes(expected), CanonicalJson.SerializeToUtf8Bytes(CanonicalJson.Parse(input)));
        // Canonical JSON is a fixed point.
        Assert.Equal(expected, CanonicalJson.Serialize(CanonicalJson.Parse(expected)));
    }

    [Fact]
    public void Signing_key_from_spec_seed_has_spec_public_key()
    {
        using var key = SpecKey();
        Assert.Equal((string)Signing["key_id"]!, key.KeyId);
        Assert.Equal((string)Signing["public_key_base64"]!, key.PublicKeyBase64);
        Assert.Equal(UnpaddedBase64.Decode((string)Signing["seed_base64"]!), key.ExportSeed());
    }

    [Theory]
    [MemberData(nameof(JsonSigningCases))]
    public void Json_signing(string input, string expected)
    {
        using var key = SpecKey();
        var obj = CanonicalJson.Parse(input)!.AsObject();
        JsonSigning.Sign(obj, ServerName, key);

        var expectedObj = CanonicalJson.Parse(expected)!.AsObject();
        Assert.Equal(SignatureIn(expectedObj), SignatureIn(obj));
        Assert.Equal(CanonicalJson.Serialize(expectedObj), CanonicalJson.Serialize(obj));
        Assert.True(JsonSigning.Verify(expectedObj, ServerName, KeyId, PublicKey));

        // Any change to signed data breaks the signature; "unsigned" is not covered.
        var tampered = (JsonObject)expectedObj.DeepClone();
        tampered["extra"] = 1;
        Assert.False(JsonSigning.Verify(tampered, ServerName, KeyId, PublicKey));
        var withUnsigned = (JsonObject)expectedObj.DeepClone();
        withUnsigned["unsigned"] = new JsonObject { ["age_ts"] = 5 };
        Assert.True(JsonSigning.Verify(withUnsigned, ServerName, KeyId, PublicKey));
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

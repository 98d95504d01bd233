using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common.Crypto;

namespace Conduit.Common.Tests;

public class UnpaddedBase64Tests
{
    [Fact]
    public void Url_safe_encoding_uses_minus_and_underscore()
    {
        byte[] data = [0xfb, 0xff, 0xbf];
        Assert.Equal("+/+/", UnpaddedBase64.Encode(data));
        Assert.Equal("-_-_", UnpaddedBase64.EncodeUrlSafe(data));
        Assert.Equal("_w", UnpaddedBase64.EncodeUrlSafe([0xff]));
    }

    [Theory]
    [InlineData("+/+/")]
    [InlineData("-_-_")]
    [InlineData("-/+_")]
    public void Decodes_either_alphabet(string s) => Assert.Equal(new byte[] { 0xfb, 0xff, 0xbf }, UnpaddedBase64.Decode(s));

    [Theory]
    [InlineData("Zg", "f")]
    [InlineData("Zg==", "f")]
    [InlineData("Zm8", "fo")]
    [InlineData("Zm8=", "fo")]
    [InlineData("", "")]
    public void Decodes_padded_and_unpadded(string s, string expected) =>
        Assert.Equal(Encoding.UTF8.GetBytes(expected), UnpaddedBase64.Decode(s));

    [Theory]
    [InlineData("Z")]
    [InlineData("Zg===")]
    [InlineData("Z g")]
    [InlineData("Zm9v!")]
    [InlineData("=")]
    [InlineData("Zg=a")]
    [InlineData("Zg=")]
    [InlineData("Zm9v=")]
    public void Rejects_invalid_input(string s)
    {
        Assert.False(UnpaddedBase64.TryDecode(s, out _));
        Assert.Throws<FormatException>(() => UnpaddedBase64.Decode(s));
    }
}

public class SigningKeyTests
{
    [Fact]
    public void Generated_key_round_trips_through_its_seed()
    {
        using var key = SigningKey.Generate("a_1");
        Assert.Equal("ed25519:a_1", key.KeyId);
        byte[] seed = key.ExportSeed();
        Assert.Equal(32, seed.Length);
        using var again = SigningKey.FromSeed(seed, "a_1");
        Assert.Equal(key.PublicKeyBase64, again.PublicKeyBase64);
        Assert.Equal(43, key.PublicKeyBase64.Length);

        byte[] data = "hello"u8.ToArray();
        byte[] sig = UnpaddedBase64.Decode(key.SignBase64(data));
        Assert.Equal(64, sig.Length);
        Assert.True(SigningKey.Verify(key.PublicKey, data, sig));
        Assert.False(SigningKey.Verify(key.PublicKey, "hellO"u8, sig));
        sig[0] ^= 1;
        Assert.False(SigningKey.Verify(key.PublicKey, data, sig));
        Assert.False(SigningKey.Verify(key.PublicKey.AsSpan(1), data, sig));
    }

    [Fact]
    public void Rejects_bad_seed_and_version()
    {
        Assert.Throws<ArgumentException>(() => SigningKey.FromSeed(new byte[31], "1"));
        Assert.Throws<ArgumentException>(() => SigningKey.Generate("a:b"));
        Assert.ThrowsAny<ArgumentException>(() => SigningKey.Generate(""));
    }
}

public class JsonSigningTests
{
    [Fact]
    public void Sign_keeps_other_signatures_and_unsigned()
    {
        using var k1 = SigningKey.Generate("1");
        using var k2 = SigningKey.Generate("2");
        var obj = new JsonObject
        {
            ["b"] = 1,
            ["unsigned"] = new JsonObject { ["age"] = 3 },
            ["signatures"] = new JsonObject { ["other.example"] = new JsonObject { ["ed25519:x"] = "abc" } },
        };
        JsonSigning.Sign(obj, "example.org", k1);
        JsonSigning.Sign(obj, "example.org", k2);

        Assert.Equal("abc", (string)obj["signatures"]!["other.example"]!["ed25519:x"]!);
        Assert.Equal(3, (int)obj["unsigned"]!["age"]!);
        Assert.True(JsonSigning.Verify(obj, "example.org", "ed25519:1", k1.PublicKey));
        Assert.True(JsonSigning.Verify(obj, "example.org", "ed25519:2", k2.PublicKey));
        Assert.False(JsonSigning.Verify(obj, "example.org", "ed25519:2", k1.PublicKey));
        Assert.False(JsonSigning.Verify(obj, "other.example", "ed25519:x", k1.PublicKey));
        Assert.False(JsonSigning.Verify(obj, "missing.example", "ed25519:1", k1.PublicKey));
        Assert.Equal("{\"b\":1}", Encoding.UTF8.GetString(JsonSigning.SigningBytes(obj)));
    }

    [Fact]
    public void Verify_returns_false_for_non_canonical_content()
    {
        using var key = SigningKey.Generate("1");
        var obj = new JsonObject { ["a"] = 1 };
        JsonSigning.Sign(obj, "s", key);
        obj["a"] = 1.5;
        Assert.False(JsonSigning.Verify(obj, "s", "ed25519:1", key.PublicKey));
    }
}

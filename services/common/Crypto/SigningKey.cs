using NSec.Cryptography;

namespace Conduit.Common.Crypto;

/// <summary>
/// An Ed25519 signing key with its Matrix key id ("ed25519:" + version),
/// see spec appendices "Signing Details" and "Cryptographic key representation".
/// </summary>
public sealed class SigningKey : IDisposable
{
    public const string Algorithm = "ed25519";
    public const int SeedSize = 32;
    public const int PublicKeySize = 32;
    public const int SignatureSize = 64;

    private static readonly SignatureAlgorithm Ed25519 = SignatureAlgorithm.Ed25519;

    private readonly Key _key;

    private SigningKey(Key key, string version)
    {
        _key = key;
        Version = version;
        KeyId = Algorithm + ":" + version;
        PublicKey = key.PublicKey.Export(KeyBlobFormat.RawPublicKey);
        PublicKeyBase64 = UnpaddedBase64.Encode(PublicKey);
    }

    /// <summary>The key version, i.e. the part of the key id after "ed25519:".</summary>
    public string Version { get; }

    /// <summary>"ed25519:" + version.</summary>
    public string KeyId { get; }

    /// <summary>The raw 32-byte public key.</summary>
    public byte[] PublicKey { get; }

    /// <summary>The public key as unpadded Base64.</summary>
    public string PublicKeyBase64 { get; }

    public static SigningKey Generate(string version)
    {
        ValidateVersion(version);
        var key = Key.Create(Ed25519, new KeyCreationParameters { ExportPolicy = KeyExportPolicies.AllowPlaintextExport });
        return new SigningKey(key, version);
    }

    public static SigningKey FromSeed(ReadOnlySpan<byte> seed32, string version)
    {
        ValidateVersion(version);
        if (seed32.Length != SeedSize)
        {
            throw new ArgumentException($"An Ed25519 seed is {SeedSize} bytes, got {seed32.Length}.", nameof(seed32));
        }
        var key = Key.Import(Ed25519, seed32, KeyBlobFormat.RawPrivateKey,
            new KeyCreationParameters { ExportPolicy = KeyExportPolicies.AllowPlaintextExport });
        return new SigningKey(key, version);
    }

    /// <summary>The 32-byte private seed; handle with care.</summary>
    public byte[] ExportSeed() => _key.Export(KeyBlobFormat.RawPrivateKey);

    public byte[] Sign(ReadOnlySpan<byte> data) => Ed25519.Sign(_key, data);

    public string SignBase64(ReadOnlySpan<byte> data) => UnpaddedBase64.Encode(Sign(data));

    /// <summary>Verifies an Ed25519 signature; returns false for malformed keys or signatures.</summary>
    public static bool Verify(ReadOnlySpan<byte> publicKey, ReadOnlySpan<byte> data, ReadOnlySpan<byte> signature)
    {
        if (publicKey.Length != PublicKeySize || signature.Length != SignatureSize)
        {
            return false;
        }
        if (!NSec.Cryptography.PublicKey.TryImport(Ed25519, publicKey, KeyBlobFormat.RawPublicKey, out var pk) || pk is null)
        {
            return false;
        }
        return Ed25519.Verify(pk, data, signature);
    }

    public void Dispose() => _key.Dispose();

    private static void ValidateVersion(string version)
    {
        ArgumentException.ThrowIfNullOrEmpty(version);
        // Key versions match [a-zA-Z0-9_] (server-server API, "Retrieving server keys", verify_keys).
        foreach (char c in version)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c == '_'))
            {
                throw new ArgumentException($"Invalid key version '{version}'.", nameof(version));
            }
        }
    }
}

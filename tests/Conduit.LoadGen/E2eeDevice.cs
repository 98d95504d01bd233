using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Conduit.Common.Crypto;

namespace Conduit.LoadGen;

/// <summary>
/// A registered device with its own Ed25519 key, making what a client's crypto stack uploads: device keys signed by
/// that key (the server checks the self-signature) and one-time or fallback key objects signed the same way.
/// </summary>
internal sealed class E2eeDevice(User user) : IDisposable
{
    public const string OneTimeAlgorithm = "signed_curve25519";

    public User User { get; } = user;

    /// <summary>The device's Ed25519 key, named ed25519:DEVICE_ID.</summary>
    public SigningKey Ed { get; } = SigningKey.Generate(user.DeviceId);

    /// <summary>A random 32-byte key in unpadded Base64, as a Curve25519 public key looks.</summary>
    public static string RandomKey() => UnpaddedBase64.Encode(RandomNumberGenerator.GetBytes(32));

    public JsonObject DeviceKeys()
    {
        var o = new JsonObject
        {
            ["user_id"] = User.UserId,
            ["device_id"] = User.DeviceId,
            ["algorithms"] = new JsonArray("m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"),
            ["keys"] = new JsonObject
            {
                [$"curve25519:{User.DeviceId}"] = RandomKey(),
                [$"ed25519:{User.DeviceId}"] = Ed.PublicKeyBase64,
            },
        };
        JsonSigning.Sign(o, User.UserId, Ed);
        return o;
    }

    /// <summary>A one-time (or, with <paramref name="fallback"/>, fallback) key object signed by the device key.</summary>
    public JsonObject SignedKey(string key, bool fallback = false)
    {
        var o = new JsonObject { ["key"] = key };
        if (fallback) o["fallback"] = true;
        JsonSigning.Sign(o, User.UserId, Ed);
        return o;
    }

    /// <summary>POST /keys/upload as this device.</summary>
    public Task<ApiResult> UploadAsync(MatrixApi api, JsonObject body, CancellationToken ct) =>
        api.CallWithRetryAsync("keys/upload", HttpMethod.Post, "_matrix/client/v3/keys/upload", body, User.Token,
            TimeSpan.FromSeconds(60), ct);

    public void Dispose() => Ed.Dispose();
}

using System.Security.Cryptography;
using Conduit.Common.Crypto;
using NSec.Cryptography;

namespace Conduit.Keys;

/// <summary>
/// Argon2id (memory-hard) password hashes in the PHC string format, so hashes stay readable by other tools.
/// Parameters follow OWASP's minimum for Argon2id: 19 MiB, 2 passes, 1 lane.
/// </summary>
public static class PasswordHasher
{
    const int MemoryKiB = 19 * 1024, Passes = 2, HashBytes = 32, SaltBytes = 16;

    static PasswordBasedKeyDerivationAlgorithm Algorithm(int memoryKiB, int passes)
        => PasswordBasedKeyDerivationAlgorithm.Argon2id(new Argon2Parameters
        {
            DegreeOfParallelism = 1,
            MemorySize = memoryKiB,
            NumberOfPasses = passes,
        });

    public static string Hash(string password)
    {
        var salt = RandomNumberGenerator.GetBytes(SaltBytes);
        var hash = Algorithm(MemoryKiB, Passes).DeriveBytes(password, salt, HashBytes);
        return $"$argon2id$v=19$m={MemoryKiB},t={Passes},p=1${UnpaddedBase64.Encode(salt)}${UnpaddedBase64.Encode(hash)}";
    }

    public static bool Verify(string password, string phc)
    {
        var parts = phc.Split('$');
        // "", "argon2id", "v=19", "m=..,t=..,p=..", salt, hash
        if (parts.Length != 6 || parts[1] != "argon2id") return false;
        int m = 0, t = 0;
        foreach (var kv in parts[3].Split(','))
        {
            if (kv.StartsWith("m=", StringComparison.Ordinal)) m = int.Parse(kv[2..]);
            else if (kv.StartsWith("t=", StringComparison.Ordinal)) t = int.Parse(kv[2..]);
        }
        var salt = UnpaddedBase64.Decode(parts[4]);
        var expected = UnpaddedBase64.Decode(parts[5]);
        var actual = Algorithm(m, t).DeriveBytes(password, salt, expected.Length);
        return CryptographicOperations.FixedTimeEquals(actual, expected);
    }
}

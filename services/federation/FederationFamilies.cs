using Conduit.Common.Storage;

namespace Conduit.Federation;

/// <summary>The federation service's column families.</summary>
public static class FederationFamilies
{
    public const string ServerKeys = "federation_server_keys";

    public static readonly ColumnFamily[] All =
    [
        new(ServerKeys, "\"signing_key\"", "key version (UTF-8) 0xFF 32-byte Ed25519 seed: generated once, then kept"),
    ];
}

using System.Text.Json.Serialization;
using Tomlyn.Serialization;

namespace Conduit.Common.Config;

/// <summary>conduit.toml, with Conduit's keys and meanings so that a Conduit user's file just works.</summary>
public sealed class ConfigFile
{
    public GlobalConfig Global { get; set; } = new();

    [TomlExtensionData]
    public Dictionary<string, object?>? Unknown { get; set; }
}

public sealed class GlobalConfig
{
    public string ServerName { get; set; } = "localhost";
    public string DatabasePath { get; set; } = "conduit_db";
    /// <summary>"rocksdb" (default) or "sqlite".</summary>
    public string DatabaseBackend { get; set; } = "rocksdb";
    /// <summary>
    /// Bytes of native memory RocksDB may use: its block cache with the memtables charged to it (see
    /// <see cref="Storage.StoreOptions.CacheCapacity"/>). Per database: in split mode each service process has its own.
    /// </summary>
    public long CacheCapacity { get; set; } = Storage.StoreOptions.DefaultCacheCapacity;
    public string Address { get; set; } = "127.0.0.1";
    public int Port { get; set; } = 6167;
    public long MaxRequestSize { get; set; } = 20_000_000;
    public int MaxConcurrentRequests { get; set; } = 100;
    public bool AllowRegistration { get; set; }
    public string? RegistrationToken { get; set; }
    public bool AllowFederation { get; set; } = true;
    public List<string> TrustedServers { get; set; } = ["matrix.org"];
    /// <summary>Log filter: a level ("warn", "debug") or per area ("info,Conduit.Rooms=debug").</summary>
    public string Log { get; set; } = "warn";
    public string DefaultRoomVersion { get; set; } = "11";
    public List<string> TurnUris { get; set; } = [];
    public string? TurnSecret { get; set; }
    public string? TurnUsername { get; set; }
    public string? TurnPassword { get; set; }
    public long TurnTtl { get; set; } = 86400;
    public WellKnownConfig WellKnown { get; set; } = new();
    public TlsConfig? Tls { get; set; }
    /// <summary>Split mode: where each part listens and the secret they share.</summary>
    public ServicesConfig Services { get; set; } = new();

    [TomlExtensionData]
    public Dictionary<string, object?>? Unknown { get; set; }
}

public sealed class WellKnownConfig
{
    public string? Client { get; set; }
    public string? Server { get; set; }

    [TomlExtensionData]
    public Dictionary<string, object?>? Unknown { get; set; }
}

public sealed class TlsConfig
{
    public string? Certs { get; set; }
    public string? Key { get; set; }

    [TomlExtensionData]
    public Dictionary<string, object?>? Unknown { get; set; }
}

/// <summary>
/// [global.services]: the address of each service's internal listener (HTTP/2 cleartext, gRPC and the Matrix
/// paths the edge forwards) and the shared secret every internal request carries. Unused all-in-one.
/// </summary>
public sealed class ServicesConfig
{
    public string? InternalSecret { get; set; }
    public string Keys { get; set; } = "http://127.0.0.1:6171";
    public string Rooms { get; set; } = "http://127.0.0.1:6172";
    public string Sync { get; set; } = "http://127.0.0.1:6173";
    public string Federation { get; set; } = "http://127.0.0.1:6174";
    public string Media { get; set; } = "http://127.0.0.1:6175";

    [TomlExtensionData]
    public Dictionary<string, object?>? Unknown { get; set; }

    public string AddressOf(Routing.Service s) => s switch
    {
        Routing.Service.Keys => Keys,
        Routing.Service.Rooms => Rooms,
        Routing.Service.Sync => Sync,
        Routing.Service.Federation => Federation,
        Routing.Service.Media => Media,
        _ => throw new ArgumentOutOfRangeException(nameof(s)),
    };
}

[TomlSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower)]
[TomlSerializable(typeof(ConfigFile))]
[TomlSerializable(typeof(Tomlyn.Model.TomlTable))]
internal partial class ConfigTomlContext : TomlSerializerContext;

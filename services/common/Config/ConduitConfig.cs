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
    /// <summary>Synapse's key: registration (when allow_registration is on) needs a registration token, either
    /// <see cref="RegistrationToken"/> or one an admin made with the admin API (/_synapse/admin/v1/registration_tokens).
    /// Setting <see cref="RegistrationToken"/> implies it.</summary>
    public bool RegistrationRequiresToken { get; set; }
    /// <summary>Synapse's key: when set, POST /_synapse/admin/v1/register (register_new_matrix_user and deployment tools)
    /// creates accounts for whoever proves they know it (an HMAC-SHA1 keyed with it), even with registration off.</summary>
    public string? RegistrationSharedSecret { get; set; }

    /// <summary>Whether registration (allow_registration on) asks for a registration token.</summary>
    public bool RegistrationNeedsToken() => RegistrationRequiresToken || RegistrationToken is { Length: > 0 };
    /// <summary>POST /register?kind=guest (conduwuit's key; Synapse's allow_guest_access): guest accounts, which may
    /// call only the spec's guest endpoints and join rooms whose m.room.guest_access is can_join. Off by default.</summary>
    public bool AllowGuestRegistration { get; set; }
    /// <summary>Milliseconds an access token lives when the client asked for a refresh token at /login or /register
    /// (Synapse's refreshable_access_token_lifetime, default 5 minutes). Clients that do not ask get tokens that never
    /// expire.</summary>
    public long RefreshableAccessTokenLifetimeMs { get; set; } = 300_000;
    /// <summary>Local users who are always server admins (the admin API, GET /admin/whois of any user), besides the
    /// accounts whose record has the admin flag (the first account registered on the server, and those the admin API
    /// made admins). Nobody by default.</summary>
    public List<string> Admins { get; set; } = [];
    /// <summary>Synapse's key: application service registration files (YAML: id, url, as_token, hs_token,
    /// sender_localpart, namespaces). Relative paths are from the working directory. Read and checked at start.</summary>
    public List<string> AppServiceConfigFiles { get; set; } = [];

    // Immutable lists, each swapped whole: readers on any thread see the old set or the new one, never a mix.
    volatile IReadOnlyList<Appservices.AppserviceRegistration> _fileAppservices = [];
    volatile IReadOnlyList<Appservices.AppserviceRegistration> _appservices = [];
    /// <summary>
    /// Every registered application service: those read from <see cref="AppServiceConfigFiles"/>, then those an admin
    /// registered at runtime (the keys service keeps them; other processes follow it). Call it at use time: the set
    /// changes while the server runs. (Methods, so the TOML model ignores them.)
    /// </summary>
    public IReadOnlyList<Appservices.AppserviceRegistration> Appservices() => _appservices;
    /// <summary>Only the registrations read from the config files (these cannot be replaced or removed at runtime).</summary>
    public IReadOnlyList<Appservices.AppserviceRegistration> FileAppservices() => _fileAppservices;
    /// <summary>The config files' registrations (at load); the runtime ones are dropped until set again.</summary>
    public void SetAppservices(IReadOnlyList<Appservices.AppserviceRegistration> list)
    {
        _fileAppservices = list.ToArray();
        _appservices = _fileAppservices;
    }
    /// <summary>The registrations made at runtime, after the config files' ones; replaces the previous runtime set.</summary>
    public void SetRuntimeAppservices(IEnumerable<Appservices.AppserviceRegistration> runtime)
        => _appservices = [.. _fileAppservices, .. runtime];
    public bool AllowFederation { get; set; } = true;
    public List<string> TrustedServers { get; set; } = ["matrix.org"];
    /// <summary>A PEM file of CA certificates trusted for outgoing federation besides the system's (private or
    /// test deployments). Certificates are always validated; there is no switch that turns that off.</summary>
    public string? FederationCaFile { get; set; }
    /// <summary>Log filter: a level ("warn", "debug") or per area ("info,Conduit.Rooms=debug").</summary>
    public string Log { get; set; } = "warn";
    /// <summary>Console log lines: "text" (one line each, the default) or "json" (one JSON object per line, for log
    /// collectors).</summary>
    public string LogFormat { get; set; } = "text";
    /// <summary>[global.metrics]: Prometheus metrics on a listener of their own (off by default).</summary>
    public MetricsConfig Metrics { get; set; } = new();
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
    /// <summary>
    /// Reverse proxies (IP addresses or CIDR ranges) whose X-Forwarded-For the edge believes; empty: the client is
    /// the connection's peer.
    /// </summary>
    public List<string> TrustedProxies { get; set; } = [];
    public RateLimitsConfig RateLimits { get; set; } = new();
    public BackupConfig Backup { get; set; } = new();
    /// <summary>POST /_matrix/client/v1/login/get_token (Synapse's login_via_existing_session): a signed-in device
    /// gets a short-lived token another device logs in with (QR sign-in). Off by default, as in Synapse.</summary>
    public LoginViaExistingSessionConfig LoginViaExistingSession { get; set; } = new();
    /// <summary>Presence (services/sync/README.md): off, PUT/GET /presence answer 403, set_presence is ignored and
    /// /sync carries no presence.</summary>
    public bool AllowPresence { get; set; } = true;

    // ---- media (services/media/README.md). The largest upload is max_request_size, as in Conduit.
    /// <summary>Serve the unauthenticated /_matrix/media/{v3,r0}/download, thumbnail, config and preview_url paths
    /// (deprecated since spec v1.11; bridges and older clients still use them).</summary>
    public bool AllowLegacyMedia { get; set; } = true;
    /// <summary>Images with more pixels than this (width × height, read from the header) are never decoded (Synapse's max_image_pixels).</summary>
    public long MaxImagePixels { get; set; } = 32_000_000;
    /// <summary>Media IDs created by POST /_matrix/media/v1/create that may wait for their upload at once, per user (Synapse's max_pending_media_uploads).</summary>
    public int MaxPendingMediaUploads { get; set; } = 5;
    /// <summary>Seconds a created media ID waits for its upload before it expires (the spec's recommended 24 hours).</summary>
    public long MediaUnusedExpirationSecs { get; set; } = 86400;
    /// <summary>Days a cached copy of another server's media is kept after its last access (Synapse's
    /// media_retention.remote_media_lifetime); 0, the default: kept forever. Checked hourly.</summary>
    public long MediaRetentionDays { get; set; }
    /// <summary>Days local uploads are kept after their last access (Synapse's media_retention.local_media_lifetime);
    /// 0, the default: kept forever. Deleted IDs are never reused and answer 404.</summary>
    public long MediaRetentionLocalDays { get; set; }
    /// <summary>GET /_matrix/client/v1/media/preview_url: off unless turned on.</summary>
    public bool UrlPreview { get; set; }
    /// <summary>Domains previews may fetch (a domain also covers its subdomains); empty: any domain not denied.</summary>
    public List<string> UrlPreviewDomainAllowlist { get; set; } = [];
    /// <summary>Domains (and their subdomains) previews never fetch.</summary>
    public List<string> UrlPreviewDomainDenylist { get; set; } = [];
    /// <summary>Address ranges (CIDR) previews never connect to, checked on the resolved address of every connection,
    /// redirects included. The default is Synapse's documented list: loopback, private, link-local, CGNAT, multicast,
    /// documentation and benchmarking ranges. 0.0.0.0 and :: are always refused.</summary>
    public List<string> UrlPreviewIpRangeDenylist { get; set; } = [.. DefaultUrlPreviewIpRangeDenylist];
    /// <summary>Ranges exempt from the deny list (to preview an intranet site, say).</summary>
    public List<string> UrlPreviewIpRangeAllowlist { get; set; } = [];
    /// <summary>Bytes of a page (or an image) a preview reads at most (Synapse's max_spider_size).</summary>
    public long UrlPreviewMaxSpiderSize { get; set; } = 10_000_000;

    /// <summary>Address ranges (CIDR) the server's other outbound requests (push gateways, identity servers' key_validity_url) never connect to, checked on
    /// the resolved address of every connection (Conduit's ip_range_denylist; Synapse's ip_range_blacklist). The default
    /// is the same list as url_preview_ip_range_denylist.</summary>
    public List<string> IpRangeDenylist { get; set; } = [.. DefaultUrlPreviewIpRangeDenylist];
    /// <summary>Ranges exempt from ip_range_denylist (a push gateway on the local network, say).</summary>
    public List<string> IpRangeAllowlist { get; set; } = [];

    public static readonly string[] DefaultUrlPreviewIpRangeDenylist =
    [
        "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "192.0.0.0/24", "169.254.0.0/16",
        "192.88.99.0/24", "198.18.0.0/15", "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4",
        "::1/128", "fe80::/10", "fc00::/7", "2001:db8::/32", "ff00::/8", "fec0::/10",
    ];

    [TomlExtensionData]
    public Dictionary<string, object?>? Unknown { get; set; }
}

public sealed class LoginViaExistingSessionConfig
{
    public bool Enabled { get; set; }
    /// <summary>Whether getting a token asks for the password again (user-interactive auth).</summary>
    public bool RequireUiAuth { get; set; } = true;
    /// <summary>Seconds a token stays usable (Synapse: 5 minutes).</summary>
    public long TokenTimeoutSecs { get; set; } = 300;

    [TomlExtensionData]
    public Dictionary<string, object?>? Unknown { get; set; }
}

public sealed class WellKnownConfig
{
    public string? Client { get; set; }
    public string? Server { get; set; }
    /// <summary>/.well-known/matrix/support (conduwuit's keys): a page, and one contact (a Matrix ID and/or an email
    /// address) with its role.</summary>
    public string? SupportPage { get; set; }
    public string? SupportMxid { get; set; }
    public string? SupportEmail { get; set; }
    public string SupportRole { get; set; } = "m.role.admin";

    [TomlExtensionData]
    public Dictionary<string, object?>? Unknown { get; set; }
}

/// <summary>
/// [global.backup]: online backups (`conduit backup`): each is a folder that is itself a database_path (the database
/// copied while in use, media hard-linked), named by its time (and role, split), under <see cref="Path"/>.
/// </summary>
public sealed class BackupConfig
{
    /// <summary>Where backups go; default database_path/backups. Best on the same file system (hard links, no copying).</summary>
    public string? Path { get; set; }
    /// <summary>How many backups are kept (of each process, split); older ones are deleted once a new one is complete. 0: all.</summary>
    public int Keep { get; set; } = 3;

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
/// [global.metrics] (Synapse's enable_metrics with a "metrics" listener): GET /metrics in the Prometheus text format on a
/// listener of its own, never on the public one. Every process of a split deployment serves its own, reading the same
/// keys: on one machine give each part its own port (CONDUIT_METRICS__PORT), or port 0 and read the port from its
/// startup summary. Off: no instrument is listened to, so nothing is collected.
/// </summary>
public sealed class MetricsConfig
{
    public bool Enabled { get; set; }
    /// <summary>Loopback by default: metrics are for the operator's scraper, not for the world.</summary>
    public string Address { get; set; } = "127.0.0.1";
    public int Port { get; set; } = 9090;

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

/// <summary>
/// [global.rate_limits], named after Synapse's rc_* options: a leaky bucket per action that fills by one per
/// action and drains at per_second, refusing (429 M_LIMIT_EXCEEDED) an action that would overflow burst_count.
/// A limit left out, or a key of one left out, takes its default (see <c>Conduit.Common.Http.RateLimits</c>);
/// enabled = false turns every limit off.
/// </summary>
public sealed class RateLimitsConfig
{
    public bool Enabled { get; set; } = true;
    /// <summary>rc_message: events sent (send, state, redact), per user.</summary>
    public RateLimitConfig Message { get; set; } = new();
    /// <summary>rc_registration: accounts created, per client IP.</summary>
    public RateLimitConfig Registration { get; set; } = new();
    /// <summary>rc_room_creation: rooms created (createRoom, upgrade), per user.</summary>
    public RateLimitConfig RoomCreation { get; set; } = new();
    public LoginRateLimitsConfig Login { get; set; } = new();
    public JoinRateLimitsConfig Joins { get; set; } = new();
    public InviteRateLimitsConfig Invites { get; set; } = new();
    /// <summary>rc_media_create: media IDs created with POST /_matrix/media/v1/create, per user.</summary>
    public RateLimitConfig MediaCreate { get; set; } = new();
    /// <summary>rc_registration_token_validity: GET /register/m.login.registration_token/validity, per client IP.</summary>
    public RateLimitConfig RegistrationTokenValidity { get; set; } = new();

    [TomlExtensionData]
    public Dictionary<string, object?>? Unknown { get; set; }

    /// <summary>Every limit with its key under global.rate_limits ("login.address").</summary>
    public IEnumerable<(string Key, RateLimitConfig Limit)> Each() =>
    [
        ("message", Message), ("registration", Registration), ("room_creation", RoomCreation),
        ("login.address", Login.Address), ("login.account", Login.Account), ("login.failed_attempts", Login.FailedAttempts),
        ("joins.local", Joins.Local),
        ("invites.per_room", Invites.PerRoom), ("invites.per_user", Invites.PerUser), ("invites.per_issuer", Invites.PerIssuer),
        ("media_create", MediaCreate), ("registration_token_validity", RegistrationTokenValidity),
    ];
}

/// <summary>rc_login.</summary>
public sealed class LoginRateLimitsConfig
{
    /// <summary>Every login attempt, per client IP.</summary>
    public RateLimitConfig Address { get; set; } = new();
    /// <summary>Successful logins, per account.</summary>
    public RateLimitConfig Account { get; set; } = new();
    /// <summary>Wrong passwords (login and user-interactive auth), per account.</summary>
    public RateLimitConfig FailedAttempts { get; set; } = new();

    [TomlExtensionData]
    public Dictionary<string, object?>? Unknown { get; set; }
}

/// <summary>rc_joins (joins over federation do not exist yet, so there is no "remote").</summary>
public sealed class JoinRateLimitsConfig
{
    /// <summary>Joins and knocks, per user.</summary>
    public RateLimitConfig Local { get; set; } = new();

    [TomlExtensionData]
    public Dictionary<string, object?>? Unknown { get; set; }
}

/// <summary>rc_invites.</summary>
public sealed class InviteRateLimitsConfig
{
    /// <summary>Invites into a room.</summary>
    public RateLimitConfig PerRoom { get; set; } = new();
    /// <summary>Invites received, per invited user.</summary>
    public RateLimitConfig PerUser { get; set; } = new();
    /// <summary>Invites sent, per inviting user.</summary>
    public RateLimitConfig PerIssuer { get; set; } = new();

    [TomlExtensionData]
    public Dictionary<string, object?>? Unknown { get; set; }
}

/// <summary>One limit; a key left out takes the action's default.</summary>
public sealed class RateLimitConfig
{
    public double? PerSecond { get; set; }
    public double? BurstCount { get; set; }

    [TomlExtensionData]
    public Dictionary<string, object?>? Unknown { get; set; }
}

[TomlSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower)]
[TomlSerializable(typeof(ConfigFile))]
[TomlSerializable(typeof(Tomlyn.Model.TomlTable))]
internal partial class ConfigTomlContext : TomlSerializerContext;

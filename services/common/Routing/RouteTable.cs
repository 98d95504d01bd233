using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Conduit.Common.Routing;

/// <summary>The parts of the deployment. The edge owns /versions, /.well-known and CORS.</summary>
public enum Service { Edge, Keys, Rooms, Sync, Federation, Media }

/// <summary>
/// One Matrix path template owned by one service. <see cref="GuestMethods"/>: the methods a guest account may call
/// (spec: client-server-api, "Guest access"), and when <see cref="GuestActions"/> is set, only with those values of
/// the path's {action}. The edge refuses a guest anything else (M_GUEST_ACCESS_FORBIDDEN), whichever service owns it.
/// </summary>
public sealed record MatrixRoute(Service Owner, string Template, params string[] Methods)
{
    /// <summary>The template with its prefix spelled out ("/_matrix/client/{version}/sync"): the route label of the
    /// request metrics, one per route whatever the version the client used.</summary>
    public string Label { get; } = Template.Replace("{C}", "/_matrix/client/{version}", StringComparison.Ordinal).Replace("{M}", "/_matrix/media/{version}", StringComparison.Ordinal);

    public IReadOnlyList<string> GuestMethods { get; private set; } = [];
    public IReadOnlyList<string>? GuestActions { get; private set; }

    internal MatrixRoute ForGuests(string[] methods, string[]? actions = null)
    {
        GuestMethods = methods;
        GuestActions = actions;
        return this;
    }

    /// <summary>Whether a guest may make this request (its method, and the {action} it matched, if any).</summary>
    public bool AllowsGuest(string method, string? action)
        => GuestMethods.Contains(method, StringComparer.OrdinalIgnoreCase) && (GuestActions is null || (action is not null && GuestActions.Contains(action)));
}

/// <summary>Endpoint metadata naming the service that maps an endpoint (checked against the table by a test).</summary>
public sealed record OwnedBy(Service Service);

/// <summary>
/// The one table of which service owns which Matrix path. In split mode the edge loads it into YARP; in
/// all-in-one mode each service maps exactly these templates in-process through <see cref="Map"/>.
/// Client paths are served under v3 and under r0 (Conduit's docs and Hydrogen still use r0).
/// Guests (spec: client-server-api, "Guest access") may call the routes marked <c>ForGuests</c>: the spec's list, and
/// the paths that need no access token at all (a guest's token there only names who asks).
/// </summary>
public static class RouteTable
{
    public static readonly string[] ClientPrefixes = ["/_matrix/client/v3", "/_matrix/client/r0"];
    /// <summary>The content repository's own prefixes: upload and create stay here; the rest are the legacy paths.</summary>
    public static readonly string[] MediaPrefixes = ["/_matrix/media/v3", "/_matrix/media/r0"];

    static readonly List<MatrixRoute> Routes = [];
    public static IReadOnlyList<MatrixRoute> All => Routes;

    static MatrixRoute Add(Service s, string template, params string[] methods)
    {
        var r = new MatrixRoute(s, template, methods);
        Routes.Add(r);
        return r;
    }

    // Client paths are written with "{C}" for the versioned prefix, content repository paths with "{M}".
    static MatrixRoute C(Service s, string path, params string[] methods) => Add(s, "{C}" + path, methods);
    static MatrixRoute M(string path, params string[] methods) => Add(Service.Media, "{M}" + path, methods);

    const string GET = "GET", PUT = "PUT", POST = "POST", DELETE = "DELETE";
    static readonly string[] Get = [GET];

    // ---- edge
    public static readonly MatrixRoute Versions = Add(Service.Edge, "/_matrix/client/versions", GET).ForGuests(Get);
    public static readonly MatrixRoute WellKnownClient = Add(Service.Edge, "/.well-known/matrix/client", GET).ForGuests(Get);
    public static readonly MatrixRoute WellKnownServer = Add(Service.Edge, "/.well-known/matrix/server", GET).ForGuests(Get);
    public static readonly MatrixRoute WellKnownSupport = Add(Service.Edge, "/.well-known/matrix/support", GET).ForGuests(Get);
    // Not Matrix: for load balancers and container health checks (Conduit, conduwuit and Synapse answer "OK" here).
    public static readonly MatrixRoute Health = Add(Service.Edge, Http.Health.Path, GET).ForGuests(Get);
    // Conduit's own admin API (admins only; the admin room's server commands): each concerns every process of the
    // deployment, so the edge asks them all (DeploymentOps).
    public const string ConduitAdmin = "/_conduit/admin";
    public static readonly MatrixRoute AdminServerMemory = Add(Service.Edge, ConduitAdmin + "/v1/server/memory", GET);
    public static readonly MatrixRoute AdminServerClearCaches = Add(Service.Edge, ConduitAdmin + "/v1/server/clear_caches", POST);
    public static readonly MatrixRoute AdminServerBackup = Add(Service.Edge, ConduitAdmin + "/v1/server/backup", POST);
    public static readonly MatrixRoute AdminServerConfig = Add(Service.Edge, ConduitAdmin + "/v1/server/config", GET);
    // Not in the spec's guest list, but only configuration, and clients fetch it at start (Synapse lets guests).
    public static readonly MatrixRoute Capabilities = C(Service.Edge, "/capabilities", GET).ForGuests(Get);
    public static readonly MatrixRoute TurnServer = C(Service.Edge, "/voip/turnServer", GET);

    // ---- keys: accounts, devices, tokens, profiles, key backups
    public static readonly MatrixRoute Register = C(Service.Keys, "/register", POST).ForGuests([POST]); // a guest upgrades its account here
    public static readonly MatrixRoute RegisterAvailable = C(Service.Keys, "/register/available", GET).ForGuests(Get);
    public static readonly MatrixRoute Login = C(Service.Keys, "/login", GET, POST).ForGuests([GET, POST]);
    public static readonly MatrixRoute LoginGetToken = Add(Service.Keys, "/_matrix/client/v1/login/get_token", POST);
    // Authenticated by the refresh token in the body: the edge reads no access token here (an expired one is usual).
    // v1 too: Synapse before 1.72 served it only there, and matrix-js-sdk falls back to it.
    public static readonly MatrixRoute Refresh = C(Service.Keys, "/refresh", POST).ForGuests([POST]);
    public static readonly MatrixRoute RefreshV1 = Add(Service.Keys, "/_matrix/client/v1/refresh", POST).ForGuests([POST]);
    public static readonly MatrixRoute Logout = C(Service.Keys, "/logout", POST);
    public static readonly MatrixRoute LogoutAll = C(Service.Keys, "/logout/all", POST);
    public static readonly MatrixRoute WhoAmI = C(Service.Keys, "/account/whoami", GET).ForGuests(Get);
    public static readonly MatrixRoute ChangePassword = C(Service.Keys, "/account/password", POST);
    public static readonly MatrixRoute Deactivate = C(Service.Keys, "/account/deactivate", POST);
    public static readonly MatrixRoute ThreePids = C(Service.Keys, "/account/3pid", GET);
    public static readonly MatrixRoute ThreePidAdd = C(Service.Keys, "/account/3pid/{action:oneof(add|bind)}", POST);
    public static readonly MatrixRoute ThreePidRemove = C(Service.Keys, "/account/3pid/{action:oneof(delete|unbind)}", POST);
    const string Medium = "{medium:oneof(email|msisdn)}";
    public static readonly MatrixRoute RegisterRequestToken = C(Service.Keys, "/register/" + Medium + "/requestToken", POST);
    public static readonly MatrixRoute PasswordRequestToken = C(Service.Keys, "/account/password/" + Medium + "/requestToken", POST);
    public static readonly MatrixRoute ThreePidRequestToken = C(Service.Keys, "/account/3pid/" + Medium + "/requestToken", POST);
    public static readonly MatrixRoute OpenIdRequestToken = C(Service.Keys, "/user/{userId}/openid/request_token", POST);
    // Authenticated by the OpenID token itself, not by X-Matrix: the keys service, which owns tokens, answers it.
    public static readonly MatrixRoute OpenIdUserInfo = Add(Service.Keys, "/_matrix/federation/v1/openid/userinfo", GET);
    public static readonly MatrixRoute AdminWhois = C(Service.Keys, "/admin/whois/{userId}", GET);
    // Application services (spec: application-service-api, "Pinging"): the as_token's own appservice only.
    public static readonly MatrixRoute AppservicePing = Add(Service.Keys, "/_matrix/client/v1/appservice/{appserviceId}/ping", POST);
    // No access token; rate limited per address (spec: "Token-authenticated registration").
    public static readonly MatrixRoute RegistrationTokenValidity = Add(Service.Keys, "/_matrix/client/v1/register/m.login.registration_token/validity", GET).ForGuests(Get);

    // ---- keys: Synapse's admin API (a subset: users and registration tokens), for server admins only. The edge
    // authenticates these paths as client paths (an access token; a guest's is refused).
    const string SynapseAdmin = "/_synapse/admin";
    public static readonly MatrixRoute AdminServerVersion = Add(Service.Keys, SynapseAdmin + "/v1/server_version", GET);
    public static readonly MatrixRoute AdminUsers = Add(Service.Keys, SynapseAdmin + "/v2/users", GET);
    public static readonly MatrixRoute AdminUser = Add(Service.Keys, SynapseAdmin + "/v2/users/{userId}", GET, PUT);
    public static readonly MatrixRoute AdminUserAdmin = Add(Service.Keys, SynapseAdmin + "/v1/users/{userId}/admin", GET, PUT);
    public static readonly MatrixRoute AdminDeactivate = Add(Service.Keys, SynapseAdmin + "/v1/deactivate/{userId}", POST);
    public static readonly MatrixRoute AdminResetPassword = Add(Service.Keys, SynapseAdmin + "/v1/reset_password/{userId}", POST);
    public static readonly MatrixRoute AdminWhoisSynapse = Add(Service.Keys, SynapseAdmin + "/v1/whois/{userId}", GET);
    public static readonly MatrixRoute AdminRegistrationTokens = Add(Service.Keys, SynapseAdmin + "/v1/registration_tokens", GET);
    public static readonly MatrixRoute AdminRegistrationTokenNew = Add(Service.Keys, SynapseAdmin + "/v1/registration_tokens/new", POST);
    public static readonly MatrixRoute AdminRegistrationToken = Add(Service.Keys, SynapseAdmin + "/v1/registration_tokens/{token}", GET, PUT, DELETE);
    // Shared-secret registration (register_new_matrix_user): no access token; the HMAC with registration_shared_secret authenticates.
    public static readonly MatrixRoute AdminRegister = Add(Service.Keys, SynapseAdmin + "/v1/register", GET, POST);
    public static readonly MatrixRoute AdminRooms = Add(Service.Rooms, SynapseAdmin + "/v1/rooms", GET);
    public static readonly MatrixRoute AdminRoom = Add(Service.Rooms, SynapseAdmin + "/v1/rooms/{roomId}", GET);
    public static readonly MatrixRoute AdminRoomMembers = Add(Service.Rooms, SynapseAdmin + "/v1/rooms/{roomId}/members", GET);
    public static readonly MatrixRoute AdminRoomState = Add(Service.Rooms, SynapseAdmin + "/v1/rooms/{roomId}/state", GET);
    public static readonly MatrixRoute AdminRoomBlock = Add(Service.Rooms, SynapseAdmin + "/v1/rooms/{roomId}/block", GET, PUT);
    public static readonly MatrixRoute AdminRoomDelete = Add(Service.Rooms, SynapseAdmin + "/v2/rooms/{roomId}", DELETE);
    public static readonly MatrixRoute AdminRoomDeleteStatus = Add(Service.Rooms, SynapseAdmin + "/v2/rooms/{roomId}/delete_status", GET);
    public static readonly MatrixRoute AdminDeleteStatus = Add(Service.Rooms, SynapseAdmin + "/v2/rooms/delete_status/{deleteId}", GET);
    public static readonly MatrixRoute AdminPurgeHistory = Add(Service.Rooms, SynapseAdmin + "/v1/purge_history/{roomId}", POST);
    public static readonly MatrixRoute AdminPurgeHistoryToEvent = Add(Service.Rooms, SynapseAdmin + "/v1/purge_history/{roomId}/{eventId}", POST);
    public static readonly MatrixRoute AdminPurgeHistoryStatus = Add(Service.Rooms, SynapseAdmin + "/v1/purge_history_status/{purgeId}", GET);
    public static readonly MatrixRoute AdminEventReports = Add(Service.Rooms, SynapseAdmin + "/v1/event_reports", GET);
    public static readonly MatrixRoute AdminEventReport = Add(Service.Rooms, SynapseAdmin + "/v1/event_reports/{reportId}", GET, DELETE);
    public static readonly MatrixRoute AdminRoomReports = Add(Service.Rooms, SynapseAdmin + "/v1/room_reports", GET);
    public static readonly MatrixRoute AdminRoomReport = Add(Service.Rooms, SynapseAdmin + "/v1/room_reports/{reportId}", GET, DELETE);
    public static readonly MatrixRoute AdminUserReports = Add(Service.Rooms, SynapseAdmin + "/v1/user_reports", GET);
    public static readonly MatrixRoute AdminUserReport = Add(Service.Rooms, SynapseAdmin + "/v1/user_reports/{reportId}", GET, DELETE);
    public static readonly MatrixRoute AdminFetchEvent = Add(Service.Rooms, SynapseAdmin + "/v1/fetch_event/{eventId}", GET);
    // Synapse's federation admin API ("Federation API"): the outbound queue's destinations and their backoff.
    public static readonly MatrixRoute AdminDestinations = Add(Service.Federation, SynapseAdmin + "/v1/federation/destinations", GET);
    public static readonly MatrixRoute AdminDestination = Add(Service.Federation, SynapseAdmin + "/v1/federation/destinations/{destination}", GET);
    public static readonly MatrixRoute AdminDestinationReset = Add(Service.Federation, SynapseAdmin + "/v1/federation/destinations/{destination}/reset_connection", POST);

    // ---- Conduit's own admin API (admins only): what Conduit's admin room commands do, as endpoints
    public static readonly MatrixRoute AdminAuthChain = Add(Service.Rooms, ConduitAdmin + "/v1/events/{eventId}/auth_chain", GET);
    public static readonly MatrixRoute AdminRoomFederation = Add(Service.Rooms, ConduitAdmin + "/v1/rooms/{roomId}/federation", GET, PUT);
    public static readonly MatrixRoute AdminSignJson = Add(Service.Federation, ConduitAdmin + "/v1/sign_json", POST);
    public static readonly MatrixRoute AdminVerifyJson = Add(Service.Federation, ConduitAdmin + "/v1/verify_json", POST);
    // Application services: the registered ones (config files and runtime), and registering at runtime (keys owns tokens).
    public static readonly MatrixRoute AdminAppservices = Add(Service.Keys, ConduitAdmin + "/v1/appservices", GET, POST);
    public static readonly MatrixRoute AdminAppservice = Add(Service.Keys, ConduitAdmin + "/v1/appservices/{appserviceId}", GET, DELETE);
    public static readonly MatrixRoute Devices = C(Service.Keys, "/devices", GET).ForGuests(Get);
    public static readonly MatrixRoute Device = C(Service.Keys, "/devices/{deviceId}", GET, PUT, DELETE).ForGuests([GET, PUT]);
    public static readonly MatrixRoute DeleteDevices = C(Service.Keys, "/delete_devices", POST);
    public static readonly MatrixRoute Profile = C(Service.Keys, "/profile/{userId}", GET).ForGuests(Get);
    // A guest may change its display name only: the keys service refuses it the other fields.
    public static readonly MatrixRoute ProfileField = C(Service.Keys, "/profile/{userId}/{field}", GET, PUT, DELETE).ForGuests([GET, PUT, DELETE]);
    public static readonly MatrixRoute RoomKeysVersion = C(Service.Keys, "/room_keys/version", GET, POST);
    public static readonly MatrixRoute RoomKeysVersionById = C(Service.Keys, "/room_keys/version/{version}", GET, PUT, DELETE);
    public static readonly MatrixRoute RoomKeys = C(Service.Keys, "/room_keys/keys", GET, PUT, DELETE);
    public static readonly MatrixRoute RoomKeysRoom = C(Service.Keys, "/room_keys/keys/{roomId}", GET, PUT, DELETE);
    public static readonly MatrixRoute RoomKeysSession = C(Service.Keys, "/room_keys/keys/{roomId}/{sessionId}", GET, PUT, DELETE);

    // ---- keys: end-to-end encryption (device keys, one-time keys, to-device, cross-signing, dehydrated devices)
    public static readonly MatrixRoute KeysUpload = C(Service.Keys, "/keys/upload", POST).ForGuests([POST]);
    public static readonly MatrixRoute KeysQuery = C(Service.Keys, "/keys/query", POST).ForGuests([POST]);
    public static readonly MatrixRoute KeysClaim = C(Service.Keys, "/keys/claim", POST).ForGuests([POST]);
    public static readonly MatrixRoute KeysChanges = C(Service.Keys, "/keys/changes", GET);
    public static readonly MatrixRoute DeviceSigningUpload = C(Service.Keys, "/keys/device_signing/upload", POST);
    public static readonly MatrixRoute SignaturesUpload = C(Service.Keys, "/keys/signatures/upload", POST);
    public static readonly MatrixRoute SendToDevice = C(Service.Keys, "/sendToDevice/{eventType}/{txnId}", PUT).ForGuests([PUT]);
    const string Msc3814 = "/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device";
    public static readonly MatrixRoute DehydratedDevice = Add(Service.Keys, Msc3814, GET, PUT, DELETE);
    public static readonly MatrixRoute DehydratedDeviceEvents = Add(Service.Keys, Msc3814 + "/{deviceId}/events", POST);

    // ---- rooms: rooms, events, state, membership, aliases
    public static readonly MatrixRoute CreateRoom = C(Service.Rooms, "/createRoom", POST);
    // The spec lists /rooms/{roomId}/join; clients join by alias here (matrix-js-sdk's joinRoom), and Synapse lets guests.
    public static readonly MatrixRoute JoinByIdOrAlias = C(Service.Rooms, "/join/{roomIdOrAlias}", POST).ForGuests([POST]);
    public static readonly MatrixRoute Membership = C(Service.Rooms, "/rooms/{roomId}/{action:oneof(join|invite|leave|kick|ban|unban|forget)}", POST).ForGuests([POST], ["join", "leave"]);
    public static readonly MatrixRoute JoinedRooms = C(Service.Rooms, "/joined_rooms", GET);
    public static readonly MatrixRoute Send = C(Service.Rooms, "/rooms/{roomId}/send/{eventType}/{txnId}", PUT).ForGuests([PUT]);
    public static readonly MatrixRoute StateEvent = C(Service.Rooms, "/rooms/{roomId}/state/{eventType}/{**stateKey}", GET, PUT).ForGuests([GET, PUT]);
    public static readonly MatrixRoute StateEventNoKey = C(Service.Rooms, "/rooms/{roomId}/state/{eventType}", GET, PUT).ForGuests([GET, PUT]);
    public static readonly MatrixRoute State = C(Service.Rooms, "/rooms/{roomId}/state", GET).ForGuests(Get);
    public static readonly MatrixRoute Event = C(Service.Rooms, "/rooms/{roomId}/event/{eventId}", GET).ForGuests(Get);
    public static readonly MatrixRoute Context = C(Service.Rooms, "/rooms/{roomId}/context/{eventId}", GET).ForGuests(Get);
    public static readonly MatrixRoute Search = C(Service.Rooms, "/search", POST);
    public static readonly MatrixRoute Messages = C(Service.Rooms, "/rooms/{roomId}/messages", GET).ForGuests(Get);
    public static readonly MatrixRoute Members = C(Service.Rooms, "/rooms/{roomId}/members", GET).ForGuests(Get);
    public static readonly MatrixRoute JoinedMembers = C(Service.Rooms, "/rooms/{roomId}/joined_members", GET);
    public static readonly MatrixRoute Redact = C(Service.Rooms, "/rooms/{roomId}/redact/{eventId}/{txnId}", PUT);
    public static readonly MatrixRoute Alias = C(Service.Rooms, "/directory/room/{roomAlias}", GET, PUT, DELETE).ForGuests(Get);
    public static readonly MatrixRoute RoomAliases = C(Service.Rooms, "/rooms/{roomId}/aliases", GET);
    public static readonly MatrixRoute Knock = C(Service.Rooms, "/knock/{roomIdOrAlias}", POST);
    public static readonly MatrixRoute Upgrade = C(Service.Rooms, "/rooms/{roomId}/upgrade", POST);
    public static readonly MatrixRoute PublicRooms = C(Service.Rooms, "/publicRooms", GET, POST).ForGuests(Get);
    public static readonly MatrixRoute DirectoryListRoom = C(Service.Rooms, "/directory/list/room/{roomId}", GET, PUT);
    // Application services (spec: application-service-api, "Published room directories"): their as_token only.
    public static readonly MatrixRoute DirectoryListAppservice = C(Service.Rooms, "/directory/list/appservice/{networkId}/{roomId}", PUT, DELETE);
    // Third-party lookups (spec: "Third-party Networks"), asked of the application services; beside the directory,
    // whose network lists their instance IDs name.
    public static readonly MatrixRoute ThirdPartyProtocols = C(Service.Rooms, "/thirdparty/protocols", GET);
    public static readonly MatrixRoute ThirdPartyProtocol = C(Service.Rooms, "/thirdparty/protocol/{protocol}", GET);
    public static readonly MatrixRoute ThirdPartyLocations = C(Service.Rooms, "/thirdparty/location/{protocol}", GET);
    public static readonly MatrixRoute ThirdPartyUsers = C(Service.Rooms, "/thirdparty/user/{protocol}", GET);
    public static readonly MatrixRoute ThirdPartyLocationByAlias = C(Service.Rooms, "/thirdparty/location", GET);
    public static readonly MatrixRoute ThirdPartyUserById = C(Service.Rooms, "/thirdparty/user", GET);
    public static readonly MatrixRoute SpaceHierarchy = Add(Service.Rooms, "/_matrix/client/v1/rooms/{roomId}/hierarchy", GET);
    public static readonly MatrixRoute RoomSummary = Add(Service.Rooms, "/_matrix/client/v1/room_summary/{roomIdOrAlias}", GET).ForGuests(Get);
    public static readonly MatrixRoute MutualRooms = Add(Service.Rooms, "/_matrix/client/v1/mutual_rooms", GET);
    public static readonly MatrixRoute MutualRoomsUnstable = Add(Service.Rooms, "/_matrix/client/unstable/uk.half-shot.msc2666/user/mutual_rooms", GET);
    public static readonly MatrixRoute ReportRoom = C(Service.Rooms, "/rooms/{roomId}/report", POST);
    public static readonly MatrixRoute ReportEvent = C(Service.Rooms, "/rooms/{roomId}/report/{eventId}", POST);
    public static readonly MatrixRoute ReportUser = C(Service.Rooms, "/users/{userId}/report", POST);
    public static readonly MatrixRoute TimestampToEvent = Add(Service.Rooms, "/_matrix/client/v1/rooms/{roomId}/timestamp_to_event", GET);
    public static readonly MatrixRoute Relations = Add(Service.Rooms, "/_matrix/client/v1/rooms/{roomId}/relations/{eventId}", GET);
    public static readonly MatrixRoute RelationsOfType = Add(Service.Rooms, "/_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}", GET);
    public static readonly MatrixRoute RelationsOfTypes = Add(Service.Rooms, "/_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}", GET);
    public static readonly MatrixRoute Threads = Add(Service.Rooms, "/_matrix/client/v1/rooms/{roomId}/threads", GET);
    public static readonly MatrixRoute UserDirectorySearch = C(Service.Rooms, "/user_directory/search", POST);

    // ---- sync: /sync, filters, account data, push rules, receipts, read markers, typing, presence
    public static readonly MatrixRoute Sync = C(Service.Sync, "/sync", GET).ForGuests(Get);
    // Simplified sliding sync (MSC4186), under the unstable prefix Synapse and Element X use.
    public static readonly MatrixRoute SlidingSync = Add(Service.Sync, "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync", POST);
    public static readonly MatrixRoute CreateFilter = C(Service.Sync, "/user/{userId}/filter", POST);
    public static readonly MatrixRoute GetFilter = C(Service.Sync, "/user/{userId}/filter/{filterId}", GET);
    public static readonly MatrixRoute AccountData = C(Service.Sync, "/user/{userId}/account_data/{type}", GET, PUT);
    public static readonly MatrixRoute RoomAccountData = C(Service.Sync, "/user/{userId}/rooms/{roomId}/account_data/{type}", GET, PUT);
    public static readonly MatrixRoute PushRules = C(Service.Sync, "/pushrules/{**rest}", GET, PUT, DELETE);
    public static readonly MatrixRoute RoomTags = C(Service.Sync, "/user/{userId}/rooms/{roomId}/tags", GET);
    public static readonly MatrixRoute RoomTag = C(Service.Sync, "/user/{userId}/rooms/{roomId}/tags/{tag}", PUT, DELETE);
    public static readonly MatrixRoute Receipt = C(Service.Sync, "/rooms/{roomId}/receipt/{receiptType}/{eventId}", POST);
    public static readonly MatrixRoute ReadMarkers = C(Service.Sync, "/rooms/{roomId}/read_markers", POST);
    public static readonly MatrixRoute Typing = C(Service.Sync, "/rooms/{roomId}/typing/{userId}", PUT);
    public static readonly MatrixRoute PresenceStatus = C(Service.Sync, "/presence/{userId}/status", GET, PUT);
    public static readonly MatrixRoute Pushers = C(Service.Sync, "/pushers", GET);
    public static readonly MatrixRoute SetPusher = C(Service.Sync, "/pushers/set", POST);
    public static readonly MatrixRoute Notifications = C(Service.Sync, "/notifications", GET);

    // ---- federation: server keys and the federation API
    public static readonly MatrixRoute ServerKeys = Add(Service.Federation, "/_matrix/key/v2/server/{**keyId}", GET);
    public static readonly MatrixRoute FederationVersion = Add(Service.Federation, "/_matrix/federation/v1/version", GET);
    public static readonly MatrixRoute KeyQuery = Add(Service.Federation, "/_matrix/key/v2/query/{serverName}", GET);
    public static readonly MatrixRoute KeyQueryBatch = Add(Service.Federation, "/_matrix/key/v2/query", POST);
    const string F1 = "/_matrix/federation/v1", F2 = "/_matrix/federation/v2";
    static MatrixRoute F(string path, params string[] methods) => Add(Service.Federation, path, methods);
    public static readonly MatrixRoute FedSend = F(F1 + "/send/{txnId}", PUT);
    public static readonly MatrixRoute FedMakeJoin = F(F1 + "/make_join/{roomId}/{userId}", GET);
    public static readonly MatrixRoute FedSendJoin = F(F2 + "/send_join/{roomId}/{eventId}", PUT);
    public static readonly MatrixRoute FedMakeLeave = F(F1 + "/make_leave/{roomId}/{userId}", GET);
    public static readonly MatrixRoute FedSendLeave = F(F2 + "/send_leave/{roomId}/{eventId}", PUT);
    public static readonly MatrixRoute FedMakeKnock = F(F1 + "/make_knock/{roomId}/{userId}", GET);
    public static readonly MatrixRoute FedSendKnock = F(F1 + "/send_knock/{roomId}/{eventId}", PUT);
    public static readonly MatrixRoute FedInvite = F(F2 + "/invite/{roomId}/{eventId}", PUT);
    public static readonly MatrixRoute FedEvent = F(F1 + "/event/{eventId}", GET);
    public static readonly MatrixRoute FedState = F(F1 + "/state/{roomId}", GET);
    public static readonly MatrixRoute FedStateIds = F(F1 + "/state_ids/{roomId}", GET);
    public static readonly MatrixRoute FedEventAuth = F(F1 + "/event_auth/{roomId}/{eventId}", GET);
    public static readonly MatrixRoute FedBackfill = F(F1 + "/backfill/{roomId}", GET);
    public static readonly MatrixRoute FedMissingEvents = F(F1 + "/get_missing_events/{roomId}", POST);
    public static readonly MatrixRoute FedTimestampToEvent = F(F1 + "/timestamp_to_event/{roomId}", GET);
    public static readonly MatrixRoute FedQueryDirectory = F(F1 + "/query/directory", GET);
    public static readonly MatrixRoute FedQueryProfile = F(F1 + "/query/profile", GET);
    public static readonly MatrixRoute FedPublicRooms = F(F1 + "/publicRooms", GET, POST);
    public static readonly MatrixRoute FedHierarchy = F(F1 + "/hierarchy/{roomId}", GET);
    public static readonly MatrixRoute FedUserDevices = F(F1 + "/user/devices/{userId}", GET);
    public static readonly MatrixRoute FedUserKeysQuery = F(F1 + "/user/keys/query", POST);
    public static readonly MatrixRoute FedUserKeysClaim = F(F1 + "/user/keys/claim", POST);
    public static readonly MatrixRoute FedExchangeThirdPartyInvite = F(F1 + "/exchange_third_party_invite/{roomId}", PUT);
    // From an identity server, not signed. The spec says PUT; Sydent sends POST (and Synapse serves that), so both.
    public static readonly MatrixRoute FedThirdPartyOnBind = F(F1 + "/3pid/onbind", PUT, POST);
    // Our media for other servers: the media service answers (the federation service checks the signature).
    public static readonly MatrixRoute FedMediaDownload = Add(Service.Media, F1 + "/media/download/{mediaId}", GET);
    public static readonly MatrixRoute FedMediaThumbnail = Add(Service.Media, F1 + "/media/thumbnail/{mediaId}", GET);

    // ---- media: uploads, downloads, thumbnails, URL previews (the authenticated paths of spec v1.11, and the legacy ones)
    const string AuthedMedia = "/_matrix/client/v1/media";
    public static readonly MatrixRoute MediaUpload = M("/upload", POST);
    public static readonly MatrixRoute MediaUploadTo = M("/upload/{serverName}/{mediaId}", PUT);
    public static readonly MatrixRoute MediaCreate = Add(Service.Media, "/_matrix/media/v1/create", POST);
    public static readonly MatrixRoute MediaConfig = Add(Service.Media, AuthedMedia + "/config", GET);
    public static readonly MatrixRoute MediaDownload = Add(Service.Media, AuthedMedia + "/download/{serverName}/{mediaId}", GET).ForGuests(Get);
    public static readonly MatrixRoute MediaDownloadNamed = Add(Service.Media, AuthedMedia + "/download/{serverName}/{mediaId}/{fileName}", GET).ForGuests(Get);
    public static readonly MatrixRoute MediaThumbnail = Add(Service.Media, AuthedMedia + "/thumbnail/{serverName}/{mediaId}", GET).ForGuests(Get);
    public static readonly MatrixRoute MediaPreviewUrl = Add(Service.Media, AuthedMedia + "/preview_url", GET);
    public static readonly MatrixRoute LegacyMediaConfig = M("/config", GET).ForGuests(Get);
    public static readonly MatrixRoute LegacyMediaDownload = M("/download/{serverName}/{mediaId}", GET).ForGuests(Get);
    public static readonly MatrixRoute LegacyMediaDownloadNamed = M("/download/{serverName}/{mediaId}/{fileName}", GET).ForGuests(Get);
    public static readonly MatrixRoute LegacyMediaThumbnail = M("/thumbnail/{serverName}/{mediaId}", GET).ForGuests(Get);
    public static readonly MatrixRoute LegacyMediaPreviewUrl = M("/preview_url", GET);

    // ---- media: Synapse's admin API for media (element-hq.github.io/synapse, "Media Admin API", "Statistics"); admins only
    public static readonly MatrixRoute AdminPurgeMediaCache = Add(Service.Media, SynapseAdmin + "/v1/purge_media_cache", POST);
    public static readonly MatrixRoute AdminDeleteMediaBefore = Add(Service.Media, SynapseAdmin + "/v1/media/delete", POST);
    public static readonly MatrixRoute AdminDeleteMedia = Add(Service.Media, SynapseAdmin + "/v1/media/{serverName}/{mediaId}", DELETE);
    public static readonly MatrixRoute AdminQuarantineMedia = Add(Service.Media, SynapseAdmin + "/v1/media/quarantine/{serverName}/{mediaId}", POST);
    public static readonly MatrixRoute AdminUserMedia = Add(Service.Media, SynapseAdmin + "/v1/users/{userId}/media", GET, DELETE);
    public static readonly MatrixRoute AdminUserMediaStatistics = Add(Service.Media, SynapseAdmin + "/v1/statistics/users/media", GET);

    /// <summary>Concrete path templates of a route (client routes expanded for v3 and r0, media routes likewise).</summary>
    public static IEnumerable<string> Templates(MatrixRoute r)
        => r.Template.StartsWith("{C}", StringComparison.Ordinal) ? ClientPrefixes.Select(p => p + r.Template[3..])
            : r.Template.StartsWith("{M}", StringComparison.Ordinal) ? MediaPrefixes.Select(p => p + r.Template[3..])
            : [r.Template];

    /// <summary>Maps a route's templates to one handler, tagged with its owner.</summary>
    public static void Map(this IEndpointRouteBuilder app, MatrixRoute route, RequestDelegate handler)
    {
        foreach (var t in Templates(route))
            app.MapMethods(t, route.Methods, handler).WithMetadata(new OwnedBy(route.Owner), route);
    }
}

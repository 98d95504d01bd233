using Conduit.Common.Storage;
using K = Conduit.Common.Storage.Keys;

namespace Conduit.Keys;

/// <summary>
/// The keys service's key-value families and their key layouts (0xFF separates UTF-8 parts; "pos" is a keys-stream
/// position, 8-byte big-endian so keys sort by it), with the builders of their keys beside them.
/// services/keys/README.md shows the same table; a test checks it against <see cref="All"/>.
/// </summary>
public static class KeysFamilies
{
    public const string Users = "keys_users";
    public const string Devices = "keys_devices";
    public const string Tokens = "keys_tokens";
    public const string RefreshTokens = "keys_refresh_tokens";
    /// <summary>Registration tokens made with the admin API (<see cref="Keys.RegistrationTokens"/>).</summary>
    public const string RegistrationTokens = "keys_registration_tokens";

    // ---- E2EE (services/keys/E2ee)
    public const string Counters = "keys_counters";
    public static readonly byte[] StreamCounterKey = K.Utf8("stream");

    public const string DeviceKeys = "keys_device_keys";
    public static byte[] DeviceKeysKey(string userId, string deviceId) => K.Join(userId, deviceId);
    public static byte[] DeviceKeysPrefix(string userId) => K.Prefix(userId);

    public const string OneTimeKeys = "keys_one_time_keys";
    public static byte[] OneTimeKeyKey(string userId, string deviceId, string algorithm, long pos, string keyId)
        => K.Concat(K.Prefix(userId, deviceId, algorithm), K.BigEndian((ulong)pos), K.Utf8(keyId));
    public static byte[] OneTimeKeysPrefix(string userId, string deviceId, string algorithm) => K.Prefix(userId, deviceId, algorithm);
    public static byte[] OneTimeKeysPrefix(string userId, string deviceId) => K.Prefix(userId, deviceId);

    public const string OneTimeKeyIds = "keys_one_time_key_ids";
    public static byte[] OneTimeKeyIdKey(string userId, string deviceId, string algorithmAndId) => K.Join(userId, deviceId, algorithmAndId);
    public static byte[] OneTimeKeyIdsPrefix(string userId, string deviceId) => K.Prefix(userId, deviceId);

    public const string FallbackKeys = "keys_fallback_keys";
    public static byte[] FallbackKeyKey(string userId, string deviceId, string algorithm) => K.Join(userId, deviceId, algorithm);
    public static byte[] FallbackKeysPrefix(string userId, string deviceId) => K.Prefix(userId, deviceId);

    public const string ToDevice = "keys_to_device";
    public static byte[] ToDeviceKey(string userId, string deviceId, long pos) => K.Concat(K.Prefix(userId, deviceId), K.BigEndian((ulong)pos));
    public static byte[] ToDevicePrefix(string userId, string deviceId) => K.Prefix(userId, deviceId);

    public const string ToDeviceTxns = "keys_to_device_txns";
    public static byte[] ToDeviceTxnKey(string userId, string deviceId, string txnId) => K.Join(userId, deviceId, txnId);
    public static byte[] ToDeviceTxnsPrefix(string userId, string deviceId) => K.Prefix(userId, deviceId);

    public const string DeviceListLog = "keys_device_list_log";
    public static byte[] DeviceListLogKey(long pos) => K.BigEndian((ulong)pos);

    public const string DeviceListPos = "keys_device_list_pos";
    public static byte[] DeviceListPosKey(string userId) => K.Utf8(userId);

    public const string CrossSigning = "keys_cross_signing";
    public static byte[] CrossSigningKey(string userId, string usage) => K.Join(userId, usage);
    public static byte[] CrossSigningPrefix(string userId) => K.Prefix(userId);

    public const string Signatures = "keys_signatures";
    public static byte[] SignatureKey(string targetUser, string targetKeyId, string signer, string signerKeyId) => K.Join(targetUser, targetKeyId, signer, signerKeyId);
    public static byte[] SignaturesPrefix(string targetUser, string targetKeyId) => K.Prefix(targetUser, targetKeyId);
    public static byte[] SignaturesPrefix(string targetUser) => K.Prefix(targetUser);

    /// <summary>The last keys-stream position whose device-list changes went out to other servers (in <see cref="Counters"/>).</summary>
    public static readonly byte[] DeviceListsSentKey = K.Utf8("device_lists_sent");

    public const string DeviceListsSent = "keys_device_lists_sent";
    public static byte[] DeviceListsSentUserKey(string userId) => K.Utf8(userId);

    public const string RemoteDevices = "keys_remote_devices";
    public static byte[] RemoteDevicesKey(string userId) => K.Utf8(userId);

    public const string OpenIdTokens = "keys_openid_tokens";
    public static byte[] OpenIdTokenKey(string token) => K.Utf8(token);

    /// <summary>Application services registered at runtime (<see cref="AppserviceRegistry"/>).</summary>
    public const string Appservices = "keys_appservices";

    public const string Dehydrated = "keys_dehydrated_devices";
    public static byte[] DehydratedKey(string userId) => K.Utf8(userId);

    // Server-side key backups (spec: client-server-api, "Server-side key backups"). A version is a per-user number,
    // 8 bytes big-endian so a user's versions sort and the latest is found by one reverse seek. The 8 bytes may hold
    // 0xFF; they are fixed-width, so the separator after them still delimits the parts.
    public const string BackupVersions = "keys_backup_versions";
    static readonly ColumnFamily BackupVersionsFamily = new(BackupVersions, "user_id 0xFF version (8-byte big-endian)",
        "JSON {algorithm, auth_data, etag, count} (etag: a counter raised by every change to the version's keys; count: its sessions), or {deleted: true} once deleted (kept so a number is never reused and a repeated DELETE succeeds)");
    public static byte[] BackupVersionKey(string userId, ulong version) => K.Concat(K.Prefix(userId), K.BigEndian(version));
    /// <summary>Every backup version of the user, and (in the sessions family) every backed-up session of the user.</summary>
    public static byte[] BackupUserPrefix(string userId) => K.Prefix(userId);

    public const string BackupSessions = "keys_backup_sessions";
    static readonly ColumnFamily BackupSessionsFamily = new(BackupSessions, "user_id 0xFF version (8-byte big-endian) 0xFF room_id 0xFF session_id",
        "JSON {first_message_index, forwarded_count, is_verified, session_data}");
    public static byte[] BackupSessionKey(string userId, ulong version, string roomId, string sessionId)
        => K.Concat(BackupSessionsPrefix(userId, version), K.Join(roomId, sessionId));
    public static byte[] BackupSessionsPrefix(string userId, ulong version) => K.Concat(K.Prefix(userId), K.BigEndian(version), [K.Sep]);
    public static byte[] BackupRoomPrefix(string userId, ulong version, string roomId) => K.Concat(BackupSessionsPrefix(userId, version), K.Prefix(roomId));

    public static readonly ColumnFamily[] All =
    [
        new(Users, "user_id", "JSON {password_hash (Argon2id, PHC string; empty for a guest), created_ts, deactivated, admin? (a server admin: the first account registered, or made one by the admin API; the config's admins are admins whatever it says), is_guest?, upgrade_ts? (when a guest became a full account), displayname?, avatar_url?, profile_fields? (the other profile fields: m.tz and custom keys, any JSON)}"),
        new(Devices, "user_id 0xFF device_id", "JSON {device_id, display_name?, last_seen_ts, last_seen_ip?, user_agent?, access_token (absent for a dehydrated device), refresh_token?, previous_refresh_token? (the one /refresh last took, valid until the new tokens are used)}"),
        new(Tokens, "access_token", "user_id 0xFF device_id, then 0xFF expires_ts (decimal ms) for a token that expires (a session with a refresh token)"),
        new(RefreshTokens, "refresh_token", "user_id 0xFF device_id (the device record says whether it is the current or the previous one)"),
        new(RegistrationTokens, "registration token", "JSON {uses_allowed (null: unlimited), expiry_time (ms; null: never), completed (registrations done with it), pending: {auth session: ts} (registrations that passed the token stage and have not completed; each counts for an hour)}"),
        new(Counters, "\"stream\" or \"device_lists_sent\"", "8-byte big-endian: the last keys-stream position taken; the last position whose device-list changes were sent to other servers"),
        new(DeviceKeys, "user_id 0xFF device_id", "the device keys JSON as the device signed it (signatures by others live in keys_signatures)"),
        new(OneTimeKeys, "user_id 0xFF device_id 0xFF algorithm 0xFF pos key_id", "the key (a string, or an object with key and signatures); claimed oldest upload first"),
        new(OneTimeKeyIds, "user_id 0xFF device_id 0xFF algorithm:key_id", "8-byte pos of the unclaimed key, so a reused ID is found without a scan"),
        new(FallbackKeys, "user_id 0xFF device_id 0xFF algorithm", "JSON {key_id, key, used}"),
        new(ToDevice, "user_id 0xFF device_id 0xFF pos", "JSON {sender, type, content}: deleted once a sync token past pos comes back"),
        new(ToDeviceTxns, "user_id 0xFF device_id 0xFF txn_id", "empty: a /sendToDevice transaction already done"),
        new(DeviceListLog, "pos", "user_id whose device list changed at pos (only the user's latest change is kept)"),
        new(DeviceListPos, "user_id", "8-byte pos of the user's latest device-list change"),
        new(CrossSigning, "user_id 0xFF usage (master, self_signing or user_signing)", "the cross-signing key JSON as uploaded"),
        new(Signatures, "target_user_id 0xFF target_key_id (device ID or public key) 0xFF signer_user_id 0xFF signer_key_id", "the signature (unpadded Base64), checked before it was stored"),
        new(DeviceListsSent, "user_id (a local user)", "JSON {stream_id, devices: {device_id: hash}, cross_signing: hash}: what other servers were last told of the user's devices (m.device_list_update stream_id, the hash of each device's keys and name, of the public cross-signing keys)"),
        new(RemoteDevices, "user_id (another server's user)", "JSON {stream_id, devices: {device_id: {keys?, device_display_name?}}, master_key?, self_signing_key?}: a remote user's device list as their server last told us (GET /user/devices, then update EDUs); dropped on a gap"),
        new(Dehydrated, "user_id", "JSON {device_id, device_data}: the user's dehydrated device (MSC3814)"),
        new(Appservices, "appservice id", "JSON {yaml (the registration as the admin gave it, tokens included), registered_by (the admin's user ID), registered_ts}: an application service registered at runtime; the config files' registrations are not stored"),
        new(OpenIdTokens, "openid access_token", "JSON {user_id, expires_ts}: an OpenID token for a third party (a widget, an integration manager) to learn who the user is; removed once expired"),

        BackupVersionsFamily,
        BackupSessionsFamily,
    ];
}

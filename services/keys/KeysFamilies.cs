using Conduit.Common.Storage;
using K = Conduit.Common.Storage.Keys;

namespace Conduit.Keys;

/// <summary>
/// The keys service's column families and their key layouts (0xFF separates UTF-8 parts), with the builders of the
/// key backup families' keys beside their declarations. services/keys/README.md shows the same table; a test checks
/// it against <see cref="All"/>.
/// </summary>
public static class KeysFamilies
{
    public const string Users = "keys_users";
    public const string Devices = "keys_devices";
    public const string Tokens = "keys_tokens";

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
        new(Users, "user_id", "JSON {password_hash (Argon2id, PHC string), created_ts, deactivated, displayname?, avatar_url?}"),
        new(Devices, "user_id 0xFF device_id", "JSON {device_id, display_name?, last_seen_ts, last_seen_ip?, access_token}"),
        new(Tokens, "access_token", "user_id 0xFF device_id"),
        BackupVersionsFamily,
        BackupSessionsFamily,
    ];
}

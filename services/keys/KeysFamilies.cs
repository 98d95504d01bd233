using Conduit.Common.Storage;

namespace Conduit.Keys;

/// <summary>The keys service's column families and their key layouts (0xFF separates UTF-8 parts).</summary>
public static class KeysFamilies
{
    public const string Users = "keys_users";
    public const string Devices = "keys_devices";
    public const string Tokens = "keys_tokens";

    public static readonly ColumnFamily[] All =
    [
        new(Users, "user_id", "JSON {password_hash (Argon2id, PHC string), created_ts, deactivated, displayname?, avatar_url?}"),
        new(Devices, "user_id 0xFF device_id", "JSON {device_id, display_name?, last_seen_ts, last_seen_ip?, access_token}"),
        new(Tokens, "access_token", "user_id 0xFF device_id"),
    ];
}

using Conduit.Common.Storage;
using K = Conduit.Common.Storage.Keys;

namespace Conduit.Media;

/// <summary>
/// The media service's key-value families and their key layouts (0xFF separates UTF-8 parts), with the builders of their
/// keys beside them. The bytes themselves are files under database_path/media (<see cref="Storage.BlobStore"/>), named
/// by their SHA-256. services/media/README.md shows the same table; a test checks it against <see cref="All"/>.
/// </summary>
public static class MediaFamilies
{
    public const string Media = "media_meta";
    public static byte[] MediaKey(string serverName, string mediaId) => K.Join(serverName, mediaId);

    public const string Pending = "media_pending";
    public static byte[] PendingKey(string userId, string mediaId) => K.Join(userId, mediaId);
    public static byte[] PendingPrefix(string userId) => K.Prefix(userId);

    public const string Thumbnails = "media_thumbnails";
    public static byte[] ThumbnailKey(string serverName, string mediaId, Thumbnails.ThumbnailSize size)
        => K.Join(serverName, mediaId, size.Name);
    public static byte[] ThumbnailsPrefix(string serverName, string mediaId) => K.Prefix(serverName, mediaId);

    public const string BlobRefs = "media_blob_refs";
    /// <summary>One user of a stored file: the media itself (<paramref name="thumbnail"/> empty) or one of its thumbnails.</summary>
    public static byte[] BlobRefKey(string sha256, string serverName, string mediaId, string thumbnail = "")
        => K.Join(sha256, serverName, mediaId, thumbnail);
    public static byte[] BlobRefsPrefix(string sha256) => K.Prefix(sha256);

    public const string ByUser = "media_by_user";
    public static byte[] ByUserKey(string userId, long createdTs, string mediaId)
        => K.Concat(K.Prefix(userId), K.BigEndian((ulong)createdTs), [K.Sep], K.Utf8(mediaId));
    public static byte[] ByUserPrefix(string userId) => K.Prefix(userId);

    public const string Deleted = "media_deleted";
    public static byte[] DeletedKey(string serverName, string mediaId) => K.Join(serverName, mediaId);

    public const string Blocked = "media_blocked";
    public static byte[] BlockedKey(string serverName, string mediaId) => K.Join(serverName, mediaId);

    public const string UrlPreviews = "media_url_previews";
    public static byte[] UrlPreviewKey(string url) => K.Utf8(url);

    public static readonly ColumnFamily[] All =
    [
        new(Media, "server_name 0xFF media_id",
            "JSON {user_id, created_ts, content_type?, filename?, size, sha256, last_access_ts?} once uploaded (last_access_ts: the last download or thumbnail, updated at most once an hour; created_ts until then); {user_id, created_ts, pending: true, expires_ts} for an ID created by /media/v1/create and not uploaded yet"),
        new(Pending, "user_id 0xFF media_id", "8-byte big-endian expires_ts: the user's created IDs still waiting for their upload (removed on upload or expiry)"),
        new(Thumbnails, "server_name 0xFF media_id 0xFF size (\"320x240-scale\")", "JSON {content_type, size, sha256, width, height}: a thumbnail generated once and served from its file afterwards"),
        new(BlobRefs, "sha256 0xFF server_name 0xFF media_id 0xFF thumbnail size (empty for the media itself)", "empty: who uses the file media/<sha256[0..2]>/<sha256>; a file nobody references may be deleted"),
        new(ByUser, "user_id 0xFF created_ts (8-byte big-endian) 0xFF media_id", "empty: a local user's uploads, oldest first"),
        new(Deleted, "server_name 0xFF media_id", "8-byte big-endian deleted_ts: a local media ID deleted by an admin or by retention, never given out again (404 M_NOT_FOUND)"),
        new(Blocked, "server_name 0xFF media_id", "JSON {ts, by}: a quarantined media ID (local or remote): its bytes are deleted, it answers 404 and is never fetched again"),
        new(UrlPreviews, "url", "JSON {ts, og}: a URL preview, reused for an hour"),
    ];
}

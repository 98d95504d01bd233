using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Http;
using Conduit.Common.Storage;
using Conduit.Media.Storage;
using Conduit.Media.Thumbnails;
using K = Conduit.Common.Storage.Keys;

namespace Conduit.Media;

/// <summary>A piece of uploaded media: who uploaded it when, what the client said it is, and where its bytes are.</summary>
public sealed record MediaRecord(string ServerName, string MediaId, string UserId, long CreatedTs, string? ContentType, string? FileName, long Size, string Sha256, long LastAccessTs = 0)
{
    public string Mxc => $"mxc://{ServerName}/{MediaId}";
}

/// <summary>A stored thumbnail of a piece of media.</summary>
public sealed record ThumbnailRecord(ThumbnailSize Size, string ContentType, long Length, string Sha256, int Width, int Height);

/// <summary>
/// The media metadata (<see cref="MediaFamilies"/>) and the files it points at (<see cref="BlobStore"/>). Every change
/// is one batch written after its file is on disk, so an upload takes full effect or none. Media IDs created ahead of
/// their upload (POST /_matrix/media/v1/create) are kept as pending records; downloads waiting for one are woken when
/// its upload lands.
/// </summary>
public sealed class MediaStore
{
    const string IdAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

    readonly IKeyValueStore _store;
    readonly IKvMap _media, _pending, _thumbs, _deleted, _blocked, _byUser;
    readonly GlobalConfig _config;
    readonly TimeProvider _time;
    readonly Lock _write = new();
    readonly ConcurrentDictionary<string, TaskCompletionSource> _waiters = new();

    public BlobStore Blobs { get; }
    public string ServerName => _config.ServerName;

    public MediaStore(IKeyValueStore store, GlobalConfig config, MediaDirectory dir, TimeProvider? time = null)
    {
        _store = store;
        _config = config;
        _time = time ?? TimeProvider.System;
        _media = store.Map(MediaFamilies.Media);
        _pending = store.Map(MediaFamilies.Pending);
        _thumbs = store.Map(MediaFamilies.Thumbnails);
        _deleted = store.Map(MediaFamilies.Deleted);
        _blocked = store.Map(MediaFamilies.Blocked);
        _byUser = store.Map(MediaFamilies.ByUser);
        Blobs = new BlobStore(dir.Path);
    }

    long Now => _time.GetUtcNow().ToUnixTimeMilliseconds();

    /// <summary>24 random letters, as Synapse's media IDs (the spec allows A-Za-z0-9, _ and -).</summary>
    static string NewMediaId() => RandomNumberGenerator.GetString(IdAlphabet, 24);

    // ---- reading

    /// <summary>The uploaded media, or null (unknown, or created and not uploaded yet: see <see cref="IsPending"/>).</summary>
    public MediaRecord? Get(string serverName, string mediaId)
    {
        var o = Load(serverName, mediaId);
        return o is null || o["pending"] is not null ? null : ToRecord(serverName, mediaId, o);
    }

    /// <summary>Whether the ID was created by /media/v1/create, has not expired, and waits for its upload.</summary>
    public bool IsPending(string serverName, string mediaId)
        => Load(serverName, mediaId) is { } o && o["pending"] is not null && o["expires_ts"]!.GetValue<long>() > Now;

    JsonObject? Load(string serverName, string mediaId)
        => _media.Get(MediaFamilies.MediaKey(serverName, mediaId)) is { } v ? JsonLimits.ParseInternal(v)!.AsObject() : null;

    static MediaRecord ToRecord(string serverName, string mediaId, JsonObject o) => new(
        serverName, mediaId, o["user_id"]!.GetValue<string>(), o["created_ts"]!.GetValue<long>(),
        o["content_type"]?.GetValue<string>(), o["filename"]?.GetValue<string>(), o["size"]!.GetValue<long>(), o["sha256"]!.GetValue<string>(),
        o["last_access_ts"]?.GetValue<long>() ?? o["created_ts"]!.GetValue<long>());

    /// <summary>
    /// The media once uploaded, waiting up to <paramref name="timeout"/> for an upload to a pending ID to land
    /// (spec: the download's timeout_ms). Null if the ID is unknown or expired; throws M_NOT_YET_UPLOADED (504) if it
    /// is still pending when the time is up.
    /// </summary>
    public async Task<MediaRecord?> WaitForAsync(string serverName, string mediaId, TimeSpan timeout, CancellationToken ct)
    {
        var deadline = _time.GetUtcNow() + timeout;
        while (true)
        {
            var key = serverName + "/" + mediaId;
            var waiter = _waiters.GetOrAdd(key, _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
            if (Get(serverName, mediaId) is { } m) return m;
            if (!IsPending(serverName, mediaId)) return null;
            var left = deadline - _time.GetUtcNow();
            if (left <= TimeSpan.Zero)
                throw new MatrixException("M_NOT_YET_UPLOADED", 504, "The content has not been uploaded yet");
            try { await waiter.Task.WaitAsync(left, _time, ct); }
            catch (TimeoutException) { }
        }
    }

    void Wake(string serverName, string mediaId)
    {
        if (_waiters.TryRemove(serverName + "/" + mediaId, out var w)) w.TrySetResult();
    }

    // ---- writing

    /// <summary>Keeps a copy of another server's media under its own mxc URI (the user is empty: nobody here uploaded it).</summary>
    public MediaRecord PutRemote(string serverName, string mediaId, StagedBlob blob, string? contentType, string? fileName)
    {
        lock (_write)
        {
            if (Get(serverName, mediaId) is { } existing) return existing;
            // Quarantined while it was being fetched: the bytes are not kept.
            if (IsBlocked(serverName, mediaId))
            {
                blob.Dispose();
                throw Err.NotFound("Media not found");
            }
            var now = Now;
            var record = new MediaRecord(serverName, mediaId, "", now, contentType, fileName, blob.Size, blob.Sha256, now);
            Blobs.Commit(blob);
            using var b = _store.CreateBatch();
            WriteRecord(b, record);
            _store.Write(b);
            return record;
        }
    }

    /// <summary>Stores an upload under a new media ID.</summary>
    public MediaRecord Put(string userId, StagedBlob blob, string? contentType, string? fileName)
    {
        lock (_write)
        {
            string id;
            do id = NewMediaId(); while (IdTaken(id));
            var now = Now;
            var record = new MediaRecord(ServerName, id, userId, now, contentType, fileName, blob.Size, blob.Sha256, now);
            Blobs.Commit(blob);
            using var b = _store.CreateBatch();
            WriteRecord(b, record);
            _store.Write(b);
            return record;
        }
    }

    /// <summary>Whether a local media ID is in use, or was once and was deleted or quarantined (never given out again).</summary>
    bool IdTaken(string id)
        => _media.Contains(MediaFamilies.MediaKey(ServerName, id)) || _deleted.Contains(MediaFamilies.DeletedKey(ServerName, id))
            || _blocked.Contains(MediaFamilies.BlockedKey(ServerName, id));

    void WriteRecord(IWriteBatch b, MediaRecord r)
    {
        var o = new JsonObject { ["user_id"] = r.UserId, ["created_ts"] = r.CreatedTs };
        if (r.LastAccessTs > r.CreatedTs) o["last_access_ts"] = r.LastAccessTs;
        if (r.ContentType is not null) o["content_type"] = r.ContentType;
        if (r.FileName is not null) o["filename"] = r.FileName;
        o["size"] = r.Size;
        o["sha256"] = r.Sha256;
        b.Put(MediaFamilies.Media, MediaFamilies.MediaKey(r.ServerName, r.MediaId), Encoding.UTF8.GetBytes(o.ToJsonString()));
        b.Put(MediaFamilies.BlobRefs, MediaFamilies.BlobRefKey(r.Sha256, r.ServerName, r.MediaId), []);
        // Only local uploads have an uploader; copies of other servers' media are not anyone's.
        if (r.UserId.Length > 0) b.Put(MediaFamilies.ByUser, MediaFamilies.ByUserKey(r.UserId, r.CreatedTs, r.MediaId), []);
    }

    /// <summary>
    /// Creates a media ID for a later upload (POST /_matrix/media/v1/create). A user may have at most
    /// max_pending_media_uploads IDs waiting at once: more is 429 M_LIMIT_EXCEEDED (spec), retry once the oldest expires.
    /// </summary>
    public (string MediaId, long ExpiresTs) Create(string userId)
    {
        lock (_write)
        {
            var now = Now;
            using var b = _store.CreateBatch();
            var waiting = new List<long>();
            foreach (var (k, v) in _pending.Scan(MediaFamilies.PendingPrefix(userId)))
            {
                var expires = (long)K.ReadBigEndian(v);
                if (expires > now) waiting.Add(expires);
                else ExpirePending(b, userId, K.Split(k)[1]);
            }
            if (waiting.Count >= _config.MaxPendingMediaUploads)
            {
                _store.Write(b);
                var retry = Math.Max(1, waiting.Min() - now);
                throw Err.LimitExceeded($"Too many media IDs waiting for their upload (at most {_config.MaxPendingMediaUploads}); retry in {retry} ms", retry);
            }
            string id;
            do id = NewMediaId(); while (IdTaken(id));
            var expiresTs = now + _config.MediaUnusedExpirationSecs * 1000;
            var o = new JsonObject { ["user_id"] = userId, ["created_ts"] = now, ["pending"] = true, ["expires_ts"] = expiresTs };
            b.Put(MediaFamilies.Media, MediaFamilies.MediaKey(ServerName, id), Encoding.UTF8.GetBytes(o.ToJsonString()));
            b.Put(MediaFamilies.Pending, MediaFamilies.PendingKey(userId, id), K.BigEndian((ulong)expiresTs));
            _store.Write(b);
            return (id, expiresTs);
        }
    }

    void ExpirePending(IWriteBatch b, string userId, string mediaId)
    {
        b.Delete(MediaFamilies.Pending, MediaFamilies.PendingKey(userId, mediaId));
        if (Load(ServerName, mediaId) is { } o && o["pending"] is not null)
            b.Delete(MediaFamilies.Media, MediaFamilies.MediaKey(ServerName, mediaId));
    }

    /// <summary>
    /// Checks that the caller may upload to a created ID before its body is read: 404 M_NOT_FOUND if it was never
    /// created or has expired, 403 M_FORBIDDEN if another user created it, 409 M_CANNOT_OVERWRITE_MEDIA if it already
    /// has content (spec: PUT /_matrix/media/v3/upload/{serverName}/{mediaId}).
    /// </summary>
    public void CheckUploadTo(string userId, string serverName, string mediaId)
    {
        var o = serverName == ServerName ? Load(serverName, mediaId) : null;
        if (o is null) throw Err.NotFound("Unknown media ID");
        if (o["pending"] is null) throw new MatrixException("M_CANNOT_OVERWRITE_MEDIA", 409, "Media already uploaded");
        if (o["expires_ts"]!.GetValue<long>() <= Now) throw Err.NotFound("This media ID has expired");
        if (o["user_id"]!.GetValue<string>() != userId) throw Err.Forbidden("This media ID was created by another user");
    }

    /// <summary>Completes an upload to a created ID, checking again under the lock (two uploads may race).</summary>
    public MediaRecord CompleteUpload(string userId, string mediaId, StagedBlob blob, string? contentType, string? fileName)
    {
        MediaRecord record;
        lock (_write)
        {
            CheckUploadTo(userId, ServerName, mediaId);
            var created = Load(ServerName, mediaId)!["created_ts"]!.GetValue<long>();
            // Last accessed (for retention) when the upload landed, not when the ID was created.
            record = new MediaRecord(ServerName, mediaId, userId, created, contentType, fileName, blob.Size, blob.Sha256, Math.Max(created, Now));
            Blobs.Commit(blob);
            using var b = _store.CreateBatch();
            WriteRecord(b, record);
            b.Delete(MediaFamilies.Pending, MediaFamilies.PendingKey(userId, mediaId));
            _store.Write(b);
        }
        Wake(ServerName, mediaId);
        return record;
    }

    /// <summary>Deletes every created ID whose time ran out (run now and then by <see cref="MediaJanitor"/>).</summary>
    public int SweepExpired()
    {
        lock (_write)
        {
            var now = Now;
            var n = 0;
            using var b = _store.CreateBatch();
            foreach (var (k, v) in _pending.Scan([]))
            {
                if ((long)K.ReadBigEndian(v) > now) continue;
                var parts = K.Split(k);
                ExpirePending(b, parts[0], parts[1]);
                n++;
            }
            if (n > 0) _store.Write(b);
            return n;
        }
    }

    // ---- thumbnails

    public ThumbnailRecord? GetThumbnail(string serverName, string mediaId, ThumbnailSize size)
    {
        if (_thumbs.Get(MediaFamilies.ThumbnailKey(serverName, mediaId, size)) is not { } v) return null;
        var o = JsonLimits.ParseInternal(v)!.AsObject();
        return new ThumbnailRecord(size, o["content_type"]!.GetValue<string>(), o["size"]!.GetValue<long>(), o["sha256"]!.GetValue<string>(),
            o["width"]!.GetValue<int>(), o["height"]!.GetValue<int>());
    }

    public void PutThumbnail(MediaRecord media, ThumbnailRecord thumb, StagedBlob blob)
    {
        lock (_write)
        {
            // Deleted or quarantined while the thumbnail was being made: nothing to attach it to.
            if (Get(media.ServerName, media.MediaId) is null)
            {
                blob.Dispose();
                return;
            }
            Blobs.Commit(blob);
            using var b = _store.CreateBatch();
            var o = new JsonObject { ["content_type"] = thumb.ContentType, ["size"] = thumb.Length, ["sha256"] = thumb.Sha256, ["width"] = thumb.Width, ["height"] = thumb.Height };
            b.Put(MediaFamilies.Thumbnails, MediaFamilies.ThumbnailKey(media.ServerName, media.MediaId, thumb.Size), Encoding.UTF8.GetBytes(o.ToJsonString()));
            b.Put(MediaFamilies.BlobRefs, MediaFamilies.BlobRefKey(thumb.Sha256, media.ServerName, media.MediaId, thumb.Size.Name), []);
            _store.Write(b);
        }
    }

    // ---- last access, deletion, quarantine, retention (MediaAdminEndpoints, MediaJanitor)

    /// <summary>How stale a record's last_access_ts may be: an access rewrites it at most once per this long per media.</summary>
    public static readonly TimeSpan AccessGranularity = TimeSpan.FromHours(1);

    /// <summary>Whether the media ID was quarantined: it answers 404 and is never fetched or stored again.</summary>
    public bool IsBlocked(string serverName, string mediaId) => _blocked.Contains(MediaFamilies.BlockedKey(serverName, mediaId));

    /// <summary>Whether a local media ID was deleted (it is never given out again).</summary>
    public bool IsDeleted(string serverName, string mediaId) => _deleted.Contains(MediaFamilies.DeletedKey(serverName, mediaId));

    /// <summary>
    /// Notes that the media was served (a download, a thumbnail, a federation download): last_access_ts, which retention
    /// and the purges go by, is rewritten only when it is at least <see cref="AccessGranularity"/> old, so a popular
    /// file costs one write an hour, not one per download.
    /// </summary>
    public void Touch(MediaRecord media)
    {
        var now = Now;
        if (now - media.LastAccessTs < (long)AccessGranularity.TotalMilliseconds) return;
        lock (_write)
        {
            if (Load(media.ServerName, media.MediaId) is not { } o || o["pending"] is not null) return;
            var last = o["last_access_ts"]?.GetValue<long>() ?? o["created_ts"]!.GetValue<long>();
            if (now - last < (long)AccessGranularity.TotalMilliseconds) return;
            o["last_access_ts"] = now;
            using var b = _store.CreateBatch();
            b.Put(MediaFamilies.Media, MediaFamilies.MediaKey(media.ServerName, media.MediaId), Encoding.UTF8.GetBytes(o.ToJsonString()));
            _store.Write(b);
        }
    }

    /// <summary>Deletes one piece of media (see <see cref="DeleteMany"/>). False if there was none.</summary>
    public bool Delete(string serverName, string mediaId) => DeleteMany([(serverName, mediaId)]).Count == 1;

    /// <summary>
    /// Deletes media: their records, thumbnails, uploader index entries and blob references in one synced batch (all
    /// or nothing), then each file no other record or thumbnail still references (media_blob_refs, checked under the
    /// write lock, so an upload of the same bytes cannot slip in between). A crash between the two leaves an
    /// unreferenced file, never a record without its file. Local IDs are remembered in media_deleted and never given
    /// out again; a copy of remote media may be fetched again later. Pending IDs (created, not uploaded) go too.
    /// Returns the IDs that existed.
    /// </summary>
    public List<(string ServerName, string MediaId)> DeleteMany(IEnumerable<(string ServerName, string MediaId)> ids)
    {
        lock (_write)
        {
            var deleted = new List<(string, string)>();
            var shas = new HashSet<string>(StringComparer.Ordinal);
            using var b = _store.CreateBatch();
            foreach (var (server, id) in ids.Distinct())
                if (RemoveRecord(b, server, id, shas))
                    deleted.Add((server, id));
            if (deleted.Count == 0) return deleted;
            _store.Write(b);
            DeleteUnreferenced(shas);
            foreach (var (server, id) in deleted) Wake(server, id);
            return deleted;
        }
    }

    /// <summary>
    /// Quarantines a media ID, local or remote, known here or not: it is added to media_blocked and its record,
    /// thumbnails and (unless shared) files are deleted, in the same batch. From then on it answers 404 M_NOT_FOUND and
    /// is never fetched from its server again.
    /// </summary>
    public void Quarantine(string serverName, string mediaId, string by)
    {
        lock (_write)
        {
            var shas = new HashSet<string>(StringComparer.Ordinal);
            using var b = _store.CreateBatch();
            RemoveRecord(b, serverName, mediaId, shas);
            b.Put(MediaFamilies.Blocked, MediaFamilies.BlockedKey(serverName, mediaId),
                Encoding.UTF8.GetBytes(new JsonObject { ["ts"] = Now, ["by"] = by }.ToJsonString()));
            _store.Write(b);
            DeleteUnreferenced(shas);
        }
        Wake(serverName, mediaId);
    }

    /// <summary>Adds the deletion of one media's rows to the batch, collecting the files it used. Under the write lock.</summary>
    bool RemoveRecord(IWriteBatch b, string serverName, string mediaId, HashSet<string> shas)
    {
        if (Load(serverName, mediaId) is not { } o) return false;
        var key = MediaFamilies.MediaKey(serverName, mediaId);
        b.Delete(MediaFamilies.Media, key);
        if (serverName == ServerName) b.Put(MediaFamilies.Deleted, MediaFamilies.DeletedKey(serverName, mediaId), K.BigEndian((ulong)Now));
        if (o["pending"] is not null)
        {
            b.Delete(MediaFamilies.Pending, MediaFamilies.PendingKey(o["user_id"]!.GetValue<string>(), mediaId));
            return true;
        }
        var r = ToRecord(serverName, mediaId, o);
        b.Delete(MediaFamilies.BlobRefs, MediaFamilies.BlobRefKey(r.Sha256, serverName, mediaId));
        shas.Add(r.Sha256);
        if (r.UserId.Length > 0) b.Delete(MediaFamilies.ByUser, MediaFamilies.ByUserKey(r.UserId, r.CreatedTs, mediaId));
        foreach (var (k, v) in _thumbs.Scan(MediaFamilies.ThumbnailsPrefix(serverName, mediaId)))
        {
            var sha = JsonLimits.ParseInternal(v)!["sha256"]!.GetValue<string>();
            b.Delete(MediaFamilies.Thumbnails, k);
            b.Delete(MediaFamilies.BlobRefs, MediaFamilies.BlobRefKey(sha, serverName, mediaId, K.Split(k)[2]));
            shas.Add(sha);
        }
        return true;
    }

    /// <summary>Deletes the files nobody references any more (after the batch removing the references is written).</summary>
    void DeleteUnreferenced(HashSet<string> shas)
    {
        var refs = _store.Map(MediaFamilies.BlobRefs);
        foreach (var sha in shas)
        {
            if (refs.Scan(MediaFamilies.BlobRefsPrefix(sha)).Any()) continue;
            try { File.Delete(Blobs.PathOf(sha)); }
            catch (IOException) { } // left behind: unreferenced, harmless
            catch (UnauthorizedAccessException) { }
        }
    }

    /// <summary>
    /// Uploaded media (local, or cached copies of remote media) last accessed before <paramref name="beforeTs"/> and
    /// larger than <paramref name="sizeGt"/> bytes: what retention and the purges delete. One scan of media_meta.
    /// </summary>
    public List<MediaRecord> LastAccessedBefore(long beforeTs, bool local, long sizeGt = -1)
    {
        var found = new List<MediaRecord>();
        foreach (var (k, v) in _media.Scan([]))
        {
            var parts = K.Split(k);
            if ((parts[0] == ServerName) != local) continue;
            var o = JsonLimits.ParseInternal(v)!.AsObject();
            if (o["pending"] is not null) continue;
            var r = ToRecord(parts[0], parts[1], o);
            if (r.LastAccessTs < beforeTs && r.Size > sizeGt) found.Add(r);
        }
        return found;
    }

    /// <summary>
    /// Synapse's media_retention: remote media not accessed for media_retention_days and local media not accessed for
    /// media_retention_local_days are deleted (0: kept forever, the default for both). Run hourly by <see cref="MediaJanitor"/>.
    /// </summary>
    public int ApplyRetention()
    {
        var n = 0;
        const long Day = 86_400_000;
        if (_config.MediaRetentionDays > 0)
            n += DeleteInChunks(LastAccessedBefore(Now - _config.MediaRetentionDays * Day, local: false)).Count;
        if (_config.MediaRetentionLocalDays > 0)
            n += DeleteInChunks(LastAccessedBefore(Now - _config.MediaRetentionLocalDays * Day, local: true)).Count;
        return n;
    }

    /// <summary>
    /// Deletes many media (retention, purges) a batch of 500 at a time, so one purge neither builds a huge batch nor
    /// holds the write lock (uploads) for long; each media is still deleted whole or not at all.
    /// </summary>
    public List<(string ServerName, string MediaId)> DeleteInChunks(IEnumerable<MediaRecord> media)
    {
        var deleted = new List<(string, string)>();
        foreach (var chunk in media.Select(r => (r.ServerName, r.MediaId)).Chunk(500))
            deleted.AddRange(DeleteMany(chunk));
        return deleted;
    }

    /// <summary>A local user's uploads, oldest first (media_by_user).</summary>
    public List<MediaRecord> UploadsOf(string userId)
    {
        var list = new List<MediaRecord>();
        var prefix = MediaFamilies.ByUserPrefix(userId);
        foreach (var (k, _) in _byUser.Scan(prefix))
            if (Get(ServerName, Encoding.UTF8.GetString(k.AsSpan(prefix.Length + 9))) is { } r) list.Add(r);
        return list;
    }

    /// <summary>Every local uploader with the number and total size of their uploads created in [fromTs, untilTs).</summary>
    public List<(string UserId, int Count, long Length)> UploadStatistics(long fromTs, long untilTs)
    {
        var stats = new Dictionary<string, (int Count, long Length)>(StringComparer.Ordinal);
        foreach (var (k, _) in _byUser.Scan([]))
        {
            var sep = k.AsSpan().IndexOf(K.Sep);
            var created = (long)K.ReadBigEndian(k.AsSpan(sep + 1, 8));
            if (created < fromTs || created >= untilTs) continue;
            if (Get(ServerName, Encoding.UTF8.GetString(k.AsSpan(sep + 10))) is not { } r) continue;
            var user = Encoding.UTF8.GetString(k.AsSpan(0, sep));
            var (c, l) = stats.GetValueOrDefault(user);
            stats[user] = (c + 1, l + r.Size);
        }
        return stats.Select(e => (e.Key, e.Value.Count, e.Value.Length)).ToList();
    }

    // ---- URL previews

    public JsonObject? GetPreview(string url, long maxAgeMs)
    {
        if (_store.Map(MediaFamilies.UrlPreviews).Get(MediaFamilies.UrlPreviewKey(url)) is not { } v) return null;
        var o = JsonLimits.ParseInternal(v)!.AsObject();
        return Now - o["ts"]!.GetValue<long>() <= maxAgeMs ? o["og"]!.AsObject() : null;
    }

    public void PutPreview(string url, JsonObject og)
    {
        using var b = _store.CreateBatch();
        b.Put(MediaFamilies.UrlPreviews, MediaFamilies.UrlPreviewKey(url), Encoding.UTF8.GetBytes(new JsonObject { ["ts"] = Now, ["og"] = og.DeepClone() }.ToJsonString()));
        _store.Write(b);
    }
}

/// <summary>Where the media files live: database_path/media (in split mode, the media service's own database folder).</summary>
public sealed record MediaDirectory(string Path);

using System.Text;
using Conduit.Common.Config;
using Conduit.Common.Storage;
using Conduit.Media.Thumbnails;

namespace Conduit.Media.Tests;

/// <summary>MediaStore deletion, quarantine, last access and retention, on the memory store with a hand-moved clock.</summary>
public sealed class MediaDeletionTests : IDisposable
{
    const string Alice = "@alice:test.local", Bob = "@bob:test.local";
    readonly string _dir = Directory.CreateTempSubdirectory("conduit-media-delete-").FullName;
    readonly ManualTime _time = new();
    readonly GlobalConfig _config = new() { ServerName = "test.local" };
    readonly MediaStore _store;

    public MediaDeletionTests() => _store = new MediaStore(KvStore.Open("memory", "", MediaFamilies.All), _config, new MediaDirectory(_dir), _time);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    sealed class ManualTime : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_000_000);
        public override DateTimeOffset GetUtcNow() => Now;
    }

    async Task<MediaRecord> Upload(string user, string text)
    {
        using var blob = await _store.Blobs.StageAsync(Encoding.UTF8.GetBytes(text), CancellationToken.None);
        return _store.Put(user, blob, "text/plain", null);
    }

    async Task<MediaRecord> CacheRemote(string server, string id, string text)
    {
        using var blob = await _store.Blobs.StageAsync(Encoding.UTF8.GetBytes(text), CancellationToken.None);
        return _store.PutRemote(server, id, blob, "text/plain", null);
    }

    [Fact]
    public async Task Deleting_one_of_two_records_sharing_a_file_keeps_the_file_until_the_last_goes()
    {
        var a = await Upload(Alice, "same bytes");
        var b = await Upload(Bob, "same bytes");
        Assert.Equal(a.Sha256, b.Sha256);
        Assert.True(_store.Delete(a.ServerName, a.MediaId));
        Assert.Null(_store.Get(a.ServerName, a.MediaId));
        Assert.True(_store.Blobs.Exists(b.Sha256));
        Assert.NotNull(_store.Get(b.ServerName, b.MediaId));
        Assert.Empty(_store.UploadsOf(Alice));
        Assert.True(_store.Delete(b.ServerName, b.MediaId));
        Assert.False(_store.Blobs.Exists(b.Sha256));
        Assert.False(_store.Delete(b.ServerName, b.MediaId));
    }

    [Fact]
    public async Task A_thumbnail_sharing_a_file_with_other_media_keeps_it()
    {
        var image = await Upload(Alice, "an image");
        var other = await Upload(Bob, "thumbnail bytes");
        // A thumbnail of the first whose bytes happen to be the second upload's.
        using (var blob = await _store.Blobs.StageAsync(Encoding.UTF8.GetBytes("thumbnail bytes"), CancellationToken.None))
            _store.PutThumbnail(image, new ThumbnailRecord(ThumbnailSize.Standard[0], "image/png", 15, other.Sha256, 32, 32), blob);
        Assert.NotNull(_store.GetThumbnail(image.ServerName, image.MediaId, ThumbnailSize.Standard[0]));
        Assert.True(_store.Delete(other.ServerName, other.MediaId));
        Assert.True(_store.Blobs.Exists(other.Sha256)); // still the thumbnail's
        Assert.True(_store.Delete(image.ServerName, image.MediaId));
        Assert.Null(_store.GetThumbnail(image.ServerName, image.MediaId, ThumbnailSize.Standard[0]));
        Assert.False(_store.Blobs.Exists(other.Sha256));
        Assert.False(_store.Blobs.Exists(image.Sha256));
    }

    [Fact]
    public async Task A_deleted_local_id_is_remembered_and_a_thumbnail_made_after_is_dropped()
    {
        var m = await Upload(Alice, "gone soon");
        _store.Delete(m.ServerName, m.MediaId);
        Assert.True(_store.IsDeleted(m.ServerName, m.MediaId));
        using var blob = await _store.Blobs.StageAsync(Encoding.UTF8.GetBytes("late thumbnail"), CancellationToken.None);
        _store.PutThumbnail(m, new ThumbnailRecord(ThumbnailSize.Standard[0], "image/png", 14, blob.Sha256, 32, 32), blob);
        Assert.Null(_store.GetThumbnail(m.ServerName, m.MediaId, ThumbnailSize.Standard[0]));
        Assert.False(_store.Blobs.Exists(blob.Sha256));
    }

    [Fact]
    public async Task A_pending_id_can_be_deleted_and_then_not_uploaded_to()
    {
        var (id, _) = _store.Create(Alice);
        Assert.True(_store.Delete(_store.ServerName, id));
        Assert.False(_store.IsPending(_store.ServerName, id));
        var e = Assert.Throws<Conduit.Common.MatrixException>(() => _store.CheckUploadTo(Alice, _store.ServerName, id));
        Assert.Equal("M_NOT_FOUND", e.ErrCode);
    }

    [Fact]
    public async Task Quarantine_deletes_the_bytes_and_blocks_storing_the_remote_id_again()
    {
        var remote = await CacheRemote("other.example", "abcDEF", "remote bytes");
        _store.Quarantine("other.example", "abcDEF", Alice);
        Assert.True(_store.IsBlocked("other.example", "abcDEF"));
        Assert.Null(_store.Get("other.example", "abcDEF"));
        Assert.False(_store.Blobs.Exists(remote.Sha256));
        var e = await Assert.ThrowsAsync<Conduit.Common.MatrixException>(() => CacheRemote("other.example", "abcDEF", "remote bytes"));
        Assert.Equal("M_NOT_FOUND", e.ErrCode);
        Assert.False(_store.Blobs.Exists(remote.Sha256));
        // Never seen before: blocked all the same.
        _store.Quarantine("other.example", "neverSeen", Alice);
        Assert.True(_store.IsBlocked("other.example", "neverSeen"));
        var local = await Upload(Bob, "local bytes");
        _store.Quarantine(local.ServerName, local.MediaId, Alice);
        Assert.Null(_store.Get(local.ServerName, local.MediaId));
        Assert.False(_store.Blobs.Exists(local.Sha256));
    }

    [Fact]
    public async Task Last_access_is_written_at_most_once_an_hour()
    {
        var m = await Upload(Alice, "popular");
        Assert.Equal(m.CreatedTs, m.LastAccessTs);
        _time.Now += TimeSpan.FromMinutes(59);
        _store.Touch(_store.Get(m.ServerName, m.MediaId)!);
        Assert.Equal(m.CreatedTs, _store.Get(m.ServerName, m.MediaId)!.LastAccessTs);
        _time.Now += TimeSpan.FromMinutes(2);
        _store.Touch(_store.Get(m.ServerName, m.MediaId)!);
        var touched = _store.Get(m.ServerName, m.MediaId)!.LastAccessTs;
        Assert.Equal(_time.Now.ToUnixTimeMilliseconds(), touched);
        _time.Now += TimeSpan.FromMinutes(30);
        _store.Touch(_store.Get(m.ServerName, m.MediaId)!);
        Assert.Equal(touched, _store.Get(m.ServerName, m.MediaId)!.LastAccessTs);
        // The rest of the record is unchanged.
        Assert.Equal(m with { LastAccessTs = touched }, _store.Get(m.ServerName, m.MediaId));
    }

    [Fact]
    public async Task Retention_is_off_by_default_and_deletes_by_last_access_remote_and_local_separately()
    {
        var oldRemote = await CacheRemote("other.example", "oldRemote", "old remote");
        var oldLocal = await Upload(Alice, "old local");
        var usedRemote = await CacheRemote("other.example", "usedRemote", "used remote");
        _time.Now += TimeSpan.FromDays(10);
        _store.Touch(usedRemote);
        var newRemote = await CacheRemote("other.example", "newRemote", "new remote");
        _time.Now += TimeSpan.FromDays(5);

        Assert.Equal(0, _store.ApplyRetention());
        _config.MediaRetentionDays = 7;
        Assert.Equal(1, _store.ApplyRetention());
        Assert.Null(_store.Get("other.example", "oldRemote"));
        Assert.False(_store.Blobs.Exists(oldRemote.Sha256));
        Assert.NotNull(_store.Get("other.example", "usedRemote")); // created 15 days ago, accessed 5 days ago
        Assert.NotNull(_store.Get("other.example", "newRemote"));
        Assert.NotNull(_store.Get(oldLocal.ServerName, oldLocal.MediaId)); // local media has its own setting
        Assert.False(_store.IsDeleted("other.example", "oldRemote")); // a remote copy may be fetched again

        _config.MediaRetentionLocalDays = 14;
        Assert.Equal(1, _store.ApplyRetention());
        Assert.Null(_store.Get(oldLocal.ServerName, oldLocal.MediaId));
        Assert.True(_store.IsDeleted(oldLocal.ServerName, oldLocal.MediaId));
        Assert.NotNull(_store.Get(newRemote.ServerName, newRemote.MediaId));
    }

    [Fact]
    public async Task Selection_by_last_access_and_size_and_per_user_statistics()
    {
        var small = await Upload(Alice, "s");
        _time.Now += TimeSpan.FromSeconds(1);
        var large = await Upload(Alice, "a larger file");
        _time.Now += TimeSpan.FromHours(2);
        var bobs = await Upload(Bob, "bob's");
        var before = _time.Now.ToUnixTimeMilliseconds();
        Assert.Equal(new[] { small.MediaId, large.MediaId }.Order(), _store.LastAccessedBefore(before, local: true).Select(r => r.MediaId).Order());
        Assert.Equal([large.MediaId], _store.LastAccessedBefore(before, local: true, sizeGt: 1).Select(r => r.MediaId));
        Assert.Empty(_store.LastAccessedBefore(before, local: false));
        Assert.Equal([small.MediaId, large.MediaId], _store.UploadsOf(Alice).Select(r => r.MediaId));
        var stats = _store.UploadStatistics(0, long.MaxValue).OrderBy(s => s.UserId).ToList();
        Assert.Equal([(Alice, 2, 14L), (Bob, 1, 5L)], stats);
        Assert.Equal([(Bob, 1, 5L)], _store.UploadStatistics(bobs.CreatedTs, long.MaxValue));
    }
}

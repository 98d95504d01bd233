using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace Conduit.Media.Storage;

/// <summary>A file written to the staging folder, hashed and flushed to disk, not yet visible under its name.</summary>
public sealed class StagedBlob(string tempPath, string sha256, long size) : IDisposable
{
    public string TempPath { get; } = tempPath;
    public string Sha256 { get; } = sha256;
    public long Size { get; } = size;

    /// <summary>Removes the staged file if it was not committed (an upload that failed half way).</summary>
    public void Dispose()
    {
        try { File.Delete(TempPath); }
        catch (IOException) { }
    }
}

/// <summary>
/// The bytes of media and thumbnails, as files under database_path/media (as Conduit keeps them), named by their
/// SHA-256 so identical content is stored once: media/&lt;first two hex digits&gt;/&lt;sha256&gt;. A file is written
/// to media/tmp, flushed to disk, then renamed into place and the folder flushed, so a name always holds a whole
/// file; the metadata that points at it is written after (a crash in between leaves a file nobody points at, never
/// a reference to half a file). Files rather than RocksDB values: tests/ImageLibBench/README.md has the measurement,
/// and files stream from disk with ranges, never pass through the database's memtables and compactions, and are
/// what an admin expects to back up and inspect.
/// </summary>
public sealed partial class BlobStore
{
    const int BufferSize = 64 * 1024;
    readonly string _tmp;

    public string Root { get; }

    public BlobStore(string root)
    {
        Root = root;
        _tmp = Path.Combine(root, "tmp");
        Directory.CreateDirectory(_tmp);
        // What is left in tmp is from uploads a crash or a restart interrupted: nobody points at it.
        foreach (var f in Directory.EnumerateFiles(_tmp))
            try { File.Delete(f); }
            catch (IOException) { }
    }

    public string PathOf(string sha256) => Path.Combine(Root, sha256[..2], sha256);

    public bool Exists(string sha256) => File.Exists(PathOf(sha256));

    /// <summary>Copies <paramref name="source"/> to a staged file in 64 KiB pieces (never the whole body in memory),
    /// hashing as it goes, and flushes it to disk.</summary>
    public async Task<StagedBlob> StageAsync(Stream source, CancellationToken ct)
    {
        var path = Path.Combine(_tmp, Guid.NewGuid().ToString("N"));
        var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(BufferSize);
        try
        {
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            long size = 0;
            await using (var file = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 0, FileOptions.Asynchronous))
            {
                int n;
                while ((n = await source.ReadAsync(buffer.AsMemory(0, BufferSize), ct)) > 0)
                {
                    hash.AppendData(buffer, 0, n);
                    await file.WriteAsync(buffer.AsMemory(0, n), ct);
                    size += n;
                }
                file.Flush(flushToDisk: true);
            }
            return new StagedBlob(path, Convert.ToHexStringLower(hash.GetHashAndReset()), size);
        }
        catch
        {
            try { File.Delete(path); }
            catch (IOException) { }
            throw;
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    public Task<StagedBlob> StageAsync(byte[] bytes, CancellationToken ct)
        => StageAsync(new MemoryStream(bytes, writable: false), ct);

    /// <summary>
    /// Gives the staged file its name. If a file of that content already exists, the staged copy is dropped (the
    /// two are identical by their hash). Once this returns, the file survives a crash.
    /// </summary>
    public void Commit(StagedBlob blob)
    {
        var target = PathOf(blob.Sha256);
        var dir = Path.GetDirectoryName(target)!;
        if (File.Exists(target))
        {
            blob.Dispose();
            return;
        }
        Directory.CreateDirectory(dir);
        try
        {
            File.Move(blob.TempPath, target, overwrite: false);
        }
        catch (IOException) when (File.Exists(target))
        {
            // Another upload of the same content got there first.
            blob.Dispose();
            return;
        }
        SyncDirectory(dir);
    }

    /// <summary>fsync on the folder, so the rename itself is on disk (a file's own flush does not cover its name).</summary>
    static void SyncDirectory(string dir)
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS()) return;
        var fd = Open(dir, 0 /* O_RDONLY */);
        if (fd < 0) return;
        try { _ = Fsync(fd); }
        finally { _ = Close(fd); }
    }

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync")]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);
}

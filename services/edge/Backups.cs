using System.Globalization;
using Conduit.Common.Config;
using Conduit.Common.Storage;

namespace Conduit.Edge;

/// <summary>
/// Online backups of one process's data (all-in-one: everything; split: each service process its own): a folder that
/// is itself a database_path, so restoring is pointing database_path at it (or copying it there) with the server
/// stopped. The database is copied while in use (<see cref="IKeyValueStore.Checkpoint"/>: consistent as of one moment,
/// so every write acknowledged before the backup started is in it); then media files (database_path/media) are
/// hard-linked in (copied across file systems): a file's metadata is written after the file, so every file the copied
/// database names exists (one deleted meanwhile excepted). The folder is written as NAME.partial and renamed when
/// complete. Backups go under [global.backup] path (default database_path/backups), named by UTC time and, split, the
/// role; after each, only the newest <c>keep</c> of this process's are kept. One backup at a time per process.
/// </summary>
public sealed class Backups(IKeyValueStore store, GlobalConfig config, string role, string databasePath)
{
    const string Partial = ".partial";
    readonly SemaphoreSlim _one = new(1, 1);

    /// <summary>Where backups go unless a folder is given: [global.backup] path, else database_path/backups.</summary>
    public string Folder => Path.GetFullPath(config.Backup.Path ?? Path.Combine(databasePath, "backups"));

    string Suffix => role == ConduitHost.AllInOne ? "" : "-" + role;

    /// <summary>
    /// Writes a backup into <paramref name="into"/> (a folder that holds backups; default <see cref="Folder"/>, where
    /// the oldest beyond <c>keep</c> are then removed) and answers the backup's own folder.
    /// </summary>
    public async Task<string> CreateAsync(string? into, CancellationToken ct)
    {
        await _one.WaitAsync(ct);
        try
        {
            var root = Path.GetFullPath(into ?? Folder);
            Directory.CreateDirectory(root);
            var stamp = DateTime.UtcNow.ToString("yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture);
            var dir = Path.Combine(root, stamp + Suffix);
            for (var n = 2; Directory.Exists(dir) || Directory.Exists(dir + Partial); n++) dir = Path.Combine(root, $"{stamp}.{n}{Suffix}");
            var partial = dir + Partial;
            try
            {
                store.Checkpoint(partial);
                var media = Path.Combine(databasePath, "media");
                if (Directory.Exists(media)) FileLinks.LinkTree(media, Path.Combine(partial, "media"));
                Directory.Move(partial, dir);
            }
            catch
            {
                try { if (Directory.Exists(partial)) Directory.Delete(partial, recursive: true); } catch (IOException) { }
                throw;
            }
            if (into is null) Rotate(root);
            return dir;
        }
        finally
        {
            _one.Release();
        }
    }

    /// <summary>Removes this process's oldest complete backups beyond <c>keep</c> (names sort by time).</summary>
    void Rotate(string root)
    {
        if (config.Backup.Keep == 0) return;
        var mine = Directory.GetDirectories(root)
            .Where(d => !d.EndsWith(Partial, StringComparison.Ordinal) && IsBackupName(Path.GetFileName(d)))
            .Order(StringComparer.Ordinal).ToList();
        foreach (var old in mine.Take(Math.Max(0, mine.Count - config.Backup.Keep))) Directory.Delete(old, recursive: true);
    }

    // yyyyMMddTHHmmssZ, maybe .N, then this process's suffix (none all-in-one, so a split role's are never taken for ours).
    bool IsBackupName(string name)
    {
        if (name.Length < 16 || !DateTime.TryParseExact(name[..16], "yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture, DateTimeStyles.None, out _)) return false;
        var rest = name[16..];
        if (rest.StartsWith('.'))
        {
            var end = rest.IndexOf('-') is var i and >= 0 ? i : rest.Length;
            if (!int.TryParse(rest.AsSpan(1, end - 1), NumberStyles.None, CultureInfo.InvariantCulture, out _)) return false;
            rest = rest[end..];
        }
        return rest == Suffix;
    }
}

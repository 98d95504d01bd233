using System.Text.Json.Nodes;
using static Conduit.Functional.Tests.MatrixClient;

namespace Conduit.Functional.Tests;

/// <summary>
/// Online backups (<c>conduit backup</c> against a running server, through its control socket): a backup taken while
/// the load generator writes (tests/Conduit.LoadGen, mixed scenario, with --ack-log) restores, as the README says (a server started on the backup folder as its
/// database_path; split: each service on its own), into a server that has every message acknowledged before the
/// backup started. Each test starts servers of its own (the backup is of a whole database).
/// </summary>
public abstract class BackupTests
{
    protected abstract ServerFixture NewServer();

    /// <summary>Where the restored server's database goes: all-in-one the one backup folder is database_path;
    /// split, each service's backup ("…-ROLE") becomes database_path/ROLE.</summary>
    protected abstract void Restore(IReadOnlyList<string> backups, string databasePath);

    static void CopyTree(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var d in Directory.GetDirectories(from)) CopyTree(d, Path.Combine(to, Path.GetFileName(d)));
        foreach (var f in Directory.GetFiles(from)) File.Copy(f, Path.Combine(to, Path.GetFileName(f)));
    }

    protected static void CopyInto(string backup, string databasePath) => CopyTree(backup, databasePath);

    /// <summary>The load generator (tests/Conduit.LoadGen), from the build beside this test assembly.</summary>
    static string LoadGen()
    {
        var dll = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "..", "..", "Conduit.LoadGen", Path.GetFileName(AppContext.BaseDirectory.TrimEnd('/')), "Conduit.LoadGen.dll"));
        Assert.True(File.Exists(dll), $"the load generator is not built at {dll}");
        return dll;
    }

    static List<(long Ts, string RoomId, string EventId, string Token)> Acks(string file)
    {
        if (!File.Exists(file)) return [];
        using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        using var reader = new StreamReader(stream);
        var acks = new List<(long, string, string, string)>();
        while (reader.ReadLine() is { } line)
            if (line.Split('\t') is [var ts, var room, var ev, var token] && long.TryParse(ts, out var t)) acks.Add((t, room, ev, token));
        return acks;
    }

    static async Task WaitForAcks(string file, int count, System.Diagnostics.Process loadGen)
    {
        var deadline = DateTime.UtcNow.AddSeconds(120);
        while (Acks(file).Count < count)
        {
            Assert.False(loadGen.HasExited, $"the load generator stopped early (exit {(loadGen.HasExited ? loadGen.ExitCode : 0)})");
            Assert.True(DateTime.UtcNow < deadline, $"the load generator acknowledged {Acks(file).Count} of {count} sends in 120 s");
            await Task.Delay(100);
        }
    }

    [Fact]
    public async Task A_backup_taken_while_the_load_generator_writes_restores_every_message_acknowledged_before_it()
    {
        var server = NewServer();
        await server.InitializeAsync();
        var backups = new List<string>();
        var dir = Directory.CreateTempSubdirectory("conduit-backup-").FullName;
        var ackLog = Path.Combine(dir, "acks.tsv");
        long backupStarted;
        try
        {
            string[] args = [LoadGen(), "--scenario", "mixed", "--url", server.BaseUrl, "--users", "6", "--rooms", "2", "--seconds", "300", "--interval-ms", "20", "--ack-log", ackLog];
            var psi = new System.Diagnostics.ProcessStartInfo("dotnet", args) { RedirectStandardOutput = true, RedirectStandardError = true };
            using var loadGen = System.Diagnostics.Process.Start(psi)!;
            loadGen.OutputDataReceived += (_, _) => { };
            loadGen.ErrorDataReceived += (_, _) => { };
            loadGen.BeginOutputReadLine();
            loadGen.BeginErrorReadLine();
            try
            {
                await WaitForAcks(ackLog, 50, loadGen);
                backupStarted = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
                await using (var backup = ConduitProcess.Start(new Dictionary<string, string> { ["CONDUIT_DATABASE_PATH"] = server.DatabasePath }, "backup", dir))
                {
                    Assert.Equal(0, await backup.ExitCodeAsync(TimeSpan.FromSeconds(120)));
                    foreach (var line in backup.Stdout.Where(l => l.Contains(" written to ", StringComparison.Ordinal)))
                        backups.Add(line[(line.IndexOf(" written to ", StringComparison.Ordinal) + " written to ".Length)..]);
                }
                // The load went on through the backup and after it.
                await WaitForAcks(ackLog, Acks(ackLog).Count + 20, loadGen);
            }
            finally
            {
                if (!loadGen.HasExited) loadGen.Kill(entireProcessTree: true);
                await loadGen.WaitForExitAsync();
            }
            Assert.NotEmpty(backups);
            Assert.All(backups, b => Assert.StartsWith(dir, b, StringComparison.Ordinal));
        }
        finally
        {
            await server.DisposeAsync();
        }

        var before = Acks(ackLog).Where(a => a.Ts < backupStarted).ToList();
        Assert.True(before.Count >= 50);
        Assert.Contains(Acks(ackLog), a => a.Ts > backupStarted);
        var restored = NewServer();
        Restore(backups, restored.DatabasePath);
        await restored.InitializeAsync();
        try
        {
            // Every send acknowledged before the backup started is there, read as its sender (whose token is in the backup too).
            foreach (var (_, roomId, eventId, token) in before)
                (await new MatrixClient(restored, token).Get($"{C}/rooms/{E(roomId)}/event/{E(eventId)}")).Ok();
        }
        finally
        {
            await restored.DisposeAsync();
            Directory.Delete(dir, recursive: true);
        }
    }
}

public sealed class AllInOneBackupTests : BackupTests
{
    protected override ServerFixture NewServer() => new AllInOneFixture();
    protected override void Restore(IReadOnlyList<string> backups, string databasePath) => CopyInto(Assert.Single(backups), databasePath);
}

public sealed class SplitBackupTests : BackupTests
{
    protected override ServerFixture NewServer() => new SplitFixture();
    protected override void Restore(IReadOnlyList<string> backups, string databasePath)
    {
        Assert.Equal(5, backups.Count);
        foreach (var b in backups) CopyInto(b, Path.Combine(databasePath, Path.GetFileName(b)[(Path.GetFileName(b).LastIndexOf('-') + 1)..]));
    }
}

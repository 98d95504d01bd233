using System.Text.Json.Nodes;
using static Conduit.Functional.Tests.MatrixClient;

namespace Conduit.Functional.Tests;

/// <summary>
/// Online backups (<c>conduit backup</c> against a running server, through its control socket): a backup taken while
/// messages are being written restores, as the README says (a server started on the backup folder as its
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

    [Fact]
    public async Task A_backup_taken_while_messages_are_written_restores_every_message_acknowledged_before_it()
    {
        var server = NewServer();
        await server.InitializeAsync();
        string user, roomId;
        List<string> ackedBefore;
        var backups = new List<string>();
        var dir = Directory.CreateTempSubdirectory("conduit-backup-").FullName;
        try
        {
            var alice = await Register(server, password: "backup pass");
            (user, roomId) = (alice.UserId, await alice.CreateRoom(new JsonObject { ["name"] = "backed up" }));
            var acked = new List<string>();
            using var stop = new CancellationTokenSource();
            var writer = Task.Run(async () =>
            {
                for (var i = 0; !stop.IsCancellationRequested; i++)
                {
                    await alice.SendText(roomId, $"message {i}");
                    lock (acked) acked.Add($"message {i}");
                }
            });
            while (true)
            {
                lock (acked) if (acked.Count >= 20) break;
                await Task.Delay(20);
            }
            lock (acked) ackedBefore = [.. acked];
            await using (var backup = ConduitProcess.Start(new Dictionary<string, string> { ["CONDUIT_DATABASE_PATH"] = server.DatabasePath }, "backup", dir))
            {
                Assert.Equal(0, await backup.ExitCodeAsync(TimeSpan.FromSeconds(120)));
                foreach (var line in backup.Stdout.Where(l => l.Contains(" written to ", StringComparison.Ordinal)))
                    backups.Add(line[(line.IndexOf(" written to ", StringComparison.Ordinal) + " written to ".Length)..]);
            }
            Assert.NotEmpty(backups);
            Assert.All(backups, b => Assert.StartsWith(dir, b, StringComparison.Ordinal));
            // The writer went on during the backup; it stops now, with the server still running.
            stop.Cancel();
            await writer;
        }
        finally
        {
            await server.DisposeAsync();
        }

        var restored = NewServer();
        Restore(backups, restored.DatabasePath);
        await restored.InitializeAsync();
        try
        {
            var again = new MatrixClient(restored);
            var login = (await again.Call("POST", C + "/login", new JsonObject
            {
                ["type"] = "m.login.password",
                ["identifier"] = new JsonObject { ["type"] = "m.id.user", ["user"] = user },
                ["password"] = "backup pass",
            }, auth: false)).Ok().Obj;
            again.Token = login["access_token"]!.GetValue<string>();
            var bodies = (await again.Get($"{C}/rooms/{E(roomId)}/messages?dir=b&limit=1000")).Ok().Obj["chunk"]!.AsArray()
                .Select(e => e!["content"]?["body"]?.GetValue<string>()).OfType<string>().ToHashSet();
            Assert.All(ackedBefore, b => Assert.Contains(b, bodies));
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

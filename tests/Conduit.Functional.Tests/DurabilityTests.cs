using System.Diagnostics;
using System.Text.Json.Nodes;
using Conduit.Edge;
using static Conduit.Functional.Tests.MatrixClient;

namespace Conduit.Functional.Tests;

/// <summary>What was acknowledged survives a kill -9: the server process is killed right after the 200s.</summary>
public sealed class DurabilityTests
{
    sealed class ProcessServer : ServerFixture
    {
        readonly string _backend;
        Process? _p;
        readonly int _port = FreePort();
        public override string Mode => "process";
        public ProcessServer(string backend, string work) { _backend = backend; WorkDir = work; }
        public string WorkDir { get; }

        public override async Task InitializeAsync()
        {
            var psi = new ProcessStartInfo("dotnet", [typeof(ConduitHost).Assembly.Location]) { RedirectStandardOutput = true, RedirectStandardError = true };
            psi.Environment["CONDUIT_CONFIG"] = "";
            psi.Environment["CONDUIT_SERVER_NAME"] = ServerName;
            psi.Environment["CONDUIT_PORT"] = _port.ToString();
            psi.Environment["CONDUIT_DATABASE_PATH"] = Path.Combine(WorkDir, "db");
            psi.Environment["CONDUIT_DATABASE_BACKEND"] = _backend;
            _p = Process.Start(psi)!;
            _p.OutputDataReceived += (_, _) => { };
            _p.ErrorDataReceived += (_, _) => { };
            _p.BeginOutputReadLine();
            _p.BeginErrorReadLine();
            BaseUrl = $"http://127.0.0.1:{_port}";
            for (var i = 0; i < 150; i++)
            {
                try { if ((await Http.GetAsync(BaseUrl + "/_matrix/client/versions")).IsSuccessStatusCode) return; }
                catch (HttpRequestException) { }
                await Task.Delay(200);
            }
            throw new InvalidOperationException("server did not start");
        }

        public void KillHard() => _p!.Kill(entireProcessTree: true);

        public override Task DisposeAsync()
        {
            if (_p is { HasExited: false }) _p.Kill(true);
            Http.Dispose();
            return Task.CompletedTask;
        }
    }

    [Theory]
    [InlineData("rocksdb")]
    [InlineData("sqlite")]
    public async Task Acknowledged_writes_survive_kill_9(string backend)
    {
        var work = Directory.CreateTempSubdirectory("conduit-kill-").FullName;
        var first = new ProcessServer(backend, work);
        await first.InitializeAsync();
        var u = await Register(first, password: "pw");
        var room = await u.CreateRoom(new JsonObject { ["name"] = "durable" });
        var ev = await u.SendText(room, "acknowledged");
        (await u.Put($"{C}/user/{E(u.UserId)}/account_data/org.example.kept", new JsonObject { ["v"] = 7 })).Ok();
        var keyBefore = (await u.Get("/_matrix/key/v2/server")).Ok().Obj["verify_keys"]!.AsObject().Single().Key;
        first.KillHard();
        await first.DisposeAsync();

        var second = new ProcessServer(backend, work);
        await second.InitializeAsync();
        try
        {
            var again = new MatrixClient(second, u.Token);
            (await again.Get(C + "/account/whoami")).Ok();
            Assert.Equal("acknowledged", (await again.Get($"{C}/rooms/{E(room)}/event/{E(ev)}")).Ok().Obj["content"]!["body"]!.GetValue<string>());
            Assert.Equal(7, (await again.Get($"{C}/user/{E(u.UserId)}/account_data/org.example.kept")).Ok().Obj["v"]!.GetValue<int>());
            // The server's signing key is generated once and kept.
            Assert.Equal(keyBefore, (await again.Get("/_matrix/key/v2/server")).Ok().Obj["verify_keys"]!.AsObject().Single().Key);
            var sync = await again.Sync();
            Assert.Contains("acknowledged", TimelineBodies(sync, room));
        }
        finally
        {
            await second.DisposeAsync();
        }
    }
}

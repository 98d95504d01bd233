using System.Text.Json.Nodes;
using static Conduit.Functional.Tests.MatrixClient;

namespace Conduit.Functional.Tests;

/// <summary>What was acknowledged survives a kill -9: the server process is killed right after the 200s.</summary>
public sealed class DurabilityTests
{
    sealed class ProcessServer : ServerFixture
    {
        readonly string _backend;
        ConduitProcess? _p;
        public override string Mode => "process";
        public ProcessServer(string backend, string work) { _backend = backend; WorkDir = work; }
        public string WorkDir { get; }

        public override async Task InitializeAsync()
        {
            _p = ConduitProcess.Start(new Dictionary<string, string>
            {
                ["CONDUIT_SERVER_NAME"] = ServerName,
                ["CONDUIT_PORT"] = "0",
                ["CONDUIT_DATABASE_PATH"] = Path.Combine(WorkDir, "db"),
                ["CONDUIT_DATABASE_BACKEND"] = _backend,
            });
            BaseUrl = await _p.ListeningAsync();
        }

        public void KillHard() => _p!.Kill();

        public override async Task DisposeAsync()
        {
            if (_p is not null) await _p.DisposeAsync();
            Http.Dispose();
            DeleteWork(); // the fixture's own (unused) directory; WorkDir is the test's, kept across the kill
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
        // A to-device message to the user's own device, and one-time keys, acknowledged before the kill.
        var since = (await u.Sync())["next_batch"]!.GetValue<string>();
        (await u.Put($"{C}/sendToDevice/m.test/kill9", new JsonObject
        {
            ["messages"] = new JsonObject { [u.UserId] = new JsonObject { [u.DeviceId] = new JsonObject { ["kept"] = true } } },
        })).Ok();
        using var device = new TestDevice(u);
        await device.Upload(otks: 3);
        var keyBefore = (await u.Get("/_matrix/key/v2/server")).Ok().Obj["verify_keys"]!.AsObject().Single().Key;
        // An upload, acknowledged with its mxc URI.
        var media = new byte[200_000];
        Random.Shared.NextBytes(media);
        using var upload = new HttpRequestMessage(HttpMethod.Post, first.BaseUrl + "/_matrix/media/v3/upload") { Content = new ByteArrayContent(media) };
        upload.Headers.Authorization = new("Bearer", u.Token);
        using var uploaded = await first.Http.SendAsync(upload);
        var mxc = JsonNode.Parse(await uploaded.Content.ReadAsStringAsync())!["content_uri"]!.GetValue<string>();
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
            var incremental = await again.Sync(since);
            Assert.True(incremental["to_device"]!["events"]![0]!["content"]!["kept"]!.GetValue<bool>());
            Assert.Equal(3, incremental["device_one_time_keys_count"]!["signed_curve25519"]!.GetValue<int>());
            using var download = new HttpRequestMessage(HttpMethod.Get, second.BaseUrl + "/_matrix/client/v1/media/download/" + mxc["mxc://".Length..]);
            download.Headers.Authorization = new("Bearer", u.Token);
            using var downloaded = await second.Http.SendAsync(download);
            Assert.Equal(media, await downloaded.Content.ReadAsByteArrayAsync());
        }
        finally
        {
            await second.DisposeAsync();
            Directory.Delete(work, recursive: true);
        }
    }
}

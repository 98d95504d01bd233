using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Xunit.Abstractions;
using static Conduit.Functional.Tests.MatrixClient;

namespace Conduit.Functional.Tests;

/// <summary>
/// A 50 MB upload and download stream through the server: its memory grows by far less than the file. Real
/// processes (all-in-one, and the edge and media service in split mode), so the test process's own memory is not
/// counted; the peak is the kernel's high-water mark (VmHWM), reset just before the transfer.
/// </summary>
public sealed class MediaMemoryTests(ITestOutputHelper output)
{
    const long Size = 50_000_000;
    const long MaxGrowth = 20 * 1024 * 1024;

    /// <summary>Pseudo-random bytes made as they are read: the client holds none of the file either.</summary>
    sealed class GeneratedStream(long length, int seed) : Stream
    {
        readonly Random _random = new(seed);
        long _position;
        public override int Read(byte[] buffer, int offset, int count)
        {
            var n = (int)Math.Min(count, length - _position);
            _random.NextBytes(buffer.AsSpan(offset, n));
            _position += n;
            return n;
        }
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => length;
        public override long Position { get => _position; set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }

    static long StatusKb(int pid, string field)
    {
        foreach (var line in File.ReadLines($"/proc/{pid}/status"))
            if (line.StartsWith(field + ":", StringComparison.Ordinal))
                return long.Parse(line[(field.Length + 1)..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
        throw new InvalidOperationException($"no {field} for {pid}");
    }

    /// <summary>Resets the process's peak RSS to its current RSS (Linux: "5" to clear_refs).</summary>
    static void ResetPeak(int pid) => File.WriteAllText($"/proc/{pid}/clear_refs", "5");

    async Task TransferAndMeasure(ServerFixture server, params int[] pids)
    {
        var u = await Register(server);
        using var http = new HttpClient { Timeout = TimeSpan.FromMinutes(5) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", u.Token);
        // Warm up the paths once with a small file, then measure from here.
        using (var warm = await http.PostAsync(server.BaseUrl + "/_matrix/media/v3/upload", new ByteArrayContent(new byte[100_000])))
            Assert.Equal(HttpStatusCode.OK, warm.StatusCode);
        GC.Collect();
        await Task.Delay(200);
        var before = pids.ToDictionary(p => p, p => StatusKb(p, "VmRSS"));
        foreach (var p in pids) ResetPeak(p);

        string expected;
        using (var sha = SHA256.Create())
        using (var source = new GeneratedStream(Size, 42))
        {
            var content = new StreamContent(new CryptoStream(source, sha, CryptoStreamMode.Read), 64 * 1024);
            content.Headers.ContentLength = Size;
            content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
            using var resp = await http.PostAsync(server.BaseUrl + "/_matrix/media/v3/upload?filename=big.bin", content);
            Assert.Equal(HttpStatusCode.OK, resp.StatusCode);
            expected = Convert.ToHexStringLower(sha.Hash!);
            var uri = JsonNode.Parse(await resp.Content.ReadAsStringAsync())!["content_uri"]!.GetValue<string>();
            using var down = await http.GetAsync(server.BaseUrl + "/_matrix/client/v1/media/download/" + uri["mxc://".Length..], HttpCompletionOption.ResponseHeadersRead);
            Assert.Equal(HttpStatusCode.OK, down.StatusCode);
            Assert.Equal(Size, down.Content.Headers.ContentLength);
            await using var body = await down.Content.ReadAsStreamAsync();
            Assert.Equal(expected, Convert.ToHexStringLower(await SHA256.HashDataAsync(body)));
        }
        var growth = pids.ToDictionary(p => p, p => (StatusKb(p, "VmHWM") - before[p]) * 1024);
        var report = string.Join(", ", growth.Select(g => $"process {g.Key}: {g.Value / 1048576.0:F1} MiB"));
        output.WriteLine($"peak RSS growth: {report}");
        Assert.True(growth.Values.All(g => g < MaxGrowth), $"peak RSS grew during a {Size / 1e6} MB upload and download by more than {MaxGrowth / 1048576} MiB: {report}");
    }

    [Fact]
    public async Task All_in_one_streams_a_50_MB_upload_and_download()
    {
        var work = Directory.CreateTempSubdirectory("conduit-media-").FullName;
        await using var p = ConduitProcess.Start(new Dictionary<string, string>
        {
            ["CONDUIT_SERVER_NAME"] = "test.local",
            ["CONDUIT_PORT"] = "0",
            ["CONDUIT_DATABASE_PATH"] = Path.Combine(work, "db"),
            ["CONDUIT_ALLOW_REGISTRATION"] = "true",
            ["CONDUIT_MAX_REQUEST_SIZE"] = "60000000",
        });
        var server = new UrlServer(await p.ListeningAsync());
        await TransferAndMeasure(server, p.Pid);
    }

    sealed class LargeSplitFixture : SplitFixture
    {
        public override long MaxRequestSize => 60_000_000;
    }

    [Fact]
    public async Task Split_streams_a_50_MB_upload_and_download_through_the_edge_and_the_media_service()
    {
        var split = new LargeSplitFixture();
        await split.InitializeAsync();
        try
        {
            var pids = split.Pids();
            await TransferAndMeasure(split, pids["edge"], pids["media"]);
        }
        finally { await split.DisposeAsync(); }
    }

    sealed class UrlServer : ServerFixture
    {
        public UrlServer(string url) => BaseUrl = url;
        public override string Mode => "process";
        public override Task InitializeAsync() => Task.CompletedTask;
        public override Task DisposeAsync() => Task.CompletedTask;
    }
}

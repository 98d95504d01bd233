using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using SkiaSharp;
using static Conduit.LoadGen.Out;

namespace Conduit.LoadGen;

/// <summary>
/// The media scenario: the media service through the edge, each figure over --repeat runs and reported by the median
/// run. Uploads of distinct files (--files of --file-kb KB) by --senders clients, then downloads of them; thumbnails of
/// distinct photo-like JPEGs, cold (a size never asked for before) then warm (the same requests again); the server's
/// memory while a --big-mb MB file is uploaded and downloaded.
/// </summary>
internal sealed partial class ScenarioRun
{
    const string UploadPath = "_matrix/media/v3/upload";
    const string DownloadPath = "_matrix/client/v1/media/download/";
    const string ThumbnailPath = "_matrix/client/v1/media/thumbnail/";
    const int ImageWidth = 1600, ImageHeight = 1200;
    /// <summary>A size the server makes only when asked (it makes 800x600 scale and 96x96 crop at upload).</summary>
    const int ThumbWidth = 320, ThumbHeight = 240;
    /// <summary>Every this many downloads, the bytes are hashed and compared with what was uploaded (all are counted).</summary>
    const int HashEvery = 10;
    static readonly TimeSpan MediaTimeout = TimeSpan.FromSeconds(60);
    /// <summary>Server CPU under this much per half-second window, twice in a row: the background thumbnails are done.</summary>
    const double IdleCpuSeconds = 0.05;
    static readonly TimeSpan IdleWaitLimit = TimeSpan.FromSeconds(120);

    /// <summary>A file uploaded by a run: its mxc:// URI without the scheme, length and SHA-256 as sent.</summary>
    sealed record Uploaded(string Ref, long Length, byte[] Sha256);

    /// <summary>Requests of one timed phase: ok, failed, bad (answered but wrong content), latency, server CPU per request.</summary>
    sealed record MediaPhase(string Label, int Ok, int Failed, int Bad, TimeSpan Wall, List<double> Ms, double? CpuMs, bool CutShort)
    {
        public double PerSecond => Ok / Math.Max(0.001, Wall.TotalSeconds);
        public override string ToString() =>
            $"{Ok} in {F(Wall.TotalSeconds, "0.00")} s, {F(PerSecond)}/s, p50 {F(Percentile(Ms, 0.5) ?? 0)} ms, p99 {F(Percentile(Ms, 0.99) ?? 0)} ms" +
            (Failed + Bad > 0 ? $", {Failed} failed, {Bad} bad" : "") + (CutShort ? " (cut short)" : "");
    }

    /// <summary>What one request of a phase came to: its latency (request to last byte) and whether it failed or was wrong.</summary>
    readonly record struct Outcome(double Ms, bool Failed, bool Bad);

    async Task<int> MediaAsync(List<(string, string)> report, CancellationToken hard)
    {
        var clients = await RegisterAsync(o.Users, o.Senders, hard).ConfigureAwait(false);
        if (clients is null) return 1;
        clients = clients.Take(o.Senders).ToList();
        var fileBytes = o.FileKb * 1000;

        using var photo = PhotoLike(ImageWidth, ImageHeight);
        var imageSerial = 0;
        // Made before each run's image uploads, on every core (untimed: the server is idle meanwhile).
        List<byte[]> Images(int n)
        {
            var first = Interlocked.Add(ref imageSerial, n) - n;
            return Enumerable.Range(first + 1, n).AsParallel().AsOrdered().Select(serial => VariantJpeg(photo, serial)).ToList();
        }

        if (o.Warmup > 0)
        {
            var up = await UploadPhaseAsync("warm-up uploads", Math.Min(o.Warmup, o.Files), fileBytes, clients, hard).ConfigureAwait(false);
            var down = await DownloadPhaseAsync("warm-up downloads", up.Files, up.Files.Count, clients, hard).ConfigureAwait(false);
            var images = await UploadImagesAsync("warm-up images", Images(o.ThumbnailConcurrency), clients, hard).ConfigureAwait(false);
            await WaitForIdleAsync(hard).ConfigureAwait(false);
            var cold = await ThumbnailPhaseAsync("warm-up cold", images.Files, clients, hard).ConfigureAwait(false);
            var warm = await ThumbnailPhaseAsync("warm-up warm", images.Files, clients, hard, passes: 1).ConfigureAwait(false);
            Log($"warm-up: {up.Phase}; {down}; thumbnails {cold}, then {warm}");
            await Task.Delay(TimeSpan.FromSeconds(1), hard).ConfigureAwait(false);
        }

        var uploads = new List<MediaPhase>();
        var downloads = new List<MediaPhase>();
        var imageUploads = new List<MediaPhase>();
        var idleWaits = new List<double>();
        var colds = new List<MediaPhase>();
        var warms = new List<MediaPhase>();
        var bigs = new List<BigTransfer>();
        var ok = true;
        for (var run = 1; run <= o.Repeat; run++)
        {
            var up = await UploadPhaseAsync($"R{run} uploads", o.Files, fileBytes, clients, hard).ConfigureAwait(false);
            uploads.Add(up.Phase);
            downloads.Add(await DownloadPhaseAsync($"R{run} downloads", up.Files, o.Downloads, clients, hard).ConfigureAwait(false));

            var sw = Stopwatch.StartNew();
            var jpegs = Images(o.Images);
            Log($"R{run}: {jpegs.Count} JPEGs of {ImageWidth}x{ImageHeight} made in {sw.Elapsed.TotalSeconds:0.0} s, " +
                $"{jpegs.Average(j => j.Length) / 1000:0} KB on average");
            var images = await UploadImagesAsync($"R{run} image uploads", jpegs, clients, hard).ConfigureAwait(false);
            imageUploads.Add(images.Phase);
            var (waited, idle) = await WaitForIdleAsync(hard).ConfigureAwait(false);
            idleWaits.Add(waited.TotalSeconds);
            if (!idle) Log($"R{run}: warning: the server's CPU did not go idle within {IdleWaitLimit.TotalSeconds:0} s; cold thumbnails measured anyway");
            colds.Add(await ThumbnailPhaseAsync($"R{run} cold thumbnails", images.Files, clients, hard).ConfigureAwait(false));
            warms.Add(await ThumbnailPhaseAsync($"R{run} warm thumbnails", images.Files, clients, hard, o.WarmPasses).ConfigureAwait(false));

            if (o.BigMb > 0)
            {
                var big = await BigTransferAsync($"R{run}", clients[0], run, hard).ConfigureAwait(false);
                bigs.Add(big);
                ok &= big.Ok;
            }
        }

        report.Add(("file", $"{o.FileKb} KB of random bytes, distinct per upload, application/octet-stream; {clients.Count} clients at once"));
        ReportPhase(report, "uploads", "upload", uploads);
        ReportPhase(report, "downloads", "download", downloads);
        report.Add(("  checks", $"every download's length; SHA-256 of every {HashEvery}th: " +
            $"{downloads.Sum(d => d.Bad)} bad of {downloads.Sum(d => d.Ok + d.Bad)} answered over {downloads.Count} runs " +
            $"({o.Downloads} a run over the {o.Files} files uploaded)"));
        report.Add(("images", $"{o.Images} distinct {ImageWidth}x{ImageHeight} photo-like JPEGs per run (image/jpeg): " +
            $"{F(MedianRun(imageUploads, p => p.PerSecond).Median.PerSecond)} uploads/s (median)"));
        report.Add(("  background wait", $"{string.Join(", ", idleWaits.Select(w => F(w)))} s until the server's CPU was idle " +
            $"(under {F(IdleCpuSeconds / 0.5 * 100, "0")} % of a core for two 0.5 s windows: the 800x600 and 96x96 thumbnails made at upload are done)"));
        ReportPhase(report, "thumbnails cold", "thumb cold", colds,
            $"{ThumbWidth}x{ThumbHeight} scale, first request for each image; {o.ThumbnailConcurrency} at once");
        ReportPhase(report, "thumbnails warm", "thumb warm", warms, $"the same requests again, {o.WarmPasses} passes");
        _results.Add("image uploads/s", MedianRun(imageUploads, p => p.PerSecond).Median.PerSecond);
        _results.Add("background wait s", Percentile(idleWaits, 0.5));
        if (bigs.Count > 0) ReportBig(report, bigs);

        var failed = uploads.Concat(downloads).Concat(imageUploads).Concat(colds).Concat(warms).Sum(p => p.Failed + p.Bad);
        return ok && failed == 0 ? 0 : 1;
    }

    void ReportPhase(List<(string, string)> report, string title, string label, List<MediaPhase> runs, string? note = null)
    {
        var (m, rates) = MedianRun(runs, p => p.PerSecond);
        report.Add((title, $"{F(m.PerSecond)}/s: {m.Ok} in {F(m.Wall.TotalSeconds, "0.00")} s" + (note is null ? "" : $" ({note})") +
            (m.CutShort ? " (cut short by --phase-timeout-seconds)" : "") + RunsText(rates, "/s")));
        report.Add(("  latency (ms)", Dist(m.Ms)));
        report.Add(("  server CPU", m.CpuMs is { } c ? $"{F(c, "0.00")} ms per request" : "n/a"));
        if (runs.Sum(r => r.Failed + r.Bad) > 0)
            report.Add(("  failures", $"{runs.Sum(r => r.Failed)} failed, {runs.Sum(r => r.Bad)} wrong content over {runs.Count} runs"));
        _results.Add($"{title}/s", m.PerSecond);
        _results.Add($"{label} p50 ms", Percentile(m.Ms, 0.50));
        _results.Add($"{label} p99 ms", Percentile(m.Ms, 0.99));
        _results.Add($"CPU ms/{label}", m.CpuMs, "0.00");
    }

    // ================= the timed phases =================

    /// <summary>
    /// <paramref name="count"/> requests, <paramref name="concurrency"/> at a time, each the <paramref name="request"/>
    /// of its index made by a worker (worker i is client i mod clients); bounded by --phase-timeout-seconds.
    /// </summary>
    async Task<MediaPhase> PhaseAsync(string label, int count, int concurrency, Func<int, int, CancellationToken, Task<Outcome>> request,
        CancellationToken hard)
    {
        using var phase = Phase(hard);
        var next = -1;
        var ms = new ConcurrentQueue<double>();
        int ok = 0, failed = 0, bad = 0;
        async Task Worker(int worker)
        {
            for (var i = Interlocked.Increment(ref next); i < count; i = Interlocked.Increment(ref next))
            {
                var r = await request(i, worker, phase.Token).ConfigureAwait(false);
                if (r.Failed) Interlocked.Increment(ref failed);
                else
                {
                    ms.Enqueue(r.Ms);
                    if (r.Bad) Interlocked.Increment(ref bad);
                    else Interlocked.Increment(ref ok);
                }
            }
        }
        var cpu0 = Cpu.ReadSeconds(o.Pids);
        var start = Stopwatch.GetTimestamp();
        var cut = await CutShortAsync(Task.WhenAll(Enumerable.Range(0, Math.Min(concurrency, count)).Select(Worker)), label, hard).ConfigureAwait(false);
        var wall = Stopwatch.GetElapsedTime(start);
        var result = new MediaPhase(label, ok, failed, bad, wall, ms.ToList(), Cpu.MsPerEvent(cpu0, Cpu.ReadSeconds(o.Pids), ok + bad), cut);
        Log($"{label}: {result}");
        return result;
    }

    async Task<(MediaPhase Phase, List<Uploaded> Files)> UploadPhaseAsync(string label, int count, int bytes, List<User> clients,
        CancellationToken hard)
    {
        var files = new Uploaded?[count];
        var phase = await PhaseAsync(label, count, clients.Count, async (i, worker, ct) =>
        {
            // Fresh random bytes for every upload: identical files are stored once, which would flatter the figure.
            var body = new byte[bytes];
            Random.Shared.NextBytes(body);
            var sha = SHA256.HashData(body);
            var r = await UploadAsync("upload", body, "application/octet-stream", clients[worker % clients.Count], ct).ConfigureAwait(false);
            if (r.Uri is { } uri) files[i] = new Uploaded(uri, bytes, sha);
            return r.Outcome;
        }, hard).ConfigureAwait(false);
        return (phase, files.OfType<Uploaded>().ToList());
    }

    async Task<(MediaPhase Phase, List<Uploaded> Files)> UploadImagesAsync(string label, List<byte[]> jpegs, List<User> clients,
        CancellationToken hard)
    {
        var files = new Uploaded?[jpegs.Count];
        var phase = await PhaseAsync(label, jpegs.Count, clients.Count, async (i, worker, ct) =>
        {
            var r = await UploadAsync("upload image", jpegs[i], "image/jpeg", clients[worker % clients.Count], ct).ConfigureAwait(false);
            if (r.Uri is { } uri) files[i] = new Uploaded(uri, jpegs[i].Length, []);
            return r.Outcome;
        }, hard).ConfigureAwait(false);
        return (phase, files.OfType<Uploaded>().ToList());
    }

    /// <summary>POST /upload; the content URI without "mxc://" (null when refused).</summary>
    async Task<(Outcome Outcome, string? Uri)> UploadAsync(string op, byte[] body, string contentType, User client, CancellationToken ct)
    {
        var content = new ByteArrayContent(body);
        content.Headers.ContentType = new MediaTypeHeaderValue(contentType);
        var r = await _api.SendAsync(op, HttpMethod.Post, UploadPath, content, client.Token, MediaTimeout, ct).ConfigureAwait(false);
        var uri = MatrixApi.Str(r.Json?["content_uri"]);
        if (!r.Ok) return (new Outcome(r.Elapsed.TotalMilliseconds, true, false), null);
        if (uri is null || !uri.StartsWith("mxc://", StringComparison.Ordinal))
        {
            _api.Tally(op, r with { Errcode = "no content_uri" });
            return (new Outcome(r.Elapsed.TotalMilliseconds, true, false), null);
        }
        return (new Outcome(r.Elapsed.TotalMilliseconds, false, false), uri["mxc://".Length..]);
    }

    /// <summary>
    /// <paramref name="count"/> downloads, passes over the files in a shuffled order; every length checked, every
    /// <see cref="HashEvery"/>th body hashed.
    /// </summary>
    Task<MediaPhase> DownloadPhaseAsync(string label, List<Uploaded> files, int count, List<User> clients, CancellationToken hard)
    {
        var order = files.ToArray();
        Random.Shared.Shuffle(order);
        return PhaseAsync(label, order.Length == 0 ? 0 : count, clients.Count, async (i, worker, ct) =>
        {
            var f = order[i % order.Length];
            var r = await _api.SendAsync("download", HttpMethod.Get, DownloadPath + f.Ref, null, clients[worker % clients.Count].Token,
                MediaTimeout, ct).ConfigureAwait(false);
            if (!r.Ok) return new Outcome(r.Elapsed.TotalMilliseconds, true, false);
            var body = r.Body ?? [];
            var bad = body.Length != f.Length || (i % HashEvery == 0 && !SHA256.HashData(body).AsSpan().SequenceEqual(f.Sha256));
            if (bad) _api.Tally("download", r with { Errcode = body.Length != f.Length ? $"length {body.Length}" : "SHA-256 differs" });
            return new Outcome(r.Elapsed.TotalMilliseconds, false, bad);
        }, hard);
    }

    /// <summary>
    /// A 320x240 scale thumbnail of each image (<paramref name="passes"/> times over, image by image),
    /// --thumbnail-concurrency at a time; each must be a 320x240 JPEG.
    /// </summary>
    Task<MediaPhase> ThumbnailPhaseAsync(string label, List<Uploaded> images, List<User> clients, CancellationToken hard, int passes = 1) =>
        PhaseAsync(label, images.Count * passes, o.ThumbnailConcurrency, async (i, worker, ct) =>
        {
            var r = await _api.SendAsync("thumbnail", HttpMethod.Get,
                $"{ThumbnailPath}{images[i % images.Count].Ref}?width={ThumbWidth}&height={ThumbHeight}&method=scale", null,
                clients[worker % clients.Count].Token, MediaTimeout, ct).ConfigureAwait(false);
            if (!r.Ok) return new Outcome(r.Elapsed.TotalMilliseconds, true, false);
            var size = ImageSize(r.Body ?? []);
            var bad = r.ContentType != "image/jpeg" || size != (ThumbWidth, ThumbHeight);
            if (bad) _api.Tally("thumbnail", r with { Errcode = $"{r.ContentType} {size?.ToString() ?? "not an image"}" });
            return new Outcome(r.Elapsed.TotalMilliseconds, false, bad);
        }, hard);

    static (int, int)? ImageSize(byte[] bytes)
    {
        using var data = SKData.CreateCopy(bytes);
        using var codec = SKCodec.Create(data);
        return codec is null ? null : (codec.Info.Width, codec.Info.Height);
    }

    /// <summary>
    /// Waits until the server processes use less than <see cref="IdleCpuSeconds"/> of CPU in each of two half-second
    /// windows in a row (the thumbnails queued by image uploads are made one image at a time and keep a core busy),
    /// at most <see cref="IdleWaitLimit"/>; without readable processes, 5 s.
    /// </summary>
    async Task<(TimeSpan Waited, bool Idle)> WaitForIdleAsync(CancellationToken hard)
    {
        var start = Stopwatch.GetTimestamp();
        var last = Cpu.ReadSeconds(o.Pids);
        if (last is null)
        {
            await Task.Delay(TimeSpan.FromSeconds(5), hard).ConfigureAwait(false);
            return (Stopwatch.GetElapsedTime(start), false);
        }
        var quiet = 0;
        while (Stopwatch.GetElapsedTime(start) < IdleWaitLimit)
        {
            await Task.Delay(500, hard).ConfigureAwait(false);
            var now = Cpu.ReadSeconds(o.Pids);
            quiet = now - last < IdleCpuSeconds ? quiet + 1 : 0;
            last = now;
            if (quiet == 2) return (Stopwatch.GetElapsedTime(start), true);
        }
        return (Stopwatch.GetElapsedTime(start), false);
    }

    // ================= test images =================

    /// <summary>
    /// A photo-like picture, drawn once: a sky gradient, soft blobs of colour and fine noise, so that JPEG has about as
    /// much to encode (and the server to decode) as in a photo of this size.
    /// </summary>
    static SKBitmap PhotoLike(int width, int height)
    {
        var bitmap = new SKBitmap(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Opaque));
        var rnd = new Random(20_26);
        using (var canvas = new SKCanvas(bitmap))
        using (var paint = new SKPaint { IsAntialias = true })
        {
            using (var sky = SKShader.CreateLinearGradient(new SKPoint(0, 0), new SKPoint(0, height),
                [new SKColor(70, 130, 200), new SKColor(200, 220, 235), new SKColor(90, 120, 60)], null, SKShaderTileMode.Clamp))
            {
                paint.Shader = sky;
                canvas.DrawRect(0, 0, width, height, paint);
            }
            for (var i = 0; i < 80; i++)
            {
                var center = new SKPoint(rnd.Next(width), rnd.Next(height));
                var radius = 20 + rnd.Next(Math.Min(width, height) / 4);
                var color = new SKColor((byte)rnd.Next(256), (byte)rnd.Next(256), (byte)rnd.Next(256));
                using var blob = SKShader.CreateRadialGradient(center, radius, [color.WithAlpha(200), color.WithAlpha(0)], null, SKShaderTileMode.Clamp);
                paint.Shader = blob;
                canvas.DrawCircle(center, radius, paint);
            }
        }
        var pixels = bitmap.GetPixelSpan();
        for (var i = 0; i < pixels.Length; i++)
            if ((i & 3) != 3) pixels[i] = (byte)Math.Clamp(pixels[i] + rnd.Next(-12, 13), 0, 255);
        return bitmap;
    }

    /// <summary>The picture with one 64x64 block of random pixels, at a place and with bytes of its own: a JPEG whose
    /// SHA-256 differs from every other's, so each upload is a new file with its own thumbnails.</summary>
    static byte[] VariantJpeg(SKBitmap photo, int serial)
    {
        using var copy = photo.Copy();
        var rnd = new Random(serial);
        var x0 = rnd.Next(photo.Width - 64);
        var y0 = rnd.Next(photo.Height - 64);
        for (var y = y0; y < y0 + 64; y++)
            for (var x = x0; x < x0 + 64; x++)
                copy.SetPixel(x, y, new SKColor((uint)rnd.Next() | 0xFF000000));
        using var data = copy.Encode(SKEncodedImageFormat.Jpeg, 90);
        return data.ToArray();
    }

    // ================= the large transfer =================

    /// <summary>Memory of one server process around the large transfer, in kB.</summary>
    sealed record ProcessMemory(string Name, long? BeforeKb, long? PeakSampledKb, long? HwmKb, long? AfterKb, int Samples);

    sealed record BigTransfer(bool Ok, string Problem, TimeSpan Upload, TimeSpan Download, List<ProcessMemory> Processes,
        long? PeakSumKb, bool HwmReset)
    {
        static long? Sum(IEnumerable<long?> v) => v.Any(x => x is not null) ? v.Sum() : null;
        public long? BeforeKb => Sum(Processes.Select(p => p.BeforeKb));
        public long? HwmKb => Sum(Processes.Select(p => p.HwmKb));
        public ProcessMemory? Of(string name) => Processes.FirstOrDefault(p => p.Name == name);
    }

    /// <summary>
    /// The server processes the transfer goes through: in split mode the edge and the media service (named so in
    /// --pids), else every process given.
    /// </summary>
    List<int> TransferPids()
    {
        var named = o.Pids.Where(p => o.PidName(p) is "edge" or "media").ToList();
        return named.Count > 0 ? named : [.. o.Pids];
    }

    /// <summary>
    /// --big-mb MB of pseudo-random bytes uploaded from a generator (the client holds none of it), then downloaded and
    /// hashed as it arrives; each process's RSS sampled every 50 ms and its VmHWM, reset just before.
    /// </summary>
    async Task<BigTransfer> BigTransferAsync(string tag, User client, int seed, CancellationToken hard)
    {
        var pids = TransferPids();
        var size = o.BigMb * 1_000_000L;
        await Task.Delay(TimeSpan.FromSeconds(1), hard).ConfigureAwait(false);
        var before = pids.ToDictionary(p => p, Rss.ReadOneKb);
        var reset = pids.All(Rss.ResetPeak);
        if (!reset) Log($"{tag}: warning: cannot reset VmHWM (/proc/PID/clear_refs); the high-water mark is since the process started");

        TimeSpan upload = default, download = default;
        var problem = "";
        await using var sampler = new RssSampler(pids, TimeSpan.FromMilliseconds(50), hard);
        using var phase = Phase(hard);
        var start = Stopwatch.GetTimestamp();
        var content = new GeneratedContent(size, seed);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        var r = await _api.SendAsync("upload big", HttpMethod.Post, UploadPath + "?filename=big.bin", content, client.Token,
            TimeSpan.FromSeconds(o.PhaseTimeoutSeconds), hard).ConfigureAwait(false);
        upload = Stopwatch.GetElapsedTime(start);
        var uri = MatrixApi.Str(r.Json?["content_uri"]);
        if (!r.Ok || uri is null) problem = $"upload: {r.Describe()}";
        else
        {
            var expected = content.Sha256!;
            start = Stopwatch.GetTimestamp();
            try
            {
                using var req = new HttpRequestMessage(HttpMethod.Get, new Uri(o.Url, DownloadPath + uri["mxc://".Length..]));
                req.Headers.Authorization = new AuthenticationHeaderValue("Bearer", client.Token);
                using var resp = await _http.SendAsync(req, HttpCompletionOption.ResponseHeadersRead, phase.Token).ConfigureAwait(false);
                if (!resp.IsSuccessStatusCode) problem = $"download: HTTP {(int)resp.StatusCode}";
                else
                {
                    await using var body = await resp.Content.ReadAsStreamAsync(phase.Token).ConfigureAwait(false);
                    using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
                    var buffer = new byte[64 * 1024];
                    long length = 0;
                    for (int n; (n = await body.ReadAsync(buffer, phase.Token).ConfigureAwait(false)) > 0; length += n)
                        hash.AppendData(buffer, 0, n);
                    download = Stopwatch.GetElapsedTime(start);
                    if (length != size) problem = $"download: {length} bytes of {size}";
                    else if (!hash.GetHashAndReset().AsSpan().SequenceEqual(expected)) problem = "download: SHA-256 differs from the upload's";
                }
            }
            catch (Exception e) when (e is HttpRequestException or IOException or OperationCanceledException && !hard.IsCancellationRequested)
            {
                problem = $"download: {e.GetType().Name} {e.Message}";
            }
        }
        var processes = pids.Select(p => new ProcessMemory(o.PidName(p), before[p], sampler.PeakOfKb(p), Rss.ReadPeakKb(p), Rss.ReadOneKb(p), sampler.Samples)).ToList();
        var result = new BigTransfer(problem.Length == 0, problem, upload, download, processes, sampler.PeakKb, reset);
        if (!result.Ok)
        {
            Log($"{tag}: error: {o.BigMb} MB transfer failed: {problem}");
            _api.Errors.AddOrUpdate($"big transfer {problem}", 1, (_, n) => n + 1);
        }
        Log($"{tag}: {o.BigMb} MB up in {upload.TotalSeconds:0.00} s, down in {download.TotalSeconds:0.00} s; " +
            string.Join("; ", processes.Select(p => $"{p.Name} RSS before {Rss.Mb(p.BeforeKb)}, peak {Rss.Mb(p.PeakSampledKb)}, VmHWM {Rss.Mb(p.HwmKb)}, after {Rss.Mb(p.AfterKb)}")));
        return result;
    }

    void ReportBig(List<(string, string)> report, List<BigTransfer> runs)
    {
        static double? Median(IEnumerable<long?> kb) =>
            kb.Where(v => v is not null).Select(v => v!.Value / 1024.0).ToList() is { Count: > 0 } l ? Percentile(l, 0.5) : null;
        string Mb(double? v) => v is { } x ? $"{F(x)} MB" : "n/a";
        var names = runs[0].Processes.Select(p => p.Name).ToList();
        var okRuns = runs.Where(r => r.Ok).ToList();
        double? Rate(Func<BigTransfer, TimeSpan> t) =>
            okRuns.Count > 0 ? Percentile(okRuns.Select(r => o.BigMb / Math.Max(0.001, t(r).TotalSeconds)).ToList(), 0.5) : null;
        report.Add(($"{o.BigMb} MB transfer", $"{okRuns.Count} of {runs.Count} runs complete with the SHA-256 checked" +
            (okRuns.Count < runs.Count ? $" ({string.Join("; ", runs.Where(r => !r.Ok).Select(r => r.Problem))})" : "") +
            $"; upload {F(Rate(r => r.Upload) ?? 0)} MB/s, download {F(Rate(r => r.Download) ?? 0)} MB/s (medians); " +
            $"RSS samples per run {string.Join(", ", runs.Select(r => r.Processes.FirstOrDefault()?.Samples ?? 0))}"));
        foreach (var n in names)
        {
            var each = runs.Select(r => r.Of(n)).OfType<ProcessMemory>().ToList();
            report.Add(($"  {n} RSS", $"before {Mb(Median(each.Select(p => p.BeforeKb)))}, peak sampled every 50 ms {Mb(Median(each.Select(p => p.PeakSampledKb)))}, " +
                $"VmHWM {Mb(Median(each.Select(p => p.HwmKb)))}, after {Mb(Median(each.Select(p => p.AfterKb)))} (medians of {each.Count}; " +
                $"VmHWM of each run: {string.Join(", ", each.Select(p => Rss.Mb(p.HwmKb)))})"));
        }
        if (!runs.All(r => r.HwmReset)) report.Add(("  note", "VmHWM could not be reset: it is the high-water mark since the process started"));
        _results.Add("big upload MB/s", Rate(r => r.Upload));
        _results.Add("big download MB/s", Rate(r => r.Download));
        _results.Add("big RSS before MB", Median(runs.Select(r => r.BeforeKb)));
        _results.Add("big RSS peak MB", Median(runs.Select(r => r.PeakSumKb)));
        _results.Add("big VmHWM MB", Median(runs.Select(r => r.HwmKb)));
        // Per role in split mode; the same rows (n/a) in all-in-one, where the one process is both.
        foreach (var role in new[] { "edge", "media" })
        {
            var each = runs.Select(r => r.Of(role)).OfType<ProcessMemory>().ToList();
            _results.Add($"big {role} RSS before MB", Median(each.Select(p => p.BeforeKb)));
            _results.Add($"big {role} RSS peak MB", Median(each.Select(p => p.PeakSampledKb)));
            _results.Add($"big {role} VmHWM MB", Median(each.Select(p => p.HwmKb)));
        }
    }

    /// <summary>
    /// A request body of pseudo-random bytes (xorshift64*) made 64 KiB at a time as they are sent, so that a large
    /// upload needs no memory in the client; hashed on the way (<see cref="Sha256"/> once sent).
    /// </summary>
    sealed class GeneratedContent(long length, int seed) : HttpContent
    {
        ulong _state = 0x9E3779B97F4A7C15UL ^ (ulong)seed;

        public byte[]? Sha256 { get; private set; }

        protected override Task SerializeToStreamAsync(Stream stream, System.Net.TransportContext? context) =>
            SerializeToStreamAsync(stream, context, CancellationToken.None);

        protected override async Task SerializeToStreamAsync(Stream stream, System.Net.TransportContext? context, CancellationToken ct)
        {
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            var buffer = new byte[64 * 1024];
            for (var left = length; left > 0;)
            {
                var n = (int)Math.Min(buffer.Length, left);
                Fill(buffer.AsSpan(0, n));
                hash.AppendData(buffer, 0, n);
                await stream.WriteAsync(buffer.AsMemory(0, n), ct).ConfigureAwait(false);
                left -= n;
            }
            Sha256 = hash.GetHashAndReset();
        }

        protected override bool TryComputeLength(out long size)
        {
            size = length;
            return true;
        }

        void Fill(Span<byte> buffer)
        {
            var words = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ulong>(buffer[..(buffer.Length & ~7)]);
            for (var i = 0; i < words.Length; i++) words[i] = Next();
            for (var i = buffer.Length & ~7; i < buffer.Length; i++) buffer[i] = (byte)Next();
        }

        ulong Next()
        {
            _state ^= _state >> 12;
            _state ^= _state << 25;
            _state ^= _state >> 27;
            return _state * 0x2545F4914F6CDD1DUL;
        }
    }
}

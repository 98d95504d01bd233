using System.Diagnostics;
using System.Globalization;

namespace Conduit.LoadGen;

/// <summary>
/// A server the load generator starts itself from a config it writes (the appservice scenario: the registration
/// must name the listener's port before the server starts), all-in-one or split, on ports the system gives:
/// all-in-one is the build run with <c>port = 0</c> in its config, its URL read from its <c>conduit: listening on
/// URL</c> line; split is <c>scripts/split-up.sh WORKDIR auto</c> with the config as <c>CONDUIT_CONFIG</c>, which
/// waits on each part's own line and prints the edge's URL. Nothing is probed with a sleep, and no port is assumed
/// free. Rate limits are off (in the config). Logs stay in the work directory; the databases are removed.
/// </summary>
internal sealed class OwnServer : IAsyncDisposable
{
    const string ListeningPrefix = "conduit: listening on ";

    readonly Process? _aio;
    readonly string? _splitDir;
    readonly string? _splitDown;
    readonly string _work;

    OwnServer(Uri url, List<(int Pid, string Name)> processes, Process? aio, string? splitDir, string? splitDown, string work)
    {
        Url = url;
        Processes = processes;
        _aio = aio;
        _splitDir = splitDir;
        _splitDown = splitDown;
        _work = work;
    }

    public Uri Url { get; private set; }
    /// <summary>The server's processes (one all-in-one; six split, named by role).</summary>
    public List<(int Pid, string Name)> Processes { get; }

    /// <summary>--conduit, else CONDUIT_BIN, else CONDUIT_DLL, else the Release build of the edge beside the load
    /// generator's (artifacts/bin/Conduit.LoadGen/release → artifacts/bin/Conduit.Edge/release/conduit.dll).</summary>
    public static string FindBuild(Options o)
    {
        var given = o.Conduit ?? Environment.GetEnvironmentVariable("CONDUIT_BIN") ?? Environment.GetEnvironmentVariable("CONDUIT_DLL");
        return Path.GetFullPath(given ?? Path.Combine(AppContext.BaseDirectory, "..", "..", "Conduit.Edge", "release", "conduit.dll"));
    }

    /// <summary>--split-up, else scripts/split-up.sh of the first checkout (a directory holding Conduit.Services.sln)
    /// found above the build, the current directory or the load generator; null when there is none.</summary>
    public static string? FindSplitUp(Options o, string build)
    {
        if (o.SplitUp is { } given) return Path.GetFullPath(given);
        foreach (var start in new[] { Path.GetDirectoryName(build), Environment.CurrentDirectory, AppContext.BaseDirectory })
        {
            for (var d = start is null ? null : new DirectoryInfo(start); d is not null; d = d.Parent)
            {
                var script = Path.Combine(d.FullName, "scripts", "split-up.sh");
                if (File.Exists(Path.Combine(d.FullName, "Conduit.Services.sln")) && File.Exists(script)) return script;
            }
        }
        return null;
    }

    /// <param name="globalLines">TOML lines added to [global] (e.g. app_service_config_files)</param>
    public static async Task<OwnServer> StartAsync(Options o, string build, string work, string serverName, string globalLines,
        TimeSpan timeout, CancellationToken ct)
    {
        var split = o.Mode == "split";
        var dir = Path.Combine(work, "server");
        Directory.CreateDirectory(dir);
        var db = Path.Combine(dir, "db");
        if (Directory.Exists(db)) Directory.Delete(db, recursive: true);
        var config = Path.Combine(dir, "conduit.toml");
        var logLevel = Environment.GetEnvironmentVariable("CONDUIT_LOG") ?? "warn";
        File.WriteAllText(config, $$"""
            [global]
            server_name = "{{serverName}}"
            address = "127.0.0.1"
            port = 0
            database_path = "{{db}}"
            allow_registration = true
            log = "{{logLevel}}"
            rate_limits = { enabled = false }
            {{globalLines}}

            """);

        var isDll = build.EndsWith(".dll", StringComparison.OrdinalIgnoreCase);
        if (!split)
        {
            var log = Path.Combine(work, "conduit.log");
            var psi = new ProcessStartInfo(isDll ? "dotnet" : build)
            {
                WorkingDirectory = dir,
                UseShellExecute = false,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            if (isDll) psi.ArgumentList.Add(build);
            CleanEnvironment(psi);
            psi.Environment["CONDUIT_CONFIG"] = config;
            var p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {build}");
            var listening = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
            var writer = new StreamWriter(log, append: true) { AutoFlush = true };
            void OnLine(string? line)
            {
                if (line is null) return;
                lock (writer) writer.WriteLine(line);
                if (line.StartsWith(ListeningPrefix, StringComparison.Ordinal))
                    listening.TrySetResult(line[ListeningPrefix.Length..].Split(' ', 2)[0]);
            }
            p.OutputDataReceived += (_, e) => OnLine(e.Data);
            p.ErrorDataReceived += (_, e) => OnLine(e.Data);
            p.BeginOutputReadLine();
            p.BeginErrorReadLine();
            var server = new OwnServer(new Uri("http://127.0.0.1/"), [(p.Id, "conduit")], p, null, null, work) { _log = writer };
            // The server's "listening on" line is printed once it listens on the port the system gave it.
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
            cts.CancelAfter(timeout);
            var exited = p.WaitForExitAsync(cts.Token);
            try
            {
                var first = await Task.WhenAny(listening.Task, exited).ConfigureAwait(false);
                if (first != listening.Task)
                {
                    await exited.ConfigureAwait(false); // throws when cancelled (timeout or the run's end)
                    throw new InvalidOperationException($"the server exited (code {p.ExitCode}) before listening; the end of {log}:\n{Tail(log)}");
                }
            }
            catch (Exception) when (!listening.Task.IsCompleted)
            {
                await server.DisposeAsync().ConfigureAwait(false);
                if (ct.IsCancellationRequested) throw new OperationCanceledException(ct);
                throw new InvalidOperationException($"the server did not say it listens within {timeout.TotalSeconds:0} s; the end of {log}:\n{Tail(log)}");
            }
            server.Url = new Uri((await listening.Task.ConfigureAwait(false)).TrimEnd('/') + "/");
            return server;
        }

        var splitUp = FindSplitUp(o, build) ?? throw new InvalidOperationException(
            "split mode needs scripts/split-up.sh: pass --split-up PATH (none found above the build, the current directory or the load generator)");
        var splitDown = Path.Combine(Path.GetDirectoryName(splitUp)!, "split-down.sh");
        var splitDir = Path.Combine(dir, "split");
        var upLog = Path.Combine(work, "split-up.log");
        var spsi = new ProcessStartInfo("/bin/sh", ["-c", "exec \"$0\" \"$1\" auto 2>> \"$2\"", splitUp, splitDir, upLog])
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
        };
        CleanEnvironment(spsi);
        spsi.Environment["CONDUIT_CONFIG"] = config;
        spsi.Environment[isDll ? "CONDUIT_DLL" : "CONDUIT_BIN"] = build;
        var up = Process.Start(spsi) ?? throw new InvalidOperationException($"cannot run {splitUp}");
        var splitServer = new OwnServer(new Uri("http://127.0.0.1/"), [], null, splitDir, splitDown, work);
        string output;
        using (var cts = CancellationTokenSource.CreateLinkedTokenSource(ct))
        {
            cts.CancelAfter(timeout);
            try
            {
                output = await up.StandardOutput.ReadToEndAsync(cts.Token).ConfigureAwait(false);
                await up.WaitForExitAsync(cts.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                try { up.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
                await splitServer.DisposeAsync().ConfigureAwait(false);
                if (ct.IsCancellationRequested) throw;
                throw new InvalidOperationException($"split-up.sh did not finish within {timeout.TotalSeconds:0} s; the end of {upLog}:\n{Tail(upLog)}");
            }
        }
        var rc = up.ExitCode;
        up.Dispose();
        var edge = output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).LastOrDefault();
        if (rc != 0 || edge is null)
        {
            await splitServer.DisposeAsync().ConfigureAwait(false);
            throw new InvalidOperationException($"split-up.sh failed (exit code {rc}); the end of {upLog}:\n{Tail(upLog)}");
        }
        var pids = new List<(int, string)>();
        foreach (var line in File.ReadAllLines(Path.Combine(splitDir, "pids")))
        {
            var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length == 2 && int.TryParse(parts[0], NumberStyles.Integer, CultureInfo.InvariantCulture, out var pid)) pids.Add((pid, parts[1]));
        }
        return new OwnServer(new Uri(edge.TrimEnd('/') + "/"), pids, null, splitDir, splitDown, work);
    }

    StreamWriter? _log;

    /// <summary>Every CONDUIT_* variable is a config override: the server gets none of the load generator's but
    /// CONDUIT_LOG (its log level, also written into the config).</summary>
    static void CleanEnvironment(ProcessStartInfo psi)
    {
        foreach (var k in psi.Environment.Keys.Where(k => k.StartsWith("CONDUIT_", StringComparison.Ordinal) && k != "CONDUIT_LOG").ToList())
            psi.Environment.Remove(k);
    }

    static string Tail(string path)
    {
        try { return string.Join('\n', File.ReadLines(path).TakeLast(12)); }
        catch (IOException) { return "(no log)"; }
    }

    /// <summary>Stops the server (SIGKILL; split: split-down.sh), keeps its logs in the work
    /// directory (split: as split-ROLE.log) and removes its database.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_aio is not null)
        {
            // SIGKILL: its database is thrown away anyway.
            try { _aio.Kill(); } catch (InvalidOperationException) { }
            using (var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10)))
                try { await _aio.WaitForExitAsync(cts.Token).ConfigureAwait(false); }
                catch (OperationCanceledException) { Out.Log($"warning: the server (pid {_aio.Id}) did not exit within 10 s of SIGKILL"); }
            _aio.Dispose();
            if (_log is not null) lock (_log) _log.Dispose();
        }
        if (_splitDir is not null && _splitDown is not null)
        {
            using (var down = Process.Start(_splitDown, [_splitDir]))
                if (down is not null) await down.WaitForExitAsync().ConfigureAwait(false);
            foreach (var log in Directory.Exists(_splitDir) ? Directory.GetFiles(_splitDir, "*.log") : [])
                File.Copy(log, Path.Combine(_work, "split-" + Path.GetFileName(log)), overwrite: true);
        }
        try { Directory.Delete(Path.Combine(_work, "server"), recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}

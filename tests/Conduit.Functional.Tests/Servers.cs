using System.Collections;
using System.Diagnostics;
using Conduit.Common.Config;
using Conduit.Common.Storage;
using Conduit.Edge;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;

namespace Conduit.Functional.Tests;

/// <summary>A running server reached through its edge, whatever the deployment mode.</summary>
public abstract class ServerFixture : IAsyncLifetime
{
    public string BaseUrl { get; protected set; } = "";
    public HttpClient Http { get; }
    /// <summary>The server_name: "test.local" unless the fixture names the server itself (a federation pair names
    /// each server localhost:PORT after its port).</summary>
    public string ServerName { get; protected set; } = "test.local";
    public abstract string Mode { get; }
    protected string Work { get; } = Directory.CreateTempSubdirectory("conduit-test-").FullName;
    /// <summary>database_path: one database all-in-one, a folder per service (database_path/ROLE) split.</summary>
    public string DatabasePath => Path.Combine(Work, "db");

    /// <summary>Lines added to [global]. The shared suites register many users from 127.0.0.1 within seconds, so they
    /// run without rate limits; <see cref="RateLimitTests"/> runs with the defaults.</summary>
    protected virtual string ExtraConfig => "rate_limits = { enabled = false }";

    /// <summary>max_request_size: small, so the size limits are quick to test.</summary>
    public virtual long MaxRequestSize => 1_000_000;

    protected ServerFixture() : this(null) { }

    /// <summary><paramref name="handler"/>: how <see cref="Http"/> connects (e.g. trusting a test CA); null for the default.</summary>
    protected ServerFixture(HttpMessageHandler? handler)
        => Http = new(handler ?? new SocketsHttpHandler { MaxConnectionsPerServer = 64 }) { Timeout = TimeSpan.FromSeconds(60) };

    public abstract Task InitializeAsync();
    public abstract Task DisposeAsync();

    /// <summary>Removes the fixture's work directory (database, logs): a test run leaves nothing behind in /tmp.</summary>
    protected void DeleteWork()
    {
        try { Directory.Delete(Work, recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    // From the test binaries (artifacts/ inside the repository), else from this source file: with CONDUIT_ARTIFACTS
    // the binaries live outside the repository.
    public static string RepoRoot([System.Runtime.CompilerServices.CallerFilePath] string sourceFile = "")
    {
        static string? Up(string? dir)
        {
            var d = dir is null ? null : new DirectoryInfo(dir);
            while (d is not null && !File.Exists(Path.Combine(d.FullName, "Conduit.Services.sln"))) d = d.Parent;
            return d?.FullName;
        }
        return Up(AppContext.BaseDirectory) ?? Up(Path.GetDirectoryName(sourceFile)) ?? throw new InvalidOperationException("repository root not found");
    }
}

/// <summary>All-in-one: the real host (edge and every service in one process) on a loopback port the system picks
/// when it binds (port 0), read back from the server: no port is chosen first and bound later.</summary>
public class AllInOneFixture : ServerFixture
{
    WebApplication? _app;
    public override string Mode => "all-in-one";
    protected virtual string Backend => "rocksdb";
    protected virtual string Registration => "allow_registration = true";
    public IServiceProvider Services => _app!.Services;
    public GlobalConfig Config { get; private set; } = null!;

    public AllInOneFixture() { }
    protected AllInOneFixture(HttpMessageHandler? handler) : base(handler) { }

    public override Task InitializeAsync() => StartHostAsync(0);

    /// <summary>Builds the host from the config and starts it on <paramref name="port"/> (0: the system picks one).
    /// A start that fails leaves nothing open (the database is closed again) and throws.</summary>
    protected async Task StartHostAsync(int port)
    {
        var toml = $"""
            [global]
            server_name = "{ServerName}"
            address = "127.0.0.1"
            port = {port}
            database_path = "{Path.Combine(Work, "db")}"
            database_backend = "{Backend}"
            {Registration}
            max_request_size = {MaxRequestSize}
            {ExtraConfig}
            """;
        var loaded = ConfigLoader.Parse(toml, "test.toml", new Hashtable());
        Config = loaded.Global;
        _app = ConduitHost.Build(loaded, ConduitHost.AllInOne);
        try
        {
            await _app.StartAsync();
        }
        catch
        {
            await StopHostAsync();
            throw;
        }
        // The public listener's: not the metrics listener's when [global.metrics] is on, nor the control socket's.
        var metrics = _app.Services.GetService<MetricsEndpoint.Listener>()?.Url;
        var address = _app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses
            .First(a => a.TrimEnd('/') != metrics && !a.StartsWith("http://unix:", StringComparison.Ordinal));
        BaseUrl = address.TrimEnd('/');
    }

    /// <summary>Stops the host and closes its database (the host does not close a store it was handed), so the same
    /// database can be opened again.</summary>
    protected async Task StopHostAsync()
    {
        if (_app is null) return;
        var store = _app.Services.GetService<IKeyValueStore>();
        await _app.DisposeAsync();
        store?.Dispose();
        _app = null;
    }

    public override async Task DisposeAsync()
    {
        await StopHostAsync();
        Http.Dispose();
        DeleteWork();
    }
}

/// <summary>All-in-one on the SQLite backend: the same behaviour from one database file.</summary>
public sealed class AllInOneSqliteFixture : AllInOneFixture
{
    public override string Mode => "all-in-one (sqlite)";
    protected override string Backend => "sqlite";
}

/// <summary>Split: six processes started by scripts/split-up.sh, the same script a person uses, in its mode that
/// chooses every port itself (and retries when one turns out taken).</summary>
public class SplitFixture : ServerFixture
{
    public override string Mode => "split";
    public string Secret { get; } = "test-secret-" + Guid.NewGuid().ToString("N");
    /// <summary>Each part's address as split-up.sh wrote it to WORKDIR/ports: "edge", "keys", ...</summary>
    public IReadOnlyDictionary<string, string> Addresses { get; private set; } = new Dictionary<string, string>();

    public SplitFixture() { }
    protected SplitFixture(HttpMessageHandler? handler) : base(handler) { }

    public override async Task InitializeAsync()
    {
        var (code, err) = await SplitUpAsync("auto");
        if (code != 0) throw new InvalidOperationException($"split-up.sh failed ({code}): {err}");
    }

    /// <summary>Writes WORKDIR/conduit.toml and runs split-up.sh WORKDIR <paramref name="edgePort"/> auto ("auto": the
    /// edge's port too). On success (exit code 0) sets <see cref="BaseUrl"/> and <see cref="Addresses"/>; returns the
    /// exit code (3: the edge's given port was taken) and what the script wrote to stderr.</summary>
    protected async Task<(int Code, string Stderr)> SplitUpAsync(string edgePort)
    {
        File.WriteAllText(Path.Combine(Work, "conduit.toml"), $"""
            [global]
            server_name = "{ServerName}"
            allow_registration = true
            max_request_size = {MaxRequestSize}
            {ExtraConfig}
            """);
        var psi = new ProcessStartInfo("bash", [Path.Combine(RepoRoot(), "scripts", "split-up.sh"), Work, edgePort, "auto"])
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
        };
        psi.Environment["CONDUIT_DLL"] = typeof(ConduitHost).Assembly.Location;
        psi.Environment["CONDUIT_CONFIG"] = Path.Combine(Work, "conduit.toml");
        psi.Environment["CONDUIT_SERVICES__INTERNAL_SECRET"] = Secret;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var err = await p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        if (p.ExitCode != 0) return (p.ExitCode, err);
        BaseUrl = (await stdout).Trim();
        Addresses = File.ReadAllLines(Path.Combine(Work, "ports")).Select(l => l.Split(' ', 2)).ToDictionary(f => f[0], f => f[1]);
        return (0, err);
    }

    /// <summary>Stops every part (split-down.sh); the databases stay.</summary>
    protected async Task SplitDownAsync()
    {
        using var p = Process.Start("bash", [Path.Combine(RepoRoot(), "scripts", "split-down.sh"), Work]);
        await p.WaitForExitAsync();
    }

    /// <summary>The process ID of each part, from WORKDIR/pids.</summary>
    public IReadOnlyDictionary<string, int> Pids()
        => File.ReadAllLines(Path.Combine(Work, "pids")).Select(l => l.Split(' ', 2)).ToDictionary(f => f[1], f => int.Parse(f[0], System.Globalization.CultureInfo.InvariantCulture));

    /// <summary>What a part wrote to its log (stdout and stderr) so far.</summary>
    public string Log(string role) => File.ReadAllText(Path.Combine(Work, role + ".log"));

    public override async Task DisposeAsync()
    {
        await SplitDownAsync();
        Http.Dispose();
        DeleteWork();
    }
}

/// <summary>
/// The real `conduit` executable in a child process, as a person starts it, with only the CONDUIT_* variables the
/// test gives. Its address comes from its startup summary, so it can listen on port 0.
/// </summary>
public sealed class ConduitProcess : IAsyncDisposable
{
    readonly Process _p;
    readonly List<string> _stdout = [], _stderr = [];
    readonly TaskCompletionSource<string> _listening = new(TaskCreationOptions.RunContinuationsAsynchronously);

    ConduitProcess(Process p) => _p = p;

    public static ConduitProcess Start(IReadOnlyDictionary<string, string> environment, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet", [typeof(ConduitHost).Assembly.Location, .. args])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var k in psi.Environment.Keys.Where(k => k.StartsWith("CONDUIT_", StringComparison.Ordinal)).ToList())
            psi.Environment.Remove(k);
        foreach (var (k, v) in environment) psi.Environment[k] = v;
        var cp = new ConduitProcess(new Process { StartInfo = psi });
        cp._p.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (cp._stdout) cp._stdout.Add(e.Data);
            if (e.Data.StartsWith(StartupReport.ListeningPrefix, StringComparison.Ordinal))
                cp._listening.TrySetResult(e.Data[StartupReport.ListeningPrefix.Length..].Split(' ')[0]);
        };
        cp._p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (cp._stderr) cp._stderr.Add(e.Data); };
        cp._p.Start();
        cp._p.BeginOutputReadLine();
        cp._p.BeginErrorReadLine();
        return cp;
    }

    public IReadOnlyList<string> Stdout { get { lock (_stdout) return [.. _stdout]; } }
    public IReadOnlyList<string> Stderr { get { lock (_stderr) return [.. _stderr]; } }

    /// <summary>The URL from "conduit: listening on URL"; fails with the output if the process exits first.</summary>
    public async Task<string> ListeningAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(60));
        var exited = _p.WaitForExitAsync(cts.Token);
        var first = await Task.WhenAny(_listening.Task, exited);
        if (first == _listening.Task) return await _listening.Task;
        await exited.ContinueWith(_ => { }, TaskScheduler.Default);
        throw new InvalidOperationException(_p.HasExited
            ? $"conduit exited with code {_p.ExitCode} before listening:\n{string.Join('\n', Stdout.Concat(Stderr))}"
            : $"conduit did not say where it listens within the timeout:\n{string.Join('\n', Stdout.Concat(Stderr))}");
    }

    /// <summary>The first line of standard output that matches, once the process has written it (the lines after
    /// "listening on" come a moment later).</summary>
    public async Task<string> LineAsync(Func<string, bool> match, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(30));
        while (true)
        {
            if (Stdout.FirstOrDefault(match) is { } line) return line;
            if (DateTime.UtcNow > deadline || _p.HasExited)
                throw new InvalidOperationException($"conduit never wrote the line expected:\n{string.Join('\n', Stdout.Concat(Stderr))}");
            await Task.Delay(50);
        }
    }

    public async Task<int> ExitCodeAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(60));
        await _p.WaitForExitAsync(cts.Token);
        return _p.ExitCode;
    }

    public void Kill() => _p.Kill(entireProcessTree: true);

    public int Pid => _p.Id;

    public async ValueTask DisposeAsync()
    {
        if (!_p.HasExited)
        {
            _p.Kill(entireProcessTree: true);
            await _p.WaitForExitAsync();
        }
        _p.Dispose();
    }
}

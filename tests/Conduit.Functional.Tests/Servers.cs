using System.Collections;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Conduit.Common.Config;
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
    public HttpClient Http { get; } = new(new SocketsHttpHandler { MaxConnectionsPerServer = 64 }) { Timeout = TimeSpan.FromSeconds(60) };
    public string ServerName => "test.local";
    public abstract string Mode { get; }
    protected string Work { get; } = Directory.CreateTempSubdirectory("conduit-test-").FullName;

    /// <summary>Lines added to [global]. The shared suites register many users from 127.0.0.1 within seconds, so they
    /// run without rate limits; <see cref="RateLimitTests"/> runs with the defaults.</summary>
    protected virtual string ExtraConfig => "rate_limits = { enabled = false }";

    public abstract Task InitializeAsync();
    public abstract Task DisposeAsync();

    public static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
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

/// <summary>All-in-one: the real host (edge and every service in one process) on a loopback port.</summary>
public class AllInOneFixture : ServerFixture
{
    WebApplication? _app;
    public override string Mode => "all-in-one";
    protected virtual string Backend => "rocksdb";
    protected virtual string Registration => "allow_registration = true";
    public IServiceProvider Services => _app!.Services;
    public GlobalConfig Config { get; private set; } = null!;

    public override async Task InitializeAsync()
    {
        var toml = $"""
            [global]
            server_name = "{ServerName}"
            address = "127.0.0.1"
            port = {FreePort()}
            database_path = "{Path.Combine(Work, "db")}"
            database_backend = "{Backend}"
            {Registration}
            max_request_size = 1_000_000
            {ExtraConfig}
            """;
        var loaded = ConfigLoader.Parse(toml, "test.toml", new Hashtable());
        Config = loaded.Global;
        _app = ConduitHost.Build(loaded, ConduitHost.AllInOne);
        await _app.StartAsync();
        var address = _app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        BaseUrl = address.TrimEnd('/');
    }

    public override async Task DisposeAsync()
    {
        if (_app is not null) await _app.DisposeAsync();
        Http.Dispose();
    }
}

/// <summary>All-in-one on the SQLite backend: the same behaviour from one database file.</summary>
public sealed class AllInOneSqliteFixture : AllInOneFixture
{
    public override string Mode => "all-in-one (sqlite)";
    protected override string Backend => "sqlite";
}

/// <summary>Split: six processes started by scripts/split-up.sh, the same script a person uses.</summary>
public class SplitFixture : ServerFixture
{
    public override string Mode => "split";
    public int FirstInternalPort { get; private set; }
    public string Secret { get; } = "test-secret-" + Guid.NewGuid().ToString("N");

    public override async Task InitializeAsync()
    {
        var edge = FreePort();
        // Five consecutive free ports for the services.
        FirstInternalPort = FreePort();
        var root = RepoRoot();
        File.WriteAllText(Path.Combine(Work, "conduit.toml"), $"""
            [global]
            server_name = "{ServerName}"
            allow_registration = true
            max_request_size = 1_000_000
            {ExtraConfig}
            """);
        var psi = new ProcessStartInfo("bash", [Path.Combine(root, "scripts", "split-up.sh"), Work, edge.ToString(), FirstInternalPort.ToString()])
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
        };
        psi.Environment["CONDUIT_DLL"] = typeof(ConduitHost).Assembly.Location;
        psi.Environment["CONDUIT_CONFIG"] = Path.Combine(Work, "conduit.toml");
        psi.Environment["CONDUIT_SERVICES__INTERNAL_SECRET"] = Secret;
        using var p = Process.Start(psi)!;
        var err = await p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        if (p.ExitCode != 0) throw new InvalidOperationException($"split-up.sh failed ({p.ExitCode}): {err}");
        BaseUrl = $"http://127.0.0.1:{edge}";
    }

    public override async Task DisposeAsync()
    {
        using var p = Process.Start("bash", [Path.Combine(RepoRoot(), "scripts", "split-down.sh"), Work]);
        await p.WaitForExitAsync();
        Http.Dispose();
    }
}

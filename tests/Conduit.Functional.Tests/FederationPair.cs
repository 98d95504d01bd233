using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Conduit.Edge;
using Conduit.Tests.Support;

namespace Conduit.Functional.Tests;

/// <summary>
/// Two servers that federate with each other over HTTPS on loopback, for end-to-end federation tests: each is a
/// <see cref="ServerFixture"/> (so <c>new MatrixClient(pair.A)</c> works) named <c>localhost:PORT</c> after the port
/// its own edge listens on, which is how the other finds it (a server name with a port is connected to directly,
/// the certificate checked for <c>localhost</c>). One test CA per pair issues both servers' certificates (SAN
/// localhost and 127.0.0.1); both trust it for outgoing federation (<c>federation_ca_file</c>), and so does each
/// fixture's <see cref="ServerFixture.Http"/>. Keys are fetched from the origin only (<c>trusted_servers = []</c>).
/// Either server can be stopped and started again on the same database, port and name.
/// </summary>
public abstract class FederationPair : IAsyncLifetime
{
    readonly TestCa _ca = TestCa.Create("Conduit Federation Pair CA");

    protected FederationPair(Func<TestCa, ServerFixture> create) : this(create, create) { }

    protected FederationPair(Func<TestCa, ServerFixture> createA, Func<TestCa, ServerFixture> createB)
    {
        A = createA(_ca);
        B = createB(_ca);
    }

    /// <summary>The localpart of each server's config admin (registered by the tests that need an admin).</summary>
    public const string AdminLocalpart = "pair_admin";

    /// <summary>The [global] line that makes <see cref="AdminLocalpart"/> an admin of the server named <paramref name="serverName"/>.</summary>
    public static string AdminsConfig(string serverName) => $"admins = [\"@{AdminLocalpart}:{serverName}\"]";

    public ServerFixture A { get; }
    public ServerFixture B { get; }
    public string Mode => A.Mode;

    /// <summary>The port <paramref name="instance"/> (A or B) listens on, which is also in its server name.</summary>
    public int Port(ServerFixture instance) => Instance(instance).Port;

    /// <summary>Stops one server (all its processes in split mode); its database, port and name are kept for
    /// <see cref="StartAsync"/>.</summary>
    public Task StopAsync(ServerFixture instance) => Instance(instance).StopAsync();

    /// <summary>Starts a stopped server again on the same database, port and server name (waiting a little if the
    /// port is briefly taken meanwhile).</summary>
    public Task StartAsync(ServerFixture instance) => Instance(instance).StartAsync();

    IFederationInstance Instance(ServerFixture instance)
        => ReferenceEquals(instance, A) || ReferenceEquals(instance, B) ? (IFederationInstance)instance : throw new ArgumentException("not a server of this pair", nameof(instance));

    public async Task InitializeAsync()
    {
        try
        {
            await Task.WhenAll(A.InitializeAsync(), B.InitializeAsync());
        }
        catch
        {
            await DisposeAsync();
            throw;
        }
    }

    public async Task DisposeAsync()
    {
        await Task.WhenAll(A.DisposeAsync(), B.DisposeAsync());
        _ca.Dispose();
    }
}

/// <summary>Two all-in-one servers, both in this process (the host keeps no static state).</summary>
public sealed class FederationPairFixture() : FederationPair(ca => new AllInOneFederationInstance(ca));

/// <summary>
/// Two all-in-one servers, A named <c>localhost:PORT</c> and B named by an IP literal, <c>127.0.0.1:PORT</c>: server
/// ACLs match names without the port, so only servers of different host names can be told apart by one.
/// </summary>
public sealed class IpLiteralFederationPairFixture() : FederationPair(ca => new AllInOneFederationInstance(ca), ca => new AllInOneFederationInstance(ca, "127.0.0.1"));

/// <summary>Two split deployments, six processes each, from scripts/split-up.sh with the edge's port given.</summary>
public sealed class SplitFederationPairFixture() : FederationPair(ca => new SplitFederationInstance(ca));

/// <summary>A server of a <see cref="FederationPair"/>: its port, and stopping and starting it again.</summary>
public interface IFederationInstance
{
    int Port { get; }
    Task StopAsync();
    Task StartAsync();
}

/// <summary>An all-in-one server of a pair, in process.</summary>
public sealed class AllInOneFederationInstance : AllInOneFixture, IFederationInstance
{
    readonly FederationInstance _f;

    public AllInOneFederationInstance(TestCa ca, string host = "localhost") : base(ca.TrustingHandler()) => _f = new(ca, Work, async port =>
    {
        ServerName = FederationInstance.NameFor(port, host);
        try
        {
            await StartHostAsync(port);
            return true;
        }
        catch (Exception e) when (StartupReport.ListenFailure(e) == "address already in use")
        {
            return false;
        }
    });

    public int Port => _f.Port;
    protected override string ExtraConfig => base.ExtraConfig + "\n" + _f.Config + "\n" + FederationPair.AdminsConfig(ServerName);
    public override Task InitializeAsync() => _f.StartOnNewPortAsync();
    public Task StartAsync() => _f.StartAgainAsync();
    public Task StopAsync() => StopHostAsync();
}

/// <summary>A split server of a pair: split-up.sh WORKDIR PORT auto (exit code 3 when the edge's port is taken).</summary>
public sealed class SplitFederationInstance : SplitFixture, IFederationInstance
{
    readonly FederationInstance _f;

    public SplitFederationInstance(TestCa ca) : base(ca.TrustingHandler()) => _f = new(ca, Work, async port =>
    {
        ServerName = FederationInstance.NameFor(port);
        var (code, err) = await SplitUpAsync(port.ToString(CultureInfo.InvariantCulture));
        return code switch
        {
            0 => true,
            3 => false,
            _ => throw new InvalidOperationException($"split-up.sh failed ({code}): {err}"),
        };
    });

    public int Port => _f.Port;
    protected override string ExtraConfig => base.ExtraConfig + "\n" + _f.Config + "\n" + FederationPair.AdminsConfig(ServerName);
    public override Task InitializeAsync() => _f.StartOnNewPortAsync();
    public Task StartAsync() => _f.StartAgainAsync();
    public Task StopAsync() => SplitDownAsync();
}

/// <summary>
/// What both kinds of pair server share: the TLS files and the config lines for them, and the port. The server's
/// name depends on its port, so the port is chosen before the config is written: one the system had free a moment
/// ago (bound on 127.0.0.1:0, read, closed); when the start finds it taken meanwhile (<c>tryStart</c> answers false),
/// another. A restart keeps the port, waiting while it is taken.
/// </summary>
sealed class FederationInstance
{
    readonly Func<int, Task<bool>> _tryStart;

    /// <summary>Writes a certificate for localhost and 127.0.0.1 issued by <paramref name="ca"/>, its key and the CA
    /// into <paramref name="dir"/>.</summary>
    public FederationInstance(TestCa ca, string dir, Func<int, Task<bool>> tryStart)
    {
        _tryStart = tryStart;
        string certs = Path.Combine(dir, "fullchain.pem"), key = Path.Combine(dir, "privkey.pem"), caFile = Path.Combine(dir, "ca.pem");
        using (var cert = ca.Issue(["localhost"], [IPAddress.Loopback])) ca.WritePem(cert, certs, key);
        ca.WriteCaPem(caFile);
        Config = $$"""
            allow_federation = true
            trusted_servers = []
            ip_range_allowlist = ["127.0.0.1/32"]
            federation_ca_file = "{{caFile}}"
            tls = { certs = "{{certs}}", key = "{{key}}" }
            """;
    }

    /// <summary>Lines for [global]: HTTPS with the certificate, the CA trusted for outgoing federation, keys from
    /// the origin only.</summary>
    public string Config { get; }
    public int Port { get; private set; }

    public static string NameFor(int port, string host = "localhost") => host + ":" + port.ToString(CultureInfo.InvariantCulture);

    public async Task StartOnNewPortAsync()
    {
        const int attempts = 5;
        for (var i = 0; i < attempts; i++)
        {
            int port;
            using (var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
            {
                probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
                port = ((IPEndPoint)probe.LocalEndPoint!).Port;
            }
            if (await _tryStart(port))
            {
                Port = port;
                return;
            }
        }
        throw new InvalidOperationException($"{attempts} ports in a row were taken before the server could listen on them");
    }

    public async Task StartAgainAsync()
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!await _tryStart(Port))
        {
            if (DateTime.UtcNow > deadline) throw new InvalidOperationException($"port {Port} stayed taken for 30 s; the server cannot start again under its name");
            await Task.Delay(500);
        }
    }
}

using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Conduit.LoadGen;

/// <summary>
/// The federation scenario's certificate authority: a self-signed CA, and a certificate it issues for
/// <c>localhost</c> and 127.0.0.1 that every server of the run presents (each trusts the CA for outgoing federation
/// with <c>federation_ca_file</c>, and so does the load generator's HTTP client). After tests/Conduit.Federation.Tests/
/// TestCertificates.cs, which the load generator does not reference.
/// </summary>
internal sealed class ScenarioCa : IDisposable
{
    readonly ECDsa _key;
    public X509Certificate2 Certificate { get; }

    ScenarioCa(ECDsa key, X509Certificate2 cert) => (_key, Certificate) = (key, cert);

    public static ScenarioCa Create()
    {
        var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var req = new CertificateRequest("CN=Conduit.LoadGen federation CA", key, HashAlgorithmName.SHA256);
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        req.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        req.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(req.PublicKey, false));
        var now = DateTimeOffset.UtcNow;
        return new ScenarioCa(key, req.CreateSelfSigned(now.AddDays(-1), now.AddDays(30)));
    }

    /// <summary>Writes a server certificate for localhost and 127.0.0.1 (chain: it, then the CA), its key and the CA
    /// as PEM files into <paramref name="dir"/>; returns their paths.</summary>
    public (string Certs, string Key, string Ca) WriteServerFiles(string dir)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var req = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName("localhost");
        san.AddIpAddress(IPAddress.Loopback);
        req.CertificateExtensions.Add(san.Build());
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, false));
        req.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        var now = DateTimeOffset.UtcNow;
        var serial = RandomNumberGenerator.GetBytes(12);
        serial[0] &= 0x7f;
        using var cert = req.Create(Certificate, now.AddHours(-1), now.AddDays(7), serial);
        string certs = Path.Combine(dir, "fullchain.pem"), keyPath = Path.Combine(dir, "privkey.pem"), ca = Path.Combine(dir, "ca.pem");
        File.WriteAllText(certs, cert.ExportCertificatePem() + "\n" + Certificate.ExportCertificatePem() + "\n");
        File.WriteAllText(keyPath, key.ExportPkcs8PrivateKeyPem() + "\n");
        File.WriteAllText(ca, Certificate.ExportCertificatePem() + "\n");
        return (certs, keyPath, ca);
    }

    public void Dispose()
    {
        Certificate.Dispose();
        _key.Dispose();
    }
}

/// <summary>
/// One all-in-one server of the federation scenario: the real <c>conduit</c> (dll run with dotnet, or an executable)
/// in a child process, named <c>localhost:PORT</c> after the port it listens on (HTTPS, 127.0.0.1), with a fresh
/// database, registration open and rate limits off. Its output goes to <c>LABEL.log</c> in the run's work directory.
/// </summary>
internal sealed class ConduitServer : IAsyncDisposable
{
    readonly Process _process;
    readonly string _dir;

    ConduitServer(string label, int port, Process process, string dir, string log)
    {
        Label = label;
        Port = port;
        _process = process;
        _dir = dir;
        LogPath = log;
    }

    public string Label { get; }
    public int Port { get; }
    public string ServerName => "localhost:" + Port.ToString(CultureInfo.InvariantCulture);
    /// <summary>Where the load generator reaches it: the certificate names 127.0.0.1 as well as localhost.</summary>
    public Uri Url => new($"https://127.0.0.1:{Port.ToString(CultureInfo.InvariantCulture)}/");
    public int Pid => _process.Id;
    public string LogPath { get; }
    public bool Alive => !_process.HasExited;

    /// <summary>
    /// Starts the server on a port the system had free a moment ago (bound on 127.0.0.1:0, read, closed: the name must
    /// be known before the config is written); when it turns out taken meanwhile, another, 5 times at most. Returns once
    /// GET /_matrix/client/versions answers over HTTPS; throws with the end of the log when the server exits or does
    /// not answer within <paramref name="timeout"/>.
    /// </summary>
    public static async Task<ConduitServer> StartAsync(string label, string build, string workRoot, ScenarioCa ca, HttpClient http,
        TimeSpan timeout, CancellationToken ct)
    {
        var dir = Path.Combine(workRoot, label);
        Directory.CreateDirectory(dir);
        var (certs, key, caFile) = ca.WriteServerFiles(dir);
        var log = Path.Combine(workRoot, label + ".log");
        for (var attempt = 1; attempt <= 5; attempt++)
        {
            int port;
            using (var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
            {
                probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
                port = ((IPEndPoint)probe.LocalEndPoint!).Port;
            }
            var db = Path.Combine(dir, "db");
            if (Directory.Exists(db)) Directory.Delete(db, recursive: true);
            var config = Path.Combine(dir, "conduit.toml");
            File.WriteAllText(config, $$"""
                [global]
                server_name = "localhost:{{port}}"
                address = "127.0.0.1"
                port = {{port}}
                database_path = "{{db}}"
                allow_registration = true
                allow_federation = true
                trusted_servers = []
                federation_ca_file = "{{caFile}}"
                tls = { certs = "{{certs}}", key = "{{key}}" }
                """);

            // sh execs the server with its output in the log: the child's pid is the server's.
            string[] command = build.EndsWith(".dll", StringComparison.OrdinalIgnoreCase) ? ["dotnet", build] : [build];
            var psi = new ProcessStartInfo("/bin/sh", ["-c", "exec \"$@\" >> \"$CONDUIT_LOADGEN_LOG\" 2>&1", "sh", .. command])
            {
                WorkingDirectory = dir,
                UseShellExecute = false,
            };
            // Every CONDUIT_* variable is a config override: the server gets only these, and CONDUIT_LOG (its log levels,
            // e.g. "info,Conduit.Federation=debug") when set.
            foreach (var k in psi.Environment.Keys.Where(k => k.StartsWith("CONDUIT_", StringComparison.Ordinal) && k != "CONDUIT_LOG").ToList())
                psi.Environment.Remove(k);
            psi.Environment["CONDUIT_CONFIG"] = config;
            psi.Environment["CONDUIT_RATE_LIMITS__ENABLED"] = "false";
            psi.Environment["CONDUIT_LOADGEN_LOG"] = log;
            File.AppendAllText(log, $"--- conduit.LoadGen: starting {label} as localhost:{port} ({build})\n");
            var p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {build}");
            var server = new ConduitServer(label, port, p, dir, log);

            var sw = Stopwatch.StartNew();
            while (true)
            {
                if (p.HasExited) break;
                var r = await CheckAsync(http, server.Url, ct).ConfigureAwait(false);
                if (r) return server;
                if (sw.Elapsed > timeout)
                {
                    await server.DisposeAsync().ConfigureAwait(false);
                    throw new InvalidOperationException($"{label} did not answer within {timeout.TotalSeconds:0} s; the end of {log}:\n{Tail(log)}");
                }
                await Task.Delay(200, ct).ConfigureAwait(false);
            }
            var text = File.ReadAllText(log);
            p.Dispose();
            if (text.Contains("address already in use", StringComparison.OrdinalIgnoreCase)) continue;
            throw new InvalidOperationException($"{label} exited before answering; the end of {log}:\n{Tail(log)}");
        }
        throw new InvalidOperationException($"{label}: 5 ports in a row were taken before the server could listen on them");
    }

    static async Task<bool> CheckAsync(HttpClient http, Uri url, CancellationToken ct)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(TimeSpan.FromSeconds(5));
        try
        {
            using var r = await http.GetAsync(new Uri(url, "_matrix/client/versions"), cts.Token).ConfigureAwait(false);
            return r.IsSuccessStatusCode;
        }
        catch (HttpRequestException)
        {
            return false;
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            return false;
        }
    }

    static string Tail(string path)
    {
        try { return string.Join('\n', File.ReadLines(path).TakeLast(8)); }
        catch (IOException) { return "(no log)"; }
    }

    /// <summary>SIGKILL: the server gets no chance to say goodbye, as when a machine dies.</summary>
    public async Task KillAsync()
    {
        if (_process.HasExited) return;
        try { _process.Kill(); }
        catch (InvalidOperationException) { return; }
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        try { await _process.WaitForExitAsync(cts.Token).ConfigureAwait(false); }
        catch (OperationCanceledException) { Out.Log($"warning: {Label} (pid {Pid}) did not exit within 10 s of SIGKILL"); }
    }

    /// <summary>Stops the server (SIGKILL: its database is thrown away) and removes its directory (config, database,
    /// certificate); the log stays.</summary>
    public async ValueTask DisposeAsync()
    {
        await KillAsync().ConfigureAwait(false);
        _process.Dispose();
        try { Directory.Delete(_dir, recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}

using System.Collections;
using System.Net;
using System.Security.Cryptography.X509Certificates;
using Conduit.Common.Config;
using Conduit.Edge;
using Conduit.Tests.Support;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;

namespace Conduit.Functional.Tests;

/// <summary>HTTPS on the edge from [global.tls]: served with the configured chain, and a renewed certificate
/// served without a restart.</summary>
public sealed class TlsTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("conduit-tls-").FullName;
    readonly TestCa _ca = TestCa.Create();

    string Certs => Path.Combine(_dir, "fullchain.pem");
    string Key => Path.Combine(_dir, "privkey.pem");

    string Toml(string certs, string key) => $"""
        [global]
        server_name = "tls.test"
        address = "127.0.0.1"
        port = 0
        database_path = "{Path.Combine(_dir, "db")}"
        database_backend = "sqlite"

        [global.tls]
        certs = "{certs}"
        key = "{key}"
        """;

    /// <summary>A client that trusts only the test CA (the chain is validated and the name checked against it),
    /// and tells which certificate the server presented.</summary>
    HttpClient TrustingClient(Action<X509Certificate2> seen) => new(_ca.TrustingHandler(seen));

    [Fact]
    public async Task The_edge_serves_https_from_the_pem_files_and_picks_up_a_renewed_certificate()
    {
        using var first = _ca.Issue(["localhost"], [IPAddress.Loopback]);
        _ca.WritePem(first, Certs, Key);
        await using var app = ConduitHost.Build(ConfigLoader.Parse(Toml(Certs, Key), "test.toml", new Hashtable()), ConduitHost.AllInOne);
        await app.StartAsync();
        var url = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First().TrimEnd('/');
        Assert.StartsWith("https://127.0.0.1:", url);

        X509Certificate2? served = null;
        using (var http = TrustingClient(c => served = c))
        {
            var response = await http.GetAsync(url + "/_matrix/client/versions");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Contains("\"versions\"", await response.Content.ReadAsStringAsync());
        }
        Assert.Equal(first.Thumbprint, served!.Thumbprint);

        // A client that does not trust the test CA refuses the server: validation is real.
        using (var untrusting = new HttpClient())
            await Assert.ThrowsAsync<HttpRequestException>(() => untrusting.GetAsync(url + "/_matrix/client/versions"));

        // Renewal: new files in place (as certbot leaves them); the next connection gets the new certificate.
        using var second = _ca.Issue(["localhost"], [IPAddress.Loopback]);
        _ca.WritePem(second, Certs, Key);
        var later = DateTime.UtcNow.AddSeconds(2);
        File.SetLastWriteTimeUtc(Certs, later);
        File.SetLastWriteTimeUtc(Key, later);
        using (var http = TrustingClient(c => served = c))
            Assert.Equal(HttpStatusCode.OK, (await http.GetAsync(url + "/_matrix/client/versions")).StatusCode);
        Assert.Equal(second.Thumbprint, served!.Thumbprint);
        Assert.NotEqual(first.Thumbprint, second.Thumbprint);

        // A renewal that does not load (a key that is not PEM) keeps the previous certificate in service.
        File.WriteAllText(Key, "not a key");
        using (var http = TrustingClient(c => served = c))
            Assert.Equal(HttpStatusCode.OK, (await http.GetAsync(url + "/_matrix/client/versions")).StatusCode);
        Assert.Equal(second.Thumbprint, served!.Thumbprint);
    }

    [Fact]
    public async Task A_missing_certificate_file_is_one_line_and_exit_code_2()
    {
        var config = Path.Combine(_dir, "conduit.toml");
        File.WriteAllText(config, Toml(Path.Combine(_dir, "missing.pem"), Key));
        await using var p = ConduitProcess.Start(new Dictionary<string, string> { ["CONDUIT_CONFIG"] = config });
        Assert.Equal(2, await p.ExitCodeAsync());
        var line = Assert.Single(p.Stderr);
        Assert.StartsWith("conduit: cannot load the TLS certificate from global.tls certs = ", line);
        Assert.Contains("missing.pem", line);
    }

    public void Dispose()
    {
        _ca.Dispose();
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }
}

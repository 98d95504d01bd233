using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;

namespace Conduit.Federation;

/// <summary>
/// Outgoing HTTPS for federation. Certificates are validated against the system's trust store plus, when
/// <c>federation_ca_file</c> is set, the CA certificates in that PEM file (private or test deployments); there is
/// no way to turn validation off. The name checked is the host of the Host header (SocketsHttpHandler takes the TLS
/// name from it when it is set), which <see cref="FederationHandler"/> sets to what the spec asks for: the server
/// name, or the delegated name from the well-known.
/// </summary>
public static class FederationHttp
{
    /// <summary>Largest number of redirects followed for a well-known (the spec: follow 30x, avoid loops).</summary>
    public const int MaxWellKnownRedirects = 10;

    /// <summary>The CA certificates of a PEM file, or null for none.</summary>
    public static X509Certificate2Collection? LoadCaFile(string? path)
    {
        if (string.IsNullOrEmpty(path)) return null;
        var roots = new X509Certificate2Collection();
        roots.ImportFromPemFile(path);
        if (roots.Count == 0) throw new InvalidDataException($"{path} holds no PEM certificate");
        return roots;
    }

    /// <summary>
    /// The handler every federation request goes through: connections by <paramref name="dns"/>'s addresses (in
    /// order, the first that answers), certificate validation as above. <paramref name="followRedirects"/> is for
    /// well-known lookups only; federation requests themselves are never redirected.
    /// </summary>
    public static SocketsHttpHandler CreateHandler(IFederationDns dns, X509Certificate2Collection? extraRoots, bool followRedirects) => new()
    {
        AllowAutoRedirect = followRedirects,
        MaxAutomaticRedirections = MaxWellKnownRedirects,
        UseCookies = false,
        UseProxy = false,
        ConnectTimeout = TimeSpan.FromSeconds(10),
        PooledConnectionIdleTimeout = TimeSpan.FromMinutes(1),
        ConnectCallback = (context, ct) => ConnectAsync(dns, context.DnsEndPoint, ct),
        SslOptions = new SslClientAuthenticationOptions
        {
            RemoteCertificateValidationCallback = (_, cert, chain, errors) => Validate(cert as X509Certificate2, chain, errors, extraRoots),
        },
    };

    /// <summary>
    /// A certificate the system trusts passes; otherwise, when extra roots are configured, one whose only fault is
    /// its chain passes if the chain builds to one of them. A name mismatch or a missing certificate never passes.
    /// </summary>
    public static bool Validate(X509Certificate2? cert, X509Chain? presented, SslPolicyErrors errors, X509Certificate2Collection? extraRoots)
    {
        if (errors == SslPolicyErrors.None) return true;
        if (cert is null || extraRoots is null || errors != SslPolicyErrors.RemoteCertificateChainErrors) return false;
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(extraRoots);
        // Private CAs seldom publish revocation lists; the system store's certificates are checked as usual above.
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.ApplicationPolicy.Add(new System.Security.Cryptography.Oid("1.3.6.1.5.5.7.3.1"));
        if (presented is not null)
            foreach (var element in presented.ChainElements)
                if (!element.Certificate.Equals(cert)) chain.ChainPolicy.ExtraStore.Add(element.Certificate);
        return chain.Build(cert);
    }

    static async ValueTask<Stream> ConnectAsync(IFederationDns dns, DnsEndPoint endpoint, CancellationToken ct)
    {
        var addresses = IPAddress.TryParse(endpoint.Host, out var literal) ? [literal] : await dns.AddressesAsync(endpoint.Host, ct);
        if (addresses.Length == 0) throw new HttpRequestException($"{endpoint.Host} has no address");
        Exception? last = null;
        foreach (var address in addresses)
        {
            var socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            try
            {
                await socket.ConnectAsync(new IPEndPoint(address, endpoint.Port), ct);
                return new NetworkStream(socket, ownsSocket: true);
            }
            catch (SocketException e)
            {
                socket.Dispose();
                last = e;
            }
        }
        throw new HttpRequestException($"cannot connect to {endpoint.Host}:{endpoint.Port}: {last!.Message}", last);
    }
}

/// <summary>
/// Sends requests addressed to <c>matrix-federation://{serverName}/{path}</c> (Synapse's scheme) where the server
/// name resolves to: the URI becomes https://{host}:{port}/{path} and the Host header the one the spec asks for,
/// from which the certificate's expected name follows.
/// </summary>
public sealed class FederationHandler(ServerResolver resolver, HttpMessageHandler inner) : DelegatingHandler(inner)
{
    public const string Scheme = "matrix-federation";

    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken ct)
    {
        if (request.RequestUri is not { Scheme: Scheme } uri)
            throw new ArgumentException($"federation requests are addressed {Scheme}://server.name/path", nameof(request));
        var serverName = uri.IsDefaultPort ? uri.Host : $"{uri.Host}:{uri.Port}";
        var target = await resolver.ResolveAsync(serverName, ct);
        request.RequestUri = new Uri(target.BaseUri, uri.PathAndQuery);
        request.Headers.Host = target.HostHeader;
        return await base.SendAsync(request, ct);
    }
}

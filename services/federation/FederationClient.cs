using Conduit.Common.Config;
using Microsoft.Extensions.Logging;

namespace Conduit.Federation;

/// <summary>
/// The outgoing side of federation, configured once: <see cref="Resolver"/> (server names to addresses, with its
/// well-known cache) and <see cref="Http"/>, which sends requests addressed matrix-federation://server.name/path to
/// the resolved server with the spec's Host header and certificate name. Trust: the system store plus
/// <c>federation_ca_file</c>. Requests go through it signed by <see cref="FederationRequests"/>; key fetches
/// (unsigned) through <see cref="HttpRemoteKeyFetcher"/>; retries and backoff are the outbound queue's.
/// </summary>
public sealed class FederationClient : IDisposable
{
    public ServerResolver Resolver { get; }
    public HttpClient Http { get; }
    readonly HttpClient _wellKnown;

    public FederationClient(GlobalConfig config, ILogger<ServerResolver> log)
        : this(new SystemFederationDns(), FederationHttp.LoadCaFile(config.FederationCaFile), TimeProvider.System, log) { }

    public FederationClient(IFederationDns dns, System.Security.Cryptography.X509Certificates.X509Certificate2Collection? extraRoots, TimeProvider time, ILogger<ServerResolver>? log)
    {
        _wellKnown = new HttpClient(FederationHttp.CreateHandler(dns, extraRoots, followRedirects: true));
        Resolver = new ServerResolver(_wellKnown, dns, time, log);
        Http = new HttpClient(new FederationHandler(Resolver, FederationHttp.CreateHandler(dns, extraRoots, followRedirects: false)));
    }

    public void Dispose()
    {
        Http.Dispose();
        _wellKnown.Dispose();
    }
}

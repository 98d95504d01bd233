using Conduit.Common.Config;
using Conduit.Common.Grpc;
using Conduit.Common.Routing;

namespace Conduit.Common.Admin;

/// <summary>
/// HTTP requests from one process of a split deployment to another service's internal listener (admin commands run
/// where their endpoint lives, process-wide operations reach every process): HTTP/2 with prior knowledge, as those
/// listeners speak only that, with the internal secret. One client for all of them.
/// </summary>
public static class InternalHttp
{
    /// <summary>Shared by every caller; long, since a backup or a bulk admin command may take minutes (callers pass
    /// their own cancellation).</summary>
    public static readonly HttpClient Client = new(new SocketsHttpHandler { EnableMultipleHttp2Connections = true })
    {
        Timeout = TimeSpan.FromMinutes(30),
    };

    /// <summary>A request to <paramref name="service"/>'s internal listener, with the internal secret.</summary>
    public static HttpRequestMessage Request(GlobalConfig config, Service service, HttpMethod method, string pathAndQuery)
    {
        var request = new HttpRequestMessage(method, config.Services.AddressOf(service).TrimEnd('/') + pathAndQuery)
        {
            Version = System.Net.HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };
        request.Headers.Add(InternalAuth.HeaderName, config.Services.InternalSecret);
        return request;
    }
}

using System.Net;
using System.Net.Sockets;

namespace Conduit.Common.Http;

/// <summary>IP ranges (CIDR, or single addresses), matched as <see cref="TrustedProxies"/> parses them.</summary>
public sealed class IpRangeList
{
    readonly IPNetwork[] _networks;

    public IpRangeList(IEnumerable<string> entries, string what)
        => _networks = [.. entries.Select(e => TrustedProxies.TryParseEntry(e, out var n) ? n
            : throw new FormatException($"{what}: '{e}' is neither an IP address nor a CIDR range such as 10.0.0.0/8"))];

    public int Count => _networks.Length;

    /// <summary>Whether <paramref name="ip"/> is in a range (an IPv4-mapped IPv6 address is taken as its IPv4 address).</summary>
    public bool Contains(IPAddress ip)
    {
        ip = OutboundIpPolicy.Unmap(ip);
        foreach (var n in _networks)
            if (n.Contains(ip)) return true;
        return false;
    }
}

/// <summary>A connection an outbound policy refuses.</summary>
public sealed class OutboundRefusedException(string message) : Exception(message);

/// <summary>A host name that could not be resolved.</summary>
public sealed class OutboundResolveException(string message, Exception inner) : IOException(message, inner);

/// <summary>
/// Where the server's own outbound requests (URL previews, push gateways) may connect: never an address in the deny
/// list unless it is in the allow list; 0.0.0.0/8 and :: never. An IPv6 address that carries an IPv4 one (v4-mapped
/// ::ffff:a.b.c.d, 6to4 2002:aabb:ccdd::/48, NAT64 64:ff9b::/96, v4-compatible ::a.b.c.d) is also checked as that IPv4
/// address: that is where it leads. <see cref="ConnectAsync"/> checks every resolved address of every connection, so a
/// name that resolves to a private address (or a redirect to one) is refused too.
/// </summary>
/// <param name="who">Who connects, for the refusal's message ("Previews", "Push gateways").</param>
public sealed class OutboundIpPolicy(IpRangeList deny, IpRangeList allow, string who = "The server")
{
    static readonly IPNetwork AlwaysDeniedV4 = IPNetwork.Parse("0.0.0.0/8");
    static readonly IPNetwork SixToFour = IPNetwork.Parse("2002::/16");
    static readonly IPNetwork Nat64 = IPNetwork.Parse("64:ff9b::/96");
    static readonly IPNetwork V4Compatible = IPNetwork.Parse("::/96");

    /// <summary>Whether the server may connect to <paramref name="ip"/>.</summary>
    public bool IsAllowed(IPAddress ip)
    {
        ip = Unmap(ip);
        if (ip.AddressFamily == AddressFamily.InterNetwork ? AlwaysDeniedV4.Contains(ip) : ip.Equals(IPAddress.IPv6Any)) return false;
        if (deny.Contains(ip) && !allow.Contains(ip)) return false;
        return EmbeddedV4(ip) is not { } v4 || IsAllowed(v4);
    }

    public static IPAddress Unmap(IPAddress ip) => ip.IsIPv4MappedToIPv6 ? ip.MapToIPv4() : ip;

    /// <summary>The IPv4 address a 6to4, NAT64 or v4-compatible IPv6 address leads to, or null.</summary>
    internal static IPAddress? EmbeddedV4(IPAddress ip)
    {
        if (ip.AddressFamily != AddressFamily.InterNetworkV6) return null;
        Span<byte> b = stackalloc byte[16];
        ip.TryWriteBytes(b, out _);
        if (SixToFour.Contains(ip)) return new IPAddress(b[2..6]);
        if (Nat64.Contains(ip)) return new IPAddress(b[12..16]);
        // ::1 and :: are in ::/96 too, and are not IPv4 addresses.
        if (V4Compatible.Contains(ip) && b[12] != 0) return new IPAddress(b[12..16]);
        return null;
    }

    /// <summary>
    /// An HttpClient whose every connection obeys this policy (<see cref="ConnectAsync"/>), following no redirects (a
    /// redirect could lead anywhere), with the server's user agent: for push gateways and identity servers.
    /// </summary>
    public HttpClient CreateClient(TimeSpan connectTimeout, TimeSpan requestTimeout)
    {
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = ConnectAsync,
            ConnectTimeout = connectTimeout,
            PooledConnectionLifetime = TimeSpan.FromMinutes(5),
            AllowAutoRedirect = false,
        };
        var http = new HttpClient(handler) { Timeout = requestTimeout };
        http.DefaultRequestHeaders.UserAgent.ParseAdd("Conduit.Services");
        return http;
    }

    /// <summary>
    /// A <see cref="SocketsHttpHandler.ConnectCallback"/>: resolves the host, keeps the addresses the policy allows and
    /// connects to the first that answers. Throws <see cref="OutboundRefusedException"/> when none is allowed.
    /// </summary>
    public async ValueTask<Stream> ConnectAsync(SocketsHttpConnectionContext context, CancellationToken ct)
    {
        var host = context.DnsEndPoint.Host.Trim('[', ']');
        IPAddress[] addresses;
        if (IPAddress.TryParse(host, out var literal)) addresses = [literal];
        else
        {
            try { addresses = await Dns.GetHostAddressesAsync(host, ct); }
            catch (SocketException e) { throw new OutboundResolveException($"Could not resolve {host}: {e.Message}", e); }
        }
        var allowed = addresses.Where(IsAllowed).ToArray();
        if (allowed.Length == 0)
            throw new OutboundRefusedException(literal is not null ? $"{who} may not connect to {literal}" : $"{who} may not connect to the addresses {host} resolves to");
        SocketException? last = null;
        foreach (var ip in allowed)
        {
            var socket = new Socket(ip.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            try
            {
                await socket.ConnectAsync(new IPEndPoint(ip, context.DnsEndPoint.Port), ct);
                return new NetworkStream(socket, ownsSocket: true);
            }
            catch (SocketException e)
            {
                socket.Dispose();
                last = e;
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        }
        throw last!;
    }
}

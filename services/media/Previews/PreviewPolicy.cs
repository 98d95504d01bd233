using System.Net;
using System.Net.Sockets;
using Conduit.Common.Config;
using Conduit.Common.Http;

namespace Conduit.Media.Previews;

/// <summary>A fetch the preview policy refuses (a denied domain or address): answered 403 M_FORBIDDEN.</summary>
public sealed class PreviewRefusedException(string message) : Exception(message);

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
        ip = PreviewPolicy.Unmap(ip);
        foreach (var n in _networks)
            if (n.Contains(ip)) return true;
        return false;
    }
}

/// <summary>
/// Where URL previews may go (url_preview_* config keys): only http and https; a host matching the domain deny list
/// (the domain or a subdomain) never, and when the domain allow list is non-empty, only hosts matching it; and never
/// an address in the IP deny list unless it is in the IP allow list. 0.0.0.0/8 and :: are refused whatever the lists
/// say. An IPv6 address that carries an IPv4 one (v4-mapped ::ffff:a.b.c.d, 6to4 2002:aabb:ccdd::/48, NAT64
/// 64:ff9b::/96, v4-compatible ::a.b.c.d) is also checked as that IPv4 address: that is where it leads.
/// </summary>
public sealed class PreviewPolicy
{
    public const int MaxUrlLength = 2048;

    static readonly IPNetwork AlwaysDeniedV4 = IPNetwork.Parse("0.0.0.0/8");
    static readonly IPNetwork SixToFour = IPNetwork.Parse("2002::/16");
    static readonly IPNetwork Nat64 = IPNetwork.Parse("64:ff9b::/96");
    static readonly IPNetwork V4Compatible = IPNetwork.Parse("::/96");

    readonly string[] _domainAllow, _domainDeny;
    readonly bool _allowAnyDomain;
    readonly IpRangeList _ipDeny, _ipAllow;

    public PreviewPolicy(GlobalConfig config)
    {
        _domainAllow = [.. config.UrlPreviewDomainAllowlist.Select(NormalizeDomain).Where(d => d.Length > 0)];
        _domainDeny = [.. config.UrlPreviewDomainDenylist.Select(NormalizeDomain).Where(d => d.Length > 0)];
        _allowAnyDomain = _domainAllow.Length == 0 || _domainAllow.Contains("*");
        _ipDeny = new IpRangeList(config.UrlPreviewIpRangeDenylist, "url_preview_ip_range_denylist");
        _ipAllow = new IpRangeList(config.UrlPreviewIpRangeAllowlist, "url_preview_ip_range_allowlist");
    }

    // "Example.COM.", "*.example.com" and ".example.com" all mean example.com and its subdomains.
    static string NormalizeDomain(string d)
    {
        d = d.Trim().ToLowerInvariant();
        return d == "*" ? d : d.TrimStart('*').Trim('.');
    }

    /// <summary>
    /// Parses the URL a client asked for: 400 M_INVALID_PARAM unless it is an absolute http or https URL with a host
    /// of at most <see cref="MaxUrlLength"/> characters; 403 M_FORBIDDEN if the policy refuses its host.
    /// </summary>
    public Uri ParseRequested(string url)
    {
        if (url.Length > MaxUrlLength) throw Err.InvalidParam($"The URL is longer than {MaxUrlLength} characters");
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || !IsWeb(uri))
            throw Err.InvalidParam("Only absolute http and https URLs can be previewed");
        CheckHost(uri);
        return uri;
    }

    public static bool IsWeb(Uri uri)
        => (uri.Scheme == Uri.UriSchemeHttp || uri.Scheme == Uri.UriSchemeHttps) && uri.Host.Length > 0 && uri.UserInfo.Length == 0;

    /// <summary>Refuses (<see cref="PreviewRefusedException"/>) a host the domain lists exclude, or an IP literal the
    /// IP lists exclude (a name's addresses are checked when it is connected to).</summary>
    public void CheckHost(Uri uri)
    {
        var host = uri.IdnHost.TrimEnd('.').ToLowerInvariant();
        if (uri.HostNameType is UriHostNameType.IPv4 or UriHostNameType.IPv6 && IPAddress.TryParse(host.Trim('[', ']'), out var ip) && !IsAllowed(ip))
            throw new PreviewRefusedException($"Previews may not connect to {ip}");
        if (!IsDomainAllowed(host)) throw new PreviewRefusedException($"Previews of {host} are not allowed on this server");
    }

    public bool IsDomainAllowed(string host)
    {
        host = host.TrimEnd('.').ToLowerInvariant();
        foreach (var d in _domainDeny)
            if (d == "*" || Matches(host, d)) return false;
        if (_allowAnyDomain) return true;
        foreach (var d in _domainAllow)
            if (Matches(host, d)) return true;
        return false;
    }

    static bool Matches(string host, string domain)
        => host == domain || (host.Length > domain.Length && host.EndsWith(domain, StringComparison.Ordinal) && host[^(domain.Length + 1)] == '.');

    /// <summary>Whether previews may connect to <paramref name="ip"/>.</summary>
    public bool IsAllowed(IPAddress ip)
    {
        ip = Unmap(ip);
        if (ip.AddressFamily == AddressFamily.InterNetwork ? AlwaysDeniedV4.Contains(ip) : ip.Equals(IPAddress.IPv6Any)) return false;
        if (_ipDeny.Contains(ip) && !_ipAllow.Contains(ip)) return false;
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
}

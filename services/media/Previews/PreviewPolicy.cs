using System.Net;
using System.Net.Sockets;
using Conduit.Common.Config;
using Conduit.Common.Http;

namespace Conduit.Media.Previews;

/// <summary>A fetch the preview policy refuses (a denied domain or address): answered 403 M_FORBIDDEN.</summary>
public sealed class PreviewRefusedException(string message) : Exception(message);

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

    readonly string[] _domainAllow, _domainDeny;
    readonly bool _allowAnyDomain;
    readonly OutboundIpPolicy _ip;

    public PreviewPolicy(GlobalConfig config)
    {
        _domainAllow = [.. config.UrlPreviewDomainAllowlist.Select(NormalizeDomain).Where(d => d.Length > 0)];
        _domainDeny = [.. config.UrlPreviewDomainDenylist.Select(NormalizeDomain).Where(d => d.Length > 0)];
        _allowAnyDomain = _domainAllow.Length == 0 || _domainAllow.Contains("*");
        _ip = new OutboundIpPolicy(new IpRangeList(config.UrlPreviewIpRangeDenylist, "url_preview_ip_range_denylist"),
            new IpRangeList(config.UrlPreviewIpRangeAllowlist, "url_preview_ip_range_allowlist"), "Previews");
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
    public bool IsAllowed(IPAddress ip) => _ip.IsAllowed(ip);

    /// <summary>The address part of the policy, which also makes the connections.</summary>
    public OutboundIpPolicy Ip => _ip;
}

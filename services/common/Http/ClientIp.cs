using System.Net;
using Microsoft.AspNetCore.Http;

namespace Conduit.Common.Http;

/// <summary>
/// The client's IP address, resolved once by the edge (the only public listener, see <see cref="TrustedProxies"/>)
/// and passed to services in an internal header. The edge overwrites the header on every request, so a client
/// cannot set it, and services trust it only behind <see cref="InternalGate"/>, as they do <see cref="Caller"/>.
/// Services read the client's address only from here, never from X-Forwarded-For.
/// </summary>
public static class ClientIp
{
    public const string Header = "X-Conduit-Client-Ip";

    /// <summary>The address the edge resolved, or null if there was none (not a socket connection).</summary>
    public static string? Of(HttpContext ctx) => ctx.Request.Headers[Header].ToString() is { Length: > 0 } ip ? ip : null;
}

/// <summary>
/// trusted_proxies: the reverse proxies whose X-Forwarded-For is believed. The client is the connection's peer
/// unless that peer is trusted; then it is the right-most address of X-Forwarded-For that is not itself a
/// trusted proxy (every proxy appends the address it was reached from, so the addresses to the left of the
/// first untrusted one are whatever the client chose to send).
/// </summary>
public sealed class TrustedProxies
{
    readonly IPNetwork[] _networks;

    TrustedProxies(IPNetwork[] networks) => _networks = networks;

    /// <summary>From config entries, IP addresses or CIDR ranges ("10.0.0.1", "10.0.0.0/8", "fd00::/8").</summary>
    public static TrustedProxies Parse(IEnumerable<string> entries)
        => new(entries.Select(e => TryParseEntry(e, out var n) ? n : throw new FormatException($"'{e}' is neither an IP address nor a CIDR range")).ToArray());

    public static bool TryParseEntry(string entry, out IPNetwork network)
    {
        network = default;
        var slash = entry.IndexOf('/');
        if (!IPAddress.TryParse(slash < 0 ? entry.Trim() : entry[..slash].Trim(), out var ip)) return false;
        ip = Normalize(ip);
        var bits = ip.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork ? 32 : 128;
        var prefix = bits;
        if (slash >= 0 && (!int.TryParse(entry[(slash + 1)..].Trim(), out prefix) || prefix < 0 || prefix > bits)) return false;
        // "192.168.1.7/24" means the range it is in (IPNetwork itself refuses host bits).
        var bytes = ip.GetAddressBytes();
        for (var i = 0; i < bytes.Length; i++)
            bytes[i] &= (byte)(0xFF << (8 - Math.Clamp(prefix - i * 8, 0, 8)));
        network = new IPNetwork(new IPAddress(bytes), prefix);
        return true;
    }

    public bool Contains(IPAddress ip)
    {
        ip = Normalize(ip);
        foreach (var n in _networks)
            if (n.Contains(ip)) return true;
        return false;
    }

    /// <summary>The client's address for a connection from <paramref name="peer"/> carrying these X-Forwarded-For values.</summary>
    public IPAddress Resolve(IPAddress peer, IEnumerable<string?> forwardedFor)
    {
        var client = Normalize(peer);
        if (_networks.Length == 0 || !Contains(client)) return client;
        var hops = forwardedFor.SelectMany(v => (v ?? "").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)).ToList();
        for (var i = hops.Count - 1; i >= 0; i--)
        {
            // An entry that is not an address ("unknown", garbage) ends the chain: the last trusted hop is all we know.
            if (!TryParseHop(hops[i], out var hop)) break;
            client = hop;
            if (!Contains(hop)) break;
        }
        return client;
    }

    // "1.2.3.4", "2001:db8::1", and with a port as some proxies write them: "1.2.3.4:5678", "[2001:db8::1]:443".
    static bool TryParseHop(string s, out IPAddress ip)
    {
        if (IPAddress.TryParse(s, out ip!) || (IPEndPoint.TryParse(s, out var ep) && (ip = ep.Address) is not null))
        {
            ip = Normalize(ip);
            return true;
        }
        return false;
    }

    // A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d; compare and report them as IPv4.
    static IPAddress Normalize(IPAddress ip) => ip.IsIPv4MappedToIPv6 ? ip.MapToIPv4() : ip;
}

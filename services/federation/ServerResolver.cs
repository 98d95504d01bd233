using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Text.Json;
using DnsClient;
using DnsClient.Protocol;
using Microsoft.Extensions.Logging;

namespace Conduit.Federation;

/// <summary>
/// Where to send requests for a server name, per the server-server API, "Resolving server names": connect to
/// <see cref="Host"/> (an IP literal, or a name to look up with A/AAAA) on <see cref="Port"/>, send
/// <see cref="HostHeader"/> as the Host header, and expect a certificate valid for <see cref="TlsName"/> (the host
/// part of the Host header, which is what SocketsHttpHandler validates against when the header is set).
/// </summary>
public sealed record ResolvedServer(string Host, int Port, string HostHeader)
{
    public string TlsName => ServerNames.TryParse(HostHeader, out var host, out _) ? host : HostHeader;

    /// <summary>https://Host:Port/ (IPv6 in brackets): the request URI base; the Host header goes on separately.</summary>
    public Uri BaseUri => new($"https://{(IPAddress.TryParse(Host, out var ip) && ip.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{Host}]" : Host)}:{Port}/");
}

/// <summary>One SRV answer.</summary>
public sealed record SrvTarget(string Host, int Port, int Priority, int Weight);

/// <summary>The DNS the resolver needs, behind an interface so tests can answer with fakes.</summary>
public interface IFederationDns
{
    /// <summary>SRV records of <paramref name="name"/> (e.g. "_matrix-fed._tcp.example.org"); empty when there are none.</summary>
    Task<IReadOnlyList<SrvTarget>> SrvAsync(string name, CancellationToken ct);

    /// <summary>The addresses of a host name (CNAME, AAAA, A), for connecting.</summary>
    Task<IPAddress[]> AddressesAsync(string host, CancellationToken ct);
}

/// <summary>SRV through DnsClient (the system's name servers, answers cached for their TTL); addresses through the
/// system resolver, so /etc/hosts applies as it does for every other program.</summary>
public sealed class SystemFederationDns : IFederationDns
{
    // Made at the first SRV lookup: building it reads the system's name servers and network interfaces, which a
    // server that never federates (or has not yet) need not load.
    LookupClient? _client;

    LookupClient Client => LazyInitializer.EnsureInitialized(ref _client, () => new LookupClient(new LookupClientOptions { UseCache = true, Timeout = TimeSpan.FromSeconds(5), Retries = 2 }));

    public async Task<IReadOnlyList<SrvTarget>> SrvAsync(string name, CancellationToken ct)
    {
        try
        {
            var answer = await Client.QueryAsync(name, QueryType.SRV, cancellationToken: ct);
            return answer.Answers.OfType<SrvRecord>().Select(r => new SrvTarget(r.Target.Value.TrimEnd('.'), r.Port, r.Priority, r.Weight)).ToList();
        }
        catch (DnsResponseException)
        {
            // No answer at all (timeouts, SERVFAIL) reads as no SRV record: the next step of the spec applies.
            return [];
        }
    }

    public Task<IPAddress[]> AddressesAsync(string host, CancellationToken ct) => Dns.GetHostAddressesAsync(host, ct);
}

/// <summary>The server-name grammar (appendices, "Server name"): hostname, IPv4 literal or [IPv6 literal], then an
/// optional :port.</summary>
public static class ServerNames
{
    public static bool TryParse(string name, out string host, out int? port)
    {
        host = "";
        port = null;
        if (string.IsNullOrEmpty(name) || name.Length > 255) return false;
        string rest;
        if (name[0] == '[')
        {
            var close = name.IndexOf(']', StringComparison.Ordinal);
            if (close < 0 || !IPAddress.TryParse(name[1..close], out var v6) || v6.AddressFamily != System.Net.Sockets.AddressFamily.InterNetworkV6) return false;
            host = name[1..close];
            rest = name[(close + 1)..];
        }
        else
        {
            var colon = name.LastIndexOf(':');
            host = colon < 0 ? name : name[..colon];
            rest = colon < 0 ? "" : name[colon..];
            if (host.Length == 0 || !host.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '.')) return false;
        }
        if (rest.Length == 0) return true;
        if (rest[0] != ':' || rest.Length is < 2 or > 6 || !rest[1..].All(char.IsAsciiDigit)) return false;
        var p = int.Parse(rest[1..], CultureInfo.InvariantCulture);
        if (p is < 1 or > 65535) return false;
        port = p;
        return true;
    }

    public static bool IsIpLiteral(string host) => IPAddress.TryParse(host, out _);
}

/// <summary>
/// Resolves a server name to where its federation API is (server-server API, "Resolving server names"). The
/// /.well-known/matrix/server answer (or its failure) is cached per host name: for the response's Cache-Control
/// max-age or Expires, else 24 hours, within 5 minutes (Synapse's floor) and 48 hours (the spec's recommended
/// ceiling); failures of any kind for an hour (the spec's recommendation). SRV answers are cached by the DNS client
/// for their TTL.
/// </summary>
public sealed class ServerResolver(HttpMessageInvoker wellKnownClient, IFederationDns dns, TimeProvider time, ILogger<ServerResolver>? log = null)
{
    public const int DefaultPort = 8448;
    public static readonly TimeSpan DefaultCache = TimeSpan.FromHours(24);
    public static readonly TimeSpan MinCache = TimeSpan.FromMinutes(5);
    public static readonly TimeSpan MaxCache = TimeSpan.FromHours(48);
    public static readonly TimeSpan ErrorCache = TimeSpan.FromHours(1);
    /// <summary>Largest well-known body read (Synapse: 50 KiB); a larger one is an invalid response.</summary>
    public const int MaxWellKnownBytes = 50 * 1024;
    static readonly TimeSpan WellKnownTimeout = TimeSpan.FromSeconds(10);

    readonly ConcurrentDictionary<string, (string? Delegated, DateTimeOffset Until)> _wellKnown = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>Forgets every cached .well-known answer (the admin room's clear-cache); answers how many there were.</summary>
    public long ClearCache()
    {
        var count = _wellKnown.Count;
        _wellKnown.Clear();
        return count;
    }

    public async Task<ResolvedServer> ResolveAsync(string serverName, CancellationToken ct = default)
    {
        if (!ServerNames.TryParse(serverName, out var host, out var port))
            throw new ArgumentException($"'{serverName}' is not a valid server name", nameof(serverName));
        // Steps 1 and 2: an IP literal, or an explicit port: no well-known, no SRV.
        if (ServerNames.IsIpLiteral(host) || port is not null) return Direct(host, port, serverName);
        // Step 3: delegation by /.well-known/matrix/server, its m.server resolved by steps 3.1 to 3.5.
        if (await WellKnownAsync(host, ct) is { } delegated && ServerNames.TryParse(delegated, out var dHost, out var dPort))
            return ServerNames.IsIpLiteral(dHost) || dPort is not null ? Direct(dHost, dPort, delegated) : await SrvOrDefaultAsync(dHost, ct);
        // Steps 4 to 6: no (valid) well-known.
        return await SrvOrDefaultAsync(host, ct);
    }

    // Steps 1, 2, 3.1, 3.2: the address and port as given (8448 without one), Host header the name as written.
    static ResolvedServer Direct(string host, int? port, string name) => new(host, port ?? DefaultPort, name);

    // Steps 3.3 to 3.5 and 4 to 6: _matrix-fed._tcp, then the deprecated _matrix._tcp, else port 8448; the Host
    // header and the certificate stay the name looked up, never the SRV target (DNS is not authenticated).
    async Task<ResolvedServer> SrvOrDefaultAsync(string host, CancellationToken ct)
    {
        foreach (var service in (string[])["_matrix-fed._tcp.", "_matrix._tcp."])
        {
            // RFC 2782: a lone "." target means the service is not offered there. Lowest priority first; among
            // equals the heaviest (a deterministic choice rather than the RFC's weighted random one).
            var targets = (await dns.SrvAsync(service + host, ct))
                .Where(t => t.Host is not ("" or "."))
                .OrderBy(t => t.Priority).ThenByDescending(t => t.Weight).ToList();
            if (targets.Count > 0) return new ResolvedServer(targets[0].Host, targets[0].Port, host);
        }
        return new ResolvedServer(host, DefaultPort, host);
    }

    /// <summary>m.server from https://host/.well-known/matrix/server, or null when there is none or it is invalid;
    /// from the cache while it lasts.</summary>
    async Task<string?> WellKnownAsync(string host, CancellationToken ct)
    {
        var now = time.GetUtcNow();
        if (_wellKnown.TryGetValue(host, out var cached) && cached.Until > now) return cached.Delegated;
        var (delegated, lifetime) = await FetchAsync(host, now, ct);
        _wellKnown[host] = (delegated, now + lifetime);
        return delegated;
    }

    async Task<(string?, TimeSpan)> FetchAsync(string host, DateTimeOffset now, CancellationToken ct)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(WellKnownTimeout);
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, $"https://{host}/.well-known/matrix/server");
            // Redirects are followed by the handler (FederationHttp: a bounded number, never from https to http).
            using var response = await wellKnownClient.SendAsync(request, cts.Token);
            if (response.StatusCode != HttpStatusCode.OK)
            {
                log?.LogInformation("No well-known for {Host}: {Status}", host, (int)response.StatusCode);
                return (null, ErrorCache);
            }
            var body = await ReadLimitedAsync(response.Content, cts.Token);
            if (body is null || Delegation(body) is not { } delegated)
            {
                log?.LogInformation("Invalid well-known for {Host}", host);
                return (null, ErrorCache);
            }
            return (delegated, CacheLifetime(response, now));
        }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException && !ct.IsCancellationRequested)
        {
            log?.LogInformation("Well-known of {Host} failed: {Error}", host, e.Message);
            return (null, ErrorCache);
        }
    }

    static async Task<byte[]?> ReadLimitedAsync(HttpContent content, CancellationToken ct)
    {
        if (content.Headers.ContentLength > MaxWellKnownBytes) return null;
        await using var stream = await content.ReadAsStreamAsync(ct);
        var buffer = new byte[MaxWellKnownBytes + 1];
        var total = 0;
        int read;
        while (total < buffer.Length && (read = await stream.ReadAsync(buffer.AsMemory(total), ct)) > 0) total += read;
        return total > MaxWellKnownBytes ? null : buffer[..total];
    }

    // The schema: an object with a string m.server that is itself a server name.
    static string? Delegation(byte[] body)
    {
        try
        {
            using var doc = JsonDocument.Parse(body);
            return doc.RootElement.ValueKind == JsonValueKind.Object
                && doc.RootElement.TryGetProperty("m.server", out var s) && s.ValueKind == JsonValueKind.String
                && s.GetString() is { } name && ServerNames.TryParse(name, out _, out _) ? name : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>How long a valid answer is kept: Cache-Control (no-store, max-age), then Expires, else 24 hours;
    /// always within [5 minutes, 48 hours].</summary>
    public static TimeSpan CacheLifetime(HttpResponseMessage response, DateTimeOffset now)
    {
        TimeSpan? period = null;
        var cc = response.Headers.CacheControl;
        if (cc is { NoStore: true }) period = TimeSpan.Zero;
        else if (cc?.MaxAge is { } maxAge) period = maxAge;
        else if (response.Content.Headers.Contains("Expires"))
            // RFC 9111 5.3: an Expires that does not parse is in the past.
            period = response.Content.Headers.Expires is { } at ? at - now : TimeSpan.Zero;
        var p = period ?? DefaultCache;
        return p < MinCache ? MinCache : p > MaxCache ? MaxCache : p;
    }
}

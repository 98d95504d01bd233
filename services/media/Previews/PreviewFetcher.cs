using System.Net;
using System.Net.Sockets;
using Conduit.Common.Http;

namespace Conduit.Media.Previews;

/// <summary>A fetch that failed upstream (connection, status, redirects): answered 502.</summary>
public sealed class PreviewFetchException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// The HTTP client of URL previews, which goes only where <see cref="PreviewPolicy"/> allows. Every connection is made
/// by <see cref="ConnectAsync"/>: it resolves the name itself, drops the addresses the policy refuses and connects to
/// one of the others, so the address checked is the address connected to (a DNS answer that changes between a check
/// and the connection, DNS rebinding, has nothing to exploit: the name is resolved once, here). No proxy (the check
/// would see the proxy's address, not the target's), no cookies, HTTP/1.1 only (never HTTP/3, whose QUIC
/// connections would not go through the callback). Redirects are followed here, not by the handler, each target
/// checked again.
/// </summary>
public sealed class PreviewFetcher : IDisposable
{
    public const int MaxRedirects = 5;
    public const string UserAgent = "Conduit.Services URL preview (bot)";

    readonly PreviewPolicy _policy;
    readonly HttpClient _client;

    public PreviewFetcher(PreviewPolicy policy, TimeSpan connectTimeout)
    {
        _policy = policy;
        var handler = new SocketsHttpHandler
        {
            AllowAutoRedirect = false,
            UseProxy = false,
            UseCookies = false,
            AutomaticDecompression = DecompressionMethods.All,
            ConnectCallback = ConnectAsync,
            ConnectTimeout = connectTimeout,
            PooledConnectionLifetime = TimeSpan.FromMinutes(1),
            MaxResponseHeadersLength = 64,
        };
        _client = new HttpClient(handler) { Timeout = Timeout.InfiniteTimeSpan };
        _client.DefaultRequestHeaders.UserAgent.ParseAdd(UserAgent);
    }

    // Every connection, redirects included, goes where the policy allows (OutboundIpPolicy checks each resolved address).
    async ValueTask<Stream> ConnectAsync(SocketsHttpConnectionContext context, CancellationToken ct)
    {
        try { return await _policy.Ip.ConnectAsync(context, ct); }
        catch (OutboundRefusedException e) { throw new PreviewRefusedException(e.Message); }
        catch (OutboundResolveException e) { throw new PreviewFetchException(e.Message, e); }
    }

    /// <summary>
    /// GETs <paramref name="url"/> (already checked by <see cref="PreviewPolicy.CheckHost"/>), following up to
    /// <see cref="MaxRedirects"/> redirects to http and https URLs the policy allows. Returns the successful response,
    /// headers read and body not yet, and the URL it came from. Throws <see cref="PreviewRefusedException"/> where the
    /// policy refuses, <see cref="PreviewFetchException"/> for any other failure.
    /// </summary>
    public async Task<(HttpResponseMessage Response, Uri Url)> GetAsync(Uri url, string accept, CancellationToken ct)
    {
        for (var hop = 0; ; hop++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, url)
            {
                Version = HttpVersion.Version11,
                VersionPolicy = HttpVersionPolicy.RequestVersionOrLower,
            };
            request.Headers.TryAddWithoutValidation("Accept", accept);
            HttpResponseMessage response;
            try
            {
                response = await _client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct);
            }
            catch (HttpRequestException e)
            {
                for (Exception? x = e; x is not null; x = x.InnerException)
                    if (x is PreviewRefusedException or PreviewFetchException) throw x;
                throw new PreviewFetchException($"Could not fetch {url.Host}: {e.Message}", e);
            }
            var status = (int)response.StatusCode;
            if (status is 301 or 302 or 303 or 307 or 308)
            {
                var location = response.Headers.Location;
                response.Dispose();
                if (location is null) throw new PreviewFetchException($"{url.Host} answered {status} without a Location");
                if (hop == MaxRedirects) throw new PreviewFetchException($"More than {MaxRedirects} redirects");
                var next = location.IsAbsoluteUri ? location : new Uri(url, location);
                if (!PreviewPolicy.IsWeb(next) || next.OriginalString.Length > PreviewPolicy.MaxUrlLength)
                    throw new PreviewFetchException($"{url.Host} redirected to a URL that is not http or https");
                _policy.CheckHost(next);
                url = next;
                continue;
            }
            if (status is < 200 or > 299)
            {
                response.Dispose();
                throw new PreviewFetchException($"{url.Host} answered {status}");
            }
            return (response, url);
        }
    }

    /// <summary>Reads at most <paramref name="limit"/> bytes of <paramref name="body"/>; Truncated if there was more.</summary>
    public static async Task<(byte[] Bytes, bool Truncated)> ReadUpToAsync(Stream body, long limit, CancellationToken ct)
    {
        using var into = new MemoryStream();
        var buffer = new byte[16 * 1024];
        while (into.Length < limit)
        {
            var n = await body.ReadAsync(buffer.AsMemory(0, (int)Math.Min(buffer.Length, limit - into.Length)), ct);
            if (n == 0) return (into.ToArray(), false);
            into.Write(buffer, 0, n);
        }
        return (into.ToArray(), await body.ReadAsync(buffer.AsMemory(0, 1), ct) > 0);
    }

    public void Dispose() => _client.Dispose();
}

/// <summary>A read-only view of a stream that fails (<see cref="PreviewFetchException"/>) past <paramref name="limit"/> bytes.</summary>
sealed class CappedStream(Stream inner, long limit) : Stream
{
    long _read;

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => _read; set => throw new NotSupportedException(); }

    public override int Read(byte[] buffer, int offset, int count) => Count(inner.Read(buffer, offset, count));

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken ct = default)
        => Count(await inner.ReadAsync(buffer, ct));

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken ct)
        => ReadAsync(buffer.AsMemory(offset, count), ct).AsTask();

    int Count(int n)
    {
        _read += n;
        if (_read > limit) throw new PreviewFetchException($"Larger than {limit} bytes");
        return n;
    }

    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}

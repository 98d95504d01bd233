using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Conduit.Media.Tests;

/// <summary>An answer of <see cref="PreviewTestServer"/>; null from its handler means never answer.</summary>
public sealed record CannedResponse(int Status, string? ContentType, byte[] Body, params (string Name, string Value)[] Headers)
{
    public static CannedResponse Html(string html, string contentType = "text/html; charset=utf-8") => new(200, contentType, Encoding.UTF8.GetBytes(html));
    public static CannedResponse Redirect(string location, int status = 302) => new(status, null, [], ("Location", location));
}

/// <summary>
/// A tiny HTTP/1.1 server on a loopback port the OS picks, written by hand on a TcpListener: every connection gets
/// one canned answer and is closed. Counts the requests and keeps their paths and headers.
/// </summary>
public sealed class PreviewTestServer : IDisposable
{
    readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    readonly Func<string, CannedResponse?> _handler;
    readonly CancellationTokenSource _stop = new();
    int _requests;

    public ConcurrentQueue<(string Path, string Headers)> Seen { get; } = new();
    public int Requests => Volatile.Read(ref _requests);
    public int Port { get; }

    public PreviewTestServer(Func<string, CannedResponse?> handler)
    {
        _handler = handler;
        _listener.Start();
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _ = AcceptLoop();
    }

    public string Url(string path, string host = "127.0.0.1") => $"http://{host}:{Port}{path}";

    async Task AcceptLoop()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try { client = await _listener.AcceptTcpClientAsync(_stop.Token); }
            catch (Exception) { return; }
            _ = Task.Run(() => Serve(client));
        }
    }

    async Task Serve(TcpClient client)
    {
        using var _ = client;
        try
        {
            var stream = client.GetStream();
            var head = new List<byte>();
            var one = new byte[1];
            while (head.Count < 65536 && !(head.Count >= 4 && head[^4] == '\r' && head[^3] == '\n' && head[^2] == '\r' && head[^1] == '\n'))
            {
                if (await stream.ReadAsync(one, _stop.Token) == 0) return;
                head.Add(one[0]);
            }
            var text = Encoding.ASCII.GetString([.. head]);
            var path = text.Split(' ')[1];
            Seen.Enqueue((path, text));
            Interlocked.Increment(ref _requests);
            if (_handler(path) is not { } r)
            {
                await Task.Delay(Timeout.Infinite, _stop.Token);
                return;
            }
            var sb = new StringBuilder($"HTTP/1.1 {r.Status} Whatever\r\nContent-Length: {r.Body.Length}\r\nConnection: close\r\n");
            if (r.ContentType is not null) sb.Append($"Content-Type: {r.ContentType}\r\n");
            foreach (var (n, v) in r.Headers) sb.Append($"{n}: {v}\r\n");
            sb.Append("\r\n");
            await stream.WriteAsync(Encoding.ASCII.GetBytes(sb.ToString()), _stop.Token);
            await stream.WriteAsync(r.Body, _stop.Token);
        }
        catch (Exception)
        {
            // The client went away (a preview stops reading at its size limit), or the server is stopping.
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Stop();
        _stop.Dispose();
    }
}
